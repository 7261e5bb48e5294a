#!/usr/bin/env bash
# Writes the benchmark's models into models/bench/: the bf16 Qwen3-1.7B-shape model (HF + GGUF),
# its msModelSlim-layout quantizations by `quanta quantize`, and llama.cpp's Q8_0 / Q4_0 of the GGUF.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
cache="${QUANTA_CACHE:-/root/.cache/quanta}"
m="$root/models/bench/qwen3-1.7b-shape"
bash bench/dense_bf16/setup_llamacpp.sh >&2
[ -f "$m-bf16/model.safetensors" ] && [ -f "$m-bf16.gguf" ] || \
  "$cache/llamacpp-venv/bin/python" "$here/make_model.py" --out "$root/models/bench"
for method in modelslim-w8a8-dynamic modelslim-w4a4-dynamic mxfp8 mxfp4; do
  [ -f "$m-$method/quant_model_description.json" ] || build/quanta quantize --method "$method" "$m-bf16" "$m-$method"
done
for t in Q8_0 Q4_0; do
  [ -f "$m-$t.gguf" ] || "$cache/llamacpp-src/build/bin/llama-quantize" "$m-bf16.gguf" "$m-$t.gguf" "$t" >/dev/null
done
ls -la "$root/models/bench" | grep 1.7b
