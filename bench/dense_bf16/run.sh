#!/usr/bin/env bash
# quanta vs llama.cpp, bf16 weights with Qwen3-0.6B's shapes: pp512 and tg128 at 1 and 2 threads,
# the two engines' repetitions interleaved in one run. Prints a markdown table.
# Usage: bash bench/dense_bf16/run.sh [-r REPS] [-t 1,2] [-p 512] [-n 128]   (defaults: -r 3)
# First run: builds the peer (~20-30 min, see setup_llamacpp.sh) and the models (~1 min, 2.4 GB).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
cache="${QUANTA_CACHE:-/root/.cache/quanta}"
py="$cache/llamacpp-venv/bin/python"
models="$root/models/bench"
hf="$models/qwen3-0.6b-shape-bf16"
gguf="$models/qwen3-0.6b-shape-bf16.gguf"
bw="$root/build/bench-dense-bf16/bw"

bash "$here/setup_llamacpp.sh" >&2

if [ ! -f "$hf/model.safetensors" ] || [ ! -f "$hf/config.json" ] || [ ! -f "$gguf" ]; then
  "$py" "$here/make_model.py" --out "$models" --verify >&2
fi

if [ ! -x build/quanta ]; then
  flock /tmp/quanta-build.lock bash scripts/build.sh >&2
fi

if [ ! -x "$bw" ] || [ "$here/bw.c" -nt "$bw" ]; then
  mkdir -p "$(dirname "$bw")"
  flock /tmp/quanta-build.lock cc -O3 -march=native -pthread -o "$bw" "$here/bw.c"
fi

# The timed part holds the build lock, so that nobody compiles on the 2 cores meanwhile.
exec flock /tmp/quanta-build.lock "$py" "$here/run.py" --quanta "$root/build/quanta" --hf "$hf" --gguf "$gguf" \
  --bw "$bw" --json-out "$here/results.json" -r 3 "$@"
