#!/usr/bin/env python3
"""Tiny msModelSlim checkpoints made by msModelSlim itself, plus reference logits.

For each fixture: build a tiny random Qwen3 (f32, random norms) with a small
character-level tokenizer, quantize it with the real `msmodelslim quant` CLI on the
CPU (`--device cpu`) using a per-layer mixed-precision config, and compute the
logits of the *saved* quantized folder with transformers' Qwen3 forward pass in
which every Linear is replaced by the spec's math (checkpoint-formats-1.md
sec. 1.5-1.6, 4.3) on the saved tensors:

  FLOAT           x @ W.T + b
  W8A16           x @ ((W - off) * scale).T + b
  W8A8 (static)   x_q = clamp(round(x / input_scale + input_offset), -128, 127);
                  y = (x_q @ W.T + quant_bias) * deq_scale          (bias is folded)
  W8A8_DYNAMIC    s = amax_t / 127, x_q = round(x / s); y = s * (x_q @ W.T) * scale + b
  W4A4_DYNAMIC    the same with 7
  MX (W8A8_MXFP8, W4A8_MXFP, W4A4_MXFP4)
                  activations MX-quantized per token in 32-blocks (OCP rule, E4M3 or
                  E2M1, round to nearest even, saturating), W decoded from its E8M0
                  blocks; y = x_mx @ W.T + b
  norm.bias       RMSNorm(x) * w + b  (the anti-outlier patch)

Everything in f32 except the integer sums (exact, float64). The original float
model's logits are saved too, so the size of the quantization error is visible.

Usage: /root/.cache/quanta/msms-venv/bin/python tools/make_modelslim_fixtures.py [name ...]
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen3Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "golden", "fixtures")
MSMODELSLIM = os.path.join(os.path.dirname(sys.executable), "msmodelslim")

HEADER = """apiversion: modelslim_v1
metadata:
  config_id: quanta-{name}
  score: 50
  verified_model_types: [ ]
  label: {{w_bit: 8, a_bit: 8, is_sparse: False, kv_cache: False}}
spec:
  process:
"""
FOOTER = """  dataset: {calib}
  save:
    - type: "ascendv1_saver"
      part_file_size: 4
"""
STATIC = '{act: {scope: "per_tensor", dtype: "int8", symmetric: False, method: "minmax"}, weight: {scope: "per_channel", dtype: "int8", symmetric: True, method: "minmax"}}'
DYN8 = '{act: {scope: "per_token", dtype: "int8", symmetric: True, method: "minmax"}, weight: {scope: "per_channel", dtype: "int8", symmetric: True, method: "minmax"}}'
W8A16 = '{weight: {scope: "per_channel", dtype: "int8", symmetric: True, method: "minmax"}}'
MXFP8 = '{act: {scope: "per_block", dtype: "mxfp8", symmetric: True, method: "minmax"}, weight: {scope: "per_block", dtype: "mxfp8", symmetric: True, method: "minmax"}}'
W4A8MX = '{act: {scope: "per_block", dtype: "mxfp8", symmetric: True, method: "minmax"}, weight: {scope: "per_block", dtype: "mxfp4", symmetric: True, method: "minmax"}}'
MXFP4 = '{act: {scope: "per_block", dtype: "mxfp4", symmetric: True, method: "minmax"}, weight: {scope: "per_block", dtype: "mxfp4", symmetric: True, method: "minmax"}}'


def linear_quant(qconfig, layers):
    inc = ", ".join(f'"{l}"' for l in layers)
    return f'    - type: "linear_quant"\n      qconfig: {qconfig}\n      include: [ {inc} ]\n'


def w4a4_autoround(layers):
    # msModelSlim's per-token int4 activation quantizer exists only inside its
    # AutoRound processor; one tuning iteration (the minimum it accepts).
    inc = ", ".join(f'"{l}"' for l in layers)
    return ('    - type: "autoround_quant"\n      iters: 1\n      enable_round_tuning: true\n      strategies:\n'
            '        - qconfig:\n'
            '            weight: {scope: "per_channel", dtype: "int4", symmetric: true, method: "autoround"}\n'
            '            act: {scope: "per_token", dtype: "int4", symmetric: true, method: "minmax"}\n'
            f'          include: [ {inc} ]\n')


def L(i, name):
    part = "self_attn" if name.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else "mlp"
    return f"model.layers.{i}.{part}.{name}"


def qkv(i):
    return [L(i, "q_proj"), L(i, "k_proj"), L(i, "v_proj")]


def gate_up(i):
    return [L(i, "gate_proj"), L(i, "up_proj")]


FIXTURES = {
    # FLOAT, W8A8, W8A8_DYNAMIC, W4A4_DYNAMIC and W8A16 across two layers.
    "modelslim-int": {
        "process": (linear_quant(STATIC, qkv(0) + [L(1, "o_proj")]) +
                    linear_quant(DYN8, [L(0, "o_proj")] + qkv(1)) +
                    linear_quant(W8A16, gate_up(1)) +
                    w4a4_autoround(gate_up(0) + [L(1, "down_proj")])),
        "runner": "",
    },
    # W8A8_MXFP8, W4A8_MXFP and W4A4_MXFP4 across two layers.
    "modelslim-mx": {
        "process": (linear_quant(MXFP8, qkv(0) + [L(0, "down_proj"), L(1, "o_proj")]) +
                    linear_quant(W4A8MX, gate_up(0) + qkv(1)) +
                    linear_quant(MXFP4, [L(0, "o_proj"), L(1, "gate_proj"), L(1, "up_proj"), L(1, "down_proj")])),
        "runner": '  runner: "model_wise"\n',
    },
    # Asymmetric iterative smoothing: RMSNorm biases (norm.bias) and float biases on
    # the smoothed linears, with static and dynamic int8 layers.
    "modelslim-smooth": {
        "process": ('    - type: "iter_smooth"\n      symmetric: False\n      include: ["*"]\n' +
                    linear_quant(STATIC, qkv(0) + qkv(1)) +
                    linear_quant(DYN8, [L(i, n) for i in (0, 1) for n in ("o_proj", "gate_proj", "up_proj", "down_proj")])),
        "runner": '  runner: "model_wise"\n',
    },
}

CALIB = [
    "The quick brown fox jumps over the lazy dog.",
    "Quantization maps real numbers onto a small grid of integers.",
    "A tiny model, random weights, and a real quantizer.",
    "Mixed precision: every layer may choose its own bits!",
]


def make_float_model(path, seed):
    torch.manual_seed(seed)
    # Byte-level BPE without merges: one token per printable ASCII character ("\u0120"
    # is ByteLevel's space), enough for calibration text and readable by quanta.
    words = ["<unk>", "<pad>", "<s>", "</s>", "\u0120"] + [chr(c) for c in range(33, 127)]
    tok = Tokenizer(models.BPE(vocab={w: i for i, w in enumerate(words)}, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>")
    cfg = Qwen3Config(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
                      tie_word_embeddings=False, initializer_range=0.1, rms_norm_eps=1e-6,
                      bos_token_id=2, eos_token_id=3, pad_token_id=1)
    model = AutoModelForCausalLM.from_config(cfg).to(torch.float32).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return model


# ---- the spec's math ---------------------------------------------------------

def mx_fake_quant(x, elem):
    """OCP MX quantize-dequantize of the last dim in blocks of 32 (f32)."""
    emax, maxn = {"e4m3": (8, 448.0), "e2m1": (2, 6.0)}[elem]
    shape = x.shape
    b = x.reshape(-1, shape[-1] // 32, 32)
    amax = b.abs().amax(-1, keepdim=True)
    amax = torch.where(amax == 0, torch.full_like(amax, torch.finfo(torch.float32).tiny), amax)
    _, e = torch.frexp(amax)
    shared = (e - 1 - emax).clamp(min=-127).to(torch.float32)
    X = torch.pow(torch.tensor(2.0), shared)
    p = (b / X).clamp(-maxn, maxn)
    if elem == "e4m3":
        q = p.to(torch.float8_e4m3fn).to(torch.float32)
    else:
        grid = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
        a = p.abs()
        hi = torch.bucketize(a, grid).clamp(max=7)  # first grid point >= a
        lo = (hi - 1).clamp(min=0)
        dlo, dhi = a - grid[lo], grid[hi] - a
        pick = torch.where(dlo < dhi, lo, torch.where(dhi < dlo, hi, torch.where(lo % 2 == 0, lo, hi)))
        q = grid[pick] * torch.sign(p)
    return (q * X).reshape(shape)


E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])


def e8m0(s):
    return torch.pow(torch.tensor(2.0, dtype=torch.float64), s.to(torch.float64) - 127).to(torch.float32)


class SpecLinear(torch.nn.Module):
    def __init__(self, scheme, t, prefix):
        super().__init__()
        self.scheme, self.t, self.prefix = scheme, t, prefix

    def forward(self, x):
        t, s = self.t, self.scheme
        bias = t.get("bias")
        if s == "FLOAT":
            y = x @ t["weight"].float().T
        elif s == "W8A16":
            w = (t["weight"].float() - t["weight_offset"].float()) * t["weight_scale"].float()
            y = x @ w.T
        elif s == "W8A8":
            xq = torch.round(x / t["input_scale"].float() + t["input_offset"].float()).clamp(-128, 127)
            acc = xq.double() @ t["weight"].double().T + t["quant_bias"].double()
            dq = t["deq_scale"]
            if dq.dtype == torch.int64:
                dq = (dq & 0xFFFFFFFF).to(torch.int32).view(torch.float32)
            y = (acc * dq.double()).float()
            bias = None  # folded into quant_bias
        elif s in ("W8A8_DYNAMIC", "W4A4_DYNAMIC"):
            qmax = 127.0 if s == "W8A8_DYNAMIC" else 7.0
            st = x.abs().amax(-1, keepdim=True) / qmax
            xq = torch.where(st > 0, torch.round(x / st), torch.zeros_like(x))
            w = t["weight"].double() - t["weight_offset"].double()
            acc = xq.double() @ w.T
            y = (acc * t["weight_scale"].double().T * st.double()).float()
        elif s in ("W8A8_MXFP8", "W4A8_MXFP", "W4A4_MXFP4"):
            xa = mx_fake_quant(x, "e2m1" if s == "W4A4_MXFP4" else "e4m3")
            sc = e8m0(t["weight_scale"]).repeat_interleave(32, dim=1)
            if s == "W8A8_MXFP8":
                w = t["weight"].to(torch.float32) * sc
            else:
                p = t["weight"].to(torch.int64)
                codes = torch.stack([p & 0xF, p >> 4], dim=-1).reshape(p.shape[0], -1)
                w = E2M1[codes] * sc
            y = (xa.double() @ w.double().T).float()
        else:
            raise ValueError(f"{self.prefix}: no reference for {s}")
        if bias is not None:
            y = y + bias.float()
        return y


class BiasedNorm(torch.nn.Module):
    def __init__(self, norm, bias):
        super().__init__()
        self.norm, self.bias = norm, bias

    def forward(self, x):
        return self.norm(x) + self.bias


def reference_model(folder):
    desc = json.load(open(os.path.join(folder, "quant_model_description.json")))
    tensors = {}
    for f in sorted(os.listdir(folder)):
        if f.startswith("quant_model_weight") and f.endswith(".safetensors"):
            with safe_open(os.path.join(folder, f), "pt") as s:
                for k in s.keys():
                    tensors[k] = s.get_tensor(k)
    cfg = AutoConfig.from_pretrained(folder)
    model = AutoModelForCausalLM.from_config(cfg).to(torch.float32).eval()
    # Float parameters by name (norms, embeddings, lm_head).
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in tensors and desc.get(name, "FLOAT") == "FLOAT":
                p.copy_(tensors[name].float())
    for name, mod in list(model.named_modules()):
        for child_name, child in list(mod.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, torch.nn.Linear) and full != "lm_head":
                scheme = desc[full + ".weight"]
                t = {k[len(full) + 1:]: v for k, v in tensors.items() if k.startswith(full + ".")}
                setattr(mod, child_name, SpecLinear(scheme, t, full))
            elif "norm" in child_name and (full + ".bias") in tensors:
                setattr(mod, child_name, BiasedNorm(child, tensors[full + ".bias"].float()))
    return model


def make(name, spec, seed):
    folder = os.path.join(OUT, name)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "float")
        float_model = make_float_model(src, seed)
        calib = os.path.join(tmp, "calib.jsonl")
        with open(calib, "w") as f:
            for line in CALIB:
                f.write(json.dumps({"inputs_pretokenized": line}) + "\n")
        cfg = os.path.join(tmp, "config.yaml")
        with open(cfg, "w") as f:
            f.write(HEADER.format(name=name) + spec["process"] + spec["runner"] + FOOTER.format(calib=calib))
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([MSMODELSLIM, "quant", "--model_type", "Qwen3-8B", "--model_path", src, "--save_path", folder,
                        "--device", "cpu", "--config_path", cfg, "--trust_remote_code", "False"], check=True,
                       stdout=subprocess.DEVNULL)
        shutil.copy(cfg, os.path.join(folder, "msmodelslim-config.yaml"))
        for f in os.listdir(folder):
            if f.endswith("_best_practice.yaml"):
                os.remove(os.path.join(folder, f))
        ref = reference_model(folder)
        gen = torch.Generator().manual_seed(seed)
        out, meta = {}, {"fixture": name, "torch": torch.__version__, "msmodelslim": "26.1.0"}
        for i, n in enumerate((12, 5)):
            prompt = torch.randint(4, 99, (n,), generator=gen)
            with torch.no_grad():
                logits = ref(prompt[None]).logits[0].float()
                flog = float_model(prompt[None]).logits[0].float()
            out[f"prompt_{i}"] = prompt.to(torch.int64)
            out[f"logits_{i}"] = logits.contiguous()
            out[f"float_logits_{i}"] = flog.contiguous()
            meta[f"max_abs_diff_vs_float_{i}"] = float((logits - flog).abs().max())
            meta[f"max_abs_logit_{i}"] = float(flog.abs().max())
        save_file(out, os.path.join(folder, "reference.safetensors"), metadata={"quanta_fixture": json.dumps(meta)})
        print(name, json.dumps(meta))


def main():
    torch.set_num_threads(1)
    names = sys.argv[1:] or list(FIXTURES)
    for i, name in enumerate(FIXTURES):
        if name in names:
            make(name, FIXTURES[name], seed=100 + i)


if __name__ == "__main__":
    main()
