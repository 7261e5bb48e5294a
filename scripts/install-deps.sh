#!/usr/bin/env bash
# Installs the Debian packages quanta builds and tests with. Idempotent: packages
# already present are left alone, and apt is only asked when one is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  nlohmann-json3-dev libcli11-dev libgtest-dev libgmock-dev libbenchmark-dev
  libpcre2-dev libutf8proc-dev libcpp-httplib-dev python3 python3-venv
  clang libclang-rt-dev   # the fuzz targets (libFuzzer, ASan, UBSan): tests/fuzz/run.sh
  openmpi-bin libopenmpi-dev
  chromium fonts-dejavu-core   # the pictures' e2e test opens quanta's HTML in headless Chromium
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
