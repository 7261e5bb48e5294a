#!/usr/bin/env bash
# Writes this benchmark's models into models/bench/: the bf16 Qwen3-1.7B-shape folder and GGUF
# (bench/quant/prepare.sh, random weights), llama.cpp's Q4_0 and Q4_K_M of the GGUF, and the
# AWQ W4A16 g128 and GPTQ W4A16 g128 folders written from the bf16 folder by auto-round's own
# exporters (quantize.py; the venv holds tools/requirements-hf-quant.txt).
# Usage: bash bench/hf_formats/prepare.sh   (AUTOROUND_VENV, default /work/venv/autoround)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
cache="${QUANTA_CACHE:-/root/.cache/quanta}"
venv="${AUTOROUND_VENV:-/work/venv/autoround}"
m="$root/models/bench/qwen3-1.7b-shape"
bash bench/quant/prepare.sh >&2
[ -f "$m-Q4_K_M.gguf" ] || "$cache/llamacpp-src/build/bin/llama-quantize" "$m-bf16.gguf" "$m-Q4_K_M.gguf" Q4_K_M >/dev/null
if ! "$venv/bin/python" -c "import auto_round" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r tools/requirements-hf-quant.txt
fi
"$venv/bin/python" "$here/quantize.py" "$m-bf16" "$m" awq:auto_awq:asym:4:128 gptq:auto_gptq:sym:4:128
ls -la "$root/models/bench" | grep 1.7b
