#!/usr/bin/env bash
# Builds the GGUF fuzz target with libFuzzer, ASan and UBSan (clang 14) and runs it,
# seeded with the committed corpus and the GGUF fixtures.
#   tests/fuzz/run_gguf_fuzz.sh [seconds (default 180)] [extra libFuzzer flags...]
# New inputs go to a scratch corpus; merge the interesting ones back with
#   /tmp/quanta-fuzz/gguf_fuzz -merge=1 tests/fuzz/corpus/gguf /tmp/quanta-fuzz/corpus
set -euo pipefail
cd "$(dirname "$0")/../.."
secs="${1:-180}"; shift || true
out=/tmp/quanta-fuzz
mkdir -p "$out/corpus"
clang++-14 -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -Isrc src/quanta/core/error.cc src/quanta/core/dtype.cc src/quanta/core/mapped_file.cc \
  src/quanta/core/tensor.cc src/quanta/format/gguf.cc src/quanta/format/ggml_types.cc \
  tests/fuzz/gguf_fuzz.cc -o "$out/gguf_fuzz"
"$out/gguf_fuzz" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
  -artifact_prefix="$out/" "$@" "$out/corpus" tests/fuzz/corpus/gguf tests/unit/data/gguf \
  tests/unit/data/gguf/dequant
