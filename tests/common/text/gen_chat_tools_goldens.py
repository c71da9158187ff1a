"""gen_chat_tools_goldens.py: writes tests/common/text/chat_tools_goldens.json, the tool-calling
renderings of the real chat templates (jinja2, with transformers' tojson), which
tests/common/text/chat_tools_test.c compares al_chat's C renderer with. Templates: Granite 3.3
(tests/fixtures/chat/granite-3.3-8b-instruct.jinja), Llama 3.1/3.2 with tools
(llama-3.2-instruct-tools.jinja) and Qwen3 / Hermes ChatML (qwen3-tools.jinja), copied from the
models' public tokenizer_config.json. Run from the repository root: python3 tests/common/text/gen_chat_tools_goldens.py
(pip install jinja2)."""
import json, copy, datetime, sys
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.ext import loopcontrols

def env():
    e = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    e.filters['tojson'] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    def rex(m): raise Exception(m)
    e.globals['raise_exception'] = rex
    return e

FIX = 'tests/fixtures/chat/'
TPL = {
 'granite': open(FIX + 'granite-3.3-8b-instruct.jinja').read(),
 'llama3': open(FIX + 'llama-3.2-instruct-tools.jinja').read(),
 'chatml': open(FIX + 'qwen3-tools.jinja').read(),
}
def render(fmt, msgs, tools, agp):
    e = env()
    kw = {}
    if fmt == 'granite':
        e.globals['strftime_now'] = lambda f: datetime.datetime(2025, 4, 16).strftime(f)
        pass
    t = e.from_string(TPL[fmt])
    m = copy.deepcopy(msgs)
    for x in m:
        if 'tool_calls' in x:
            for c in x['tool_calls']:
                c['function']['arguments'] = json.loads(c['function']['arguments'])
            if fmt == 'granite':
                x['content'] = (x.get('content') or '') + '<|tool_call|>' + json.dumps([{'name': c['function']['name'], 'arguments': c['function']['arguments']} for c in x['tool_calls']], ensure_ascii=False)
                del x['tool_calls']
            elif x.get('content') is None:
                x['content'] = ''
    return t.render(messages=m, tools=tools, add_generation_prompt=agp, bos_token='<|begin_of_text|>', documents=None, **kw)

W = {"type":"function","function":{"name":"get_weather","description":"Get the weather for a city","parameters":{"type":"object","properties":{"city":{"type":"string","description":"City name"},"unit":{"type":"string","enum":["c","f"]}},"required":["city"]}}}
T = {"type":"function","function":{"name":"get_time","description":"Zeitzone \u00fc \"quoted\"\ttab","parameters":{"type":"object","properties":{"tz":{"type":"string"},"offset":{"type":"number","minimum":0.5,"maximum":1e20}},"required":[]}}}
def tc(i, name, args): return {"id": "call_%d" % i, "type": "function", "function": {"name": name, "arguments": json.dumps(args, separators=(',', ':'))}}
u = lambda c: {"role": "user", "content": c}
CONVS = [
  ([u("What's the weather in Paris?")], [W], True),
  ([{"role":"system","content":"You are terse. "}, u(" Weather in Paris and the time in UTC? ")], [W, T], True),
  ([u("Weather in Paris?"), {"role":"assistant","content":None,"tool_calls":[tc(1,"get_weather",{"city":"Paris","unit":"c"})]},
    {"role":"tool","tool_call_id":"call_1","content":"{\"temp\": 21, \"sky\": \"sunny\"}"}], [W], True),
  ([u("Weather in Paris?"), {"role":"assistant","content":None,"tool_calls":[tc(1,"get_weather",{"city":"Paris","unit":"c"})]},
    {"role":"tool","tool_call_id":"call_1","content":"21 C"}, {"role":"assistant","content":"It is 21 C."}, u("Thanks")], [W], False),
]
CONVS_MULTI = [
  ([u("Weather and time?"), {"role":"assistant","content":"Checking both.","tool_calls":[tc(1,"get_weather",{"city":"Oslo"}), tc(2,"get_time",{"tz":"CET","offset":1.5})]},
    {"role":"tool","tool_call_id":"call_1","content":"cold"}, {"role":"tool","tool_call_id":"call_2","content":"12:00"}], [W, T], True),
]
cases = []
for fmt in ['granite', 'llama3', 'chatml']:
    for conv in CONVS + (CONVS_MULTI if fmt != 'llama3' else []):
        msgs, tools, agp = conv
        cases.append({"format": fmt, "messages": msgs, "tools": tools, "add_generation_prompt": agp, "date": "April 16, 2025", "expected": render(fmt, msgs, tools, agp)})
json.dump(cases, open('tests/common/text/chat_tools_goldens.json', 'w'), indent=1, ensure_ascii=False)
print(len(cases), 'cases written')
