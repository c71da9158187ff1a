"""litellm_clients.py URL: litellm (PyPI, pinned in tests/integration/requirements.txt) drives alora.

litellm.completion(model="openai/<model>", api_base=URL, api_key=...) is how litellm talks to an
OpenAI-compatible server (vLLM's own docs show the same). Checks on the random demo model:
- response_format json_schema on the base: the content validates against the schema;
- stream=True on the base: chunks arrive and end with a finish_reason; streamed with a json_schema
  too, the joined content validates;
- an intrinsic as the model (certainty, documents in extra_body, logprobs/top_logprobs): the
  content is one of its outputs, the logprobs come back;
- extra_body structured_outputs choice (vLLM's field) goes through litellm to the server.
A CustomLogger records the body litellm sends (complete_input_dict), printed per check.
LITELLM_LOCAL_MODEL_COST_MAP=True must be set by the caller (no cost map from the network).
Prints one line per check; exits non-zero on the first failure."""
import json
import os
import sys

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_TELEMETRY", "False")

import jsonschema  # noqa: E402
import litellm  # noqa: E402
from litellm.integrations.custom_logger import CustomLogger  # noqa: E402

url = sys.argv[1]
SENT = []


class Recorder(CustomLogger):
    """Keeps the request bodies litellm hands to the openai client."""

    def log_pre_api_call(self, model, messages, kwargs):
        body = (kwargs.get("additional_args") or {}).get("complete_input_dict")
        if isinstance(body, dict):
            SENT.append(body)


litellm.callbacks = [Recorder()]
litellm.telemetry = False
COMMON = {"api_base": url, "api_key": "unused", "timeout": 300, "num_retries": 0}
MESSAGES = [{"role": "user", "content": "Give me a record of a city."}]
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 12}, "population": {"type": "integer"},
                   "capital": {"type": "boolean"}},
    "required": ["city", "population", "capital"],
    "additionalProperties": False,
}
RF = {"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA, "strict": True}}


def sent_fields():
    """The fields of the last request litellm sent (extra_body merged, as the wire has them)."""
    if not SENT:
        return "?"
    body = dict(SENT[-1])
    body.update(body.pop("extra_body", None) or {})
    return sorted(k for k in body if k not in ("messages",))


def check_schema():
    r = litellm.completion(model="openai/tiny-base", messages=MESSAGES, response_format=RF, max_tokens=120,
                           temperature=1, seed=5, **COMMON)
    raw = r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop", f"finish {r.choices[0].finish_reason}: {raw!r}"
    jsonschema.validate(json.loads(raw), SCHEMA)
    print(f"json_schema: sent {sent_fields()}; content {raw[:100]!r} validates")


def collect(stream):
    parts, finish, n = [], None, 0
    for chunk in stream:
        n += 1
        for ch in chunk.choices:
            if ch.delta and ch.delta.content:
                parts.append(ch.delta.content)
            if ch.finish_reason:
                finish = ch.finish_reason
    return "".join(parts), finish, n


def check_stream():
    text, finish, n = collect(litellm.completion(model="openai/tiny-base", messages=MESSAGES, max_tokens=12,
                                                 temperature=0, stream=True, **COMMON))
    # the random model's greedy tokens may lie outside the 500-token demo tokenizer (empty text):
    # what counts is the stream's shape
    assert n >= 1 and finish in ("stop", "length"), f"{n} chunks, finish {finish}"
    f1 = sent_fields()
    text2, finish2, n2 = collect(litellm.completion(model="openai/tiny-base", messages=MESSAGES, max_tokens=120,
                                                   temperature=1, seed=7, stream=True, response_format=RF,
                                                   **COMMON))
    assert finish2 == "stop", f"finish {finish2}: {text2!r}"
    jsonschema.validate(json.loads(text2), SCHEMA)
    print(f"stream: sent {f1}; {n} chunks, finish {finish}; with json_schema: sent {sent_fields()}; "
          f"{n2} chunks, content {text2[:80]!r} validates")


def check_intrinsic():
    docs = [{"doc_id": "1", "text": "Paris is the capital of France. It is on the Seine."}]
    msgs = [{"role": "user", "content": "Which river flows through Paris?"},
            {"role": "assistant", "content": "The Seine."}]
    r = litellm.completion(model="openai/certainty", messages=msgs, max_tokens=2, logprobs=True, top_logprobs=3,
                           extra_body={"documents": docs}, **COMMON)
    c = r.choices[0]
    assert c.message.content in [str(i) for i in range(10)], c.message.content
    lp = getattr(c, "logprobs", None)
    assert lp is not None, "logprobs requested, none came back through litellm"
    content = lp["content"] if isinstance(lp, dict) else lp.content
    assert content and len(content[0]["top_logprobs"] if isinstance(content[0], dict) else
                            content[0].top_logprobs) == 3, lp
    # alora's "intrinsic" extension object: does litellm keep it?
    intr = getattr(r, "intrinsic", None)
    kept = "kept" if intr else "dropped by litellm"
    print(f"intrinsic certainty: sent {sent_fields()}; content {c.message.content!r}, logprobs with top 3; "
          f"the 'intrinsic' result object {kept}{': ' + json.dumps(intr)[:80] if intr else ''}")
    r = litellm.completion(model="openai/answerability", messages=msgs[:1], extra_body={"documents": docs},
                           **COMMON)
    assert r.choices[0].message.content in ("answerable", "unanswerable"), r.choices[0].message.content
    print(f"intrinsic answerability: sent {sent_fields()}; content {r.choices[0].message.content!r}")


def check_extra_body():
    r = litellm.completion(model="openai/tiny-base", messages=MESSAGES, max_tokens=8,
                           extra_body={"structured_outputs": {"choice": ["up", "down"]}}, **COMMON)
    assert r.choices[0].message.content in ("up", "down"), r.choices[0].message.content
    f1 = sent_fields()
    r2 = litellm.completion(model="openai/tiny-base", messages=MESSAGES, max_tokens=60,
                            response_format={"type": "json_object"}, **COMMON)
    raw = r2.choices[0].message.content
    if r2.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(raw), dict), raw
    print(f"extra_body structured_outputs: sent {f1}; content {r.choices[0].message.content!r}; json_object: sent "
          f"{sent_fields()}, content {raw[:60]!r} ({r2.choices[0].finish_reason})")


for f in (check_schema, check_stream, check_intrinsic, check_extra_body):
    f()
