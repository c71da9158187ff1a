#!/usr/bin/env bash
# run.sh: `make bench`: every CPU benchmark, each reported next to a bound measured in the same run.
set -euo pipefail
BUILD=${1:-build}
echo "== engine: prefill / decode on the 85m preset shape vs sgemm peak and memcpy bandwidth"
"$BUILD/bench_engine"
echo
echo "== engine, bf16 weights (cpu-bf16)"
"$BUILD/bench_engine" 0 512 128 bf16
echo
echo "== matrix weights: f32 vs bf16 vs int8 on the 85m preset (1 and 2 threads), llama.cpp F32 / Q8_0 beside"
bash bench/weights.sh "$BUILD"
echo
echo "== CPU kernels: this portable build (variant chosen at run time: $("$BUILD/alora" --version | sed -n 's/^cpu kernels: //p'))"
echo "   vs a -march=native build of the same source ($BUILD-native, built here); best of 3 runs each"
bash bench/dispatch.sh "$BUILD" "$BUILD-native"
echo
echo "== tokenizer: encode / decode MB/s"
"$BUILD/bench_tokenizer"
echo
echo "== rpc: framed RPC round trip vs bare NNG"
"$BUILD/bench_rpc"
echo
echo "== structured outputs: random-schema property test, mask cost per token vs the 85m decode step,"
echo "   constrained vs unconstrained decode (128k-vocabulary rows when /tmp/constrain_bpe_128000.tokenizer.json exists)"
"$BUILD/bench_structured" --quick
if [ -x bench/cluster.sh ]; then
  echo
  echo "== cluster: intrinsic TTFT, aLoRA vs plain LoRA"
  bash bench/cluster.sh "$BUILD"
fi
echo; echo "== alora train vs torch + PEFT (\$ALORA_PEFT_PYTHON; alora alone without it)"; bash bench/train.sh "$BUILD"
