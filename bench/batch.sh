#!/usr/bin/env bash
# batch.sh: intrinsic calls/s on ONE worker with N concurrent clients (bench_batch), the worker
# batching concurrent calls into shared forward steps (worker.max_batch = 8, batch_rows = 8: the
# default) vs not (max_batch = 1), and batching with no row limit (batch_rows = 0: steps above 8 rows
# go to sgemm): three clusters up at once on the same weights, measured in rotation in the same run;
# prints the worker's step counters (mean calls and rows per step) and a RATIO line. Then the base:
# new conversations (no cached prefix: the base prefills BATCH_CTX tokens per call) from 8
# concurrent clients vs 1 client, the same calls: the base's step counters show whether prefills of
# different conversations share steps (BATCH_BASE=0 skips it); then the engine alone
# (bench_prefill_batch: base prefills and worker calls, together vs one at a time; BATCH_ENGINE=0
# skips it).
# Knobs (environment): BATCH_REPS (alternating repetitions, default 3; the median counts),
# BATCH_CLIENTS (8), BATCH_CALLS (calls per client per repetition, 6), BATCH_CTX (conversation
# tokens, 256), BATCH_MAX_TOKENS (generated tokens per call, 4), ALORA_BENCH_PRESET (85m),
# ALORA_BENCH_DIR (build/bench-batch), BATCH_THREADS (BLAS threads of base and worker, 1).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
ALORA="$BUILD/alora"
PRESET=${ALORA_BENCH_PRESET:-85m}
REPS=${BATCH_REPS:-3}
CLIENTS=${BATCH_CLIENTS:-8}
CALLS=${BATCH_CALLS:-6}
CTX=${BATCH_CTX:-256}
MT=${BATCH_MAX_TOKENS:-4}
TH=${BATCH_THREADS:-1}
W=${ALORA_BENCH_DIR:-build/bench-batch}/$PRESET
mkdir -p "$W"
[ -f "$W/model/config.json" ] || "$ALORA" make-model --arch llama --preset "$PRESET" --seed 7 "$W/model" >/dev/null
[ -f "$W/answerability/adapter_config.json" ] || "$ALORA" make-adapter --model "$W/model" --targets q,v,up,down \
  --rank 8 --alpha 16 --invocation 505,506 --seed 4 "$W/answerability" >/dev/null
RUN=$(mktemp -d /tmp/alora-bench-batch-XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$RUN"
}
trap cleanup EXIT
MODES=(on stack off)
for mode in "${MODES[@]}"; do
  mb=$([ $mode = off ] && echo 1 || echo 8)
  br=$([ $mode = stack ] && echo 0 || echo 8)
  cat >"$W/$mode.cfg" <<CFG
run_dir = "$RUN/$mode";
log_level = "warn";
base = { model = "$W/model"; kv_blocks = 1024; block_size = 16; max_batch_tokens = 512; threads = $TH; };
worker = { kv_blocks = 256; max_batch_tokens = 256; max_batch = $mb; batch_rows = $br; threads = $TH; };
router = { request_timeout_ms = 600000; max_queue = 256; };
intrinsics = ( { name = "answerability"; adapter = "$W/answerability"; replicas = 1; capacity = 8; max_tokens = $MT; } );
CFG
  "$ALORA" up -c "$W/$mode.cfg" --ready-file "$RUN/ready-$mode" >/dev/null 2>"$W/up-$mode.log" &
  PIDS+=($!)
done
for mode in "${MODES[@]}"; do
  for _ in $(seq 1 900); do [ -f "$RUN/ready-$mode" ] && break; sleep 0.1; done
  [ -f "$RUN/ready-$mode" ] || { echo "batch: cluster '$mode' not ready"; tail -20 "$W/up-$mode.log"; exit 1; }
done

run() { # run MODE [bench_batch options] -> calls/s
  local m=$1; shift
  "$BUILD/bench_batch" --router "ipc://$RUN/$m/router.ipc" --intrinsic answerability --inv 505,506 \
    --clients "$CLIENTS" --calls "$CALLS" --ctx "$CTX" --max-tokens "$MT" "$@" | tee -a "$W/runs-$m.txt" |
    sed -n 's/.*calls_per_s \([0-9.]*\).*/\1/p'
}
base_stats() { # base_stats MODE -> "steps shared_steps step_seqs step_rows"
  "$ALORA" status --base "ipc://$RUN/$1/base.ipc" --json | jq -r '"\(.steps) \(.shared_steps) \(.step_seqs) \(.step_rows)"'
}
worker_stats() { # worker_stats MODE -> "steps shared_steps step_calls step_rows"
  "$ALORA" status --router "ipc://$RUN/$1/router.ipc" --json |
    jq -r '.processes[] | select(.role == "worker") | "\(.steps) \(.shared_steps) \(.step_calls) \(.step_rows)"'
}
median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

for mode in "${MODES[@]}"; do : >"$W/runs-$mode.txt"; done
echo "$PRESET preset (f32), one worker (capacity 8), $CLIENTS closed-loop clients, one conversation of $CTX"
echo "tokens each (cached at the base), $MT generated tokens per call, $TH BLAS thread(s) per process;"
echo "$REPS repetitions of $CALLS calls per client, the three workers in rotation; median calls/s."
echo
declare -A RES
for r in $(seq 1 "$REPS"); do
  for i in 0 1 2; do
    mode=${MODES[$(( (i + r) % 3 ))]}
    v=$(run "$mode")
    [ -n "$v" ] || { echo "batch: a run failed ($mode)"; exit 1; }
    RES[$mode]="${RES[$mode]:-} $v"
  done
done
echo "| worker | calls/s (runs) | median | forward steps | shared steps | calls per step | rows per step | worker batch per call |"
echo "|--|--|--:|--:|--:|--:|--:|--:|"
declare -A MED
for mode in "${MODES[@]}"; do
  MED[$mode]=$(tr ' ' '\n' <<<"${RES[$mode]}" | grep . | median)
  read -r s sh c rw <<<"$(worker_stats "$mode")"
  wb=$(sed -n 's/.*worker_batch \([0-9.]*\).*/\1/p' "$W/runs-$mode.txt" | median)
  case $mode in on) d="max_batch 8, batch_rows 8 (default)";; stack) d="max_batch 8, batch_rows 0";; off) d="max_batch 1 (off)";; esac
  printf '| %s | %s | %.2f | %d | %d | %.2f | %.1f | %s |\n' "$d" "${RES[$mode]# }" "${MED[$mode]}" "$s" "$sh" \
    "$(echo "$c / $s" | bc -l)" "$(echo "$rw / $s" | bc -l)" "$wb"
done
echo
ratio=$(echo "${MED[on]} / ${MED[off]}" | bc -l)
met=$(echo "$ratio >= 2.0" | bc -l)
printf 'RATIO intrinsic calls/s on one worker, %d clients, batched / batching off: %.2f (target >= 2.00) %s\n' \
  "$CLIENTS" "$ratio" "$([ "$met" = 1 ] && echo met || echo missed)"

[ "${BATCH_BASE:-1}" = 1 ] || exit 0
echo
echo "base: new conversations of $CTX tokens (the base prefills each; base.max_batch_tokens 512), 1 generated"
echo "token, $((CLIENTS * 2)) calls from $CLIENTS concurrent clients vs the same calls from 1 client:"
echo
echo "| clients | calls/s | base steps | shared steps | sequences per step | rows per step |"
echo "|--:|--:|--:|--:|--:|--:|"
seed=0
for nc in "$CLIENTS" 1 1 "$CLIENTS"; do
  read -r s0 sh0 q0 r0 <<<"$(base_stats on)"
  seed=$((seed + 1))
  v=$(run on --cold 1 --max-tokens 1 --clients "$nc" --calls $((CLIENTS * 2 / nc)) --seed $seed)
  read -r s1 sh1 q1 r1 <<<"$(base_stats on)"
  [ -n "$v" ] || { echo "batch: a base run failed"; exit 1; }
  ds=$((s1 - s0))
  printf '| %d | %.2f | %d | %d | %.2f | %.1f |\n' "$nc" "$v" "$ds" $((sh1 - sh0)) "$(echo "($q1 - $q0) / $ds" | bc -l)" \
    "$(echo "($r1 - $r0) / $ds" | bc -l)"
done
echo "(every call and each client's warm-up call prefills a new conversation; the order alternates)"
[ "${BATCH_ENGINE:-1}" = 1 ] || exit 0
echo
echo "engine alone (bench_prefill_batch): the same, without RPC"
echo
"$BUILD/bench_prefill_batch" 1 "$CLIENTS" "$CTX"
