#!/usr/bin/env bash
# dispatch.sh BUILD NATIVE_BUILD: the engine benchmark of the portable build (CPU kernels compiled
# per ISA, one chosen from cpuid at start) against a -march=native build of the same source, run
# alternately on the same machine; prints both and their ratio (goal: the portable build within 5%).
set -euo pipefail
BUILD=${1:-build}
NATIVE=${2:-$BUILD-native}
cmake -S . -B "$NATIVE" -DALORA_NATIVE=ON -DENABLE_CUDA=OFF >/dev/null
cmake --build "$NATIVE" --target bench_engine -j"$(nproc)" >/dev/null
runs=${ALORA_BENCH_RUNS:-3}
for i in $(seq 1 "$runs"); do
  for b in "$BUILD" "$NATIVE"; do
    "$b/bench_engine" | tail -1 | sed "s|^|$b |"
  done
done | python3 -c '
import json, sys
best = {}
for line in sys.stdin:
    build, js = line.split(" ", 1)
    o = json.loads(js)
    b = best.setdefault(build, {"prefill": 0.0, "decode": 0.0})
    b["prefill"] = max(b["prefill"], o["prefill_tok_s"])
    b["decode"] = max(b["decode"], o["decode_tok_s"])
port, nat = sys.argv[1], sys.argv[2]
print("| measure | portable (dispatched) | native | portable / native |")
print("|---|---|---|---|")
for k in ("prefill", "decode"):
    print("| %s tok/s | %.1f | %.1f | %.3f |" % (k, best[port][k], best[nat][k], best[port][k] / best[nat][k]))
for k in ("prefill", "decode"):
    r = best[port][k] / best[nat][k]
    print("RATIO portable build / -march=native build, %s: %.3f (target >= 0.95) %s" % (k, r, "met" if r >= 0.95 else "missed"))
print(json.dumps({"dispatch_prefill_ratio": round(best[port]["prefill"] / best[nat]["prefill"], 4),
                  "dispatch_decode_ratio": round(best[port]["decode"] / best[nat]["decode"], 4)}))
' "$BUILD" "$NATIVE"
