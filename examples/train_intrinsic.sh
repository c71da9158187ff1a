#!/usr/bin/env bash
# train_intrinsic.sh: trains a real intrinsic with `alora train` on the real trained model
# ../shared/models/aidreams260K and serves it through the cluster's HTTP API (make train-demo).
#
#   1. data: the model writes N dreams itself (`alora generate`, temperature 1, seeds 1..N);
#      labelling rule: "Y" when the dream mentions whispers or dancing (the text, lower-cased,
#      contains "whisper" or "danc"), else "N". 80% train, 20% held out.
#   2. the intrinsic "dream_topic": the dream as a user message, then the invocation
#      "\nQ: whispers or dance?\nA:" and the answer Y / N (one token). Trained as an aLoRA (q,k,v,o,
#      rank 8), and, for the comparison, as a plain LoRA on the same prompts.
#   3. held-out accuracy of the closed-set answer (Y vs N, what constrained decoding picks): the base
#      model zero-shot (the untrained adapter, B = 0), the aLoRA, the plain LoRA.
#   4. serving: `alora up -c deploy/train-demo.cfg`, the held-out dreams through
#      POST /v1/chat/completions (model "dream_topic"), the accuracy of the served answers.
# Writes build/train-demo/ (data, adapters, report.json). Env: N (dreams, default 600), BUILD.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN="$BUILD/alora"
SHARED=${ALORA_SHARED:-../shared}
M="$SHARED/models/aidreams260K/hf"
OUT=build/train-demo
N=${N:-600}
INV=$'\nQ: whispers or dance?\nA:'
[ -f "$M/config.json" ] || { echo "train_intrinsic.sh: $M not found (needs ../shared)"; exit 77; }
[ -x "$BIN" ] || { echo "train_intrinsic.sh: $BIN not built"; exit 1; }
mkdir -p "$OUT"

echo "== 1. $N dreams written by the model itself"
t0=$(date +%s.%N)
: >"$OUT/dreams.jsonl"
for i in $(seq 1 "$N"); do
  "$BIN" generate --model "$M" --prompt "I" --temperature 1.0 --seed "$i" --max-tokens 64 --threads 1 --json \
    2>/dev/null >>"$OUT/dreams.jsonl"
  echo >>"$OUT/dreams.jsonl"
done
python3 - "$OUT" "$M" <<'PYEOF'
import json, sys
out, model = sys.argv[1], sys.argv[2]
vocab = json.load(open(model + "/tokenizer.json"))["model"]["vocab"]
Y, N = vocab["Y"], vocab["N"]  # the one-token answers, as constrained decoding spells "Y" / "N"
dreams = [json.loads(l)["text"].strip() for l in open(out + "/dreams.jsonl") if l.strip()]
rows = []
for d in dreams:
    lab = "Y" if ("whisper" in d.lower() or "danc" in d.lower()) else "N"
    rows.append({"messages": [{"role": "user", "content": d}], "target": [Y if lab == "Y" else N], "label": lab})
cut = len(rows) * 4 // 5
with open(out + "/train.jsonl", "w") as f:
    for r in rows[:cut]:
        f.write(json.dumps(r) + "\n")
with open(out + "/heldout.jsonl", "w") as f:
    for r in rows[cut:]:
        f.write(json.dumps(r) + "\n")
pos = sum(r["label"] == "Y" for r in rows)
print(f"{len(rows)} dreams, {pos} labelled Y ({100 * pos / len(rows):.0f}%), {cut} train / {len(rows) - cut} held out")
PYEOF
echo "   ($(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s)"

common=(--model "$M" --data "$OUT/train.jsonl" --eval "$OUT/heldout.jsonl" --invocation-string "$INV"
        --targets q,k,v,o --rank 8 --alpha 16 --lr 3e-3 --batch 8 --warmup 10 --epochs 8 --seed 1 --json)
echo "== 2. train: the base zero-shot (epochs 0), the aLoRA, the plain LoRA"
"$BIN" train "${common[@]}" --epochs 0 --out "$OUT/zero" >"$OUT/zero.json"
"$BIN" train "${common[@]}" --out "$OUT/alora" 2>"$OUT/alora.log" >"$OUT/alora.json"
tail -1 "$OUT/alora.log"
"$BIN" train "${common[@]}" --plain-lora --out "$OUT/lora" 2>"$OUT/lora.log" >"$OUT/lora.json"
tail -1 "$OUT/lora.log"

echo "== 3. serve the aLoRA: alora up -c deploy/train-demo.cfg, the held-out dreams over HTTP"
READY="$OUT/ready"
rm -f "$READY"
"$BIN" up -c deploy/train-demo.cfg --ready-file "$READY" >"$OUT/up.out" 2>"$OUT/up.log" &
UP=$!
stop_cluster() { if kill -0 "$UP" 2>/dev/null; then kill -TERM "$UP"; wait "$UP" || true; fi; }
trap stop_cluster EXIT
for _ in $(seq 1 300); do
  [ -f "$READY" ] && break
  kill -0 "$UP" 2>/dev/null || { echo "alora up exited early:"; tail -20 "$OUT/up.log"; exit 1; }
  sleep 0.1
done
[ -f "$READY" ] || { echo "cluster not ready after 30 s"; tail -20 "$OUT/up.log"; exit 1; }
python3 - "$OUT" <<'PYEOF'
import json, sys, urllib.request
out = sys.argv[1]
def ask(msgs):
    req = urllib.request.Request("http://127.0.0.1:8093/v1/chat/completions",
                                 data=json.dumps({"model": "dream_topic", "messages": msgs}).encode(),
                                 headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=30))
rows = [json.loads(l) for l in open(out + "/heldout.jsonl")]
ok, first = 0, None
for r in rows:
    res = ask(r["messages"])
    lab = res["intrinsic"]["result"]["label"]
    ok += lab == r["label"]
    first = first or (r["messages"][0]["content"][:70], lab, res["intrinsic"]["result"]["probabilities"], r["label"])
json.dump({"served_accuracy": ok / len(rows), "n": len(rows)}, open(out + "/served.json", "w"))
print(f'   example: "{first[0]}..." -> {first[1]} {first[2]} (label {first[3]})')
PYEOF
stop_cluster
trap - EXIT

echo "== 4. held-out accuracy (closed set Y / N)"
python3 - "$OUT" <<'PYEOF'
import json, sys
out = sys.argv[1]
z, a, l, s = (json.load(open(f"{out}/{k}.json")) for k in ("zero", "alora", "lora", "served"))
rep = {"zero_shot": z["eval"], "alora": {**a["eval"], "train_seconds": a["seconds"], "examples_per_s": a["examples_per_s"]},
       "lora": {**l["eval"], "train_seconds": l["seconds"], "examples_per_s": l["examples_per_s"]},
       "alora_served_http": s}
json.dump(rep, open(out + "/report.json", "w"), indent=1)
print("| model | held-out accuracy | held-out loss | train time |")
print("|---|---|---|---|")
print(f'| base, zero-shot | {z["eval"]["choice_accuracy"]:.3f} | {z["eval"]["loss"]:.3f} | - |')
print(f'| aLoRA (q,k,v,o r8) | {a["eval"]["choice_accuracy"]:.3f} | {a["eval"]["loss"]:.3f} | {a["seconds"]:.1f} s |')
print(f'| plain LoRA (same) | {l["eval"]["choice_accuracy"]:.3f} | {l["eval"]["loss"]:.3f} | {l["seconds"]:.1f} s |')
print(f'| aLoRA served (HTTP, constrained) | {s["served_accuracy"]:.3f} | - | - |')
PYEOF
