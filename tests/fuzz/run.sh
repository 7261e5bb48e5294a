#!/usr/bin/env bash
# Builds the libFuzzer targets (clang from Debian, AddressSanitizer + UndefinedBehaviorSanitizer) and
# runs each for SECONDS of fuzzing, after its committed corpus (tests/fuzz/corpus/TARGET) and every
# input that once broke it (tests/fuzz/regressions/TARGET) have run: a crash, a sanitizer report, a
# leak, a hang (10 s per input) or more than 2 GB fails the run.
#
#   tests/fuzz/run.sh [SECONDS (default 60)] [TARGET ...]   (targets: all below by default)
#
# Binaries and the scratch corpora of new inputs go to $QUANTA_FUZZ_OUT (default /tmp/quanta-fuzz).
# To grow a committed corpus from a long run, keep a small edge-covering set:
#   $QUANTA_FUZZ_OUT/TARGET -set_cover_merge=1 tests/fuzz/corpus/TARGET $QUANTA_FUZZ_OUT/TARGET-corpus
# A crash's input goes into tests/fuzz/regressions/TARGET/ with the fix.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(gguf safetensors config tokenizer chat_template chat_output grammar requests)
out="${QUANTA_FUZZ_OUT:-/tmp/quanta-fuzz}"
# libFuzzer's seed: 0 (the default) draws one; CTest's regression pass fixes it, so that it
# replays the same mutations on every run instead of failing at random on a new finding.
seed="${QUANTA_FUZZ_SEED:-0}"
mkdir -p "$out"
cxx="$(command -v clang++-14 || command -v clang++)"

core=(src/quanta/core/error.cc src/quanta/core/dtype.cc src/quanta/core/mapped_file.cc src/quanta/core/tensor.cc
      src/quanta/core/json.cc)
sources() {
  case "$1" in
    gguf) echo "${core[@]}" src/quanta/format/gguf.cc src/quanta/format/ggml_types.cc ;;
    safetensors) echo "${core[@]}" src/quanta/format/safetensors.cc ;;
    config) echo "${core[@]}" src/quanta/format/hf_config.cc src/quanta/quant/hf_quant_config.cc src/quanta/quant/resolver.cc ;;
    tokenizer) echo "${core[@]}" src/quanta/format/gguf.cc src/quanta/format/ggml_types.cc src/quanta/format/hf_config.cc \
      src/quanta/tokenizer/*.cc ;;
    chat_template) echo "${core[@]}" src/quanta/tokenizer/chat_template.cc src/quanta/tokenizer/jinja_*.cc ;;
    chat_output) echo "${core[@]}" src/quanta/server/chat_output.cc ;;
    grammar) echo "${core[@]}" src/quanta/grammar/*.cc src/quanta/tokenizer/unicode.cc ;;
    requests) echo "${core[@]}" src/quanta/server/requests.cc src/quanta/server/chat_output.cc src/quanta/server/structured.cc \
      src/quanta/engine/sampler.cc src/quanta/grammar/*.cc src/quanta/format/gguf.cc src/quanta/format/ggml_types.cc \
      src/quanta/format/hf_config.cc src/quanta/tokenizer/*.cc ;;
    *) echo "tests/fuzz/run.sh: unknown target '$1'" >&2; exit 2 ;;
  esac
}
# Extra seeds beside the committed corpus: real files of the format, where the repository has them.
seeds() {
  case "$1" in
    gguf) echo tests/unit/data/gguf tests/unit/data/gguf/dequant ;;
    chat_template) [ -d ../shared/data/chat-templates ] && echo ../shared/data/chat-templates || true ;;
  esac
}
options() {
  case "$1" in
    chat_template) echo -max_len=4096 -dict=tests/fuzz/chat_template.dict ;;
    gguf) echo -max_len=65536 ;;
    requests) echo -max_len=8192 -dict=tests/fuzz/requests.dict ;;
    *) echo -max_len=8192 ;;
  esac
}

for t in "${targets[@]}"; do
  echo "== $t: building" >&2
  # shellcheck disable=SC2046
  "$cxx" -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Isrc \
    -DQUANTA_SOURCE_DIR="\"$PWD\"" $(sources "$t") "tests/fuzz/${t}_fuzz.cc" -lpcre2-8 -lutf8proc -o "$out/$t"
  mkdir -p "$out/$t-corpus"
  dirs=("$out/$t-corpus" "tests/fuzz/corpus/$t")
  [ -d "tests/fuzz/regressions/$t" ] && dirs+=("tests/fuzz/regressions/$t")
  for s in $(seeds "$t"); do dirs+=("$s"); done
  echo "== $t: the seeds in ${dirs[*]}, then ${secs} s of fuzzing" >&2
  # shellcheck disable=SC2046
  "$out/$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 -seed="$seed" \
    -artifact_prefix="$out/$t-" $(options "$t") "${dirs[@]}" 2>"$out/$t.log" || {
    tail -n 60 "$out/$t.log" >&2
    echo "tests/fuzz/run.sh: $t failed; the input is in $out/$t-* (log: $out/$t.log)" >&2
    exit 1
  }
  grep -E "^stat::number_of_executed_units|^#[0-9]+.*DONE" "$out/$t.log" | tail -n 2 >&2 || true
done
