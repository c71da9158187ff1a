#!/usr/bin/env bash
# run.sh: `make bench`: every CPU benchmark, each reported next to a bound measured in the same run,
# then one table of every target ratio (the `RATIO <name>: <value> (target <op> <bound>) <verdict>`
# lines the benchmarks print) beside its bound.
# Knobs (environment): BENCH_ONLY (comma list of sections to run: engine,weights,dispatch,tokenizer,
# rpc,structured,cluster,cluster-int8,batch,train,rag; default all), BENCH_RAG_LOADS (default 1,4,16), BENCH_RAG_DURATION
# (s per run, default 20), ALORA_PEFT_PYTHON (a python with torch + peft: train.sh's PEFT side);
# each section's own knobs are at the top of its script. The whole log is kept in $BUILD/bench.log.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
ONLY=${BENCH_ONLY:-engine,weights,dispatch,tokenizer,rpc,structured,cluster,cluster-int8,batch,train,rag}
LOG="$BUILD/bench.log"
want() { [[ ,$ONLY, == *,$1,* ]]; }
section() { # section NAME TITLE CMD...: run one benchmark, its output to the terminal and the log
  local name=$1 title=$2; shift 2
  want "$name" || return 0
  echo "== $title"
  "$@" || echo "(bench section '$name' failed with status $?)"
  echo
}
{
echo "make bench, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg),"
echo "cpu kernels: $("$BUILD/alora" --version | sed -n 's/^cpu kernels: //p'), OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
echo
section engine "engine: prefill / decode on the 85m preset shape vs sgemm peak and memcpy bandwidth" "$BUILD/bench_engine"
section engine "engine, bf16 weights (cpu-bf16)" "$BUILD/bench_engine" 0 512 128 bf16
section weights "matrix weights: f32 vs bf16 vs int8 on the 85m preset (1 and 2 threads), llama.cpp F32 / Q8_0 beside" \
  bash bench/weights.sh "$BUILD"
section dispatch "CPU kernels: this portable build (variant chosen at run time) vs a -march=native build of the same
   source ($BUILD-native, built here); best of 3 runs each" bash bench/dispatch.sh "$BUILD" "$BUILD-native"
section tokenizer "tokenizer: encode / decode MB/s" "$BUILD/bench_tokenizer"
section rpc "rpc: framed RPC round trip vs bare NNG" "$BUILD/bench_rpc"
section structured "structured outputs: random-schema property test, mask cost per token vs the 85m decode step,
   constrained vs unconstrained decode (128k-vocabulary rows when /tmp/constrain_bpe_128000.tokenizer.json exists)" \
  "$BUILD/bench_structured" --quick
section cluster "cluster: intrinsic TTFT, aLoRA vs plain LoRA, floor and llama-server beside; RPC overhead per call" \
  bash bench/cluster.sh "$BUILD"
section cluster-int8 "cluster with base.weights = int8 (the same TTFT, floor and RPC ratios), llama-server on Q8_0 beside" \
  env ALORA_BENCH_WEIGHTS=int8 bash bench/cluster.sh "$BUILD"
section batch "worker batching: intrinsic calls/s, 8 clients on one worker, batched vs off; base prefills" \
  bash bench/batch.sh "$BUILD"
section train "alora train vs torch + PEFT (PEFT side when ALORA_PEFT_PYTHON is set), aLoRA vs plain LoRA" \
  env N="${BENCH_TRAIN_N:-4}" bash bench/train.sh "$BUILD"
section rag "RAG workload (short: loads ${BENCH_RAG_LOADS:-1,4,16}, ${BENCH_RAG_DURATION:-20} s each; the full run is make bench-rag)" \
  env RAG_LOADS="${BENCH_RAG_LOADS:-1,4,16}" RAG_DURATION="${BENCH_RAG_DURATION:-20}" RAG_GRACE=10 \
  RAG_OUT="$BUILD/bench-rag/short" bash bench/rag_load.sh "$BUILD"
} 2>&1 | tee "$LOG"
FAILED_LOG=$(grep -c "^(bench section '" "$LOG")

echo "== every target ratio beside its bound (from $LOG)"
echo
echo "| ratio | value | target | verdict |"
echo "|---|--:|---|---|"
sed -n 's/^RATIO \(.*\): \([^ ]*\) (target \([^)]*\)) \(.*\)$/| \1 | \2 | \3 | \4 |/p' "$LOG"
n=$(grep -c '^RATIO ' "$LOG")
met=$(grep -c '^RATIO .*) met$' "$LOG")
echo
echo "$met of $n targets met; $FAILED_LOG bench section(s) failed"
[ "$FAILED_LOG" -eq 0 ]
