#!/usr/bin/env python3
"""Build the tiny Hugging Face golden fixtures in tests/golden/fixtures/<name>/.

Each fixture is a randomly initialised dense decoder (llama family) saved with
transformers' save_pretrained (config.json + model.safetensors [+ generation_config.json]),
plus reference.safetensors holding, for two fixed prompts i in {0, 1}:

  prompt_<i>         int64   [L]          the prompt token ids (never the special ids 0..2)
  logits_<i>         float32 [L, vocab]   logits of one forward pass over the prompt, f32 compute
  greedy_<i>         int64   [32]         32 greedy tokens after the prompt (full forward each step,
                                          no KV cache, EOS ignored), f32 compute
  logits_native_<i>  float32 [L, vocab]   (bf16/f16 fixtures only) same as logits_<i> but with the
                                          model run in its stored dtype, cast to f32 for storage

The reference is always computed from the folder reloaded from disk, so it saw exactly
the saved bytes (bf16/f16 weights are upcast exactly to f32 for the f32 reference).

Run:  /root/.cache/quanta/tools-venv/bin/python tools/make_hf_fixtures.py [name ...]
Pins: tools/requirements-fixtures.txt. Idempotent: seeds are fixed, each fixture folder is
rebuilt from scratch, and the computation runs single-threaded.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors.torch import save_file
from transformers import (
    AutoModelForCausalLM,
    Gemma3TextConfig,
    GenerationConfig,
    LlamaConfig,
    MistralConfig,
    Qwen2Config,
    Qwen3Config,
)

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "golden" / "fixtures"

VOCAB = 320
N_GREEDY = 32
PROMPT_LENS = (20, 5)
SPECIAL_IDS = 3  # ids 0, 1, 2 are pad/bos/eos in every fixture: prompts avoid them
# A greedy step's top-1 minus top-2 logit must be at least this fraction of that step's
# logit range (max - min); prompts are re-drawn (next seed) until every step passes.
MIN_REL_MARGIN = 5e-3
# ... and its 32 greedy tokens must hold at least this many distinct ids (no degenerate loop).
MIN_DISTINCT = 10
MAX_PROMPT_TRIES = 400

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    head_dim=16,
    max_position_embeddings=256,
)


def fixtures() -> list[dict]:
    """Every fixture: its config, the stored dtype and the seeds. Order is fixed."""
    return [
        dict(
            name="llama-mha6-f32",
            about="LlamaForCausalLM, 6 q heads / 6 kv heads, intermediate 192, float32: every dimension "
            "the tensor-parallel test splits divides by 2 and by 3 (tests/dist, tp 2 and tp 3)",
            config=LlamaConfig(
                **{**COMMON, "hidden_size": 96, "intermediate_size": 192},
                num_attention_heads=6,
                num_key_value_heads=6,
                initializer_range=0.2,
                rms_norm_eps=1e-6,
                tie_word_embeddings=False,
                bos_token_id=1,
                eos_token_id=2,
            ),
            dtype="float32",
            seed=1013,
        ),
        dict(
            name="llama-gqa-f32",
            about="LlamaForCausalLM, GQA 4 q heads / 2 kv heads, default RoPE (theta 10000), untied lm_head, "
            "float32; also carries a sampling generation_config.json",
            config=LlamaConfig(
                **COMMON,
                num_attention_heads=4,
                num_key_value_heads=2,
                initializer_range=0.2,
                rms_norm_eps=1e-6,
                tie_word_embeddings=False,
                bos_token_id=1,
                eos_token_id=2,
            ),
            dtype="float32",
            seed=1001,
            generation_config=dict(
                do_sample=True,
                temperature=0.7,
                top_k=20,
                top_p=0.9,
                repetition_penalty=1.1,
                bos_token_id=1,
                eos_token_id=2,
            ),
        ),
        dict(
            name="llama-linear-tied-f32",
            about="LlamaForCausalLM, MHA 4/4 heads, linear RoPE scaling factor 2, tie_word_embeddings "
            "(no lm_head.weight in the file), float32",
            config=LlamaConfig(
                **COMMON,
                num_attention_heads=4,
                num_key_value_heads=4,
                initializer_range=0.2,
                rms_norm_eps=1e-5,
                tie_word_embeddings=True,
                rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0},
                bos_token_id=1,
                eos_token_id=2,
            ),
            dtype="float32",
            seed=1002,
        ),
        dict(
            name="llama3-rope-bf16",
            about="LlamaForCausalLM, GQA 4/2, llama3 RoPE (factor 8, low_freq_factor 1, high_freq_factor 4, "
            "original_max_position_embeddings 32: with head_dim 16 / theta 10000 the 8 frequencies hit all "
            "three branches: 1 kept, 1 smoothed, 6 divided by 8), untied, bfloat16",
            config=LlamaConfig(
                **COMMON,
                num_attention_heads=4,
                num_key_value_heads=2,
                initializer_range=0.2,
                rms_norm_eps=1e-5,
                tie_word_embeddings=False,
                rope_parameters={
                    "rope_type": "llama3",
                    "factor": 8.0,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 32,
                    "rope_theta": 10000.0,
                },
                bos_token_id=1,
                eos_token_id=2,
            ),
            dtype="bfloat16",
            seed=1003,
        ),
        dict(
            name="mistral-swa-f32",
            about="MistralForCausalLM, GQA 4/2, sliding_window 8 on every layer (prompt 20 > window), "
            "default RoPE, untied, float32",
            config=MistralConfig(
                **COMMON,
                num_attention_heads=4,
                num_key_value_heads=2,
                sliding_window=8,
                initializer_range=0.2,
                rms_norm_eps=1e-5,
                tie_word_embeddings=False,
                bos_token_id=1,
                eos_token_id=2,
            ),
            dtype="float32",
            seed=1004,
        ),
        dict(
            name="qwen2-bias-yarn-f32",
            about="Qwen2ForCausalLM, GQA 4/2, q/k/v biases (randomised, not zero), YaRN RoPE factor 4 with "
            "original_max_position_embeddings 16, rope_theta 1000 (ramp: 1 frequency kept, 1 half-blended, 6 divided "
            "by 4; attention_factor derived: 0.1*ln(4)+1 = 1.1386 on cos and sin), tied, float32",
            config=Qwen2Config(
                vocab_size=VOCAB,
                hidden_size=64,
                intermediate_size=128,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                max_position_embeddings=64,  # = factor * original: no implicit-factor warning
                initializer_range=0.2,
                rms_norm_eps=1e-6,
                tie_word_embeddings=True,
                rope_parameters={
                    "rope_type": "yarn",
                    "factor": 4.0,
                    "original_max_position_embeddings": 16,
                    # theta 1000 (not 10000) so that, with head_dim 16, the YaRN ramp has a fractional
                    # entry: low = 0, high = ceil(1.08) = 2 -> ramp [0, 0.5, 1, 1, 1, 1, 1, 1]
                    "rope_theta": 1000.0,
                },
                bos_token_id=1,
                eos_token_id=2,
            ),
            dtype="float32",
            seed=1005,
        ),
        dict(
            name="qwen3-qknorm-bf16",
            about="Qwen3ForCausalLM, GQA 4/2, per-head q/k RMSNorm (before RoPE), layer 0 full attention, "
            "layer 1 sliding (window 8, use_sliding_window + max_window_layers 1 + layer_types), "
            "untied, bfloat16",
            config=Qwen3Config(
                **COMMON,
                num_attention_heads=4,
                num_key_value_heads=2,
                initializer_range=0.2,
                rms_norm_eps=1e-6,
                tie_word_embeddings=False,
                use_sliding_window=True,
                sliding_window=8,
                max_window_layers=1,
                layer_types=["full_attention", "sliding_attention"],
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                bos_token_id=1,
                eos_token_id=2,
            ),
            dtype="bfloat16",
            seed=1006,
        ),
        dict(
            name="gemma3-f32",
            about="Gemma3ForCausalLM (gemma3_text), 3 layers sliding/sliding/full, sliding_window 8, GQA 4/2, "
            "q/k norm, tied, query_pre_attn_scalar 24 (!= head_dim 16), local RoPE theta 10000 default, "
            "global RoPE theta 1e6 linear factor 8, attn_logit_softcapping 50 (stored, but NOT applied by "
            "transformers 5.23 for Gemma3), final_logit_softcapping 30 (applied), gelu tanh, float32",
            config=Gemma3TextConfig(
                vocab_size=VOCAB,
                hidden_size=64,
                intermediate_size=128,
                num_hidden_layers=3,
                num_attention_heads=4,
                num_key_value_heads=2,
                head_dim=16,
                max_position_embeddings=256,
                layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                sliding_window=8,
                query_pre_attn_scalar=24,
                rope_parameters={
                    "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                    "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
                },
                attn_logit_softcapping=50.0,
                final_logit_softcapping=30.0,
                initializer_range=0.2,
                rms_norm_eps=1e-6,
                tie_word_embeddings=True,
            ),
            dtype="float32",
            seed=1007,
            gemma_norms=True,
            embed_std=0.05,
            post_norm_offset=1.0,
            final_norm_offset=7.0,
            qk_norm_offset=2.0,
        ),
        dict(
            name="gemma3-bf16",
            about="Gemma3ForCausalLM, plain (no softcaps), 3 layers sliding/full/sliding, sliding_window 8, "
            "hidden 48 (embed scale sqrt(48) is not exact in bf16), 4 q heads / 1 kv head (MQA) of head_dim 16 "
            "(q width 64 != hidden 48), query_pre_attn_scalar 16, default RoPE per layer type "
            "(local 10000, global 1e6), tied, bfloat16",
            config=Gemma3TextConfig(
                vocab_size=VOCAB,
                hidden_size=48,
                intermediate_size=128,
                num_hidden_layers=3,
                num_attention_heads=4,
                num_key_value_heads=1,
                head_dim=16,
                max_position_embeddings=256,
                layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                sliding_window=8,
                query_pre_attn_scalar=16,
                rope_parameters={
                    "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                    "full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
                },
                attn_logit_softcapping=None,
                final_logit_softcapping=None,
                initializer_range=0.2,
                rms_norm_eps=1e-6,
                tie_word_embeddings=True,
            ),
            dtype="bfloat16",
            seed=1008,
            gemma_norms=True,
            embed_std=0.05,
            post_norm_offset=1.0,
            final_norm_offset=3.0,
        ),
        dict(
            name="llama-f16",
            about="LlamaForCausalLM, MQA 4 q heads / 1 kv head, default RoPE with rope_theta 500000, "
            "rms_norm_eps 1e-5, untied, float16",
            config=LlamaConfig(
                **COMMON,
                num_attention_heads=4,
                num_key_value_heads=1,
                initializer_range=0.2,
                rms_norm_eps=1e-5,
                tie_word_embeddings=False,
                rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
                bos_token_id=1,
                eos_token_id=2,
            ),
            dtype="float16",
            seed=1009,
        ),
    ]


@torch.no_grad()
def randomise_extras(model: torch.nn.Module, fx: dict) -> None:
    """Give norm weights and biases non-trivial values so that a mistake with them shows.

    from_config already drew every Linear/Embedding weight from N(0, initializer_range).
    Norm weights: llama-style (x * w) get 1 + N(0, 0.2); Gemma-style (x * (1 + w)) get N(0, 0.2),
    plus optional per-fixture offsets (post_norm_offset for Gemma's post_attention/post_feedforward
    norms, final_norm_offset for model.norm, qk_norm_offset for q_norm/k_norm). Biases (Qwen2 q/k/v): N(0, 0.2). embed_std rescales
    the embedding table. Runs under the fixture's seed, so it is deterministic.

    Why the Gemma offsets: with tied embeddings scaled by sqrt(hidden) on input, a random Gemma
    just repeats its last input token forever; a smaller embedding and louder post-norms give
    varied greedy runs, and a loud final norm makes logits large enough for the final softcap to bite.
    Loud q/k norms in gemma3-f32 make raw attention scores large (tens), so that wrongly applying the
    stored-but-unused attn_logit_softcapping (50) would show clearly in the logits.
    """
    gemma = fx.get("gemma_norms", False)
    for name, p in model.named_parameters():
        if "norm" in name and name.endswith(".weight"):
            base = 0.0 if gemma else 1.0
            if ".post_" in name:
                base += fx.get("post_norm_offset", 0.0)
            if name == "model.norm.weight":
                base += fx.get("final_norm_offset", 0.0)
            if ".q_norm." in name or ".k_norm." in name:
                base += fx.get("qk_norm_offset", 0.0)
            p.copy_(torch.randn_like(p) * 0.2 + base)
        elif name.endswith(".bias"):
            p.copy_(torch.randn_like(p) * 0.2)
    if "embed_std" in fx:
        emb = model.get_input_embeddings().weight
        emb.mul_(fx["embed_std"] / fx["config"].initializer_range)


@torch.no_grad()
def logits_of(model, ids: torch.Tensor) -> torch.Tensor:
    out = model(input_ids=ids[None, :], use_cache=False)
    return out.logits[0].float()


@torch.no_grad()
def greedy(model, prompt: torch.Tensor, n: int) -> tuple[torch.Tensor, float, float]:
    """n greedy tokens by full forward passes (no cache); returns tokens, min abs and min rel margin."""
    seq = prompt.clone()
    toks, min_abs, min_rel = [], math.inf, math.inf
    for _ in range(n):
        last = logits_of(model, seq)[-1]
        top2 = torch.topk(last, 2).values
        margin = float(top2[0] - top2[1])
        rng = float(last.max() - last.min())
        min_abs = min(min_abs, margin)
        min_rel = min(min_rel, margin / rng)
        tok = int(torch.argmax(last))
        toks.append(tok)
        seq = torch.cat([seq, torch.tensor([tok], dtype=torch.int64)])
    return torch.tensor(toks, dtype=torch.int64), min_abs, min_rel


def draw_prompt(seed: int, length: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(SPECIAL_IDS, VOCAB, (length,), generator=g, dtype=torch.int64)


def build(fx: dict) -> dict:
    name, dtype = fx["name"], DTYPES[fx["dtype"]]
    out_dir = OUT / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=OUT))
    try:
        torch.manual_seed(fx["seed"])
        model = AutoModelForCausalLM.from_config(fx["config"], attn_implementation="eager", dtype=torch.float32)
        randomise_extras(model, fx)
        model = model.to(dtype).eval()
        model.save_pretrained(tmp)
        if "generation_config" in fx:
            GenerationConfig(**fx["generation_config"]).save_pretrained(tmp)
        del model

        # Reference: reload the saved folder (the exact bytes committed).
        ref = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32, attn_implementation="eager").eval()
        native = None
        if dtype != torch.float32:
            native = AutoModelForCausalLM.from_pretrained(tmp, dtype=dtype, attn_implementation="eager").eval()
            for p in native.parameters():
                assert p.dtype == dtype, (name, p.dtype)

        tensors, info = {}, {"prompts": []}
        for i, length in enumerate(PROMPT_LENS):
            # Deterministic search: the first prompt seed whose greedy run has clear margins.
            for k in range(MAX_PROMPT_TRIES):
                pseed = fx["seed"] * 1000 + i * 100 + k
                prompt = draw_prompt(pseed, length)
                toks, min_abs, min_rel = greedy(ref, prompt, N_GREEDY)
                if min_rel >= MIN_REL_MARGIN and len(set(toks.tolist())) >= MIN_DISTINCT:
                    break
            else:
                raise RuntimeError(f"{name}: no prompt {i} passes the margin/distinct checks")
            logits = logits_of(ref, prompt)
            # The greedy loop's first step must be the argmax of the one-pass logits.
            assert int(torch.argmax(logits[-1])) == int(toks[0])
            tensors[f"prompt_{i}"] = prompt.contiguous()
            tensors[f"logits_{i}"] = logits.contiguous()
            tensors[f"greedy_{i}"] = toks.contiguous()
            entry = {
                "prompt_seed": pseed,
                "len": length,
                "min_margin": min_abs,
                "min_rel_margin": min_rel,
                "distinct": len(set(toks.tolist())),
                "logit_range": float(logits.max() - logits.min()),
            }
            if native is not None:
                ln = logits_of(native, prompt)
                tensors[f"logits_native_{i}"] = ln.contiguous()
                entry["native_max_abs_diff"] = float((ln - logits).abs().max())
            info["prompts"].append(entry)

        # One metadata key only: safetensors keeps metadata in a hash map, so several keys would be
        # written in a random order and the file would not be byte-identical between runs.
        meta = {
            "quanta_fixture": json.dumps(
                {
                    "fixture": name,
                    "dtype": fx["dtype"],
                    "transformers": transformers.__version__,
                    "torch": torch.__version__.split("+")[0],
                    "min_margins": [round(p["min_margin"], 6) for p in info["prompts"]],
                },
                sort_keys=True,
            )
        }
        save_file(tensors, str(tmp / "reference.safetensors"), metadata=meta)

        os.chmod(tmp, 0o755)
        for f in tmp.iterdir():
            os.chmod(f, 0o644)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    info["size"] = sum(f.stat().st_size for f in out_dir.iterdir())
    info["files"] = sorted(f.name for f in out_dir.iterdir())
    return info


def main(argv: list[str]) -> int:
    torch.set_num_threads(1)  # bit-reproducible reductions across runs
    torch.use_deterministic_algorithms(True)
    OUT.mkdir(parents=True, exist_ok=True)
    transformers.logging.set_verbosity_error()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers.utils.logging.disable_progress_bar()
    wanted = set(argv)
    all_fx = fixtures()
    unknown = wanted - {f["name"] for f in all_fx}
    if unknown:
        print(f"unknown fixtures: {sorted(unknown)}", file=sys.stderr)
        return 2
    total = 0
    for fx in all_fx:
        if wanted and fx["name"] not in wanted:
            continue
        info = build(fx)
        total += info["size"]
        margins = ", ".join(
            f"p{i}: min {p['min_margin']:.4f} (rel {p['min_rel_margin']:.4f}, seed {p['prompt_seed']}, "
            f"distinct {p['distinct']}, range {p['logit_range']:.1f})"
            + (f", native max|d| {p['native_max_abs_diff']:.4f}" if "native_max_abs_diff" in p else "")
            for i, p in enumerate(info["prompts"])
        )
        print(f"{fx['name']:24s} {info['size'] / 1024:7.1f} KiB  {margins}")
    print(f"total {total / 1024:.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
