#!/usr/bin/env bash
# Installs every build, test and demo dependency from Debian's packages. Idempotent: when everything
# is already installed it only checks (a few seconds) and prints one line.
set -euo pipefail

PKGS=(
  g++ cmake ninja-build make pkg-config git curl openssl ca-certificates python3
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev libboost-test1.81-dev
  libssl-dev prometheus-cpp-dev zlib1g-dev libjemalloc-dev
  clang libclang-rt-14-dev libbenchmark-dev ccache
  libre2-dev libhiredis-dev libsystemd-dev
  redis-server prometheus chromium libjs-chart.js
  dpkg-dev lintian fakeroot file
)
# Extra packages only the benchmark needs (scripts/bench.sh passes --bench).
if [[ "${1:-}" == "--bench" ]]; then
  PKGS+=(wrk nginx-core)
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "bootstrap: all ${#PKGS[@]} packages present"
  exit 0
fi

echo "bootstrap: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "bootstrap: done"
