#!/usr/bin/env bash
# structured_test.sh: structured outputs and the sampling extensions through the HTTP API under
# `alora up` (docs/http.md): response_format (json_object, json_schema), vLLM structured_outputs
# (json, choice, regex, json_object) and guided_*, on the base model and on intrinsics (whose
# closed set of outputs is their default constraint), streaming and not; stop strings that end
# decoding early; logit_bias; the errors that name the field; and the official openai client.
# The model is random: every output must still parse and validate (the `jsonschema` package).
NEEDS=curl TMP_TAG=structured
source "$(dirname "$0")/lib.sh"
text_models 17
cat >"$T/s.cfg" <<CFG
run_dir = "$T/run-s";
base = { model = "$T/model"; kv_blocks = 512; block_size = 16; threads = 1; };
worker = { kv_blocks = 64; heartbeat_ms = 200; };
router = { max_queue = 16; worker_ttl_ms = 1500; request_timeout_ms = 60000; http = "$H";
           tokenizer = "$TOK"; model_name = "tiny-base"; };
up = { grace_ms = 5000; backoff_min_ms = 100; backoff_max_ms = 2000; };
intrinsics = (
  { name = "certainty"; adapter = "$T/cert"; replicas = 1; max_tokens = 4; parser = "certainty";
    outputs = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]; },
  { name = "answerability"; adapter = "$T/ans"; replicas = 1; max_tokens = 4; parser = "answerability";
    outputs = ["answerable", "unanswerable"]; },
  { name = "qr"; adapter = "$T/ans"; replicas = 1; max_tokens = 40; parser = "query_rewrite"; },
  { name = "hd"; adapter = "$T/cert"; replicas = 1; max_tokens = 60; parser = "hallucination_detection"; }
);
CFG
start_up s || { fail "cluster did not start"; exit 1; }

post() { # post PATH BODY -> CODE, BODY
  CODE=$(curl -s -o "$T/body" -w '%{http_code}' "$H$1" -H 'Content-Type: application/json' --data-binary "$2")
  BODY=$(cat "$T/body")
}
content() { jq -r '.choices[0].message.content // .choices[0].text' <<<"$BODY"; }
expect_400() { # DESC BODY FIELD
  post /v1/chat/completions "$2"
  if [ "$CODE" = 400 ] && jq -r .error.message <<<"$BODY" | grep -qF -- "$3"; then ok "$1 -> 400 naming $3"
  else fail "$1: got $CODE $BODY (want 400 naming '$3')"; fi
}
MSG='"messages":[{"role":"user","content":"Give me a record."}]'
SCHEMA='{"type":"object","properties":{"name":{"type":"string","maxLength":12},"age":{"type":"integer","minimum":0,"maximum":130},"tags":{"type":"array","items":{"enum":["a","b","c"]},"maxItems":3}},"required":["name","age","tags"],"additionalProperties":false}'

# validate SCHEMA TEXT: the text parses as JSON and validates (jsonschema when installed, else parse only)
test_python "openai, jsonschema" ||
  echo "SKIP (part): openai / jsonschema cannot be installed (tests/integration/requirements.txt): outputs are only parsed, the client part is skipped"
validate() {
  "$PY" - "$1" "$2" <<'PY'
import json, sys
schema, text = json.loads(sys.argv[1]), sys.argv[2]
v = json.loads(text)
try:
    import jsonschema
except ImportError:
    sys.exit(0)
jsonschema.validate(v, schema)
PY
}

# ---- the base model: each source, random sampling with several seeds ----
for seed in 1 2 3; do
  post /v1/chat/completions "{\"model\":\"tiny-base\",$MSG,\"max_tokens\":120,\"temperature\":1,\"seed\":$seed,
    \"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"rec\",\"schema\":$SCHEMA,\"strict\":true}}}"
  out=$(content)
  if [ "$CODE" = 200 ] && validate "$SCHEMA" "$out" 2>"$T/verr"; then
    ok "response_format json_schema, seed $seed: $(head -c 80 <<<"$out") ($(jq -r .choices[0].finish_reason <<<"$BODY"))"
  else fail "response_format json_schema seed $seed: $CODE $BODY $(tail -2 "$T/verr")"; fi
done
post /v1/chat/completions "{\"model\":\"tiny-base\",$MSG,\"max_tokens\":60,\"temperature\":1,\"seed\":5,\"response_format\":{\"type\":\"json_object\"}}"
out=$(content); fin=$(jq -r .choices[0].finish_reason <<<"$BODY")
if [ "$CODE" = 200 ] && { [ "$fin" = length ] || jq -e 'type == "object"' <<<"$out" >/dev/null; }; then
  ok "response_format json_object: $(head -c 60 <<<"$out") ($fin)"
else fail "json_object: $CODE $BODY"; fi
post /v1/completions '{"model":"tiny-base","prompt":"Pick:","max_tokens":8,"temperature":1,"seed":3,"structured_outputs":{"choice":["red","green","blue"]}}'
out=$(content)
[[ "$CODE" = 200 && "$out" =~ ^(red|green|blue)$ ]] && ok "structured_outputs.choice -> '$out'" || fail "choice: $CODE $BODY"
post /v1/completions '{"model":"tiny-base","prompt":"Date:","max_tokens":12,"temperature":1,"seed":4,"structured_outputs":{"regex":"20[0-9]{2}-(0[1-9]|1[0-2])-[0-3][0-9]"}}'
out=$(content)
[[ "$CODE" = 200 && "$out" =~ ^20[0-9]{2}-(0[1-9]|1[0-2])-[0-3][0-9]$ ]] && ok "structured_outputs.regex -> '$out'" || fail "regex: $CODE $BODY"
post /v1/chat/completions "{\"model\":\"tiny-base\",$MSG,\"max_tokens\":120,\"temperature\":0.8,\"seed\":9,\"guided_json\":$SCHEMA}"
out=$(content)
[ "$CODE" = 200 ] && validate "$SCHEMA" "$out" 2>/dev/null && ok "guided_json (vLLM's older field)" || fail "guided_json: $CODE $BODY"
post /v1/chat/completions "{\"model\":\"tiny-base\",$MSG,\"max_tokens\":8,\"guided_choice\":[\"yes\",\"no\"]}"
out=$(content)
[[ "$CODE" = 200 && "$out" =~ ^(yes|no)$ ]] && ok "guided_choice -> '$out'" || fail "guided_choice: $CODE $BODY"
# streaming: generated in steps (token by token), each step resuming the constraint, the penalties
# and min_tokens from the output so far; the chunks reassemble to valid JSON
for seed in 11 12 13; do
  curl -sN "$H/v1/chat/completions" -H 'Content-Type: application/json' --data-binary \
    "{\"model\":\"tiny-base\",$MSG,\"max_tokens\":120,\"temperature\":1,\"seed\":$seed,\"stream\":true,\"frequency_penalty\":0.5,\"min_tokens\":4,\"structured_outputs\":{\"json\":$SCHEMA}}" >"$T/sse"
  out=$(sed -n 's/^data: //p' "$T/sse" | grep -v '^\[DONE\]' | jq -rj '.choices[0].delta.content // empty')
  nch=$(sed -n 's/^data: //p' "$T/sse" | grep -v '^\[DONE\]' | jq -r 'select((.choices[0].delta.content // "") != "") | 1' | wc -l)
  if validate "$SCHEMA" "$out" 2>/dev/null && [ "$nch" -ge 3 ]; then
    ok "streamed structured output, seed $seed, $nch content chunks, validates: $(head -c 60 <<<"$out")"
  else fail "streamed structured output seed $seed ($nch content chunks): '$out' $(head -c 300 "$T/sse")"; fi
done
# a stream with a choice constraint: steps cannot restart it (a restart could append a second choice)
curl -sN "$H/v1/completions" -H 'Content-Type: application/json' --data-binary \
  '{"model":"tiny-base","prompt":"Pick:","max_tokens":8,"temperature":1,"seed":3,"stream":true,"structured_outputs":{"choice":["red","green","blue"]}}' >"$T/sse"
out=$(sed -n 's/^data: //p' "$T/sse" | grep -v '^\[DONE\]' | jq -rj '.choices[0].text // empty')
[[ "$out" =~ ^(red|green|blue)$ ]] && ok "streamed choice -> '$out'" || fail "streamed choice: '$out' $(head -c 300 "$T/sse")"
# logprobs stay the model's own distribution: the chosen token's logprob is among its top alternatives
post /v1/completions '{"model":"tiny-base","prompt":"Pick:","max_tokens":4,"logprobs":5,"structured_outputs":{"choice":["red","green"]}}'
[ "$CODE" = 200 ] && jq -e '.choices[0].logprobs.token_logprobs | all(. <= 0)' <<<"$BODY" >/dev/null &&
  ok "logprobs with a constraint: $(jq -c '.choices[0].logprobs.token_logprobs' <<<"$BODY")" || fail "logprobs: $CODE $BODY"

# ---- chat_template_kwargs: Granite 3.3's thinking and controls reach the rendered prompt ----
ptoks() { post /v1/chat/completions "{\"model\":\"tiny-base\",$1,\"max_tokens\":1$2}"; jq -r .usage.prompt_tokens <<<"$BODY"; }
DOCS='"documents":[{"doc_id":"1","text":"The sky is blue."}]'
p0=$(ptoks "$MSG" ""); p1=$(ptoks "$MSG" ',"chat_template_kwargs":{"thinking":true}')
p2=$(ptoks "$MSG,$DOCS" ""); p3=$(ptoks "$MSG,$DOCS" ',"chat_template_kwargs":{"controls":{"citations":true,"hallucinations":true}}')
p4=$(ptoks "$MSG" ',"chat_template_kwargs":{"controls":{"length":"short"},"unknown_arg":1}')
if [ "$p1" -gt $((p0 + 50)) ] && [ "$p3" -gt $((p2 + 50)) ] && [ "$p4" -gt "$p0" ]; then
  ok "chat_template_kwargs: thinking $p0 -> $p1 prompt tokens, citations+hallucinations $p2 -> $p3, controls after the role $p0 -> $p4"
else fail "chat_template_kwargs: $p0 $p1 $p2 $p3 $p4"; fi
expect_400 "chat_template_kwargs.thinking not a boolean" "{\"model\":\"tiny-base\",$MSG,\"chat_template_kwargs\":{\"thinking\":\"yes\"}}" "chat_template_kwargs.thinking"
expect_400 "chat_template_kwargs.controls not an object" "{\"model\":\"tiny-base\",$MSG,\"chat_template_kwargs\":{\"controls\":[1]}}" "chat_template_kwargs.controls"

# ---- echo (completions): the prompt comes back first, its tokens' logprobs computed by the base ----
post /v1/completions '{"model":"tiny-base","prompt":"Date: 2024","max_tokens":2,"temperature":0,"echo":true,"logprobs":2}'
if [ "$CODE" = 200 ] && jq -e '(.choices[0].text | startswith("Date: 2024")) and
     (.choices[0].logprobs.token_logprobs[0] == null) and (.choices[0].logprobs.top_logprobs[0] == null) and
     (.choices[0].logprobs.token_logprobs[1:] | all(. <= 0)) and
     ((.choices[0].logprobs.tokens | length) == .usage.prompt_tokens + .usage.completion_tokens) and
     ([.choices[0].logprobs.top_logprobs[1:][] | length] | all(. >= 1 and . <= 2))' <<<"$BODY" >/dev/null; then
  ok "echo + logprobs: prompt text first, first token null, $(jq '.choices[0].logprobs.tokens | length' <<<"$BODY") token entries"
else fail "echo: $CODE $BODY"; fi
# the reference: the greedy continuation of P, appended to P and echoed, has the logprob it had as
# output (same context; prefill rows against the sampled row, so up to float rounding)
P='[1,40,77,300,5,9,123,450]'
post /v1/completions "{\"model\":\"tiny-base\",\"prompt\":$P,\"max_tokens\":1,\"temperature\":0,\"logprobs\":1,\"return_tokens_as_token_ids\":true}"
nid=$(jq -r '.choices[0].logprobs.tokens[0] | ltrimstr("token_id:")' <<<"$BODY")
nlp=$(jq -r '.choices[0].logprobs.token_logprobs[0]' <<<"$BODY")
post /v1/completions "{\"model\":\"tiny-base\",\"prompt\":${P%]},$nid],\"max_tokens\":1,\"temperature\":0,\"logprobs\":1,\"echo\":true,\"return_tokens_as_token_ids\":true}"
plp=$(jq -r '.choices[0].logprobs.token_logprobs[8]' <<<"$BODY")
if [ "$CODE" = 200 ] && [[ "$nid" =~ ^[0-9]+$ ]] && jq -e --arg t "token_id:$nid" '.choices[0].logprobs.tokens[8] == $t and
     (.choices[0].logprobs.tokens | length) == 10 and .choices[0].logprobs.tokens[0] == "token_id:1"' <<<"$BODY" >/dev/null &&
   awk -v a="$plp" -v b="$nlp" 'BEGIN { d = a - b; exit !(d < 1e-3 && d > -1e-3) }'; then
  ok "echoed logprob of the greedy continuation ($nid) $plp == its logprob as output $nlp"
else fail "echo vs output logprob: nid=$nid $plp vs $nlp ($CODE $BODY)"; fi
post /v1/completions '{"model":"certainty","prompt":"x","max_tokens":1,"echo":true}'
[ "$CODE" = 400 ] && jq -r .error.message <<<"$BODY" | grep -q '^echo' && ok "echo on an intrinsic -> 400 naming echo" || fail "echo intrinsic: $CODE $BODY"
curl -sN "$H/v1/completions" -H 'Content-Type: application/json' --data-binary \
  '{"model":"tiny-base","prompt":"Date: 2024","max_tokens":3,"stream":true,"echo":true}' >"$T/sse"
out=$(sed -n 's/^data: //p' "$T/sse" | grep -v '^\[DONE\]' | jq -rj '.choices[0].text // empty')
[[ "$out" == "Date: 2024"* ]] && ok "streamed echo starts with the prompt: '$out'" || fail "streamed echo: '$out'"

# ---- intrinsics: the closed set of outputs is the default constraint; a client's own wins ----
for intr in certainty answerability qr hd; do
  post /v1/chat/completions "{\"model\":\"$intr\",\"messages\":[{\"role\":\"user\",\"content\":\"Is the sky blue?\"},{\"role\":\"assistant\",\"content\":\"Yes.\"}]}"
  res=$(jq -c '.intrinsic' <<<"$BODY")
  if [ "$CODE" = 200 ] && jq -e '.intrinsic.result != null and (.intrinsic.error == null)' <<<"$BODY" >/dev/null; then
    ok "$intr: parsed result $(jq -c .intrinsic.result <<<"$BODY") from '$(content)'"
  else fail "$intr: $CODE $res"; fi
done
post /v1/chat/completions '{"model":"certainty","messages":[{"role":"user","content":"x"}],"structured_outputs":{"choice":["7"]}}'
[ "$CODE" = 200 ] && [ "$(content)" = 7 ] && ok "a client's structured_outputs overrides the intrinsic's default" ||
  fail "override: $CODE $BODY"

# ---- a completions prompt that already holds the invocation (granite-io renders it): not appended twice ----
post /v1/completions '{"model":"certainty","prompt":[5,6,7,8,600,601,602],"max_tokens":2}'
[ "$CODE" = 200 ] && [ "$(jq .usage.prompt_tokens <<<"$BODY")" = 7 ] && [ "$(jq .intrinsic.activation_start <<<"$BODY")" = 4 ] &&
  ok "completions prompt with the invocation inside: 7 prompt tokens, activation at 4" ||
  fail "invocation in the prompt: $CODE $(jq -c '{usage, a: .intrinsic.activation_start}' <<<"$BODY")"
post /v1/completions '{"model":"certainty","prompt":[5,6,7,8],"max_tokens":2}'
[ "$CODE" = 200 ] && [ "$(jq .usage.prompt_tokens <<<"$BODY")" = 7 ] &&
  ok "completions prompt without it: the invocation is appended" || fail "appended invocation: $CODE $BODY"

# ---- sessions: a session's generate takes the same controls ----
post /v1/sessions '{"system":"You are terse."}'
SID=$(jq -r .id <<<"$BODY")
post "/v1/sessions/$SID/messages" '{"role":"user","content":"Pick a color."}'
post "/v1/sessions/$SID/generate" '{"max_tokens":8,"temperature":1,"seed":2,"structured_outputs":{"choice":["cyan","magenta"]}}'
out=$(jq -r '.choices[0].message.content // .text // .message.content' <<<"$BODY")
[[ "$CODE" = 200 && "$out" =~ ^(cyan|magenta)$ ]] && ok "session generate with structured_outputs.choice -> '$out'" ||
  fail "session generate: $CODE $BODY"

post "/v1/sessions/$SID/intrinsics/certainty" '{"structured_outputs":{"choice":["3"]}}'
[ "$CODE" = 200 ] && [ "$(jq -r .text <<<"$BODY")" = 3 ] &&
  ok "session intrinsic: a client's structured output replaces the default contract" || fail "session intrinsic: $CODE $BODY"
post "/v1/sessions/$SID/intrinsics/certainty" '{"structured_outputs":{"regex":"(a"}}'
[ "$CODE" = 400 ] && jq -r .error.message <<<"$BODY" | grep -q structured_outputs.regex &&
  ok "session intrinsic: a bad regex -> 400 naming it" || fail "session intrinsic bad regex: $CODE $BODY"

# ---- stop strings end decoding early; logit_bias ----
post /v1/completions '{"model":"tiny-base","prompt":"a","max_tokens":200,"structured_outputs":{"regex":"(ab){1,300}"},"stop":["abab"]}'
n=$(jq .usage.completion_tokens <<<"$BODY"); out=$(content)
if [ "$CODE" = 200 ] && [ "$n" -lt 20 ] && [[ "$out" != *abab* ]] && [ "$(jq -r .choices[0].finish_reason <<<"$BODY")" = stop ]; then
  ok "stop string ends decoding early: $n tokens of max 200, text '$out'"
else fail "stop: $CODE $BODY"; fi
post /v1/completions '{"model":"tiny-base","prompt":"a","max_tokens":3,"logit_bias":{"3":100},"skip_special_tokens":false}'
[ "$CODE" = 200 ] && [ "$(content)" = "<|start_of_role|><|start_of_role|><|start_of_role|>" ] &&
  ok "skip_special_tokens: false keeps special tokens in the text" || fail "skip_special_tokens: $CODE $BODY"
tok=300
post /v1/completions "{\"model\":\"tiny-base\",\"prompt\":\"a\",\"max_tokens\":5,\"logit_bias\":{\"$tok\":100},\"logprobs\":1}"
ids=$(jq -c '[.choices[0].logprobs.tokens[]]' <<<"$BODY")
[ "$CODE" = 200 ] && [ "$(jq -r .usage.completion_tokens <<<"$BODY")" = 5 ] &&
  [ "$(jq '[.choices[0].logprobs.tokens[]] | unique | length' <<<"$BODY")" = 1 ] &&
  ok "logit_bias +100 on token $tok: every token is it ($ids)" || fail "logit_bias: $CODE $BODY"

# ---- errors name the field ----
expect_400 "a bad regex" "{\"model\":\"tiny-base\",$MSG,\"structured_outputs\":{\"regex\":\"(ab\"}}" "structured_outputs.regex"
expect_400 "an unsupported schema keyword" "{\"model\":\"tiny-base\",$MSG,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\",\"schema\":{\"not\":{\"type\":\"string\"}}}}}" "response_format.json_schema.schema"
expect_400 "two structured outputs" "{\"model\":\"tiny-base\",$MSG,\"guided_regex\":\"a\",\"response_format\":{\"type\":\"json_object\"}}" "only one structured output"
expect_400 "a grammar" "{\"model\":\"tiny-base\",$MSG,\"structured_outputs\":{\"grammar\":\"root ::= x\"}}" "structured_outputs.grammar"
expect_400 "response_format type" "{\"model\":\"tiny-base\",$MSG,\"response_format\":{\"type\":\"xml\"}}" "response_format.type"
expect_400 "logit_bias key" "{\"model\":\"tiny-base\",$MSG,\"logit_bias\":{\"abc\":1}}" "logit_bias"
expect_400 "logit_bias outside the vocabulary" "{\"model\":\"tiny-base\",$MSG,\"logit_bias\":{\"999999\":1}}" "outside the vocabulary"
expect_400 "deprecated functions" "{\"model\":\"tiny-base\",$MSG,\"functions\":[]}" "functions: deprecated"
expect_400 "audio output" "{\"model\":\"tiny-base\",$MSG,\"modalities\":[\"text\",\"audio\"]}" "modalities"
expect_400 "min_tokens > max_tokens" "{\"model\":\"tiny-base\",$MSG,\"min_tokens\":9,\"max_tokens\":3}" "min_tokens"

# ---- the official openai client: response_format json_schema and extra_body ----
if "$PY" -c "import openai, jsonschema" 2>/dev/null; then
  if "$PY" - "$H/v1" "$SCHEMA" <<'PY'; then ok "openai client: response_format json_schema, extra_body structured_outputs"; else fail "openai client"; fi
import json, sys, openai, jsonschema
c = openai.OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0)
schema = json.loads(sys.argv[2])
r = c.chat.completions.create(model="tiny-base", messages=[{"role": "user", "content": "hi"}], max_tokens=120,
    temperature=1, seed=21, response_format={"type": "json_schema", "json_schema": {"name": "rec", "schema": schema}})
jsonschema.validate(json.loads(r.choices[0].message.content), schema)
r = c.chat.completions.create(model="tiny-base", messages=[{"role": "user", "content": "hi"}], max_tokens=8,
    extra_body={"structured_outputs": {"choice": ["up", "down"]}})
assert r.choices[0].message.content in ("up", "down"), r
try:
    c.chat.completions.create(model="tiny-base", messages=[{"role": "user", "content": "hi"}],
        extra_body={"structured_outputs": {"regex": "(a"}})
    sys.exit("bad regex accepted")
except openai.BadRequestError as e:
    assert "structured_outputs.regex" in str(e), e
PY
else
  echo "SKIP: the openai / jsonschema packages cannot be installed here (tests/integration/requirements.txt)"
fi

R="ipc://$T/run-s/router.ipc" stop_up s
[ $FAILS -eq 0 ] && echo "all structured-output tests passed" || echo "$FAILS failure(s)"
[ $FAILS -eq 0 ]
