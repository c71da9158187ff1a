#!/usr/bin/env bash
# up_test.sh: `alora up` stops instead of spinning on a fatal configuration: a child that exits
# with AL_EXIT_CONFIG (78) is not restarted, up exits 78 within seconds with the child's message
# and leaves no process, socket or shm segment; `up --check` runs the services' validations
# (API keys off loopback, non-loopback RPC listeners, the model and every adapter).
set -u
BIN=${ALORA_BIN:-build/alora}
[ -x "$BIN" ] || { echo "skip: $BIN not built"; exit 77; }
T=$(mktemp -d /tmp/alora-up-XXXXXX)
trap 'pkill -KILL -f "$T/" 2>/dev/null; rm -rf "$T"' EXIT
fail=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; shift; for l in "$@"; do echo "  $l"; done; fail=1; }

"$BIN" make-model --arch llama --preset tiny --seed 3 "$T/m" >/dev/null 2>"$T/err" || bad make-model "$(cat "$T/err")"
"$BIN" make-adapter --model "$T/m" --targets q,v --rank 4 --invocation 7,8,9 "$T/a" >/dev/null 2>"$T/err" ||
    bad make-adapter "$(cat "$T/err")"

cfg() { # cfg NAME HTTP BASE_LISTEN ADAPTER [TOP-LEVEL SETTING] [ROUTER SETTING]
    cat >"$T/$1.cfg" <<EOF
run_dir = "$T/run-$1";
${5:-}
base = { model = "$T/m"; listen = "$3"; kv_blocks = 64; threads = 1; device = "cpu"; };
worker = { kv_blocks = 32; threads = 1; };
router = { http = "$2"; tokenizer = "deploy/tokenizer"; ${6:-} };
up = { grace_ms = 3000; backoff_min_ms = 100; backoff_max_ms = 400; };
intrinsics = ( { name = "certainty"; adapter = "$4"; replicas = 1; max_tokens = 2; } );
EOF
}
check() { # name cfg want_rc must_contain
    "$BIN" up -c "$T/$2.cfg" --check >"$T/out" 2>"$T/err"
    local rc=$?
    if [ "$rc" != "$3" ]; then bad "$1" "exit $rc, want $3" "$(cat "$T/err" "$T/out")"; return; fi
    if [ -n "$4" ] && ! grep -qF -- "$4" "$T/err" "$T/out"; then bad "$1" "output lacks '$4'" "$(cat "$T/err")"; return; fi
    ok "$1"
}

cfg good "http://127.0.0.1:0" "ipc://$T/run-good/base.ipc" "$T/a"
check "--check: a loopback config is ok" good 0 "config $T/good.cfg: ok"
cfg open "http://0.0.0.0:18080" "ipc://$T/run-open/base.ipc" "$T/a"
check "--check: HTTP off loopback without api_keys is rejected" open 78 "router.api_keys is empty"
cfg insecure "http://0.0.0.0:18080" "ipc://$T/run-insecure/base.ipc" "$T/a" "" "allow_insecure = true;"
check "--check: router.allow_insecure lets HTTP off loopback through" insecure 0 "router.allow_insecure = true"
cfg rpc "http://127.0.0.1:0" "tcp://0.0.0.0:18555" "$T/a"
check "--check: a non-loopback RPC listener is rejected" rpc 78 "base.listen: tcp://0.0.0.0:18555 is plain tcp off loopback"
cfg rpcok "http://127.0.0.1:0" "tcp://0.0.0.0:18555" "$T/a" "allow_insecure_rpc = true;"
check "--check: allow_insecure_rpc accepts it" rpcok 0 "ok"
# tls+tcp:// off loopback: fine with the CA, certificate and key; each missing one is named
if command -v openssl >/dev/null; then
    "$BIN" certs --out "$T/certs" >/dev/null 2>"$T/err" || bad "alora certs" "$(cat "$T/err")"
    C="$T/certs"
    cfg tlsok "http://127.0.0.1:0" "tls+tcp://0.0.0.0:18556" "$T/a" \
        "tls = { ca = \"$C/ca.pem\"; cert = \"$C/client.pem\"; key = \"$C/client.key\"; };"
    check "--check: tls+tcp:// off loopback with the certificates is accepted" tlsok 0 "ok"
    cfg tlsnoca "http://127.0.0.1:0" "tls+tcp://0.0.0.0:18556" "$T/a" \
        "tls = { cert = \"$C/client.pem\"; key = \"$C/client.key\"; };"
    check "--check: tls+tcp:// without tls.ca is rejected" tlsnoca 78 "tls.ca is not set"
    cfg tlsnokey "http://127.0.0.1:0" "tls+tcp://0.0.0.0:18556" "$T/a" \
        "tls = { ca = \"$C/ca.pem\"; cert = \"$C/client.pem\"; };"
    check "--check: tls+tcp:// without a key is rejected" tlsnokey 78 "tls+tcp:// needs tls.key"
    cfg tlsmissing "http://127.0.0.1:0" "tls+tcp://0.0.0.0:18556" "$T/a" \
        "tls = { ca = \"$C/ca.pem\"; cert = \"$C/client.pem\"; key = \"$C/client.key\"; base_cert = \"$T/nope.pem\"; base_key = \"$C/base.key\"; };"
    check "--check: tls+tcp:// with a missing certificate file names its key" tlsmissing 78 "tls.base_cert: $T/nope.pem"
    cfg tlsrouter "http://127.0.0.1:0" "ipc://$T/run-tlsrouter/base.ipc" "$T/a" "" "listen = \"tcp://0.0.0.0:18557\";"
    check "--check: a plain tcp router.listen off loopback is rejected too" tlsrouter 78 "router.listen: tcp://0.0.0.0:18557 is plain tcp"
else
    echo "skip tls --check cases: no openssl"
fi
cfg rpclo "http://127.0.0.1:0" "tcp://127.0.0.1:18555" "$T/a"
check "--check: a loopback RPC listener is fine" rpclo 0 "ok"
cfg noadapter "http://127.0.0.1:0" "ipc://$T/run-noadapter/base.ipc" "$T/missing-adapter"
check "--check: a missing adapter is named (a warning: the config may be for another host)" noadapter 0 \
    "intrinsics[0] (certainty).adapter $T/missing-adapter does not exist here"
mkdir -p "$T/bad-adapter" && echo '{"peft_type": "LORA", "r": 0}' >"$T/bad-adapter/adapter_config.json"
cfg badadapter "http://127.0.0.1:0" "ipc://$T/run-badadapter/base.ipc" "$T/bad-adapter"
check "--check: a broken adapter is rejected" badadapter 78 "intrinsics[0] (certainty).adapter"
sed "s|model = \"$T/m\"|model = \"$T/nomodel\"|" "$T/good.cfg" >"$T/nomodel.cfg"
check "--check: a missing model is named" nomodel 0 "base.model $T/nomodel does not exist here"
mkdir -p "$T/badmodel" && echo '{"model_type": "llama"}' >"$T/badmodel/config.json"
sed "s|model = \"$T/m\"|model = \"$T/badmodel\"|" "$T/good.cfg" >"$T/badmodel.cfg"
check "--check: a broken model config is rejected" badmodel 78 "base.model"

# `alora up` itself: the fatal HTTP rule stops it before anything starts
timeout 60 "$BIN" up -c "$T/open.cfg" >"$T/out" 2>"$T/err"
rc=$?
[ "$rc" = 78 ] && grep -qF "router.api_keys is empty" "$T/err" && ok "up: the open HTTP config exits 78 at once" ||
    bad "up: open HTTP config" "exit $rc" "$(tail -5 "$T/err")"

# a child's fatal error (the worker's adapter is missing): up stops, does not restart it
t0=$(date +%s.%N)
timeout 60 "$BIN" up -c "$T/noadapter.cfg" >"$T/out" 2>"$T/err"
rc=$?
dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
starts=$(grep -c "started worker" "$T/err")
if [ "$rc" = 78 ] && [ "$starts" = 1 ] && grep -qF "missing-adapter" "$T/err" &&
    grep -qF "not restarting it" "$T/err" && awk -v d="$dt" 'BEGIN { exit !(d < 20) }'; then
    ok "up: a worker's config error stops the cluster in ${dt}s (exit 78, 1 start, its message shown)"
else
    bad "up: worker config error" "exit $rc after ${dt}s, $starts worker starts" "$(tail -15 "$T/err")"
fi
left=$(pgrep -f "$T/noadapter.cfg" | wc -l)
[ "$left" = 0 ] && ok "up: no child left" || bad "up: $left children left"
ls "$T/run-noadapter"/*.ipc >/dev/null 2>&1 && bad "up: sockets left: $(ls "$T/run-noadapter")" || ok "up: no socket left"
ls /dev/shm 2>/dev/null | grep -q "alora-.*-$$-" && bad "up: shm left" || true
exit $fail
