#!/usr/bin/env bash
# lm-eval's local-completions model against `quanta serve` on the default model: a tiny local
# multiple-choice (log-likelihood) task, tests/e2e/fixtures/lm-eval, run to completion.
#   tests/e2e/run_lm_eval_test.sh [QUANTA_BINARY]
# lm-eval goes into its own venv ($QUANTA_LM_EVAL_VENV, default build/lm-eval-venv; about 2 min the
# first time, no torch: the API models need none), from lm_eval_requirements.txt.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
binary="${1:-${QUANTA_BINARY:-$repo/build/quanta}}"
model="$repo/models/gemma-3-270m-q4_k_m.gguf"
[[ -f "$model" ]] || { echo "run_lm_eval_test.sh: $model is missing (scripts/fetch-default-model.sh)" >&2; exit 2; }
venv="${QUANTA_LM_EVAL_VENV:-$repo/build/lm-eval-venv}"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/lm_eval_requirements.txt" | cut -d' ' -f1)"
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/lm_eval_requirements.txt"
  echo "$want" > "$stamp"
fi
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
log="$(mktemp)"
"$binary" serve --model-path "$model" --host 127.0.0.1 --port "$port" --served-model-name gemma --threads 1 > "$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 600); do
  curl -sf "http://127.0.0.1:$port/health" > /dev/null && break
  kill -0 $pid 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.1
done
out="$(cd "$here/fixtures/lm-eval" && HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 "$venv/bin/lm_eval" --model local-completions \
  --model_args "model=gemma,base_url=http://127.0.0.1:$port/v1/completions,num_concurrent=1,max_retries=1" \
  --tasks quanta_tiny --include_path . 2>&1)" || { echo "$out" | tail -40; exit 1; }
echo "$out" | tail -5
# The results table: the task ran and reported an accuracy (this model gets these three right).
echo "$out" | grep -E '^\|quanta_tiny *\|.*\|acc *\|.*\| *1 *\|' > /dev/null || { echo "no accuracy of 1 for quanta_tiny" >&2; exit 1; }
echo "1 passed, 0 failed"
