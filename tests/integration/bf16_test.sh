#!/usr/bin/env bash
# bf16_test.sh: a bf16 checkpoint on the CPU stays bf16 (base.weights = auto): alora-base reads it
# tensor by tensor straight into a bf16 shm arena, so its peak memory stays near the bf16 size and
# never holds an f32 copy (2x); base.weights = "f32" doubles the arena; `generate --weights` gives
# the same tokens either way; a clean stop leaves no shm segment.
TMP_TAG=bf16
source "$(dirname "$0")/lib.sh"

"$ALORA" make-model --arch llama --preset 85m --dtype bf16 --seed 5 "$T/model" >/dev/null || exit 1

# run_base WEIGHTS: starts alora-base alone, prints "<arena MiB> <peak RSS MiB>" once it listens
run_base() {
  cat >"$T/$1.cfg" <<CFG
run_dir = "$T/run-$1";
log_level = "info";
base = { model = "$T/model"; kv_blocks = 64; block_size = 16; threads = 1; device = "cpu"; weights = "$1"; };
intrinsics = ();
CFG
  mkdir -p "$T/run-$1"
  "$BIN_DIR/alora-base" -c "$T/$1.cfg" 2>"$T/$1.err" &
  local pid=$!
  for _ in $(seq 1 300); do [ -S "$T/run-$1/base.ipc" ] && break; sleep 0.05; done
  local hwm arena
  hwm=$(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$pid/status")
  arena=$(grep -o 'weights [0-9.]* MiB' "$T/$1.err" | awk '{print int($2)}')
  kill -TERM "$pid"; wait "$pid"; local rc=$?
  [ $rc -eq 0 ] || fail "$1: alora-base exited $rc: $(tail -3 "$T/$1.err")"
  ls /dev/shm/alora-*-"$pid"-* >/dev/null 2>&1 && fail "$1: shm segments of pid $pid remain"
  echo "$arena $hwm"
}

read -r a_b h_b < <(run_base auto)
read -r a_f h_f < <(run_base f32)
grep -q "running on the cpu-bf16 backend" "$T/auto.err" && grep -q "weights .*bf16" "$T/auto.err" &&
  ok "auto: the bf16 checkpoint is served as bf16 (cpu-bf16)" || fail "auto: $(grep -m2 -E 'running on|arenas' "$T/auto.err")"
[ "$a_b" -gt 0 ] && [ $((a_f * 10)) -ge $((a_b * 19)) ] && ok "weight arena: bf16 $a_b MiB, f32 $a_f MiB" ||
  fail "weight arenas: bf16 '$a_b' MiB, f32 '$a_f' MiB"
# peak memory: the arena, the checkpoint's mapped pages (the same size: bf16 on disk), a tensor
# buffer and the KV; an f32 copy of the weights would add another $a_f MiB
[ "$h_b" -gt 0 ] && [ "$h_b" -le $((a_b * 2 + 100)) ] &&
  ok "bf16 load peak RSS $h_b MiB: arena $a_b + mapped checkpoint $a_b + small (no f32 copy: +$a_f MiB)" ||
  fail "bf16 load peak RSS $h_b MiB for a $a_b MiB arena (limit $((a_b * 2 + 100)))"

toks=$(seq -s, 3 7 400)
g1=$("$ALORA" generate --model "$T/model" --tokens "$toks" --max-tokens 6 --weights bf16 --json | jq -c .tokens)
g2=$("$ALORA" generate --model "$T/model" --tokens "$toks" --max-tokens 6 --weights f32 --json | jq -c .tokens)
[ -n "$g1" ] && [ "$g1" = "$g2" ] && ok "generate: bf16 and f32 weights give the same tokens $g1" ||
  fail "generate: bf16 $g1 vs f32 $g2"

if [ $FAILS -ne 0 ]; then
  echo "$FAILS check(s) failed"
  exit 1
fi
echo "all bf16 checks passed"
