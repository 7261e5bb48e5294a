#!/usr/bin/env python3
"""Fixture for `quanta repack-wan` (tests/golden/fixtures/wan-repack/).

Two tiny random diffusers `WanTransformer3DModel`s (the Wan2.2-A14B high- and low-noise
experts; I2V-style, so the image-embedder and add_k/add_v rules are exercised), each
quantized msModelSlim-style on a few Linear layers and saved under the ORIGINAL Wan key
names, as msModelSlim writes a Wan2.2 transformer:

  msmodelslim/high_noise_model/  quant_model_weights-0000{1,2}-of-00002.safetensors + index
                                 + quant_model_description.json (AscendV1 names, 2 shards)
  msmodelslim/low_noise_model/   quant_model_weight_w8a8_dynamic.safetensors
                                 + quant_model_description_w8a8_dynamic.json (older names)
  expected/transformer{,_2}.safetensors     the same tensors under the Diffusers names,
  expected/transformer{,_2}.description.json  taken from diffusers' own state_dict names
  diffusers-base/                model_index.json, scheduler/, transformer/ (config.json and the
                                 float high-noise weights), transformer_2/config.json

Wan names come from diffusers names by inverting the rename table of SGLang's
python/sglang/multimodal_gen/tools/wan_repack.py (= diffusers' scripts/convert_wan_to_diffusers.py
TRANSFORMER_KEYS_RENAME_DICT plus the attention / I2V / `.linear.` / `.div.` rules; spec
checkpoint-formats-1 §5.3). Every inverted name is checked by running the forward table on it.

Quantized layers (Wan names), tensors as spec §1.6 lists them:
  blocks.0.self_attn.{q,k,v}, blocks.0.ffn.0, blocks.*.cross_attn.{k_img,v_img}  W8A8_DYNAMIC
      weight int8 [N,K], weight_scale / weight_offset f32 [N,1], bias f32 (FLOAT)
  blocks.0.self_attn.o   W8A8: weight int8, input_scale / input_offset f32 [1], deq_scale f32 [N],
      quant_bias int32 [N], bias (FLOAT)
  blocks.1.ffn.0         W4A4_MXFP4 behind msModelSlim's wrapper: `.linear.weight` u8 [N,K/2],
      `.linear.weight_scale` u8 [N,K/32], `.linear.bias`, smooth scale `.div.mul_scale` f32 [K]
Everything else FLOAT (bf16, except the modules diffusers keeps in f32). One tensor no rule
touches, `blocks.0.extra_gate.weight` (FLOAT), and global keys model_quant_type, version,
group_size, metadata.

Usage: /root/.cache/quanta/tools-venv/bin/python tools/make_wan_repack_fixture.py
Pins: tools/requirements-diffusion.txt.
"""
import json
import os
import shutil

import torch
from diffusers import UniPCMultistepScheduler, WanTransformer3DModel
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "golden", "fixtures", "wan-repack")

# SGLang wan_repack.py TRANSFORMER_KEYS_RENAME_DICT, in order (Wan -> Diffusers).
RULES = [
    ("time_embedding.0", "condition_embedder.time_embedder.linear_1"),
    ("time_embedding.2", "condition_embedder.time_embedder.linear_2"),
    ("text_embedding.0", "condition_embedder.text_embedder.linear_1"),
    ("text_embedding.2", "condition_embedder.text_embedder.linear_2"),
    ("time_projection.1", "condition_embedder.time_proj"),
    ("head.modulation", "scale_shift_table"),
    ("head.head", "proj_out"),
    ("modulation", "scale_shift_table"),
    ("ffn.0", "ffn.net.0.proj"),
    ("ffn.2", "ffn.net.2"),
    ("norm2", "norm__placeholder"),
    ("norm3", "norm2"),
    ("norm__placeholder", "norm3"),
    ("img_emb.proj.0", "condition_embedder.image_embedder.norm1"),
    ("img_emb.proj.1", "condition_embedder.image_embedder.ff.net.0.proj"),
    ("img_emb.proj.3", "condition_embedder.image_embedder.ff.net.2"),
    ("img_emb.proj.4", "condition_embedder.image_embedder.norm2"),
    ("img_emb.emb_pos", "condition_embedder.image_embedder.pos_embed"),
    ("self_attn.q", "attn1.to_q"),
    ("self_attn.k", "attn1.to_k"),
    ("self_attn.v", "attn1.to_v"),
    ("self_attn.o", "attn1.to_out.0"),
    ("self_attn.norm_q", "attn1.norm_q"),
    ("self_attn.norm_k", "attn1.norm_k"),
    ("cross_attn.q", "attn2.to_q"),
    ("cross_attn.k", "attn2.to_k"),
    ("cross_attn.v", "attn2.to_v"),
    ("cross_attn.o", "attn2.to_out.0"),
    ("cross_attn.norm_q", "attn2.norm_q"),
    ("cross_attn.norm_k", "attn2.norm_k"),
    ("attn2.to_k_img", "attn2.add_k_proj"),
    ("attn2.to_v_img", "attn2.add_v_proj"),
    ("attn2.norm_k_img", "attn2.norm_added_k"),
    (".linear.", "."),
    (".div.", "."),
]


def to_diffusers(name):
    for a, b in RULES:
        name = name.replace(a, b)
    return name


def to_wan(name):
    """The inverse: the table backwards with each pair swapped, except for the head, whose
    Diffusers names (`scale_shift_table`, `proj_out`) are top-level and would otherwise fall to
    the per-block rule 8. Checked by the forward table."""
    if name == "scale_shift_table":
        wan = "head.modulation"
    else:
        wan = name.replace("proj_out.", "head.head.")
        for a, b in reversed(RULES):
            if a in (".linear.", ".div."):
                continue
            wan = wan.replace(b, a)
    assert to_diffusers(wan) == name, (name, wan, to_diffusers(wan))
    return wan


CONFIG = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=4,
              out_channels=4, text_dim=16, freq_dim=8, ffn_dim=32, num_layers=2, cross_attn_norm=True,
              qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=8, added_kv_proj_dim=32,
              pos_embed_seq_len=6, rope_max_seq_len=32)


def float_state(model):
    """diffusers names -> tensors, bf16 except the modules diffusers keeps in f32."""
    keep = WanTransformer3DModel._keep_in_fp32_modules
    out = {}
    for k, v in model.state_dict().items():
        f32 = any(m in k.split(".") or k.startswith(m) for m in keep)
        out[k] = v.detach().clone().contiguous() if f32 else v.detach().to(torch.bfloat16).contiguous()
    return out


def int8_rows(w):
    s = (w.abs().amax(-1, keepdim=True) / 127).clamp_min(1e-8)
    return torch.round(w / s).clamp(-128, 127).to(torch.int8), s.float()


def quantize(sd, gen):
    """Diffusers-named float state dict -> (Diffusers-named quantized tensors, description).
    Side tensors hang off the Diffusers prefix here; the Wan-named copy is made by to_wan()
    of the Wan layer prefix, so `.linear.` / `.div.` are added on the Wan side only."""
    tensors, desc, wan_name = {}, {}, {}

    def put(name, t, qtype, wan=None):
        tensors[name] = t.contiguous()
        desc[name] = qtype
        wan_name[name] = wan if wan is not None else to_wan(name)

    done = set()
    for b in range(CONFIG["num_layers"]):
        p = f"blocks.{b}."
        dyn = ([p + "attn1.to_q", p + "attn1.to_k", p + "attn1.to_v", p + "ffn.net.0.proj"] if b == 0 else [])
        dyn += [p + "attn2.add_k_proj", p + "attn2.add_v_proj"]
        for layer in dyn:
            q, s = int8_rows(sd[layer + ".weight"].float())
            put(layer + ".weight", q, "W8A8_DYNAMIC")
            put(layer + ".weight_scale", s, "W8A8_DYNAMIC")
            put(layer + ".weight_offset", torch.zeros_like(s), "W8A8_DYNAMIC")
            put(layer + ".bias", sd[layer + ".bias"].float(), "FLOAT")
            done.update([layer + ".weight", layer + ".bias"])
        if b == 0:  # static W8A8 (spec 1.6.3): deq_scale = input_scale * weight_scale
            layer = p + "attn1.to_out.0"
            w = sd[layer + ".weight"].float()
            q, s = int8_rows(w)
            x_scale, x_off = torch.tensor([0.05]), torch.tensor([3.0])
            deq = (x_scale * s[:, 0]).float()
            bias = sd[layer + ".bias"].float()
            qb = torch.round(bias / deq - x_off * q.float().sum(1)).to(torch.int32)
            put(layer + ".weight", q, "W8A8")
            put(layer + ".input_scale", x_scale, "W8A8")
            put(layer + ".input_offset", x_off, "W8A8")
            put(layer + ".deq_scale", deq, "W8A8")
            put(layer + ".quant_bias", qb, "W8A8")
            put(layer + ".bias", bias, "FLOAT")
            done.update([layer + ".weight", layer + ".bias"])
        if b == 1:  # MXFP4 behind msModelSlim's wrapper (codes random: only the bytes matter here)
            layer = p + "ffn.net.0.proj"
            n, k = sd[layer + ".weight"].shape
            wan = to_wan(layer)
            put(layer + ".weight", torch.randint(0, 256, (n, k // 2), generator=gen, dtype=torch.uint8),
                "W4A4_MXFP4", wan + ".linear.weight")
            put(layer + ".weight_scale", torch.randint(120, 130, (n, k // 32), generator=gen, dtype=torch.uint8),
                "W4A4_MXFP4", wan + ".linear.weight_scale")
            put(layer + ".bias", sd[layer + ".bias"].float(), "FLOAT", wan + ".linear.bias")
            put(layer + ".mul_scale", torch.rand(k, generator=gen) + 0.5, "FLOAT", wan + ".div.mul_scale")
            done.update([layer + ".weight", layer + ".bias"])
    for k, v in sd.items():
        if k not in done:
            put(k, v, "FLOAT")
    # A tensor no rule touches: carried through under its own name.
    put("blocks.0.extra_gate.weight", torch.randn(4, 32, generator=gen).to(torch.bfloat16), "FLOAT",
        "blocks.0.extra_gate.weight")
    for wan in wan_name.values():  # every Wan name maps back to its Diffusers name
        assert to_diffusers(wan) in tensors, wan
    assert len(set(wan_name.values())) == len(wan_name)
    return tensors, desc, wan_name


GLOBAL_KEYS = {"model_quant_type": "W4A4_MXFP4", "version": "1.0.0", "group_size": 0, "metadata": {}}


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    for sub in ("msmodelslim", "expected", "diffusers-base"):  # README.md stays
        shutil.rmtree(os.path.join(OUT, sub), ignore_errors=True)
    base = os.path.join(OUT, "diffusers-base")
    os.makedirs(os.path.join(OUT, "expected"))
    for expert, (sub, seed) in enumerate([("high_noise_model", 1), ("low_noise_model", 2)]):
        torch.manual_seed(seed)
        model = WanTransformer3DModel(**CONFIG).eval()
        with torch.no_grad():  # norms random rather than 1/0, so a swapped norm shows
            for name, prm in model.named_parameters():
                if "norm" in name:
                    prm.copy_(torch.randn_like(prm) * 0.2 + (1.0 if name.endswith("weight") else 0.0))
        gen = torch.Generator().manual_seed(100 + seed)
        tensors, desc, wan_name = quantize(float_state(model), gen)
        tdir = "transformer" if expert == 0 else "transformer_2"

        # Expected: Diffusers names (diffusers' own state_dict names + the side-tensor suffixes).
        save_file(tensors, os.path.join(OUT, "expected", tdir + ".safetensors"), metadata={"format": "pt"})
        write_json(os.path.join(OUT, "expected", tdir + ".description.json"), {**desc, **GLOBAL_KEYS})

        # msModelSlim side: Wan names.
        qdir = os.path.join(OUT, "msmodelslim", sub)
        os.makedirs(qdir)
        wan_tensors = {wan_name[k]: v for k, v in tensors.items()}
        wan_desc = {wan_name[k]: v for k, v in desc.items()}
        wan_desc.update(GLOBAL_KEYS)
        if expert == 0:
            first = {k: v for k, v in wan_tensors.items() if not k.startswith("blocks.1.")}
            second = {k: v for k, v in wan_tensors.items() if k.startswith("blocks.1.")}
            names = ["quant_model_weights-00001-of-00002.safetensors", "quant_model_weights-00002-of-00002.safetensors"]
            weight_map = {}
            for part, fname in zip([first, second], names):
                save_file(part, os.path.join(qdir, fname), metadata={"format": "pt"})
                weight_map.update({k: fname for k in part})
            total = sum(v.numel() * v.element_size() for v in wan_tensors.values())
            write_json(os.path.join(qdir, "quant_model_weights.safetensors.index.json"),
                       {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})
            write_json(os.path.join(qdir, "quant_model_description.json"), wan_desc)
        else:
            save_file(wan_tensors, os.path.join(qdir, "quant_model_weight_w8a8_dynamic.safetensors"),
                      metadata={"format": "pt"})
            write_json(os.path.join(qdir, "quant_model_description_w8a8_dynamic.json"), wan_desc)

        # Diffusers base: the float transformer as diffusers saves it (weights for the first only).
        mdir = os.path.join(base, tdir)
        if expert == 0:
            model.save_pretrained(mdir, safe_serialization=True)
            assert sorted(WanTransformer3DModel.from_pretrained(mdir).state_dict()) == sorted(model.state_dict())
        else:
            model.save_config(mdir)
    UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0).save_config(
        os.path.join(base, "scheduler"))
    import diffusers
    write_json(os.path.join(base, "model_index.json"), {
        "_class_name": "WanPipeline", "_diffusers_version": diffusers.__version__, "boundary_ratio": 0.875,
        "scheduler": ["diffusers", "UniPCMultistepScheduler"],
        "transformer": ["diffusers", "WanTransformer3DModel"],
        "transformer_2": ["diffusers", "WanTransformer3DModel"]})
    print("wrote", OUT)


if __name__ == "__main__":
    main()
