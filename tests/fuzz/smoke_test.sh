#!/usr/bin/env bash
# smoke_test.sh: every libFuzzer target (fuzz/) on its committed seeds plus a few thousand mutations,
# under ASan + UBSan. Builds the clang fuzz build in $ALORA_BUILD/fuzz itself (incremental after
# the first run); exits 77 (skipped) where clang or libFuzzer is missing. FUZZ_SMOKE_RUNS changes
# the executions per target (default 2000), FUZZ_SMOKE_SECONDS caps each target's time (15).
set -uo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${ALORA_BUILD:-$SRC/build}
DIR="$BUILD/fuzz"

skip() { echo "SKIP: $*"; exit 77; }
command -v clang >/dev/null || skip "clang not installed (scripts/deps.sh installs clang libclang-rt-14-dev)"
probe=$(mktemp -d /tmp/alora-fuzz-probe-XXXXXX)
trap 'rm -rf "$probe" ${work:+"$work"}' EXIT
printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return 0; }\n' >"$probe/p.c"
clang -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" 2>"$probe/err" ||
  skip "clang cannot link libFuzzer ($(head -c 200 "$probe/err")); install libclang-rt-14-dev"

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache)
echo "building the fuzz targets in $DIR"
cmake -S "$SRC" -B "$DIR" -DCMAKE_C_COMPILER=clang -DALORA_FUZZ=ON "${launcher[@]}" >"$probe/cmake.log" 2>&1 ||
  { cat "$probe/cmake.log"; echo "FAIL: cmake configure"; exit 1; }
cmake --build "$DIR" -j "$(nproc)" --target fuzz_all >"$probe/build.log" 2>&1 ||
  { tail -n 60 "$probe/build.log"; echo "FAIL: building the fuzz targets"; exit 1; }

# a fresh working corpus: the smoke is the seeds and regression inputs plus a fixed amount of mutation
work=$(mktemp -d /tmp/alora-fuzz-smoke-XXXXXX)
n=0
for f in "$SRC"/fuzz/*.c; do
  t=$(basename "$f" .c)
  [ -d "$SRC/fuzz/corpus/$t" ] || { echo "FAIL: fuzz/corpus/$t: no seed corpus for target $t"; exit 1; }
  n=$((n + 1))
done
[ "$n" -ge 10 ] || { echo "FAIL: only $n fuzz targets"; exit 1; }
# a fixed mutation seed (the same inputs on every run), at most FUZZ_SMOKE_SECONDS (15) of mutation
# per target after its seeds: the slow targets (a
# tokenizer.json load per input, ~10-20 exec/s under ASan on a loaded 2-core machine) stop on time
FUZZ_CORPUS_DIR="$work" FUZZ_RUNS="${FUZZ_SMOKE_RUNS:-2000}" \
  FUZZ_ARGS="-seed=1 -max_total_time=${FUZZ_SMOKE_SECONDS:-15}" bash "$SRC/fuzz/run.sh" "$DIR" || {
  echo "FAIL: a fuzz target crashed (input and stack above; artifacts in $DIR/fuzz-artifacts)"
  exit 1
}
echo "PASS: $n fuzz targets"
