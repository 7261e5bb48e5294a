#!/usr/bin/env bash
# quanta's AVX-512 and AMX tiers against llama.cpp built for the same host, in one run, 2 threads:
# pp512 and tg128 on the Qwen3-1.7B-shape files (GGUF Q4_0, Q4_K_M, Q8_0 read by both engines;
# msModelSlim W8A8_DYNAMIC against llama.cpp Q8_0) and the default model, each pair of engines
# interleaved by bench/dense_bf16/run.py. Then the regression check of the AVX2 tier: an earlier
# quanta build (OLD_QUANTA, a binary) and this one, both with QUANTA_ISA=avx2, alternating.
# Models: bench/quant/prepare.sh (+ Q4_K_M by llama-quantize). The peer: bench/dense_bf16/setup_llamacpp.sh
# (on an AMX host its CPU backend is built with clang; GCC 12 miscompiles ggml's AMX code).
# Usage: bash bench/x86/run.sh [REPS]   (default 2; samples in bench/x86/results-*.json)
#        OLD_QUANTA=/path/to/old/quanta bash bench/x86/run.sh   adds the AVX2 regression rows
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
cache="${QUANTA_CACHE:-/root/.cache/quanta}"
py="$cache/llamacpp-venv/bin/python"
bw="$root/build/bench-dense-bf16/bw"
m="$root/models/bench/qwen3-1.7b-shape"
reps="${1:-2}"
bash bench/quant/prepare.sh >&2
[ -f "$m-Q4_K_M.gguf" ] || "$cache/llamacpp-src/build/bin/llama-quantize" "$m-bf16.gguf" "$m-Q4_K_M.gguf" Q4_K_M >/dev/null
bash scripts/fetch-default-model.sh >&2
if [ ! -x "$bw" ]; then
  mkdir -p "$(dirname "$bw")"
  cc -O3 -march=native -pthread -o "$bw" bench/dense_bf16/bw.c
fi
build/quanta --version
pair() {  # name, quanta model, llama.cpp file
  echo "## $1"
  flock /tmp/quanta-build.lock "$py" bench/dense_bf16/run.py --quanta build/quanta --hf "$2" --gguf "$3" \
    --bw "$bw" -t 2 -r "$reps" --bytes-from-quanta --max-wait 120 --json-out "$here/results-$1.json"
  echo
}
for t in Q4_0 Q4_K_M Q8_0; do pair "$t" "$m-$t.gguf" "$m-$t.gguf"; done
pair W8A8_DYNAMIC-vs-Q8_0 "$m-modelslim-w8a8-dynamic" "$m-Q8_0.gguf"
pair default "$root/models/gemma-3-270m-q4_k_m.gguf" "$root/models/gemma-3-270m-q4_k_m.gguf"
if [ -n "${OLD_QUANTA:-}" ]; then
  echo "## AVX2 tier: $OLD_QUANTA against build/quanta, QUANTA_ISA=avx2, alternating"
  for f in "$m-Q4_0.gguf" "$m-Q4_K_M.gguf" "$m-Q8_0.gguf" "$m-modelslim-w8a8-dynamic"; do
    for rep in $(seq "$reps"); do
      for bin in "$OLD_QUANTA" build/quanta; do
        echo "$(basename "$f") $bin: $(QUANTA_ISA=avx2 flock /tmp/quanta-build.lock "$bin" bench -m "$f" -p 512 -n 128 -t 2 -r 1 2>&1 | grep -E 'pp512|tg128' | awk -F'|' '{printf "%s %s ", $4, $5}')"
      done
    done
  done
fi
