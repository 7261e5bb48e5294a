#!/usr/bin/env python3
"""Cross-check of quanta on a real LLM Compressor W8A8 folder: the folder loaded by transformers + compressed-tensors
(run_compressed=False: the library dequantizes the weights), its input quantization switched off and replaced by
per-token symmetric int8 fake quantization on every Linear in f32, by compressed-tensors' rule (mode hook, or
hook:NAME to skip Linears whose name holds NAME; mode off: none), against `quanta perplexity --per-token` output.
Usage: .../venv/llmcompressor/bin/python tools/check_gemma_w8a8_reference.py FOLDER PER_TOKEN.json [hook|hook:NAME|off]
"""
import json, sys, torch
from transformers import AutoModelForCausalLM, CompressedTensorsConfig
folder, pt = sys.argv[1], sys.argv[2]
m = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager",
        quantization_config=CompressedTensorsConfig(run_compressed=False)).eval()
n_off = 0; lins = []
for name, mod in m.named_modules():
    s = getattr(mod, "quantization_scheme", None)
    if s is not None and s.input_activations is not None:
        lins.append(mod)
for mod in lins:
    mod.quantization_scheme.input_activations = None; n_off += 1
def fake_int8(mod, args):
    # compressed-tensors' own dynamic per-token rule (quantization/utils/helpers.py,
    # calculate_qparams: symmetric scale = max|x| / (bit_range / 2) = max|x| / 127.5, codes
    # clamped to [-128, 127]), here in f32. An earlier version divided by 127, which is not
    # what the format computes (and not what quanta computes).
    x = args[0]
    scale = torch.clamp(x.abs().amax(-1, keepdim=True) / 127.5, min=torch.finfo(torch.float32).eps)
    return (torch.clamp(torch.round(x / scale), -128, 127) * scale,)
mode = sys.argv[3] if len(sys.argv) > 3 else "hook"
names = {id(mod): name for name, mod in m.named_modules()}
if mode.startswith("hook"):
    skip = mode.split(":")[1] if ":" in mode else "@@"
    for l in lins:
        if skip not in names[id(l)]: l.register_forward_pre_hook(fake_int8)
print("linears with input quant:", n_off, "mode", mode)
d = json.load(open(pt))
for c in d['chunks']:
    ids = torch.tensor([c['ids']])
    with torch.no_grad():
        lp = torch.log_softmax(m(ids).logits[0].double(), -1)
    f = c['first_scored']
    ref = [lp[p-1, c['ids'][p]].item() for p in range(f, len(c['ids']))]
    print('chunk nll ref %.5f quanta %.5f maxdiff %.4g' % (-sum(ref)/len(ref), -sum(c['logprobs'])/len(ref), max(abs(a-b) for a,b in zip(ref,c['logprobs']))))
