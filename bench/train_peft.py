#!/usr/bin/env python3
"""train_peft.py: the PEFT side of bench/train.sh: aLoRA (or plain LoRA) training throughput of
torch + PEFT on the CPU, on the same model, data and thread count as `alora train`.

    python bench/train_peft.py --model DIR --data FILE.jsonl --threads 2 [--invocation 500,501,502]
        [--rank 8] [--targets q_proj,k_proj,v_proj,o_proj] [--batch 1] [--epochs 1]

--batch examples per step (1: one at a time): forward, backward over the whole sequence (what PEFT
does; its aLoRA masks the adapter before the activation start but back-propagates everywhere), AdamW
step. A batch of several examples is one padded tensor (right padding, attention mask, labels -100 on
the padding), the loss the mean over the batch's target tokens, as `alora train --batch`.
--epochs passes over the data (every epoch does the same work: nothing carries over).
Prints one JSON line: examples (counting every epoch), seconds, examples_per_s, tokens_per_s, peak_rss_bytes.
"""
import argparse, json, os, resource, time
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
from transformers import AutoModelForCausalLM
from peft import LoraConfig, get_peft_model

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--data", required=True)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--invocation")
ap.add_argument("--rank", type=int, default=8)
ap.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj")
ap.add_argument("--batch", type=int, default=1)
ap.add_argument("--epochs", type=int, default=1)
a = ap.parse_args()
torch.set_num_threads(a.threads)
model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
kw = dict(r=a.rank, lora_alpha=2 * a.rank, target_modules=a.targets.split(","), lora_dropout=0.0,
          task_type="CAUSAL_LM")
if a.invocation:
    kw["alora_invocation_tokens"] = [int(x) for x in a.invocation.split(",")]
pm = get_peft_model(model, LoraConfig(**kw))
pm.train()
opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-4)
rows = [json.loads(l) for l in open(a.data) if l.strip()]
t0 = time.time()
toks = 0
for b0 in [b for _ in range(a.epochs) for b in range(0, len(rows), a.batch)]:
    chunk = rows[b0:b0 + a.batch]
    n = max(len(r["tokens"]) + len(r["target"]) for r in chunk)
    ids = torch.zeros((len(chunk), n), dtype=torch.long)
    mask = torch.zeros((len(chunk), n), dtype=torch.long)
    labels = torch.full((len(chunk), n), -100, dtype=torch.long)
    for i, r in enumerate(chunk):
        seq = r["tokens"] + r["target"]
        ids[i, :len(seq)] = torch.tensor(seq)
        mask[i, :len(seq)] = 1
        labels[i, len(r["tokens"]):len(seq)] = torch.tensor(r["target"])
        toks += len(seq)
    opt.zero_grad()
    pm(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    opt.step()
dt = time.time() - t0
ne = len(rows) * a.epochs
print(json.dumps(dict(examples=ne, seconds=dt, examples_per_s=ne / dt, tokens_per_s=toks / dt,
                      peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)))
