#!/usr/bin/env bash
# cluster_stages.sh [BUILD]: where an intrinsic call's RPC overhead goes. Starts the bench cluster of
# bench/cluster.sh (85m preset, one certainty worker, kept leases) with ALORA_STAGES set, makes
# ALORA_STAGES_REPS (default 60) cached aLoRA calls at ALORA_STAGES_CTX (default 253) tokens of context,
# stops it and prints the median time of every stage of a call (client -> router -> worker -> compute
# -> back), from the CLOCK_MONOTONIC stamps the processes wrote (common/stage.h,
# bench/cluster_stages.py). Knobs as cluster.sh: ALORA_BENCH_PRESET, ALORA_BENCH_DTYPE, ALORA_BENCH_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
ALORA="$BUILD/alora"
PRESET=${ALORA_BENCH_PRESET:-85m}
DTYPE=${ALORA_BENCH_DTYPE:-f32}
W=${ALORA_BENCH_DIR:-build/bench-cluster}/$PRESET-$DTYPE
REPS=${ALORA_STAGES_REPS:-60}
CTX=${ALORA_STAGES_CTX:-253}
mkdir -p "$W"
W=$(readlink -f "$W")
[ -f "$W/model/config.json" ] || "$ALORA" make-model --arch llama --preset "$PRESET" --dtype "$DTYPE" --seed 7 \
  "$W/model" >/dev/null
[ -f "$W/certainty/adapter_config.json" ] || "$ALORA" make-adapter --model "$W/model" --targets q,k,v,o \
  --rank 8 --alpha 16 --invocation 500,501,502 --seed 3 "$W/certainty" >/dev/null
RUN=$(mktemp -d /tmp/alora-stages-XXXXXX)
cat >"$RUN/stages.cfg" <<CFG
run_dir = "$RUN";
base = { model = "$W/model"; kv_blocks = 256; block_size = 16; threads = 1; };
worker = { kv_blocks = 64; threads = 1; };
router = { lease_hold_ms = 2000; };
intrinsics = ( { name = "certainty"; adapter = "$W/certainty"; replicas = 1; max_tokens = 1; } );
CFG
ALORA_STAGES="$RUN/st" "$ALORA" up -c "$RUN/stages.cfg" --ready-file "$RUN/ready" >/dev/null 2>"$RUN/up.log" &
UP=$!
trap 'kill -TERM $UP 2>/dev/null || true; wait $UP 2>/dev/null || true; rm -rf "$RUN"' EXIT
for _ in $(seq 1 600); do [ -f "$RUN/ready" ] && break; sleep 0.1; done
[ -f "$RUN/ready" ] || { echo "cluster not ready"; tail -20 "$RUN/up.log"; exit 1; }
ALORA_STAGES="$RUN/st" "$BUILD/bench_cluster" --router "ipc://$RUN/router.ipc" --intrinsic certainty --inv 500,501,502 \
  --ctx "$CTX" --reps "$REPS" --lora-reps 0 | grep -E '^RPC overhead'
kill -TERM $UP
wait $UP || true
echo "$PRESET preset, $CTX tokens of context, 1 generated token; load average $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
echo
python3 bench/cluster_stages.py "$RUN/st"
