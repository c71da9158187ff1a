#!/usr/bin/env python3
"""rag_load.py: a RAG workload benchmark over HTTP (issue 15): N concurrent multi-turn conversations,
each turn = a user message (retrieved documents on some turns), 2-4 intrinsic calls and a base answer
of K tokens, against alora (OpenAI chat completions, docs/http.md) or llama-server (/completion with
token ids, one aLoRA GGUF per intrinsic selected by its scale). Python standard library only.

  rag_load.py run --system alora --url http://127.0.0.1:PORT --clients 4 --duration 20 --out r.json
  rag_load.py run --system llama --url http://127.0.0.1:PORT --intrinsics intr.json \
      --tokenize "build/alora tokenize --model deploy/tokenizer" --clients 4 --out r.json
  rag_load.py report --md table.md --dat DIR r1.json r2.json ...     # markdown table + gnuplot data

The workload is deterministic (--seed): every system sees the same conversations, documents and
intrinsic choices. The assistant turn that joins the history is a scripted answer of about K tokens
(the base call still generates exactly K tokens: min_tokens = max_tokens = K, resp. ignore_eos), so
the three systems process the same token sequences whatever their (random-weight) models say.
Per turn, in the order of examples/rag_pipeline.py: query_rewrite (turns > 1, half of them; no
documents), answerability (documents), the answer (documents, streamed), then on the history with
the answer: certainty (always) and hallucination_detection (half of the turns; its instruction turn).

TTFT is measured at the client: the first streamed token of the answer (both systems) and of a
llama-server intrinsic call; an alora intrinsic comes back whole, so its TTFT is the client's
end-to-end time minus the time the router reports after the first token (timings.total_ms -
timings.ttft_ms). Prefix-cache hit rate: cached prompt tokens / prompt tokens (alora:
usage.prompt_tokens_details.cached_tokens and the router's alora_prefix_cache_hit_tokens_total;
llama-server: timings.cache_n). KV use: sampled from /metrics during the run.
"""
import argparse
import http.client
import json
import math
import os
import random
import re
import shlex
import subprocess
import sys
import threading
import time
import urllib.parse

CALLS = ("query_rewrite", "answerability", "answer", "certainty", "hallucination_detection")
INTRINSICS = ("query_rewrite", "answerability", "certainty", "hallucination_detection")

WORDS = ("the of and to in is was for on that with as by at from are this be an which or it his "
         "river city capital bridge museum library harbour market station valley mountain lake "
         "north south east west century king queen council treaty railway canal festival school "
         "population tower castle garden island coast forest church palace square street district "
         "built opened founded named known largest oldest famous between during after before near "
         "water stone iron glass trade wool grain salt wine fish cotton silver copper coal timber "
         "rebuilt destroyed expanded restored connected divided governed visited described recorded "
         "first second third fourth new old small large long short high low wide narrow early late "
         "merchants farmers workers students soldiers monks painters engineers sailors travellers "
         "year years decade winter summer spring autumn morning evening flood fire storm harvest").split()
SYSTEM = ("You are a careful assistant for a travel and history archive. Answer the user's questions "
          "using only the retrieved documents, cite nothing that is not in them, and say so when the "
          "documents do not contain the answer. Keep answers short and factual.")


QR_FORMAT = {"type": "json_schema", "json_schema": {"name": "query_rewrite", "strict": True, "schema": {
    "type": "object", "properties": {"rewritten_question": {"type": "string", "minLength": 1}},
    "required": ["rewritten_question"], "additionalProperties": False}}}


# ---- the workload --------------------------------------------------------------------------------

def words(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def sentence_block(rng, n_words):
    out, left = [], n_words
    while left > 0:
        k = min(left, rng.randint(8, 16))
        s = words(rng, k)
        out.append(s[0].upper() + s[1:] + ".")
        left -= k
    return " ".join(out)


def make_conversation(seed, idx, turns, answer_words, doc_words):
    """One conversation: its turns, each {user, docs_new, answer, calls}; deterministic in (seed, idx)."""
    rng = random.Random(seed * 1000003 + idx)
    conv = {"id": idx, "turns": []}
    for t in range(turns):
        docs_new = []
        if t == 0:
            docs_new = [2]
        elif t == 2:
            docs_new = [1]
        docs = [{"doc_id": f"c{idx}-t{t}-d{j}", "text": sentence_block(rng, doc_words)}
                for j in range(docs_new[0] if docs_new else 0)]
        user = sentence_block(rng, rng.randint(10, 24)).rstrip(".") + "?"
        answer = sentence_block(rng, answer_words)
        calls = []
        if t > 0 and rng.random() < 0.5:
            calls.append("query_rewrite")
        calls += ["answerability", "answer", "certainty"]
        if rng.random() < 0.5:
            calls.append("hallucination_detection")
        conv["turns"].append({"user": user, "docs": docs, "answer": answer, "calls": calls})
    return conv


# ---- Granite chat rendering (common/text/chat.c) and segment tokenization for llama-server --------

def seg_system(text):
    return "<|start_of_role|>system<|end_of_role|>" + text + "<|end_of_text|>\n"


def seg_doc(d):
    return ('<|start_of_role|>document {"document_id": "' + d["doc_id"] + '"}<|end_of_role|>\n' + d["text"]
            + "<|end_of_text|>\n")


def seg_msg(role, content):
    return "<|start_of_role|>" + role + "<|end_of_role|>" + content + "<|end_of_text|>\n"


SEG_GEN = "<|start_of_role|>assistant<|end_of_role|>"


class SegTokenizer:
    """Token ids of template segments (each starts with <|start_of_role|>, a special token the
    pre-tokenizer splits at), from one `alora tokenize --json --no-special --stdin` per batch: the
    concatenation is tokenized once and cut at the <|start_of_role|> ids."""

    def __init__(self, cmd):
        self.cmd = shlex.split(cmd)
        self.cache = {}
        self.sor = self._tok("<|start_of_role|>")
        if len(self.sor) != 1:
            raise SystemExit(f"tokenizer: <|start_of_role|> is not one special token: {self.sor}")
        self.sor = self.sor[0]

    def _tok(self, text):
        p = subprocess.run(self.cmd + ["--json", "--no-special", "--stdin"], input=text.encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        if p.returncode != 0:
            raise SystemExit(f"tokenizer failed ({p.returncode}): {p.stderr.decode()[-400:]}")
        return json.loads(p.stdout)["ids"]

    def add(self, segs):
        todo = [s for s in dict.fromkeys(segs) if s not in self.cache]
        if not todo:
            return
        ids = self._tok("".join(todo))
        cuts = [i for i, t in enumerate(ids) if t == self.sor] + [len(ids)]
        if len(cuts) - 1 != len(todo) or cuts[0] != 0:
            raise SystemExit(f"tokenizer: {len(todo)} segments but {len(cuts) - 1} <|start_of_role|> tokens")
        for k, s in enumerate(todo):
            self.cache[s] = ids[cuts[k]:cuts[k + 1]]

    def ids(self, segs):
        self.add(segs)
        out = []
        for s in segs:
            out += self.cache[s]
        return out


def render_ids(tok, spec, kind, msgs, docs, inv):
    """The token ids alora's router builds for a call (docs/http.md): the Granite rendering with the
    documents where the intrinsic's definition puts them, the generation prompt for the answer, the
    intrinsic's instruction turn and its invocation tokens (inv: a list of ids, or a count of
    placeholders when only the length matters)."""
    d = spec.get(kind, {})
    segs = [seg_system(msgs[0]["content"])]
    place = d.get("documents", "template") if kind != "answer" else "template"
    if docs and place in ("template", "auto"):
        segs += [seg_doc(x) for x in docs]
    segs += [seg_msg(m["role"], m["content"]) for m in msgs[1:]]
    if kind == "answer":
        return tok.ids(segs + [SEG_GEN])
    if d.get("instruction"):
        segs.append(seg_msg("user", d["instruction"]))
    return tok.ids(segs) + (list(inv) if isinstance(inv, list) else [-1] * int(inv or 0))


def load_spec(path_or_obj):
    spec = json.load(open(path_or_obj)) if isinstance(path_or_obj, str) else path_or_obj
    spec = spec.get("data", spec) if isinstance(spec, dict) else spec
    return {d.get("name") or d.get("id"): d for d in spec}


# ---- HTTP ----------------------------------------------------------------------------------------

class Conn:
    def __init__(self, url, timeout):
        u = urllib.parse.urlsplit(url)
        self.host, self.port, self.timeout = u.hostname, u.port or 80, timeout
        self.c = None

    def _conn(self):
        if self.c is None:
            self.c = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self.c

    def close(self):
        if self.c is not None:
            self.c.close()
            self.c = None

    def request(self, method, path, body=None, stream=False):
        """-> (status, parsed JSON or None, t_first_token (perf_counter) or None, text of error).
        stream: the body is server-sent events; returns the list of event objects."""
        data = json.dumps(body).encode() if body is not None else None
        hdr = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in range(2):
            try:
                c = self._conn()
                c.request(method, path, body=data, headers=hdr)
                r = c.getresponse()
                if not stream or r.status != 200:
                    raw = r.read()
                    try:
                        return r.status, json.loads(raw) if raw else None, None, raw[:300]
                    except ValueError:
                        return r.status, None, None, raw[:300]
                events, t_first = [], None
                while True:
                    line = r.readline()
                    if not line:
                        break
                    line = line.strip()
                    if not line.startswith(b"data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        continue
                    ev = json.loads(payload)
                    if t_first is None and event_has_token(ev):
                        t_first = time.perf_counter()
                    events.append(ev)
                r.read()
                if r.will_close:
                    self.close()
                return 200, events, t_first, b""
            except (http.client.HTTPException, ConnectionError, OSError) as e:
                self.close()
                if attempt:
                    return 0, None, None, str(e).encode()


def event_has_token(ev):
    if "choices" in ev:  # OpenAI chunk
        for ch in ev["choices"]:
            d = ch.get("delta") or {}
            if d.get("content") or ch.get("text"):
                return True
        return False
    return bool(ev.get("content")) or bool(ev.get("tokens"))  # llama-server /completion


# ---- one system ----------------------------------------------------------------------------------

class AloraSystem:
    """alora's OpenAI API: chat completions, model = the base or an intrinsic."""

    def __init__(self, a):
        self.url, self.k = a.url, a.answer_tokens
        c = Conn(a.url, 60)
        st, models, _, err = c.request("GET", "/v1/models")
        if st != 200:
            raise SystemExit(f"{a.url}/v1/models: HTTP {st} {err!r}")
        ids = [m["id"] for m in models["data"]]
        self.base = ids[0]
        self.have = set(ids[1:])
        st, intr, _, _ = c.request("GET", "/v1/intrinsics")
        self.spec = load_spec(intr)
        # --tokenize: check that each call's usage.prompt_tokens equals the driver's own rendering
        # (the prompts llama-server gets); plain-LoRA adapters register no invocation tokens
        self.tok = SegTokenizer(a.tokenize) if a.tokenize else None
        self.max_tokens = {i: a.intrinsic_tokens.get(i) for i in INTRINSICS}
        c.close()

    def call(self, conn, kind, msgs, docs):
        if kind == "answer":
            body = {"model": self.base, "messages": msgs, "max_tokens": self.k, "min_tokens": self.k,
                    "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
        else:
            body = {"model": kind, "messages": msgs}
            if kind == "query_rewrite":
                # the router's default contract for query_rewrite (services/router/front/intrinsics.c)
                # allows "rewritten_question": "", which its own parser rejects (intrinsics_parse.c):
                # ask for a non-empty string, as a client that wants a parsed result must
                body["response_format"] = QR_FORMAT
            if self.max_tokens.get(kind):
                body["max_tokens"] = self.max_tokens[kind]
        if docs:
            body["documents"] = docs
        t0 = time.perf_counter()
        st, r, t_first, err = conn.request("POST", "/v1/chat/completions", body, stream=(kind == "answer"))
        t1 = time.perf_counter()
        rec = {"status": st, "e2e_ms": (t1 - t0) * 1e3}
        if st != 200:
            rec["error"] = (r or {}).get("error", {}).get("message") if isinstance(r, dict) else err.decode("utf-8", "replace")
            return rec
        if kind == "answer":
            usage = next((e["usage"] for e in r if e.get("usage")), {}) or {}
            rec["ttft_ms"] = ((t_first or t1) - t0) * 1e3
            rec["completion_tokens"] = usage.get("completion_tokens")
            rec["ok"] = any(e.get("choices") for e in r) and usage.get("completion_tokens") == self.k
        else:
            usage = r.get("usage", {})
            it = r.get("intrinsic") or {}
            tm = it.get("timings") or {}
            after = max(0.0, tm.get("total_ms", 0.0) - tm.get("ttft_ms", 0.0))
            rec["ttft_ms"] = max(0.0, rec["e2e_ms"] - after)
            rec["server_ttft_ms"] = tm.get("ttft_ms")
            rec["completion_tokens"] = usage.get("completion_tokens")
            rec["computed_tokens"] = it.get("computed_tokens")
            res = it.get("result")
            rec["ok"] = isinstance(res, dict) and "error" not in res and "error" not in it
            if not rec["ok"]:
                rec["error"] = f"intrinsic result not parsed: {json.dumps(it)[:300]}"
            rec["result"] = res
        rec["prompt_tokens"] = usage.get("prompt_tokens")
        rec["cached_tokens"] = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
        if self.tok is not None:
            inv = 0 if kind == "answer" else self.spec.get(kind, {}).get("invocation_tokens", 0)
            want = len(render_ids(self.tok, self.spec, kind, msgs, docs, inv))
            if want != rec["prompt_tokens"]:
                rec["ok"] = False
                rec["error"] = f"prompt tokens: alora {rec['prompt_tokens']}, driver's rendering {want}"
        return rec

    def metrics(self, conn):
        try:
            conn._conn().request("GET", "/metrics")
            r = conn._conn().getresponse()
            text = r.read().decode()
        except (http.client.HTTPException, OSError):
            conn.close()
            return None
        m = {}
        for line in text.splitlines():
            if line.startswith("alora_kv_blocks{state=\"used\"}"):
                m["kv_used"] = float(line.split()[-1])
            elif line.startswith("alora_kv_blocks{state=\"free\"}"):
                m["kv_free"] = float(line.split()[-1])
            elif line.startswith("alora_prefix_cache_hit_tokens_total"):
                m["prefix_hit_tokens"] = float(line.split()[-1])
        if "kv_used" in m and "kv_free" in m and m["kv_used"] + m["kv_free"] > 0:
            m["kv_frac"] = m["kv_used"] / (m["kv_used"] + m["kv_free"])
        return m


class LlamaSystem:
    """llama-server /completion with token ids: the same rendered prompts, each intrinsic its aLoRA
    at scale 1 (the others 0), the answer with every scale 0."""

    def __init__(self, a):
        self.url, self.k = a.url, a.answer_tokens
        if not a.intrinsics or not a.tokenize:
            raise SystemExit("--system llama needs --intrinsics FILE (alora's /v1/intrinsics) and --tokenize CMD")
        self.spec = load_spec(a.intrinsics)
        self.tok = SegTokenizer(a.tokenize)
        c = Conn(a.url, 60)
        st, ads, _, err = c.request("GET", "/lora-adapters")
        if st != 200:
            raise SystemExit(f"{a.url}/lora-adapters: HTTP {st} {err!r}")
        c.close()
        # adapter i <-> intrinsic: --lora-names maps the server's adapter order to intrinsic names
        names = a.lora_names.split(",") if a.lora_names else []
        if len(names) != len(ads):
            raise SystemExit(f"--lora-names: {len(names)} names for {len(ads)} loaded adapters")
        self.ids = {n: d["id"] for n, d in zip(names, ads)}
        self.inv = {n: [int(x) for x in (d.get("alora_invocation_tokens") or [])] for n, d in zip(names, ads)}
        for n in names:
            if not self.inv[n]:
                raise SystemExit(f"llama-server adapter {n} has no alora_invocation_tokens")
        self.have = set(names)
        self.max_tokens = {i: a.intrinsic_tokens.get(i) for i in INTRINSICS}
        self.n_ads = len(ads)

    def lora(self, name):
        return [{"id": i, "scale": 1.0 if n == name else 0.0} for n, i in self.ids.items()]

    def prompt(self, kind, msgs, docs):
        return render_ids(self.tok, self.spec, kind, msgs, docs, self.inv.get(kind, []))

    def call(self, conn, kind, msgs, docs):
        ids = self.prompt(kind, msgs, docs)
        n = self.k if kind == "answer" else (self.max_tokens.get(kind) or 4)
        body = {"prompt": ids, "n_predict": n, "temperature": 0.0, "top_k": 1, "cache_prompt": True,
                "ignore_eos": True, "stream": True, "lora": self.lora(None if kind == "answer" else kind)}
        t0 = time.perf_counter()
        st, r, t_first, err = conn.request("POST", "/completion", body, stream=True)
        t1 = time.perf_counter()
        rec = {"status": st, "e2e_ms": (t1 - t0) * 1e3, "prompt_tokens": len(ids)}
        if st != 200:
            rec["error"] = json.dumps(r)[:300] if r else err.decode("utf-8", "replace")
            return rec
        last = next((e for e in reversed(r) if e.get("stop")), {})
        tm = last.get("timings") or {}
        rec["ttft_ms"] = ((t_first or t1) - t0) * 1e3
        rec["completion_tokens"] = tm.get("predicted_n", last.get("tokens_predicted"))
        rec["cached_tokens"] = tm.get("cache_n", 0)
        rec["computed_tokens"] = tm.get("prompt_n")
        rec["ok"] = bool(last) and rec["completion_tokens"] == n
        if not rec["ok"]:
            rec["error"] = f"incomplete stream: {json.dumps(last)[:300]}"
        return rec

    def metrics(self, conn):
        try:
            conn._conn().request("GET", "/metrics")
            r = conn._conn().getresponse()
            text = r.read().decode()
        except (http.client.HTTPException, OSError):
            conn.close()
            return None
        m = {}
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            k = line.split(" ")[0]
            if "kv_cache_usage_ratio" in k:
                m["kv_frac"] = float(line.split()[-1])
            elif k.endswith("requests_processing"):
                m["processing"] = float(line.split()[-1])
        return m


# ---- the load ------------------------------------------------------------------------------------

class Run:
    def __init__(self, a, system):
        self.a, self.sys = a, system
        self.lock = threading.Lock()
        self.calls, self.turns = [], []
        self.next_conv = 0
        self.t_start = self.deadline = self.cutoff = 0.0
        self.abandoned = 0
        self.samples = []
        self.stop = threading.Event()

    def take_conv(self):
        with self.lock:
            i = self.next_conv
            if self.a.max_convs and i >= self.a.max_convs:
                return None
            self.next_conv += 1
        return make_conversation(self.a.seed, i, self.a.turns, self.a.answer_words, self.a.doc_words)

    def conversation(self, conn, conv, client):
        msgs = [{"role": "system", "content": SYSTEM}]
        docs = []
        for t, turn in enumerate(conv["turns"]):
            if time.perf_counter() >= self.deadline:
                return False
            docs = docs + turn["docs"]
            msgs = msgs + [{"role": "user", "content": turn["user"]}]
            t0 = time.perf_counter()
            recs = []
            for kind in turn["calls"]:
                if kind != "answer" and kind not in self.sys.have:
                    continue
                if time.perf_counter() >= self.cutoff:  # the drain is bounded: abandon the turn
                    with self.lock:
                        self.calls += recs
                        self.abandoned += 1
                    return False
                if kind == "answer":
                    r = self.sys.call(conn, "answer", msgs, docs)
                    msgs = msgs + [{"role": "assistant", "content": turn["answer"]}]
                else:
                    r = self.sys.call(conn, kind, msgs, None if kind == "query_rewrite" else docs)
                r.update({"kind": kind, "conv": conv["id"], "turn": t, "client": client,
                          "t": time.perf_counter() - self.t_start})
                recs.append(r)
            t1 = time.perf_counter()
            with self.lock:
                self.calls += recs
                self.turns.append({"conv": conv["id"], "turn": t, "client": client, "e2e_ms": (t1 - t0) * 1e3,
                                   "t_end": t1 - self.t_start, "ok": all(r.get("ok") for r in recs),
                                   "n_intrinsics": sum(r["kind"] != "answer" for r in recs),
                                   "max_intr_ttft_ms": max([r.get("ttft_ms", math.inf) for r in recs
                                                            if r["kind"] != "answer"] or [0]),
                                   "answer_ttft_ms": next((r.get("ttft_ms", math.inf) for r in recs
                                                           if r["kind"] == "answer"), math.inf)})
        return True

    def closed_client(self, client):
        conn = Conn(self.a.url, self.a.timeout)
        try:
            while time.perf_counter() < self.deadline:
                conv = self.take_conv()
                if conv is None:
                    break
                self.conversation(conn, conv, client)
        finally:
            conn.close()

    def open_conv(self, conv, client):
        conn = Conn(self.a.url, self.a.timeout)
        try:
            self.conversation(conn, conv, client)
        finally:
            conn.close()

    def sampler(self):
        conn = Conn(self.a.url, 10)
        while not self.stop.is_set():
            m = self.sys.metrics(conn)
            if m is not None:
                m["t"] = time.perf_counter() - self.t_start
                self.samples.append(m)
            self.stop.wait(self.a.sample_s)
        conn.close()

    def go(self):
        a = self.a
        conn = Conn(a.url, 10)
        m0 = self.sys.metrics(conn) or {}
        self.t_start = time.perf_counter()
        self.deadline = self.t_start + a.duration
        self.cutoff = self.deadline + (a.grace if a.grace >= 0 else a.duration)
        smp = threading.Thread(target=self.sampler, daemon=True)
        smp.start()
        threads = []
        if a.rate:
            rng = random.Random(a.seed)
            t_next, k = self.t_start, 0
            while t_next < self.deadline and (not a.max_convs or k < a.max_convs):
                now = time.perf_counter()
                if t_next > now:
                    time.sleep(t_next - now)
                th = threading.Thread(target=self.open_conv, args=(self.take_conv(), k), daemon=True)
                th.start()
                threads.append(th)
                k += 1
                t_next += rng.expovariate(a.rate)
        else:
            for c in range(a.clients):
                th = threading.Thread(target=self.closed_client, args=(c,), daemon=True)
                th.start()
                threads.append(th)
        for th in threads:
            th.join()
        elapsed = time.perf_counter() - self.t_start
        self.stop.set()
        smp.join()
        m1 = self.sys.metrics(conn) or {}
        conn.close()
        return elapsed, m0, m1


def pct(xs, p):
    xs = sorted(x for x in xs if x is not None and not math.isinf(x))
    if not xs:
        return None
    k = (len(xs) - 1) * p / 100.0
    f = math.floor(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


def summarize(a, run, elapsed, m0, m1):
    calls, turns = run.calls, run.turns
    intr = [c for c in calls if c["kind"] != "answer"]
    s = {"system": a.label or a.system, "clients": 0 if a.rate else a.clients, "rate": a.rate, "duration_s": a.duration,
         "elapsed_s": elapsed, "seed": a.seed, "turns_per_conv": a.turns, "answer_tokens": a.answer_tokens,
         "slo": {"ttft_ms": a.slo_ttft_ms, "answer_ttft_ms": a.slo_answer_ttft_ms},
         "n_turns": len(turns), "n_calls": len(calls), "n_intrinsic_calls": len(intr),
         "n_conversations_started": run.next_conv, "turns_abandoned": run.abandoned,
         "errors": sum(1 for c in calls if c.get("status") != 200),
         "not_ok": sum(1 for c in calls if not c.get("ok")),
         "turns_per_s": len(turns) / elapsed if elapsed else 0.0,
         "intrinsic_calls_per_s": len(intr) / elapsed if elapsed else 0.0,
         "calls_per_s": len(calls) / elapsed if elapsed else 0.0}
    good = [t for t in turns if t["ok"] and t["max_intr_ttft_ms"] <= a.slo_ttft_ms
            and t["answer_ttft_ms"] <= a.slo_answer_ttft_ms]
    s["goodput_turns_per_s"] = len(good) / elapsed if elapsed else 0.0
    s["slo_attainment"] = len(good) / len(turns) if turns else 0.0
    good_intr = [c for c in intr if c.get("ok") and c.get("ttft_ms", math.inf) <= a.slo_ttft_ms]
    s["goodput_intrinsic_calls_per_s"] = len(good_intr) / elapsed if elapsed else 0.0
    per = {}
    for kind in CALLS + ("intrinsics",):
        cs = intr if kind == "intrinsics" else [c for c in calls if c["kind"] == kind]
        if not cs:
            continue
        ok = [c for c in cs if c.get("status") == 200]
        per[kind] = {"n": len(cs), "errors": len(cs) - len(ok),
                     "prompt_tokens_mean": (sum(c.get("prompt_tokens") or 0 for c in ok) / len(ok)) if ok else None,
                     "completion_tokens_mean": (sum(c.get("completion_tokens") or 0 for c in ok) / len(ok)) if ok else None}
        for m in ("ttft_ms", "e2e_ms"):
            for p in (50, 90, 99):
                per[kind][f"{m[:-3]}_p{p}_ms"] = pct([c.get(m) for c in ok], p)
    s["per_call"] = per
    s["turn_e2e_p50_ms"] = pct([t["e2e_ms"] for t in turns], 50)
    s["turn_e2e_p90_ms"] = pct([t["e2e_ms"] for t in turns], 90)
    s["turn_e2e_p99_ms"] = pct([t["e2e_ms"] for t in turns], 99)
    pt = sum(c.get("prompt_tokens") or 0 for c in calls if c.get("status") == 200)
    ct = sum(c.get("cached_tokens") or 0 for c in calls if c.get("status") == 200)
    s["prompt_tokens"] = pt
    s["cached_prompt_tokens"] = ct
    s["prefix_cache_hit_rate"] = ct / pt if pt else None
    if "prefix_hit_tokens" in m0 and "prefix_hit_tokens" in m1:
        s["metrics_prefix_hit_tokens"] = m1["prefix_hit_tokens"] - m0["prefix_hit_tokens"]
        s["metrics_prefix_cache_hit_rate"] = s["metrics_prefix_hit_tokens"] / pt if pt else None
    kv = [x["kv_frac"] for x in run.samples if "kv_frac" in x]
    s["kv_use_mean"] = sum(kv) / len(kv) if kv else None
    s["kv_use_max"] = max(kv) if kv else None
    s["kv_samples"] = len(kv)
    if "kv_used" in m1:
        s["kv_blocks"] = m1["kv_used"] + m1["kv_free"]
    errs = [c.get("error") for c in calls if c.get("error")]
    s["first_errors"] = errs[:5]
    return s


def cmd_run(a):
    a.intrinsic_tokens = {}
    for kv in (a.intrinsic_max_tokens or "").split(","):
        if kv:
            k, v = kv.split("=")
            a.intrinsic_tokens[k] = int(v)
    system = AloraSystem(a) if a.system == "alora" else LlamaSystem(a)
    if system.tok is not None:  # tokenize every segment before the clock starts
        n = a.clients if not a.rate else max(1, int(a.rate * a.duration * 2))
        for i in range(n * 4):
            conv = make_conversation(a.seed, i, a.turns, a.answer_words, a.doc_words)
            segs = [seg_system(SYSTEM), SEG_GEN]
            for d in system.spec.values():
                if d.get("instruction"):
                    segs.append(seg_msg("user", d["instruction"]))
            for t in conv["turns"]:
                segs += [seg_doc(x) for x in t["docs"]] + [seg_msg("user", t["user"]), seg_msg("assistant", t["answer"])]
            system.tok.add(segs)
    run = Run(a, system)
    elapsed, m0, m1 = run.go()
    s = summarize(a, run, elapsed, m0, m1)
    out = {"summary": s, "calls": run.calls, "turns": run.turns, "kv_samples": run.samples}
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1, default=lambda x: None)
    pc = s["per_call"]
    print(f"{s['system']:>10} N={a.clients if not a.rate else 'rate ' + str(a.rate)}: {s['n_turns']} turns "
          f"{s['turns_per_s']:.2f}/s, {s['n_intrinsic_calls']} intrinsic calls {s['intrinsic_calls_per_s']:.2f}/s, "
          f"intrinsic TTFT p50/p99 {fmt(pc.get('intrinsics', {}).get('ttft_p50_ms'))}/"
          f"{fmt(pc.get('intrinsics', {}).get('ttft_p99_ms'))} ms, answer TTFT p50 "
          f"{fmt(pc.get('answer', {}).get('ttft_p50_ms'))} ms, errors {s['errors']}, not ok {s['not_ok']}, "
          f"cache hit {fmt(s['prefix_cache_hit_rate'], 2)}", flush=True)
    return 0 if s["errors"] == 0 else 1


def fmt(x, nd=0):
    return "-" if x is None else f"{x:.{nd}f}"


# ---- report --------------------------------------------------------------------------------------

def cmd_report(a):
    runs = [json.load(open(p))["summary"] for p in a.files]
    systems = list(dict.fromkeys(r["system"] for r in runs))
    loads = sorted(set(r["clients"] for r in runs))
    by = {(r["system"], r["clients"]): r for r in runs}
    lines = ["| system | N | turns/s | intrinsic calls/s | goodput turns/s (SLO) | intrinsic TTFT p50 / p90 / p99 ms "
             "| intrinsic e2e p50 / p99 ms | answer TTFT p50 / p99 ms | answer e2e p50 ms | turn e2e p50 / p99 ms "
             "| prefix-cache hit | KV use mean / max | errors |",
             "|---|--:|--:|--:|--:|--|--|--|--:|--|--:|--|--:|"]
    for n in loads:
        for sy in systems:
            r = by.get((sy, n))
            if not r:
                continue
            i = r["per_call"].get("intrinsics", {})
            an = r["per_call"].get("answer", {})
            kv = "-" if r.get("kv_use_mean") is None else f"{r['kv_use_mean']:.2f} / {r['kv_use_max']:.2f}"
            lines.append(f"| {sy} | {n} | {r['turns_per_s']:.2f} | {r['intrinsic_calls_per_s']:.2f} | "
                         f"{r['goodput_turns_per_s']:.2f} ({100 * r['slo_attainment']:.0f}%) | "
                         f"{fmt(i.get('ttft_p50_ms'))} / {fmt(i.get('ttft_p90_ms'))} / {fmt(i.get('ttft_p99_ms'))} | "
                         f"{fmt(i.get('e2e_p50_ms'))} / {fmt(i.get('e2e_p99_ms'))} | "
                         f"{fmt(an.get('ttft_p50_ms'))} / {fmt(an.get('ttft_p99_ms'))} | {fmt(an.get('e2e_p50_ms'))} | "
                         f"{fmt(r['turn_e2e_p50_ms'])} / {fmt(r['turn_e2e_p99_ms'])} | "
                         f"{fmt(r['prefix_cache_hit_rate'], 2)} | {kv} | {r['errors']} |")
    lines += ["", "Per call type (p50 / p90 / p99 ms; TTFT then end to end), mean prompt / completion tokens:", "",
              "| system | N | call | n | TTFT p50 / p90 / p99 | e2e p50 / p90 / p99 | prompt tok | completion tok |",
              "|---|--:|---|--:|--|--|--:|--:|"]
    for n in loads:
        for sy in systems:
            r = by.get((sy, n))
            if not r:
                continue
            for k in CALLS:
                c = r["per_call"].get(k)
                if not c:
                    continue
                lines.append(f"| {sy} | {n} | {k} | {c['n']} | {fmt(c['ttft_p50_ms'])} / {fmt(c['ttft_p90_ms'])} / "
                             f"{fmt(c['ttft_p99_ms'])} | {fmt(c['e2e_p50_ms'])} / {fmt(c['e2e_p90_ms'])} / "
                             f"{fmt(c['e2e_p99_ms'])} | {fmt(c['prompt_tokens_mean'])} | "
                             f"{fmt(c['completion_tokens_mean'], 1)} |")
    # the target: alora intrinsic calls/s >= 3x llama-server's at equal or better p99 TTFT
    ref, peer, lora = a.alora, a.llama, a.lora
    lines += ["", f"Ratios per load ({ref} over {peer}, {ref} over {lora}):", "",
              f"| N | intrinsic calls/s {ref} / {peer} | p99 intrinsic TTFT {ref} / {peer} | target (>= 3x, p99 <=) "
              f"| intrinsic calls/s {ref} / {lora} | target (>= 10x) |", "|--:|--:|--:|--|--:|--|"]
    verdict = {}
    for n in loads:
        A, L, P = by.get((ref, n)), by.get((peer, n)), by.get((lora, n))
        row = [str(n)]
        if A and L and L["intrinsic_calls_per_s"] > 0:
            rt = A["intrinsic_calls_per_s"] / L["intrinsic_calls_per_s"]
            pa = A["per_call"]["intrinsics"]["ttft_p99_ms"]
            pl = L["per_call"]["intrinsics"]["ttft_p99_ms"]
            met = rt >= 3 and pa is not None and pl is not None and pa <= pl
            verdict[n] = met
            row += [f"{rt:.2f}x", f"{pa / pl:.2f}" if pa and pl else "-", "met" if met else "NOT met"]
        else:
            row += ["-", "-", "-"]
        if A and P and P["intrinsic_calls_per_s"] > 0:
            rp = A["intrinsic_calls_per_s"] / P["intrinsic_calls_per_s"]
            row += [f"{rp:.2f}x", "met" if rp >= 10 else "NOT met"]
        else:
            row += ["-", "-"]
        lines.append("| " + " | ".join(row) + " |")
    md = "\n".join(lines) + "\n"
    # one RATIO line per target and load, for make bench's summary (bench/run.sh)
    for n in loads:
        A, L, P = by.get((ref, n)), by.get((peer, n)), by.get((lora, n))
        if A and L and L["intrinsic_calls_per_s"] > 0:
            rt = A["intrinsic_calls_per_s"] / L["intrinsic_calls_per_s"]
            print(f"RATIO RAG intrinsic calls/s {ref} / {peer}, N={n}: {rt:.2f} (target >= 3.00, p99 TTFT <=) "
                  f"{'met' if verdict.get(n) else 'missed'}")
            pa = A["per_call"]["intrinsics"]["ttft_p99_ms"]
            pl = L["per_call"]["intrinsics"]["ttft_p99_ms"]
            if pa and pl:
                print(f"RATIO RAG p99 intrinsic TTFT {ref} / {peer}, N={n}: {pa / pl:.2f} (target <= 1.00) "
                      f"{'met' if pa <= pl else 'missed'}")
        if A and P and P["intrinsic_calls_per_s"] > 0:
            rp = A["intrinsic_calls_per_s"] / P["intrinsic_calls_per_s"]
            print(f"RATIO RAG intrinsic calls/s {ref} / {lora}, N={n}: {rp:.2f} (target >= 10.00) "
                  f"{'met' if rp >= 10 else 'missed'}")
    if a.md:
        open(a.md, "w").write(md)
    else:
        sys.stdout.write(md)
    if a.dat:
        os.makedirs(a.dat, exist_ok=True)
        for sy in systems:
            with open(os.path.join(a.dat, f"{sy}.dat"), "w") as f:
                f.write("# N intr_ttft_p50 intr_ttft_p90 intr_ttft_p99 answer_ttft_p50 answer_ttft_p99 "
                        "turn_e2e_p50 turn_e2e_p99 intr_calls_per_s turns_per_s goodput\n")
                for n in loads:
                    r = by.get((sy, n))
                    if not r:
                        continue
                    i = r["per_call"].get("intrinsics", {})
                    an = r["per_call"].get("answer", {})
                    vals = [i.get("ttft_p50_ms"), i.get("ttft_p90_ms"), i.get("ttft_p99_ms"), an.get("ttft_p50_ms"),
                            an.get("ttft_p99_ms"), r["turn_e2e_p50_ms"], r["turn_e2e_p99_ms"],
                            r["intrinsic_calls_per_s"], r["turns_per_s"], r["goodput_turns_per_s"]]
                    f.write(f"{n} " + " ".join("NaN" if v is None else f"{v:.3f}" for v in vals) + "\n")
    if a.verdict:
        json.dump({str(k): v for k, v in verdict.items()}, open(a.verdict, "w"))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="drive one system")
    r.add_argument("--system", choices=("alora", "llama"), required=True)
    r.add_argument("--label", help="name in the report (default: --system)")
    r.add_argument("--url", required=True)
    r.add_argument("--clients", type=int, default=4, help="closed loop: concurrent conversations (N)")
    r.add_argument("--rate", type=float, default=0.0, help="open loop: conversation arrivals per second (Poisson)")
    r.add_argument("--duration", type=float, default=20.0, help="seconds during which new turns start")
    r.add_argument("--max-convs", type=int, default=0, help="stop after this many conversations (0: by --duration)")
    r.add_argument("--turns", type=int, default=4, help="turns per conversation")
    r.add_argument("--answer-tokens", type=int, default=16, help="K: tokens of each base answer")
    r.add_argument("--answer-words", type=int, default=None, help="words of the scripted answer (default K/2)")
    r.add_argument("--doc-words", type=int, default=40, help="words per retrieved document")
    r.add_argument("--intrinsic-max-tokens", default="certainty=1,answerability=4,query_rewrite=24,"
                   "hallucination_detection=24", help="max_tokens per intrinsic (llama-server: n_predict)")
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--slo-ttft-ms", type=float, default=1000.0, help="SLO: every intrinsic TTFT of a turn")
    r.add_argument("--slo-answer-ttft-ms", type=float, default=2000.0, help="SLO: the answer's TTFT")
    r.add_argument("--grace", type=float, default=-1.0,
                   help="after the deadline, calls still start for this long (default: --duration); later a "
                        "turn in progress is abandoned (not counted)")
    r.add_argument("--timeout", type=float, default=600.0)
    r.add_argument("--sample-s", type=float, default=0.5, help="/metrics sampling period")
    r.add_argument("--intrinsics", help="llama: alora's /v1/intrinsics JSON (instruction, documents placement)")
    r.add_argument("--tokenize", help="llama: tokenizer command, e.g. 'build/alora tokenize --model deploy/tokenizer'")
    r.add_argument("--lora-names", help="llama: intrinsic name of each loaded adapter, in --lora order")
    r.add_argument("--out", required=True)
    p = sub.add_parser("report", help="markdown table and gnuplot data from run JSONs")
    p.add_argument("files", nargs="+")
    p.add_argument("--md")
    p.add_argument("--dat", help="directory for SYSTEM.dat (gnuplot)")
    p.add_argument("--alora", default="alora")
    p.add_argument("--llama", default="llama-server")
    p.add_argument("--lora", default="alora-lora")
    p.add_argument("--verdict", help="write {N: target met} JSON here")
    a = ap.parse_args()
    if a.cmd == "run":
        if a.answer_words is None:
            a.answer_words = max(4, a.answer_tokens // 2)
        return cmd_run(a)
    return cmd_report(a)


if __name__ == "__main__":
    sys.exit(main())
