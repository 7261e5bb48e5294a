#!/usr/bin/env python3
"""Build the tiny gpt-oss golden fixture tests/golden/fixtures/gptoss-f32/ (held to transformers
by tests/golden/model_test.cc).

A tiny random GptOssForCausalLM from its transformers 5.23 config (fixed seed), saved in f32 as
transformers writes it: experts fused (mlp.experts.gate_up_proj [E, hidden, 2 * ffn] with gate and
up in alternating columns, gate_up_proj_bias [E, 2 * ffn], down_proj [E, ffn, hidden],
down_proj_bias [E, hidden]), router mlp.router.{weight,bias}, attention sinks self_attn.sinks
[heads], q/k/v/o biases, layers alternating sliding (window 4) / full attention, YaRN rope.

Besides `randomise_extras` (norm weights, `.bias` tensors), the expert biases and the sinks get
N(0, 0.5) so that a mistake with them shows; swiglu_limit is 1.5 (not 7) so that both clamps bite
on these small activations, and swiglu_alpha 1.3 so that a hard-coded 1.702 shows.

The reference is transformers' forward in f32, eager attention (the sinks join the softmax there):
prompt_<i> [L], logits_<i> [L, vocab], greedy_<i> [32] for prompts of 20 and 5 tokens (both past the
window of 4). Prompts are re-drawn until every greedy step's top-1 minus top-2 >= 5e-3 of the
logit range, >= 10 distinct tokens, and every routing decision has its k-th and (k+1)-th router
logits apart by >= 1e-3 of the logit spread (gpt-oss takes the top k of the logits, then softmax).

Run:  /root/.cache/quanta/tools-venv/bin/python tools/make_gptoss_fixtures.py
Pins: tools/requirements-gguf-models.txt.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import AutoModelForCausalLM, GptOssConfig  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_gguf_model_fixtures as g  # noqa: E402
from make_hf_fixtures import randomise_extras  # noqa: E402

FIXTURES = g.REPO / "tests" / "golden" / "fixtures"
MIN_ROUTE_GAP = 1e-3
N_GREEDY = 32
PROMPT_LENS = (20, 5)
SEED = 3101


def config() -> GptOssConfig:
    return GptOssConfig(
        vocab_size=320, hidden_size=64, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, num_local_experts=4, num_experts_per_tok=2, sliding_window=4,
        layer_types=["sliding_attention", "full_attention"], max_position_embeddings=256, initializer_range=0.2,
        rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, swiglu_limit=1.5,
        swiglu_alpha=1.3, attention_bias=True,
        rope_parameters={"rope_type": "yarn", "rope_theta": 150000.0, "factor": 32.0, "beta_fast": 32.0,
                         "beta_slow": 1.0, "truncate": False, "original_max_position_embeddings": 8})


def make_model():
    torch.manual_seed(SEED)
    m = AutoModelForCausalLM.from_config(config(), attn_implementation="eager", dtype=torch.float32)
    with torch.no_grad():
        randomise_extras(m, {"config": m.config})
        for name, p in m.named_parameters():
            if name.endswith("_proj_bias") or name.endswith(".sinks"):
                p.copy_(torch.randn_like(p) * 0.5)
    return m.eval()


class RouteWatch:
    """Smallest gap between the k-th and (k+1)-th router logit, relative to the logits' spread."""

    def __init__(self, model, k: int):
        self.k, self.min_gap, self.handles = k, math.inf, []
        for name, mod in model.named_modules():
            if name.endswith("mlp.router"):
                self.handles.append(mod.register_forward_hook(self.hook))
        assert self.handles, "no router found"

    def hook(self, mod, args, out):
        x = args[0].reshape(-1, args[0].shape[-1]).float()
        logits = torch.nn.functional.linear(x, mod.weight.float(), mod.bias.float())
        s = logits.sort(dim=-1, descending=True).values
        gap = ((s[:, self.k - 1] - s[:, self.k]) / (s[:, 0] - s[:, -1])).min()
        self.min_gap = min(self.min_gap, float(gap))


def references(model) -> tuple[dict, list]:
    k, vocab = model.config.num_experts_per_tok, model.config.vocab_size
    tensors, prompts = {}, []
    for i, length in enumerate(PROMPT_LENS):
        for t in range(g.MAX_PROMPT_TRIES):
            pseed = SEED * 1000 + i * 100 + t
            gen = torch.Generator().manual_seed(pseed)
            prompt = torch.randint(g.SPECIAL_IDS, vocab, (length,), generator=gen, dtype=torch.int64)
            watch = RouteWatch(model, k)
            toks, min_abs, min_rel = g.greedy(model, prompt, N_GREEDY)
            for h in watch.handles:
                h.remove()
            if min_rel >= g.MIN_REL_MARGIN and len(set(toks.tolist())) >= g.MIN_DISTINCT and watch.min_gap >= MIN_ROUTE_GAP:
                break
        else:
            raise RuntimeError(f"no prompt {i} passes the margin/distinct/routing checks")
        logits = g.logits_of(model, prompt)
        tensors[f"prompt_{i}"] = prompt.contiguous()
        tensors[f"logits_{i}"] = logits.contiguous()
        tensors[f"greedy_{i}"] = toks.contiguous()
        prompts.append(dict(prompt_seed=pseed, min_margin=round(min_abs, 6), min_rel_margin=round(min_rel, 6),
                            min_route_gap=round(watch.min_gap, 6), distinct=len(set(toks.tolist())),
                            logit_range=round(float(logits.max() - logits.min()), 4)))
    return tensors, prompts


def clamp_share(model, prompt) -> float:
    """Share of expert gate/up values the clamps change on a prompt (so the fixture shows they bite)."""
    seen = []
    hs = [m.register_forward_hook(lambda mod, args, out: seen.append((mod, args[0])))
          for n, m in model.named_modules() if n.endswith("mlp.experts")]
    with torch.no_grad():
        model(prompt[None])
    for h in hs:
        h.remove()
    hit = tot = 0
    for mod, x in seen:
        gu = torch.einsum("th,ehf->etf", x.reshape(-1, x.shape[-1]), mod.gate_up_proj) + mod.gate_up_proj_bias[:, None]
        gate, up = gu[..., ::2], gu[..., 1::2]
        hit += int((gate > mod.limit).sum() + (up.abs() > mod.limit).sum())
        tot += gate.numel() + up.numel()
    return hit / max(tot, 1)


def main() -> int:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers.logging.set_verbosity_error()
    model = make_model()
    tmp = Path(tempfile.mkdtemp(prefix=".gptoss-fixtures."))
    try:
        src = tmp / "hf"
        model.save_pretrained(src)
        out = FIXTURES / "gptoss-f32"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        for f in ("config.json", "generation_config.json", "model.safetensors"):
            if (src / f).exists():
                shutil.copy(src / f, out / f)
        tensors, prompts = references(model)
        meta = dict(model="gptoss", transformers=transformers.__version__, torch=torch.__version__.split("+")[0],
                    architecture=type(model).__name__, clamp_share=round(clamp_share(model, tensors["prompt_0"]), 4),
                    about="gpt-oss: hidden 64, 2 layers (sliding 4, full), 4 experts (ffn 32) top-2, GQA 4/2 of 16, "
                          "sinks, q/k/v/o biases, YaRN (factor 32, original 8), swiglu limit 1.5 alpha 1.3")
        save_file(tensors, str(out / "reference.safetensors"),
                  metadata={"quanta_fixture": json.dumps({**meta, "prompts": prompts}, sort_keys=True)})
        print(f"{out.name}: clamp share {meta['clamp_share']} {prompts}")
    finally:
        shutil.rmtree(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
