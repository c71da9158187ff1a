#!/usr/bin/env bash
# tls_test.sh: the cluster over tls+tcp:// with mutual certificates from `alora certs` (router, base
# and workers all dial and listen with TLS): an invoke and a base's stats succeed; a client with no
# certificate, with a certificate of another CA, or speaking plain tcp is refused, and the cluster
# keeps serving; it shuts down cleanly.
NEEDS="openssl nngcat"
TMP_TAG=tls
source "$(dirname "$0")/lib.sh"

"$ALORA" make-model --arch llama --preset tiny --seed 11 "$T/model" >/dev/null || exit 1
"$ALORA" make-adapter --model "$T/model" --targets q,k,v,o --rank 8 --alpha 16 --invocation 50,51,52 \
  --seed 3 "$T/cert" >/dev/null || exit 1
"$ALORA" certs --out "$T/pki" >"$T/certs.out" 2>&1 || { cat "$T/certs.out"; exit 1; }
"$ALORA" certs --out "$T/other" >/dev/null 2>&1 || exit 1 # another CA
check "alora certs: keys are 0600, the directory 0700" \
  test "$(stat -c %a "$T/pki/base.key")" = 600 -a "$(stat -c %a "$T/pki")" = 700
check "alora certs prints the tls group" grep -q "base_cert = \"$T/pki/base.pem\"" "$T/certs.out"

PB=$(free_port); PR=$(free_port)
while [ "$PR" = "$PB" ] || [ "$PR" = $((PB + 1)) ]; do PR=$(free_port); done
# the listeners bind every interface: the workers and alora up dial tls+tcp://0.0.0.0:P as configured
# (verified as localhost); the CLI dials 127.0.0.1
LB="tls+tcp://0.0.0.0:$PB" LR="tls+tcp://0.0.0.0:$PR"
BASE="tls+tcp://127.0.0.1:$PB" R="tls+tcp://127.0.0.1:$PR"
P="$T/pki"
cat >"$T/tls.cfg" <<CFG
run_dir = "$T/run-tls";
tls = { ca = "$P/ca.pem";
        base_cert = "$P/base.pem"; base_key = "$P/base.key";
        router_cert = "$P/router.pem"; router_key = "$P/router.key";
        worker_cert = "$P/worker.pem"; worker_key = "$P/worker.key";
        cert = "$P/client.pem"; key = "$P/client.key"; };
base = { model = "$T/model"; listen = "$LB"; kv_blocks = 128; block_size = 16; threads = 1; };
worker = { kv_blocks = 64; heartbeat_ms = 200; };
router = { listen = "$LR"; max_queue = 16; worker_ttl_ms = 1500; request_timeout_ms = 20000; };
up = { grace_ms = 5000; backoff_min_ms = 100; backoff_max_ms = 2000; };
intrinsics = ( { name = "certainty"; adapter = "$T/cert"; replicas = 1; max_tokens = 4; } );
CFG
sed "s|build/run/pki|$T/pki|g" deploy/tls.cfg >"$T/example.cfg"
"$ALORA" up -c "$T/example.cfg" --check >"$T/example.out" 2>&1
check "--check accepts deploy/tls.cfg with the certificates made (tls+tcp://0.0.0.0)" \
  grep -q "base.listen = tls+tcp://0.0.0.0:7600" "$T/example.out"
"$ALORA" up -c "$T/tls.cfg" --check >"$T/check.out" 2>&1
check "--check accepts the tls+tcp:// config" grep -q "config $T/tls.cfg: ok" "$T/check.out"
start_up tls || { fail "the cluster did not come up over tls+tcp://"; exit 1; }
ok "the cluster came up over tls+tcp:// (router, base and worker all authenticated)"

export ALORA_TLS_CA="$P/ca.pem" ALORA_TLS_CERT="$P/client.pem" ALORA_TLS_KEY="$P/client.key"
TOKS=1,5,9,50,51,52
a=$("$ALORA" invoke --router "$R" --intrinsic certainty --tokens "$TOKS" --max-tokens 4 --json 2>"$T/inv.err")
check "an invoke over tls+tcp:// succeeds" test "$(jq '.tokens | length' <<<"$a" 2>/dev/null)" = 4
b=$("$ALORA" generate --model "$T/model" --adapter "$T/cert" --tokens "$TOKS" --max-tokens 4 --json)
check "it answers what the single-process engine computes" \
  test "$(jq -c .tokens <<<"$a")" = "$(jq -c .tokens <<<"$b")"
for _ in $(seq 1 100); do # the router says hello from its monitor's next poll
  s=$("$ALORA" status --base "$BASE" --json 2>&1)
  [ "$(jq -r .clients <<<"$s" 2>/dev/null)" = 1 ] && break
  sleep 0.1
done
check "alora status --base over tls+tcp:// (client certificate): $(jq -c "{clients, sequences}" <<<"$s" 2>/dev/null || head -c 200 <<<"$s")" \
  test "$(jq -r .clients <<<"$s" 2>/dev/null)" = 1

# refused: no certificate (the base and the router require one), another CA's certificate, plain tcp
unset ALORA_TLS_CA ALORA_TLS_CERT ALORA_TLS_KEY
"$ALORA" invoke --router "$R" --intrinsic certainty --tokens "$TOKS" --json >/dev/null 2>"$T/nocert.err"
check "the CLI without ALORA_TLS_* says what is missing" grep -q "ALORA_TLS_CA" "$T/nocert.err"
for u in "$R" "$BASE"; do # nngcat as a raw client: the same dial with and without a certificate
  timeout 10 nngcat --req --dial "$u" --cacert "$P/ca.pem" --cert "$P/client.pem" --key "$P/client.key" \
    --data x --recv-timeout 3 --quoted >"$T/with.out" 2>&1
  timeout 10 nngcat --req --dial "$u" --cacert "$P/ca.pem" --data x --recv-timeout 3 --quoted >"$T/without.out" 2>"$T/without.err"
  check "a raw client with a certificate gets an answer from $u (an error frame for junk)" test -s "$T/with.out"
  check "a raw client without a certificate gets nothing from $u ($(head -c 80 "$T/without.err"))" test ! -s "$T/without.out"
done
ALORA_TLS_CA="$P/ca.pem" ALORA_TLS_CERT="$T/other/client.pem" ALORA_TLS_KEY="$T/other/client.key" \
  "$ALORA" invoke --router "$R" --intrinsic certainty --tokens "$TOKS" --json --timeout 3000 >/dev/null 2>"$T/other.err"
check "a certificate of another CA is refused by the router" grep -q -i -E "unavailable|not connected|timed out" "$T/other.err"
ALORA_TLS_CA="$P/ca.pem" ALORA_TLS_CERT="$T/other/client.pem" ALORA_TLS_KEY="$T/other/client.key" \
  "$ALORA" status --base "$BASE" --json --timeout 3000 >/dev/null 2>"$T/other2.err"
check "a certificate of another CA is refused by the base" grep -q -i -E "unavailable|not connected|timed out" "$T/other2.err"
ALORA_TLS_CA="$T/other/ca.pem" ALORA_TLS_CERT="$T/other/client.pem" ALORA_TLS_KEY="$T/other/client.key" \
  "$ALORA" status --base "$BASE" --json --timeout 3000 >/dev/null 2>"$T/other3.err"
check "a client trusting another CA does not accept the base's certificate" grep -q -i -E "unavailable|not connected|timed out" "$T/other3.err"
"$ALORA" status --base "tcp://127.0.0.1:$PB" --json --timeout 3000 >/dev/null 2>"$T/plain.err"
check "plain tcp to the tls+tcp:// listener gets nothing" grep -q -i -E "unavailable|not connected|timed out" "$T/plain.err"

export ALORA_TLS_CA="$P/ca.pem" ALORA_TLS_CERT="$P/client.pem" ALORA_TLS_KEY="$P/client.key"
a=$("$ALORA" invoke --router "$R" --intrinsic certainty --tokens "$TOKS" --max-tokens 4 --json 2>>"$T/inv.err")
check "still serving after the refused clients" test "$(jq '.tokens | length' <<<"$a" 2>/dev/null)" = 4
stop_up tls
[ $FAILS -eq 0 ] || { echo "--- invoke stderr"; cat "$T/inv.err"; tail -30 "$T/tls.err"; exit 1; }
echo "all tls checks passed"
