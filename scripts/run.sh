#!/usr/bin/env bash
# The main job: build quanta, fetch the default model (Gemma 3 270M, Q4_K_M GGUF)
# and generate a continuation of a prompt. Extra arguments go to `quanta generate`;
# QUANTA_MODEL=PATH uses another model (a GGUF file or a Hugging Face folder).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
model="${QUANTA_MODEL:-$(bash scripts/fetch-default-model.sh)}"
exec build/quanta generate --model-path "$model" --prompt "${QUANTA_PROMPT:-The capital of France is}" \
  --max-new-tokens 32 --temperature 0 "$@"
