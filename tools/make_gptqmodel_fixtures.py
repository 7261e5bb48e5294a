#!/usr/bin/env python3
"""Tiny GPTQ checkpoints written by GPTQModel itself, plus golden logits.

For each fixture: the tiny random Llama / Qwen3 of make_hf_quant_fixtures.py (f32, 2 layers,
hidden 64, a character tokenizer), quantized on the CPU by GPTQModel's own
`GPTQModel.load(float_dir, QuantizeConfig(...)).quantize(calibration)` and `save`: act-order
(`desc_act`, which writes a permuted `g_idx`), 2, 3 and 8 bits, asymmetric `gptq_v2`, and
`dynamic` per-module overrides.

Golden logits: every quantized Linear is dequantized by GPTQModel's own torch kernel (the folder
loaded back by `GPTQModel.load(folder, backend=BACKEND.GPTQ_TORCH)`; `TorchLinear.dequantize_weight`
with the checkpoint's fp16 scales in f32 (its loader casts them to bf16), so the weight is the
exact (q - z) * s), checked against
an independent unpacking of the raw tensors (make_hf_quant_fixtures.spec_dequant), and put into
transformers' f32 model built from the saved config; the float tensors come from the folder.

reference.safetensors: as make_hf_quant_fixtures.py writes it (prompt_<i>, logits_<i>,
float_logits_<i>, greedy_0, float_greedy_0), with a third prompt of 24 tokens for the engines'
prompt kernels; the metadata records versions and the QuantizeConfig.

Usage: GPTQMODEL_CPU_WORKERS=2 /work/venv/gptqmodel/bin/python tools/make_gptqmodel_fixtures.py [name ...]
"""
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_hf_quant_fixtures as H  # noqa: E402  (tiny models, the spec's unpacking, greedy decoding)

OUT = H.OUT

FIXTURES = {
    "gm-actorder-llama": ("llama", dict(bits=4, group_size=32, desc_act=True, sym=True)),
    "gm-v2-asym-qwen3": ("qwen3", dict(bits=4, group_size=32, desc_act=False, sym=False, format="gptq_v2")),
    "gm-2bit-llama": ("llama", dict(bits=2, group_size=32, desc_act=False, sym=True)),
    "gm-3bit-actorder-qwen3": ("qwen3", dict(bits=3, group_size=32, desc_act=True, sym=True)),
    # act_group_aware (GPTQModel 7.7 on by default) needs groups.
    "gm-8bit-channel-llama": ("llama", dict(bits=8, group_size=-1, desc_act=False, sym=True, act_group_aware=False)),
    # `dynamic`: "+:" overrides a module's settings, "-:" leaves it float.
    "gm-dynamic-qwen3": ("qwen3", dict(bits=4, group_size=32, desc_act=False, sym=True,
                                       dynamic={r"+:.*\.down_proj": {"bits": 8, "group_size": 64},
                                                r"-:.*layers\.1\.self_attn\.v_proj": {}})),
}


def version(pkg):
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def quantize(src, dst, qargs):
    from gptqmodel import GPTQModel, QuantizeConfig

    model = GPTQModel.load(src, QuantizeConfig(**qargs))
    model.quantize(list(H.CALIB) * 4, batch_size=1)
    model.save(dst)


def library_dequant(folder, tensors, shapes):
    """{module: W [N, K] f32} from GPTQModel's torch kernel."""
    from gptqmodel import BACKEND, GPTQModel

    model = GPTQModel.load(folder, device="cpu", backend=BACKEND.GPTQ_TORCH)
    out = {}
    for name, mod in model.model.named_modules():
        if hasattr(mod, "qweight") and hasattr(mod, "dequantize_weight"):
            # The loader casts scales to the model's dtype (bf16, lossy for the stored fp16):
            # the checkpoint's own scales, in f32.
            mod.scales = tensors[name + ".scales"].float()
            mod.clear_weight_cache()
            with torch.no_grad():
                w = mod.dequantize_weight()                 # [K, N]
            K, N = shapes[name]
            assert tuple(w.shape) == (K, N), (name, tuple(w.shape))
            out[name] = w.T.contiguous().float()
    return out


def golden_model(folder, tensors, W):
    model = AutoModelForCausalLM.from_config(H.float_config(folder)).to(torch.float32).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            mod = name.rsplit(".", 1)[0]
            p.copy_(W[mod] if mod in W else tensors[name].float())
    return model


def make(name, seed):
    arch, qargs = FIXTURES[name]
    folder = os.path.join(OUT, name)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "float")
        H.make_float_model(src, arch, seed)
        saved = os.path.join(tmp, "quant")
        quantize(src, saved, qargs)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(saved, folder)
        float_model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()

    qc = H.quant_config(folder)
    fmt = qc.get("checkpoint_format", qc.get("format", "gptq"))
    layout = "gptq_v1" if fmt == "gptq" else "gptq_v2"
    tensors = H.read_tensors(folder)
    shapes = H.linear_shapes(H.float_config(folder))
    W = library_dequant(folder, tensors, shapes)
    qmods = sorted({k.rsplit(".", 1)[0] for k in tensors if k.endswith(".qweight")})
    assert sorted(W) == qmods, (sorted(W), qmods)
    meta = {"fixture": name, "arch": arch, "quantize_config": {k: v for k, v in qargs.items()}, "layout": layout,
            "torch": torch.__version__, "transformers": version("transformers"), "gptqmodel": version("gptqmodel"),
            "golden_method": "GPTQModel.load(folder, backend=BACKEND.GPTQ_TORCH); TorchLinear.dequantize_weight() "
                             "with scales upcast to f32; transformers f32 model from the saved config",
            "layers": {}}
    spec_diff = 0.0
    for mod, w in W.items():
        K, N = shapes[mod]
        ws, bits, gs = H.spec_dequant(layout, {k[len(mod) + 1:]: v for k, v in tensors.items()
                                               if k.startswith(mod + ".")}, K, N)
        spec_diff = max(spec_diff, float(np.abs(ws - w.double().numpy()).max()))
        meta["layers"][mod] = {"bits": bits, "group_size": gs,
                               "act_order": bool((mod + ".g_idx") in tensors and not torch.equal(
                                   tensors[mod + ".g_idx"].long(), torch.arange(K) // gs))}
    meta["spec_vs_library_max_abs"] = spec_diff
    assert spec_diff < 1e-6, spec_diff

    ref = golden_model(folder, tensors, W)
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for i, n in enumerate((12, 5, 24)):
        prompt = torch.randint(4, 99, (n,), generator=gen)
        with torch.no_grad():
            logits = ref(prompt[None]).logits[0].float()
            flog = float_model(prompt[None]).logits[0].float()
        out[f"prompt_{i}"] = prompt.to(torch.int64)
        out[f"logits_{i}"] = logits.contiguous()
        out[f"float_logits_{i}"] = flog.contiguous()
        meta[f"max_abs_diff_vs_float_{i}"] = float((logits - flog).abs().max())
    out["greedy_0"] = H.greedy(ref, out["prompt_0"])
    out["float_greedy_0"] = H.greedy(float_model, out["prompt_0"])
    save_file(out, os.path.join(folder, "reference.safetensors"), metadata={"quanta_fixture": json.dumps(meta)})
    for f in os.listdir(folder):
        os.chmod(os.path.join(folder, f), 0o644)
    print(name, json.dumps({k: v for k, v in meta.items() if k != "layers"}),
          {m: (d["bits"], d["group_size"], d["act_order"]) for m, d in meta["layers"].items() if "layers.0." in m})


def main():
    if os.environ.get("GPTQMODEL_CPU_WORKERS") != "2":
        # GPTQModel 7.7 on a CPU-only host stops with a "virtual pool" error without it.
        os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, GPTQMODEL_CPU_WORKERS="2"))
    torch.set_num_threads(2)
    args = sys.argv[1:]
    unknown = set(args) - set(FIXTURES)
    if unknown:
        sys.exit(f"unknown fixture(s): {sorted(unknown)}; known: {list(FIXTURES)}")
    os.makedirs(OUT, exist_ok=True)
    for i, name in enumerate(FIXTURES):
        if not args or name in args:
            make(name, seed=400 + i)


if __name__ == "__main__":
    main()
