#!/usr/bin/env bash
# Encode throughput: quanta vs Hugging Face tokenizers (single thread), same text, same run.
#   bench/tokenizer/run.sh QUANTA_BENCH_BINARY [PYTHON]
# QUANTA_BENCH_BINARY is tokenizer_bench.cc built against quanta (see README.md);
# PYTHON has tokenizers 0.23.3 (tools/requirements-tokenizers.txt).
# The Gemma 3 HF tokenizer.json is made by transformers' GGUF conversion, which
# needs torch: set TORCH_PYTHON to a Python that has it (default: PYTHON).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bench=$1
py=${2:-python3}
torch_py=${TORCH_PYTHON:-$py}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fx=$root/tests/unit/data/tokenizers
"$py" "$here/make_text.py" "$work/multi.txt" 1.5
cat /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/Apache-2.0 /usr/share/common-licenses/MPL-2.0 \
  "$work/multi.txt" > "$work/text.txt"
"$torch_py" - "$fx/gemma3" "$work/gemma3.json" <<'PY'
import sys
from transformers import AutoTokenizer
AutoTokenizer.from_pretrained(sys.argv[1], gguf_file="vocab.gguf").backend_tokenizer.save(sys.argv[2])
PY
echo "text: $(wc -c < "$work/text.txt") bytes"
for mode in whole lines; do
  echo "== qwen2 ($mode)"
  "$bench" "$fx/qwen2" "$work/text.txt" 5 "$mode"
  "$py" "$here/hf_bench.py" "$fx/qwen2/tokenizer.json" "$work/text.txt" 5 "$mode"
  echo "== gemma3 ($mode)"
  "$bench" "$fx/gemma3/vocab.gguf" "$work/text.txt" 3 "$mode"
  "$py" "$here/hf_bench.py" "$work/gemma3.json" "$work/text.txt" 3 "$mode"
done
