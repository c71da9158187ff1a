#!/usr/bin/env bash
# cluster_test.sh: `alora up` + router + base + workers end to end, with a tiny model and two aLoRA
# adapters made in a temp dir (and a Granite bf16 GQA model for the tcp run): parity of `alora invoke` with the single-process `alora generate`
# (ipc:// and tcp://), prefix-cache reuse, kill -9 of a worker and of the base, clean shutdown.
source "$(dirname "$0")/lib.sh"

"$ALORA" make-model --arch llama --preset tiny --seed 11 "$T/model" >/dev/null || exit 1
"$ALORA" make-adapter --model "$T/model" --targets q,k,v,o --rank 8 --alpha 16 --invocation 50,51,52 \
  --seed 3 "$T/cert" >/dev/null || exit 1
"$ALORA" make-adapter --model "$T/model" --targets q,v,up,down --rank 4 --alpha 8 --invocation 60,61 \
  --seed 4 "$T/ans" >/dev/null || exit 1
# a second architecture for the tcp run: Granite (multipliers), GQA, bf16 weights
"$ALORA" make-model --arch granite --preset tiny --dtype bf16 --seed 12 "$T/gmodel" >/dev/null || exit 1
"$ALORA" make-adapter --model "$T/gmodel" --targets q,k,v,o,gate,up,down --rank 4 --alpha 8 --rslora \
  --invocation 50,51,52 --seed 5 "$T/gcert" >/dev/null || exit 1
"$ALORA" make-adapter --model "$T/gmodel" --targets k,o --rank 8 --alpha 4 --invocation 60,61 \
  --seed 6 "$T/gans" >/dev/null || exit 1
MODEL="$T/model" CERT="$T/cert" ANS="$T/ans"

# write_cfg NAME BASE_URL ROUTER_URL
write_cfg() {
  cat >"$T/$1.cfg" <<CFG
run_dir = "$T/run-$1";
base = { model = "$MODEL"; listen = "$2"; kv_blocks = 256; block_size = 16; threads = 1; };
worker = { kv_blocks = 64; heartbeat_ms = 200; };
router = { listen = "$3"; max_queue = 16; worker_ttl_ms = 1500; request_timeout_ms = 20000; };
up = { grace_ms = 5000; backoff_min_ms = 100; backoff_max_ms = 2000; };
intrinsics = (
  { name = "certainty"; adapter = "$CERT"; replicas = 2; max_tokens = 4; },
  { name = "answerability"; adapter = "$ANS"; replicas = 2; max_tokens = 4; }
);
CFG
}


# parity INTRINSIC ADAPTER TOKENS: the cluster returns exactly what the single-process engine
# computes. Tokens and activation_start must equal `alora generate`; logprobs must be bitwise equal
# to `alora generate` either with its default prefill or split at the same position as the cluster
# (the base prefills [0, p), the worker the rest): the engine's float results depend (in the last
# bits) on how a prompt is chunked, so that split is the exact single-process equivalent.
# Each call gets a fresh first token (unless NOUNIQ=1) so that no prefix is in the base's cache
# from an earlier case: the base then prefills exactly [0, p) in one chunk.
PCOUNT=0
# first_diff A B: the first differing entry of two top_logprobs arrays ([token][rank] {id, logprob})
first_diff() {
  jq -rn --argjson a "$1" --argjson b "$2" '[range(0; [($a | length), ($b | length)] | max) as $i
    | range(0; [($a[$i] // [] | length), ($b[$i] // [] | length)] | max) as $j
    | select($a[$i][$j] != $b[$i][$j])
    | "first difference at token \($i), rank \($j): \($a[$i][$j] | tojson) vs \($b[$i][$j] | tojson)"] | first // "none"'
}
parity() {
  local intr=$1 ad=$2 toks=$3
  if [ "${NOUNIQ:-0}" != 1 ]; then toks="$((100 + PCOUNT)),$toks"; PCOUNT=$((PCOUNT + 1)); fi
  local a b
  a=$("$ALORA" invoke --router "$R" --intrinsic "$intr" --tokens "$toks" --max-tokens 4 --top-logprobs 3 --json) ||
    { fail "invoke $intr failed"; return; }
  b=$("$ALORA" generate --model "$MODEL" --adapter "$ad" --tokens "$toks" --max-tokens 4 --top-logprobs 3 --json) ||
    { fail "generate failed"; return; }
  local n s p ja jb jc how
  n=$(tr ',' '\n' <<<"$toks" | wc -l)
  s=$(jq -r .activation_start <<<"$a")
  ja=$(jq -c '{tokens, activation_start}' <<<"$a")
  jb=$(jq -c '{tokens, activation_start}' <<<"$b")
  if [ "$ja" != "$jb" ]; then
    fail "parity $intr tokens=$toks"; echo "  cluster: $ja"; echo "  engine:  $jb"; return
  fi
  ja=$(jq -c .top_logprobs <<<"$a")
  jb=$(jq -c .top_logprobs <<<"$b")
  how="bitwise"
  if [ "$ja" != "$jb" ]; then
    if [ "$s" == "null" ]; then p=$((n - 1)); else p=$s; fi
    jc=$("$ALORA" generate --model "$MODEL" --adapter "$ad" --tokens "$toks" --max-tokens 4 --top-logprobs 3 \
      --json --chunk "$p" | jq -c .top_logprobs)
    if [ "$ja" == "$jc" ]; then
      how="bitwise with the prefill split at $p"
    else
      fail "parity $intr logprobs, tokens=$toks"
      echo "  cluster vs engine: $(first_diff "$ja" "$jb")"
      echo "  cluster vs engine with the prefill split at $p: $(first_diff "$ja" "$jc")"; return
    fi
  fi
  ok "parity $intr (activation_start $s, n=$n): tokens equal, logprobs $how"
}

convo=$(seq -s, 3 2 90)     # 44 tokens, no invocation inside
run_parity() {
  parity certainty "$CERT" "$convo,50,51,52,7,8"                 # invocation then more prompt
  parity certainty "$CERT" "$convo,50,51,52"                     # invocation at the end
  NOUNIQ=1 parity certainty "$CERT" "50,51,52,$convo"            # invocation at position 0
  parity certainty "$CERT" "$convo,50,51,52,9,50,51,52,4"        # last occurrence wins
  parity certainty "$CERT" "$convo,50,51,9"                      # no match: base everywhere
  parity certainty "$CERT" "5"                                   # one token, no match
  parity answerability "$ANS" "$convo,60,61,12,13"               # second adapter
  parity answerability "$ANS" "$(seq -s, 1 1 70),60,60,61"      # overlapping match, past a block edge
}

# ---------------------------------------------------------------- ipc
write_cfg ipc "ipc://$T/run-ipc/base.ipc" "ipc://$T/run-ipc/router.ipc"
R="ipc://$T/run-ipc/router.ipc"
start_up ipc || { fail "ipc cluster did not become ready"; exit 1; }
ok "ipc cluster ready: $(cat "$T/ipc.out")"
run_parity

# prefix cache: a second call of the same conversation reuses the base KV up to the activation start
toks="$convo,$(seq -s, 100 1 140),50,51,52,33,34"
n=$(tr ',' '\n' <<<"$toks" | wc -l)
"$ALORA" invoke --router "$R" --intrinsic certainty --tokens "$toks" --max-tokens 4 --ignore-eos --json >/dev/null
out=$("$ALORA" invoke --router "$R" --intrinsic certainty --tokens "$toks" --max-tokens 4 --ignore-eos --json)
s=$(jq .activation_start <<<"$out"); cached=$(jq .prefix_cached_tokens <<<"$out")
comp=$(jq .computed_tokens <<<"$out"); ngen=$(jq '.tokens | length' <<<"$out")
# the worker computes the rest of the prompt and every generated token but the last
if [ "$cached" == "$s" ] && [ "$comp" -eq $((n - s + ngen - 1)) ]; then
  ok "second invoke: prefix_cached_tokens $cached == activation start, computed_tokens $comp == $((n - s)) + $((ngen - 1))"
else
  fail "second invoke: activation_start $s prefix_cached_tokens $cached computed_tokens $comp (n=$n, gen=$ngen)"
fi
lora=$("$ALORA" invoke --router "$R" --intrinsic certainty --tokens "$toks" --max-tokens 4 --mode lora --json)
[ "$(jq .computed_tokens <<<"$lora")" -ge "$n" ] && [ "$(jq .prefix_cached_tokens <<<"$lora")" -eq 0 ] &&
  ok "mode lora recomputes everything ($(jq .computed_tokens <<<"$lora") tokens)" || fail "mode lora: $lora"

# errors name the field, exit 1
err=$("$ALORA" invoke --router "$R" --intrinsic nope --tokens 1,2 2>&1) && fail "unknown intrinsic accepted"
grep -q "not_found.*intrinsic" <<<"$err" && ok "unknown intrinsic: $err" || fail "unknown intrinsic: $err"
err=$("$ALORA" invoke --router "$R" --intrinsic certainty --tokens 1,-2 2>&1) && fail "bad token accepted"
grep -q "tokens\[1\]" <<<"$err" && ok "bad token: $err" || fail "bad token: $err"

st=$("$ALORA" status --router "$R" --json)
nw=$(jq '[.processes[] | select(.role == "worker" and .health == "ok")] | length' <<<"$st")
[ "$nw" -eq 4 ] && ok "status: 4 healthy workers, base kv free $(jq '.processes[] | select(.role=="base") | .kv_blocks_free' <<<"$st")" ||
  fail "status: $st"
"$ALORA" status --router "$R" >/dev/null || fail "status table"
isa=$("$ALORA" --version | sed -n 's/^cpu kernels: \([^ ]*\).*/\1/p')
nb=$(jq --arg b "cpu $isa" '[.processes[] | select(.role != "router" and .backend == $b)] | length' <<<"$st")
[ "$nb" -eq 5 ] && ok "status: base and 4 workers run the '$isa' CPU kernels, as alora --version says" ||
  fail "status backends: $(jq -c '[.processes[] | {role, backend}]' <<<"$st")"

# kill -9 of one worker replica under a loop of requests: every request succeeds
victim=$(jq -r '.processes[] | select(.id == "certainty-0") | .pid' <<<"$st")
(
  bad=0
  for i in $(seq 1 60); do
    "$ALORA" invoke --router "$R" --intrinsic certainty --tokens "$convo,$i,50,51,52" --max-tokens 2 --json \
      >/dev/null 2>>"$T/loop.err" || bad=$((bad + 1))
  done
  echo $bad >"$T/loop.bad"
) &
loop=$!
sleep 0.3
kill -9 "$victim"
wait $loop
bad=$(cat "$T/loop.bad")
[ "$bad" -eq 0 ] && ok "kill -9 worker $victim under load: 60/60 requests succeeded" ||
  { fail "kill -9 worker: $bad requests failed"; cat "$T/loop.err"; }
newpid=
for _ in $(seq 1 100); do
  newpid=$("$ALORA" status --router "$R" --json | jq -r '.processes[] | select(.id == "certainty-0" and .health == "ok") | .pid')
  [ -n "$newpid" ] && [ "$newpid" != "$victim" ] && break
  sleep 0.1
done
[ -n "$newpid" ] && [ "$newpid" != "$victim" ] && ok "worker restarted by alora up (pid $victim -> $newpid)" ||
  fail "worker certainty-0 was not restarted"

# kill -9 of the base: the router answers `unavailable` quickly; alora up restarts it; workers re-attach
basepid=$(jq -r '.processes[] | select(.role == "base") | .pid' <<<"$st")
kill -9 "$basepid"
t0=$(date +%s%N)
err=$("$ALORA" invoke --router "$R" --intrinsic certainty --tokens "$convo,50,51,52" --timeout 30000 2>&1)
rc=$?
dt=$((($(date +%s%N) - t0) / 1000000))
if [ $rc -ne 0 ] && grep -q unavailable <<<"$err"; then
  ok "base killed: router answered unavailable in $dt ms: $err"
elif [ $rc -eq 0 ]; then
  ok "base killed: already restarted within $dt ms"
else
  fail "base killed: rc $rc after $dt ms: $err"
fi
back=0
for _ in $(seq 1 300); do
  if "$ALORA" invoke --router "$R" --intrinsic answerability --tokens "$convo,60,61" --json >/dev/null 2>&1 &&
    "$ALORA" invoke --router "$R" --intrinsic certainty --tokens "$convo,50,51,52" --json >/dev/null 2>&1; then
    back=1; break
  fi
  sleep 0.1
done
newbase=$("$ALORA" status --router "$R" --json | jq -r '.processes[] | select(.role == "base") | .pid')
[ $back -eq 1 ] && [ "$newbase" != "$basepid" ] && ok "base restarted (pid $basepid -> $newbase), workers re-attached" ||
  { fail "cluster did not recover after the base was killed"; tail -40 "$T/ipc.err"; }
# its arenas were unlinked when alora up reaped it (not at stop): a restart must not need them twice
if ls /dev/shm/alora-*-"$basepid"-* >/dev/null 2>&1; then
  fail "the killed base's shm segments remain: $(ls /dev/shm/alora-*-"$basepid"-*)"
else
  ok "the killed base's shm segments were reclaimed before its restart"
fi
parity certainty "$CERT" "$convo,50,51,52,7,8"
stop_up ipc

# ---------------------------------------------------------------- tcp, with the Granite bf16 model
MODEL="$T/gmodel" CERT="$T/gcert" ANS="$T/gans"
pb=$(free_port); pr=$(free_port)
while [ "$pr" == "$pb" ]; do pr=$(free_port); done
write_cfg tcp "tcp://127.0.0.1:$pb" "tcp://127.0.0.1:$pr"
R="tcp://127.0.0.1:$pr"
start_up tcp || { fail "tcp cluster did not become ready"; exit 1; }
ok "tcp cluster ready: $(cat "$T/tcp.out")"
# a bf16 checkpoint stays bf16 in memory (base.weights = auto): the base and its workers run cpu-bf16
grep -q "running on the cpu-bf16 backend" "$T/tcp.err" && grep -q "arenas (shm): weights .*bf16" "$T/tcp.err" &&
  ok "bf16 checkpoint: the base keeps bf16 weights in its shm arena (cpu-bf16)" ||
  fail "bf16 checkpoint not served as bf16: $(grep -m2 -E 'running on|arenas' "$T/tcp.err")"
run_parity
stop_up tcp

# ---------------------------------------------------------------- kill -9 of alora up itself
# every child gets SIGTERM from the kernel (parent-death signal) and still releases its shared memory
start_up tcp || { fail "tcp cluster did not restart"; exit 1; }
kids=$("$ALORA" status --router "$R" --json 2>/dev/null | jq -r '.processes[].pid' | tr '\n' ' ')
kill -9 "$UP_PID"; wait "$UP_PID" 2>/dev/null; UP_PID=
# A child normally exits within a second. Each one also ends itself by SIGALRM once its shutdown
# has run AL_PROC_SHUTDOWN_LIMIT_S = 30 s (common/proc.h): rarely (2 of ~100 such shutdowns here) the
# router's nng_close of its server socket waits on NNG's reaper while its peers close their pipes
# at the same moment, and that deadline is what ends it; wait past it, and say so when it was needed.
orphans=""
t_k9=$SECONDS
for _ in $(seq 1 350); do
  orphans=""
  for p in $kids; do
    kill -0 "$p" 2>/dev/null && grep -q alora- "/proc/$p/cmdline" 2>/dev/null && orphans="$orphans $p"
  done
  [ -z "$orphans" ] && break
  sleep 0.1
done
[ $((SECONDS - t_k9)) -gt 5 ] && echo "note: the children took $((SECONDS - t_k9)) s to exit after kill -9 of alora up (the shutdown deadline ended one)"
leftshm=""
for p in $kids; do leftshm="$leftshm$(ls /dev/shm/alora-*-"$p"-* 2>/dev/null)"; done
[ -z "$orphans" ] && [ -z "$leftshm" ] && ok "kill -9 of alora up: every child exited and released its shm" ||
  fail "kill -9 of alora up left processes [$orphans] shm [$leftshm]"

if [ $FAILS -ne 0 ]; then
  echo "$FAILS check(s) failed"
  exit 1
fi
echo "all cluster checks passed"
