#!/usr/bin/env bash
# AWQ W4A16 g128 and GPTQ W4A16 g128 folders (written by auto-round from the same random-weight
# Qwen3-1.7B-shape bf16 folder) in quanta, against llama.cpp's Q4_0 and Q4_K_M of that model, in
# one run, 2 threads, each pair of engines interleaved by bench/dense_bf16/run.py; then the same
# pairs with QUANTA_ISA=avx2 (quanta's AVX2 tier; llama.cpp stays native).
# Models: bench/hf_formats/prepare.sh. The peer: bench/dense_bf16/setup_llamacpp.sh.
# Usage: bash bench/hf_formats/run.sh [REPS]   (default 2; samples in bench/hf_formats/results-*.json)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
cache="${QUANTA_CACHE:-/root/.cache/quanta}"
py="$cache/llamacpp-venv/bin/python"
bw="$root/build/bench-dense-bf16/bw"
m="$root/models/bench/qwen3-1.7b-shape"
reps="${1:-2}"
bash "$here/prepare.sh" >&2
if [ ! -x "$bw" ]; then
  mkdir -p "$(dirname "$bw")"
  cc -O3 -march=native -pthread -o "$bw" bench/dense_bf16/bw.c
fi
build/quanta --version
pair() {  # name, quanta folder, llama.cpp file
  echo "## $1 ${QUANTA_ISA:+(QUANTA_ISA=$QUANTA_ISA)}"
  flock /tmp/quanta-build.lock "$py" bench/dense_bf16/run.py --quanta build/quanta --hf "$2" --gguf "$3" \
    --bw "$bw" -t 2 -r "$reps" --bytes-from-quanta --max-wait 120 --json-out "$here/results-$1${QUANTA_ISA:+-$QUANTA_ISA}.json"
  echo
}
for isa in "" avx2; do
  export QUANTA_ISA="$isa"
  [ -n "$isa" ] || unset QUANTA_ISA
  for f in awq gptq; do
    for t in Q4_0 Q4_K_M; do pair "$f-vs-$t" "$m-$f" "$m-$t.gguf"; done
  done
done
