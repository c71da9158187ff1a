#!/usr/bin/env bash
# durable_sessions_test.sh: sessions under `alora up` with real processes (docs/http.md "Sessions"):
# owned by the API key that made them (another key gets the same 404 as a missing id, and does not
# list them), per-key quotas, kept across kill -9 of the base (KV rebuilt from the token history,
# reported as rebuilt_tokens) and of the router (loaded back from the SQLite store), export ->
# import round trip (same greedy continuation), strict import validation, idle TTL (gone, base KV
# freed), and idle sessions' KV evicted so that a large stateless request is not refused.
NEEDS="curl sqlite3" TMP_TAG=dsess
source "$(dirname "$0")/lib.sh"
text_models 11
KA="sk-key-a-0123456789" KB="sk-key-b-0123456789"
# write_cfg NAME EXTRA_TOP EXTRA_ROUTER_KEYS (base.kv_blocks default 512)
write_cfg() {
  cat >"$T/$1.cfg" <<CFG
run_dir = "$T/run-$1";
base = { model = "$T/model"; kv_blocks = ${KVB:-512}; block_size = 16; threads = 1; };
worker = { kv_blocks = 64; heartbeat_ms = 200; health_ms = 200; };
router = { max_queue = 16; worker_ttl_ms = 1500; request_timeout_ms = 20000; http = "$H";
           tokenizer = "$TOK"; model_name = "tiny-base"; $2 };
up = { grace_ms = 5000; backoff_min_ms = 100; backoff_max_ms = 1000; };
intrinsics = (
  { name = "certainty"; adapter = "$T/cert"; replicas = 1; max_tokens = 4; parser = "certainty";
    outputs = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]; }
);
CFG
}
# req KEY METHOD PATH [BODY] -> CODE, BODY
req() {
  local k=$1 m=$2 p=$3; shift 3
  local auth=()
  [ -n "$k" ] && auth=(-H "Authorization: Bearer $k")
  if [ $# -gt 0 ]; then
    CODE=$(curl -s -o "$T/body" -w '%{http_code}' -X "$m" "$H$p" -H 'Content-Type: application/json' "${auth[@]}" --data-binary "$1")
  else
    CODE=$(curl -s -o "$T/body" -w '%{http_code}' -X "$m" "$H$p" "${auth[@]}")
  fi
  BODY=$(cat "$T/body")
}
status_json() { "$ALORA" status --router "ipc://$T/run-$1/router.ipc" --json 2>/dev/null; }
wait_healthy() { # wait_healthy [SECONDS]: /healthz answers 200 ok
  local deadline=$((SECONDS + ${1:-120}))
  while [ $SECONDS -lt $deadline ]; do
    [ "$(curl -s "$H/healthz" | jq -r .status 2>/dev/null)" = ok ] && return 0
    sleep 0.2
  done
  return 1
}
MID=$(for i in $(seq 1 8); do printf 'The river runs past the old mill and the stone bridge near town %d. ' "$i"; done)
LONG=$(for i in $(seq 1 30); do printf 'The river runs past the old mill and the stone bridge near town %d. ' "$i"; done)

# ---- 1. ownership, quotas, kill -9 of the base and of the router, export / import ----------------
write_cfg own "api_keys = [\"$KA\", \"$KB\"]; session_max_per_key = 3; session_max_tokens_per_key = 2000;"
start_up own || { fail "cluster did not start"; exit 1; }
wait_healthy || fail "cluster not healthy"

req "$KA" POST /v1/sessions '{"system":"You are terse.","messages":[{"role":"user","content":"My password is hunter2."}]}'
S=$(jq -r .id <<<"$BODY")
check "A creates a session: 200, a 128-bit random id" [ "$CODE" = 200 ] && [[ "$S" =~ ^[0-9a-f]{32}$ ]]
req "$KA" POST "/v1/sessions/$S/generate" '{"max_tokens":4,"temperature":0}'
check "A generates on it" [ "$CODE" = 200 -a "$(jq -r .usage.completion_tokens <<<"$BODY")" = 4 ]
req "$KA" GET "/v1/sessions/$S"
MSGS_A=$(jq -c .messages <<<"$BODY")
NT_A=$(jq -r .n_tokens <<<"$BODY")
check "A reads it: 3 messages" [ "$CODE" = 200 -a "$(jq length <<<"$MSGS_A")" = 3 ]

# B: someone else's session is exactly a missing one
MISSING=0123456789abcdef0123456789abcdef
for ep in "GET /v1/sessions/ID" "DELETE /v1/sessions/ID" "GET /v1/sessions/ID/export" \
          "POST /v1/sessions/ID/generate {}" "POST /v1/sessions/ID/messages {\"role\":\"user\",\"content\":\"hi\"}" \
          "POST /v1/sessions/ID/intrinsics/certainty {}"; do
  read -r m p b <<<"$ep"
  if [ -n "${b:-}" ]; then req "$KB" "$m" "${p/ID/$S}" "$b"; else req "$KB" "$m" "${p/ID/$S}"; fi
  got="$CODE $(jq -c .error <<<"$BODY" | sed "s/$S/ID/g")"
  if [ -n "${b:-}" ]; then req "$KB" "$m" "${p/ID/$MISSING}" "$b"; else req "$KB" "$m" "${p/ID/$MISSING}"; fi
  want="$CODE $(jq -c .error <<<"$BODY" | sed "s/$MISSING/ID/g")"
  [ "${got%% *}" = 404 ] && [ "$got" = "$want" ] && ok "B: $m ${p}: 404, the same answer as a missing id" ||
    fail "B: $m $p: got '$got', a missing id gives '$want'"
done
req "$KB" GET /v1/sessions
check "B's list does not show A's session" [ "$CODE" = 200 -a "$(jq '.data | length' <<<"$BODY")" = 0 ]
req "$KA" GET /v1/sessions
check "A's list shows it" [ "$CODE" = 200 -a "$(jq -r '[.data[].id] | join(",")' <<<"$BODY")" = "$S" ]
req "$KA" GET "/v1/sessions/$S"
check "A's session is untouched by B (messages, tokens)" \
  [ "$CODE" = 200 -a "$(jq -c .messages <<<"$BODY")" = "$MSGS_A" -a "$(jq -r .n_tokens <<<"$BODY")" = "$NT_A" ]
req "$KA" POST /v1/sessions '{"session_id":"mine"}'
check "a client-chosen id is refused (ids are random)" [ "$CODE" = 400 ] && grep -q session_id <<<"$BODY"

# quotas: 3 sessions per key, 2000 tokens per key
req "$KA" POST /v1/sessions '{}'; S2=$(jq -r .id <<<"$BODY")
req "$KA" POST /v1/sessions '{}'; S3=$(jq -r .id <<<"$BODY")
req "$KA" POST /v1/sessions '{}'
check "A's 4th session: 429 naming router.session_max_per_key" \
  [ "$CODE" = 429 ] && jq -r .error.message <<<"$BODY" | grep -q "session_max_per_key"
req "$KB" POST /v1/sessions '{}'
SB=$(jq -r .id <<<"$BODY")
check "B has its own quota: 200" [ "$CODE" = 200 ]
req "$KA" POST "/v1/sessions/$S2/messages" "{\"role\":\"user\",\"content\":\"$LONG\"}"
check "A's tokens under 2000: 200 ($(jq -r .n_tokens <<<"$BODY") tokens)" [ "$CODE" = 200 ]
req "$KA" POST "/v1/sessions/$S3/messages" "{\"role\":\"user\",\"content\":\"$LONG\"}"
check "A's tokens past 2000: 429 naming router.session_max_tokens_per_key" \
  [ "$CODE" = 429 ] && jq -r .error.message <<<"$BODY" | grep -q "session_max_tokens_per_key"
req "$KA" GET "/v1/sessions/$S3"
check "the refused message was not kept" [ "$CODE" = 200 -a "$(jq '.messages | length' <<<"$BODY")" = 0 ]
req "$KA" DELETE "/v1/sessions/$S2"; req "$KA" DELETE "/v1/sessions/$S3"
check "A deletes its extra sessions" [ "$CODE" = 200 ]

# kill -9 of the base: the next turn rebuilds the KV from the token history
st=$(status_json own)
basepid=$(jq -r '.processes[] | select(.role == "base") | .pid' <<<"$st")
kill -9 "$basepid"
back=0
for _ in $(seq 1 600); do
  st=$(status_json own)
  nb=$(jq -r '.processes[] | select(.role == "base" and .health == "ok") | .pid' <<<"$st")
  [ -n "$nb" ] && [ "$nb" != "$basepid" ] && wait_healthy 60 && { back=1; break; }
  sleep 0.2
done
check "base killed and restarted by alora up (pid $basepid -> ${nb:-none})" [ $back = 1 ]
req "$KA" POST "/v1/sessions/$S/messages" '{"role":"user","content":"And what is my password?"}'
RB1=$(jq -r .timings.rebuilt_tokens <<<"$BODY")
check "after kill -9 of the base: messages 200, rebuilt_tokens = $RB1 = the session's $NT_A tokens" \
  [ "$CODE" = 200 -a "$RB1" = "$NT_A" ]
req "$KA" POST "/v1/sessions/$S/generate" '{"max_tokens":4,"temperature":0}'
check "then generate: 200, nothing more to rebuild" \
  [ "$CODE" = 200 -a "$(jq -r .session.timings.rebuilt_tokens <<<"$BODY")" = 0 ]
req "$KA" POST "/v1/sessions/$S/intrinsics/certainty" '{}'
check "and a session intrinsic: 200 ($(jq -c .result <<<"$BODY"))" [ "$CODE" = 200 ]
req "$KA" GET "/v1/sessions/$S"
MSGS_A=$(jq -c .messages <<<"$BODY")
NT_A=$(jq -r .n_tokens <<<"$BODY")
check "messages intact after the base restart: 5, the first still the password" \
  [ "$(jq length <<<"$MSGS_A")" = 5 -a "$(jq -r '.[1].content' <<<"$MSGS_A")" = "My password is hunter2." ]

# export -> import (as B): a new id owned by B, the same messages and tokens, the same continuation
req "$KA" GET "/v1/sessions/$S/export"
EXP=$BODY
check "export: 200, tokens = n_tokens = $NT_A, results kept" \
  [ "$CODE" = 200 -a "$(jq '.tokens | length' <<<"$EXP")" = "$NT_A" -a "$(jq -r '.results[0].name' <<<"$EXP")" = certainty ]
req "$KB" POST /v1/sessions/import "$EXP"
SI=$(jq -r .id <<<"$BODY")
check "import as B: 200, a new id" [ "$CODE" = 200 -a "$SI" != "$S" ] && [[ "$SI" =~ ^[0-9a-f]{32}$ ]]
req "$KB" GET "/v1/sessions/$SI"
check "the imported session has the same messages and n_tokens" \
  [ "$CODE" = 200 -a "$(jq -c .messages <<<"$BODY")" = "$MSGS_A" -a "$(jq -r .n_tokens <<<"$BODY")" = "$NT_A" ]
req "$KA" GET "/v1/sessions/$SI"
check "A cannot see B's import" [ "$CODE" = 404 ]
req "$KA" POST "/v1/sessions/$S/generate" '{"max_tokens":6,"temperature":0}'
GA=$(jq -r '.choices[0].message.content' <<<"$BODY")
req "$KB" POST "/v1/sessions/$SI/generate" '{"max_tokens":6,"temperature":0}'
GB=$(jq -r '.choices[0].message.content' <<<"$BODY")
check "original and import continue identically (greedy): '$GA'" [ "$CODE" = 200 -a "$GA" = "$GB" ]
bad_import() { # DESC JQ-EDIT FIELD
  req "$KB" POST /v1/sessions/import "$(jq -c "$2" <<<"$EXP")"
  [ "$CODE" = 400 ] && jq -r .error.message <<<"$BODY" | grep -q -- "$3" && ok "import $1: 400 naming $3" ||
    fail "import $1: $CODE $BODY"
}
bad_import "token id -1" '.tokens[0] = -1' "tokens\[0\]"
bad_import "token id outside the vocabulary" '.tokens[1] = 99999999' "tokens\[1\]"
bad_import "a string token" '.tokens[2] = "x"' "tokens\[2\]"
bad_import "n_tokens not the length" '.n_tokens = 3' "n_tokens"
bad_import "another model" '.model = "other"' "model"
bad_import "an unknown field" '.extra = 1' "extra"
bad_import "role wizard" '.messages[0].role = "wizard"' "messages\[0\].role"
bad_import "a message without content" 'del(.messages[1].content)' "messages\[1\]"
bad_import "version 2" '.version = 2' "version"
bad_import "no tokens" 'del(.tokens)' "tokens"
req "$KB" POST /v1/sessions/import '[1,2'
check "import of broken JSON: 400" [ "$CODE" = 400 ]

# kill -9 of the router: alora up restarts it; the sessions come back from the database
rpid=$(jq -r '.processes[] | select(.role == "router") | .pid' <<<"$(status_json own)")
[ -n "$rpid" ] || rpid=$(pgrep -f "alora-router -c $T/own.cfg" | head -1)
check "session store is a SQLite file in WAL mode" \
  [ "$(sqlite3 "$T/run-own/sessions.db" 'PRAGMA journal_mode')" = wal ]
kill -9 "$rpid"
sleep 0.5
wait_healthy 120 && ok "router killed (pid $rpid) and restarted" || fail "router did not come back"
req "$KA" GET "/v1/sessions/$S"
check "after the router restart: A's session is back with its 6 messages ($(jq '.messages | length' <<<"$BODY"))" \
  [ "$CODE" = 200 -a "$(jq '.messages | length' <<<"$BODY")" = 6 -a "$(jq -r '.messages[1].content' <<<"$BODY")" = "My password is hunter2." ]
NT_S=$(jq -r .n_tokens <<<"$BODY")
req "$KA" POST "/v1/sessions/$S/messages" '{"role":"user","content":"Thanks."}'
check "the next turn works" [ "$CODE" = 200 -a "$(jq -r .n_tokens <<<"$BODY")" -gt "$NT_S" ]
req "$KA" POST "/v1/sessions/$S/generate" '{"max_tokens":3,"temperature":0}'
check "and generate" [ "$CODE" = 200 ]
req "$KB" GET "/v1/sessions/$S"
check "B still gets 404 on A's session" [ "$CODE" = 404 ]
req "$KB" GET /v1/sessions
check "B's list after the restart: its own two sessions" \
  [ "$(jq -r '[.data[].id] | sort | join(",")' <<<"$BODY")" = "$(printf '%s\n' "$SB" "$SI" | sort | paste -sd,)" ]
req "$KA" DELETE "/v1/sessions/$S"
req "$KA" GET "/v1/sessions/$S"
check "deleted: 404" [ "$CODE" = 404 ]
check "deleted: gone from the database too" \
  [ "$(sqlite3 "$T/run-own/sessions.db" "SELECT count(*) FROM sessions WHERE id = '$S'")" = 0 ]
stop_up own

# ---- 2. idle TTL: an expired session is gone and its KV is free -----------------------------------
PORT=$(free_port); H="http://127.0.0.1:$PORT"
write_cfg ttl "session_ttl_s = 2;"
start_up ttl || { fail "cluster ttl did not start"; exit 1; }
wait_healthy || fail "cluster ttl not healthy"
used0=$(status_json ttl | jq '[.processes[] | select(.role == "base") | .kv_blocks_used] | add')
req "" POST /v1/sessions "{\"system\":\"$LONG\"}"
SE=$(jq -r .id <<<"$BODY")
check "TTL: session of $(jq -r .n_tokens <<<"$BODY") tokens" [ "$CODE" = 200 ]
used1=$(status_json ttl | jq '[.processes[] | select(.role == "base") | .kv_blocks_used] | add')
check "its KV is held: base kv_blocks_used $used0 -> $used1" [ "$used1" -gt "$used0" ]
gone=0
for _ in $(seq 1 100); do
  req "" GET "/v1/sessions/$SE"
  [ "$CODE" = 404 ] && { gone=1; break; }
  sleep 0.1
done
check "idle past router.session_ttl_s = 2: 404" [ $gone = 1 ]
st=$(status_json ttl)
used2=$(jq '[.processes[] | select(.role == "base") | .kv_blocks_used] | add' <<<"$st")
check "expired: the router holds 0 sessions, base kv_blocks_used back to $used0 (is $used2)" \
  [ "$(jq -r .sessions <<<"$st")" = 0 -a "$used2" = "$used0" ]
stop_up ttl

# ---- 3. KV pressure: idle sessions are evicted (tokens kept), stateless traffic is served --------
# The same load twice: sessions may pin 100% of the KV (the control: the stateless request is
# refused, as before eviction existed), then 50% (evicted; served).
kv_pressure() { # PERCENT
  PORT=$(free_port); H="http://127.0.0.1:$PORT"
  KVB=96 write_cfg "evict$1" "session_kv_percent = $1;"
  start_up "evict$1" || { fail "cluster evict$1 did not start"; return; }
  wait_healthy || fail "cluster evict$1 not healthy"
  local ids=() k
  for k in 1 2 3 4; do
    req "" POST /v1/sessions "{\"system\":\"Session $k. $MID\"}"
    ids+=("$(jq -r .id <<<"$BODY")")
    [ "$CODE" = 200 ] || fail "evict$1: session $k: $CODE $BODY"
  done
  local nt=$(jq -r .n_tokens <<<"$BODY")
  req "" GET /v1/sessions
  local res=$(jq '[.data[] | select(.resident)] | length' <<<"$BODY")
  local prompt=$(for i in $(seq 1 2); do printf '%s' "$MID"; done)
  local chat="{\"model\":\"tiny-base\",\"messages\":[{\"role\":\"user\",\"content\":\"Other $prompt\"}],\"max_tokens\":4}"
  if [ "$1" = 100 ]; then
    check "control, sessions may pin 100%: 4 sessions of $nt tokens on 96 blocks all resident ($res)" [ "$res" = 4 ]
    req "" POST /v1/chat/completions "$chat"
    check "control: a stateless request is refused for KV ($CODE $(jq -r .error.code <<<"$BODY"))" [ "$CODE" = 429 ]
  else
    check "sessions may pin $1%: $res of 4 resident, the oldest evicted" \
      [ "$res" -lt 4 -a "$(jq -r '.data[0].resident' <<<"$BODY")" = false ]
    req "" POST /v1/chat/completions "$chat"
    check "the same stateless request ($(jq -r .usage.prompt_tokens <<<"$BODY") tokens) is served: $CODE" [ "$CODE" = 200 ]
    req "" POST "/v1/sessions/${ids[0]}/generate" '{"max_tokens":3,"temperature":0}'
    check "the evicted session answers, its KV rebuilt ($(jq -r .session.timings.rebuilt_tokens <<<"$BODY") tokens)" \
      [ "$CODE" = 200 -a "$(jq -r .session.timings.rebuilt_tokens <<<"$BODY")" = "$nt" ]
  fi
  stop_up "evict$1"
}
kv_pressure 100
kv_pressure 50

[ $FAILS -eq 0 ] || { echo "$FAILS failure(s)"; exit 1; }
echo "all durable session checks passed"
