#!/usr/bin/env bash
# nanopb_pregenerated.sh: stands in for nanopb_generator.py on a machine without protoc (the GPU
# machine): copies the <name>.pb.{c,h} generated on the dev machine (build-gpudeps/proto) to -D DIR.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
out=.
proto=
while [ $# -gt 0 ]; do
  case "$1" in
    -D) out=$2; shift 2 ;;
    -I|-f) shift 2 ;;
    -q) shift ;;
    *) proto=$1; shift ;;
  esac
done
base=$(basename "$proto" .proto)
src=$here/build-gpudeps/proto
for ext in pb.c pb.h; do
  [ -f "$src/$base.$ext" ] || { echo "nanopb_pregenerated: $src/$base.$ext missing" >&2; exit 1; }
  cp "$src/$base.$ext" "$out/$base.$ext"
done
