#!/usr/bin/env bash
# generate_test.sh: `alora generate` / `make-model` / `make-adapter` end to end: the JSON contract,
# activation starts, determinism, agreement with the PEFT goldens, and clear errors on bad input.
set -u
BIN=${ALORA_BIN:-build/alora}
[ -x "$BIN" ] || { echo "skip: $BIN not built"; exit 77; }
PY=$(command -v python3) || { echo "skip: python3 missing"; exit 77; }
T=$(mktemp -d /tmp/alora-test-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; shift; for l in "$@"; do echo "  $l"; done; fail=1; }
expect_rc() { # name want_rc got_rc stderr_file must_contain
    if [ "$3" != "$2" ]; then bad "$1" "exit $3, want $2" "$(cat "$4")"; return; fi
    if [ -n "${5:-}" ] && ! grep -qF -- "$5" "$4"; then bad "$1" "stderr lacks '$5'" "$(cat "$4")"; return; fi
    ok "$1"
}

"$BIN" make-model --arch llama --preset tiny --seed 3 "$T/m" 2>"$T/err" || bad make-model "$(cat "$T/err")"
"$BIN" make-adapter --model "$T/m" --targets q,k,v,o,gate,up,down --rank 4 --alpha 8 --invocation 7,8,9 \
    --seed 5 "$T/a" 2>"$T/err" || bad make-adapter "$(cat "$T/err")"
"$BIN" make-model --arch granite --preset small --dtype bf16 "$T/g" 2>"$T/err" || bad make-model-granite "$(cat "$T/err")"

# the JSON contract
toks="1,20,21,22,7,8,9,30,31,7,8,9,40"
"$BIN" generate --model "$T/m" --adapter "$T/a" --tokens "$toks" --max-tokens 5 --top-logprobs 3 \
    --ignore-eos --json >"$T/out" 2>"$T/err"
if "$PY" - "$T/out" <<'PYEOF'
import json, sys
o = json.load(open(sys.argv[1]))
assert set(o) >= {"tokens", "activation_start", "top_logprobs", "timings"}, o.keys()
assert len(o["tokens"]) == 5 and all(isinstance(t, int) for t in o["tokens"])
assert o["activation_start"] == 9, o["activation_start"]          # the LAST occurrence of 7,8,9
assert len(o["top_logprobs"]) == 5
for tok, lst in zip(o["tokens"], o["top_logprobs"]):
    assert len(lst) == 3 and lst[0]["id"] == tok                   # greedy = top-1
    lps = [e["logprob"] for e in lst]
    assert lps == sorted(lps, reverse=True) and lps[0] <= 0
assert set(o["timings"]) >= {"prefill_ms", "decode_ms"}
PYEOF
then ok json-contract; else bad json-contract "$(cat "$T/out" "$T/err")"; fi

# aLoRA changes the output only through the adapter; no invocation = base model everywhere
base=$("$BIN" generate --model "$T/m" --tokens "1,20,21,22,30,31" --max-tokens 6 --ignore-eos --json)
nomatch=$("$BIN" generate --model "$T/m" --adapter "$T/a" --tokens "1,20,21,22,30,31" --max-tokens 6 --ignore-eos --json)
b_t=$(echo "$base" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["tokens"])')
n_t=$(echo "$nomatch" | "$PY" -c 'import json,sys; o=json.load(sys.stdin); print(o["tokens"], o["activation_start"])')
[ "$n_t" = "$b_t None" ] && ok no-match-is-base || bad no-match-is-base "$b_t" "$n_t"

# determinism of seeded sampling
s1=$("$BIN" generate --model "$T/m" --tokens "$toks" --max-tokens 8 --temperature 0.9 --top-k 40 --top-p 0.9 --seed 11 --ignore-eos --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["tokens"])')
s2=$("$BIN" generate --model "$T/m" --tokens "$toks" --max-tokens 8 --temperature 0.9 --top-k 40 --top-p 0.9 --seed 11 --ignore-eos --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["tokens"])')
[ "$s1" = "$s2" ] && ok seeded-sampling || bad seeded-sampling "$s1" "$s2"

# the CLI on a PEFT golden case (tests/fixtures/oracle): greedy tokens equal
G=tests/fixtures/oracle
want=$("$PY" -c 'import json; c=[c for c in json.load(open("'$G'/goldens.json"))["cases"] if c["name"]=="alora_mid"][0]; print(",".join(map(str,c["prompt"]))); print(c["greedy"])')
prompt=$(echo "$want" | head -1); greedy=$(echo "$want" | tail -1)
got=$("$BIN" generate --model $G/llama_f32 --adapter $G/adapters/alora_qkvo --tokens "$prompt" --max-tokens 8 --ignore-eos --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["tokens"])')
[ "$got" = "$greedy" ] && ok golden-alora_mid || bad golden-alora_mid "want $greedy" "got  $got"

# text in, text out (aidreams260K has a tokenizer; skipped without ../shared)
SH=${ALORA_SHARED:-../shared}
if [ -d "$SH/models/aidreams260K/hf" ]; then
    out=$("$BIN" generate --model "$SH/models/aidreams260K/hf" --prompt "Echoes of vectors unfold" --max-tokens 8 --json)
    echo "$out" | "$PY" -c 'import json,sys; o=json.load(sys.stdin); assert isinstance(o["text"], str) and len(o["tokens"]) >= 1' \
        && ok prompt-text || bad prompt-text "$out"
fi

# errors: usage (exit 2) and bad input (exit 1), each naming the problem
"$BIN" generate --tokens 1,2 2>"$T/err"; expect_rc missing-model 2 $? "$T/err" "--model"
"$BIN" generate --model "$T/m" 2>"$T/err"; expect_rc missing-tokens 2 $? "$T/err" "--tokens"
"$BIN" generate --model "$T/m" --tokens 1,x 2>"$T/err"; expect_rc bad-token-list 2 $? "$T/err" "1,x"
"$BIN" generate --model "$T/m" --tokens 1,2 --max-tokens -3 2>"$T/err"; expect_rc bad-max-tokens 2 $? "$T/err" "--max-tokens"
"$BIN" generate --model "$T/m" --prompt hi 2>"$T/err"; expect_rc prompt-no-tokenizer 2 $? "$T/err" "tokenizer"
"$BIN" generate --model "$T/nope" --tokens 1,2 2>"$T/err"; expect_rc missing-dir 1 $? "$T/err" "$T/nope"
"$BIN" generate --model "$T/m" --tokens 1,99999 2>"$T/err"; expect_rc token-out-of-vocab 1 $? "$T/err" "99999"
"$BIN" generate --model "$T/g" --adapter "$T/a" --tokens 1,2 2>"$T/err"; expect_rc adapter-model-mismatch 1 $? "$T/err" "lora_A"
cp -r "$T/m" "$T/trunc"
sz=$(stat -c %s "$T/trunc/model.safetensors")
truncate -s $((sz - 100)) "$T/trunc/model.safetensors"
"$BIN" generate --model "$T/trunc" --tokens 1,2 2>"$T/err"; expect_rc truncated-weights 1 $? "$T/err" "model.safetensors"
"$BIN" make-model --arch llama --preset huge "$T/x" 2>"$T/err"; expect_rc bad-preset 2 $? "$T/err" "huge"
"$BIN" make-adapter --model "$T/m" --targets q --rank 4 --alpha 8 --invocation 9999 "$T/x" 2>"$T/err"
expect_rc bad-invocation 2 $? "$T/err" "9999"
"$BIN" generate --model "$T/nope" --prompt hi 2>"$T/err"; expect_rc missing-dir-prompt 1 $? "$T/err" "--model $T/nope: No such file"
"$BIN" generate --model "$T/m" --tokens 1,2 --bogus 2>"$T/err"; expect_rc unknown-last-option 2 $? "$T/err" "unknown option '--bogus'"
"$BIN" generate --model "$T/m" --bogus 3 --tokens 1,2 2>"$T/err"; expect_rc unknown-option 2 $? "$T/err" "unknown option '--bogus'"
"$BIN" generate --model "$T/m" --tokens 1,2 --max-tokens 2>"$T/err"; expect_rc option-without-value 2 $? "$T/err" "--max-tokens needs a value"
# the context (the tiny preset: 512 positions): an explicit --max-tokens past it is an error, the default is clamped
"$BIN" generate --model "$T/m" --tokens 1,2,3 --max-tokens 1000 2>"$T/err"
expect_rc max-tokens-past-context 1 $? "$T/err" "use --max-tokens 509 or less"
"$BIN" generate --model "$T/m" --tokens "$(seq -s, 1 250),$(seq -s, 1 250)" --ignore-eos --json >"$T/out" 2>"$T/err"
expect_rc default-clamped 0 $? "$T/err" "warning: generating at most 12 tokens"
[ "$(jq '.tokens | length' "$T/out")" = 12 ] && ok default-clamped-length || bad default-clamped-length "$(cat "$T/out")"
"$BIN" generate --model "$T/m" --tokens "$(seq -s, 1 250),$(seq -s, 1 250),$(seq -s, 1 12)" 2>"$T/err"
expect_rc prompt-fills-context 1 $? "$T/err" "the prompt has 512 tokens"
"$BIN" make-model --arch llama --preset tiny "$T/m2" >"$T/out" 2>&1
grep -qF "wrote $T/m2 (llama tiny preset" "$T/out" && ok make-model-says-what-it-wrote || bad make-model-output "$(cat "$T/out")"
"$BIN" make-adapter --model "$T/m2" --targets q --rank 2 --invocation 7,8 "$T/a2" >"$T/out" 2>&1
grep -qF "wrote $T/a2 (aLoRA, rank 2" "$T/out" && ok make-adapter-says-what-it-wrote || bad make-adapter-output "$(cat "$T/out")"
"$BIN" --version >"$T/out" 2>/dev/null && grep -q "^alora [0-9]" "$T/out" && grep -q "^cpu kernels: " "$T/out" &&
    ok "--version: $(tr '\n' ';' <"$T/out")" || bad version "$(cat "$T/out")"

if [ $fail = 0 ]; then echo "generate_test: all passed"; else echo "generate_test: FAILED"; fi
exit $fail
