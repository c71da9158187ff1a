#!/usr/bin/env bash
# http_test.sh: the router's HTTP front door (docs/http.md) end to end under `alora up`: every endpoint
# with curl, the documented errors, API keys, prefix-cache accounting of resent conversations, the
# official `openai` Python client (streaming, model = an intrinsic), and `promtool check metrics`.
NEEDS=curl TMP_TAG=http
source "$(dirname "$0")/lib.sh"
text_models 11
KEY="sk-http-test-0123456789"
# write_cfg NAME EXTRA_ROUTER_KEYS
write_cfg() {
  cat >"$T/$1.cfg" <<CFG
run_dir = "$T/run-$1";
base = { model = "$T/model"; kv_blocks = 512; block_size = 16; threads = 1; };
worker = { kv_blocks = 64; heartbeat_ms = 200; };
router = { max_queue = 16; worker_ttl_ms = 1500; request_timeout_ms = 20000; http = "$H";
           tokenizer = "$TOK"; model_name = "tiny-base"; max_body = "64KiB"; $2 };
up = { grace_ms = 5000; backoff_min_ms = 100; backoff_max_ms = 2000; };
intrinsics = (
  { name = "certainty"; adapter = "$T/cert"; replicas = 1; max_tokens = 4; parser = "certainty";
    outputs = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]; },
  { name = "answerability"; adapter = "$T/ans"; replicas = 1; max_tokens = 4; parser = "answerability";
    outputs = ["answerable", "unanswerable"]; },
  { name = "hallucination_detection"; adapter = "$T/ans"; replicas = 1; max_tokens = 6; }
);
CFG
}

stop_up() {
  kill -TERM "$UP_PID"; wait "$UP_PID"; local rc=$?
  UP_PID=
  [ $rc -eq 0 ] && ok "$1: alora up exited 0" || fail "$1: alora up exited $rc"
  if grep -E "runtime error|AddressSanitizer|LeakSanitizer" "$T/$1.err" >/dev/null; then
    fail "$1: sanitizer reports:"; grep -E -A8 "runtime error|AddressSanitizer|LeakSanitizer" "$T/$1.err" | head -40
  fi
}

# req METHOD PATH [BODY] -> sets CODE and BODY (file $T/body)
req() {
  local m=$1 p=$2; shift 2
  if [ $# -gt 0 ]; then
    CODE=$(curl -s -o "$T/body" -w '%{http_code}' -X "$m" "$H$p" -H 'Content-Type: application/json' "${AUTH[@]}" --data-binary "$1")
  else
    CODE=$(curl -s -o "$T/body" -w '%{http_code}' -X "$m" "$H$p" "${AUTH[@]}")
  fi
  BODY=$(cat "$T/body")
}
AUTH=()
expect_err() { # DESC CODE ERRCODE FIELD-SUBSTRING
  if [ "$CODE" = "$2" ] && [ "$(jq -r .error.code <<<"$BODY" 2>/dev/null)" = "$3" ] &&
     jq -r .error.message <<<"$BODY" | grep -q -- "$4"; then
    ok "$1 -> $2 $3"
  else
    fail "$1: got $CODE $BODY (want $2 $3 naming '$4')"
  fi
}

# ---- 1. no API keys -----------------------------------------------------------------------------
write_cfg open ""
start_up open || { fail "cluster did not start"; exit 1; }

req GET /healthz
check "GET /healthz 200 ok" [ "$CODE" = 200 -a "$(jq -r .status <<<"$BODY")" = ok ]
req GET /v1/models
check "GET /v1/models lists the base and 3 intrinsics" \
  [ "$(jq -c '[.data[].id]' <<<"$BODY")" = '["tiny-base","certainty","answerability","hallucination_detection"]' ]
req GET /v1/intrinsics
check "GET /v1/intrinsics: parsers and workers" \
  [ "$(jq -c '[.data[] | [.name, .parser, .workers]]' <<<"$BODY")" = '[["certainty","certainty",1],["answerability","answerability",1],["hallucination_detection","hallucination_detection",1]]' ]

CONV='[{"role":"system","content":"You answer questions about geography."},{"role":"user","content":"What is the capital of France? Please answer in one short sentence."}]'
req POST /v1/chat/completions "{\"model\":\"tiny-base\",\"messages\":$CONV,\"max_tokens\":6,\"temperature\":0,\"logprobs\":true,\"top_logprobs\":2}"
P1=$(jq -r .usage.prompt_tokens <<<"$BODY")
check "chat completion (base): 200, 6 tokens, logprobs with 2 alternatives" \
  [ "$CODE" = 200 -a "$(jq -r '.usage.completion_tokens' <<<"$BODY")" = 6 -a \
    "$(jq -r '.choices[0].logprobs.content | length' <<<"$BODY")" = 6 -a \
    "$(jq -r '.choices[0].logprobs.content[0].top_logprobs | length' <<<"$BODY")" = 2 -a \
    "$(jq -r '.choices[0].finish_reason' <<<"$BODY")" = length ]
ANSWER=$(jq -r '.choices[0].message.content' <<<"$BODY")
req POST /v1/chat/completions "{\"model\":\"tiny-base\",\"messages\":$CONV,\"max_tokens\":6,\"temperature\":0}"
check "same request again: deterministic, cached_tokens = prompt ($P1)" \
  [ "$(jq -r '.choices[0].message.content' <<<"$BODY")" = "$ANSWER" -a \
    "$(jq -r .usage.prompt_tokens_details.cached_tokens <<<"$BODY")" = "$P1" ]
# Resend the conversation with the answer and a new turn: the earlier prompt is a prefix of it.
CONV2=$(jq -c --arg a "$ANSWER" '. + [{"role":"assistant","content":$a},{"role":"user","content":"And of Italy?"}]' <<<"$CONV")
req POST /v1/chat/completions "{\"model\":\"tiny-base\",\"messages\":$CONV2,\"max_tokens\":4,\"temperature\":0,\"seed\":5}"
C2=$(jq -r .usage.prompt_tokens_details.cached_tokens <<<"$BODY")
P2=$(jq -r .usage.prompt_tokens <<<"$BODY")
# The base caches full blocks and the partial tail of what it processed; the resent prompt shares at
# least the first prompt's tokens (minus the generation prompt, which differs from the assistant turn).
check "resent conversation: cached_tokens $C2 >= $(( (P1 / 16) * 16 - 16 )) and < prompt $P2" \
  [ "$C2" -ge $(( (P1 / 16) * 16 - 16 )) -a "$C2" -lt "$P2" ]
req POST /v1/chat/completions "{\"model\":\"certainty\",\"messages\":$CONV2}"
check "chat completion with model=certainty: intrinsic result object, activation_start" \
  [ "$CODE" = 200 -a "$(jq -r '.intrinsic.name' <<<"$BODY")" = certainty -a \
    "$(jq -r '.intrinsic.result | type' <<<"$BODY")" = object -a \
    "$(jq -r '.intrinsic.activation_start' <<<"$BODY")" = "$(( $(jq -r .usage.prompt_tokens <<<"$BODY") - 3 ))" ]
check "intrinsic on the resent conversation: prefix cached, computes only invocation + output (<= 3+4)" \
  [ "$(jq -r '.intrinsic.computed_tokens' <<<"$BODY")" -le 7 -a \
    "$(jq -r '.intrinsic.prefix_cached_tokens' <<<"$BODY")" -ge "$C2" ]
req POST /v1/completions '{"model":"tiny-base","prompt":"Once upon a time","max_tokens":5,"temperature":0}'
check "completion (text prompt)" [ "$CODE" = 200 -a "$(jq -r .object <<<"$BODY")" = text_completion ]
req POST /v1/completions '{"model":"answerability","prompt":[10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27]}'
check "completion with model=answerability on token ids" \
  [ "$CODE" = 200 -a "$(jq -r .intrinsic.activation_start <<<"$BODY")" = 18 ]
req POST /v1/chat/completions "{\"model\":\"tiny-base\",\"messages\":$CONV,\"max_tokens\":12,\"temperature\":0}"
NS_TEXT=$(jq -r '.choices[0].message.content' <<<"$BODY"); NS_N=$(jq -r .usage.completion_tokens <<<"$BODY")
SSE=$(curl -sN "$H/v1/chat/completions" -d "{\"model\":\"tiny-base\",\"messages\":$CONV,\"max_tokens\":12,\"temperature\":0,\"stream\":true,\"stream_options\":{\"include_usage\":true}}")
ST_TEXT=$(grep '^data: {' <<<"$SSE" | sed 's/^data: //' | jq -j '.choices[0].delta.content // ""')
check "streaming chat: role chunk, content chunks, usage, [DONE]; same text/tokens as non-streamed ($NS_N)" \
  [ "$(grep -c '^data: {' <<<"$SSE")" -ge 3 -a "$(grep -c 'data: \[DONE\]' <<<"$SSE")" = 1 -a \
    "$(grep '"usage"' <<<"$SSE" | sed 's/^data: //' | jq -r .usage.completion_tokens)" = "$NS_N" -a "$ST_TEXT" = "$NS_TEXT" ]
req POST /v1/chat/completions "{\"model\":\"tiny-base\",\"messages\":$CONV,\"max_tokens\":40,\"temperature\":0,\"stop\":[\"e\"]}"
check "stop string: text has no 'e'" [ "$CODE" = 200 ] && ! jq -r '.choices[0].message.content' <<<"$BODY" | grep -q e

# sessions
req POST /v1/sessions '{"system":"You are terse.","documents":[{"text":"Paris is the capital of France."}]}'
SID=$(jq -r .id <<<"$BODY")
check "POST /v1/sessions" [ "$CODE" = 200 -a "$(jq -r .n_tokens <<<"$BODY")" -gt 0 ]
req POST "/v1/sessions/$SID/messages" '{"role":"user","content":"What is the capital of France?"}'
check "POST /v1/sessions/{id}/messages" [ "$CODE" = 200 -a "$(jq -r .appended_tokens <<<"$BODY")" -gt 0 ]
req POST "/v1/sessions/$SID/generate" '{"max_tokens":5,"temperature":0}'
check "POST /v1/sessions/{id}/generate" [ "$CODE" = 200 -a "$(jq -r .usage.completion_tokens <<<"$BODY")" = 5 ]
NS=$(jq -r .session.n_tokens <<<"$BODY")
req POST "/v1/sessions/$SID/intrinsics/certainty" '{}'
check "POST /v1/sessions/{id}/intrinsics/certainty: activation at the session's end" \
  [ "$CODE" = 200 -a "$(jq -r .activation_start <<<"$BODY")" = "$NS" -a "$(jq -r '.result | type' <<<"$BODY")" = object ]
req POST "/v1/sessions/$SID/intrinsics/hallucination_detection" '{"max_tokens":3}'
# its output is constrained to the hallucination schema: done within max_tokens, and it parses
check "session intrinsic (hallucination schema, max_tokens 3): $(jq -c .result <<<"$BODY")" \
  [ "$CODE" = 200 -a "$(jq -r .completion_tokens <<<"$BODY")" -le 3 -a "$(jq -r '.result.error // "none"' <<<"$BODY")" = none ]
req GET "/v1/sessions/$SID"
check "GET /v1/sessions/{id}: 3 messages, unchanged length" \
  [ "$CODE" = 200 -a "$(jq -r '.messages | length' <<<"$BODY")" = 3 -a "$(jq -r .n_tokens <<<"$BODY")" = "$NS" ]
req DELETE "/v1/sessions/$SID"
check "DELETE /v1/sessions/{id}" [ "$CODE" = 200 -a "$(jq -r .deleted <<<"$BODY")" = true ]

# errors
req POST /v1/chat/completions '{"model": "tiny-base", "messages": ['
expect_err "invalid JSON" 400 invalid_argument "JSON"
req POST /v1/chat/completions '{"model":"tiny-base","messages":[{"role":"user","content":"x"}],"max_tokens":"ten"}'
expect_err "max_tokens of the wrong type" 400 invalid_argument max_tokens
req POST /v1/chat/completions '{"model":"tiny-base","messages":[{"role":"user","content":"x"}],"temperature":7}'
expect_err "temperature out of range" 400 invalid_argument temperature
req POST /v1/chat/completions '{"model":"tiny-base"}'
expect_err "messages missing" 400 invalid_argument messages
req POST /v1/chat/completions '{"model":"gpt-4","messages":[{"role":"user","content":"x"}]}'
expect_err "unknown model" 404 not_found model
req POST /v1/completions '{"model":"tiny-base","prompt":[5,99999]}'
expect_err "token id outside the vocabulary" 400 invalid_argument prompt
head -c 100000 /dev/zero | tr '\0' a >"$T/big"
req POST /v1/chat/completions "@$T/big"
expect_err "body over router.max_body (64 KiB)" 413 request_too_large body
line=$(curl -s -i "$H/v1/chat/completions" -H 'Content-Type: application/json' --data-binary "@$T/big" | head -1 | tr -d '\r')
[ "$line" = "HTTP/1.1 413 Content Too Large" ] && ok "413 has its reason phrase: $line" || fail "413 status line: '$line'"
req GET /v1/sessions/nope
expect_err "unknown session" 404 not_found session
req POST /v1/sessions/nope/generate '{}'
expect_err "generate on an unknown session" 404 not_found session
req POST /v1/sessions/nope/intrinsics/certainty '{}'
expect_err "intrinsic on an unknown session" 404 not_found session
req POST /v1/sessions/x/intrinsics/nope '{}'
expect_err "unknown intrinsic" 404 not_found intrinsic
req POST /v1/sessions '{"session_id":"bad id!"}'
expect_err "bad session_id" 400 invalid_argument session_id
req PUT /v1/models
check "wrong method -> 405" [ "$CODE" = 405 ]
req GET /v1/nothing
check "unknown path -> 404 JSON" [ "$CODE" = 404 -a "$(jq -r .error.code <<<"$BODY")" = not_found ]

# the official openai client
PY=python3
if ! $PY -c "import openai" 2>/dev/null; then
  VENV=${ALORA_BUILD:-$SRC/build}/http-test-venv
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import openai" 2>/dev/null; then
    (python3 -m venv "$VENV" && timeout 120 "$VENV/bin/pip" install --quiet openai) >/dev/null 2>&1
  fi
  PY="$VENV/bin/python"
fi
if "$PY" -c "import openai" 2>/dev/null; then
  if "$PY" - "$H/v1" <<'PY'; then ok "openai client: chat, streaming, model = intrinsic"; else fail "openai client"; fi
import sys, openai
c = openai.OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0)
msgs = [{"role": "user", "content": "What is the capital of France?"}]
r = c.chat.completions.create(model="tiny-base", messages=msgs, max_tokens=5, temperature=0)
assert r.choices[0].finish_reason in ("length", "stop") and 1 <= r.usage.completion_tokens <= 5, r
assert r.usage.prompt_tokens_details.cached_tokens >= 0
ref = c.chat.completions.create(model="tiny-base", messages=msgs, max_tokens=10, temperature=0)
parts, n = [], 0
for ch in c.chat.completions.create(model="tiny-base", messages=msgs, max_tokens=10, stream=True, temperature=0,
                                    stream_options={"include_usage": True}):
    if ch.usage:
        n = ch.usage.completion_tokens
    for ck in ch.choices:
        parts.append(ck.delta.content or "")
assert n == ref.usage.completion_tokens and "".join(parts) == ref.choices[0].message.content, (n, parts, ref)
r = c.chat.completions.create(model="certainty", messages=msgs + [{"role": "assistant", "content": "Paris."}])
extra = r.model_extra["intrinsic"]
assert extra["name"] == "certainty" and isinstance(extra["result"], dict), extra
chunks = list(c.chat.completions.create(model="answerability", messages=msgs, stream=True))
assert any((ch.model_extra or {}).get("intrinsic") for ch in chunks)
try:
    c.chat.completions.create(model="nope", messages=msgs)
    raise SystemExit("no error for an unknown model")
except openai.NotFoundError:
    pass
print("openai client ok")
PY
else
  echo "SKIP (part): the openai Python package is not available (pip install failed)"
fi

# metrics
curl -s "$H/metrics" >"$T/metrics"
check "/metrics has the alora families filled" \
  grep -q 'alora_requests_total{endpoint="/v1/chat/completions",code="200"}' "$T/metrics"
check "/metrics: workers, kv blocks, queue depth, intrinsic latency" \
  bash -c "grep -q 'alora_workers{state=\"ok\"} 3' '$T/metrics' && grep -q 'alora_kv_blocks{state=\"used\"}' '$T/metrics' &&
           grep -q 'alora_queue_depth{intrinsic=\"certainty\"}' '$T/metrics' &&
           grep -q 'alora_intrinsic_latency_seconds_count{intrinsic=\"certainty\"}' '$T/metrics' &&
           grep -q '^alora_prefix_cache_hit_tokens_total [1-9]' '$T/metrics'"
if command -v promtool >/dev/null; then
  if promtool check metrics <"$T/metrics" >"$T/promtool.out" 2>&1; then ok "promtool check metrics"
  else fail "promtool check metrics:"; cat "$T/promtool.out"; fi
else
  echo "SKIP (part): promtool not installed"
fi
stop_up open

# ---- 2. API keys ----------------------------------------------------------------------------------
write_cfg keys "api_keys = [\"$KEY\"];"
start_up keys || { fail "cluster with api_keys did not start"; exit 1; }
req GET /v1/models
expect_err "no API key" 401 unauthorized authorization
AUTH=(-H "Authorization: Bearer sk-wrong-key-000000")
req POST /v1/chat/completions '{"model":"tiny-base","messages":[{"role":"user","content":"x"}],"max_tokens":1}'
expect_err "wrong API key" 401 unauthorized "invalid API key"
AUTH=(-H "Authorization: Bearer $KEY")
req POST /v1/chat/completions '{"model":"tiny-base","messages":[{"role":"user","content":"x"}],"max_tokens":1}'
check "right API key -> 200" [ "$CODE" = 200 ]
AUTH=()
req GET /healthz
check "/healthz needs no key" [ "$CODE" = 200 ]
stop_up keys

# ---- 3. refusing an open non-loopback listener ----------------------------------------------------
sed "s#http = \"$H\"#http = \"http://0.0.0.0:$PORT\"#" "$T/open.cfg" >"$T/insecure.cfg"
timeout 20 "$BIN_DIR/alora-router" -c "$T/insecure.cfg" >"$T/insecure.out" 2>&1
rc=$?
check "router refuses 0.0.0.0 without api_keys, exits 78 (AL_EXIT_CONFIG: up does not restart it) (exit $rc)" \
  bash -c "[ $rc -eq 78 ] && grep -q 'allow_insecure' '$T/insecure.out'"

[ $FAILS -eq 0 ] && echo "all http tests passed" || echo "$FAILS failure(s)"
[ $FAILS -eq 0 ]
