#!/usr/bin/env bash
# Installs what is needed, builds, and runs the whole test suite (CTest labels
# unit, golden, e2e). Extra arguments go to ctest, e.g. -L unit.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
cd build
ctest --output-on-failure -j "$(nproc)" "$@"
