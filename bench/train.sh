#!/usr/bin/env bash
# train.sh: `alora train` throughput (issue 14 targets), each ratio measured in the same run:
#   - aLoRA training vs torch + PEFT on the CPU (same threads, the 85m preset, 512-token prompts,
#     4-token targets, aLoRA rank 8 on q,k,v,o): independent conversations (one epoch, and EPOCHS
#     epochs, where alora's prefix store serves the later epochs' prefixes), and examples sharing
#     one 512-token conversation with different questions after the invocation (alora's prefix
#     cache computes the conversation once; PEFT recomputes and back-propagates through it);
#   - aLoRA vs plain LoRA in alora on the same data;
#   - peak memory next to the model size.
# The shared conversation runs twice on each side: one example per optimizer step (--batch 1), and
# all 2N examples in one step (--batch 2N: alora stacks their suffixes over the prefix computed once,
# every frozen weight read once for all; PEFT pads them into one tensor). The batched target ratio
# divides by PEFT's faster of its two runs.
# Usage: bench/train.sh [BUILD]; PEFT side when $ALORA_PEFT_PYTHON is a python with torch + peft
# (tests/oracle/requirements.txt), else it is skipped. Knobs: THREADS (2), N (independent
# examples; the shared run has 2N examples on one conversation; 6), EPOCHS (the multi-epoch run; 3), REPS (every run repeated,
# the best examples/s of each kept; 1), PEFT_BATCHED (1; 0 skips PEFT's batched run: ~7 GB of RAM).
# Prints the targets as `RATIO <name>: <value> (target >= <bound>) <met|missed>` lines (bench/run.sh
# collects them), then the table, memory and a JSON line.
set -euo pipefail
BUILD=${1:-build}
BIN="$BUILD/alora"
THREADS=${THREADS:-2}
N=${N:-6}
REPS=${REPS:-1}
PEFT_BATCHED=${PEFT_BATCHED:-1}
EPOCHS=${EPOCHS:-3}
W=$(mktemp -d /tmp/alora-bench-train-XXXXXX)
trap 'rm -rf "$W"' EXIT
"$BIN" make-model --arch llama --preset 85m --seed 7 "$W/model" >/dev/null
python3 - "$W" "$N" <<'PYEOF'
import json, random, sys
w, n = sys.argv[1], int(sys.argv[2])
r = random.Random(5)
inv = [500, 501, 502]
conv = [1] + [r.randrange(10, 500) for _ in range(504)]
with open(w + "/indep.jsonl", "w") as f:
    for i in range(n):   # 512-token prompts: 505 of conversation, the invocation, 4 question tokens
        p = [1] + [r.randrange(10, 500) for _ in range(504)] + inv + [r.randrange(10, 500) for _ in range(4)]
        f.write(json.dumps({"tokens": p, "target": [r.randrange(10, 500) for _ in range(4)]}) + "\n")
with open(w + "/shared.jsonl", "w") as f:
    for i in range(2 * n):  # one conversation, different questions
        p = conv + inv + [r.randrange(10, 500) for _ in range(4)]
        f.write(json.dumps({"tokens": p, "target": [r.randrange(10, 500) for _ in range(4)]}) + "\n")
        if i == 0:
            open(w + "/shared1.jsonl", "w").write(json.dumps({"tokens": p, "target": [7, 8, 9, 10]}) + "\n")
PYEOF
best() { # JSON lines on stdin -> the one with the most examples/s
  python3 -c 'import json, sys; print(json.dumps(max((json.loads(l) for l in sys.stdin if l.strip()), key=lambda d: d["examples_per_s"])))'
}
train() { # data mode-args... -> summary JSON (best of REPS)
  local data=$1; shift
  for _ in $(seq "$REPS"); do
    "$BIN" train --model "$W/model" --data "$W/$data.jsonl" --out "$W/out" --targets q,k,v,o --rank 8 --alpha 16 \
      --epochs 1 --batch 1 --lr 1e-4 --threads "$THREADS" --json "$@" 2>/dev/null
  done | best
}
peft() { # data [batch [epochs]] -> summary JSON (best of REPS)
  for _ in $(seq "$REPS"); do
    "$ALORA_PEFT_PYTHON" bench/train_peft.py --model "$W/model" --data "$W/$1.jsonl" --threads "$THREADS" \
      --invocation 500,501,502 --batch "${2:-1}" --epochs "${3:-1}" 2>/dev/null | tail -1
  done | best
}
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
A_IND=$(train indep --invocation 500,501,502)
A_INDE=$(train indep --invocation 500,501,502 --epochs "$EPOCHS")
A_SH=$(train shared --invocation 500,501,502)
A_SHB=$(train shared --invocation 500,501,502 --batch $((2 * N)))
A_SH1=$(train shared1 --invocation 500,501,502)
L_IND=$(train indep --plain-lora)
P_IND=null; P_SH=null; P_SHB=null; P_INDE=null
if [ -n "${ALORA_PEFT_PYTHON:-}" ]; then
  P_IND=$(peft indep)
  P_INDE=$(peft indep 1 "$EPOCHS")
  P_SH=$(peft shared)
  [ "$PEFT_BATCHED" = 0 ] || P_SHB=$(peft shared $((2 * N)))
fi
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$A_IND" "$A_SH" "$L_IND" "$P_IND" "$P_SH" "$THREADS" "$A_SH1" "$LOAD0" "$LOAD1" "$REPS" "$A_SHB" "$P_SHB" "$A_INDE" "$P_INDE" "$EPOCHS" <<'PYEOF'
import json, sys
a_ind, a_sh, l_ind = (json.loads(x) for x in sys.argv[1:4])
p_ind, p_sh = (json.loads(x) for x in sys.argv[4:6])
th = sys.argv[6]
a_sh1 = json.loads(sys.argv[7])
a_shb, p_shb = json.loads(sys.argv[11]), json.loads(sys.argv[12])
a_inde, p_inde, ne = json.loads(sys.argv[13]), json.loads(sys.argv[14]), int(sys.argv[15])
nb = a_sh["examples"]
# PEFT's faster way through the shared conversation (one example per step or all in one)
p_best = max((p for p in (p_sh, p_shb) if p), key=lambda d: d["examples_per_s"], default=None)
mb = lambda b: b / 1048576
def ratio(name, value, bound):
    print(f"RATIO {name}: {value:.2f} (target >= {bound:.2f}) {'met' if value >= bound else 'missed'}")
if p_ind:
    ratio(f"alora train / PEFT examples/s, aLoRA, independent 512-token conversations, {th} threads",
          a_ind["examples_per_s"] / p_ind["examples_per_s"], 5)
    ratio(f"alora train / PEFT examples/s, aLoRA, independent 512-token conversations, {ne} epochs "
          f"(prefix store), {th} threads", a_inde["examples_per_s"] / p_inde["examples_per_s"], 5)
    ratio(f"alora train / PEFT examples/s, aLoRA, {nb} examples sharing one conversation, batch 1, {th} threads",
          a_sh["examples_per_s"] / p_sh["examples_per_s"], 20)
    ratio(f"alora train / PEFT examples/s, aLoRA, {nb} examples sharing one conversation, one step of {nb} "
          f"(PEFT: faster of batch 1 / {nb}), {th} threads", a_shb["examples_per_s"] / p_best["examples_per_s"], 20)
print(f"load average (1, 5, 15 min) before: {sys.argv[8]}, after: {sys.argv[9]}; best of {sys.argv[10]} run(s) each")
print(f"85m preset, 512-token prompts + 4-token targets, rank 8 on q,k,v,o, batch 1 unless said, {th} threads")
print("| run | alora ex/s | PEFT ex/s | alora / PEFT |")
print("|---|---|---|---|")
def row(name, a, p):
    r = f'{a["examples_per_s"] / p["examples_per_s"]:.1f}x' if p else "(PEFT not run)"
    print(f'| {name} | {a["examples_per_s"]:.3f} | {p["examples_per_s"]:.3f} | {r} |' if p else
          f'| {name} | {a["examples_per_s"]:.3f} | - | {r} |')
row("aLoRA, independent conversations", a_ind, p_ind)
row(f"aLoRA, independent conversations, {ne} epochs (alora: prefix store)", a_inde, p_inde)
row("aLoRA, one shared conversation, batch 1", a_sh, p_sh)
row(f"aLoRA, one shared conversation, batch {nb}", a_shb, p_shb)
if p_best:
    print(f'| aLoRA, one shared conversation: alora batch {nb} / PEFT\'s faster run | {a_shb["examples_per_s"]:.3f} | '
          f'{p_best["examples_per_s"]:.3f} | {a_shb["examples_per_s"] / p_best["examples_per_s"]:.1f}x |')
print(f'| plain LoRA (alora), independent | {l_ind["examples_per_s"]:.3f} | - | aLoRA / LoRA = {a_ind["examples_per_s"] / l_ind["examples_per_s"]:.1f}x |')
print()
# sharing a conversation: the first example computes the prefix, every further one its suffix only
n_sh = a_sh["examples"]
for name, a in (("batch 1", a_sh), (f"batch {n_sh}", a_shb)):
    per = (a["seconds"] - a_sh1["seconds"]) / (n_sh - 1) if n_sh > 1 else float("nan")
    if per > 0:
        print(f'sharing a conversation, {name}: first example (prefix + suffix) {a_sh1["seconds"]:.3f} s, each further '
              f'example {per * 1000:.0f} ms (suffix forward + backward: 11 positions) = {1 / per:.2f} ex/s as the '
              f'number of examples per conversation grows' +
              (f' ({1 / per / p_best["examples_per_s"]:.1f}x PEFT)' if p_best else ""))
    else:  # two separate runs: under load their difference can be noise
        print(f'sharing a conversation, {name}: first example {a_sh1["seconds"]:.3f} s, all {n_sh} {a["seconds"]:.3f} s: '
              f'the per-example cost is lost in the noise of this run (raise REPS)')
print(f'memory: model {mb(a_ind["model_bytes"]):.0f} MiB; peak RSS alora aLoRA {mb(a_ind["peak_rss_bytes"]):.0f} MiB '
      f'(activations {mb(a_ind["peak_activation_bytes"]):.0f} MiB), plain LoRA {mb(l_ind["peak_rss_bytes"]):.0f} MiB '
      f'(activations {mb(l_ind["peak_activation_bytes"]):.0f} MiB)' +
      (f', PEFT {mb(p_ind["peak_rss_bytes"]):.0f} MiB' if p_ind else ""))
ps = a_inde.get("prefix_store") or {}
print(f'{ne} epochs with the prefix store: peak RSS {mb(a_inde["peak_rss_bytes"]):.0f} MiB, the store '
      f'{mb(ps.get("bytes", 0)):.0f} MiB for {ps.get("entries", 0)} prefixes; per example and epoch: first epoch '
      f'{1000 / a_ind["examples_per_s"]:.0f} ms, later epochs '
      f'{1000 * (a_inde["seconds"] - a_ind["seconds"]) / max(1, a_inde["examples"] * (ne - 1)):.0f} ms')
print("json:", json.dumps(dict(alora_indep=a_ind, alora_shared=a_sh, alora_shared_batched=a_shb,
                               alora_shared_first=a_sh1, lora_indep=l_ind, alora_indep_epochs=a_inde, peft_indep_epochs=p_inde, peft_indep=p_ind, peft_shared=p_sh,
                               peft_shared_batched=p_shb)))
PYEOF
