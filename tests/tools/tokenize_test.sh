#!/usr/bin/env bash
# tokenize_test.sh: `alora tokenize` output (plain and --json), stdin, usage and load errors.
set -u
BIN=${ALORA_BIN:-build/alora}
if [ ! -x "$BIN" ]; then
    echo "skip: $BIN not built"
    exit 77
fi
TOK=tests/fixtures/tokenizer/bl_llama3.tokenizer.json
fail=0
check() { # name expected actual
    if [ "$2" != "$3" ]; then
        echo "FAIL $1"
        echo "  want: $2"
        echo "  got:  $3"
        fail=1
    else
        echo "ok   $1"
    fi
}

out=$("$BIN" tokenize --model "$TOK" "Hello world")
check plain-rc 0 $?
check plain "$(printf 'ids: 0 48 485 87 568\npieces: "<|begin_of_text|>" "H" "ell" "o" "Ġworld"')" "$out"

out=$("$BIN" tokenize --model "$TOK" --json "The adapter<|end_of_role|> is here")
check json '{"ids":[0,60,80,77,594,3,635,581],"pieces":["<|begin_of_text|>","T","h","e","Ġadapter","<|end_of_role|>","Ġis","Ġhere"]}' "$out"

out=$(printf 'x <requirements>: y' | "$BIN" tokenize --model "$TOK" --stdin --json --no-special)
check stdin '{"ids":[96,229,1607,34,306],"pieces":["x","Ġ","<requirements>",":","Ġy"]}' "$out"

out=$(printf '' | "$BIN" tokenize --model "$TOK" --stdin --json)
check empty '{"ids":[0],"pieces":["<|begin_of_text|>"]}' "$out"

"$BIN" tokenize --model "$TOK" >/dev/null 2>&1
check usage-no-text 2 $?
"$BIN" tokenize "text" >/dev/null 2>&1
check usage-no-model 2 $?
"$BIN" tokenize --model "$TOK" --stdin "text" >/dev/null 2>&1
check usage-both 2 $?
"$BIN" tokenize --model "$TOK" --bogus x >/dev/null 2>&1
check usage-flag 2 $?
"$BIN" tokenize --help >/dev/null 2>&1
check help 0 $?

err=$("$BIN" tokenize --model /nonexistent/dir "x" 2>&1 >/dev/null)
check load-rc 1 $?
case "$err" in
"alora tokenize: "*/nonexistent/dir*) echo "ok   load-msg" ;;
*) echo "FAIL load-msg: $err"; fail=1 ;;
esac

tmp=$(mktemp -d /tmp/alora-test-XXXXXX)
echo '{"model":{"type":"BPE","vocab":{"a":0},"merges":["a q"]}}' >"$tmp/tokenizer.json"
err=$("$BIN" tokenize --model "$tmp" "x" 2>&1 >/dev/null)
check bad-json-rc 1 $?
case "$err" in
"alora tokenize: $tmp/tokenizer.json: model.merges[0]"*) echo "ok   bad-json-msg" ;;
*) echo "FAIL bad-json-msg: $err"; fail=1 ;;
esac
rm -rf "$tmp"
exit $fail
