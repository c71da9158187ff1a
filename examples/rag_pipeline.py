#!/usr/bin/env python3
"""rag_pipeline.py: a retrieval-augmented conversation against alora's HTTP API (docs/http.md).

Each turn: query_rewrite (standalone question) -> keyword retrieval over a tiny in-file document
store -> answerability (with the retrieved documents) -> the base model answers -> certainty and
hallucination_detection on the answer. Every call is a stateless OpenAI chat completion that resends
the whole conversation; the base's prefix cache makes the resent part cheap (see cached_tokens and
the intrinsics' computed_tokens). Python standard library only.

    make run                       # once: builds the demo model and adapters
    build/alora up -c deploy/local.cfg &
    python3 examples/rag_pipeline.py [--url http://127.0.0.1:8080] [--api-key KEY]

With the random demo weights the intrinsic outputs are meaningless, but each is constrained to its
intrinsic's output contract (a closed set of labels or its JSON schema, docs/http.md), so every
parsed result is a well-formed object, which this script prints as it is.
"""
import argparse
import json
import re
import sys
import time
import urllib.error
import urllib.request

DOCS = [
    {"doc_id": "paris", "text": "Paris is the capital and largest city of France. It is on the Seine."},
    {"doc_id": "rome", "text": "Rome is the capital of Italy. The Tiber river flows through it."},
    {"doc_id": "berlin", "text": "Berlin is the capital of Germany and its largest city."},
    {"doc_id": "seine", "text": "The Seine is a 777 km long river in northern France."},
    {"doc_id": "alps", "text": "The Alps are the highest mountain range in Europe, across eight countries."},
]
QUESTIONS = ["What is the capital of France?", "Which river flows through it?", "And what about Italy?"]


class Api:
    def __init__(self, url, key):
        self.url, self.key = url.rstrip("/"), key

    def call(self, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method="POST" if data else "GET")
        req.add_header("Content-Type", "application/json")
        if self.key:
            req.add_header("Authorization", "Bearer " + self.key)
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                out = json.loads(r.read())
        except urllib.error.HTTPError as e:
            try:
                out = json.loads(e.read())
            except ValueError:
                out = {"error": {"code": str(e.code), "message": e.reason}}
        except (urllib.error.URLError, OSError) as e:
            out = {"error": {"code": "unavailable", "message": str(e)}}
        return out, (time.perf_counter() - t0) * 1e3

    def chat(self, model, messages, documents=None, **kw):
        body = {"model": model, "messages": messages, **kw}
        if documents:
            body["documents"] = documents
        return self.call("/v1/chat/completions", body)


def show(step, out, ms):
    if "error" in out and "choices" not in out:
        print(f"  {step:<24} {ms:7.1f} ms  ERROR {out['error'].get('code')}: {out['error'].get('message')}")
        return None
    intr = out.get("intrinsic")
    usage = out.get("usage", {})
    cached = usage.get("prompt_tokens_details", {}).get("cached_tokens")
    if intr:
        res = json.dumps(intr.get("result"))[:110]
        print(f"  {step:<24} {ms:7.1f} ms  prompt {usage.get('prompt_tokens')} cached {cached} "
              f"computed {intr.get('computed_tokens')}  result {res}")
        return intr.get("result") or {}
    text = out["choices"][0]["message"]["content"]
    print(f"  {step:<24} {ms:7.1f} ms  prompt {usage.get('prompt_tokens')} cached {cached}  text {text[:60]!r}")
    return text


def retrieve(query, k=2):
    words = set(re.findall(r"[a-z]+", query.lower())) - {"the", "is", "of", "what", "which", "and", "it", "a"}
    scored = sorted(DOCS, key=lambda d: -len(words & set(re.findall(r"[a-z]+", d["text"].lower()))))
    return [d for d in scored[:k] if words & set(re.findall(r"[a-z]+", d["text"].lower()))] or scored[:1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--max-tokens", type=int, default=24)
    a = ap.parse_args()
    api = Api(a.url, a.api_key)
    models, ms = api.call("/v1/models")
    if "data" not in models:
        print(f"cannot list models at {a.url}: {models.get('error')}")
        return 1
    ids = [m["id"] for m in models["data"]]
    base = ids[0]
    have = set(ids[1:])
    print(f"models: {ids}  ({ms:.1f} ms)")
    conv = [{"role": "system", "content": "You answer questions using the documents."}]
    for q in QUESTIONS:
        print(f"\nuser: {q}")
        conv.append({"role": "user", "content": q})
        query = q
        if "query_rewrite" in have:
            res = show("query_rewrite", *api.chat("query_rewrite", conv))
            if isinstance(res, dict) and isinstance(res.get("rewritten_question"), str) and res["rewritten_question"]:
                query = res["rewritten_question"]
        docs = retrieve(query)
        print(f"  {'retrieval':<24} query {query!r} -> {[d['doc_id'] for d in docs]}")
        if "answerability" in have:
            res = show("answerability", *api.chat("answerability", conv, docs))
            if isinstance(res, dict) and res.get("answerability") == "unanswerable":
                print("  (unanswerable: answering anyway, this is a demo)")
        answer = show("answer (base)", *api.chat(base, conv, docs, max_tokens=a.max_tokens, temperature=0))
        if not isinstance(answer, str):
            answer = ""
        conv.append({"role": "assistant", "content": answer})
        if "certainty" in have:
            show("certainty", *api.chat("certainty", conv, docs))
        if "hallucination_detection" in have:
            show("hallucination_detection", *api.chat("hallucination_detection", conv, docs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
