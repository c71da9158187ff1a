#!/usr/bin/env bash
# build_standalone.sh: builds the constraint library (engine/constrain) and its tests with plain gcc,
# outside CMake, and runs the tests. Usage: build_standalone.sh [release|asan|bench] [test-name...]
#   release  -O2 into build-constrain/ and runs every tests/engine/constrain/*_test.c
#   asan     the same with -fsanitize=address,undefined into build-constrain-asan/
#   bench    builds build-constrain/bench_constrain (run it by hand; see its header)
set -euo pipefail
cd "$(dirname "$0")/../../.."
ROOT=$PWD
MODE=${1:-release}
shift || true
CFLAGS="-std=gnu11 -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter -D_GNU_SOURCE -I$ROOT"
LIBS="-ljansson -lxxhash -lcmocka -lm -lpthread"
OUT=build-constrain
if [ "$MODE" = asan ]; then
    OUT=build-constrain-asan
    CFLAGS="$CFLAGS -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
fi
mkdir -p "$OUT/obj"
objs=()
for src in engine/constrain/*.c common/err.c common/util.c common/log.c; do
    o="$OUT/obj/$(echo "$src" | tr / _).o"
    if [ ! -f "$o" ] || [ "$src" -nt "$o" ] || [ -n "$(find engine/constrain -name '*.h' -newer "$o")" ]; then
        gcc $CFLAGS -c "$src" -o "$o"
    fi
    objs+=("$o")
done
rm -f "$OUT/libconstrain.a"
ar rcs "$OUT/libconstrain.a" "${objs[@]}"

if [ "$MODE" = bench ]; then
    gcc $CFLAGS -march=native tests/engine/constrain/bench_constrain.c "$OUT/libconstrain.a" $LIBS -o "$OUT/bench_constrain"
    echo "built $OUT/bench_constrain"
    exit 0
fi

tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
    for t in tests/engine/constrain/*_test.c; do tests+=("$(basename "$t" .c)"); done
fi
pass=0 fail=0 skip=0
for t in "${tests[@]}"; do
    t=${t%.c}
    gcc $CFLAGS "tests/engine/constrain/$t.c" "$OUT/libconstrain.a" $LIBS -o "$OUT/$t"
    set +e
    ASAN_OPTIONS=detect_leaks=1 "$OUT/$t"
    rc=$?
    set -e
    if [ $rc -eq 0 ]; then pass=$((pass + 1)); elif [ $rc -eq 77 ]; then skip=$((skip + 1)); echo "SKIP $t";
    else fail=$((fail + 1)); echo "FAIL $t (exit $rc)"; fi
done
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
