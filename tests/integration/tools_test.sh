#!/usr/bin/env bash
# tools_test.sh: OpenAI tool calling on /v1/chat/completions under `alora up` (docs/http.md, Tools):
# tools + tool_choice required / named / auto / none with curl (streamed and not), the agent loop's
# messages (assistant tool_calls, tool results), the errors that name the field, the official
# `openai` client round-tripping a tool loop, and LangChain (bind_tools with tool_choice="required",
# with_structured_output json_schema). The model is random: with required / named the output must
# still be valid tool calls whose arguments validate against the function's parameters schema
# (`jsonschema`, from tests/integration/requirements.txt in a venv when not installed).
NEEDS=curl TMP_TAG=tools
source "$(dirname "$0")/lib.sh"
text_models 23
cat >"$T/t.cfg" <<CFG
run_dir = "$T/run-t";
base = { model = "$T/model"; kv_blocks = 512; block_size = 16; threads = 1; };
worker = { kv_blocks = 64; heartbeat_ms = 200; };
router = { max_queue = 16; worker_ttl_ms = 1500; request_timeout_ms = 60000; http = "$H";
           tokenizer = "$TOK"; model_name = "tiny-base"; };
up = { grace_ms = 5000; backoff_min_ms = 100; backoff_max_ms = 2000; };
intrinsics = (
  { name = "certainty"; adapter = "$T/cert"; replicas = 1; max_tokens = 4; parser = "certainty";
    outputs = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]; }
);
CFG

# ---- Python: jsonschema for the checks, openai and langchain-openai for the clients ----
test_python "openai, jsonschema, langchain_openai"
HAVE_JSONSCHEMA=0
$PY -c "import jsonschema" 2>/dev/null && HAVE_JSONSCHEMA=1
[ $HAVE_JSONSCHEMA = 1 ] || echo "SKIP (part): jsonschema is not available: arguments are only checked to parse as JSON objects"

start_up t || { fail "cluster did not start"; exit 1; }

post() { # post BODY -> CODE, BODY
  CODE=$(curl -s -o "$T/body" -w '%{http_code}' "$H/v1/chat/completions" -H 'Content-Type: application/json' --data-binary "$1")
  BODY=$(cat "$T/body")
}
expect_400() { # DESC BODY FIELD
  post "$2"
  if [ "$CODE" = 400 ] && jq -r .error.message <<<"$BODY" | grep -qF -- "$3"; then ok "$1 -> 400 naming $3"
  else fail "$1: got $CODE $BODY (want 400 naming '$3')"; fi
}

ADD='{"type":"function","function":{"name":"add","description":"Adds","parameters":{"type":"object","properties":{"a":{"type":"integer","minimum":-99,"maximum":99},"b":{"type":"integer","minimum":-99,"maximum":99}},"required":["a","b"]}}}'
BOOK='{"type":"function","function":{"name":"book","parameters":{"$defs":{"P":{"type":"object","properties":{"city":{"type":"string","maxLength":8},"days":{"type":"integer","minimum":1,"maximum":9}},"required":["city","days"]}},"type":"object","properties":{"to":{"$ref":"#/$defs/P"},"when":{"type":"string","format":"date"}},"required":["to","when"]}}}'
NOW='{"type":"function","function":{"name":"now"}}'
TOOLS="[$ADD,$BOOK,$NOW]" # (small: the Granite template renders them with indent 4, the demo tokenizer is tiny)
MSG='"messages":[{"role":"user","content":"What is the weather in Paris?"}]'

# check_calls TOOLS MESSAGE-JSON [WANT_NAME] [WANT_COUNT]: the message's tool_calls are well formed (ids
# call_<24 hex>, type function), name known tools (WANT_NAME when given), and their arguments are
# JSON objects that validate against the function's parameters.
check_calls() {
  "$PY" - "$1" "$2" "${3:-}" "${4:-}" <<'PY'
import json, re, sys
tools, msg, want, count = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
params = {t["function"]["name"]: t["function"].get("parameters", {"type": "object", "properties": {}}) for t in tools}
calls = msg.get("tool_calls") or []
assert calls, "no tool_calls: %r" % msg
assert not count or len(calls) == int(count), "%d calls, want %s" % (len(calls), count)
try:
    import jsonschema
except ImportError:
    jsonschema = None
for c in calls:
    assert re.fullmatch(r"call_[0-9a-f]{24}", c["id"]), c
    assert c["type"] == "function", c
    name = c["function"]["name"]
    assert name in params, name
    assert not want or name == want, (name, want)
    args = json.loads(c["function"]["arguments"])
    assert isinstance(args, dict), args
    if jsonschema:
        v = jsonschema.Draft202012Validator(params[name], format_checker=jsonschema.FormatChecker())
        v.validate(args)
print(" ".join("%s(%s)" % (c["function"]["name"], c["function"]["arguments"]) for c in calls)[:160])
PY
}
: >"$T/err"
msg() { jq -c '.choices[0].message' <<<"$BODY"; }
finish() { jq -r '.choices[0].finish_reason' <<<"$BODY"; }

# ---- tool_choice "required": one or more calls, every call valid ----
for seed in 1 2 3 4; do
  post "{\"model\":\"tiny-base\",$MSG,\"tools\":$TOOLS,\"tool_choice\":\"required\",\"max_tokens\":160,\"temperature\":1,\"seed\":$seed}"
  if [ "$CODE" = 200 ] && [ "$(finish)" = tool_calls ] && [ "$(jq -r '.choices[0].message.content' <<<"$BODY")" = null ] &&
     out=$(check_calls "$TOOLS" "$(msg)" 2>"$T/err"); then
    ok "required, seed $seed: $out"
  else fail "required seed $seed: $CODE $BODY $(tail -3 "$T/err")"; fi
done
post "{\"model\":\"tiny-base\",$MSG,\"tools\":$TOOLS,\"tool_choice\":\"required\",\"parallel_tool_calls\":false,\"max_tokens\":160,\"seed\":5}"
[ "$CODE" = 200 ] && out=$(check_calls "$TOOLS" "$(msg)" "" 1 2>"$T/err") && ok "required, parallel_tool_calls false: one call $out" ||
  fail "parallel_tool_calls false: $CODE $BODY $(tail -3 "$T/err")"

# ---- a named function: exactly one call of it (the $ref'd schema too) ----
for fn in add book now; do
  post "{\"model\":\"tiny-base\",$MSG,\"tools\":$TOOLS,\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"$fn\"}},\"max_tokens\":160,\"temperature\":1,\"seed\":7}"
  if [ "$CODE" = 200 ] && [ "$(finish)" = tool_calls ] && out=$(check_calls "$TOOLS" "$(msg)" "$fn" 1 2>"$T/err"); then
    ok "named $fn: $out"
  else fail "named $fn: $CODE $BODY $(tail -3 "$T/err")"; fi
done

# ---- streaming: the calls arrive as delta.tool_calls chunks, then finish_reason tool_calls ----
curl -sN "$H/v1/chat/completions" -H 'Content-Type: application/json' --data-binary \
  "{\"model\":\"tiny-base\",$MSG,\"tools\":$TOOLS,\"tool_choice\":\"required\",\"max_tokens\":160,\"seed\":11,\"stream\":true,\"stream_options\":{\"include_usage\":true}}" >"$T/sse"
sm=$(sed -n 's/^data: //p' "$T/sse" | grep -v '^\[DONE\]' | jq -sc '{tool_calls: [.[].choices[]?.delta.tool_calls // empty | .[] | del(.index)], finish: [.[].choices[]?.finish_reason // empty]}')
if grep -q '^data: \[DONE\]' "$T/sse" && [ "$(jq -r '.finish | last' <<<"$sm")" = tool_calls ] &&
   grep -q '"usage"' "$T/sse" && out=$(check_calls "$TOOLS" "$sm" 2>"$T/err"); then
  ok "streamed required: $out"
else fail "streamed required: $(head -c 600 "$T/sse") $(tail -3 "$T/err")"; fi

# ---- "auto": free text; read back as calls when it is in the template's syntax ----
post "{\"model\":\"tiny-base\",$MSG,\"tools\":$TOOLS,\"max_tokens\":24,\"seed\":3}"
fin=$(finish)
if [ "$CODE" = 200 ] && { [ "$fin" = stop ] || [ "$fin" = length ] || { [ "$fin" = tool_calls ] && check_calls "$TOOLS" "$(msg)" >/dev/null; }; }; then
  ok "auto: 200 ($fin) $(jq -c '.choices[0].message | {content: (.content // "" | .[0:40]), tool_calls}' <<<"$BODY")"
else fail "auto: $CODE $BODY"; fi
# the random model never writes a call by itself: a structured output makes it write one in the
# Granite syntax of the demo tokenizer's template (a JSON list of {"name", "arguments"}), which
# "auto" reads back as tool_calls (and "none" leaves as content)
CALLS_SCHEMA='{"type":"array","items":{"type":"object","properties":{"name":{"const":"add"},"arguments":{"type":"object","properties":{"a":{"type":"integer","minimum":0,"maximum":9},"b":{"type":"integer","minimum":0,"maximum":9}},"required":["a","b"],"additionalProperties":false}},"required":["name","arguments"],"additionalProperties":false},"minItems":1,"maxItems":2}'
post "{\"model\":\"tiny-base\",$MSG,\"tools\":$TOOLS,\"tool_choice\":\"auto\",\"guided_json\":$CALLS_SCHEMA,\"max_tokens\":80,\"seed\":2}"
[ "$CODE" = 200 ] && [ "$(finish)" = tool_calls ] && out=$(check_calls "$TOOLS" "$(msg)" add 2>"$T/err") &&
  ok "auto reads the template's call syntax: $out" || fail "auto parse: $CODE $BODY $(tail -3 "$T/err")"
curl -sN "$H/v1/chat/completions" -H 'Content-Type: application/json' --data-binary \
  "{\"model\":\"tiny-base\",$MSG,\"tools\":$TOOLS,\"guided_json\":$CALLS_SCHEMA,\"max_tokens\":80,\"seed\":2,\"stream\":true}" >"$T/sse"
sm=$(sed -n 's/^data: //p' "$T/sse" | grep -v '^\[DONE\]' | jq -sc '{content: ([.[].choices[]?.delta.content // empty] | join("")), tool_calls: [.[].choices[]?.delta.tool_calls // empty | .[] | del(.index)], finish: [.[].choices[]?.finish_reason // empty]}')
[ "$(jq -r '.finish | last' <<<"$sm")" = tool_calls ] && [ "$(jq -r .content <<<"$sm")" = "" ] &&
  out=$(check_calls "$TOOLS" "$sm" add 2>"$T/err") && ok "streamed auto: no call text leaks as content, $out" ||
  fail "streamed auto: $(head -c 600 "$T/sse") $(tail -3 "$T/err")"
post "{\"model\":\"tiny-base\",$MSG,\"tools\":$TOOLS,\"tool_choice\":\"none\",\"guided_json\":$CALLS_SCHEMA,\"max_tokens\":80,\"seed\":2}"
[ "$CODE" = 200 ] && [ "$(jq -r '.choices[0].message.tool_calls' <<<"$BODY")" = null ] &&
  jq -e '.choices[0].message.content | fromjson | .[0].name == "add"' <<<"$BODY" >/dev/null &&
  ok "none: the same output stays content ($(jq -r '.choices[0].message.content' <<<"$BODY" | head -c 60))" ||
  fail "none: $CODE $BODY"

# ---- the agent loop's messages: assistant tool_calls (content null) and tool results ----
LOOP="[{\"role\":\"user\",\"content\":\"Add 2 and 3.\"},{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"add\",\"arguments\":\"{\\\"a\\\":2,\\\"b\\\":3}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"5\"}]"
post "{\"model\":\"tiny-base\",\"messages\":$LOOP,\"tools\":$TOOLS,\"max_tokens\":8,\"seed\":1}"
[ "$CODE" = 200 ] && ok "tool results in the conversation: 200 ($(finish))" || fail "tool loop messages: $CODE $BODY"
post "{\"model\":\"tiny-base\",\"messages\":$LOOP,\"max_tokens\":8}"
[ "$CODE" = 200 ] && ok "tool turns without tools: 200" || fail "tool turns without tools: $CODE $BODY"
post "{\"model\":\"certainty\",\"messages\":$LOOP}"
[ "$CODE" = 200 ] && ok "an intrinsic on a conversation with tool turns: 200" || fail "intrinsic with tool turns: $CODE $BODY"

# ---- errors name the field ----
expect_400 "a schema the engine cannot take" "{\"model\":\"tiny-base\",$MSG,\"tools\":[$NOW,{\"type\":\"function\",\"function\":{\"name\":\"x\",\"parameters\":{\"type\":\"object\",\"properties\":{\"y\":{\"not\":{}}}}}}]}" "tools[1].function.parameters: json schema: unsupported keyword 'not'"
expect_400 "parameters not an object schema" "{\"model\":\"tiny-base\",$MSG,\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"x\",\"parameters\":{\"type\":\"string\"}}}]}" "tools[0].function.parameters"
expect_400 "a bad function name" "{\"model\":\"tiny-base\",$MSG,\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get weather\"}}]}" "tools[0].function.name"
expect_400 "a tool type" "{\"model\":\"tiny-base\",$MSG,\"tools\":[{\"type\":\"web_search\"}]}" "tools[0].type"
expect_400 "an unknown named function" "{\"model\":\"tiny-base\",$MSG,\"tools\":$TOOLS,\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"rm_rf\"}}}" "tool_choice.function.name"
expect_400 "a bad tool_choice" "{\"model\":\"tiny-base\",$MSG,\"tools\":$TOOLS,\"tool_choice\":\"always\"}" "tool_choice"
expect_400 "required without tools" "{\"model\":\"tiny-base\",$MSG,\"tool_choice\":\"required\"}" "tool_choice"
expect_400 "parallel_tool_calls" "{\"model\":\"tiny-base\",$MSG,\"tools\":$TOOLS,\"parallel_tool_calls\":\"no\"}" "parallel_tool_calls"
expect_400 "a forced call with a structured output" "{\"model\":\"tiny-base\",$MSG,\"tools\":$TOOLS,\"tool_choice\":\"required\",\"response_format\":{\"type\":\"json_object\"}}" "tool_choice"
expect_400 "a forced call on an intrinsic" "{\"model\":\"certainty\",$MSG,\"tools\":$TOOLS,\"tool_choice\":\"required\"}" "tool_choice"
expect_400 "a malformed tool call message" "{\"model\":\"tiny-base\",\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"type\":\"function\",\"function\":{\"arguments\":\"{}\"}}]}]}" "messages[0].tool_calls[0].function.name"

# ---- the official openai client: a tool loop; LangChain ----
if "$PY" -c "import openai, jsonschema" 2>/dev/null; then
  if "$PY" - "$H/v1" "$TOOLS" <<'PY'; then ok "openai client: tool_choice required -> tool_calls -> tool results -> 200 (streamed too)"; else fail "openai client tool loop"; fi
import json, sys, openai, jsonschema
c = openai.OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0)
tools = json.loads(sys.argv[2])
params = {t["function"]["name"]: t["function"].get("parameters", {"type": "object", "properties": {}}) for t in tools}
msgs = [{"role": "user", "content": "Book me a trip and tell me the weather."}]
r = c.chat.completions.create(model="tiny-base", messages=msgs, tools=tools, tool_choice="required", max_tokens=160,
                              temperature=1, seed=31)
m = r.choices[0].message
assert r.choices[0].finish_reason == "tool_calls" and m.tool_calls, r
for tc in m.tool_calls:
    jsonschema.validate(json.loads(tc.function.arguments), params[tc.function.name])
msgs.append(m.model_dump())  # content None, refusal None, ... as the client keeps it
for tc in m.tool_calls:
    msgs.append({"role": "tool", "tool_call_id": tc.id, "content": json.dumps({"ok": True, "name": tc.function.name})})
r2 = c.chat.completions.create(model="tiny-base", messages=msgs, tools=tools, max_tokens=12, seed=32)
assert r2.choices[0].finish_reason in ("stop", "length", "tool_calls"), r2
r3 = c.chat.completions.create(model="tiny-base", messages=msgs[:1], tools=tools, max_tokens=160, seed=33,
                               tool_choice={"type": "function", "function": {"name": "add"}}, stream=True)
calls, finish = {}, None
for ch in r3:
    for ch_c in ch.choices:
        for d in ch_c.delta.tool_calls or []:
            e = calls.setdefault(d.index, {"name": "", "arguments": ""})
            e["name"] += d.function.name or ""
            e["arguments"] += d.function.arguments or ""
        finish = ch_c.finish_reason or finish
assert finish == "tool_calls" and len(calls) == 1 and calls[0]["name"] == "add", (finish, calls)
jsonschema.validate(json.loads(calls[0]["arguments"]), params["add"])
try:
    c.chat.completions.create(model="tiny-base", messages=msgs[:1], tools=tools,
                              tool_choice={"type": "function", "function": {"name": "nope"}})
    sys.exit("unknown tool accepted")
except openai.BadRequestError as e:
    assert "tool_choice.function.name" in str(e), e
PY
else
  echo "SKIP (part): the openai / jsonschema packages cannot be installed here (tests/integration/requirements.txt)"
fi
if "$PY" -c "import langchain_openai, jsonschema" 2>/dev/null; then
  if "$PY" - "$H/v1" <<'PY'; then ok "LangChain: bind_tools(tool_choice=required) -> valid AIMessage.tool_calls; with_structured_output(json_schema) parses"; else fail "LangChain"; fi
import sys, jsonschema
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

class GetWeather(BaseModel):
    """Current weather of a city."""
    city: str = Field(description="City name", max_length=12)
    unit: str = Field(default="celsius", pattern="^(celsius|fahrenheit)$")

class Person(BaseModel):
    name: str = Field(max_length=10)
    age: int = Field(ge=0, le=120)

llm = ChatOpenAI(base_url=sys.argv[1], api_key="x", model="tiny-base", max_tokens=120, temperature=1, seed=41,
                 max_retries=0)
bound = llm.bind_tools([GetWeather], tool_choice="required")
q = HumanMessage("What is the weather in Paris?")
ai = bound.invoke([q])
assert ai.tool_calls and all(tc["name"] == "GetWeather" for tc in ai.tool_calls), ai
schema = GetWeather.model_json_schema()
for tc in ai.tool_calls:
    jsonschema.validate(tc["args"], schema)
    GetWeather(**tc["args"])
# the loop continues: the AIMessage with its tool calls and the tool results go back
follow = llm.bind_tools([GetWeather]).invoke([q, ai] + [ToolMessage("21 C", tool_call_id=tc["id"]) for tc in ai.tool_calls])
assert follow.content is not None, follow
p = llm.with_structured_output(Person, method="json_schema").invoke("Who is the user?")
assert isinstance(p, Person), p
print("  LangChain:", ai.tool_calls[0]["args"], "|", p)
PY
else
  echo "SKIP (part): langchain-openai cannot be installed here (pip install -r tests/integration/requirements.txt failed)"
fi

R="ipc://$T/run-t/router.ipc" stop_up t
[ $FAILS -eq 0 ] && echo "all tool-calling tests passed" || echo "$FAILS failure(s)"
[ $FAILS -eq 0 ]
