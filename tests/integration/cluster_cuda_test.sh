#!/usr/bin/env bash
# cluster_cuda_test.sh: the cluster on the GPU end to end. alora-base puts the weights (bf16) and the
# KV pool in CUDA IPC arenas; two workers (two intrinsics) attach them zero-copy from their own
# processes and compute only the post-activation tokens. Checked against (1) the single-process
# engine on the GPU (`alora generate --device cuda`, split where the cluster splits: same kernels,
# so tokens equal and logprobs within 2e-3, usually bitwise) and (2) the same cluster on the CPU
# (tokens equal up to a near-tie of the CPU logits; activation starts and the cached / computed
# token counts equal). Then plain-LoRA mode, 0 KV bytes copied, a clean stop. Skipped (77) without a
# usable CUDA device; before skipping, the whole script runs with the CPU backend on the "GPU" side
# (a self-check of this harness, which fails the test if the harness itself is broken).
# ALORA_CUDA_TEST_DEVICE=cpu forces that mode.
TMP_TAG=cuda
DEV=${ALORA_CUDA_TEST_DEVICE:-cuda}
source "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null || { echo "SKIP: python3 not installed"; exit 77; }
# bf16 weights on disk: the CPU reads them exactly, the GPU keeps them exactly; only activation
# rounding (bf16 GEMM inputs on the GPU) separates the two clusters
"$ALORA" make-model --arch llama --preset tiny --dtype bf16 --seed 21 "$T/model" >/dev/null || exit 1
SELFCHECK=
if [ "$DEV" = cuda ] &&
   ! "$ALORA" generate --device cuda --model "$T/model" --tokens 1,2,3 --max-tokens 1 >/dev/null 2>"$T/probe.err"; then
  SELFCHECK="no usable CUDA backend: $(grep -v '^$' "$T/probe.err" | tail -1)"
  echo "$SELFCHECK: running the harness self-check on the CPU backend"
  DEV=cpu
fi
if [ "$DEV" = cuda ]; then ARENAS="cuda ipc"; else ARENAS="shm"; fi
"$ALORA" make-adapter --model "$T/model" --targets q,k,v,o --rank 8 --alpha 16 --invocation 50,51,52 \
  --seed 3 "$T/cert" >/dev/null || exit 1
"$ALORA" make-adapter --model "$T/model" --targets q,v,gate,up,down --rank 4 --alpha 8 --invocation 60,61 \
  --seed 4 "$T/ans" >/dev/null || exit 1
MODEL="$T/model"

# write_cfg NAME DEVICE
write_cfg() {
  cat >"$T/$1.cfg" <<CFG
run_dir = "$T/run-$1";
base = { model = "$MODEL"; kv_blocks = 256; block_size = 16; threads = 1; device = "$2"; };
worker = { kv_blocks = 64; heartbeat_ms = 200; };
router = { max_queue = 16; worker_ttl_ms = 1500; request_timeout_ms = 30000; };
up = { grace_ms = 5000; backoff_min_ms = 100; backoff_max_ms = 2000; };
intrinsics = (
  { name = "certainty"; adapter = "$T/cert"; replicas = 1; max_tokens = 6; },
  { name = "answerability"; adapter = "$T/ans"; replicas = 1; max_tokens = 6; }
);
CFG
}

convo=$(seq -s, 3 2 90)
CASES=(
  "certainty|$convo,50,51,52,7,8"
  "certainty|$convo,50,51,52"
  "certainty|50,51,52,$convo"
  "certainty|$convo,50,51,52,9,50,51,52,4"
  "certainty|$convo,50,51,9"
  "answerability|$convo,60,61,12,13"
  "answerability|$(seq -s, 1 1 70),60,60,61"
  "answerability|$(for i in $(seq 0 299); do printf '%d,' $((5 + i * 7 % 240)); done)60,61"
)
adapter_of() { [ "$1" = certainty ] && echo "$T/cert" || echo "$T/ans"; }

# run_cases NAME: every case through the running cluster (a fresh first token per case so the
# base prefills exactly [0, activation start) once), then mode lora on the last one.
run_cases() {
  local i=0 c intr toks
  for c in "${CASES[@]}"; do
    intr=${c%%|*}; toks="$((200 + i)),${c#*|}"
    "$ALORA" invoke --router "ipc://$T/run-$1/router.ipc" --intrinsic "$intr" --tokens "$toks" --max-tokens 6 \
      --top-logprobs 5 --ignore-eos --json >"$T/$1.case$i.json" 2>>"$T/$1.invoke.err" ||
      fail "$1: invoke case $i ($intr) failed: $(tail -1 "$T/$1.invoke.err")"
    echo "$intr|$toks" >"$T/case$i.in"
    i=$((i + 1))
  done
  "$ALORA" invoke --router "ipc://$T/run-$1/router.ipc" --intrinsic certainty --tokens "$toks" --max-tokens 6 \
    --top-logprobs 5 --ignore-eos --mode lora --json >"$T/$1.lora.json" 2>>"$T/$1.invoke.err" ||
    fail "$1: mode lora failed"
}

# ---------------------------------------------------------------- GPU cluster
write_cfg gpu "$DEV"
start_up gpu || { fail "GPU cluster did not become ready"; exit 1; }
ok "GPU cluster ready: $(cat "$T/gpu.out")"
grep -q "arenas ($ARENAS)" "$T/gpu.err" && ok "base: weights and KV in $ARENAS arenas" ||
  fail "base did not report CUDA arenas: $(grep -m1 arenas "$T/gpu.err")"
n_att=$(grep -c "zero copy, $ARENAS" "$T/gpu.err")
[ "$n_att" -ge 2 ] && ok "$n_att workers attached the $ARENAS arenas zero-copy" || fail "workers attached over $ARENAS: $n_att"
run_cases gpu
stop_up gpu
# each worker logs its private-pool copy counter when it stops
copied=$(grep -o "engine: [0-9]* KV bytes copied" "$T/gpu.err" | awk '{s += $2; n++} END {print n "," s}')
[ "${copied%,*}" -ge 2 ] && [ "${copied#*,}" = 0 ] &&
  ok "workers copied 0 KV bytes (leased base KV read in place, $ARENAS)" || fail "KV copies (workers,bytes): $copied"

# single-process engine on the GPU, split where the cluster split (the base prefilled [0, p))
i=0
for c in "${CASES[@]}"; do
  IFS='|' read -r intr toks <"$T/case$i.in"
  s=$(jq -r .activation_start "$T/gpu.case$i.json")
  n=$(tr ',' '\n' <<<"$toks" | wc -l)
  if [ "$s" = null ]; then p=$((n - 1)); else p=$s; fi
  [ "$p" -gt 0 ] || p=$n
  "$ALORA" generate --device "$DEV" --model "$MODEL" --adapter "$(adapter_of "$intr")" --tokens "$toks" \
    --max-tokens 6 --top-logprobs 5 --ignore-eos --json --chunk "$p" >"$T/eng.case$i.json" 2>/dev/null ||
    fail "generate --device cuda case $i failed"
  i=$((i + 1))
done

# ---------------------------------------------------------------- CPU cluster
write_cfg cpu cpu
start_up cpu || { fail "CPU cluster did not become ready"; exit 1; }
ok "CPU cluster ready"
run_cases cpu
stop_up cpu

# ---------------------------------------------------------------- compare
python3 - "$T" "${#CASES[@]}" <<'PY'
import json, sys
T, n = sys.argv[1], int(sys.argv[2])
fails = 0
def load(p):
    try:
        return json.load(open(p))
    except Exception as e:
        print(f"FAIL: {p}: {e}"); return None
def say(ok, msg):
    global fails
    print(("ok: " if ok else "FAIL: ") + msg)
    fails += 0 if ok else 1
def tops(r):  # per position: {id: logprob}
    return [{e["id"]: e["logprob"] for e in row} for row in r["top_logprobs"]]
near = 0
for i in range(n):
    g, e, c = load(f"{T}/gpu.case{i}.json"), load(f"{T}/eng.case{i}.json"), load(f"{T}/cpu.case{i}.json")
    if not (g and e and c):
        fails += 1; continue
    # (1) GPU cluster == GPU single-process engine
    same = g["tokens"] == e["tokens"] and g["activation_start"] == e["activation_start"]
    d = max((abs(a["logprob"] - b["logprob"]) for ra, rb in zip(g["top_logprobs"], e["top_logprobs"])
             for a, b in zip(ra, rb)), default=0.0)
    say(same and d <= 2e-3, f"case {i}: GPU cluster == GPU engine (tokens, activation_start {g['activation_start']}; "
        f"logprobs {'bitwise' if d == 0 else f'max diff {d:.2e}'})")
    # (2) GPU cluster vs CPU cluster
    meta = all(g[k] == c[k] for k in ("activation_start", "prefix_cached_tokens", "computed_tokens"))
    say(meta, f"case {i}: activation_start {g['activation_start']}, prefix_cached_tokens "
        f"{g['prefix_cached_tokens']}/{c['prefix_cached_tokens']}, computed_tokens {g['computed_tokens']}/{c['computed_tokens']} (gpu/cpu)")
    ct, gt = tops(c), tops(g)
    agree, why = 0, "all equal"
    for j, (a, b) in enumerate(zip(c["tokens"], g["tokens"])):
        if a == b:
            agree += 1
            continue
        # accepted only as a near-tie of the CPU's own logits
        gap = ct[j][a] - ct[j].get(b, -1e9)
        why = f"token {j} differs ({b} vs {a}), CPU logprob gap {gap:.3g}"
        if gap < 0.05:
            near += 1
            why += " (near-tie, accepted; later tokens follow another path)"
        else:
            say(False, f"case {i}: GPU tokens {g['tokens']} vs CPU {c['tokens']}: {why}")
            agree = -1
        break
    if agree >= 0:
        dl = max((abs(gt[j][t] - ct[j][t]) for j, t in enumerate(c["tokens"][:agree]) if t in gt[j]), default=0.0)
        say(dl < 0.1, f"case {i}: GPU vs CPU cluster: {agree}/{len(c['tokens'])} tokens equal ({why}); "
            f"chosen-token logprob max diff {dl:.3g}")
gl, cl = load(f"{T}/gpu.lora.json"), load(f"{T}/cpu.lora.json")
if gl and cl:
    say(gl["prefix_cached_tokens"] == 0 and gl["computed_tokens"] == cl["computed_tokens"],
        f"mode lora on the GPU recomputes everything ({gl['computed_tokens']} tokens, CPU {cl['computed_tokens']})")
    a, b = cl["tokens"][0], gl["tokens"][0]
    gap = tops(cl)[0][a] - tops(cl)[0].get(b, -1e9)
    say(a == b or gap < 0.05, f"mode lora first token GPU {b} CPU {a}" + ("" if a == b else f" (near-tie, gap {gap:.3g})"))
print(f"near-ties accepted: {near}")
sys.exit(1 if fails else 0)
PY
[ $? -eq 0 ] || FAILS=$((FAILS + 1))

echo "cluster_cuda ($DEV): $FAILS failure(s)"
if [ -n "$SELFCHECK" ] && [ "$FAILS" -eq 0 ]; then
  echo "SKIP: $SELFCHECK (harness self-check on the CPU passed; the GPU path is not verified here)"
  exit 77
fi
[ "$FAILS" -eq 0 ]
