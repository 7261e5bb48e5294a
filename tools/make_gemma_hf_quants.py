#!/usr/bin/env python3
"""The real default model (Gemma 3 270M, models/gemma-3-270m-bf16 from tools/make_gemma_bf16_folder.py)
quantized by LLM Compressor (its `oneshot` with a QuantizationModifier preset scheme: round to nearest,
dynamic per-token activations where the scheme has them, so no calibration data is needed), into
models/gemma-3-270m-lc-<scheme>/, for bench/hf_formats/quality.sh (perplexity and KL against bf16).
lm_head is left out as LLM Compressor's examples do (it is the tied embedding here).

gptq-w4a16 is the one calibrated scheme: LLM Compressor's GPTQModifier (W4A16, g128, symmetric) on 16 x 512
tokens of quanta's own English documentation (README.md, docs/*.md, bench/*/README.md: not the evaluation text
tests/golden/data/persuasion-chapter-1.txt; this host has no network to fetch a public-domain book).

Usage: /root/.cache/quanta/venv/llmcompressor/bin/python tools/make_gemma_hf_quants.py [scheme ...]
Pins: tools/requirements-llmcompressor.txt.
"""
import argparse
import glob
import os
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Folder suffix: LLM Compressor preset scheme.
SCHEMES = {"w8a8-int8": "W8A8", "w4a16": "W4A16", "w4a16-asym": "W4A16_ASYM", "w8a16": "W8A16",
           "fp8-dynamic": "FP8_DYNAMIC", "gptq-w4a16": "W4A16"}
CALIB_SAMPLES, CALIB_LEN = 16, 512


def calibration(tok):
    """CALIB_SAMPLES windows of CALIB_LEN tokens of the repository's docs, as a datasets.Dataset."""
    from datasets import Dataset
    paths = ["README.md"] + sorted(glob.glob("docs/*.md", root_dir=ROOT)) + sorted(glob.glob("bench/*/README.md", root_dir=ROOT))
    ids = tok("\n\n".join(open(os.path.join(ROOT, p)).read() for p in paths))["input_ids"]
    rows = [ids[i * CALIB_LEN:(i + 1) * CALIB_LEN] for i in range(min(CALIB_SAMPLES, len(ids) // CALIB_LEN))]
    return Dataset.from_dict({"input_ids": rows, "attention_mask": [[1] * CALIB_LEN for _ in rows]})


def main():
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

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
        if name.startswith("gptq-"):
            ds = calibration(tok)
            oneshot(model=model, dataset=ds, max_seq_length=CALIB_LEN, num_calibration_samples=len(ds),
                    recipe=GPTQModifier(targets="Linear", scheme=SCHEMES[name], ignore=["lm_head"]))
        else:
            oneshot(model=model, recipe=QuantizationModifier(targets="Linear", scheme=SCHEMES[name], ignore=["lm_head"]))
        model.save_pretrained(dst, save_compressed=True)
        tok.save_pretrained(dst)
        print(f"{name}: {dst} in {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
