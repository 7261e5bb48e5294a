#!/usr/bin/env bash
# Speed of the quantized schemes on Qwen3-1.7B shapes (random weights), side by side with llama.cpp:
# pp512 and tg128 at 2 threads, each quanta scheme paired with the llama.cpp type of the same width:
#   bf16 (quanta) vs BF16 (llama.cpp); W8A8_DYNAMIC and W8A8_MXFP8 vs Q8_0; W4A4_DYNAMIC and W4A4_MXFP4 vs Q4_0.
# Models: bench/quant/prepare.sh (bf16 HF + GGUF, `quanta quantize`, llama-quantize).
# Measurement: bench/dense_bf16/run.py (llama-bench's definitions, engines interleaved, read bandwidth).
# Usage: bash bench/quant/run.sh [REPS] [PAIR ...]   (default 1 and all pairs, e.g. mxfp4:Q4_0;
# results appended to bench/quant/results.md, samples in bench/quant/results-*.json)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
cache="${QUANTA_CACHE:-/root/.cache/quanta}"
py="$cache/llamacpp-venv/bin/python"
bw="$root/build/bench-dense-bf16/bw"
m="$root/models/bench/qwen3-1.7b-shape"
reps="${1:-1}"
shift $(( $# > 0 ? 1 : 0 ))
pairs=("$@")
[ ${#pairs[@]} -gt 0 ] || pairs=("bf16:bf16" "modelslim-w8a8-dynamic:Q8_0" "mxfp8:Q8_0" "modelslim-w4a4-dynamic:Q4_0" "mxfp4:Q4_0")
bash "$here/prepare.sh" >&2
if [ ! -x "$bw" ]; then
  mkdir -p "$(dirname "$bw")"
  flock /tmp/quanta-build.lock cc -O3 -march=native -pthread -o "$bw" bench/dense_bf16/bw.c
fi
for pair in "${pairs[@]}"; do
  q="${pair%%:*}" l="${pair##*:}"
  echo "## quanta $q vs llama.cpp $l" | tee -a "$here/results.md"
  flock /tmp/quanta-build.lock "$py" bench/dense_bf16/run.py --quanta build/quanta --hf "$m-$q" --gguf "$m-$l.gguf" \
    --bw "$bw" -t 2 -r "$reps" --bytes-from-quanta --max-wait 120 --json-out "$here/results-$q.json" \
    | tee -a "$here/results.md"
done
