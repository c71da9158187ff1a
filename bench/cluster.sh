#!/usr/bin/env bash
# cluster.sh: intrinsic TTFT through a local cluster on the 85m preset, aLoRA vs plain LoRA at 256,
# 1024 and ~2048 tokens of context, against (a) the floor measured in the same run (weights + KV read
# once at the measured read bandwidth, plus the few-token FLOPs at the measured sgemm rate) and (b)
# llama-server's aLoRA TTFT on the same weights and adapter, 1 thread (../shared/peer; skipped with a
# line when absent); and the RPC overhead per call (client wall time minus the compute the base and
# the worker report) next to a bare NNG round trip measured in the same run. Prints markdown and
# RATIO lines (bench/run.sh collects them).
# Knobs (environment): ALORA_BENCH_DEVICE=cpu|cuda (base.device; the workers follow the base),
# ALORA_BENCH_PRESET (make-model preset, default 85m), ALORA_BENCH_DTYPE (f32|bf16),
# ALORA_BENCH_CTX (contexts, default 253,1021,2037), ALORA_BENCH_KV (base KV blocks),
# ALORA_BENCH_REPS (repetitions per point, default 5), ALORA_BENCH_PEER (llama-server side: 1 = when
# ../shared/peer exists (default), 0 = skip), ALORA_BENCH_DIR (work folder, default build/bench-cluster),
# ALORA_BENCH_LEASE_HOLD_MS (router.lease_hold_ms, default 2000; 0 = a BASE_LEASE round trip per call),
# ALORA_BENCH_WEIGHTS (base.weights: auto (default) | f32 | bf16 | int8; with int8 llama-server runs the
# same weights quantized to Q8_0 by llama-quantize, and the RATIO names say "int8 vs Q8_0"),
# ALORA_BENCH_RPC_REPS (more cached calls at the first context for the RPC overhead median, default 40;
# the overhead is noisy on a loaded machine: the load average is printed beside it).
# Where a call's time goes, stage by stage: bench/cluster_stages.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
ALORA="$BUILD/alora"
DEVICE=${ALORA_BENCH_DEVICE:-cpu}
PRESET=${ALORA_BENCH_PRESET:-85m}
DTYPE=${ALORA_BENCH_DTYPE:-f32}
WEIGHTS=${ALORA_BENCH_WEIGHTS:-auto}
case $WEIGHTS in auto | f32 | bf16) LABEL= ;; int8) LABEL=", int8 vs Q8_0" ;;
  *) echo "cluster.sh: ALORA_BENCH_WEIGHTS must be auto, f32, bf16 or int8, not '$WEIGHTS'"; exit 2 ;; esac
CTX=${ALORA_BENCH_CTX:-253,1021,2037}
KV=${ALORA_BENCH_KV:-768}
W=${ALORA_BENCH_DIR:-build/bench-cluster}/$PRESET-$DTYPE
REPS=${ALORA_BENCH_REPS:-5}
RPC_REPS=${ALORA_BENCH_RPC_REPS:-40}
PEER_ON=${ALORA_BENCH_PEER:-1}
HOLD=${ALORA_BENCH_LEASE_HOLD_MS:-2000}
SHARED=${ALORA_SHARED:-../shared}
mkdir -p "$W"
W=$(readlink -f "$W") # ../shared/peer/setup.sh needs an absolute folder
# the worker's private pool must hold a whole plain-LoRA re-prefill of the longest context
MAXCTX=$(tr ',' '\n' <<<"$CTX" | sort -n | tail -1)
WKV=$(( (MAXCTX + 3 + 15) / 16 + 8 ))
[ -f "$W/model/config.json" ] || "$ALORA" make-model --arch llama --preset "$PRESET" --dtype "$DTYPE" --seed 7 \
  "$W/model" >/dev/null
[ -f "$W/certainty/adapter_config.json" ] || "$ALORA" make-adapter --model "$W/model" --targets q,k,v,o \
  --rank 8 --alpha 16 --invocation 500,501,502 --seed 3 "$W/certainty" >/dev/null
RUN=$(mktemp -d /tmp/alora-bench-XXXXXX)
cat >"$W/bench.cfg" <<CFG
run_dir = "$RUN";
log_level = "info";
base = { model = "$W/model"; kv_blocks = $KV; block_size = 16; max_batch_tokens = 512; threads = 1; device = "$DEVICE"; weights = "$WEIGHTS"; };
worker = { kv_blocks = $WKV; max_batch_tokens = 512; threads = 1; };
router = { request_timeout_ms = 300000; lease_hold_ms = $HOLD; };
intrinsics = ( { name = "certainty"; adapter = "$W/certainty"; replicas = 1; max_tokens = 1; } );
CFG
"$ALORA" up -c "$W/bench.cfg" --ready-file "$RUN/ready" >/dev/null 2>"$W/up.log" &
UP=$!
trap 'kill -TERM $UP 2>/dev/null || true; wait $UP 2>/dev/null || true; rm -rf "$RUN"' EXIT
for _ in $(seq 1 600); do [ -f "$RUN/ready" ] && break; sleep 0.1; done
[ -f "$RUN/ready" ] || { echo "cluster not ready"; tail -20 "$W/up.log"; exit 1; }

bare=$("$BUILD/bench_rpc" 2000 | grep -E '^\| ipc +\| bare nng req/rep, 64 B' | awk -F'|' '{gsub(/ /,"",$4); print $4}')
abytes=$(stat -c %s "$W"/certainty/*.safetensors | awk '{s+=$1} END {print s+0}')
echo "$PRESET preset ($DTYPE on disk, base.weights = $WEIGHTS), base.device = $DEVICE ($(grep -o 'arenas ([a-z ]*)' "$W/up.log" | head -1)),"
echo "1 BLAS thread per process on the CPU, 1 generated token, median of $REPS; context = conversation +"
echo "3 invocation tokens. Floor = weights + adapter + KV (f32) read once at the read bandwidth below, plus"
echo "the FLOPs of the 3 new tokens (projections + attention over the context) at the sgemm rate below."
echo
"$BUILD/bench_cluster" --router "ipc://$RUN/router.ipc" --intrinsic certainty --inv 500,501,502 \
  --ctx "$CTX" --reps "$REPS" --model "$W/model" --adapter-bytes "$abytes" --bare-us "$bare" --tsv "$W/alora-$WEIGHTS.tsv" \
  --weights "$WEIGHTS" --label "$LABEL" --ov-reps "$RPC_REPS"
echo
echo "Bare NNG req/rep round trip (ipc, 64 B, same run, bench_rpc): ${bare} µs mean. The critical path of a"
echo "call makes 3 round trips (client->router, router->base lease, router->worker), 2 when the router"
echo "reuses a lease it kept from an earlier call on the same prefix (router.lease_hold_ms); the unlease"
echo "goes to the base after the answer. Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)."
kill -TERM $UP 2>/dev/null || true
wait $UP 2>/dev/null || true

# llama-server's aLoRA TTFT on the same weights and adapter (1 thread), same contexts.
echo
PEER=$SHARED/peer
if [ "$PEER_ON" = 0 ]; then
  echo "llama-server aLoRA TTFT comparison skipped: ALORA_BENCH_PEER=0 (no RATIO line for it)"
  exit 0
fi
if [ ! -f "$PEER/setup.sh" ] || ! /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
  echo "llama-server aLoRA TTFT comparison skipped: $PEER or Debian's python3-numpy absent (no RATIO line for it)"
  exit 0
fi
[ -x "$W/peer/run.sh" ] || bash "$PEER/setup.sh" "$W/peer" >"$W/peer-setup.log" 2>&1 ||
  { echo "llama-server aLoRA TTFT comparison skipped: peer setup failed, $W/peer-setup.log (no RATIO line for it)"; exit 0; }
export PYTHONPATH="$W/peer/root/usr/lib/python3/dist-packages"
mkdir -p "$W/gguf"
if [ ! -f "$W/gguf/plain.gguf" ]; then
  rm -rf "$W/certainty-plain" && cp -r "$W/certainty" "$W/certainty-plain"
  /usr/bin/python3 -c 'import json,sys; p=sys.argv[1]; c=json.load(open(p)); c.pop("alora_invocation_tokens",None); json.dump(c,open(p,"w"))' \
    "$W/certainty-plain/adapter_config.json"
  { /usr/bin/python3 "$PEER/hf_to_gguf.py" model "$W/model" "$W/gguf/model.gguf" &&
    /usr/bin/python3 "$PEER/hf_to_gguf.py" adapter "$W/certainty" "$W/model" "$W/gguf/alora.gguf" &&
    /usr/bin/python3 "$PEER/hf_to_gguf.py" adapter "$W/certainty-plain" "$W/model" "$W/gguf/plain.gguf"; } \
    >"$W/gguf/convert.log" 2>&1 || { rm -f "$W/gguf/plain.gguf"; echo "llama-server aLoRA TTFT comparison skipped: GGUF conversion failed, $W/gguf/convert.log (no RATIO line for it)"; exit 0; }
fi
GGUF=$W/gguf/model.gguf
if [ "$WEIGHTS" = int8 ]; then
  [ -f "$W/gguf/model-q8_0.gguf" ] || "$W/peer/run.sh" llama-quantize "$GGUF" "$W/gguf/model-q8_0.gguf" Q8_0 \
    >"$W/gguf/quantize.log" 2>&1 || { echo "llama-server comparison skipped: llama-quantize failed, $W/gguf/quantize.log (no RATIO line for it)"; exit 0; }
  GGUF=$W/gguf/model-q8_0.gguf
fi
MAXN=$(( MAXCTX + 3 + 5 ))
if ! /usr/bin/python3 "$PEER/alora_ttft_bench.py" "$W/peer/run.sh llama-server" "$GGUF" "$W/gguf/alora.gguf" \
    "$W/gguf/plain.gguf" "$W/peer-$WEIGHTS.json" --ctx "$CTX" --reps "$REPS" --threads 1 --n-ctx $(( MAXN > 2048 ? MAXN : 2048 )) \
    --port $(( 18200 + $$ % 700 )) >"$W/peer.log" 2>&1; then
  echo "llama-server aLoRA TTFT comparison skipped: llama-server run failed, $W/peer.log (no RATIO line for it)"
  exit 0
fi
echo "llama-server (b11669, ../shared/peer) aLoRA TTFT, cached prefix, -t 1, $(basename "$GGUF"): client wall time of the same"
echo "conversation + invocation with n_predict 1 (median of $REPS), beside alora's client wall time above."
echo
/usr/bin/python3 - "$W/peer-$WEIGHTS.json" "$W/alora-$WEIGHTS.tsv" "$LABEL" <<'PY'
import json, sys
label = sys.argv[3]
peer = json.load(open(sys.argv[1]))["summary"]
ours = {}
for line in open(sys.argv[2]):
    n, ms = line.split()
    ours[int(n)] = float(ms)
print("| context | alora (ms) | llama-server (ms) | ratio |")
print("|--------:|-----------:|------------------:|------:|")
rows = []
for k, s in sorted(peer.items(), key=lambda kv: int(kv[0])):
    n = int(k) + 3
    if n not in ours or "alora" not in s:
        continue
    lw = s["alora"]["wall_ms"]["median"]
    rows.append((n, ours[n], lw, ours[n] / lw))
    print(f"| {n:7d} | {ours[n]:10.1f} | {lw:17.1f} | {ours[n] / lw:5.2f} |")
print()
for n, a, l, r in rows:
    print(f"RATIO intrinsic TTFT / llama-server aLoRA TTFT, {n} tokens, 1 thread{label}: {r:.2f} (target <= 0.25) "
          f"{'met' if r <= 0.25 else 'missed'}")
PY
