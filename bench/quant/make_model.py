#!/usr/bin/env python3
"""Random-weight bf16 model with Qwen3-1.7B's shapes (hidden 2048, intermediate 6144, 28 layers,
16 query / 8 KV heads, head_dim 128, vocab 151936, tied embeddings), written as a Hugging Face folder
and as a BF16 GGUF holding the same bits. Reuses bench/dense_bf16/make_model.py (same weight
distribution, seed, GGUF metadata and --verify), only with these shapes.
Usage: python bench/quant/make_model.py --out models/bench [--verify]
"""
import argparse
import json
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "dense_bf16"))
import make_model as base  # noqa: E402

base.HIDDEN = 2048
base.FFN = 6144
base.CONFIG["hidden_size"] = base.HIDDEN
base.CONFIG["intermediate_size"] = base.FFN


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=base.DEFAULT_SEED)
    ap.add_argument("--verify", action="store_true")
    a = ap.parse_args()
    hf_dir = os.path.join(os.path.abspath(a.out), "qwen3-1.7b-shape-bf16")
    gguf_path = hf_dir + ".gguf"
    os.makedirs(hf_dir, exist_ok=True)
    weights = base.make_weights(a.seed)
    with open(os.path.join(hf_dir, "config.json"), "w") as f:
        json.dump(base.CONFIG, f, indent=2)
        f.write("\n")
    base.write_safetensors(os.path.join(hf_dir, "model.safetensors"), weights)
    base.write_gguf(gguf_path, weights)
    print(f"wrote {hf_dir} and {gguf_path}")
    if a.verify:
        base.verify(hf_dir, gguf_path)


if __name__ == "__main__":
    sys.exit(main())
