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
import make_moe_fixtures as moe  # noqa: E402
from make_hf_fixtures import randomise_extras  # noqa: E402

FIXTURES = g.REPO / "tests" / "golden" / "fixtures"
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


def gguf_config() -> GptOssConfig:
    """The GGUF fixture's model: llama.cpp hard-codes swiglu alpha 1.702 and limit 7
    (llama-graph.cpp; the converter writes neither), so this one keeps transformers' defaults."""
    c = config()
    c.swiglu_limit, c.swiglu_alpha = 7.0, 1.702
    return c


def make_model(cfg=None, expert_gain: float = 1.0):
    torch.manual_seed(SEED)
    m = AutoModelForCausalLM.from_config(cfg or config(), attn_implementation="eager", dtype=torch.float32)
    with torch.no_grad():
        randomise_extras(m, {"config": m.config})
        for name, p in m.named_parameters():
            if name.endswith("_proj_bias") or name.endswith(".sinks"):
                p.copy_(torch.randn_like(p) * 0.5)
            if name.endswith("experts.gate_up_proj"):
                p.mul_(expert_gain)  # louder gate/up, so that the clamp at 7 bites
    return m.eval()


GGUF_GAIN = 4.0
GGUF_TYPES = ("Q8_0", "MXFP4_MOE")

# llama.cpp's GptOssModel reads a GPT-2 BPE tokenizer.json only; pointed at its own
# SentencePiece reader instead (as tools/make_moe_fixtures.py does for Qwen-MoE): only the
# tokenizer.ggml.* keys differ, every tensor and hyperparameter is the converter's.
CONVERT = """
import runpy, sys
sys.path.insert(0, sys.argv[1])
sys.path.insert(1, sys.argv[1] + "/gguf-py")
import conversion.gpt_oss as m
m.GptOssModel.set_vocab = lambda self: self._set_vocab_sentencepiece()
script = sys.argv[1] + "/convert_hf_to_gguf.py"
sys.argv = [script] + sys.argv[2:]
runpy.run_path(script, run_name="__main__")
"""


def load_gguf_weights(model, path: Path) -> dict:
    """The float model's state dict with every tensor replaced by the GGUF's, dequantized by gguf-py
    (the converter's own inverse: gate/up de-interleaved into ffn_{gate,up}_exps [E, ffn, hidden],
    down transposed into ffn_down_exps [E, hidden, ffn], biases split alike)."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(str(path))
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    done = set()
    top = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
    table = {"attn_norm": "input_layernorm", "post_attention_norm": "post_attention_layernorm",
             "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
             "attn_output": "self_attn.o_proj", "ffn_gate_inp": "mlp.router"}
    for t in reader.tensors:
        w = torch.from_numpy(np.array(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32))
        w = w.reshape([int(x) for x in reversed(list(t.shape))])
        base, suffix = t.name.rsplit(".", 1)
        if base in top:
            name = top[base] + "." + suffix
            sd[name] = w.reshape(sd[name].shape)
            done.add(name)
            continue
        _, layer, part = base.split(".", 2)
        p = f"model.layers.{layer}."
        if part == "attn_sinks":
            sd[p + "self_attn.sinks"] = w.reshape(sd[p + "self_attn.sinks"].shape)
            done.add(p + "self_attn.sinks")
        elif part in table:
            name = p + table[part] + "." + suffix
            sd[name] = w.reshape(sd[name].shape)
            done.add(name)
        elif part in ("ffn_gate_exps", "ffn_up_exps"):
            col = slice(0, None, 2) if part == "ffn_gate_exps" else slice(1, None, 2)
            if suffix == "weight":
                sd[p + "mlp.experts.gate_up_proj"][:, :, col] = w.transpose(1, 2)
                done.add(p + "mlp.experts.gate_up_proj" + part)
            else:
                sd[p + "mlp.experts.gate_up_proj_bias"][:, col] = w
                done.add(p + "mlp.experts.gate_up_proj_bias" + part)
        elif part == "ffn_down_exps":
            if suffix == "weight":
                sd[p + "mlp.experts.down_proj"] = w.transpose(1, 2).contiguous()
                done.add(p + "mlp.experts.down_proj")
            else:
                sd[p + "mlp.experts.down_proj_bias"] = w
                done.add(p + "mlp.experts.down_proj_bias")
        else:
            raise KeyError(t.name)
    want = len(sd) + 2 * model.config.num_hidden_layers  # gate_up weight and bias come in two halves each
    assert len(done) == want, (path.name, len(done), want)
    return sd


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
    return moe.references(model, SEED, RouteWatch)


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
        mxfp4_fixture(tmp)
        if sys.argv[1:] != ["--hf-only"]:
            gguf_fixtures(tmp)
    finally:
        shutil.rmtree(tmp)
    return 0


E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])


def to_mxfp4(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """w [E, rows, cols] -> (blocks u8 [E, rows, cols/32, 16], scales u8 [E, rows, cols/32]) in
    transformers' layout (low nibble = even element, E8M0 scale 2^(s - 127)); scale per the OCP
    rule 2^(floor(log2(amax)) - 2), each value rounded to the nearest E2M1 magnitude."""
    e, rows, cols = w.shape
    x = w.reshape(e, rows, cols // 32, 32).double()
    amax = x.abs().amax(-1, keepdim=True).clamp_min(2.0 ** -120)
    exp = torch.floor(torch.log2(amax)) - 2
    q = x / torch.pow(2.0, exp)
    mag = (q.abs().unsqueeze(-1) - E2M1.double()).abs().argmin(-1)  # 0..7 (clips at 6)
    code = (mag + torch.where(q < 0, 8, 0)).to(torch.uint8)
    blocks = code[..., 0::2] | (code[..., 1::2] << 4)
    return blocks.contiguous(), (exp.squeeze(-1) + 127).to(torch.uint8).contiguous()


def mxfp4_fixture(tmp: Path) -> None:
    """tests/golden/fixtures/gptoss-mxfp4/: gptoss-f32's model with its experts in MXFP4 as
    transformers lays it out (gate_up_proj_blocks/_scales, down_proj_blocks/_scales). No tool on
    this CPU-only machine writes that layout (transformers quantizes to MXFP4 only through the
    `kernels` hub's triton kernels), so to_mxfp4 above writes it; the oracle is transformers
    itself loading the folder with Mxfp4Config(dequantize=True) (its convert_moe_packed_tensors)."""
    from safetensors.torch import save_file as save
    from transformers import Mxfp4Config
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    model = make_model()
    out = FIXTURES / "gptoss-mxfp4"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    tensors = {}
    for name, t in model.state_dict().items():
        if name.endswith("experts.gate_up_proj") or name.endswith("experts.down_proj"):
            blocks, scales = to_mxfp4(t.transpose(1, 2).contiguous())  # rows = outputs
            back = convert_moe_packed_tensors(blocks, scales, dtype=torch.float32)
            assert back.shape == t.shape and (back - t).abs().max() <= t.abs().max() / 4, name
            tensors[name + "_blocks"], tensors[name + "_scales"] = blocks, scales
        else:
            tensors[name] = t.contiguous()
    save(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    cfg = model.config.to_dict()
    cfg["architectures"] = [type(model).__name__]  # save_pretrained adds it; to_dict does not
    cfg["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": [
        "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}
    (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    model.generation_config.to_json_file(str(out / "generation_config.json"))
    ref = AutoModelForCausalLM.from_pretrained(out, quantization_config=Mxfp4Config(dequantize=True),
                                               attn_implementation="eager", dtype=torch.float32).eval()
    assert ref.model.layers[0].mlp.experts.gate_up_proj.dtype == torch.float32
    refs, prompts = references(ref)
    meta = dict(model="gptoss-mxfp4", transformers=transformers.__version__, torch=torch.__version__.split("+")[0],
                architecture=type(ref).__name__, prompts=prompts,
                about="gptoss-f32 with MXFP4 experts written by tools/make_gptoss_fixtures.py:to_mxfp4 in "
                      "transformers' layout; reference: transformers with Mxfp4Config(dequantize=True)")
    save_file(refs, str(out / "reference.safetensors"), metadata={"quanta_fixture": json.dumps(meta, sort_keys=True)})
    for f in out.iterdir():
        os.chmod(f, 0o644)
    print(f"{out.name}: {prompts}")


def gguf_fixtures(tmp: Path) -> None:
    """tests/golden/fixtures/gguf/gptoss-<type>.gguf and .reference.safetensors: the GGUF model
    (defaults alpha 1.702 / limit 7, gate/up weights x4) converted by llama.cpp's
    convert_hf_to_gguf.py in f32, quantized by llama-quantize; the reference is transformers on
    the file's tensors dequantized by gguf-py."""
    model = make_model(gguf_config(), GGUF_GAIN)
    src = tmp / "gguf-hf"
    model.save_pretrained(src)
    shutil.copy(g.train_tokenizer(model.config.vocab_size, tmp), src / "tokenizer.model")
    base = tmp / "gptoss-f32.gguf"
    g.run([sys.executable, "-c", CONVERT, str(g.LLAMA_CPP), str(src), "--outfile", str(base), "--outtype", "f32",
           "--model-name", "quanta-tiny-gptoss"], env={**os.environ, "PYTHONHASHSEED": "0"})
    for typ in GGUF_TYPES:
        stem = f"gptoss-{typ.lower()}"
        path = tmp / f"{stem}.gguf"
        g.run([str(g.QUANTIZE), str(base), str(path), typ, "1"])
        ref = make_model(gguf_config(), GGUF_GAIN)
        ref.load_state_dict(load_gguf_weights(ref, path))
        tensors, prompts = references(ref)
        info = dict(model="gptoss", fixture=stem, gguf_type=typ, transformers=transformers.__version__,
                    torch=torch.__version__.split("+")[0], tensor_types=g.tensor_types(path), prompts=prompts,
                    clamp_share=round(clamp_share(ref, tensors["prompt_0"]), 4),
                    about="gpt-oss as gptoss-f32 but swiglu alpha 1.702 / limit 7 (what llama.cpp hard-codes) and "
                          "gate_up_proj x4 so the clamps bite; converted by llama.cpp, quantized by llama-quantize")
        ref_path = tmp / f"{stem}.reference.safetensors"
        save_file(tensors, str(ref_path), metadata={"quanta_fixture": json.dumps(info, sort_keys=True)})
        for f in (path, ref_path):
            os.chmod(f, 0o644)
            shutil.move(str(f), g.OUT / f.name)
        print(f"{stem}: {info['tensor_types']} clamp share {info['clamp_share']} {prompts}")


if __name__ == "__main__":
    sys.exit(main())
