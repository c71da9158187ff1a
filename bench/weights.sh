#!/usr/bin/env bash
# weights.sh: f32 vs bf16 vs int8 matrix weights on the 85m preset in one run (bench_weights: prefill
# 512 and decode 128 tok/s at 1 and 2 threads, ratios to f32), and llama.cpp's Q8_0 tg128 / pp512
# on the same weights and threads when ../shared/peer can set it up (skipped otherwise; its F32
# numbers are in bench/reports/cpu-2026-11-28.md). Each repetition runs every alora format and then
# llama-bench once, so both see the same machine; each figure is the best over the repetitions.
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
W=$(readlink -f "$W") # ../shared/peer/setup.sh needs an absolute folder
rm -f "$W"/alora-rep*.txt "$W"/llama-t*-rep*.json
[ -f "$W/model/config.json" ] || "$BUILD/alora" make-model --arch llama --preset 85m --seed 7 "$W/model" >/dev/null
PEER=../shared/peer
peer=0
if [ -f "$PEER/setup.sh" ] && /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
  [ -x "$W/peer/run.sh" ] || bash "$PEER/setup.sh" "$W/peer" >/dev/null
  export PYTHONPATH="$W/peer/root/usr/lib/python3/dist-packages"
  [ -f "$W/model.gguf" ] || /usr/bin/python3 "$PEER/hf_to_gguf.py" model "$W/model" "$W/model.gguf" >/dev/null
  [ -f "$W/model-q8_0.gguf" ] || "$W/peer/run.sh" llama-quantize "$W/model.gguf" "$W/model-q8_0.gguf" Q8_0 >/dev/null 2>&1
  peer=1
fi
for rep in $(seq 1 "$REPS"); do
  "$BUILD/bench_weights" "$W/model" "$THREADS" 512 128 1 >"$W/alora-rep$rep.txt"
  [ "$rep" = 1 ] && head -1 "$W/alora-rep1.txt" | sed "s/best of 1 (formats interleaved)/best of $REPS runs (formats interleaved, llama.cpp after alora in each)/"
  if [ "$peer" = 1 ]; then
    for t in ${THREADS//,/ }; do
      "$W/peer/run.sh" llama-bench -m "$W/model-q8_0.gguf" -p 512 -n 128 -t "$t" -r 1 -o json >"$W/llama-t$t-rep$rep.json" 2>/dev/null
    done
  fi
done
[ "$peer" = 1 ] || echo "(llama.cpp comparison skipped: ../shared/peer or Debian's python3-numpy absent)"
/usr/bin/python3 - "$W" "$THREADS" "$REPS" "$peer" <<'PY'
import json, sys
w, threads, reps, peer = sys.argv[1], [int(t) for t in sys.argv[2].split(",")], int(sys.argv[3]), sys.argv[4] == "1"
best = {}  # (threads, weights) -> [prefill, decode, mib]
for rep in range(1, reps + 1):
    for l in open(f"{w}/alora-rep{rep}.txt"):
        if l.startswith("{"):
            d = json.loads(l)
            b = best.setdefault((d["threads"], d["weights"]), [0.0, 0.0, d["mib"]])
            b[0], b[1] = max(b[0], d["prefill_tok_s"]), max(b[1], d["decode_tok_s"])
def ratio(name, v, bound):
    print("RATIO %s: %.2f (target >= %.2f) %s" % (name, v, bound, "met" if v >= bound else "missed"))
def word(t):
    return "1 thread" if t == 1 else "%d threads" % t
print("| threads | weights | MiB | prefill tok/s | decode tok/s | prefill / f32 | decode / f32 |")
print("|---|---|---|---|---|---|---|")
for t in threads:
    f = best[(t, "f32")]
    for fmt in ("f32", "bf16", "int8"):
        b = best[(t, fmt)]
        print("| %d | %s | %.1f | %.1f | %.1f | %.2f | %.2f |" % (t, fmt, b[2], b[0], b[1], b[0] / f[0], b[1] / f[1]))
lines = [("int8 prefill / f32 prefill, " + word(t), best[(t, "int8")][0] / best[(t, "f32")][0]) for t in threads]
if peer:
    print()
    print("llama.cpp Q8_0 (llama-bench, same weights, best of %d): tok/s" % reps)
    print("| threads | pp512 | tg128 | alora int8 decode / Q8_0 tg128 | alora int8 prefill / Q8_0 pp512 |")
    print("|---|---|---|---|---|")
    for t in threads:
        pp = tg = 0.0
        for rep in range(1, reps + 1):
            for r in json.load(open(f"{w}/llama-t{t}-rep{rep}.json")):
                if r["n_prompt"] > 0:
                    pp = max(pp, r["avg_ts"])
                if r["n_gen"] > 0:
                    tg = max(tg, r["avg_ts"])
        i8 = best[(t, "int8")]
        print("| %d | %.1f | %.1f | %.2f | %.2f |" % (t, pp, tg, i8[1] / tg, i8[0] / pp))
        lines.append(("int8 decode / llama.cpp Q8_0 tg128, " + word(t), i8[1] / tg))
print()
for name, v in lines:
    ratio(name, v, 1.00)
PY
