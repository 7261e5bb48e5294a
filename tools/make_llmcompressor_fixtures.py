#!/usr/bin/env python3
"""Tiny compressed-tensors checkpoints written by LLM Compressor itself, plus golden logits.

For each fixture: the tiny random Llama / Qwen3 of make_hf_quant_fixtures.py (f32, 2 layers,
hidden 64, a character tokenizer), quantized on the CPU by the real `llmcompressor.oneshot`
with a recipe (QuantizationModifier = round to nearest, GPTQModifier = GPTQ on four
calibration sentences), saved compressed by LLM Compressor's own `save_pretrained`.

Golden logits come from transformers loading the saved folder on the CPU
(`CompressedTensorsConfig(run_compressed=False)`): compressed-tensors decompresses every
weight with its own code and, for schemes with input activations (W8A8, W4A8, FP8 dynamic),
its forward wrapper quantizes each Linear's input as the scheme says (dynamic per token).
The script checks that this is so: for those schemes the logits must differ from the same
model with the activation quantization turned off. Scales are f32 (the float model is f32),
so the decompressed weights are exact products.

reference.safetensors: as make_hf_quant_fixtures.py writes it (prompt_<i>, logits_<i>,
float_logits_<i>, greedy_0, float_greedy_0), with a third prompt of 24 tokens so that the
engines' prompt kernels (16 tokens and more) run too, and for schemes that quantize
activations noquant_logits_<i>: the same folder with that quantization switched off.
Metadata records versions and recipes.

Usage: /work/venv/llmcompressor/bin/python tools/make_llmcompressor_fixtures.py [name ...]
"""
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, CompressedTensorsConfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_hf_quant_fixtures as H  # noqa: E402  (the tiny models, the greedy decoding)

OUT = H.OUT
CALIB = H.CALIB


def int_args(bits, group, sym=True, strategy="group", actorder=None):
    a = {"num_bits": bits, "type": "int", "symmetric": sym, "strategy": strategy}
    if strategy == "group":
        a["group_size"] = group
    if actorder:
        a["actorder"] = actorder
    return a


DYN_INT8 = {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "token", "dynamic": True}
DYN_FP8 = {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "token", "dynamic": True}
ATTN = ["re:.*self_attn\\.(q|k|v|o)_proj$"]
MLP = ["re:.*mlp\\.(gate|up|down)_proj$"]

# name: (arch, modifier, config_groups, ignore). Groups of 32: the tiny model's rows are 64 and 128
# long, so the presets' group 128 cannot be used as is.
FIXTURES = {
    "lc-w4a16-gptq-llama": ("llama", "GPTQModifier",
                            {"group_0": {"targets": ["Linear"], "weights": int_args(4, 32)}}, ["lm_head"]),
    "lc-w4a16-gptq-actorder-qwen3": ("qwen3", "GPTQModifier",
                                     {"group_0": {"targets": ["Linear"],
                                                  "weights": int_args(4, 32, actorder="weight")}}, ["lm_head"]),
    "lc-w4a16-rtn-asym-qwen3": ("qwen3", "QuantizationModifier",
                                {"group_0": {"targets": ["Linear"], "weights": int_args(4, 32, sym=False)}},
                                ["lm_head", "model.layers.1.mlp.down_proj"]),
    "lc-w8a16-llama": ("llama", "QuantizationModifier",
                       {"group_0": {"targets": ["Linear"], "weights": int_args(8, 32)}}, ["lm_head"]),
    "lc-w8a8-int8-llama": ("llama", "QuantizationModifier",
                           {"group_0": {"targets": ["Linear"], "weights": int_args(8, None, strategy="channel"),
                                        "input_activations": DYN_INT8}}, ["lm_head"]),
    "lc-w4a8-qwen3": ("qwen3", "QuantizationModifier",
                      {"group_0": {"targets": ["Linear"], "weights": int_args(4, 32),
                                   "input_activations": DYN_INT8}}, ["lm_head"]),
    "lc-fp8-dynamic-qwen3": ("qwen3", "QuantizationModifier",
                             {"group_0": {"targets": ["Linear"],
                                          "weights": {"num_bits": 8, "type": "float", "symmetric": True,
                                                      "strategy": "channel"},
                                          "input_activations": DYN_FP8}}, ["lm_head"]),
    # Mixed precision: int8 W8A8 attention, W4A16 g32 asym MLP (two config groups).
    "lc-mixed-llama": ("llama", "QuantizationModifier",
                       {"attn": {"targets": ATTN, "weights": int_args(8, None, strategy="channel"),
                                 "input_activations": DYN_INT8},
                        "mlp": {"targets": MLP, "weights": int_args(4, 32, sym=False)}}, ["lm_head"]),
    # Mixed precision without activation quantization: FP8 weight-only attention, W4A16 g32 MLP.
    "lc-mixed-fp8w-qwen3": ("qwen3", "QuantizationModifier",
                            {"attn": {"targets": ATTN, "weights": {"num_bits": 8, "type": "float", "symmetric": True,
                                                                   "strategy": "channel"}},
                             "mlp": {"targets": MLP, "weights": int_args(4, 32)}}, ["lm_head"]),
}


def version(pkg):
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def quantize(name, src, tok, dst):
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

    arch, modifier, groups, ignore = FIXTURES[name]
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    cls = {"GPTQModifier": GPTQModifier, "QuantizationModifier": QuantizationModifier}[modifier]
    recipe = cls(config_groups=groups, ignore=ignore)
    ids = [tok(t)["input_ids"] for t in CALIB]
    ds = Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * len(i) for i in ids]})
    oneshot(model=model, recipe=recipe, dataset=ds, num_calibration_samples=len(ids), max_seq_length=64)
    model.save_pretrained(dst, save_compressed=True)
    tok.save_pretrained(dst)
    return {"modifier": modifier, "config_groups": groups, "ignore": ignore}


def load_quantized(folder):
    return AutoModelForCausalLM.from_pretrained(
        folder, device_map="cpu", dtype=torch.float32,
        quantization_config=CompressedTensorsConfig(run_compressed=False)).eval()


def has_input_quant(recipe):
    return any("input_activations" in g for g in recipe["config_groups"].values())


def without_input_quant(model):
    """The same model with every Linear's input quantization switched off (the check that it was on)."""
    n = 0
    for m in model.modules():
        scheme = getattr(m, "quantization_scheme", None)
        if scheme is not None and scheme.input_activations is not None:
            scheme.input_activations = None
            n += 1
    return n


def make(name, seed):
    arch = FIXTURES[name][0]
    folder = os.path.join(OUT, name)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "float")
        tok = H.make_float_model(src, arch, seed)
        saved = os.path.join(tmp, "quant")
        recipe = quantize(name, src, tok, saved)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(saved, folder)
        float_model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    for f in os.listdir(folder):  # the recipe is documentation, not something quanta reads
        if f == "recipe.yaml":
            os.remove(os.path.join(folder, f))

    ref = load_quantized(folder)
    plain = load_quantized(folder)
    switched = without_input_quant(plain) if has_input_quant(recipe) else 0
    qc = H.quant_config(folder)
    meta = {"fixture": name, "arch": arch, "recipe": recipe, "torch": torch.__version__,
            "transformers": version("transformers"), "llmcompressor": version("llmcompressor"),
            "compressed_tensors": version("compressed-tensors"), "quantization_config": qc,
            "golden_method": "transformers AutoModelForCausalLM.from_pretrained(folder, dtype=float32, "
                             "quantization_config=CompressedTensorsConfig(run_compressed=False)) forward on the CPU"}
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for i, n in enumerate((12, 5, 24, 3)):
        prompt = torch.randint(4, 99, (n,), generator=gen)
        with torch.no_grad():
            logits = ref(prompt[None]).logits[0].float()
            flog = float_model(prompt[None]).logits[0].float()
            plog = plain(prompt[None]).logits[0].float()
        out[f"prompt_{i}"] = prompt.to(torch.int64)
        out[f"logits_{i}"] = logits.contiguous()
        out[f"float_logits_{i}"] = flog.contiguous()
        if switched:
            out[f"noquant_logits_{i}"] = plog.contiguous()
        meta[f"max_abs_diff_vs_float_{i}"] = float((logits - flog).abs().max())
        meta[f"max_abs_diff_without_input_quant_{i}"] = float((logits - plog).abs().max())
        if switched:
            assert meta[f"max_abs_diff_without_input_quant_{i}"] > 0, "input activations were not quantized"
    meta["modules_with_input_quant"] = switched
    out["greedy_0"] = H.greedy(ref, out["prompt_0"])
    out["float_greedy_0"] = H.greedy(float_model, out["prompt_0"])
    save_file(out, os.path.join(folder, "reference.safetensors"), metadata={"quanta_fixture": json.dumps(meta)})
    for f in os.listdir(folder):
        os.chmod(os.path.join(folder, f), 0o644)
    print(name, json.dumps({k: v for k, v in meta.items() if k not in ("quantization_config", "recipe")}))


def main():
    torch.set_num_threads(2)
    args = sys.argv[1:]
    unknown = set(args) - set(FIXTURES)
    if unknown:
        sys.exit(f"unknown fixture(s): {sorted(unknown)}; known: {list(FIXTURES)}")
    os.makedirs(OUT, exist_ok=True)
    for i, name in enumerate(FIXTURES):
        if not args or name in args:
            make(name, seed=300 + i)


if __name__ == "__main__":
    main()
