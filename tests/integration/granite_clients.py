"""granite_clients.py URL FIXTURES: IBM's granite-common drives alora as it drives vLLM.

For each io.yaml in FIXTURES (answerability, certainty, rewrite; tests/fixtures/granite_common):
IntrinsicsRewriter turns a canned RAG chat request into the intrinsic's request (structured_outputs
with the io.yaml schema, logprobs/top_logprobs for likelihoods, max_completion_tokens, documents in
extra_body), the official openai client sends it to alora, and IntrinsicsResultProcessor turns the
answer into the intrinsic's result. On the random demo model the checks are that the raw output
validates against the io.yaml schema (jsonschema) and the processor returns a result, not an error.
Prints one line per intrinsic; exits non-zero on the first failure."""
import json
import pathlib
import sys

import jsonschema
import openai
import yaml
from granite_common.intrinsics import IntrinsicsRewriter, IntrinsicsResultProcessor

url, fixtures = sys.argv[1], pathlib.Path(sys.argv[2])
client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
REQUEST = {
    "messages": [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "The capital of France is Paris."},
        {"role": "user", "content": "And which river flows through it?"},
    ],
    "extra_body": {"documents": [
        {"doc_id": "1", "text": "Paris is the capital and largest city of France. It is on the Seine."},
        {"doc_id": "2", "text": "The Seine is a 777 km long river in northern France."},
    ]},
}
for fname, model in (("answerability.yaml", "answerability"), ("certainty.yaml", "certainty"),
                     ("rewrite.yaml", "query_rewrite")):
    cfg = yaml.safe_load((fixtures / fname).read_text())
    req = IntrinsicsRewriter(config_dict=cfg, model_name=model).transform(REQUEST)
    body = req.model_dump(exclude_none=True)
    extra = body.pop("extra_body", {}) or {}
    # the rewriter asks for constrained decoding: structured_outputs.json (response_format in the
    # io.yaml) or the older guided_json (in its parameters)
    schema = extra["structured_outputs"]["json"] if "structured_outputs" in extra else extra["guided_json"]
    schema = json.loads(schema) if isinstance(schema, str) else schema
    resp = client.chat.completions.create(**body, extra_body=extra)
    raw = resp.choices[0].message.content
    jsonschema.validate(json.loads(raw), schema)   # the constraint held
    out = IntrinsicsResultProcessor(config_dict=cfg).transform(resp, req)
    result = json.loads(out.choices[0].message.content)
    if cfg.get("transformations"):
        assert resp.choices[0].logprobs is not None, "logprobs requested by the rewriter are missing"
    print(f"{model}: raw {raw!r} -> result {json.dumps(result)}")
