#!/usr/bin/env python3
"""Reference outputs of the default model (Gemma 3 270M, Q4_K_M GGUF) computed by transformers.

transformers loads the GGUF file itself (`from_pretrained(dir, gguf_file=..., dtype=float32)`: gguf-py
dequantizes every tensor to f32), so quanta, which also dequantizes at load, runs the same weights.
Saved to tests/golden/fixtures/gemma3-270m-reference.safetensors:

  prompt_<i>         int64   [L_i]        BOS + the ids of PROMPTS[i] (transformers' tokenizer, which must
                                          agree with `quanta tokenize` on the same file when that is built)
  greedy_<i>         int64   [32]         32 greedy tokens: a loop of full forward passes + argmax, f32,
                                          eager attention, no KV cache, EOS ignored
  greedy_margin_<i>  float32 [32]         top-1 minus top-2 logit at each greedy step
  text_ids           int64   [N]          BOS + the ids of tests/golden/data/persuasion-chapter-1.txt
  top1               int32   [C, 255]     teacher-forced pass, the llama-perplexity method: the text in C =
                                          N // 512 chunks of 512 tokens, each run with a fresh context and its
                                          first token replaced by BOS; positions 256..510 of each chunk are
                                          scored (they predict tokens 257..511). top1 = argmax of the logits
  logprob            float32 [C, 255]     log-softmax of the true next token at those positions
  margin             float32 [C, 255]     top-1 minus top-2 logit at those positions

The metadata key `quanta_reference` holds JSON: prompts, model sha256, versions, perplexity
(exp of the mean negative logprob over all scored positions) and the top-1 accuracy on the text.

Run:  /root/.cache/quanta/tools-venv/bin/python tools/make_default_model_reference.py [MODEL.gguf]
(default: models/gemma-3-270m-q4_k_m.gguf, fetched by scripts/fetch-default-model.sh). Pins:
tools/requirements-gguf-models.txt. Single-threaded torch for reproducibility; it takes a few minutes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported (it reads this at import)

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO / "models" / "gemma-3-270m-q4_k_m.gguf"
TEXT = REPO / "tests" / "golden" / "data" / "persuasion-chapter-1.txt"
OUT = REPO / "tests" / "golden" / "fixtures" / "gemma3-270m-reference.safetensors"
QUANTA = REPO / "build" / "quanta"

PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea, there lived",
    "The three primary colors are",
    "To make a good cup of tea, you should first",
]
N_GREEDY = 32
N_CTX = 512


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def quanta_ids(model: Path, text: str) -> list[int] | None:
    if not QUANTA.exists():
        return None
    r = subprocess.run(
        [str(QUANTA), "tokenize", "--model-path", str(model), "-"], input=text, capture_output=True, text=True
    )
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    return [int(x) for x in r.stdout.split()]


@torch.no_grad()
def greedy(model, prompt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    seq = prompt.clone()
    toks, margins = [], []
    for _ in range(N_GREEDY):
        last = model(input_ids=seq[None], use_cache=False, logits_to_keep=1).logits[0, -1].float()
        top2 = torch.topk(last, 2).values
        margins.append(float(top2[0] - top2[1]))
        tok = int(torch.argmax(last))
        toks.append(tok)
        seq = torch.cat([seq, torch.tensor([tok], dtype=torch.int64)])
    return torch.tensor(toks, dtype=torch.int64), torch.tensor(margins, dtype=torch.float32)


def main(argv: list[str]) -> int:
    torch.set_num_threads(int(os.environ.get("QUANTA_REF_THREADS", "1")))
    torch.use_deterministic_algorithms(True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    model_path = Path(argv[0]).resolve() if argv else DEFAULT_MODEL
    if not model_path.exists():
        print(f"{model_path} is missing: run scripts/fetch-default-model.sh", file=sys.stderr)
        return 2

    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(str(model_path.parent), gguf_file=model_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(model_path.parent), gguf_file=model_path.name, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    bos = tok.bos_token_id
    print(f"loaded in {time.time() - t0:.0f}s; bos {bos}", flush=True)

    def encode(text: str) -> list[int]:
        ids = tok(text)["input_ids"]
        assert ids[0] == bos, "transformers' tokenizer did not add BOS"
        q = quanta_ids(model_path, text)
        if q is not None and q != ids:
            first = next((i for i, (a, b) in enumerate(zip(q, ids)) if a != b), min(len(q), len(ids)))
            raise RuntimeError(f"quanta and transformers tokenize differently at token {first}: {text[:60]!r}")
        return ids

    tensors: dict[str, torch.Tensor] = {}
    info: dict = {"prompts": PROMPTS, "greedy_text": [], "min_greedy_margin": []}
    for i, text in enumerate(PROMPTS):
        prompt = torch.tensor(encode(text), dtype=torch.int64)
        toks, margins = greedy(model, prompt)
        tensors[f"prompt_{i}"] = prompt
        tensors[f"greedy_{i}"] = toks
        tensors[f"greedy_margin_{i}"] = margins
        info["greedy_text"].append(tok.decode(toks.tolist()))
        info["min_greedy_margin"].append(round(float(margins.min()), 5))
        print(f"prompt {i}: {text!r} -> {info['greedy_text'][-1]!r} (min margin {margins.min():.4f})", flush=True)

    text = TEXT.read_text(encoding="utf-8")
    ids = torch.tensor(encode(text), dtype=torch.int64)
    n_chunks = len(ids) // N_CTX
    first = N_CTX // 2
    top1 = torch.empty(n_chunks, N_CTX - 1 - first, dtype=torch.int32)
    logprob = torch.empty(n_chunks, N_CTX - 1 - first, dtype=torch.float32)
    margin = torch.empty(n_chunks, N_CTX - 1 - first, dtype=torch.float32)
    with torch.no_grad():
        for c in range(n_chunks):
            chunk = ids[c * N_CTX : (c + 1) * N_CTX].clone()
            chunk[0] = bos
            # logits of positions first..N_CTX-1; the last one predicts past the chunk and is dropped.
            logits = model(input_ids=chunk[None], use_cache=False, logits_to_keep=N_CTX - first).logits[0, :-1].float()
            target = chunk[first + 1 :]
            top2 = torch.topk(logits, 2, dim=-1)
            top1[c] = top2.indices[:, 0].to(torch.int32)
            margin[c] = top2.values[:, 0] - top2.values[:, 1]
            logprob[c] = torch.log_softmax(logits, dim=-1).gather(1, target[:, None])[:, 0]
            print(f"chunk {c}: nll {-logprob[c].mean():.4f} ({time.time() - t0:.0f}s)", flush=True)
    tensors["text_ids"] = ids
    tensors["top1"] = top1
    tensors["logprob"] = logprob
    tensors["margin"] = margin
    targets = torch.stack([ids[c * N_CTX + first + 1 : (c + 1) * N_CTX] for c in range(n_chunks)])
    info.update(
        model=model_path.name,
        model_sha256=sha256(model_path),
        text=str(TEXT.relative_to(REPO)),
        text_tokens=len(ids),
        chunks=n_chunks,
        n_ctx=N_CTX,
        scored=int(top1.numel()),
        perplexity=math.exp(-float(logprob.double().mean())),
        top1_accuracy=float((top1 == targets).double().mean()),
        transformers=transformers.__version__,
        torch=torch.__version__.split("+")[0],
        tokenizer_checked_against_quanta=QUANTA.exists(),
    )
    save_file(
        {k: v.contiguous() for k, v in tensors.items()},
        str(OUT),
        metadata={"quanta_reference": json.dumps(info, sort_keys=True)},
    )
    os.chmod(OUT, 0o644)
    print(f"perplexity {info['perplexity']:.4f}, top-1 accuracy {info['top1_accuracy']:.4f}, "
          f"{info['scored']} scored positions; wrote {OUT.relative_to(REPO)} in {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
