#!/usr/bin/env bash
# Quality of the HF-format checkpoints on the real default model (Gemma 3 270M): its bf16 folder
# (tools/make_gemma_bf16_folder.py) quantized by the real tools (tools/make_gemma_hf_quants.py:
# LLM Compressor), each scored by `quanta perplexity` as bench/quant/quality.sh scores the
# msModelSlim schemes (ctx 512, the committed text, KL divergence to bf16), plus one greedy
# continuation to show the text is sensible. Writes bench/hf_formats/quality.json.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
cache="${QUANTA_CACHE:-/root/.cache/quanta}"
bf16="$root/models/gemma-3-270m-bf16"
text="$root/tests/golden/data/persuasion-chapter-1.txt"
[ -f models/gemma-3-270m-q4_k_m.gguf ] || bash scripts/fetch-default-model.sh
[ -f "$bf16/model.safetensors" ] || "$cache/tools-venv/bin/python" tools/make_gemma_bf16_folder.py --out "$bf16"
schemes=(w8a8-int8 w8a16 fp8-dynamic w4a16 w4a16-asym gptq-w4a16)
OMP_NUM_THREADS=2 "$cache/venv/llmcompressor/bin/python" tools/make_gemma_hf_quants.py "${schemes[@]}" >&2
base="$(mktemp -d)/kl-base.bin"
out="$here/quality.json"
prompt="The history of the English language"
echo "{" > "$out"
run() {  # name, model
  local name="$1" model="$2" j g kl=()
  [ "$name" = bf16 ] || kl=(--kl-divergence)
  j="$(build/quanta perplexity -m "$model" -f "$text" -c 512 --kl-divergence-base "$base" "${kl[@]}" --json)"
  g="$(build/quanta generate --model-path "$model" --prompt "$prompt" --max-new-tokens 24 --temperature 0 2>/dev/null \
       | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')"
  echo "  \"$name\": {\"perplexity\": $j, \"greedy\": $g, \"bytes\": $(du -sb "$model" | cut -f1)}," >> "$out"
  echo "$name: $(echo "$j" | tr -d '\n ' | cut -c1-200) | $g" >&2
}
run bf16 "$bf16"
for s in "${schemes[@]}"; do run "lc-$s" "$bf16/../gemma-3-270m-lc-$s"; done
echo "  \"text\": \"tests/golden/data/persuasion-chapter-1.txt\", \"ctx\": 512, \"prompt\": \"$prompt\", \"quanta\": \"$(git rev-parse --short HEAD)\"" >> "$out"
echo "}" >> "$out"
