#!/usr/bin/env bash
# layers_test.sh: cmake/check_layers.py passes on this tree and fails, naming the file, on each kind
# of wrong arrow (a synthetic tree): an unlinked layer, a linked layer left unused, a backend's
# private header, an include that does not name its folder.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
check="python3 $root/cmake/check_layers.py"
build=${ALORA_BUILD:-$root/build}
fail() { echo "FAIL: $*" >&2; exit 1; }

$check "$root" "$build/layers.txt" || fail "the real tree does not pass its own layer check"
echo "ok: the tree passes ($(wc -l < "$build/layers.txt") units)"

t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
mkdir -p "$t/low" "$t/mid" "$t/top" "$t/kernels/cpu"
echo '/* x.h */' > "$t/low/x.h"
printf '#include "low/x.h"\n' > "$t/mid/m.h"
printf '#include "mid/m.h"\n' > "$t/top/t.c"
echo '/* c.h */' > "$t/kernels/cpu/c.h"
expect() { # expect ok|fail "pattern" layers-text
  local want=$1 pat=$2; shift 2
  printf '%s\n' "$@" > "$t/layers.txt"
  if out=$($check "$t" "$t/layers.txt" 2>&1); then got=ok; else got=fail; fi
  [ "$got" = "$want" ] || fail "expected $want, got $got: $out"
  [ -z "$pat" ] || grep -q -- "$pat" <<<"$out" || fail "message lacks '$pat': $out"
  echo "ok: $want ${pat:+($pat)}"
}
expect ok "" "low|low||" "mid|mid||low" "top|top||mid"
expect fail 'top/t.c: includes "mid/m.h" of mid, but top does not link mid' "low|low||" "mid|mid||low" "top|top||low"
expect fail 'top: links low but none of its files includes a header of low' "low|low||" "mid|mid||low" "top|top||mid,low"
printf '#include "kernels/cpu/c.h"\n' >> "$t/top/t.c"
expect fail 'a private header of kern' "low|low||" "mid|mid||low" "kern|kernels/cpu||" "top|top||mid,kern"
printf '#include "mid/m.h"\n#include "x.h"\n' > "$t/top/t.c"
expect fail 'must name the file from the repository root' "low|low||" "mid|mid||low" "top|top||mid"
