#!/usr/bin/env bash
# certs_test.sh: `alora certs` makes a CA and base / router / worker / client certificates that
# openssl verifies against it, naming localhost, 127.0.0.1 and every --hosts entry (IPs also as DNS
# names for mbedTLS), for server and client auth; keys 0600 in a 0700 directory; refuses to
# overwrite without --force and rejects a bad host.
set -u
BIN=${ALORA_BIN:-build/alora}
[ -x "$BIN" ] || { echo "skip: $BIN not built"; exit 77; }
command -v openssl >/dev/null || { echo "skip: no openssl"; exit 77; }
T=$(mktemp -d /tmp/alora-certs-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; shift; for l in "$@"; do echo "  $l"; done; fail=1; }
check() { local d=$1; shift; if "$@"; then ok "$d"; else bad "$d"; fi; }

"$BIN" certs --out "$T/p" --hosts 10.1.2.3,node-a.example,fd00::7 --days 30 >"$T/out" 2>"$T/err" ||
    bad "alora certs" "$(cat "$T/err")"
for r in base router worker client; do
    check "$r.pem verifies against ca.pem" openssl verify -CAfile "$T/p/ca.pem" "$T/p/$r.pem"
    check "$r.key is 0600" test "$(stat -c %a "$T/p/$r.key")" = 600
    check "$r.key matches $r.pem" test "$(openssl pkey -in "$T/p/$r.key" -pubout 2>/dev/null)" = \
        "$(openssl x509 -in "$T/p/$r.pem" -noout -pubkey 2>/dev/null)"
done
txt=$(openssl x509 -in "$T/p/router.pem" -noout -text)
for n in "DNS:localhost" "IP Address:127.0.0.1" "DNS:127.0.0.1" "IP Address:10.1.2.3" "DNS:10.1.2.3" \
    "DNS:node-a.example" "IP Address:FD00:0:0:0:0:0:0:7"; do
    check "the certificate names $n" grep -qF "$n" <<<"$txt"
done
check "server and client auth" grep -q "TLS Web Server Authentication, TLS Web Client Authentication" <<<"$txt"
check "the CA is a CA" grep -q "CA:TRUE" <<<"$(openssl x509 -in "$T/p/ca.pem" -noout -text)"
check "a leaf is not a CA" grep -q "CA:FALSE" <<<"$txt"
check "the directory is 0700" test "$(stat -c %a "$T/p")" = 700
check "no scratch file is left (csr, ext, log)" test -z "$(ls "$T/p" | grep -v -E '^(ca|base|router|worker|client)\.(pem|key)$')"
check "it prints the tls group" grep -q "router_cert = \"$T/p/router.pem\"" "$T/out"
check "and the CLI variables" grep -q "export ALORA_TLS_CA=$T/p/ca.pem" "$T/out"
"$BIN" certs --out "$T/p" >/dev/null 2>"$T/err"
check "it does not overwrite without --force" grep -q "exists (--force" "$T/err"
old=$(openssl x509 -in "$T/p/ca.pem" -noout -fingerprint)
"$BIN" certs --out "$T/p" --force >/dev/null 2>"$T/err" || bad "--force" "$(cat "$T/err")"
check "--force makes a new CA" test "$(openssl x509 -in "$T/p/ca.pem" -noout -fingerprint)" != "$old"
"$BIN" certs --out "$T/q" --hosts 'a b;rm' >/dev/null 2>"$T/err"
check "a bad --hosts entry is rejected, named" grep -q "'a b;rm' is not a host name" "$T/err"
"$BIN" certs >/dev/null 2>"$T/err"
check "--out is required" grep -q -- "--out DIR is required" "$T/err"
[ $fail -eq 0 ] && echo "all certs checks passed"
exit $fail
