#!/usr/bin/env bash
# run.sh: runs libFuzzer targets of a clang fuzz build for a set time each (`make fuzz`; docs/fuzzing.md).
#   fuzz/run.sh BUILD_DIR [TARGET...]     targets default to every fuzz/*.c
# Env: FUZZ_SECONDS (per target, default 60), FUZZ_JOBS (parallel targets, default 1),
#      FUZZ_RUNS (instead of a time: this many executions after the seeds; the smoke uses it),
#      FUZZ_ARGS (more libFuzzer flags), FUZZ_CORPUS_DIR (working corpora; default below),
#      ALORA_SOURCE_DIR (the source tree: seeds, dictionaries, fixtures; default: this script's).
# Each target starts from its committed seeds (fuzz/corpus/<t>) plus its working corpus
#      BUILD_DIR/fuzz-corpus/<t>, which keeps what it finds between runs; crashes land in BUILD_DIR/fuzz-artifacts/. A line per target goes to
#      BUILD_DIR/fuzz-stats.tsv (date, target, seconds, executions, exec/s, coverage, result).
# Exit status: 1 when any target crashed (its input and the stack are printed), else 0.
set -uo pipefail
SRC=${ALORA_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
BUILD=${1:?usage: fuzz/run.sh BUILD_DIR [TARGET...]}
BUILD=$(cd "$BUILD" && pwd)
shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$SRC"/fuzz/*.c; do targets+=("$(basename "$f" .c)"); done
fi
SECS=${FUZZ_SECONDS:-60}
JOBS=${FUZZ_JOBS:-1}
mkdir -p "$BUILD/fuzz-artifacts" "$BUILD/fuzz-logs"

run_one() {
  local t=$1 bin="$BUILD/fuzz_$1" work="${FUZZ_CORPUS_DIR:-$BUILD/fuzz-corpus}/$1" log="$BUILD/fuzz-logs/$1.log"
  if [ ! -x "$bin" ]; then
    echo "fuzz: $bin missing (build with -DALORA_FUZZ=ON --target fuzz_all)" >&2
    return 1
  fi
  mkdir -p "$work"
  local args=(-print_final_stats=1 -timeout=20 -rss_limit_mb=2560 -max_len=65536
              "-artifact_prefix=$BUILD/fuzz-artifacts/$t-")
  [ -f "$SRC/fuzz/dict/$t.dict" ] && args+=("-dict=$SRC/fuzz/dict/$t.dict")
  if [ -n "${FUZZ_RUNS:-}" ]; then args+=("-runs=$FUZZ_RUNS"); else args+=("-max_total_time=$SECS"); fi
  # shellcheck disable=SC2206
  args+=(${FUZZ_ARGS:-})
  local t0=$SECONDS rc
  ALORA_SOURCE_DIR="$SRC" LSAN_OPTIONS="suppressions=$SRC/fuzz/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}" \
    UBSAN_OPTIONS="print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}" "$bin" "${args[@]}" "$work" "$SRC/fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  local execs cov eps result=ok
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1 | cut -d' ' -f2)
  if [ $rc -ne 0 ]; then
    result=CRASH
    echo "fuzz: $t FAILED (exit $rc); log $log:" >&2
    grep -E -A40 '^==[0-9]+==ERROR|runtime error|SUMMARY|deadly signal|Test unit written' "$log" | head -n 60 >&2
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$t" "$((SECONDS - t0))" "${execs:-0}" \
    "${eps:-0}" "${cov:-0}" "$result" >>"$BUILD/fuzz-stats.tsv"
  printf 'fuzz: %-18s %8s execs %6s exec/s  cov %5s  %s\n' "$t" "${execs:-0}" "${eps:-0}" "${cov:-0}" "$result"
  [ $rc -eq 0 ]
}

fail=0
running=0
for t in "${targets[@]}"; do
  if [ "$JOBS" -le 1 ]; then
    run_one "$t" || fail=1
  else
    run_one "$t" &
    running=$((running + 1))
    if [ $running -ge "$JOBS" ]; then wait -n || fail=1; running=$((running - 1)); fi
  fi
done
while [ $running -gt 0 ]; do wait -n || fail=1; running=$((running - 1)); done
exit $fail
