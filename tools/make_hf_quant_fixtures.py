#!/usr/bin/env python3
"""Tiny Hugging Face quantized checkpoints made by auto-round itself, plus golden logits.

For each fixture: build a tiny random Llama or Qwen3 (f32, random norms) with a small
character-level byte-level BPE tokenizer, quantize it on the CPU with the real
auto-round `AutoRound(...).quantize_and_save(...)` API (RTN, or two SignRound
iterations on four calibration sentences) in one of its export formats
(`auto_round`, `auto_gptq`, `auto_awq`, `llm_compressor`), and compute reference
logits that do not depend on the engine under test:

  * every quantized Linear is dequantized by the quantization library's own code,
    with the stored fp16 scales first upcast to f32 (so the dequantized weight is the
    exact product (q - z) * s in f32, not an fp16-rounded one):
      - auto-round GPTQ-layout packings (`auto_round:auto_gptq`, plain `auto_round`,
        and `quant_method: gptq` through `AutoRoundConfig`): transformers loads the
        saved folder on the CPU, auto-round's loader replaces the Linears by its
        `auto_round_extension.torch` QuantLinear (`qlinear_torch_zp` / `qlinear_torch`),
        and the module's own unpack+dequant (its forward) is applied to the identity
        matrix: QuantLinear(eye(K)) = W^T;
      - AWQ GEMM layout (`auto_round:auto_awq`, `quant_method: awq`): auto-round's
        `auto_round.export.export_to_awq.utils.dequantize_gemm` (auto-round's CPU
        loader has no AWQ backend here, see the README);
      - compressed-tensors `pack-quantized`: compressed_tensors'
        `PackedQuantizationCompressor.decompress` with the scheme that
        `compressed_tensors.utils.is_match` assigns from the saved config;
  * an independent re-implementation of the spec's math
    (../shared/specs/checkpoint-formats-2.md sec. 1-3, checkpoint-formats-1.md sec. 3)
    on the raw saved tensors must agree with the library result exactly;
  * the golden model is transformers' f32 Llama/Qwen3 built from the saved config
    without its quantization_config, with the float tensors copied from the saved
    safetensors and the dequantized weights put into the Linears.

reference.safetensors: prompt_<i> (I64), logits_<i> (F32 [L, 128]) from the dequantized
f32 model, float_logits_<i> from the original float model, greedy_0 (I64 [16]) = 16
greedy tokens after prompt_0 (no EOS stop) from the dequantized model, float_greedy_0
the same from the float model; the metadata records versions and the error checks.

Usage: /work/venv/autoround/bin/python tools/make_hf_quant_fixtures.py [name ...]
       /work/venv/autoround/bin/python tools/make_hf_quant_fixtures.py --describe [name ...]
"""
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (AutoConfig, AutoModelForCausalLM, GenerationConfig, LlamaConfig,
                          PreTrainedTokenizerFast, Qwen3Config)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "golden", "fixtures", "hf-quant")

CALIB = [
    "The quick brown fox jumps over the lazy dog.",
    "Quantization maps real numbers onto a small grid of integers.",
    "A tiny model, random weights, and a real quantizer.",
    "Mixed precision: every layer may choose its own bits!",
]


def L(i, name):
    part = "self_attn" if name.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else "mlp"
    return f"model.layers.{i}.{part}.{name}"


def per_layer(spec):
    """{(layer, [names]): cfg} -> auto-round layer_config {full name: cfg}."""
    out = {}
    for (i, names), cfg in spec:
        for n in names:
            out[L(i, n)] = dict(cfg)
    return out


QKV = ["q_proj", "k_proj", "v_proj"]
ATTN = QKV + ["o_proj"]
MLP = ["gate_proj", "up_proj", "down_proj"]

FIXTURES = {
    # W4 g32 sym, two real SignRound iterations (tuned rounding + min/max).
    "ar-gptq-sym-llama": dict(arch="llama", format="auto_round", bits=4, group_size=32, sym=True, iters=2),
    # W4 g32 asym RTN -> auto-round picks the AWQ GEMM packing.
    "ar-awq-asym-qwen3": dict(arch="qwen3", format="auto_round", bits=4, group_size=32, sym=False),
    # asym, default W4 per-channel (group_size -1), per-layer 2/3/4/8/16 bits.
    "ar-mixed-qwen3": dict(arch="qwen3", format="auto_round", bits=4, group_size=-1, sym=False,
                           layer_config=per_layer([
                               ((0, QKV), {"bits": 2, "group_size": 32}),
                               ((0, ["o_proj"]), {"bits": 3, "group_size": 32}),
                               ((0, MLP), {"bits": 4, "group_size": 32}),
                               ((1, ATTN), {"bits": 8, "group_size": 64}),
                               ((1, ["gate_proj"]), {"bits": 16}),
                           ])),
    # sym, default W4 per-channel, per-layer 2/3/8/16 bits (8-bit g64 with 2 groups on down_proj).
    "ar-mixed-sym-llama": dict(arch="llama", format="auto_round", bits=4, group_size=-1, sym=True,
                               layer_config=per_layer([
                                   ((0, QKV), {"bits": 3, "group_size": 32}),
                                   ((0, ["o_proj"]), {"bits": 8, "group_size": 64}),
                                   ((0, ["gate_proj"]), {"bits": 2, "group_size": 32}),
                                   ((0, ["up_proj"]), {"bits": 16}),
                                   ((0, ["down_proj"]), {"bits": 8, "group_size": 64}),
                                   ((1, ["k_proj"]), {"bits": 2, "group_size": 32}),
                               ])),
    # quant_method gptq (v1 zeros) with a `dynamic` dict: 8-bit, 3-bit and one float layer.
    "gptq-autoround-llama": dict(arch="llama", format="auto_gptq", bits=4, group_size=32, sym=True,
                                 layer_config=per_layer([
                                     ((0, ["o_proj"]), {"bits": 8, "group_size": 32}),
                                     ((1, ["down_proj"]), {"bits": 3, "group_size": 32}),
                                     ((1, ["v_proj"]), {"bits": 16}),
                                 ])),
    # quant_method awq, W4 g32 asym, one layer left float (modules_to_not_convert).
    "awq-autoround-qwen3": dict(arch="qwen3", format="auto_awq", bits=4, group_size=32, sym=False,
                                layer_config=per_layer([((1, ["down_proj"]), {"bits": 16})])),
    # compressed-tensors pack-quantized W4A16 g32 sym.
    "ct-autoround-llama": dict(arch="llama", format="llm_compressor", bits=4, group_size=32, sym=True),
    # compressed-tensors pack-quantized W4A16 g32 asym + one 8-bit g64 layer + one ignored layer.
    "ct-autoround-asym-qwen3": dict(arch="qwen3", format="llm_compressor", bits=4, group_size=32, sym=False,
                                    layer_config=per_layer([
                                        ((0, ["o_proj"]), {"bits": 8, "group_size": 64}),
                                        ((1, ["down_proj"]), {"bits": 16}),
                                    ])),
}


def version(pkg):
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


# ---- base model ----------------------------------------------------------------

def make_tokenizer():
    # Byte-level BPE without merges: one token per printable ASCII character ("\u0120"
    # is ByteLevel's space); ids 0-98, the model's vocab is 128.
    words = ["<unk>", "<pad>", "<s>", "</s>", "\u0120"] + [chr(c) for c in range(33, 127)]
    tok = Tokenizer(models.BPE(vocab={w: i for i, w in enumerate(words)}, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>")


def make_float_model(path, arch, seed):
    torch.manual_seed(seed)
    cls = {"llama": LlamaConfig, "qwen3": Qwen3Config}[arch]
    cfg = cls(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
              tie_word_embeddings=False, initializer_range=0.1, rms_norm_eps=1e-6,
              bos_token_id=2, eos_token_id=3, pad_token_id=1)
    model = AutoModelForCausalLM.from_config(cfg).to(torch.float32).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
    tok = make_tokenizer()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return tok


def quantize(spec, src, tok, out_root):
    from auto_round import AutoRound

    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    kw = dict(scheme="W4A16", bits=spec["bits"], group_size=spec["group_size"], sym=spec["sym"],
              layer_config=spec.get("layer_config"), dataset=list(CALIB), device_map="cpu", seed=42)
    if spec.get("iters", 0) > 0:
        kw.update(iters=spec["iters"], nsamples=4, seqlen=8, batch_size=2)
    else:
        kw.update(iters=0, disable_opt_rtn=True, nsamples=4, seqlen=8)  # plain RTN
    ar = AutoRound(model, tokenizer=tok, **kw)
    _, folders = ar.quantize_and_save(out_root, format=spec["format"])
    folder = folders[0] if isinstance(folders, (list, tuple)) else folders
    return folder, {k: v for k, v in kw.items() if k not in ("dataset", "layer_config")}


# ---- reading the saved folder --------------------------------------------------

def read_tensors(folder):
    tensors = {}
    for f in sorted(os.listdir(folder)):
        if f.endswith(".safetensors") and f != "reference.safetensors":
            with safe_open(os.path.join(folder, f), "pt") as s:
                for k in s.keys():
                    tensors[k] = s.get_tensor(k)
    return tensors


def quant_config(folder):
    return json.load(open(os.path.join(folder, "config.json")))["quantization_config"]


def float_config(folder):
    d = json.load(open(os.path.join(folder, "config.json")))
    d.pop("quantization_config")
    return AutoConfig.for_model(d.pop("model_type"), **d)


def layout_of(qc):
    m = qc["quant_method"]
    if m == "compressed-tensors":
        return "ct"
    if m == "awq" or (m == "auto-round" and "awq" in qc.get("packing_format", "")):
        return "awq"
    if m == "gptq":
        return "gptq_v1" if qc.get("checkpoint_format", "gptq") == "gptq" else "gptq_v2"
    pf = qc.get("packing_format", "auto_round:auto_gptq")
    return "gptq_v1" if pf in ("auto_round:auto_gptq", "auto_round:gptq") else "gptq_v2"


def linear_shapes(cfg):
    model = AutoModelForCausalLM.from_config(cfg)
    return {n: (m.in_features, m.out_features) for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear)}


# ---- the spec's math (independent of the libraries) ------------------------------

def unpack_stream(words, bits, count):
    """Little-endian bit stream along the last axis: value i = bits [b*i, b*i+b)."""
    w = words.astype(np.int64) & 0xFFFFFFFF
    mask = (1 << bits) - 1
    out = np.zeros(w.shape[:-1] + (count,), dtype=np.int64)
    for i in range(count):
        bit = bits * i
        j, off = divmod(bit, 32)
        v = w[..., j] >> off
        if off + bits > 32:
            v = v | (w[..., j + 1] << (32 - off))
        out[..., i] = v & mask
    return out


AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]


def spec_dequant(layout, t, K, N):
    """W [N, K] (float64) from the saved tensors of one module, following the spec."""
    if layout.startswith("gptq"):
        qw, qz, s = t["qweight"].numpy(), t["qzeros"].numpy(), t["scales"].double().numpy()
        bits = 32 * qw.shape[0] // K
        G = s.shape[0]
        q = unpack_stream(qw.T, bits, K)                      # [N, K], packed along K
        z = unpack_stream(qz, bits, N)                        # [G, N], packed along N
        if layout == "gptq_v1":
            z = z + 1
        g = t["g_idx"].numpy().astype(np.int64) if "g_idx" in t else np.arange(K) // (K // G)
        return s[g].T * (q - z[g].T), bits, K // G
    if layout == "awq":
        qw, qz, s = t["qweight"].numpy(), t["qzeros"].numpy(), t["scales"].double().numpy()
        bits = 32 * qw.shape[1] // N
        assert bits == 4
        G = s.shape[0]

        def deinterleave(words):
            f = unpack_stream(words, 4, words.shape[-1] * 8).reshape(words.shape[0], -1, 8)
            o = np.empty_like(f)
            o[:, :, AWQ_ORDER] = f                            # field i holds column 8j + ORDER[i]
            return o.reshape(words.shape[0], -1)

        q = deinterleave(qw)                                  # [K, N]
        z = deinterleave(qz)                                  # [G, N]
        g = np.arange(K) // (K // G)
        return (s[g] * (q - z[g])).T, bits, K // G
    if layout == "ct":
        wp, s = t["weight_packed"].numpy(), t["weight_scale"].double().numpy()
        n, k = t["weight_shape"].tolist()
        assert (n, k) == (N, K)
        bits = 32 * wp.shape[1] // K
        G = s.shape[1]
        off = 1 << (bits - 1)
        q = unpack_stream(wp, bits, K) - off                  # [N, K] signed
        if "weight_zero_point" in t:
            z = unpack_stream(t["weight_zero_point"].numpy().T, bits, N).T - off   # [N, G]
        else:
            z = np.zeros((N, G), dtype=np.int64)
        g = t["weight_g_idx"].numpy().astype(np.int64) if "weight_g_idx" in t else np.arange(K) // (K // G)
        return s[:, g] * (q - z[:, g]), bits, K // G
    raise ValueError(layout)


# ---- the libraries' own dequantization -----------------------------------------

def library_dequant(folder, layout, qc, tensors, shapes):
    """{module: W [N, K] f32} from the quantization libraries, and a note on how."""
    out = {}
    qmods = sorted({k.rsplit(".", 1)[0] for k in tensors if k.endswith((".qweight", ".weight_packed"))})
    if layout.startswith("gptq"):
        from transformers import AutoRoundConfig

        kw = {"quantization_config": AutoRoundConfig()} if qc["quant_method"] != "auto-round" else {}
        model = AutoModelForCausalLM.from_pretrained(folder, device_map="cpu", **kw)
        loaded = {}
        for name, mod in model.named_modules():
            if hasattr(mod, "qweight"):
                K, N = shapes[name]
                loaded[name] = type(mod).__module__ + "." + type(mod).__name__
                mod.scales = mod.scales.float()
                with torch.no_grad():
                    wt = mod(torch.eye(K, dtype=torch.float32))   # the module's own dequant: eye @ W^T
                out[name] = wt.T.contiguous().float()
        assert sorted(loaded) == qmods, (sorted(loaded), qmods)
        how = ("transformers.AutoModelForCausalLM.from_pretrained(folder, device_map='cpu'"
               + (", quantization_config=AutoRoundConfig()" if kw else "") + ") -> auto-round's "
               + ", ".join(sorted(set(loaded.values()))) + "; scales upcast to f32; W^T = QuantLinear(eye(K))")
        return out, how
    if layout == "awq":
        from auto_round.export.export_to_awq.utils import dequantize_gemm

        for name in qmods:
            K, N = shapes[name]
            qw, qz, s = tensors[name + ".qweight"], tensors[name + ".qzeros"], tensors[name + ".scales"]
            bits = 32 * qw.shape[1] // N
            gs = K // s.shape[0]
            assert bits == qc["bits"] and gs == (qc["group_size"] if qc["group_size"] > 0 else K)
            out[name] = dequantize_gemm(qw, qz, s.float(), bits, gs).T.contiguous().float()
        return out, "auto_round.export.export_to_awq.utils.dequantize_gemm(qweight, qzeros, scales.float(), bits, group_size)"
    if layout == "ct":
        from compressed_tensors.compressors import PackedQuantizationCompressor
        from compressed_tensors.quantization import QuantizationConfig
        from compressed_tensors.utils import is_match

        cfg = QuantizationConfig.model_validate(qc)
        model = AutoModelForCausalLM.from_config(float_config(folder))
        for name, mod in model.named_modules():
            groups = [g for g in cfg.config_groups.values() if is_match(name, mod, g.targets, cfg.ignore or [])]
            if not groups:
                continue
            assert len(groups) == 1, name
            scheme = groups[0]
            sd = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")}
            sd["weight_scale"] = sd["weight_scale"].float()
            out[name] = PackedQuantizationCompressor.decompress(sd, scheme)["weight"].float()
        assert sorted(out) == qmods, (sorted(out), qmods)
        return out, ("compressed_tensors PackedQuantizationCompressor.decompress(state_dict, scheme) with the scheme "
                     "from QuantizationConfig + compressed_tensors.utils.is_match(targets, ignore); weight_scale upcast to f32")
    raise ValueError(layout)


def loader_check(folder, layout, qc, W):
    """What the real loaders (transformers + auto-round / compressed-tensors) do with the folder on the CPU."""
    if layout.startswith("gptq"):
        return "used for the goldens (see golden_method)"
    if layout == "awq":
        from transformers import AutoRoundConfig

        kw = {"quantization_config": AutoRoundConfig()} if qc["quant_method"] != "auto-round" else {}
        try:
            model = AutoModelForCausalLM.from_pretrained(folder, device_map="cpu", **kw)
        except Exception as e:  # noqa: BLE001 - recorded, not hidden
            return f"transformers load failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
        mods = {n: m for n, m in model.named_modules() if n in W}
        kinds = sorted({type(m).__module__ + "." + type(m).__name__ for m in mods.values()})
        packed = [n for n, m in mods.items() if hasattr(m, "qweight")]
        msg = f"transformers+auto-round load on the CPU made the quantized Linears {kinds}"
        if not packed:
            msg += (" without qweight/qzeros/scales: the checkpoint's packed tensors are reported UNEXPECTED and "
                    ".weight is never loaded (left uninitialised), so it is not usable as a reference here")
        return msg
    if layout == "ct":
        from transformers import CompressedTensorsConfig

        model = AutoModelForCausalLM.from_pretrained(folder, device_map="cpu", dtype=torch.float32,
                                                     quantization_config=CompressedTensorsConfig(run_compressed=False))
        mods = dict(model.named_modules())
        diffs = {n: float((mods[n].weight.float() - w).abs().max()) for n, w in W.items()}
        bad = sorted(n for n, d in diffs.items() if d > 1e-3)
        ok = max(d for n, d in diffs.items() if n not in bad)
        msg = ("transformers from_pretrained(quantization_config=CompressedTensorsConfig(run_compressed=False)) "
               f"decompresses in the scale dtype (fp16): max |W_transformers - W_golden| = {ok:.3g}")
        if bad:
            msg += (f"; WRONG for {bad} (max diff {max(diffs[n] for n in bad):.3g}): transformers' "
                    "CompressedTensorsDequantize decompresses every dense module with the first config group "
                    "(get_dense_scheme), ignoring the module's own group")
        return msg
    raise ValueError(layout)


def library_forward(folder, layout, qc, prompt):
    """Logits of the folder as the real CPU loaders run it (not used for the goldens; a sanity check)."""
    if layout.startswith("gptq"):
        from transformers import AutoRoundConfig

        kw = {"quantization_config": AutoRoundConfig()} if qc["quant_method"] != "auto-round" else {}
        model = AutoModelForCausalLM.from_pretrained(folder, device_map="cpu", **kw)
        what = "auto-round QuantLinear forward, fp16 model (auto-round forces fp16 on the CPU)"
    elif layout == "ct":
        from transformers import CompressedTensorsConfig

        model = AutoModelForCausalLM.from_pretrained(folder, device_map="cpu", dtype=torch.float32,
                                                     quantization_config=CompressedTensorsConfig(run_compressed=False))
        what = "transformers f32 forward with the weights compressed-tensors decompressed in fp16"
    else:
        return None, None
    with torch.no_grad():
        return model.eval()(prompt[None]).logits[0].float(), what


# ---- the golden model ----------------------------------------------------------

def golden_model(folder, tensors, W):
    model = AutoModelForCausalLM.from_config(float_config(folder)).to(torch.float32).eval()
    done = set()
    with torch.no_grad():
        for name, p in model.named_parameters():
            mod = name.rsplit(".", 1)[0]
            if mod in W:
                assert name == mod + ".weight" and p.shape == W[mod].shape, name
                p.copy_(W[mod])
            else:
                assert tensors[name].dtype == torch.float32, (name, tensors[name].dtype)
                p.copy_(tensors[name])
            done.add(name)
    left = set(tensors) - done - {k for k in tensors if k.rsplit(".", 1)[0] in W}
    assert not left, left
    return model


def greedy(model, prompt, n=16):
    gc = GenerationConfig(max_new_tokens=n, min_new_tokens=n, do_sample=False, eos_token_id=None,
                          pad_token_id=1, bos_token_id=2)
    with torch.no_grad():
        out = model.generate(prompt[None], generation_config=gc, attention_mask=torch.ones_like(prompt)[None])
    return out[0, prompt.shape[0]:].to(torch.int64).contiguous()


def make(name, spec, seed):
    folder = os.path.join(OUT, name)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "float")
        tok = make_float_model(src, spec["arch"], seed)
        saved, ar_kwargs = quantize(spec, src, tok, os.path.join(tmp, "quant"))
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(saved, folder)
        float_model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()

    qc = quant_config(folder)
    layout = layout_of(qc)
    tensors = read_tensors(folder)
    shapes = linear_shapes(float_config(folder))
    W, how = library_dequant(folder, layout, qc, tensors, shapes)

    fsd = float_model.state_dict()
    meta = {"fixture": name, "arch": spec["arch"], "format": spec["format"], "layout": layout,
            "torch": torch.__version__, "transformers": version("transformers"), "auto_round": version("auto-round"),
            "compressed_tensors": version("compressed-tensors") if layout == "ct" else None,
            "autoround_kwargs": ar_kwargs, "layer_config": spec.get("layer_config"), "golden_method": how,
            "layers": {}}
    spec_diff = 0.0
    for mod, w in W.items():
        K, N = shapes[mod]
        ws, bits, gs = spec_dequant(layout, {k[len(mod) + 1:]: v for k, v in tensors.items()
                                             if k.startswith(mod + ".")}, K, N)
        spec_diff = max(spec_diff, float(np.abs(ws - w.double().numpy()).max()))
        err = (w - fsd[mod + ".weight"]).abs()
        s = tensors[mod + (".weight_scale" if layout == "ct" else ".scales")].float()
        s_el = s.repeat_interleave(gs, dim=1) if layout == "ct" else s.repeat_interleave(gs, dim=0).T
        meta["layers"][mod] = {"bits": bits, "group_size": gs, "max_abs_err_vs_float": float(err.max()),
                               "max_err_over_half_scale": float((err / (s_el / 2)).max())}
    floats = sorted(k.rsplit(".", 1)[0] for k in tensors if k.endswith(".weight") and tensors[k].dim() == 2)
    meta["float_linears"] = [m for m in floats if m in shapes]
    meta["spec_vs_library_max_abs"] = spec_diff
    meta["float_tensors_identical_to_original"] = all(
        torch.equal(tensors[k], fsd[k]) for k in tensors if k in fsd)
    meta["loader_check"] = loader_check(folder, layout, qc, W)
    assert spec_diff == 0.0, spec_diff

    ref = golden_model(folder, tensors, W)
    gen = torch.Generator().manual_seed(seed)
    out = {}
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
    lib, what = library_forward(folder, layout, qc, out["prompt_0"])
    if lib is not None:
        meta["library_forward"] = what
        meta["library_forward_max_abs_diff_vs_logits_0"] = float((lib - out["logits_0"]).abs().max())
    out["greedy_0"] = greedy(ref, out["prompt_0"])
    out["float_greedy_0"] = greedy(float_model, out["prompt_0"])
    save_file(out, os.path.join(folder, "reference.safetensors"), metadata={"quanta_fixture": json.dumps(meta)})
    for f in os.listdir(folder):
        os.chmod(os.path.join(folder, f), 0o644)
    print(name, json.dumps({k: v for k, v in meta.items() if k != "layers"}))


# ---- --describe: markdown for the README -----------------------------------------

def describe(name):
    folder = os.path.join(OUT, name)
    qc = quant_config(folder)
    tensors = read_tensors(folder)
    meta = json.loads(safe_open(os.path.join(folder, "reference.safetensors"), "pt").metadata()["quanta_fixture"])
    dt = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int32: "I32", torch.int64: "I64"}
    print(f"### `{name}`\n")
    print(f"`AutoRound(..., {', '.join(f'{k}={v!r}' for k, v in meta['autoround_kwargs'].items())}"
          f"{', layer_config=...' if meta['layer_config'] else ''})` then `quantize_and_save(..., format={meta['format']!r})`.\n")
    print("`config.json` → `quantization_config` (verbatim):\n\n```json\n" + json.dumps(qc, indent=2) + "\n```\n")
    mixed = bool(meta["layer_config"])
    print(("All tensors:" if mixed else "Tensors (layer 0; layer 1 has the same pattern):") + "\n\n```")
    for k in sorted(tensors):
        if ".layers.1." in k and not mixed:
            continue
        print(f"{k} {dt[tensors[k].dtype]} {list(tensors[k].shape)}")
    print("```\n")
    rows = ["| module | bits | group | max abs err vs float | max err / (scale/2) |", "|---|---|---|---|---|"]
    for m, d in meta["layers"].items():
        rows.append(f"| {m} | {d['bits']} | {d['group_size']} | {d['max_abs_err_vs_float']:.4g} | "
                    f"{d['max_err_over_half_scale']:.3f} |")
    print("\n".join(rows) + "\n")
    print(f"Float Linears: {', '.join(meta['float_linears'])}. Golden: {meta['golden_method']}. "
          f"Spec math vs library: max |diff| = {meta['spec_vs_library_max_abs']}. "
          f"Loader check: {meta['loader_check']}. "
          f"max |logits - float_logits| = {meta['max_abs_diff_vs_float_0']:.4g} / {meta['max_abs_diff_vs_float_1']:.4g} "
          f"(max |float logit| {meta['max_abs_logit_0']:.3g}).\n")


def main():
    if os.environ.get("PYTHONHASHSEED") != "0":
        # auto-round builds some config lists from sets (e.g. AWQ modules_to_not_convert): fix their order.
        os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, PYTHONHASHSEED="0"))
    torch.set_num_threads(2)
    args = sys.argv[1:]
    if args and args[0] == "--describe":
        for name in args[1:] or list(FIXTURES):
            if os.path.isdir(os.path.join(OUT, name)):
                describe(name)
        return
    unknown = set(args) - set(FIXTURES)
    if unknown:
        sys.exit(f"unknown fixture(s): {sorted(unknown)}; known: {list(FIXTURES)}")
    os.makedirs(OUT, exist_ok=True)
    for i, name in enumerate(FIXTURES):
        if not args or name in args:
            make(name, FIXTURES[name], seed=200 + i)


if __name__ == "__main__":
    main()
