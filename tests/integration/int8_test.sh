#!/usr/bin/env bash
# int8_test.sh: base.weights = "int8" end to end: alora-base quantizes the checkpoint at load into
# an int8 shm arena (about a quarter of the f32 one), the workers attach it zero-copy in the same
# format, and `alora invoke` through the router equals the single-process `alora generate
# --weights int8` (tokens and activation start; logprobs bitwise, with the prefill split where the
# cluster splits it); a worker whose config says f32 refuses the int8 arena; clean shutdown.
TMP_TAG=int8
source "$(dirname "$0")/lib.sh"

# "small": hidden 256, intermediate 688 (not a multiple of 64: the kernels' tails), vocab 1024
"$ALORA" make-model --arch llama --preset small --seed 21 "$T/model" >/dev/null || exit 1
"$ALORA" make-adapter --model "$T/model" --targets q,k,v,o --rank 8 --alpha 16 --invocation 50,51,52 \
  --seed 3 "$T/cert" >/dev/null || exit 1
MODEL="$T/model"

# the arena: int8 vs f32, the backend named in the log
base_arena() { # WEIGHTS -> arena MiB (x100)
  cat >"$T/b-$1.cfg" <<CFG
run_dir = "$T/run-b-$1";
base = { model = "$MODEL"; kv_blocks = 32; block_size = 16; threads = 1; device = "cpu"; weights = "$1"; };
intrinsics = ();
CFG
  mkdir -p "$T/run-b-$1"
  "$BIN_DIR/alora-base" -c "$T/b-$1.cfg" 2>"$T/b-$1.err" &
  local pid=$!
  for _ in $(seq 1 300); do [ -S "$T/run-b-$1/base.ipc" ] && break; sleep 0.05; done
  kill -TERM "$pid"; wait "$pid"; local rc=$?
  [ $rc -eq 0 ] || fail "$1: alora-base exited $rc: $(tail -3 "$T/b-$1.err")"
  ls /dev/shm/alora-*-"$pid"-* >/dev/null 2>&1 && fail "$1: shm segments of pid $pid remain"
  grep -o 'weights [0-9.]* MiB' "$T/b-$1.err" | awk '{print int($2 * 100)}'
}
a8=$(base_arena int8)
a32=$(base_arena f32)
grep -q "running on the cpu-q8 backend" "$T/b-int8.err" && ok "base.weights = int8: the cpu-q8 backend" ||
  fail "int8: $(grep -m2 -E 'running on|arenas|error' "$T/b-int8.err")"
[ -n "$a8" ] && [ "$a8" -gt 0 ] && [ $((a8 * 100)) -le $((a32 * 30)) ] &&
  ok "weight arena: int8 $((a8 / 100)).$((a8 % 100)) MiB, f32 $((a32 / 100)).$((a32 % 100)) MiB" ||
  fail "weight arenas: int8 '$a8', f32 '$a32' (x100 MiB)"

# the cluster
cat >"$T/c.cfg" <<CFG
run_dir = "$T/run-c";
base = { model = "$MODEL"; kv_blocks = 256; block_size = 16; threads = 1; weights = "int8"; };
worker = { kv_blocks = 64; heartbeat_ms = 200; };
router = { max_queue = 16; request_timeout_ms = 20000; };
intrinsics = ( { name = "certainty"; adapter = "$T/cert"; replicas = 1; max_tokens = 4; } );
CFG
R="ipc://$T/run-c/router.ipc"
start_up c || { fail "int8 cluster did not become ready"; exit 1; }
ok "int8 cluster ready"
PCOUNT=0
parity() { # TOKENS
  local toks="$((100 + PCOUNT)),$1"; PCOUNT=$((PCOUNT + 1))
  local a b s n p ja jb jc
  a=$("$ALORA" invoke --router "$R" --intrinsic certainty --tokens "$toks" --max-tokens 4 --top-logprobs 3 --json) ||
    { fail "invoke failed"; return; }
  b=$("$ALORA" generate --model "$MODEL" --weights int8 --adapter "$T/cert" --tokens "$toks" --max-tokens 4 \
    --top-logprobs 3 --json) || { fail "generate failed"; return; }
  ja=$(jq -c '{tokens, activation_start}' <<<"$a"); jb=$(jq -c '{tokens, activation_start}' <<<"$b")
  [ "$ja" == "$jb" ] || { fail "tokens=$toks: cluster $ja, engine $jb"; return; }
  s=$(jq -r .activation_start <<<"$a"); n=$(tr ',' '\n' <<<"$toks" | wc -l)
  if [ "$s" == "null" ]; then p=$((n - 1)); else p=$s; fi
  ja=$(jq -c .top_logprobs <<<"$a")
  jb=$(jq -c .top_logprobs <<<"$b")
  jc=$("$ALORA" generate --model "$MODEL" --weights int8 --adapter "$T/cert" --tokens "$toks" --max-tokens 4 \
    --top-logprobs 3 --json --chunk "$p" | jq -c .top_logprobs)
  if [ "$ja" == "$jb" ] || [ "$ja" == "$jc" ]; then
    ok "invoke == generate --weights int8 (activation_start $s, n=$n): tokens $(jq -c .tokens <<<"$a"), logprobs bitwise"
  else
    fail "logprobs differ, tokens=$toks"; echo "  cluster $ja"; echo "  engine  $jb"; echo "  split   $jc"
  fi
}
convo=$(seq -s, 3 2 90)
parity "$convo,50,51,52,7,8"
parity "$convo,50,51,52"
parity "$(seq -s, 1 1 70),50,51,52,4"

# a worker configured for f32 weights refuses the base's int8 arena, naming the mismatch
sed 's/weights = "int8"/weights = "f32"/' "$T/c.cfg" >"$T/w32.cfg"
err=$(timeout 30 "$BIN_DIR/alora-worker" -c "$T/w32.cfg" --intrinsic certainty --replica 9 --router none 2>&1); rc=$?
[ $rc -ne 0 ] && grep -q "weights need" <<<"$err" && ok "f32 worker on the int8 arena: refused ($(grep -m1 -o 'attach: .*' <<<"$err" | cut -c1-120))" ||
  fail "f32 worker on an int8 arena: rc $rc: $(tail -2 <<<"$err")"
stop_up c

if [ $FAILS -ne 0 ]; then
  echo "$FAILS check(s) failed"
  exit 1
fi
echo "all int8 checks passed"
