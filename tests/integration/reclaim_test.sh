#!/usr/bin/env bash
# reclaim_test.sh: the base owns no sequence forever. kill -9 of the router with live sessions:
# the restarted router (same identity from <run_dir>/router.id, a higher epoch) says hello and gets
# its sequences back (seqs_reclaimed); its sessions, loaded back from the session store, name them,
# so it keeps them and their next turn needs no rebuild. A router with another identity does not
# get them: the base frees them after base.seq_grace_ms (seqs_freed), and the sessions' next turns
# rebuild their KV from their token history (timings.rebuilt_tokens).
# The router refuses a NUL byte inside a string field of a request (an intrinsic name).
NEEDS=curl
TMP_TAG=reclaim
source "$(dirname "$0")/lib.sh"
text_models 7
cat >"$T/rc.cfg" <<CFG
run_dir = "$T/run-rc";
base = { model = "$T/model"; kv_blocks = 256; block_size = 16; threads = 1; seq_grace_ms = 3000; };
worker = { kv_blocks = 64; heartbeat_ms = 200; };
router = { http = "$H"; tokenizer = "$TOK"; max_queue = 16; worker_ttl_ms = 1500; request_timeout_ms = 20000; };
up = { grace_ms = 5000; backoff_min_ms = 100; backoff_max_ms = 500; };
intrinsics = ( { name = "certainty"; adapter = "$T/cert"; replicas = 1; max_tokens = 2; } );
CFG
start_up rc || { fail "cluster did not come up"; exit 1; }
R="ipc://$T/run-rc/router.ipc" B="ipc://$T/run-rc/base.ipc"
bstat() { "$ALORA" status --base "$B" --json 2>/dev/null | jq -r ".$1"; }
# wait_for FIELD VALUE: until the base's stat FIELD equals VALUE (20 s at most)
wait_for() {
  for _ in $(seq 1 200); do [ "$(bstat "$1")" = "$2" ] && return 0; sleep 0.1; done
  echo "  $1 = $(bstat "$1"), want $2"; return 1
}
router_pid() { "$ALORA" status --router "$R" --json 2>/dev/null | jq -r '.processes[] | select(.role == "router") | .pid'; }
wait_router() { # a new router pid that answers
  for _ in $(seq 1 200); do
    local p; p=$(router_pid)
    [ -n "$p" ] && [ "$p" != "$1" ] && { echo "$p"; return 0; }
    sleep 0.1
  done
  return 1
}
sessions() { # sessions N: N sessions over HTTP, each with its own prompt; their ids in $T/ids
  for i in $(seq 1 "$1"); do
    curl -sf -X POST "$H/v1/sessions" -H 'content-type: application/json' \
      -d "{\"system\": \"You are assistant number $i of $RANDOM.\", \"messages\": [{\"role\": \"user\", \"content\": \"hello $i\"}]}" \
      | jq -r .id >>"$T/ids" || fail "session $i"
  done
}
rebuilt() { # rebuilt ID: the rebuilt_tokens of a generate turn on session ID (empty on failure)
  curl -sf -X POST "$H/v1/sessions/$1/generate" -H 'content-type: application/json' \
    -d '{"max_tokens": 2, "temperature": 0}' | jq -r '.session.timings.rebuilt_tokens'
}
ID0=$(cut -d' ' -f1 "$T/run-rc/router.id")
check "the router keeps its identity in <run_dir>/router.id (0600)" \
  test -n "$ID0" -a "$(stat -c %a "$T/run-rc/router.id")" = 600
check "the router said hello to the base" wait_for clients 1

sessions 5
check "5 sessions: 5 sequences on the base" wait_for sequences 5
P1=$(router_pid)
kill -9 "$P1"
P2=$(wait_router "$P1") || { fail "the router did not come back"; exit 1; }
ok "router $P1 killed (-9), restarted as $P2"
check "same identity, next epoch" test "$(cut -d' ' -f1 "$T/run-rc/router.id")" = "$ID0"
check "the restarted router reclaimed the 5 sequences (seqs_reclaimed)" wait_for seqs_reclaimed 5
check "and kept them: its sessions (from the session store) name them (sequences 5)" wait_for sequences 5
check "none was left to the grace period (seqs_freed 0)" test "$(bstat seqs_freed)" = 0
check "its log says so" grep -q "5 sequence(s) reclaimed, 5 kept (sessions), 0 released" "$T/rc.err"
S1=$(head -1 "$T/ids")
r1=$(rebuilt "$S1")
check "a session's next turn runs on its reclaimed sequence (rebuilt_tokens '$r1')" test "$r1" = 0

# another identity: the base keeps the sequences for the grace period, then frees them
sessions 3
check "3 new sessions: 3 more sequences" wait_for sequences 8
echo "router-other 1" >"$T/run-rc/router.id"
kill -9 "$P2"
P3=$(wait_router "$P2") || { fail "the router did not come back"; exit 1; }
check "the router came back as router-other" wait_for clients 1
check "it reclaimed nothing (seqs_reclaimed still 5)" test "$(bstat seqs_reclaimed)" = 5
check "the orphans are freed after base.seq_grace_ms (seqs_freed 8)" wait_for seqs_freed 8
check "no sequence is left" wait_for sequences 0
check "no KV block is left referenced" wait_for kv_blocks_used 0
S8=$(tail -1 "$T/ids")
r8=$(rebuilt "$S8")
check "a session of the old identity rebuilds its KV from its tokens on its next turn (rebuilt_tokens $r8)" \
  test -n "$r8" -a "${r8:-0}" -gt 0
check "the cluster still serves sessions" wait_for sequences 1

# the router's RPC: an intrinsic name with a raw NUL ("certainty\0x") is refused, not read as "certainty"
# frame: "ALRP", version 1, flags 0, method 101 (RouterInvoke), request id 9, trace 0, payload 17 bytes;
# payload: intrinsic (field 1) = 11 bytes, tokens (field 2, packed) = 1,5
if command -v nngcat >/dev/null; then
  printf 'ALRP\x01\x00\x65\x00\x09\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x11\x00\x00\x00\x00\x00\x00\x00\x0a\x0bcertainty\x00x\x12\x02\x01\x05' >"$T/nul.bin"
  timeout 10 nngcat --req --dial "$R" --file "$T/nul.bin" --recv-timeout 5 --ascii >"$T/nul.out" 2>&1
  check "a NUL inside the intrinsic name is refused by the router, naming the field" \
    grep -q "bad RouterInvoke request: message: field 1: a string holds a NUL byte at offset 9" "$T/nul.out"
fi
stop_up rc
[ $FAILS -eq 0 ] || { tail -40 "$T/rc.err"; exit 1; }
echo "all reclaim checks passed"
