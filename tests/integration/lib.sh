# lib.sh: shared harness of the multi-process tests (sourced, not run): binaries, temp dir,
# cleanup of the cluster and background jobs, ok/fail/check, free_port, start_up.
# Before sourcing, a test may set NEEDS (extra commands, e.g. "curl") and TMP_TAG.
set -uo pipefail
ALORA=${ALORA_BIN:-build/alora}
[ -x "$ALORA" ] || { echo "SKIP: $ALORA not built"; exit 77; }
BIN_DIR=$(dirname "$(readlink -f "$ALORA")")
for b in alora-base alora-worker alora-router; do
  [ -x "$BIN_DIR/$b" ] || { echo "SKIP: $BIN_DIR/$b not built"; exit 77; }
done
for c in jq ${NEEDS:-}; do
  command -v "$c" >/dev/null || { echo "SKIP: $c not installed"; exit 77; }
done
SRC=$(pwd)
T=$(mktemp -d "/tmp/alora-${TMP_TAG:-it}-XXXXXX")
UP_PID=
BG=()
FAILS=0
cleanup() {
  for p in "${BG[@]}"; do kill "$p" 2>/dev/null; done
  if [ -n "$UP_PID" ] && kill -0 "$UP_PID" 2>/dev/null; then
    kill -TERM "$UP_PID"; wait "$UP_PID" 2>/dev/null
  fi
  rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
ok() { echo "ok: $*"; }
check() { # check DESC COND-COMMAND...
  local d=$1; shift
  if "$@"; then ok "$d"; else fail "$d"; fi
}

source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/free_port.sh"

# start_up NAME: `alora up -c $T/NAME.cfg` in the background; waits for its ready file.
start_up() {
  rm -f "$T/ready"
  "$ALORA" up -c "$T/$1.cfg" --bin-dir "$BIN_DIR" --ready-file "$T/ready" >"$T/$1.out" 2>"$T/$1.err" &
  UP_PID=$!
  for _ in $(seq 1 300); do
    [ -f "$T/ready" ] && return 0
    kill -0 "$UP_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "--- alora up stderr"; tail -40 "$T/$1.err"
  return 1
}

# stop_up NAME: SIGTERM to `alora up`, then check that no process, socket or shm segment is left
# and that no sanitizer spoke. The router is $R (default ipc://$T/run-NAME/router.ipc).
stop_up() {
  local pids
  pids=$("$ALORA" status --router "${R:-ipc://$T/run-$1/router.ipc}" --json 2>/dev/null | jq -r '.processes[].pid' | tr '\n' ' ')
  kill -TERM "$UP_PID"
  local t0=$SECONDS
  wait "$UP_PID"; local rc=$?
  UP_PID=
  [ $rc -eq 0 ] && ok "$1: alora up exited 0 after SIGTERM ($((SECONDS - t0)) s)" || fail "$1: alora up exited $rc"
  local left=0
  for p in $pids $(grep -o 'pid [0-9]*' "$T/$1.err" | awk '{print $2}' | sort -u); do
    [ "$p" -gt 0 ] 2>/dev/null || continue
    if kill -0 "$p" 2>/dev/null && grep -q alora- "/proc/$p/cmdline" 2>/dev/null; then
      fail "$1: process $p still alive: $(tr '\0' ' ' </proc/$p/cmdline)"; left=1
    fi
    if ls /dev/shm/alora-*-"$p"-* >/dev/null 2>&1; then
      fail "$1: shm segments of pid $p remain: $(ls /dev/shm/alora-*-"$p"-*)"; left=1
    fi
  done
  if [ -d "$T/run-$1" ] && [ -n "$(find "$T/run-$1" -type s)" ]; then
    fail "$1: sockets remain: $(find "$T/run-$1" -type s)"; left=1
  fi
  [ $left -eq 0 ] && ok "$1: no process, socket or shm segment left"
  if grep -E "runtime error|AddressSanitizer|LeakSanitizer" "$T/$1.err" >/dev/null; then
    fail "$1: sanitizer reports:"; grep -E -A8 "runtime error|AddressSanitizer|LeakSanitizer" "$T/$1.err" | head -40
  fi
}

# text_models SEED: the HTTP-capable fixtures: $TOK (deploy/tokenizer; skips without it), the
# "small" model $T/model and two aLoRA adapters $T/cert (invocation 600,601,602) and $T/ans
# (605,606); PORT and H, a free HTTP address.
text_models() {
  TOK="$SRC/deploy/tokenizer"
  [ -f "$TOK/tokenizer.json" ] || { echo "SKIP: $TOK missing"; exit 77; }
  "$ALORA" make-model --arch llama --preset small --seed "$1" "$T/model" >/dev/null || exit 1
  "$ALORA" make-adapter --model "$T/model" --targets q,k,v,o --rank 8 --alpha 16 --invocation 600,601,602 \
    --seed 3 "$T/cert" >/dev/null || exit 1
  "$ALORA" make-adapter --model "$T/model" --targets q,v,up,down --rank 4 --alpha 8 --invocation 605,606 \
    --seed 4 "$T/ans" >/dev/null || exit 1
  PORT=$(free_port)
  H="http://127.0.0.1:$PORT"
}

# test_python MODULES ("openai, jsonschema"): sets PY to a Python that imports MODULES if one can be
# had: python3 itself, else the venv shared by the integration tests ($ALORA_BUILD/test-venv; they
# run serially) with tests/integration/requirements.txt installed: all pins at once, else one at a
# time so that a package without a wheel (or an unreachable index) does not take the others down.
# PY stays a working interpreter either way; the caller checks what it needs and skips the rest.
test_python() {
  PY=python3
  "$PY" -c "import $1" 2>/dev/null && return 0
  local venv=${ALORA_BUILD:-$SRC/build}/test-venv req="$SRC/tests/integration/requirements.txt" t0=$SECONDS
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import $1" 2>/dev/null; then
    local pip=("$venv/bin/pip" install --quiet --disable-pip-version-check --retries 2 --timeout 60)
    { [ -x "$venv/bin/python" ] || python3 -m venv "$venv"; } >"$T/pip.log" 2>&1
    if [ -x "$venv/bin/pip" ] && ! timeout 300 "${pip[@]}" -r "$req" >>"$T/pip.log" 2>&1; then
      while read -r r; do
        r=${r%%#*}; r=${r//[[:space:]]/}
        [ -n "$r" ] && [ $((SECONDS - t0)) -lt 420 ] || continue
        echo "--- $r" >>"$T/pip.log"
        timeout $((420 - (SECONDS - t0))) "${pip[@]}" "$r" >>"$T/pip.log" 2>&1
      done <"$req"
    fi
  fi
  [ -x "$venv/bin/python" ] && PY="$venv/bin/python"
  "$PY" -c "import $1" 2>/dev/null
}
