#!/usr/bin/env bash
# The sanitizer tier (issue #16): builds quanta and its tests with AddressSanitizer and
# UndefinedBehaviorSanitizer into build-asan/ and runs the unit and golden tests there. Any report
# (out-of-bounds access, use after free, leak, undefined behaviour) fails the run.
# Usage: scripts/sanitize.sh [ctest args...]   (scripts/test.sh runs it after the main suite)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
flags="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQUANTA_BUILD_BENCH=OFF \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" > /dev/null
cmake --build build-asan -j "$(nproc)" --target quanta unit_tests golden_tests
bash scripts/fetch-default-model.sh > /dev/null
cd build-asan
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
ctest --output-on-failure -j "$(nproc)" -L '^(unit|golden)$' "$@"
