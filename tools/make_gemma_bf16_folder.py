#!/usr/bin/env python3
"""The default model (Gemma 3 270M, models/gemma-3-270m-q4_k_m.gguf) as a bf16 Hugging Face folder:
transformers loads the GGUF (gguf-py dequantizes every tensor to f32; Gemma's +1 norm convention
undone by transformers), casts to bf16 and saves the model, its tokenizer and generation config.
This is the real float model the quantization schemes are measured on (bench/quant/quality.sh).

Usage: /root/.cache/quanta/tools-venv/bin/python tools/make_gemma_bf16_folder.py [--out models/gemma-3-270m-bf16]
Pins: tools/requirements-gguf-models.txt.
"""
import argparse
import os

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=os.path.join(ROOT, "models", "gemma-3-270m-q4_k_m.gguf"))
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "gemma-3-270m-bf16"))
    a = ap.parse_args()
    d, f = os.path.dirname(a.gguf), os.path.basename(a.gguf)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    # The GGUF-loaded model carries a quantizer and refuses save_pretrained: copy its
    # (already dequantized) weights into a plain model of the same config.
    cfg = model.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    plain = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and all("lm_head" in k for k in missing), (missing, unexpected)
    plain.tie_weights()
    plain.to(torch.bfloat16).save_pretrained(a.out)
    tok.save_pretrained(a.out)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
