#!/usr/bin/env python3
"""Training fixtures for `alora train` (oracle = Hugging Face PEFT, back-propagated by torch).

How to run (from the repository root; CI never runs this, the outputs are committed):

    python -m venv v && v/bin/pip install -r tests/oracle/requirements.txt
    v/bin/python tests/oracle/gen_train_fixtures.py                 # writes tests/fixtures/train/
    v/bin/python tests/oracle/gen_train_fixtures.py --check-adapter ADAPTER_DIR --model MODEL_DIR \
        --tokens 1,2,3  # loads an adapter alora wrote into PEFT, prints its logits as JSON

Per case (the tiny llama_f32 / granite_f32 models of tests/fixtures/oracle, aLoRA and plain LoRA):
  * a PEFT adapter (r 4, alpha 8, every projection) with PEFT's A init and a random non-zero B
    (with B = 0 every A gradient is zero), saved as <case>/ with save_pretrained;
  * one batch of two examples of equal length (prompt 20 tokens holding the invocation at two
    different places, 4 target tokens; labels -100 on the prompt, as a trainer's collator does):
    PEFT's loss (the mean over the 8 target tokens) and the gradient of every lora_A / lora_B;
  * N_SGD steps of torch.optim.SGD (lr LR) on that batch from the same start: the final A and B.
Written: tests/fixtures/train/train.json (cases, examples, loss, lr, steps) and
<case>.safetensors (<tensor>.grad, <tensor>.sgd for every adapter tensor).
"""

import json
import os
import sys

if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM
import peft
from peft import LoraConfig, PeftModel, get_peft_model

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "tests" / "fixtures" / "oracle"
OUT = ROOT / "tests" / "fixtures" / "train"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
N_SGD = 3
LR = 0.5

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)

CASES = {
    "llama_alora": dict(model="llama_f32", inv=[7, 8, 9]),
    "llama_lora": dict(model="llama_f32", inv=None),
    "granite_alora": dict(model="granite_f32", inv=[11, 12, 13, 14]),
    "granite_lora": dict(model="granite_f32", inv=None),
}


def examples(inv, seed):
    g = torch.Generator().manual_seed(seed)
    reserved = set(range(5, 15))
    out = []
    for s in (9, 14):
        toks = [1]
        while len(toks) < 24:
            t = int(torch.randint(3, 256, (1,), generator=g))
            if t not in reserved:
                toks.append(t)
        if inv:
            toks[s:s + len(inv)] = inv
        out.append(dict(ids=toks, n_prompt=20))
    return out


def build(case, spec, seed):
    model = AutoModelForCausalLM.from_pretrained(MODELS / spec["model"], dtype=torch.float32)
    kw = dict(r=4, lora_alpha=8, target_modules=TARGETS, lora_dropout=0.0, task_type="CAUSAL_LM")
    if spec["inv"]:
        kw["alora_invocation_tokens"] = spec["inv"]
    torch.manual_seed(seed)
    pm = get_peft_model(model, LoraConfig(**kw))
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return pm


def batch(exs):
    ids = torch.tensor([e["ids"] for e in exs])
    labels = ids.clone()
    for i, e in enumerate(exs):
        labels[i, :e["n_prompt"]] = -100
    return ids, labels


def grads_of(pm, ids, labels):
    pm.zero_grad()
    out = pm(input_ids=ids, labels=labels)
    out.loss.backward()
    return out.loss.item()


def key(n):
    # PEFT parameter name -> the name in adapter_model.safetensors
    return n.replace(".default", "")


def generate():
    OUT.mkdir(parents=True, exist_ok=True)
    index = dict(versions=dict(torch=torch.__version__, peft=peft.__version__), lr=LR, n_sgd=N_SGD, cases={})
    for ci, (case, spec) in enumerate(CASES.items()):
        pm = build(case, spec, 100 + ci)
        d = OUT / case
        if d.exists():
            shutil.rmtree(d)
        pm.save_pretrained(d)
        (d / "README.md").unlink(missing_ok=True)
        cfg = json.loads((d / "adapter_config.json").read_text())
        cfg["base_model_name_or_path"] = spec["model"]  # not this machine's path
        (d / "adapter_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        exs = examples(spec["inv"], 200 + ci)
        ids, labels = batch(exs)
        loss = grads_of(pm, ids, labels)
        tensors = {}
        for n, p in pm.named_parameters():
            if p.requires_grad:
                tensors[key(n) + ".grad"] = p.grad.detach().clone().contiguous()
        # an independent check of PEFT's aLoRA masking: the loss must differ from the base's but
        # the prompt logits before the activation start must not
        with torch.no_grad(), pm.disable_adapter():
            base_logits = pm(input_ids=ids).logits
        with torch.no_grad():
            ad_logits = pm(input_ids=ids).logits
        starts = []
        for b, e in enumerate(exs):
            s = 0
            if spec["inv"]:
                inv = spec["inv"]
                s = max(i for i in range(len(e["ids"]) - len(inv) + 1) if e["ids"][i:i + len(inv)] == inv)
            starts.append(s)
            if s > 0:
                assert torch.allclose(base_logits[b, :s], ad_logits[b, :s], atol=1e-6), case
            assert not torch.allclose(base_logits[b, s:], ad_logits[b, s:], atol=1e-4), case
        opt = torch.optim.SGD([p for p in pm.parameters() if p.requires_grad], lr=LR)
        losses = []  # the loss after k steps for k = 0 .. N_SGD-1
        for _ in range(N_SGD):
            losses.append(grads_of(pm, ids, labels))
            opt.step()
        for n, p in pm.named_parameters():
            if p.requires_grad:
                tensors[key(n) + ".sgd"] = p.detach().clone().contiguous()
        save_file(tensors, str(OUT / f"{case}.safetensors"))
        index["cases"][case] = dict(model=spec["model"], adapter=case, invocation=spec["inv"],
                                    examples=exs, act_starts=starts, loss=loss, sgd_losses=losses)
        print(f"{case}: loss {loss:.6f}, after SGD {losses}")
    (OUT / "train.json").write_text(json.dumps(index, indent=1) + "\n")


def check_adapter(adapter, model_dir, tokens):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    pm = PeftModel.from_pretrained(model, adapter)
    pm.eval()
    ids = torch.tensor([tokens])
    with torch.no_grad():
        logits = pm(input_ids=ids).logits[0, -1]
    print(json.dumps(dict(logits=logits.tolist(), argmax=int(logits.argmax()))))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--check-adapter")
    ap.add_argument("--model")
    ap.add_argument("--tokens")
    a = ap.parse_args()
    if a.check_adapter:
        check_adapter(a.check_adapter, a.model, [int(x) for x in a.tokens.split(",")])
    else:
        generate()
