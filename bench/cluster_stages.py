#!/usr/bin/env python3
"""cluster_stages.py PREFIX: where an intrinsic call's time goes, stage by stage, from the stamps the
processes of one host wrote with ALORA_STAGES=PREFIX (common/stage.h: PREFIX.<pid>, "name ns tid value"
lines, CLOCK_MONOTONIC). Calls are cut at the client's "C0" stamps (bench_cluster, one call at a time);
each interval is between consecutive stamps present in a call (the router's fast path has no pool
stamps); medians over the calls after the first two. Standard library only."""
import glob
import statistics
import sys

ORDER = ["C0", "C1", "R1", "R2", "R3", "R3b", "R4", "R5", "W1", "W2", "W3", "W3c", "W4", "W5", "W6", "W7", "W8",
         "R6", "R7", "R7b", "R8", "C2", "C3"]
WHAT = {
    "C1": "client: encode + send (inline write)",
    "R1": "router: NNG receive (poller + task threads)",
    "R2": "router: decode + checks + admission",
    "R3": "router: pool thread hand-off (slow path)",
    "R3b": "router: route + lease-cache lookup (slow path)",
    "R4": "router: prepare the worker request (fast path: route + lease cache + pick)",
    "R5": "router: encode + send to the worker (sync client)",
    "W1": "worker: NNG receive (after the router's write)",
    "W2": "worker: decode + handler",
    "W3": "worker: engine thread wake-up",
    "W3c": "worker: lease check + engine submit",
    "W4": "worker: to the step",
    "W5": "COMPUTE: the forward step (prefill + sampling)",
    "W6": "worker: result -> reply fields",
    "W7": "worker: reply thread wake-up",
    "W8": "worker: reply encode",
    "R6": "worker send + router NNG receive (+ wake)",
    "R7": "router: decode the worker's reply (sync client)",
    "R7b": "router: build the answer",
    "R8": "router: encode the answer",
    "C2": "router send + client NNG receive + client wake",
    "C3": "client: decode",
}


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: cluster_stages.py PREFIX (the ALORA_STAGES prefix the processes wrote)")
    ev = []
    for f in glob.glob(sys.argv[1] + ".*"):
        for line in open(f):
            name, ns, _tid, val = line.rstrip("\n").rsplit(" ", 3)
            ev.append((int(ns), name.split()[0], float(val)))
    ev.sort()
    calls, cur = [], None
    for ns, key, val in ev:
        if key == "C0":
            cur = {}
            calls.append(cur)
        if cur is not None and key not in cur:
            cur[key] = (ns, val)
    calls = calls[2:]
    if not calls:
        sys.exit("cluster_stages.py: no calls in %s.* (was ALORA_STAGES set for the client and the cluster?)" % sys.argv[1])
    iv, label = {}, {}
    for c in calls:
        keys = [k for k in ORDER if k in c]
        for a, b in zip(keys, keys[1:]):
            iv.setdefault((a, b), []).append((c[b][0] - c[a][0]) / 1e3)
    rows = sorted(iv.items(), key=lambda kv: ORDER.index(kv[0][1]) * 100 + ORDER.index(kv[0][0]))
    print("| stage | what | calls | median (us) | p10 | p90 |")
    print("|---|---|--:|--:|--:|--:|")
    total = 0.0
    for (a, b), v in rows:
        v.sort()
        m = statistics.median(v)
        if b != "W5" and len(v) * 2 > len(calls):
            total += m
        print(f"| {a} -> {b} | {WHAT.get(b, '')} | {len(v)} | {m:.1f} | {v[len(v) // 10]:.1f} | {v[len(v) * 9 // 10]:.1f} |")
    ov = [(c["C3"][0] - c["C0"][0]) / 1e3 - c["W5c"][1] * 1e3 for c in calls if "C3" in c and "W5c" in c]
    print()
    print(f"{len(calls)} calls; sum of the stage medians outside the compute: {total:.0f} us; RPC overhead "
          f"(client wall - the compute the worker reports) median {statistics.median(ov):.0f} us" if ov else "")


if __name__ == "__main__":
    main()
