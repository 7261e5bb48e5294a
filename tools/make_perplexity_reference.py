#!/usr/bin/env python3
"""Reference perplexities of the default model (Gemma 3 270M, Q4_K_M GGUF) on the committed text,
computed with llama-perplexity's method by transformers, and (when a build is at hand) by llama.cpp's
own llama-perplexity, for `quanta perplexity`'s golden test.

The method (llama.cpp tools/perplexity/perplexity.cpp, perplexity()):
  - tokenize the whole file once, BOS added (transformers' tokenizer from the GGUF; checked against
    `build/quanta tokenize` when that binary exists);
  - n_chunks = n_tokens // n_ctx non-overlapping chunks of n_ctx tokens, each run from an empty
    context with its first token replaced by BOS;
  - score the logits at positions n_ctx//2 .. n_ctx-2 against the tokens at n_ctx//2+1 .. n_ctx-1;
  - PPL = exp(mean NLL), printed after every chunk as a running value; the final uncertainty is
    PPL * sqrt((E[NLL^2] - E[NLL]^2) / (count - 1)).

transformers loads the GGUF itself (`gguf_file=`, dtype float32: gguf-py dequantizes every tensor to
f32), eager attention, no KV cache: one full forward pass per chunk.

Writes tests/golden/fixtures/perplexity-reference.json:
  {"model", "model_sha256", "text", "text_tokens", "method",
   "transformers": {"version", "torch", "ctx": {"<n_ctx>": {"n_chunks", "n_scored", "ppl", "ppl_err",
                                                           "chunk_ppl": [running PPL after chunk 1, 2, ...],
                                                           "top1_accuracy"}}},
   "llama_perplexity": {"binary", "ctx": {"<n_ctx>": {"n_chunks", "ppl", "ppl_err", "chunk_ppl"}}}  (if run)}

Run:  /root/.cache/quanta/tools-venv/bin/python tools/make_perplexity_reference.py [--ctx 128,256,512]
(model: models/gemma-3-270m-q4_k_m.gguf from scripts/fetch-default-model.sh; pins:
tools/requirements-gguf-models.txt). llama-perplexity: $QUANTA_LLAMA_PERPLEXITY, else the build tree
under /root/.cache/quanta/llamacpp-src (build it with `flock /tmp/quanta-build.lock cmake --build
/root/.cache/quanta/llamacpp-src/build --target llama-perplexity`); skipped when absent.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "models" / "gemma-3-270m-q4_k_m.gguf"
TEXT = REPO / "tests" / "golden" / "data" / "persuasion-chapter-1.txt"
OUT = REPO / "tests" / "golden" / "fixtures" / "perplexity-reference.json"
QUANTA = REPO / "build" / "quanta"
LLAMA_PERPLEXITY = Path(
    os.environ.get("QUANTA_LLAMA_PERPLEXITY", "/root/.cache/quanta/llamacpp-src/build/bin/llama-perplexity")
)

METHOD = (
    "llama-perplexity: BOS-prefixed tokenization, n_tokens // n_ctx non-overlapping chunks, fresh context per "
    "chunk, first token of each chunk replaced by BOS, logits at positions n_ctx//2 .. n_ctx-2 scored against "
    "the next token; PPL = exp(mean NLL), err = PPL * sqrt(var(NLL) / (count - 1))"
)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def quanta_ids(text: str) -> list[int] | None:
    if not QUANTA.exists():
        return None
    r = subprocess.run([str(QUANTA), "tokenize", "--model-path", str(MODEL), "-"], input=text, capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    return [int(x) for x in r.stdout.split()]


@torch.no_grad()
def transformers_ppl(model, ids: torch.Tensor, bos: int, n_ctx: int) -> dict:
    n_chunks = len(ids) // n_ctx
    first = n_ctx // 2
    nll_sum = nll_sq = 0.0
    count = correct = 0
    running = []
    for c in range(n_chunks):
        chunk = ids[c * n_ctx : (c + 1) * n_ctx].clone()
        chunk[0] = bos
        # Logits of positions first .. n_ctx-1; the last predicts past the chunk and is dropped.
        logits = model(input_ids=chunk[None], use_cache=False, logits_to_keep=n_ctx - first).logits[0, :-1]
        logits = logits.double()
        target = chunk[first + 1 :]
        nll = -torch.log_softmax(logits, dim=-1).gather(1, target[:, None])[:, 0]
        nll_sum += float(nll.sum())
        nll_sq += float((nll * nll).sum())
        count += len(nll)
        correct += int((logits.argmax(-1) == target).sum())
        running.append(round(math.exp(nll_sum / count), 6))
    mean = nll_sum / count
    var = nll_sq / count - mean * mean
    ppl = math.exp(mean)
    return {
        "n_chunks": n_chunks,
        "n_scored": count,
        "ppl": ppl,
        "ppl_err": ppl * math.sqrt(var / (count - 1)),
        "chunk_ppl": running,
        "top1_accuracy": correct / count,
    }


def llama_ppl(n_ctx: int, threads: int) -> dict | None:
    if not LLAMA_PERPLEXITY.exists():
        return None
    r = subprocess.run(
        [str(LLAMA_PERPLEXITY), "-m", str(MODEL), "-f", str(TEXT), "-c", str(n_ctx), "-b", str(n_ctx), "-t",
         str(threads)],
        capture_output=True, text=True,
    )
    out = r.stdout + r.stderr
    final = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", out)
    if r.returncode != 0 or not final:
        raise RuntimeError(f"llama-perplexity failed:\n{out[-3000:]}")
    chunks = [float(x) for x in re.findall(r"\[\d+\]([0-9.]+),", out)]
    return {"n_chunks": len(chunks), "ppl": float(final.group(1)), "ppl_err": float(final.group(2)),
            "chunk_ppl": chunks}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ctx", default="128,256,512", help="comma-separated context sizes")
    args = ap.parse_args()
    ctxs = [int(x) for x in args.ctx.split(",")]
    threads = int(os.environ.get("QUANTA_REF_THREADS", "1"))
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if not MODEL.exists():
        print(f"{MODEL} is missing: run scripts/fetch-default-model.sh", file=sys.stderr)
        return 2

    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(str(MODEL.parent), gguf_file=MODEL.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(MODEL.parent), gguf_file=MODEL.name, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    bos = tok.bos_token_id
    text = TEXT.read_text(encoding="utf-8")
    ids = tok(text)["input_ids"]
    assert ids[0] == bos, "transformers' tokenizer did not add BOS"
    q = quanta_ids(text)
    if q is not None and q != ids:
        first = next((i for i, (a, b) in enumerate(zip(q, ids)) if a != b), min(len(q), len(ids)))
        raise RuntimeError(f"quanta and transformers tokenize the text differently at token {first}")
    print(f"loaded in {time.time() - t0:.0f}s; {len(ids)} tokens, bos {bos}", flush=True)
    ids_t = torch.tensor(ids, dtype=torch.int64)

    out = {
        "model": MODEL.name,
        "model_sha256": sha256(MODEL),
        "text": str(TEXT.relative_to(REPO)),
        "text_tokens": len(ids),
        "method": METHOD,
        "tokenizer_checked_against_quanta": q is not None,
        "transformers": {"version": transformers.__version__, "torch": torch.__version__.split("+")[0], "ctx": {}},
    }
    for n_ctx in ctxs:
        r = transformers_ppl(model, ids_t, bos, n_ctx)
        out["transformers"]["ctx"][str(n_ctx)] = r
        print(f"transformers n_ctx {n_ctx}: PPL {r['ppl']:.4f} +/- {r['ppl_err']:.5f} over {r['n_chunks']} chunks "
              f"({time.time() - t0:.0f}s)", flush=True)
    if LLAMA_PERPLEXITY.exists():
        out["llama_perplexity"] = {"binary": str(LLAMA_PERPLEXITY), "ctx": {}}
        for n_ctx in ctxs:
            r = llama_ppl(n_ctx, max(threads, 2))
            out["llama_perplexity"]["ctx"][str(n_ctx)] = r
            print(f"llama-perplexity n_ctx {n_ctx}: PPL {r['ppl']:.4f} +/- {r['ppl_err']:.5f}", flush=True)
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(REPO)} in {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
