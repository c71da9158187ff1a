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

free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 30000))
    ss -ltn 2>/dev/null | grep -q ":$p " || { echo $p; return; }
  done
}

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
