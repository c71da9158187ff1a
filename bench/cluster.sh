#!/usr/bin/env bash
# cluster.sh: intrinsic TTFT through a local cluster on the 85m preset, aLoRA vs plain LoRA at 256,
# 1024 and ~2048 tokens of context, and the RPC overhead per call (client wall time minus the compute
# the base and the worker report: client->router, router->base lease/unlease and router->worker hops)
# next to a bare NNG round trip measured in the same run. Prints markdown.
# Knobs (environment): ALORA_BENCH_DEVICE=cpu|cuda (base.device; the workers follow the base),
# ALORA_BENCH_PRESET (make-model preset, default 85m), ALORA_BENCH_DTYPE (f32|bf16),
# ALORA_BENCH_CTX (contexts, default 253,1021,2037), ALORA_BENCH_KV (base KV blocks).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
ALORA="$BUILD/alora"
DEVICE=${ALORA_BENCH_DEVICE:-cpu}
PRESET=${ALORA_BENCH_PRESET:-85m}
DTYPE=${ALORA_BENCH_DTYPE:-f32}
CTX=${ALORA_BENCH_CTX:-253,1021,2037}
KV=${ALORA_BENCH_KV:-768}
W=${ALORA_BENCH_DIR:-build/bench-cluster}/$PRESET-$DTYPE
REPS=${ALORA_BENCH_REPS:-3}
mkdir -p "$W"
# the worker's private pool must hold a whole plain-LoRA re-prefill of the longest context
MAXCTX=$(tr ',' '\n' <<<"$CTX" | sort -n | tail -1)
WKV=$(( (MAXCTX + 3 + 15) / 16 + 8 ))
[ -f "$W/model/config.json" ] || "$ALORA" make-model --arch llama --preset "$PRESET" --dtype "$DTYPE" --seed 7 \
  "$W/model" >/dev/null
[ -f "$W/certainty/adapter_config.json" ] || "$ALORA" make-adapter --model "$W/model" --targets q,k,v,o \
  --rank 8 --alpha 16 --invocation 500,501,502 --seed 3 "$W/certainty" >/dev/null
RUN=$(mktemp -d /tmp/alora-bench-XXXXXX)
cat >"$W/bench.cfg" <<CFG
run_dir = "$RUN";
log_level = "info";
base = { model = "$W/model"; kv_blocks = $KV; block_size = 16; max_batch_tokens = 512; threads = 1; device = "$DEVICE"; };
worker = { kv_blocks = $WKV; max_batch_tokens = 512; threads = 1; };
router = { request_timeout_ms = 300000; };
intrinsics = ( { name = "certainty"; adapter = "$W/certainty"; replicas = 1; max_tokens = 1; } );
CFG
"$ALORA" up -c "$W/bench.cfg" --ready-file "$RUN/ready" >/dev/null 2>"$W/up.log" &
UP=$!
trap 'kill -TERM $UP 2>/dev/null; wait $UP 2>/dev/null; rm -rf "$RUN"' EXIT
for _ in $(seq 1 600); do [ -f "$RUN/ready" ] && break; sleep 0.1; done
[ -f "$RUN/ready" ] || { echo "cluster not ready"; tail -20 "$W/up.log"; exit 1; }

echo "$PRESET preset ($DTYPE on disk), base.device = $DEVICE ($(grep -o 'arenas ([a-z ]*)' "$W/up.log" | head -1)),"
echo "1 BLAS thread per process on the CPU, 1 generated token, median of $REPS; context = conversation +"
echo "3 invocation tokens."
echo
"$BUILD/bench_cluster" --router "ipc://$RUN/router.ipc" --intrinsic certainty --inv 500,501,502 \
  --ctx "$CTX" --reps "$REPS"
echo
bare=$("$BUILD/bench_rpc" 2000 | grep -E '^\| ipc +\| bare nng req/rep, 64 B' | awk -F'|' '{gsub(/ /,"",$4); print $4}')
echo "Bare NNG req/rep round trip (ipc, 64 B, same run, bench_rpc): ${bare} µs mean. A cluster call makes 4"
echo "round trips (client->router, router->base lease, router->worker, router->base unlease)."
