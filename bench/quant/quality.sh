#!/usr/bin/env bash
# Quality of each quantization scheme on the real default model (Gemma 3 270M): its bf16 Hugging
# Face folder (tools/make_gemma_bf16_folder.py) quantized by `quanta quantize`, and the online
# --quantization methods, scored by `quanta perplexity` (llama-perplexity's method, ctx 512) on the
# committed text, with the KL divergence of every scheme to bf16, and their speed by `quanta bench`
# (pp512 / tg128, 2 threads). Writes bench/quant/quality.json and speed.json, and draws both with
# `quanta report` into bench/quant/schemes.svg.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
cache="${QUANTA_CACHE:-/root/.cache/quanta}"
bf16="$root/models/gemma-3-270m-bf16"
text="$root/tests/golden/data/persuasion-chapter-1.txt"
[ -f models/gemma-3-270m-q4_k_m.gguf ] || bash scripts/fetch-default-model.sh
[ -f "$bf16/model.safetensors" ] || "$cache/tools-venv/bin/python" tools/make_gemma_bf16_folder.py --out "$bf16"
for method in modelslim-w8a8-dynamic modelslim-w4a4-dynamic mxfp8 mxfp4; do
  [ -f "$bf16-$method/quant_model_description.json" ] || build/quanta quantize --method "$method" "$bf16" "$bf16-$method" >&2
done
base="$(mktemp -d)/kl-base.bin"
out="$here/quality.json"
speed="$here/speed.json"
echo "{" > "$out"
echo "{" > "$speed"
run() {  # name, model, extra args
  local name="$1" model="$2"; shift 2
  local j
  if [ "$name" = bf16 ]; then
    j="$(build/quanta perplexity -m "$model" -f "$text" -c 512 --kl-divergence-base "$base" --json "$@")"
  else
    j="$(build/quanta perplexity -m "$model" -f "$text" -c 512 --kl-divergence-base "$base" --kl-divergence --json "$@")"
  fi
  echo "  \"$name\": $j," >> "$out"
  echo "$name: $j" | cut -c1-300 >&2
  j="$(build/quanta bench -m "$model" -p 512 -n 128 -t 2 -r 2 --json "$@")"
  echo "  \"$name\": $j," >> "$speed"
}
run bf16 "$bf16"
run W8A8_DYNAMIC "$bf16-modelslim-w8a8-dynamic"
run W4A4_DYNAMIC "$bf16-modelslim-w4a4-dynamic"
run W8A8_MXFP8 "$bf16-mxfp8"
run W4A4_MXFP4 "$bf16-mxfp4"
run online-w8a8_int8 "$bf16" --quantization w8a8_int8
run online-mxfp8 "$bf16" --quantization mxfp8
run "Q4_K_M GGUF (the float folder's source)" models/gemma-3-270m-q4_k_m.gguf
echo "  \"text\": \"tests/golden/data/persuasion-chapter-1.txt\", \"ctx\": 512, \"quanta\": \"$(git rev-parse --short HEAD)\"" >> "$out"
echo "}" >> "$out"
echo "  \"quanta\": \"$(git rev-parse --short HEAD)\"" >> "$speed"
echo "}" >> "$speed"
build/quanta report "$out" "$speed" --svg "$here/schemes.svg" --title "Gemma 3 270M: every scheme against bf16"
