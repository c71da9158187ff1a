"""granite_io_clients.py URL: IBM's granite-io I/O processors drive alora through its openai backend.

granite-io (PyPI, pinned in tests/integration/requirements.txt) renders each request with its own
Granite 3.3 template (system prompt, documents, the intrinsic's role turn at the end) and sends it
as a /v1/completions prompt, with the processor's constraint in extra_body (guided_choice for
answerability and certainty, guided_regex for query rewrite, guided_json for citations and
hallucinations); then it parses the raw text into a result. The backend is made as its README and
notebooks make it: make_backend("openai", {"model_name": <intrinsic>, "openai_base_url": URL}).

The backend's generate() is wrapped to record what was sent and what came back (the processors do
not return the raw text in every case). Checks on the random demo model: each processor returns a
result object (no exception), the raw completion obeys the constraint the processor asked for (in
the choices / matches the regex / validates against the schema), the request carried the model
(the intrinsic's name) and a prompt rendered by granite-io's Granite template. Also: the README's
framework example (make_io_processor("granite3.3") on the base model), the RAG agent library's
composite certainty check (a base answer, then the certainty intrinsic on it), and the Granite 3.3
controls (citations, hallucinations), for which granite-io sends skip_special_tokens: false (the
line says whether alora honoured it). The process reward model reads the prompt's logprobs (echo +
logprobs) from the base model. What alora does not serve must fail cleanly (a 400 naming the
field): echo on an intrinsic, and hallucinations (max_tokens 4096, over the 2048-token context of
the test model). Each intrinsic
line tells how many invocation tokens alora appended after granite-io's prompt (which already ends
with the intrinsic's role turn). Prints one line per check; exits non-zero on the first failure."""
import asyncio
import json
import re
import sys

import jsonschema
import openai

from granite_io import make_backend, make_io_processor
from granite_io.io.granite_3_3.input_processors.granite_3_3_input_processor import (ControlsRecord,
                                                                                    override_date_for_testing)
from granite_io.types import ChatCompletionInputs, Document, GenerateInputs

url = sys.argv[1]
# the Granite 3.3 system prompt carries today's date: fixed, so the prompts (and the random
# model's answers) are the same every day
override_date_for_testing("April 1, 2025")

MESSAGES = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is Paris."},
    {"role": "user", "content": "And which river flows through it?"},
]
ANSWER = {"role": "assistant", "content": "The Seine flows through Paris. It is 777 km long."}
DOCUMENTS = [
    Document(doc_id="1", text="Paris is the capital and largest city of France. It is on the Seine."),
    Document(doc_id="2", text="The Seine is a 777 km long river in northern France."),
]
CLIENTS = []


def backend_for(model):
    """granite-io's openai backend on alora's /v1, the model being the intrinsic's name; its
    generate() is wrapped so that the test sees the request fields and the raw completion."""
    be = make_backend("openai", {"model_name": model, "openai_base_url": url, "openai_api_key": "unused"})
    # generous: a 2-core machine runs the cluster and the client
    be._openai_client = be._openai_client.with_options(timeout=300.0, max_retries=0)
    CLIENTS.append(be._openai_client)
    seen = []
    inner = be.generate

    async def generate(inputs):
        sent = inputs.model_dump(exclude_none=True)
        seen.append([sent, None])
        seen[-1][1] = await inner(inputs)
        return seen[-1][1]

    be.generate = generate
    return be, seen


def fields(sent):
    """The request's fields as the openai client puts them on the wire (extra_body merged)."""
    f = {k: v for k, v in sent.items() if k not in ("extra_body", "extra_headers")}
    f.update(sent.get("extra_body") or {})
    return sorted(f)


def check_constraint(sent, raw, finish):
    """The raw completion obeys the constraint that granite-io put in extra_body."""
    extra = sent.get("extra_body") or {}
    if "guided_choice" in extra:
        assert raw in extra["guided_choice"], f"{raw!r} not in guided_choice {extra['guided_choice']}"
        return "guided_choice"
    if "guided_regex" in extra:
        if finish == "length":  # cut by max_tokens: the text must still be a prefix of a match
            import regex  # pylint: disable=import-outside-toplevel  (a dependency of granite-io's nltk)

            assert regex.fullmatch(extra["guided_regex"], raw, partial=True), f"{raw!r}: no prefix of the regex"
        else:
            assert re.fullmatch(extra["guided_regex"], raw), f"{raw!r} does not match {extra['guided_regex']!r}"
        return "guided_regex"
    if "guided_json" in extra:
        schema = extra["guided_json"]
        schema = json.loads(schema) if isinstance(schema, str) else schema
        assert finish == "stop", f"guided_json output cut ({finish}): {raw!r}"
        jsonschema.validate(json.loads(raw), schema)
        return "guided_json"
    return "unconstrained"


def describe(name, seen):
    """One line on each request: its fields, the raw output, the constraint held, alora's result."""
    parts = []
    for sent, out in seen:
        assert isinstance(sent.get("prompt"), (str, list)), f"{name}: no prompt"
        prompt = sent["prompt"][0] if isinstance(sent["prompt"], list) else sent["prompt"]
        assert prompt.startswith("<|start_of_role|>system<|end_of_role|>"), f"{name}: {prompt[:60]!r}"
        choice = out.choices[0]
        kind = check_constraint(sent, choice.text, choice.finish_reason)
        intr = (out.model_extra or {}).get("intrinsic") or {}
        res = ""
        if intr:
            res = (f", alora appended {intr['prompt_tokens'] - intr['activation_start']} invocation tokens, "
                   f"its result {json.dumps(intr.get('result'))[:70]}")
        held = "unconstrained" if kind == "unconstrained" else f"{kind} held"
        parts.append(f"{sent['model']} sent {fields(sent)}; raw {choice.text[:60]!r} ({held}, "
                     f"{out.usage.completion_tokens} tokens, {choice.finish_reason}{res})")
    return "; ".join(parts)


async def run(name, model, make_proc, inputs, check_result):
    be, seen = backend_for(model)
    res = await make_proc(be).acreate_chat_completion(inputs)
    assert res.results, f"{name}: no results"
    assert seen, f"{name}: the processor sent nothing"
    for sent, _ in seen:
        assert sent.get("model") == model, f"{name}: model {sent.get('model')!r}"
    msg = res.results[0].next_message
    assert check_result(msg), f"{name}: unexpected result {msg!r}"
    print(f"{name}: {describe(name, seen)} -> result {msg.content[:100]!r}")


async def expect_refusal(name, model, make_proc, inputs, field):
    """A processor that sends what alora does not serve: a clean 400 that names the field."""
    be, seen = backend_for(model)
    try:
        res = await make_proc(be).acreate_chat_completion(inputs)
    except openai.BadRequestError as e:
        msg = str(e.body.get("message") if isinstance(e.body, dict) else e)
        assert field in msg, f"{name}: 400 without '{field}': {msg}"
        print(f"{name}: sent {fields(seen[-1][0])}; refused as expected (400: {msg[:110]})")
        return
    # served after all (alora grew the feature, or the model got a larger context): then the
    # result must hold up like the others'
    assert res.results, f"{name}: no results"
    print(f"{name}: {describe(name, seen)} -> result {res.results[0].next_message.content[:100]!r}")


def gen(**kw):
    return GenerateInputs(temperature=0.0, **kw)


async def main():
    # pylint: disable=import-outside-toplevel
    from granite_io.io.answerability.answerability import AnswerabilityIOProcessor
    from granite_io.io.certainty.certainty import CertaintyIOProcessor
    from granite_io.io.citations.citations import CitationsIOProcessor
    from granite_io.io.hallucinations.hallucinations import HallucinationsIOProcessor
    from granite_io.io.process_reward_model.best_of_n import ProcessRewardModelIOProcessor
    from granite_io.io.query_rewrite.query_rewrite import QueryRewriteIOProcessor
    from granite_io.io.rag_agent_lib import CertaintyCompositeIOProcessor

    def rag(messages, **kw):
        return ChatCompletionInputs(messages=messages, documents=DOCUMENTS, generate_inputs=gen(**kw))

    # the RAG agent library's intrinsics, one request each
    await run("answerability", "answerability", AnswerabilityIOProcessor, rag(MESSAGES),
              lambda m: m.content in ("answerable", "unanswerable"))
    # certainty judges the last assistant turn
    await run("certainty", "certainty", CertaintyIOProcessor, rag(MESSAGES + [ANSWER], max_tokens=4),
              lambda m: re.fullmatch(r"0\.[0-9]", m.content))
    await run("query_rewrite", "query_rewrite", QueryRewriteIOProcessor,
              ChatCompletionInputs(messages=MESSAGES, generate_inputs=gen()),
              lambda m: m.role == "user" and isinstance(m.content, str))
    await run("citations", "citations", CitationsIOProcessor, rag(MESSAGES + [ANSWER]),
              lambda m: m.role == "assistant" and isinstance(m.citations, list))

    # the README's framework example: the Granite 3.3 processor on the base model
    await run("granite3.3 (README example)", "tiny-base",
              lambda be: make_io_processor("granite3.3", backend=be),
              ChatCompletionInputs(messages=MESSAGES[:1], generate_inputs=gen(max_tokens=16)),
              lambda m: m.role == "assistant" and isinstance(m.content, str))

    # the Granite 3.3 controls: citations and hallucinations in the assistant turn's header, and
    # granite-io asks for skip_special_tokens: false (a vLLM field) so that the model's citation
    # tokens stay in the text. Probe: logit_bias forces the special token <|start_of_role|> (id 3
    # of the demo tokenizer); the line says whether its text came back.
    be, seen = backend_for("tiny-base")
    res = await make_io_processor("granite3.3", backend=be).acreate_chat_completion(ChatCompletionInputs(
        messages=MESSAGES[:1], documents=DOCUMENTS, controls=ControlsRecord(citations=True, hallucinations=True),
        generate_inputs=gen(max_tokens=2, logit_bias={"3": 100})))
    assert res.results and res.results[0].next_message.role == "assistant", res
    sent, out = seen[-1]
    assert (sent.get("extra_body") or {}).get("skip_special_tokens") is False, sent
    assert '<|start_of_role|>assistant {"citations": true, "hallucinations": true}' in sent["prompt"], sent["prompt"]
    kept = "<|start_of_role|>" in out.choices[0].text
    print(f"granite3.3 controls: tiny-base sent {fields(sent)}; raw {out.choices[0].text!r}: skip_special_tokens "
          f"false {'honoured' if kept else 'ignored by alora (special tokens are always dropped from the text)'}")

    # the RAG agent library's composite: an answer from the base, then the certainty intrinsic on
    # it (threshold 0: the answer is kept with its score)
    base_be, base_seen = backend_for("tiny-base")
    cert_be, cert_seen = backend_for("certainty")
    comp = CertaintyCompositeIOProcessor(make_io_processor("granite3.3", backend=base_be), cert_be, threshold=0.0)
    res = await comp.acreate_chat_completion(rag(MESSAGES, max_tokens=16))
    msg = res.results[0].next_message
    assert isinstance(msg.certainty_score, float) and 0 <= msg.certainty_score <= 0.9, msg
    print(f"certainty composite: {describe('base', base_seen)}; {describe('certainty', cert_seen)} "
          f"-> certainty_score {msg.certainty_score}")

    # the process reward model scores each step from the prompt's own logprobs (echo + logprobs on a
    # /v1/completions prompt that granite-io renders): on the base model (the PRM's LoRA is not in
    # the demo cluster, so the random base scores), the score is the mean probability of the
    # "correct" token after each assistant role header; on an intrinsic, echo is a clean 400
    prm_inputs = ChatCompletionInputs(messages=[{"role": "user", "content": "What is 2 + 3?"},
                                                {"role": "assistant", "content": "2 + 3 = 5.\n\nSo 5."}],
                                      generate_inputs=gen())
    be, seen = backend_for("tiny-base")
    try:
        res = await ProcessRewardModelIOProcessor(be).acreate_chat_completion(prm_inputs)
        score = res.results[0].next_message.content
        assert 0.0 <= float(score) <= 1.0, score
        outcome = f"PRM score {score}"
    except AssertionError as e:
        # granite-io finds the "correct" token after each assistant header by concatenating token
        # strings; the demo tokenizer splits "assistant" into pieces, so it finds none (the real
        # Granite tokenizer keeps it whole). Everything alora returned is still checked below.
        if "No assistant turns" not in str(e):
            raise
        outcome = "granite-io found no whole 'assistant' token in the demo tokenizer's pieces (no score)"
    sent, out = seen[-1]
    lp = out.choices[0].logprobs
    assert sent.get("echo") is True and out.choices[0].text.startswith(sent["prompt"]), sent
    assert lp.token_logprobs[0] is None and all(x <= 0 for x in lp.token_logprobs[1:]), lp.token_logprobs[:4]
    assert len(lp.tokens) == len(lp.token_logprobs) == out.usage.prompt_tokens + out.usage.completion_tokens
    print(f"process reward model (best-of-n): tiny-base sent {fields(sent)}; echoed {len(lp.tokens)} tokens with "
          f"logprobs (first null) -> {outcome}")
    await expect_refusal("process reward model on an intrinsic", "certainty", ProcessRewardModelIOProcessor,
                         prm_inputs, "echo")
    await expect_refusal("hallucinations", "hallucination_detection", HallucinationsIOProcessor,
                         rag(MESSAGES + [ANSWER]), "max_tokens")
    for c in CLIENTS:
        await c.close()


if __name__ == "__main__":
    asyncio.run(main())
