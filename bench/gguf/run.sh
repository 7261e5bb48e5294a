#!/usr/bin/env bash
# quanta vs llama.cpp on GGUF files, one per weight type, each engine reading the same file:
# pp512 and tg128 at 1 and 2 threads, repetitions of the two engines interleaved in one run
# (bench/dense_bf16/run.py does the timing; see its README for the method).
#
# Files: the default model (Gemma 3 270M Q4_K_M, scripts/fetch-default-model.sh) and the
# Qwen3-0.6B-shape random model of bench/dense_bf16 as BF16 and quantized by llama.cpp's own
# llama-quantize to Q8_0, Q6_K, Q4_K_M and Q4_0.
# Usage: bash bench/gguf/run.sh [TYPE ...]   (types: default BF16 Q8_0 Q6_K Q4_K_M Q4_0; default all)
#        QUANTA_BENCH_ARGS="-r 3 -t 1,2" overrides run.py's arguments.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
cache="${QUANTA_CACHE:-/root/.cache/quanta}"
py="$cache/llamacpp-venv/bin/python"
quantize="$cache/llamacpp-src/build/bin/llama-quantize"
models="$root/models/bench"
bf16="$models/qwen3-0.6b-shape-bf16.gguf"
bw="$root/build/bench-dense-bf16/bw"
args=(${QUANTA_BENCH_ARGS:--r 3 -t 1,2})

bash "$root/bench/dense_bf16/setup_llamacpp.sh" >&2
bash "$root/scripts/fetch-default-model.sh" >&2
if [ ! -f "$bf16" ]; then
  "$py" "$root/bench/dense_bf16/make_model.py" --out "$models" --verify >&2
fi
[ -x build/quanta ] || flock /tmp/quanta-build.lock bash scripts/build.sh >&2
if [ ! -x "$bw" ]; then
  mkdir -p "$(dirname "$bw")"
  flock /tmp/quanta-build.lock cc -O3 -march=native -pthread -o "$bw" "$root/bench/dense_bf16/bw.c"
fi

types=("$@")
[ ${#types[@]} -gt 0 ] || types=(default BF16 Q8_0 Q6_K Q4_K_M Q4_0)
for t in "${types[@]}"; do
  case "$t" in
    default) file="$root/models/gemma-3-270m-q4_k_m.gguf" ;;
    BF16) file="$bf16" ;;
    *)
      file="$models/qwen3-0.6b-shape-$t.gguf"
      if [ ! -f "$file" ]; then
        [ -x "$quantize" ] || { echo "llama-quantize not found at $quantize" >&2; exit 1; }
        "$quantize" "$bf16" "$file.tmp" "$t" >&2 && mv "$file.tmp" "$file"
      fi ;;
  esac
  echo "## $t: $(basename "$file")"
  # The timed part holds the build lock, so that nobody compiles on the 2 cores meanwhile.
  flock /tmp/quanta-build.lock "$py" "$root/bench/dense_bf16/run.py" --quanta "$root/build/quanta" \
    --hf "$file" --gguf "$file" --bw "$bw" --bytes-from-quanta --json-out "$here/results-$t.json" "${args[@]}"
  echo
done
