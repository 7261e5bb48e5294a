#!/usr/bin/env bash
# The main job: build quanta and generate 32 tokens with a small model.
# Until the tokenizer and GGUF work lands, the model is the committed tiny
# Qwen3 test model and the prompt is given as token ids.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
model="${QUANTA_MODEL:-tests/golden/fixtures/qwen3-qknorm-bf16}"
exec build/quanta generate --model-path "$model" --prompt-ids 17,42,99,123,7 --max-new-tokens 32 --temperature 0 "$@"
