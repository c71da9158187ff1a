#!/usr/bin/env bash
# cluster.sh: intrinsic TTFT through a local cluster on the 85m preset, aLoRA vs plain LoRA at 256,
# 1024 and ~2048 tokens of context, and the RPC overhead per call (client wall time minus the compute
# the base and the worker report: client->router, router->base lease/unlease and router->worker hops)
# next to a bare NNG round trip measured in the same run. Prints markdown.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
ALORA="$BUILD/alora"
W=${ALORA_BENCH_DIR:-build/bench-cluster}
REPS=${ALORA_BENCH_REPS:-3}
mkdir -p "$W"
[ -f "$W/model/config.json" ] || "$ALORA" make-model --arch llama --preset 85m --seed 7 "$W/model" >/dev/null
[ -f "$W/certainty/adapter_config.json" ] || "$ALORA" make-adapter --model "$W/model" --targets q,k,v,o \
  --rank 8 --alpha 16 --invocation 500,501,502 --seed 3 "$W/certainty" >/dev/null
RUN=$(mktemp -d /tmp/alora-bench-XXXXXX)
cat >"$W/bench.cfg" <<CFG
run_dir = "$RUN";
log_level = "warn";
base = { model = "$W/model"; kv_blocks = 768; block_size = 16; max_batch_tokens = 512; threads = 1; device = "cpu"; };
worker = { kv_blocks = 160; max_batch_tokens = 512; threads = 1; };
router = { request_timeout_ms = 300000; };
intrinsics = ( { name = "certainty"; adapter = "$W/certainty"; replicas = 1; max_tokens = 1; } );
CFG
"$ALORA" up -c "$W/bench.cfg" --ready-file "$RUN/ready" >/dev/null 2>"$W/up.log" &
UP=$!
trap 'kill -TERM $UP 2>/dev/null; wait $UP 2>/dev/null; rm -rf "$RUN"' EXIT
for _ in $(seq 1 600); do [ -f "$RUN/ready" ] && break; sleep 0.1; done
[ -f "$RUN/ready" ] || { echo "cluster not ready"; tail -20 "$W/up.log"; exit 1; }

echo "85m preset (12 layers, hidden 768), CPU, 1 BLAS thread per process, 1 generated token, median of $REPS;"
echo "context = conversation + 3 invocation tokens; max_position_embeddings is 2048."
echo
"$BUILD/bench_cluster" --router "ipc://$RUN/router.ipc" --intrinsic certainty --inv 500,501,502 \
  --ctx 253,1021,2037 --reps "$REPS"
echo
bare=$("$BUILD/bench_rpc" 2000 | grep -E '^\| ipc +\| bare nng req/rep, 64 B' | awk -F'|' '{gsub(/ /,"",$4); print $4}')
echo "Bare NNG req/rep round trip (ipc, 64 B, same run, bench_rpc): ${bare} µs mean. A cluster call makes 4"
echo "round trips (client->router, router->base lease, router->worker, router->base unlease)."
