#!/usr/bin/env bash
# overload_test.sh: backpressure end to end under `alora up`. One intrinsic with one replica,
# capacity 1 and max_queue 1 admits 2 invocations at a time; the rest must be refused at once with
# `overloaded` (NNG: `alora invoke` exits 1 naming it; HTTP: 429, Retry-After, JSON error body
# {"error":{"code":"overloaded",...}}). Nothing may hang or crash, and once the burst is over every
# request succeeds again.
NEEDS=curl TMP_TAG=ovl
source "$(dirname "$0")/lib.sh"
TOK="$SRC/deploy/tokenizer"
[ -f "$TOK/tokenizer.json" ] || { echo "SKIP: $TOK missing"; exit 77; }

"$ALORA" make-model --arch llama --preset small --seed 11 "$T/model" >/dev/null || exit 1
"$ALORA" make-adapter --model "$T/model" --targets q,k,v,o --rank 8 --alpha 16 --invocation 600,601,602 \
  --seed 3 "$T/slow" >/dev/null || exit 1

PORT=$(free_port)
H="http://127.0.0.1:$PORT"
R="ipc://$T/run/router.ipc"
cat >"$T/c.cfg" <<CFG
run_dir = "$T/run";
base = { model = "$T/model"; kv_blocks = 512; block_size = 16; threads = 1; };
worker = { kv_blocks = 256; heartbeat_ms = 200; };
router = { listen = "$R"; max_queue = 16; worker_ttl_ms = 3000; request_timeout_ms = 600000; http = "$H";
           tokenizer = "$TOK"; model_name = "ovl-base"; };
up = { grace_ms = 5000; backoff_min_ms = 100; backoff_max_ms = 2000; };
intrinsics = (
  { name = "slow"; adapter = "$T/slow"; replicas = 1; capacity = 1; max_queue = 1; max_tokens = 4; }
);
CFG

rm -f "$T/ready"
"$ALORA" up -c "$T/c.cfg" --bin-dir "$BIN_DIR" --ready-file "$T/ready" >"$T/up.out" 2>"$T/up.err" &
UP_PID=$!
for _ in $(seq 1 300); do
  [ -f "$T/ready" ] && break
  kill -0 "$UP_PID" 2>/dev/null || break
  sleep 0.1
done
[ -f "$T/ready" ] || { echo "--- alora up stderr"; tail -40 "$T/up.err"; fail "cluster did not start"; exit 1; }
PIDS0=$("$ALORA" status --router "$R" --json | jq -r '[.processes[].pid] | sort | join(" ")')

# A long request: a prompt through the adapter (mode lora, no base KV) plus many decoded tokens. Its
# length is calibrated to this machine (an ASan build on a loaded machine is ~50x slower than a
# release build on a quiet one) from the decode time per token (two lengths, so the prefill drops
# out): long enough to hold the slot ~4 s within the model's 2048-token context, and every timeout
# generous: the test is about refusals, never about a deadline.
LONG=$(for i in $(seq 1 300); do echo $((10 + (i * 7) % 580)); done | paste -sd,)
timed_invoke() { # timed_invoke N -> ms for a long prompt + N decoded tokens
  local t0; t0=$(date +%s%N)
  "$ALORA" invoke --router "$R" --intrinsic slow --tokens "$LONG,600,601,602" --mode lora --max-tokens "$1" \
    --ignore-eos --timeout 600000 >/dev/null 2>&1
  echo $(( ($(date +%s%N) - t0) / 1000000 ))
}
MS20=$(timed_invoke 20)
MS100=$(timed_invoke 100)
US_TOK=$(( (MS100 - MS20) * 1000 / 80 ))            # decode time per token, microseconds
US_TOK=$(( US_TOK < 100 ? 100 : US_TOK ))
MAX_LONG=1700                                        # 303 prompt tokens + 1700 < 2048 positions
LONG_TOKS=$(( 4000000 / US_TOK ))
LONG_TOKS=$(( LONG_TOKS < 20 ? 20 : LONG_TOKS > MAX_LONG ? MAX_LONG : LONG_TOKS ))
LONG_MS=$(( MS20 + US_TOK * (LONG_TOKS - 20) / 1000 )) # expected duration of one long request
TMO=$(( LONG_MS * 20 > 120000 ? LONG_MS * 20 : 120000 )) # per request, ms
echo "calibration: 20 / 100 tokens in $MS20 / $MS100 ms ($US_TOK us/token) -> long requests of $LONG_TOKS tokens (~$LONG_MS ms), timeouts $TMO ms"
long_invoke() { # long_invoke OUTFILE
  timeout $((TMO / 1000 + 60)) "$ALORA" invoke --router "$R" --intrinsic slow --tokens "$LONG,600,601,602" --mode lora \
    --max-tokens "$LONG_TOKS" --ignore-eos --timeout "$TMO" >"$1.out" 2>"$1.err"
  echo $? >"$1.rc"
}
short_invoke() {
  "$ALORA" invoke --router "$R" --intrinsic slow --tokens "5,6,7,8,600,601,602" --max-tokens 2 --timeout "$TMO" "$@"
}
# hreq PATH BODY -> CODE, BODY, headers in $T/hdr
hreq() {
  CODE=$(curl -s -m 30 -D "$T/hdr" -o "$T/body" -w '%{http_code}' -X POST "$H$1" \
    -H 'Content-Type: application/json' --data-binary "$2")
  BODY=$(cat "$T/body")
}
CHAT='{"model":"slow","messages":[{"role":"user","content":"Is the sky blue?"},{"role":"assistant","content":"Yes."}],"max_tokens":2}'
queue_depth() { curl -s -m 5 "$H/v1/intrinsics" | jq -r '.data[] | select(.name == "slow") | .queue_depth // empty' 2>/dev/null; }

# ---- 0. baseline: one request of each kind works; how long a long one takes ---------------------
check "NNG invoke works before the burst" eval "short_invoke >/dev/null"
hreq /v1/chat/completions "$CHAT"
check "HTTP intrinsic works before the burst (got $CODE)" [ "$CODE" = 200 ]
t0=$(date +%s.%N)
long_invoke "$T/base0"
t1=$(date +%s.%N)
echo "one long request: $(echo "$t1 - $t0" | bc) s"
check "a long (mode lora) request works alone" [ "$(cat "$T/base0.rc")" = 0 ]

# ---- 1. deterministic: fill capacity + queue, then the next request of each kind is refused -----
# hold_probe CMD...: two long requests fill capacity 1 + max_queue 1, CMD runs while both are
# admitted, then the holds finish. The precondition is checked, not assumed: the depth still reads 2
# after CMD returned (depth only falls once the first hold ends, so it was 2 throughout); where a
# fast machine finished a hold first, the probe is rerun with holds twice as long (at most 3 tries).
HOLDS_RC=0
hold_probe() {
  local try toks=$LONG_TOKS h1 h2 d
  for try in 1 2 3; do
    LONG_TOKS=$toks long_invoke "$T/hold1" & h1=$!
    for _ in $(seq 1 200); do [ "$(queue_depth)" = 1 ] && break; sleep 0.02; done
    LONG_TOKS=$toks long_invoke "$T/hold2" & h2=$!
    for _ in $(seq 1 200); do [ "$(queue_depth)" = 2 ] && break; sleep 0.02; done
    "$@"
    d=$(queue_depth)
    wait "$h1" "$h2"
    [ "$(cat "$T/hold1.rc")" = 0 ] && [ "$(cat "$T/hold2.rc")" = 0 ] || HOLDS_RC=1
    [ "$d" = 2 ] && return 0
    echo "  (try $try: the holds ended before the probe did, depth $d; again with $((toks * 2)) tokens)"
    toks=$(( toks * 2 > MAX_LONG ? MAX_LONG : toks * 2 ))
  done
  return 1
}
nng_probe() { short_invoke 2>"$T/ovl.err" >/dev/null; PROBE_RC=$?; }
check "NNG: capacity and queue held while probing" hold_probe nng_probe
check "NNG: a third request is refused: exit 1 naming overloaded (rc $PROBE_RC: $(head -c 200 "$T/ovl.err"))" \
  eval '[ $PROBE_RC = 1 ] && grep -q overloaded "$T/ovl.err"'
check "HTTP chat: capacity and queue held while probing" hold_probe hreq /v1/chat/completions "$CHAT"
RA=$(tr -d '\r' <"$T/hdr" | awk -F': ' 'tolower($1) == "retry-after" {print $2}')
check "HTTP: 429 (got $CODE)" [ "$CODE" = 429 ]
check "HTTP: Retry-After is a positive number of seconds (got '$RA')" eval '[ -n "$RA" ] && [ "$RA" -ge 1 ] 2>/dev/null'
check "HTTP: JSON error body with code overloaded (got $BODY)" \
  [ "$(jq -r .error.code <<<"$BODY" 2>/dev/null)" = overloaded ]
check "HTTP: the message names the intrinsic" eval 'jq -r .error.message <<<"$BODY" | grep -q slow'
check "HTTP completions: capacity and queue held while probing" \
  hold_probe hreq /v1/completions '{"model":"slow","prompt":"The sky is blue.","max_tokens":2}'
check "HTTP /v1/completions: 429 overloaded too (got $CODE)" \
  eval '[ "$CODE" = 429 ] && [ "$(jq -r .error.code <<<"$BODY")" = overloaded ] && grep -qi "^retry-after:" "$T/hdr"'
check "the admitted requests completed" [ $HOLDS_RC = 0 ]

# ---- 2. a concurrent burst over both APIs: some refused, none hang, the rest succeed ------------
N=8
for i in $(seq 1 $N); do
  long_invoke "$T/b$i" & BG+=($!)
done
for i in $(seq 1 $N); do
  ( c=$(curl -s -m $((TMO / 1000 + 60)) -D "$T/h$i.hdr" -o "$T/h$i.body" -w '%{http_code}' -X POST "$H/v1/chat/completions" \
       -H 'Content-Type: application/json' --data-binary "$CHAT"); echo "$c" >"$T/h$i.code" ) & BG+=($!)
done
t0=$SECONDS
for p in "${BG[@]}"; do wait "$p"; done
BG=()
echo "burst of $((2 * N)) requests done in $((SECONDS - t0)) s"
n_ok=0; n_ovl=0; n_other=0
for i in $(seq 1 $N); do
  rc=$(cat "$T/b$i.rc")
  if [ "$rc" = 0 ]; then n_ok=$((n_ok + 1))
  elif [ "$rc" = 1 ] && grep -q overloaded "$T/b$i.err"; then n_ovl=$((n_ovl + 1))
  else n_other=$((n_other + 1)); echo "  nng $i: rc $rc $(head -c 300 "$T/b$i.err")"; fi
done
h_ok=0; h_ovl=0; h_other=0
for i in $(seq 1 $N); do
  c=$(cat "$T/h$i.code")
  if [ "$c" = 200 ]; then h_ok=$((h_ok + 1))
  elif [ "$c" = 429 ] && [ "$(jq -r .error.code "$T/h$i.body" 2>/dev/null)" = overloaded ] &&
       grep -qi '^retry-after: *[1-9]' "$T/h$i.hdr"; then h_ovl=$((h_ovl + 1))
  else h_other=$((h_other + 1)); echo "  http $i: $c $(head -c 300 "$T/h$i.body")"; fi
done
echo "burst: NNG $n_ok ok / $n_ovl overloaded / $n_other other; HTTP $h_ok ok / $h_ovl overloaded / $h_other other"
check "burst: no request hung or failed otherwise" [ $n_other = 0 -a $h_other = 0 ]
check "burst: some requests were refused with overloaded" [ $((n_ovl + h_ovl)) -ge 1 ]
check "burst: some requests were served" [ $((n_ok + h_ok)) -ge 2 ]

# ---- 3. after the burst: nothing crashed, the queue drained, every request succeeds again -------
check "the queue drained (depth $(queue_depth))" [ "$(queue_depth)" = 0 ]
all=0
for i in 1 2 3; do
  short_invoke >/dev/null 2>"$T/after.err" || { all=1; cat "$T/after.err"; }
  hreq /v1/chat/completions "$CHAT"; [ "$CODE" = 200 ] || { all=1; echo "  http: $CODE $BODY"; }
done
long_invoke "$T/after"
[ "$(cat "$T/after.rc")" = 0 ] || { all=1; cat "$T/after.err"; }
check "after the burst every request succeeds (NNG and HTTP)" [ $all = 0 ]
PIDS1=$("$ALORA" status --router "$R" --json | jq -r '[.processes[].pid] | sort | join(" ")')
check "no process crashed or restarted ($PIDS0 -> $PIDS1)" [ "$PIDS0" = "$PIDS1" ]
check "alora up logged no restart" eval '! grep -Ei "restart|exited|signal" "$T/up.err"'
if grep -E "runtime error|AddressSanitizer|LeakSanitizer" "$T/up.err" >/dev/null; then
  fail "sanitizer reports:"; grep -E -A8 "runtime error|AddressSanitizer|LeakSanitizer" "$T/up.err" | head -40
fi

kill -TERM "$UP_PID"; wait "$UP_PID"; rc=$?
UP_PID=
check "alora up exited 0 after SIGTERM" [ $rc = 0 ]

if [ $FAILS -ne 0 ]; then echo "$FAILS failure(s)"; exit 1; fi
echo "all ok"
