#!/usr/bin/env python3
"""Quantized folders for the benchmarks, written by the real tool: auto-round (pinned in
tools/requirements-hf-quant.txt) quantizes a bf16 Hugging Face folder by round to nearest
(iters=0, no tuning: the benchmarks measure the loader and kernels, not the rounding) and exports
each variant with auto-round's own exporters. A variant is NAME:FORMAT:SYM:BITS:GROUP, e.g.
  awq:auto_awq:asym:4:128     quant_method "awq", AWQ GEMM layout with zero points
  gptq:auto_gptq:sym:4:128    quant_method "gptq", GPTQ v1 layout (stored zero minus one)
  ar:auto_round:sym:4:128     quant_method "auto-round", packing auto_round:auto_gptq
  ct:llm_compressor:sym:4:128 quant_method "compressed-tensors", pack-quantized
Usage: python bench/hf_formats/quantize.py SRC_BF16_DIR OUT_PREFIX VARIANT...   (writes OUT_PREFIX-NAME)
"""
import os
import shutil
import sys

import torch
from auto_round import AutoRound
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast


def char_tokenizer():
    # auto-round needs a tokenizer for its (here unused) calibration text; random-weight
    # folders have none, so one token per printable ASCII character stands in.
    words = ["<unk>", "<pad>", "\u0120"] + [chr(c) for c in range(33, 127)]
    tok = Tokenizer(models.BPE(vocab={w: i for i, w in enumerate(words)}, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>")


def main():
    src, out, variants = sys.argv[1], sys.argv[2], sys.argv[3:]
    torch.set_num_threads(os.cpu_count() or 2)
    has_tok = os.path.exists(os.path.join(src, "tokenizer.json"))
    for v in variants:
        name, fmt, sym, bits, group = v.split(":")
        dst = f"{out}-{name}"
        if os.path.exists(os.path.join(dst, "config.json")):
            continue
        model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16).eval()
        tok = AutoTokenizer.from_pretrained(src) if has_tok else char_tokenizer()
        ar = AutoRound(model, tokenizer=tok, scheme=f"W{bits}A16", bits=int(bits), group_size=int(group),
                       sym=sym == "sym", iters=0, disable_opt_rtn=True, nsamples=1, seqlen=8, device_map="cpu",
                       seed=42, dataset=["The quick brown fox jumps over the lazy dog."])
        tmp = dst + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        _, folders = ar.quantize_and_save(tmp, format=fmt)
        folder = folders[0] if isinstance(folders, (list, tuple)) else folders
        shutil.rmtree(dst, ignore_errors=True)
        shutil.move(folder, dst)
        shutil.rmtree(tmp, ignore_errors=True)
        if not has_tok:  # the stand-in tokenizer is not the model's
            for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
                if os.path.exists(os.path.join(dst, f)):
                    os.remove(os.path.join(dst, f))
        if has_tok:  # perplexity needs the tokenizer next to the weights
            for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json"):
                if os.path.exists(os.path.join(src, f)) and not os.path.exists(os.path.join(dst, f)):
                    shutil.copy(os.path.join(src, f), dst)
        print("wrote", dst, flush=True)


if __name__ == "__main__":
    main()
