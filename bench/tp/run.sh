#!/usr/bin/env bash
# Tensor parallelism on one host: `quanta bench` at 1 rank x 2 threads vs 2 ranks x 1 thread
# (--tp-size 2), prefill 512 and decode 128 tokens, on the default model (Gemma 3 270M Q4_K_M)
# and on the Qwen3-0.6B-shape random model of bench/dense_bf16 quantized to Q4_K_M by
# llama.cpp's llama-quantize (made once into $QUANTA_TP_BENCH_MODELS). Prints a markdown
# table and writes results.json: tokens/s, the all-reduce time per call and its share of
# rank 0's time, and the peak resident memory of every rank.
# Usage: bash bench/tp/run.sh [-r REPS]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
reps="${1:-3}"
cache="${QUANTA_CACHE:-/root/.cache/quanta}"
models="${QUANTA_TP_BENCH_MODELS:-$cache/tp-bench}"
qwen="$models/qwen3-0.6b-shape-Q4_K_M.gguf"
if [ ! -f "$qwen" ]; then
  mkdir -p "$models"
  flock /tmp/quanta-build.lock env OMP_NUM_THREADS=2 "$cache/llamacpp-venv/bin/python" \
    "$root/bench/dense_bf16/make_model.py" --out "$models" >&2
  flock /tmp/quanta-build.lock "$cache/llamacpp-src/build/bin/llama-quantize" \
    "$models/qwen3-0.6b-shape-bf16.gguf" "$qwen.tmp" Q4_K_M >&2 && mv "$qwen.tmp" "$qwen"
fi
out="$(mktemp -d)"
runs=()
for model in "$root/models/gemma-3-270m-q4_k_m.gguf" "$qwen"; do
  for tp in 1 2; do
    threads=$((2 / tp))
    name="$(basename "$model" .gguf)-tp$tp"
    # The timed part holds the build lock, so that nobody compiles on the 2 cores meanwhile.
    flock /tmp/quanta-build.lock build/quanta bench -m "$model" -p 512 -n 128 -t "$threads" -r "$reps" --json \
      --tp-size "$tp" > "$out/$name.json" 2> "$out/$name.err"
    runs+=("$name")
  done
done
python3 - "$out" "$here/results.json" "${runs[@]}" <<'PY'
import json, re, sys
out, dest, names = sys.argv[1], sys.argv[2], sys.argv[3:]
rows = []
for n in names:
    res = json.load(open(f"{out}/{n}.json"))
    err = open(f"{out}/{n}.err").read()
    rss = {int(r): float(mb) for r, mb in re.findall(r"rank (\d+): peak resident memory ([\d.]+) MB", err)}
    for r in res:
        rows.append({"run": n, "test": f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}",
                     "tp_size": r["tp_size"], "threads_per_rank": r["n_threads"], "avg_ts": round(r["avg_ts"], 2),
                     "stddev_ts": round(r["stddev_ts"], 2), "allreduce_us_per_call": round(r["allreduce_us_per_call"], 1),
                     "allreduce_share": round(r["allreduce_share"], 4),
                     "peak_rss_mb_per_rank": [rss[k] for k in sorted(rss)]})
json.dump(rows, open(dest, "w"), indent=1)
print("| run | test | ranks x threads | t/s | all-reduce us/call | all-reduce share | peak RSS MB per rank |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['run']} | {r['test']} | {r['tp_size']} x {r['threads_per_rank']} | {r['avg_ts']} ± {r['stddev_ts']} | "
          f"{r['allreduce_us_per_call']} | {100 * r['allreduce_share']:.1f}% | {', '.join(f'{m:.0f}' for m in r['peak_rss_mb_per_rank'])} |")
PY
