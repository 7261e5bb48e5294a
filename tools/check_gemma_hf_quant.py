#!/usr/bin/env python3
"""Cross-check of quanta on a real HF-format folder: transformers (compressed-tensors dequantizing, fp32, eager)
scores the chunks `quanta perplexity --per-token FILE` wrote; prints both mean NLLs and the largest difference.
Usage: .../venv/llmcompressor/bin/python tools/check_gemma_hf_quant.py FOLDER PER_TOKEN.json
"""
import json, sys, torch
from transformers import AutoModelForCausalLM
from transformers import CompressedTensorsConfig
folder, pt = sys.argv[1], sys.argv[2]
kw = {}
if 'lc-' in folder: kw['quantization_config'] = CompressedTensorsConfig(run_compressed=False)
m = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager", **kw).eval()
d = json.load(open(pt))
diffs = []
for c in d['chunks']:
    ids = torch.tensor([c['ids']])
    with torch.no_grad():
        lp = torch.log_softmax(m(ids).logits[0].double(), -1)
    f = c['first_scored']
    ref = [lp[p-1, c['ids'][p]].item() for p in range(f, len(c['ids']))]
    diffs += [abs(a-b) for a,b in zip(ref, c['logprobs'])]
    nll_ref = -sum(ref)/len(ref); nll_q = -sum(c['logprobs'])/len(ref)
    print('chunk mean nll transformers %.5f quanta %.5f' % (nll_ref, nll_q))
print('max |dlogprob| %.4g  mean %.4g' % (max(diffs), sum(diffs)/len(diffs)))
