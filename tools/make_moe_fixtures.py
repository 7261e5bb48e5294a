#!/usr/bin/env python3
"""Build the tiny mixture-of-experts golden fixtures.

Float Hugging Face folders (tests/golden/fixtures/<name>-f32/, held to transformers by
tests/golden/model_test.cc) and GGUF files (tests/golden/fixtures/gguf/<name>-<type>.gguf, held
by tests/golden/gguf_model_test.cc), for Qwen3-MoE, Qwen2-MoE (shared expert with its sigmoid
gate) and Mixtral:

  1. a tiny random model from its transformers config (fixed seed, `randomise_extras` as the
     dense fixtures), saved in f32 as transformers 5.23 writes it (experts one tensor each:
     mlp.experts.E.{gate,up,down}_proj, Mixtral block_sparse_moe.experts.E.w1/w2/w3);
  2. for the GGUF files: converted with llama.cpp's own convert_hf_to_gguf.py (3-D expert
     tensors ffn_{gate,up,down}_exps; its Qwen2-/Qwen3-MoE classes read only a BPE tokenizer.json
     whose pre-tokenizer hash they know, so their set_vocab is pointed, at run time, to the
     converter's own SentencePiece reader, which the dense Qwen2 class tries first: only the
     tokenizer.ggml.* keys differ, every tensor and hyperparameter is the converter's) and
     quantized by llama-quantize, optionally with
     `--tensor-type` overrides (so that w13 and w2 get different types);
  3. the reference: transformers' forward pass in f32, eager attention. For a GGUF file, the
     float model's weights are replaced by the file's tensors dequantized with gguf-py
     (`gguf.quants.dequantize`, what transformers' own GGUF loader does; the loader itself is not
     used because transformers 5.23 maps neither `expert_feed_forward_length` nor llama.cpp's
     always-renormalised top-k for qwen3moe, and reads no experts from a `llama`-arch Mixtral),
     with llama.cpp's q/k row permutation of llama-arch files undone.

Stored like the dense fixtures: prompt_<i> [L], logits_<i> [L, vocab], greedy_<i> [32] for two
prompts. Prompts are re-drawn until every greedy step's top-1 minus top-2 >= 5e-3 of the logit
range, >= 10 distinct tokens, and every routing decision of every layer (prompt and greedy
steps) has its k-th and (k+1)-th expert scores apart by >= 1e-3 (relative to the top score), so
that summation-order noise cannot flip an expert choice.

Run:  /root/.cache/quanta/tools-venv/bin/python tools/make_moe_fixtures.py
Pins: tools/requirements-gguf-models.txt; llama.cpp as tools/make_gguf_model_fixtures.py.
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
from transformers import AutoModelForCausalLM, MixtralConfig, Qwen2MoeConfig, Qwen3MoeConfig  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_gguf_model_fixtures as g  # noqa: E402
from make_hf_fixtures import randomise_extras  # noqa: E402

REPO = g.REPO
FIXTURES = REPO / "tests" / "golden" / "fixtures"
MIN_ROUTE_GAP = 1e-3
N_GREEDY = 32
PROMPT_LENS = (20, 5)


def models() -> list[dict]:
    small = dict(vocab_size=320, hidden_size=64, max_position_embeddings=256, initializer_range=0.2,
                 rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    k = dict(vocab_size=320, hidden_size=256, max_position_embeddings=256, initializer_range=0.2,
             rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    return [
        dict(name="qwen3moe", seed=3001, hf=True, types=["Q8_0", "Q4_0"],
             about="Qwen3-MoE: hidden 64, 2 layers, 8 experts (ffn 32), top-2 renormalised, 2 q / 1 kv heads of 128, q/k norm",
             config=Qwen3MoeConfig(**small, intermediate_size=96, moe_intermediate_size=32, num_experts=8,
                                   num_experts_per_tok=2, norm_topk_prob=True, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=1, head_dim=128,
                                   rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
        dict(name="qwen2moe", seed=3002, hf=True, types=["Q8_0"],
             about="Qwen2-MoE: hidden 64, 2 layers, 4 experts (ffn 32) top-2 not renormalised, shared expert 48 "
                   "with sigmoid gate, q/k/v biases, GQA 4/2",
             config=Qwen2MoeConfig(**small, intermediate_size=96, moe_intermediate_size=32, num_experts=4,
                                   num_experts_per_tok=2, shared_expert_intermediate_size=48, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2)),
        dict(name="qwen2moe-dense1", seed=3003, hf=True, types=[],
             about="Qwen2-MoE with mlp_only_layers [1]: layer 0 sparse, layer 1 a dense MLP of 96",
             config=Qwen2MoeConfig(**small, intermediate_size=96, moe_intermediate_size=32, num_experts=4,
                                   num_experts_per_tok=2, shared_expert_intermediate_size=48, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, mlp_only_layers=[1])),
        dict(name="mixtral", seed=3004, hf=True, types=["Q8_0", "Q4_0"],
             about="Mixtral: hidden 64, 2 layers, 4 experts (ffn 96) top-2, GQA 4/2 (llama arch in GGUF, permuted q/k)",
             config=MixtralConfig(**small, intermediate_size=96, num_local_experts=4, num_experts_per_tok=2,
                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                  rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
        dict(name="qwen3moe-k", seed=3005, hf=False,
             types=["Q4_K_M", "Q4_K_M+down_q8_0"],
             about="Qwen3-MoE for K-quants: hidden 256, 2 layers, 4 experts (ffn 256) top-2; Q4_K_M (llama-quantize "
                   "gives the two layers' ffn_down_exps different types) and Q4_K_M with --tensor-type "
                   "ffn_down_exps=q8_0 (w13 Q4_K, w2 Q8_0)",
             config=Qwen3MoeConfig(**k, intermediate_size=256, moe_intermediate_size=256, num_experts=4,
                                   num_experts_per_tok=2, norm_topk_prob=True, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=1, head_dim=128,
                                   rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
    ]


def make_model(fx: dict):
    torch.manual_seed(fx["seed"])
    m = AutoModelForCausalLM.from_config(fx["config"], attn_implementation="eager", dtype=torch.float32)
    randomise_extras(m, fx)
    return m.eval()


class RouteWatch:
    """Records, on every router call, the smallest gap between the k-th and (k+1)-th expert score."""

    def __init__(self, model, k: int):
        self.k, self.min_gap, self.handles = k, math.inf, []
        for name, mod in model.named_modules():
            if name.endswith("mlp.gate") or name.endswith("block_sparse_moe.gate"):
                self.handles.append(mod.register_forward_hook(self.hook))
        assert self.handles, "no router found"

    def hook(self, mod, args, out):
        logits = torch.nn.functional.linear(args[0].reshape(-1, args[0].shape[-1]).float(), mod.weight.float())
        p = torch.softmax(logits, dim=-1).sort(dim=-1, descending=True).values
        gap = ((p[:, self.k - 1] - p[:, self.k]) / p[:, 0]).min()
        self.min_gap = min(self.min_gap, float(gap))


def references(model, seed: int, route_watch=None) -> tuple[dict, list]:
    """Prompts whose greedy continuation and routing have margins, with their logits (route_watch:
    the RouteWatch class for the model's router, this file's by default)."""
    route_watch = route_watch or RouteWatch
    k = model.config.num_experts_per_tok
    vocab = model.config.vocab_size
    tensors, prompts = {}, []
    for i, length in enumerate(PROMPT_LENS):
        for t in range(g.MAX_PROMPT_TRIES):
            pseed = seed * 1000 + i * 100 + t
            gen = torch.Generator().manual_seed(pseed)
            prompt = torch.randint(g.SPECIAL_IDS, vocab, (length,), generator=gen, dtype=torch.int64)
            watch = route_watch(model, k)
            toks, min_abs, min_rel = g.greedy(model, prompt, N_GREEDY)
            for h in watch.handles:
                h.remove()
            if min_rel >= g.MIN_REL_MARGIN and len(set(toks.tolist())) >= g.MIN_DISTINCT and watch.min_gap >= MIN_ROUTE_GAP:
                break
        else:
            raise RuntimeError(f"seed {seed}: no prompt {i} passes the margin/distinct/routing checks")
        logits = g.logits_of(model, prompt)
        tensors[f"prompt_{i}"] = prompt.contiguous()
        tensors[f"logits_{i}"] = logits.contiguous()
        tensors[f"greedy_{i}"] = toks.contiguous()
        prompts.append(dict(prompt_seed=pseed, min_margin=round(min_abs, 6), min_rel_margin=round(min_rel, 6),
                            min_route_gap=round(watch.min_gap, 6), distinct=len(set(toks.tolist())),
                            logit_range=round(float(logits.max() - logits.min()), 4)))
    return tensors, prompts


def hf_name(gguf_name: str) -> tuple[str, str | None]:
    """The in-memory transformers 5.23 parameter of a GGUF tensor, and for experts which part of it.

    In memory (unlike on disk) every MoE block keeps its experts fused: mlp.experts.gate_up_proj
    [E, 2 * ffn, hidden] (gate rows first, as forward() chunks it) and mlp.experts.down_proj
    [E, hidden, ffn]; Mixtral's block is `mlp` in memory too.
    """
    base, suffix = gguf_name.rsplit(".", 1)
    top = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
    if base in top:
        return top[base] + "." + suffix, None
    _, layer, part = base.split(".", 2)
    p = f"model.layers.{layer}."
    table = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn_q": "self_attn.q_proj",
             "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
             "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm", "ffn_gate": "mlp.gate_proj",
             "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj", "ffn_gate_inp": "mlp.gate",
             "ffn_gate_inp_shexp": "mlp.shared_expert_gate", "ffn_gate_shexp": "mlp.shared_expert.gate_proj",
             "ffn_up_shexp": "mlp.shared_expert.up_proj", "ffn_down_shexp": "mlp.shared_expert.down_proj"}
    experts = {"ffn_gate_exps": ("gate_up_proj", "gate"), "ffn_up_exps": ("gate_up_proj", "up"),
               "ffn_down_exps": ("down_proj", None)}
    if part in table:
        return p + table[part] + "." + suffix, None
    if part in experts:
        name, half = experts[part]
        return p + "mlp.experts." + name, half or "all"
    raise KeyError(gguf_name)


def load_gguf_weights(model, path: Path) -> dict:
    """The float model's state dict with every tensor replaced by the GGUF's, dequantized by gguf-py."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(str(path))
    arch = str(bytes(reader.fields["general.architecture"].parts[-1]), "utf-8")
    cfg = model.config
    sd = model.state_dict()
    done: dict[str, set] = {}
    for t in reader.tensors:
        w = torch.from_numpy(np.array(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32))
        w = w.reshape([int(x) for x in reversed(list(t.shape))])
        name, part = hf_name(t.name)
        if arch == "llama" and (".q_proj." in name or ".k_proj." in name):
            heads = cfg.num_attention_heads if ".q_proj." in name else cfg.num_key_value_heads
            # undo llama.cpp's permute(): rows (head, 2, d/2) were written as (head, d/2, 2)
            w = w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
        assert name in sd, (t.name, name)
        if part is None or part == "all":
            assert sd[name].numel() == w.numel(), (name, sd[name].shape, w.shape)
            sd[name] = w.reshape(sd[name].shape)
        else:
            ffn = sd[name].shape[1] // 2
            rows = slice(0, ffn) if part == "gate" else slice(ffn, 2 * ffn)
            assert sd[name][:, rows].shape == w.shape, (name, sd[name].shape, w.shape)
            sd[name] = sd[name].clone()
            sd[name][:, rows] = w
        done.setdefault(name, set()).add(part)
    missing = [n for n in sd if n not in done and not (n == "lm_head.weight" and cfg.tie_word_embeddings)]
    missing += [n for n, parts in done.items() if "gate" in parts and "up" not in parts]
    assert not missing, f"{path.name}: not in the GGUF: {sorted(missing)}"
    return sd


CONVERT = """
import runpy, sys
sys.path.insert(0, sys.argv[1])
sys.path.insert(1, sys.argv[1] + "/gguf-py")
import conversion.qwen as qwen
qwen.Qwen2MoeModel.set_vocab = lambda self: self._set_vocab_sentencepiece()
qwen.Qwen3MoeModel.set_vocab = lambda self: self._set_vocab_sentencepiece()
script = sys.argv[1] + "/convert_hf_to_gguf.py"
sys.argv = [script] + sys.argv[2:]
runpy.run_path(script, run_name="__main__")
"""


def convert(name: str, src: Path, work: Path) -> Path:
    base = work / f"{name}-f32.gguf"
    g.run([sys.executable, "-c", CONVERT, str(g.LLAMA_CPP), str(src), "--outfile", str(base), "--outtype", "f32",
           "--model-name", f"quanta-tiny-{name}"], env={**os.environ, "PYTHONHASHSEED": "0"})
    return base


def topk_cases() -> None:
    """tests/golden/fixtures/moe-topk.safetensors: router logits full of ties and the experts
    transformers picks for them (softmax in f32, then torch.topk, as Qwen3MoeTopKRouter does).
    Shapes cover both of torch's CPU selection paths: nth_element (k * 64 > n) and the heap."""
    gen = torch.Generator().manual_seed(4242)
    tensors = {}
    for n, k in ((8, 2), (60, 4), (128, 8), (256, 4), (512, 8)):
        rows = [torch.zeros(n), torch.tensor([0.1, 0.3, 0.2, 0.3, 0.3, 0.0, 0.3, 0.1] * (n // 8) + [0.0] * (n % 8))]
        levels = torch.tensor([0.0, 0.5, 1.0, 1.5])
        rows += [levels[torch.randint(0, 4, (n,), generator=gen)] for _ in range(6)]
        rows += [torch.randn(n, generator=gen) for _ in range(2)]
        logits = torch.stack(rows).float()
        probs = torch.nn.functional.softmax(logits, dtype=torch.float, dim=-1)
        values, indices = torch.topk(probs, k, dim=-1)
        tensors[f"logits_{n}_{k}"] = logits.contiguous()
        tensors[f"indices_{n}_{k}"] = indices.contiguous()
        tensors[f"values_{n}_{k}"] = values.contiguous()
    out = FIXTURES / "moe-topk.safetensors"
    save_file(tensors, str(out), metadata={"quanta_fixture": json.dumps(
        {"torch": torch.__version__.split("+")[0], "what": "softmax(f32) + torch.topk of router logits with ties"})})
    print(f"{out.name}: {sorted(tensors)}")


def main() -> int:
    topk_cases()
    if sys.argv[1:] == ["--topk-only"]:
        return 0
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers.logging.set_verbosity_error()
    tmp = Path(tempfile.mkdtemp(prefix=".moe-fixtures."))
    try:
        for fx in models():
            model = make_model(fx)
            work = tmp / fx["name"]
            work.mkdir()
            src = work / "hf"
            model.save_pretrained(src)
            meta = dict(model=fx["name"], about=fx["about"], transformers=transformers.__version__,
                        torch=torch.__version__.split("+")[0], architecture=type(model).__name__)
            if fx["hf"]:
                out = FIXTURES / f"{fx['name']}-f32"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                for f in ("config.json", "generation_config.json", "model.safetensors"):
                    if (src / f).exists():
                        shutil.copy(src / f, out / f)
                tensors, prompts = references(model, fx["seed"])
                save_file(tensors, str(out / "reference.safetensors"),
                          metadata={"quanta_fixture": json.dumps({**meta, "prompts": prompts}, sort_keys=True)})
                print(f"{out.name:28s} {prompts}")
            if not fx["types"]:
                continue
            vocab = fx["config"].vocab_size
            shutil.copy(g.train_tokenizer(vocab, tmp), src / "tokenizer.model")
            base = convert(fx["name"], src, work)
            for typ in fx["types"]:
                qtype, *overrides = typ.split("+")
                stem = f"{fx['name']}-{typ.lower().replace('+', '-')}"
                path = work / f"{stem}.gguf"
                cmd = [str(g.QUANTIZE)]
                for o in overrides:
                    proj, t = o.rsplit("_", 2)[0], "_".join(o.rsplit("_", 2)[1:])
                    cmd += ["--tensor-type", f"ffn_{proj}_exps={t}"]
                g.run(cmd + [str(base), str(path), qtype, "1"])
                ref_model = make_model(fx)
                ref_model.load_state_dict(load_gguf_weights(ref_model, path))
                tensors, prompts = references(ref_model, fx["seed"])
                info = {**meta, "fixture": stem, "gguf_type": typ, "tensor_types": g.tensor_types(path), "prompts": prompts}
                save_file(tensors, str(work / f"{stem}.reference.safetensors"),
                          metadata={"quanta_fixture": json.dumps(info, sort_keys=True)})
                for f in (path, work / f"{stem}.reference.safetensors"):
                    os.chmod(f, 0o644)
                    shutil.move(str(f), g.OUT / f.name)
                print(f"{stem:28s} {info['tensor_types']} {prompts}")
    finally:
        shutil.rmtree(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
