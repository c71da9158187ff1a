#!/usr/bin/env bash
# run.sh: the main job (`make run`): makes a random 85m model and four aLoRA adapters, starts a local
# cluster (deploy/local.cfg: base + 4 intrinsics in 6 worker processes + router) under `alora up`,
# runs a multi-turn conversation through it, invokes intrinsics after every turn in aLoRA mode and
# in plain-LoRA mode, prints the latency table, makes one HTTP call, then stops the cluster with
# SIGTERM and checks that no process, socket or shm segment is left.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
ALORA="$BUILD/alora"
CFG=deploy/local.cfg
WORK=build/run                   # deploy/local.cfg points here
TURNS=${ALORA_RUN_TURNS:-5}
command -v jq >/dev/null || { echo "run.sh needs jq"; exit 1; }
mkdir -p "$WORK"

if [ ! -f "$WORK/model/config.json" ]; then
  echo "== making a random '85m' Llama model in $WORK/model"
  "$ALORA" make-model --arch llama --preset 85m --seed 7 "$WORK/model" >/dev/null
fi
if [ ! -f "$WORK/certainty/adapter_config.json" ]; then
  echo "== making aLoRA adapter 'certainty' (invocation 500,501,502)"
  "$ALORA" make-adapter --model "$WORK/model" --targets q,k,v,o --rank 8 --alpha 16 \
    --invocation 500,501,502 --seed 3 "$WORK/certainty" >/dev/null
fi
if [ ! -f "$WORK/answerability/adapter_config.json" ]; then
  echo "== making aLoRA adapter 'answerability' (invocation 505,506)"
  "$ALORA" make-adapter --model "$WORK/model" --targets q,v,up,down --rank 8 --alpha 16 \
    --invocation 505,506 --seed 4 "$WORK/answerability" >/dev/null
fi
if [ ! -f "$WORK/query_rewrite/adapter_config.json" ]; then
  echo "== making aLoRA adapter 'query_rewrite' (invocation 507,508)"
  "$ALORA" make-adapter --model "$WORK/model" --targets q,v --rank 8 --alpha 16 \
    --invocation 507,508 --seed 5 "$WORK/query_rewrite" >/dev/null
fi
if [ ! -f "$WORK/hallucination_detection/adapter_config.json" ]; then
  echo "== making aLoRA adapter 'hallucination_detection' (invocation 509,510,511)"
  "$ALORA" make-adapter --model "$WORK/model" --targets q,k,v,o --rank 8 --alpha 16 \
    --invocation 509,510,511 --seed 6 "$WORK/hallucination_detection" >/dev/null
fi
declare -A INV=([certainty]="500,501,502" [answerability]="505,506")

ROUTER=$(sed -n 's/^ *listen = "\(.*router.ipc\)".*/\1/p' "$CFG")
RUN_DIR=$(sed -n 's/^run_dir = "\([^"]*\)".*/\1/p' "$CFG")
READY="$WORK/ready"
rm -f "$READY"
echo "== alora up -c $CFG"
"$ALORA" up -c "$CFG" --ready-file "$READY" >"$WORK/up.out" 2>"$WORK/up.log" &
UP=$!
stop_cluster() {
  if kill -0 "$UP" 2>/dev/null; then
    kill -TERM "$UP"
    wait "$UP" || true
  fi
}
trap stop_cluster EXIT
for _ in $(seq 1 600); do
  [ -f "$READY" ] && break
  kill -0 "$UP" 2>/dev/null || { echo "alora up exited early:"; tail -30 "$WORK/up.log"; exit 1; }
  sleep 0.1
done
[ -f "$READY" ] || { echo "cluster not ready after 60 s:"; tail -30 "$WORK/up.log"; exit 1; }
cat "$WORK/up.out"
echo
"$ALORA" status --router "$ROUTER"
PIDS=$("$ALORA" status --router "$ROUTER" --json | jq -r '.processes[].pid' | tr '\n' ' ')

# A deterministic "conversation": each turn a user message then an assistant answer (token ids
# 10..489, so never an invocation token).
turn_tokens() { # turn n len
  awk -v t="$1" -v n="$2" 'BEGIN { for (i = 0; i < n; i++) printf "%s%d", (i ? "," : ""), 10 + (i * 37 + t * 101 + i * i) % 480 }'
}
invoke() { # intrinsic mode tokens
  "$ALORA" invoke --router "$ROUTER" --intrinsic "$1" --mode "$2" --tokens "$3" --max-tokens 4 --ignore-eos --json
}

convo=$(turn_tokens 0 48)        # system prompt
rows=()
for t in $(seq 1 "$TURNS"); do
  convo="$convo,$(turn_tokens $((t * 2)) 96)"          # user
  n=$(tr ',' '\n' <<<"$convo" | wc -l)
  for intr in certainty answerability; do
    req="$convo,${INV[$intr]}"
    a=$(invoke "$intr" alora "$req")
    l=$(invoke "$intr" lora "$req")
    [ "$(jq -c .tokens <<<"$a")" != "" ] || exit 1
    rows+=("$(jq -r --argjson t "$t" --argjson n "$n" --arg i "$intr" --argjson l "$l" -n --argjson a "$a" \
      '[$t, $n, $i, $a.timings.ttft_ms, $a.timings.total_ms, $a.computed_tokens, $a.prefix_cached_tokens,
        $l.timings.ttft_ms, $l.timings.total_ms, $l.computed_tokens, $l.prefix_cached_tokens,
        ($l.timings.ttft_ms / $a.timings.ttft_ms)] | @tsv')")
  done
  convo="$convo,$(turn_tokens $((t * 2 + 1)) 64)"      # assistant
done

echo
echo "== intrinsic latency through the cluster: aLoRA (reuses the base KV) vs plain LoRA (re-prefills)"
echo "   (the first intrinsic of a turn also pays the base prefill of that turn's new tokens)"
echo
printf "| turn | context | intrinsic     | aLoRA ttft ms | aLoRA total ms | aLoRA computed | aLoRA cached | LoRA ttft ms | LoRA total ms | LoRA computed | LoRA cached | ttft speedup |\n"
printf "|-----:|--------:|---------------|--------------:|---------------:|---------------:|-------------:|-------------:|--------------:|--------------:|------------:|-------------:|\n"
for r in "${rows[@]}"; do
  IFS=$'\t' read -r t n i at atot ac acach lt ltot lc lcach sp <<<"$r"
  printf "| %4s | %7s | %-13s | %13.1f | %14.1f | %14s | %12s | %12.1f | %13.1f | %13s | %11s | %11.1fx |\n" \
    "$t" "$n" "$i" "$at" "$atot" "$ac" "$acach" "$lt" "$ltot" "$lc" "$lcach" "$sp"
done
echo
"$ALORA" status --router "$ROUTER"

echo
HTTP=$(sed -n 's/^ *http = "\([^"]*\)".*/\1/p' "$CFG")
if [ -n "$HTTP" ] && command -v curl >/dev/null; then
  echo "== the HTTP API ($HTTP, docs/http.md): an OpenAI chat completion with model = an intrinsic"
  curl -s "$HTTP/v1/chat/completions" -H 'Content-Type: application/json' -d '{"model": "certainty",
    "messages": [{"role": "user", "content": "What is the capital of France?"},
                 {"role": "assistant", "content": "Paris."}]}' |
    jq -c '{model, usage, intrinsic: (.intrinsic | {result, activation_start, prefix_cached_tokens, computed_tokens})}' || true
  echo
fi
echo "== stopping the cluster (SIGTERM)"
trap - EXIT
kill -TERM "$UP"
rc=0
wait "$UP" || rc=$?
tail -3 "$WORK/up.log"
left=0
for p in $PIDS; do
  if kill -0 "$p" 2>/dev/null && grep -q alora- "/proc/$p/cmdline" 2>/dev/null; then echo "left: process $p"; left=1; fi
  if ls /dev/shm/alora-*-"$p"-* >/dev/null 2>&1; then echo "left: shm $(ls /dev/shm/alora-*-"$p"-*)"; left=1; fi
done
if [ -d "$RUN_DIR" ] && [ -n "$(find "$RUN_DIR" -type s 2>/dev/null)" ]; then echo "left: sockets in $RUN_DIR"; left=1; fi
if [ $rc -ne 0 ] || [ $left -ne 0 ]; then
  echo "== cluster did not stop cleanly (alora up exit $rc)"
  exit 1
fi
echo "== cluster stopped cleanly: no process, socket or shm segment left (full log: $WORK/up.log)"
