#!/usr/bin/env bash
# weights.sh: f32 vs bf16 vs int8 matrix weights on the 85m preset in one run (bench_weights: prefill
# 512 and decode 128 tok/s at 1 and 2 threads, ratios to f32), and llama.cpp's Q8_0 tg128 / pp512
# on the same weights and threads when ../shared/peer can set it up (skipped otherwise; its F32
# numbers are in bench/reports/cpu-2026-11-28.md).
# Knobs: ALORA_BENCH_DIR (work folder, default build/bench-weights), ALORA_BENCH_REPS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
W=${ALORA_BENCH_DIR:-build/bench-weights}
REPS=${ALORA_BENCH_REPS:-3}
mkdir -p "$W"
[ -f "$W/model/config.json" ] || "$BUILD/alora" make-model --arch llama --preset 85m --seed 7 "$W/model" >/dev/null
"$BUILD/bench_weights" "$W/model" 1,2 512 128 "$REPS" | tee "$W/alora.txt" | grep -v '^{'
PEER=../shared/peer
if [ ! -f "$PEER/setup.sh" ] || ! /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
  echo "(llama.cpp comparison skipped: ../shared/peer or Debian's python3-numpy absent)"
  exit 0
fi
[ -x "$W/peer/run.sh" ] || bash "$PEER/setup.sh" "$W/peer" >/dev/null
export PYTHONPATH="$W/peer/root/usr/lib/python3/dist-packages"
[ -f "$W/model.gguf" ] || /usr/bin/python3 "$PEER/hf_to_gguf.py" model "$W/model" "$W/model.gguf" >/dev/null
[ -f "$W/model-q8_0.gguf" ] || "$W/peer/run.sh" llama-quantize "$W/model.gguf" "$W/model-q8_0.gguf" Q8_0 >/dev/null 2>&1
echo
echo "llama.cpp (llama-bench, same weights): tok/s"
echo "| threads | weights | pp512 | tg128 | alora int8 decode / llama.cpp Q8_0 tg128 | alora int8 prefill / llama.cpp Q8_0 pp512 |"
echo "|---|---|---|---|---|---|"
for t in 1 2; do
  for q in Q8_0; do
    f="$W/model.gguf"; [ "$q" = Q8_0 ] && f="$W/model-q8_0.gguf"
    out=$("$W/peer/run.sh" llama-bench -m "$f" -p 512 -n 128 -t "$t" -r "$REPS" -o json 2>/dev/null)
    pp=$(/usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(next(r["avg_ts"] for r in d if r["n_prompt"]>0))' <<<"$out")
    tg=$(/usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(next(r["avg_ts"] for r in d if r["n_gen"]>0))' <<<"$out")
    if [ "$q" = Q8_0 ]; then
      ours=$(grep "\"threads\":$t,\"weights\":\"int8\"" "$W/alora.txt")
      dec=$(/usr/bin/python3 -c 'import json,sys; print(json.loads(sys.argv[1])["decode_tok_s"])' "$ours")
      pre=$(/usr/bin/python3 -c 'import json,sys; print(json.loads(sys.argv[1])["prefill_tok_s"])' "$ours")
      printf '| %s | %s | %.1f | %.1f | %.2f (bound 1.00) | %.2f |\n' "$t" "$q" "$pp" "$tg" \
        "$(echo "$dec / $tg" | bc -l)" "$(echo "$pre / $pp" | bc -l)"
    else
      printf '| %s | %s | %.1f | %.1f | | |\n' "$t" "$q" "$pp" "$tg"
    fi
  done
done
