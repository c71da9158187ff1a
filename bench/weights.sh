#!/usr/bin/env bash
# weights.sh: f32 vs bf16 vs int8 matrix weights on the 85m preset in one run (bench_weights: prefill
# 512 and decode 128 tok/s at 1 and 2 threads, ratios to f32), and llama.cpp's Q8_0 tg128 / pp512
# on the same weights and threads when ../shared/peer can set it up (skipped otherwise; its F32
# numbers are in bench/reports/cpu-2026-11-28.md).
# Prints the issue-15 targets as RATIO lines (bench/run.sh's summary): int8 prefill / f32 prefill
# and int8 decode / llama.cpp Q8_0 tg128, at each thread count.
# Knobs: ALORA_BENCH_DIR (work folder, default build/bench-weights), ALORA_BENCH_REPS (repetitions,
# best of; default 3), ALORA_BENCH_THREADS (thread counts, default 1,2).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
W=${ALORA_BENCH_DIR:-build/bench-weights}
REPS=${ALORA_BENCH_REPS:-3}
THREADS=${ALORA_BENCH_THREADS:-1,2}
mkdir -p "$W"
[ -f "$W/model/config.json" ] || "$BUILD/alora" make-model --arch llama --preset 85m --seed 7 "$W/model" >/dev/null
"$BUILD/bench_weights" "$W/model" "$THREADS" 512 128 "$REPS" | tee "$W/alora.txt" | grep -v '^{'
# ratio NAME VALUE BOUND: one RATIO line, target >= BOUND
ratio() {
  /usr/bin/python3 -c 'import sys; n, v, b = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
print("RATIO %s: %.2f (target >= %.2f) %s" % (n, v, b, "met" if v >= b else "missed"))' "$@"
}
threads_word() { [ "$1" = 1 ] && echo "1 thread" || echo "$1 threads"; }
field() { # field THREADS WEIGHTS KEY: from bench_weights' JSON lines
  /usr/bin/python3 -c 'import json,sys
for l in open(sys.argv[1]):
    if l.startswith("{"):
        d = json.loads(l)
        if d["threads"] == int(sys.argv[2]) and d["weights"] == sys.argv[3]: print(d[sys.argv[4]])' "$W/alora.txt" "$@"
}
echo
for t in ${THREADS//,/ }; do
  ratio "int8 prefill / f32 prefill, $(threads_word "$t")" "$(field "$t" int8 prefill_vs_f32)" 1.00
done
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
lines=()
for t in ${THREADS//,/ }; do
  out=$("$W/peer/run.sh" llama-bench -m "$W/model-q8_0.gguf" -p 512 -n 128 -t "$t" -r "$REPS" -o json 2>/dev/null)
  pp=$(/usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(next(r["avg_ts"] for r in d if r["n_prompt"]>0))' <<<"$out")
  tg=$(/usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(next(r["avg_ts"] for r in d if r["n_gen"]>0))' <<<"$out")
  dec=$(field "$t" int8 decode_tok_s)
  pre=$(field "$t" int8 prefill_tok_s)
  r=$(echo "$dec / $tg" | bc -l)
  printf '| %s | Q8_0 | %.1f | %.1f | %.2f (bound 1.00) | %.2f |\n' "$t" "$pp" "$tg" "$r" "$(echo "$pre / $pp" | bc -l)"
  lines+=("$(ratio "int8 decode / llama.cpp Q8_0 tg128, $(threads_word "$t")" "$r" 1.00)")
done
echo
printf '%s\n' "${lines[@]}"
