#!/usr/bin/env python3
"""Reference logits for online quantization (--quantization w8a8_int8 | mxfp8) of
tests/golden/fixtures/llama-gqa-f32, computed with transformers and torch fake
quantization of every decoder Linear (lm_head and embeddings stay float):

  w8a8_int8  W: per output channel, s = max|w| / 127, round to nearest even;
             x: per token, s_t = max|x| / 127, round to nearest even
  mxfp8      W and x: OCP MX E4M3 in 32-blocks along in_features (the same
             mx_fake_quant as tools/make_modelslim_fixtures.py)

Writes tests/golden/fixtures/online-quant/llama-gqa-f32.safetensors with
logits_<method> for prompt_0 of the fixture's reference.safetensors.
Usage: /root/.cache/quanta/msms-venv/bin/python tools/make_online_quant_reference.py
"""
import json
import os
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_modelslim_fixtures import mx_fake_quant  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
D = os.path.join(ROOT, "tests", "golden", "fixtures", "llama-gqa-f32")


def int8_rows(t):
    s = t.abs().amax(-1, keepdim=True) / 127
    return torch.where(s > 0, torch.round(t / s) * s, torch.zeros_like(t))


def main():
    torch.set_num_threads(1)
    with safe_open(os.path.join(D, "reference.safetensors"), "pt") as s:
        prompt = s.get_tensor("prompt_0")
    out, meta = {}, {"torch": torch.__version__}
    for method in ("w8a8_int8", "mxfp8"):
        q = int8_rows if method == "w8a8_int8" else (lambda t: mx_fake_quant(t, "e4m3"))
        model = AutoModelForCausalLM.from_pretrained(D, dtype=torch.float32).eval()
        for name, mod in model.named_modules():
            if isinstance(mod, torch.nn.Linear) and name != "lm_head":
                mod.weight.data = q(mod.weight.data)
                mod.register_forward_pre_hook(lambda m, a, q=q: (q(a[0]),))
        with torch.no_grad():
            out[f"logits_{method}"] = model(prompt[None]).logits[0].float().contiguous()
    save_file(out, os.path.join(ROOT, "tests", "golden", "fixtures", "online-quant", "llama-gqa-f32.safetensors"), metadata={"quanta_fixture": json.dumps(meta)})


if __name__ == "__main__":
    main()
