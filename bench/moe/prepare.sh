#!/usr/bin/env bash
# Writes bench/moe's models into models/bench/: the 6-layer Qwen3-30B-A3B-shape BF16 GGUF and
# llama.cpp's Q4_K_M and Q8_0 of it (LAYERS=48 for the full-size shape: ~60 GB of BF16 on disk first).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
cache="${QUANTA_CACHE:-/root/.cache/quanta}"
layers="${LAYERS:-6}"
m="$root/models/bench/qwen3-30b-a3b-shape-${layers}l"
bash bench/dense_bf16/setup_llamacpp.sh >&2
mkdir -p "$root/models/bench"
[ -f "$m-bf16.gguf" ] || "$cache/llamacpp-venv/bin/python" "$here/make_model.py" --out "$m-bf16.gguf" --layers "$layers"
for t in ${TYPES:-Q4_K_M Q8_0}; do
  [ -f "$m-$t.gguf" ] || "$cache/llamacpp-src/build/bin/llama-quantize" "$m-bf16.gguf" "$m-$t.gguf" "$t" 2 >/dev/null
done
ls -la "$root/models/bench" | grep "30b-a3b-shape-${layers}l"
