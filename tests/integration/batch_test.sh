#!/usr/bin/env bash
# batch_test.sh: a worker batches concurrent intrinsic calls, end to end under `alora up` (one
# intrinsic, one replica, capacity 8, worker.max_batch 8, worker.batch_rows 8):
#  1. 8 concurrent `alora invoke` calls (different conversations, each leased from the base) give
#     exactly the tokens, activation starts and top logprobs the same calls give one at a time
#     (bitwise: batch_rows = 8 keeps shared steps in the few-row kernel, tests/engine/batch_test.c),
#     and they shared steps: the worker's step counters in `alora status --json` (shared_steps,
#     step_calls / steps > 1) and each reply's timings.batch_size > 1;
#  2. one call of a batch that fails in the worker (more KV than its private pool) fails alone,
#     naming the problem; the others still give the sequential answers;
#  3. clients killed mid-batch leave no lease held at the base and no call active at the worker;
#  4. with worker.max_batch = 1 nothing is shared and the answers are the same again.
# Then the cluster stops cleanly (no process, socket or shm left).
TMP_TAG=batch
source "$(dirname "$0")/lib.sh"

"$ALORA" make-model --arch llama --preset small --seed 21 "$T/model" >/dev/null || exit 1
"$ALORA" make-adapter --model "$T/model" --targets q,k,v,o,up --rank 8 --alpha 16 --invocation 600,601,602 \
  --seed 5 "$T/cert" >/dev/null || exit 1

write_cfg() { # write_cfg NAME MAX_BATCH
  cat >"$T/$1.cfg" <<CFG
run_dir = "$T/run-$1";
base = { model = "$T/model"; kv_blocks = 1024; block_size = 16; threads = 1; };
worker = { kv_blocks = 112; max_batch = $2; batch_rows = 8; threads = 1; heartbeat_ms = 200; };
router = { max_queue = 64; request_timeout_ms = 600000; };
intrinsics = ( { name = "cert"; adapter = "$T/cert"; replicas = 1; capacity = 8; max_tokens = 4; } );
CFG
}
N=8
# conversation k: 40 tokens of its own, then the invocation
conv() { for i in $(seq 1 40); do echo $(( 10 + (i * 37 + $1 * 101 + i * i * ($1 + 2)) % 580 )); done | paste -sd,; }
for k in $(seq 1 $N); do CONV[$k]="$(conv "$k"),600,601,602"; done
inv() { # inv K MAX_TOKENS OUTFILE [extra args]: one call on conversation K (JSON reply, rc in OUTFILE.rc)
  local k=$1 mt=$2 out=$3; shift 3
  "$ALORA" invoke --router "$R" --intrinsic cert --tokens "${CONV[$k]}" --max-tokens "$mt" --ignore-eos \
    --top-logprobs 3 --timeout 600000 --json "$@" >"$out" 2>"$out.err"
  echo $? >"$out.rc"
}
answer() { jq -c '{tokens, activation_start, top_logprobs}' "$1" 2>/dev/null; }
worker_stat() { "$ALORA" status --router "$R" --json | jq -r ".processes[] | select(.role == \"worker\") | .$1"; }
base_stat() { "$ALORA" status --router "$R" --json | jq -r ".processes[] | select(.role == \"base\") | .$1"; }

write_cfg on 8
R="ipc://$T/run-on/router.ipc"
start_up on || { fail "cluster did not start"; exit 1; }

# calibration: generated tokens for a call of ~1 s alone, so that 8 calls started together overlap
# whatever the machine's speed (an ASan build on a loaded machine is far slower than a quiet one)
t0=$(date +%s%N)
inv 1 64 "$T/cal"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$(cat "$T/cal.rc")" = 0 ] || { fail "calibration call failed: $(cat "$T/cal.err")"; exit 1; }
MT=$(( 64 * 1000 / (ms > 1 ? ms : 1) ))
MT=$(( MT < 16 ? 16 : MT > 200 ? 200 : MT )) # 8 calls x (3 + 200) tokens fit the worker's 112 blocks
echo "calibration: 64 tokens in $ms ms -> $MT generated tokens per call"

# every conversation's prefix computed by the base once, alone (the answers below all read the same
# cached KV: a prefix computed in another batch at the base could differ in the last bits)
warm() { for k in $(seq 1 $N); do inv "$k" 1 "$T/warm$k"; done; }
warm

# ---- sequential reference (each call alone) ----
for k in $(seq 1 $N); do inv "$k" "$MT" "$T/seq$k"; done
okseq=1
for k in $(seq 1 $N); do
  [ "$(cat "$T/seq$k.rc")" = 0 ] || { okseq=0; echo "sequential call $k: $(cat "$T/seq$k.err")"; }
  [ "$(jq '.timings.batch_size' "$T/seq$k")" = 1 ] || okseq=0
done
check "sequential calls succeed, each alone in its steps (batch_size 1)" [ $okseq = 1 ]
s0=$(worker_stat shared_steps)

# ---- 1. concurrent: the same answers, shared steps ----
P=()
for k in $(seq 1 $N); do inv "$k" "$MT" "$T/par$k" & P+=($!); done
BG+=("${P[@]}")
wait "${P[@]}" # (not a bare wait: alora up runs in the background too)
same=1 shared=0
for k in $(seq 1 $N); do
  [ "$(cat "$T/par$k.rc")" = 0 ] || { same=0; echo "concurrent call $k: $(cat "$T/par$k.err")"; continue; }
  [ "$(answer "$T/par$k")" = "$(answer "$T/seq$k")" ] || { same=0; echo "call $k differs"; }
  [ "$(jq '.timings.batch_size' "$T/par$k")" -gt 1 ] && shared=$((shared + 1))
done
check "$N concurrent calls give exactly the sequential answers (tokens, activation start, top logprobs)" [ $same = 1 ]
check "concurrent calls ran in shared steps ($shared of $N report timings.batch_size > 1)" [ $shared -ge 2 ]
steps=$(worker_stat steps) s1=$(worker_stat shared_steps) calls=$(worker_stat step_calls) rows=$(worker_stat step_rows)
echo "worker: $steps steps, $s1 shared, $calls calls and $rows rows summed over them"
check "the worker's status counts shared steps ($s0 -> $s1)" [ "$s1" -gt "$s0" ]
check "calls per step > 1 over the run ($calls / $steps)" [ "$calls" -gt "$steps" ]

# ---- 2. an error in one call of a batch fails that call alone ----
P=()
for k in $(seq 1 $N); do
  if [ "$k" = 4 ]; then inv "$k" 1900 "$T/err$k" & else inv "$k" "$MT" "$T/err$k" & fi
  P+=($!)
done
BG+=("${P[@]}")
wait "${P[@]}"
others=1
for k in $(seq 1 $N); do
  [ "$k" = 4 ] && continue
  [ "$(cat "$T/err$k.rc")" = 0 ] && [ "$(answer "$T/err$k")" = "$(answer "$T/seq$k")" ] || { others=0; echo "call $k: $(cat "$T/err$k.err")"; }
done
check "the oversized call fails (rc $(cat "$T/err4.rc"))" [ "$(cat "$T/err4.rc")" != 0 ]
check "its error names the problem: $(head -c 200 "$T/err4.err")" grep -q "KV" "$T/err4.err"
check "the other $((N - 1)) calls of the batch give the sequential answers" [ $others = 1 ]

# ---- 3. clients that disappear mid-batch leave no lease and no active call ----
pids=()
for k in $(seq 1 $N); do
  "$ALORA" invoke --router "$R" --intrinsic cert --tokens "${CONV[$k]}" --max-tokens "$MT" --ignore-eos \
    --top-logprobs 3 --timeout 600000 --json >"$T/gone$k" 2>"$T/gone$k.err" &
  pids+=($!)
  BG+=($!)
done
sleep 0.3
for k in 2 5 7; do kill -KILL "${pids[$((k - 1))]}" 2>/dev/null; done
for k in $(seq 1 $N); do wait "${pids[$((k - 1))]}"; echo $? >"$T/gone$k.rc"; done
idle=0
for _ in $(seq 1 600); do
  [ "$(base_stat leases_held)" = 0 ] && [ "$(worker_stat active)" = 0 ] && { idle=1; break; }
  sleep 0.1
done
check "after clients vanished mid-batch: no lease held at the base, nothing active at the worker" [ $idle = 1 ]
survivors=1
for k in 1 3 4 6 8; do
  [ "$(cat "$T/gone$k.rc")" = 0 ] && [ "$(answer "$T/gone$k")" = "$(answer "$T/seq$k")" ] || survivors=0
done
check "the remaining calls still give the sequential answers" [ $survivors = 1 ]
inv 1 4 "$T/after"
check "the worker serves after that" [ "$(cat "$T/after.rc")" = 0 ]
stop_up on

# ---- 4. batching off (worker.max_batch = 1): nothing shared, the same answers ----
write_cfg off 1
R="ipc://$T/run-off/router.ipc"
start_up off || { fail "cluster (max_batch 1) did not start"; exit 1; }
warm
P=()
for k in $(seq 1 $N); do inv "$k" "$MT" "$T/off$k" & P+=($!); done
BG+=("${P[@]}")
wait "${P[@]}"
same=1
for k in $(seq 1 $N); do
  [ "$(cat "$T/off$k.rc")" = 0 ] && [ "$(answer "$T/off$k")" = "$(answer "$T/seq$k")" ] || same=0
  [ "$(jq '.timings.batch_size' "$T/off$k")" = 1 ] || same=0
done
check "max_batch 1: concurrent calls run one at a time (batch_size 1) with the same answers" [ $same = 1 ]
check "max_batch 1: no shared step" [ "$(worker_stat shared_steps)" = 0 ]
stop_up off

[ $FAILS -eq 0 ] && echo "batch: all ok" || { echo "batch: $FAILS failure(s)"; exit 1; }
