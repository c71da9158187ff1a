#!/usr/bin/env bash
# rag_load.sh: `make bench-rag`: the RAG workload (bench/rag_load.py) against (a) alora with aLoRA
# intrinsics, (b) alora with the same adapters as plain LoRAs (a second cluster whose adapter copies
# have no alora_invocation_tokens: the router leases nothing and the worker adapts from position 0,
# re-prefilling the whole prompt) and (c) llama-server (../shared/peer: the same weights and adapters
# converted to GGUF, --parallel slots), all three up at once and measured interleaved at each load
# N (the order rotates per N), then a markdown report and gnuplot plots (PNG and SVG).
# Knobs (environment): RAG_LOADS (default 1,2,4,8,16), RAG_DURATION (s per run, default 30), RAG_GRACE (s after it
# during which calls of turns in progress still start, default 15),
# RAG_TURNS (3), RAG_K (answer tokens, 16), RAG_LLAMA_THREADS (1), RAG_SYSTEMS (alora,alora-lora,
# llama-server), RAG_OUT (results dir, default $W/results), ALORA_BENCH_DIR (work dir, build/bench-rag),
# RAG_PEER (llama.cpp dir, default $W/peer), RAG_SHARED (default ../shared), RAG_WORKER_CFG (extra
# worker settings for both alora clusters, e.g. "max_batch = 1;" to run without batching).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
ALORA="$BUILD/alora"
BIN_DIR=$(dirname "$(readlink -f "$ALORA")")
W=${ALORA_BENCH_DIR:-build/bench-rag}
LOADS=${RAG_LOADS:-1,2,4,8,16}
DUR=${RAG_DURATION:-30}
GRACE=${RAG_GRACE:-15}
TURNS=${RAG_TURNS:-3}
K=${RAG_K:-16}
LT=${RAG_LLAMA_THREADS:-1}
SYSTEMS=${RAG_SYSTEMS:-alora,alora-lora,llama-server}
SHARED=${RAG_SHARED:-../shared}
OUT=${RAG_OUT:-$W/results}
MAXN=$(tr ',' '\n' <<<"$LOADS" | sort -n | tail -1)
for c in curl jq python3 gnuplot; do command -v $c >/dev/null || { echo "rag_load: needs $c (scripts/deps.sh)"; exit 1; }; done
mkdir -p "$W" "$OUT"
W=$(readlink -f "$W")
PEER=${RAG_PEER:-$W/peer} # absolute: ../shared/peer/setup.sh needs it
OUT=$(readlink -f "$OUT")

# ---- model and adapters (as scripts/run.sh makes them), plain-LoRA copies ----
declare -A INV=([certainty]=500,501,502 [answerability]=505,506 [query_rewrite]=507,508 [hallucination_detection]=509,510,511)
declare -A TGT=([certainty]=q,k,v,o [answerability]=q,v,up,down [query_rewrite]=q,v [hallucination_detection]=q,k,v,o)
declare -A SEED=([certainty]=3 [answerability]=4 [query_rewrite]=5 [hallucination_detection]=6)
NAMES=(certainty answerability query_rewrite hallucination_detection)
[ -f "$W/model/config.json" ] || "$ALORA" make-model --arch llama --preset 85m --seed 7 "$W/model" >/dev/null
for n in "${NAMES[@]}"; do
  [ -f "$W/$n/adapter_config.json" ] || "$ALORA" make-adapter --model "$W/model" --targets "${TGT[$n]}" --rank 8 \
    --alpha 16 --invocation "${INV[$n]}" --seed "${SEED[$n]}" "$W/$n" >/dev/null
  mkdir -p "$W/lora/$n"
  for f in "$W/$n"/*; do [ "$(basename "$f")" = adapter_config.json ] || ln -sf "$f" "$W/lora/$n/"; done
  jq 'del(.alora_invocation_tokens)' "$W/$n/adapter_config.json" >"$W/lora/$n/adapter_config.json"
done

# ---- llama.cpp and the GGUF conversions ----
RUN_LLAMA=
if [[ ,$SYSTEMS, == *,llama-server,* ]]; then
  [ -f "$SHARED/peer/setup.sh" ] || { echo "rag_load: $SHARED/peer missing (llama-server comparison)"; exit 1; }
  [ -x "$PEER/run.sh" ] || bash "$SHARED/peer/setup.sh" "$PEER" >"$W/peer-setup.log" 2>&1 ||
    { echo "rag_load: peer setup failed:"; tail -20 "$W/peer-setup.log"; exit 1; }
  export PYTHONPATH="$PEER/root/usr/lib/python3/dist-packages"
  [ -f "$W/gguf/model.gguf" ] || { mkdir -p "$W/gguf"; /usr/bin/python3 "$SHARED/peer/hf_to_gguf.py" model "$W/model" "$W/gguf/model.gguf" >"$W/gguf/convert.log" 2>&1; }
  for n in "${NAMES[@]}"; do
    [ -f "$W/gguf/$n.gguf" ] || /usr/bin/python3 "$SHARED/peer/hf_to_gguf.py" adapter "$W/$n" "$W/model" "$W/gguf/$n.gguf" >>"$W/gguf/convert.log" 2>&1
  done
  RUN_LLAMA=1
fi

source scripts/free_port.sh
RUN=$(mktemp -d /tmp/alora-rag-XXXXXX)
UPS=()
LLAMA_PID=
cleanup() {
  for p in "${UPS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${UPS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "$LLAMA_PID" ]; then kill -TERM "$LLAMA_PID" 2>/dev/null || true; wait "$LLAMA_PID" 2>/dev/null || true; fi
  rm -rf "$RUN"
}
trap cleanup EXIT

# cluster_cfg NAME ADAPTER_ROOT PORT: a local.cfg-like cluster (four intrinsics, six workers), own run dir.
cluster_cfg() {
  local d="$RUN/$1" r=$2
  mkdir -p "$d"
  cat >"$d.cfg" <<CFG
run_dir = "$d";
log_level = "warn";
base = { model = "$W/model"; kv_blocks = 1024; block_size = 16; max_batch_tokens = 512; threads = 1; lease_ttl_ms = 30000; };
worker = { kv_blocks = 512; max_batch_tokens = 512; threads = 1; heartbeat_ms = 500; ${RAG_WORKER_CFG:-} };
router = { max_queue = 256; worker_ttl_ms = 3000; request_timeout_ms = 600000; http = "http://127.0.0.1:$3";
           tokenizer = "$PWD/deploy/tokenizer"; model_name = "alora-85m"; };
up = { grace_ms = 5000; };
intrinsics = (
  { name = "certainty"; adapter = "$r/certainty"; replicas = 2; max_tokens = 4;
    parser = "certainty"; outputs = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]; },
  { name = "answerability"; adapter = "$r/answerability"; replicas = 2; max_tokens = 4;
    parser = "answerability"; outputs = ["answerable", "unanswerable"]; documents = "template"; },
  { name = "query_rewrite"; adapter = "$r/query_rewrite"; replicas = 1; max_tokens = 24;
    parser = "query_rewrite"; documents = "none"; },
  { name = "hallucination_detection"; adapter = "$r/hallucination_detection"; replicas = 1;
    max_tokens = 24; parser = "hallucination_detection"; }
);
CFG
}
declare -A URL
start_cluster() { # NAME ADAPTER_ROOT
  local port; port=$(free_port)
  cluster_cfg "$1" "$2" "$port"
  "$ALORA" up -c "$RUN/$1.cfg" --bin-dir "$BIN_DIR" --ready-file "$RUN/$1.ready" >"$W/$1.up.out" 2>"$W/$1.up.log" &
  UPS+=($!)
  for _ in $(seq 1 900); do [ -f "$RUN/$1.ready" ] && break; kill -0 "${UPS[-1]}" 2>/dev/null || break; sleep 0.1; done
  [ -f "$RUN/$1.ready" ] || { echo "rag_load: cluster $1 not ready:"; tail -20 "$W/$1.up.log"; exit 1; }
  URL[$1]="http://127.0.0.1:$port"
  "$ALORA" status --router "ipc://$RUN/$1/router.ipc" --json | jq -r '.processes[].pid' >"$RUN/$1.pids"
}
[[ ,$SYSTEMS, == *,alora,* ]] && start_cluster alora "$W"
[[ ,$SYSTEMS, == *,alora-lora,* ]] && start_cluster alora-lora "$W/lora"
# the intrinsic definitions as the router serves them (instruction, documents placement) for llama
INTR_FROM=${URL[alora]:-${URL[alora-lora]:-}}
[ -n "$INTR_FROM" ] || { echo "rag_load: llama-server needs one alora cluster for the intrinsic definitions"; exit 1; }
curl -sf "$INTR_FROM/v1/intrinsics" >"$OUT/intrinsics.json"

if [ -n "$RUN_LLAMA" ]; then
  LPORT=$(free_port)
  LORAS=$(printf "$W/gguf/%s.gguf," "${NAMES[@]}"); LORAS=${LORAS%,}
  # one slot per conversation of the largest load, a unified KV big enough for all of them
  "$PEER/run.sh" llama-server -m "$W/gguf/model.gguf" --lora "$LORAS" --lora-init-without-apply \
    -np "$MAXN" -kvu -c $((MAXN * 1024)) -t "$LT" -tb "$LT" --host 127.0.0.1 --port "$LPORT" --no-webui --metrics \
    >"$W/llama-server.log" 2>&1 &
  LLAMA_PID=$!
  for _ in $(seq 1 600); do
    [ "$(curl -s "http://127.0.0.1:$LPORT/health" | jq -r .status 2>/dev/null)" = ok ] && break
    kill -0 "$LLAMA_PID" 2>/dev/null || break; sleep 0.2
  done
  [ "$(curl -s "http://127.0.0.1:$LPORT/health" | jq -r .status 2>/dev/null)" = ok ] ||
    { echo "rag_load: llama-server not ready:"; tail -20 "$W/llama-server.log"; exit 1; }
  URL[llama-server]="http://127.0.0.1:$LPORT"
fi

echo "rag_load: alora ${URL[alora]:-} | alora-lora ${URL[alora-lora]:-} | llama-server ${URL[llama-server]:-} (-t $LT)"
echo "rag_load: loads $LOADS, $DUR s each, $TURNS turns per conversation, K=$K; machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
IFS=, read -r -a SYS <<<"$SYSTEMS"
rc=0
i=0
for n in ${LOADS//,/ }; do
  for j in "${!SYS[@]}"; do
    s=${SYS[$(( (i + j) % ${#SYS[@]} ))]}
    args=(run --label "$s" --url "${URL[$s]}" --clients "$n" --duration "$DUR" --grace "$GRACE" --turns "$TURNS" --answer-tokens "$K"
          --seed "$n" --out "$OUT/$s-$n.json")
    if [ "$s" = llama-server ]; then
      args+=(--system llama --intrinsics "$OUT/intrinsics.json" --tokenize "$ALORA tokenize --model deploy/tokenizer"
             --lora-names "$(IFS=,; echo "${NAMES[*]}")")
    else
      args+=(--system alora)
    fi
    python3 bench/rag_load.py "${args[@]}" || rc=1
  done
  i=$((i + 1))
done

python3 bench/rag_load.py report $(ls "$OUT"/*-[0-9]*.json) --md "$OUT/table.md" --dat "$OUT/dat" \
  --verdict "$OUT/verdict.json"
cat "$OUT/table.md"
bash bench/rag_load_plot.sh "$OUT/dat" "$OUT/rag-load"
echo "rag_load: plots $OUT/rag-load-*.png/.svg"

# ---- stop everything; nothing may be left ----
left=0
for p in "${UPS[@]}"; do kill -TERM "$p"; wait "$p" || { echo "rag_load: alora up $p exited $?"; left=1; }; done
for f in "$RUN"/*.pids; do
  for p in $(cat "$f"); do
    if kill -0 "$p" 2>/dev/null && grep -q alora- "/proc/$p/cmdline" 2>/dev/null; then echo "left: process $p"; left=1; fi
    if ls /dev/shm/alora-*-"$p"-* >/dev/null 2>&1; then echo "left: shm of $p"; left=1; fi
  done
done
[ -z "$(find "$RUN" -type s 2>/dev/null)" ] || { echo "left: sockets $(find "$RUN" -type s)"; left=1; }
UPS=()
if [ -n "$LLAMA_PID" ]; then kill -TERM "$LLAMA_PID"; wait "$LLAMA_PID" || true; kill -0 "$LLAMA_PID" 2>/dev/null && { echo "left: llama-server"; left=1; }; LLAMA_PID=; fi
[ $left -eq 0 ] && echo "rag_load: everything stopped cleanly (no process, socket or shm segment left)"
exit $((rc | left))
