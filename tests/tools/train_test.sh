#!/usr/bin/env bash
# train_test.sh: `alora train` end to end on the tiny PEFT fixture model: the loss falls, the summary
# JSON, the PEFT adapter it writes is served by `alora generate` (and, with $ALORA_PEFT_PYTHON, loaded
# by PEFT with equal logits), resume from a checkpoint lands on the same weights as one run, the
# messages data path, and clear errors on bad input.
set -u
BIN=${ALORA_BIN:-build/alora}
[ -x "$BIN" ] || { echo "skip: $BIN not built"; exit 77; }
PY=$(command -v python3) || { echo "skip: python3 missing"; exit 77; }
T=$(mktemp -d /tmp/alora-test-XXXXXX)
trap 'rm -rf "$T"' EXIT
M=tests/fixtures/oracle/llama_f32
fail=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; shift; for l in "$@"; do echo "  $l"; done; fail=1; }
expect_rc() { # name want_rc got_rc stderr_file must_contain
    if [ "$3" != "$2" ]; then bad "$1" "exit $3, want $2" "$(cat "$4")"; return; fi
    if [ -n "${5:-}" ] && ! grep -qF -- "$5" "$4"; then bad "$1" "stderr lacks '$5'" "$(cat "$4")"; return; fi
    ok "$1"
}

# a learnable rule: the label (100 / 101) is whether the first token after BOS is < 135
"$PY" - "$T" <<'PYEOF'
import json, random, sys
r = random.Random(1)
d = sys.argv[1]
with open(d + "/train.jsonl", "w") as f, open(d + "/eval.jsonl", "w") as g:
    for i in range(96):
        toks = [1] + [r.randrange(20, 250) for _ in range(r.randrange(8, 30))]
        lab = 100 if toks[1] < 135 else 101
        (f if i < 64 else g).write(json.dumps({"tokens": toks + [7, 8, 9], "target": [lab]}) + "\n")
PYEOF

common=(--model "$M" --data "$T/train.jsonl" --eval "$T/eval.jsonl" --invocation 7,8,9 --rank 4
        --lr 5e-3 --batch 4 --seed 3 --threads 1)
"$BIN" train "${common[@]}" --epochs 0 --out "$T/zero" --json >"$T/zero.json" 2>"$T/err"
expect_rc "epochs 0 evaluates the base" 0 $? "$T/err"
"$BIN" train "${common[@]}" --epochs 6 --save-every 40 --out "$T/a" --json >"$T/a.json" 2>"$T/err"
expect_rc "train aLoRA" 0 $? "$T/err"
grep -q "^step 96/96 epoch 6 loss .* tok/s .* ETA" "$T/err" && ok "progress lines" || bad "progress lines" "$(tail -3 "$T/err")"
grep -q "^prefix store: up to [0-9]* MiB; the 64 examples' prefixes need [0-9]* MiB at most$" "$T/err" \
    && ok "prefix store line" || bad "prefix store line" "$(head -3 "$T/err")"
if "$PY" - "$T/zero.json" "$T/a.json" "$T/a" <<'PYEOF'
import json, os, sys
z, a = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert a["mode"] == "alora" and a["steps"] == 96 and a["examples"] == 64, a
for k in ("tokens_per_s", "examples_per_s", "peak_activation_bytes", "peak_rss_bytes", "model_bytes", "seconds"):
    assert a[k] > 0, k
# the base (B = 0) is at chance; training lowers the held-out loss and beats it
assert a["eval"]["loss"] < z["eval"]["loss"] - 0.2, (z["eval"], a["eval"])
assert a["eval"]["accuracy"] > z["eval"]["accuracy"], (z["eval"], a["eval"])
# 6 epochs: the prefix store keeps every example's prefix K/V from epoch 1 and serves epochs 2-6
ps = a["prefix_store"]
assert ps["entries"] > 0 and ps["refused"] == 0 and ps["hit_positions"] > 0 and ps["bytes"] > 0, ps
cfg = json.load(open(os.path.join(sys.argv[3], "adapter_config.json")))
assert cfg["alora_invocation_tokens"] == [7, 8, 9] and cfg["r"] == 4 and cfg["peft_type"] == "LORA"
assert sorted(cfg["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]
PYEOF
then ok "summary JSON, held-out loss and accuracy beat the base"; else bad "summary JSON" "$(cat "$T/zero.json" "$T/a.json")"; fi

# the adapter is served by the engine: activation at the invocation
toks=1,50,60,70,7,8,9
"$BIN" generate --model "$M" --adapter "$T/a" --tokens $toks --max-tokens 1 --top-logprobs 3 --json >"$T/gen" 2>"$T/err"
expect_rc "generate with the trained adapter" 0 $? "$T/err"
"$PY" -c "import json,sys; o=json.load(open('$T/gen')); assert o['activation_start']==4 and o['tokens'][0] in (100,101), o" \
    && ok "served: activation start, a label answer" || bad "served" "$(cat "$T/gen")"
if [ -n "${ALORA_PEFT_PYTHON:-}" ]; then
    "$ALORA_PEFT_PYTHON" tests/oracle/gen_train_fixtures.py --check-adapter "$T/a" --model "$M" --tokens $toks \
        >"$T/peft" 2>"$T/err"
    "$PY" - "$T/gen" "$T/peft" <<'PYEOF' && ok "PEFT loads it, same logprobs" || bad "PEFT logits" "$(cat "$T/err")"
import json, math, sys
g, p = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
l = p["logits"]; m = max(l); z = m + math.log(sum(math.exp(x - m) for x in l))
for e in g["top_logprobs"][0]:
    assert abs(e["logprob"] - (l[e["id"]] - z)) < 1e-4, (e, l[e["id"]] - z)
PYEOF
else
    echo "skip PEFT load check (set ALORA_PEFT_PYTHON to the oracle venv's python)"
fi

# resume from checkpoint-40 lands on the same weights as the uninterrupted run
[ -f "$T/a/checkpoint-40/optimizer.safetensors" ] && ok "checkpoint written" || bad "checkpoint" "$(ls -R "$T/a")"
"$BIN" train "${common[@]}" --epochs 6 --resume "$T/a/checkpoint-40" --out "$T/r" --json >"$T/r.json" 2>"$T/err"
expect_rc "resume" 0 $? "$T/err"
grep -q "^step 41/96" "$T/err" && ok "resume starts at step 41" || bad "resume step" "$(head -2 "$T/err")"
"$PY" - "$T/a/adapter_model.safetensors" "$T/r/adapter_model.safetensors" <<'PYEOF' && ok "resumed weights equal" || bad "resumed weights differ"
import json, struct, sys
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); d = b[8 + n:]
    return {k: struct.unpack("<%df" % ((v["data_offsets"][1] - v["data_offsets"][0]) // 4),
                             d[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in h.items() if k != "__metadata__"}
a, r = load(sys.argv[1]), load(sys.argv[2])
assert a.keys() == r.keys()
worst = max(abs(x - y) / (1e-3 + abs(x)) for k in a for x, y in zip(a[k], r[k]))
assert worst < 1e-3, worst
PYEOF

# the same run without the prefix store: the same weights (up to the rounding of a prefix computed
# in two pieces), no store in the summary
"$BIN" train "${common[@]}" --epochs 6 --prefix-store-mb 0 --out "$T/n" --json >"$T/n.json" 2>"$T/err"
expect_rc "train without the prefix store" 0 $? "$T/err"
"$PY" - "$T/a/adapter_model.safetensors" "$T/n/adapter_model.safetensors" "$T/n.json" <<'PYEOF' && ok "prefix store: same weights as without" || bad "prefix store changes the weights"
import json, struct, sys
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); d = b[8 + n:]
    return {k: struct.unpack("<%df" % ((v["data_offsets"][1] - v["data_offsets"][0]) // 4),
                             d[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in h.items() if k != "__metadata__"}
a, r = load(sys.argv[1]), load(sys.argv[2])
assert "prefix_store" not in json.load(open(sys.argv[3]))
worst = max(abs(x - y) / (1e-3 + abs(x)) for k in a for x, y in zip(a[k], r[k]))
assert worst < 1e-3, worst
PYEOF
"$BIN" train "${common[@]}" --epochs 1 --prefix-store-mb -1 --out "$T/bad" 2>"$T/err" >/dev/null
expect_rc "--prefix-store-mb -1 refused" 2 $? "$T/err" "--prefix-store-mb"

# plain LoRA on the same data
"$BIN" train --model "$M" --data "$T/train.jsonl" --plain-lora --rank 4 --lr 5e-3 --batch 4 --epochs 1 \
    --out "$T/l" --json >"$T/l.json" 2>"$T/err"
expect_rc "train plain LoRA" 0 $? "$T/err"
"$PY" -c "import json; c=json.load(open('$T/l/adapter_config.json')); assert 'alora_invocation_tokens' not in c" \
    && ok "plain LoRA config" || bad "plain LoRA config"

# messages data needs a tokenizer: the fixture model has none
echo '{"messages": [{"role": "user", "content": "hi"}], "completion": "yes"}' >"$T/msg.jsonl"
"$BIN" train --model "$M" --data "$T/msg.jsonl" --plain-lora --out "$T/x" 2>"$T/err" >/dev/null
expect_rc "messages without tokenizer" 1 $? "$T/err" "tokenizer.json"

# bad input
printf '{"tokens": [1, 2, 3], "target": [5]}\n' >"$T/noinv.jsonl"
"$BIN" train --model "$M" --data "$T/noinv.jsonl" --invocation 7,8,9 --out "$T/x" 2>"$T/err" >/dev/null
expect_rc "example without the invocation" 1 $? "$T/err" "noinv.jsonl: example 1"
printf '{"tokens": [1, 2, 3]}\n' >"$T/notgt.jsonl"
"$BIN" train --model "$M" --data "$T/notgt.jsonl" --plain-lora --out "$T/x" 2>"$T/err" >/dev/null
expect_rc "missing target" 1 $? "$T/err" "notgt.jsonl:1: \"target\""
printf 'not json\n' >"$T/bad.jsonl"
"$BIN" train --model "$M" --data "$T/bad.jsonl" --plain-lora --out "$T/x" 2>"$T/err" >/dev/null
expect_rc "malformed line" 1 $? "$T/err" "bad.jsonl:1: not a JSON object"
printf '{"tokens": [1, 7, 8, 9, 99999], "target": [5]}\n' >"$T/big.jsonl"
"$BIN" train --model "$M" --data "$T/big.jsonl" --invocation 7,8,9 --out "$T/x" 2>"$T/err" >/dev/null
expect_rc "token outside the vocabulary" 1 $? "$T/err" "outside the vocabulary"
"$BIN" train --model "$M" --data "$T/train.jsonl" --out "$T/x" 2>"$T/err" >/dev/null
expect_rc "no mode" 2 $? "$T/err" "exactly one of --invocation"
"$BIN" train --model "$M" --data "$T/train.jsonl" --plain-lora --targets q,zz --out "$T/x" 2>"$T/err" >/dev/null
expect_rc "bad target" 2 $? "$T/err" "unknown module 'zz'"
"$BIN" train --model "$M" --data "$T/train.jsonl" --plain-lora --rank 0 --out "$T/x" 2>"$T/err" >/dev/null
expect_rc "bad rank" 2 $? "$T/err" "--rank"
exit $fail
