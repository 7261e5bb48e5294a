#!/usr/bin/env bash
# quanta against llama.cpp (built for this host, -DGGML_NATIVE=ON) on the 6-layer
# Qwen3-30B-A3B-shape MoE files, GGUF Q4_K_M and Q8_0 read by both engines, in one run, 2 threads:
# pp512 and tg128, each pair of engines interleaved by bench/dense_bf16/run.py.
# (Its bandwidth column counts all experts' bytes; a decode step reads only the chosen ones.)
# Models: bench/moe/prepare.sh. Usage: bash bench/moe/run.sh [REPS]   (default 2)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
cache="${QUANTA_CACHE:-/root/.cache/quanta}"
py="$cache/llamacpp-venv/bin/python"
bw="$root/build/bench-dense-bf16/bw"
m="$root/models/bench/qwen3-30b-a3b-shape-6l"
reps="${1:-2}"
bash "$here/prepare.sh" >&2
if [ ! -x "$bw" ]; then
  mkdir -p "$(dirname "$bw")"
  cc -O3 -march=native -pthread -o "$bw" bench/dense_bf16/bw.c
fi
build/quanta --version
for t in ${TYPES:-Q4_K_M Q8_0}; do
  echo "## $t"
  flock /tmp/quanta-build.lock "$py" bench/dense_bf16/run.py --quanta build/quanta --hf "$m-$t.gguf" --gguf "$m-$t.gguf" \
    --bw "$bw" -t 2 -r "$reps" --bytes-from-quanta --max-wait 300 --json-out "$here/results-$t.json"
  echo
done
