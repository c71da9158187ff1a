#!/usr/bin/env bash
# deps.sh: install the Debian packages alora needs to build, test and run (idempotent).
set -euo pipefail
PKGS=(build-essential cmake pkg-config
      libnng-dev nng-utils nanopb libnanopb-dev libconfig-dev
      libopenblas-dev libjansson-dev libpcre2-dev libxxhash-dev libcmocka-dev
      libsqlite3-dev nettle-dev   # the router's session store (SQLite) and SHA-256 of API keys
      python3 python3-yaml procps jq curl   # python3-yaml: tests/deploy parses the compose / k8s YAML
      openssl                               # `alora certs`: the CA and certificates for tls+tcp:// RPC
      gnuplot-nox python3-numpy   # make bench-rag: plots; ../shared/peer/hf_to_gguf.py (Debian's python3)
      clang libclang-rt-14-dev llvm  # `make fuzz` / tests/fuzz: Debian 12's clang is 14; libFuzzer is in
                                     # libclang-rt-14-dev, llvm-symbolizer (stack traces) in llvm
      prometheus) # promtool: tests/services/router/front/metrics_test checks /metrics output (also installs the server)
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PKGS[@]} packages present"
  exit 0
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
