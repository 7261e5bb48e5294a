#!/usr/bin/env python3
"""The real default model (Gemma 3 270M, models/gemma-3-270m-bf16 from tools/make_gemma_bf16_folder.py)
quantized by LLM Compressor (its `oneshot` with a QuantizationModifier preset scheme: round to nearest,
dynamic per-token activations where the scheme has them, so no calibration data is needed), into
models/gemma-3-270m-lc-<scheme>/, for bench/hf_formats/quality.sh (perplexity and KL against bf16).
lm_head is left out as LLM Compressor's examples do (it is the tied embedding here).

Usage: /root/.cache/quanta/venv/llmcompressor/bin/python tools/make_gemma_hf_quants.py [scheme ...]
Pins: tools/requirements-llmcompressor.txt.
"""
import argparse
import os
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Folder suffix: LLM Compressor preset scheme.
SCHEMES = {"w8a8-int8": "W8A8", "w4a16": "W4A16", "w4a16-asym": "W4A16_ASYM", "w8a16": "W8A16",
           "fp8-dynamic": "FP8_DYNAMIC"}


def main():
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier

    ap = argparse.ArgumentParser()
    ap.add_argument("schemes", nargs="*", default=list(SCHEMES))
    ap.add_argument("--src", default=os.path.join(ROOT, "models", "gemma-3-270m-bf16"))
    a = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(a.src)
    for name in a.schemes:
        dst = f"{a.src.removesuffix('-bf16')}-lc-{name}"
        if os.path.exists(os.path.join(dst, "config.json")):
            continue
        t0 = time.time()
        model = AutoModelForCausalLM.from_pretrained(a.src, dtype=torch.bfloat16).eval()
        oneshot(model=model, recipe=QuantizationModifier(targets="Linear", scheme=SCHEMES[name], ignore=["lm_head"]))
        model.save_pretrained(dst, save_compressed=True)
        tok.save_pretrained(dst)
        print(f"{name}: {dst} in {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
