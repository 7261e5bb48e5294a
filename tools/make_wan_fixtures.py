#!/usr/bin/env python3
"""Build the tiny Wan DiT golden fixtures tests/golden/fixtures/wan-*/ (held to diffusers by
tests/golden/wan_transformer_test.cc).

Each fixture is a random WanTransformer3DModel made by diffusers' own class from a config dict
(fixed seed), saved with save_pretrained into `<name>/transformer/` (config.json and
diffusion_pytorch_model.safetensors, as a Diffusers pipeline folder holds it), plus
`<name>/reference.safetensors` with fixed inputs and diffusers' output:

| tensor | dtype, shape | meaning |
| --- | --- | --- |
| `latents` | F32 [B, C_in, F, H, W] | hidden_states passed to forward |
| `timestep` | F32 [B] or [B, seq_len] | per sample, or per token (Wan2.2 TI2V `expand_timesteps`) |
| `encoder_hidden_states` | F32 [B, L, text_dim] | the text embeddings |
| `output` | F32 [B, C_out, F, H, W] | `transformer(...).sample`, f32 compute |

Variants:
- wan21-f32: Wan2.1 T2V style, patch (1, 2, 2), cross_attn_norm, 2 layers, one timestep per sample.
- wan22-ti2v-bf16: Wan2.2 TI2V-5B style, weights stored in bf16 (as the real checkpoints are),
  per-token timesteps [B, seq_len]: the tokens of latent frame 0 get t = 0, as the TI2V pipeline's
  first-frame mask makes them, the others the sample's t. The reference reloads the folder with
  torch_dtype=float32, so the bf16 weights are upcast exactly and the compute is f32.
- wan-p222-f32: patch (2, 2, 2) and cross_attn_norm false (norm2 is the identity), B = 2, to
  hold the temporal patch and the unpatchify order.

The random init of diffusers leaves biases, norm weights and scale_shift_table small or 1/0;
every parameter is redrawn from N(0, 0.2) (norm weights 1 + N(0, 0.2)) so that a mistake with any
of them shows in the output.

Run:  /root/.cache/quanta/tools-venv/bin/python tools/make_wan_fixtures.py [name ...]
Pins: tools/requirements-diffusion.txt.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import diffusers  # noqa: E402
import torch  # noqa: E402
from diffusers import WanTransformer3DModel  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "golden" / "fixtures"

VARIANTS = {
    "wan21-f32": dict(
        seed=1701, dtype=torch.float32, per_token=False,
        latents=(1, 4, 3, 4, 6), text_len=7, timesteps=[937.25],
        config=dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=4,
                    out_channels=4, text_dim=24, freq_dim=16, ffn_dim=48, num_layers=2, cross_attn_norm=True,
                    qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)),
    "wan22-ti2v-bf16": dict(
        seed=1702, dtype=torch.bfloat16, per_token=True,
        latents=(2, 6, 3, 4, 4), text_len=5, timesteps=[811.5, 333.0],
        config=dict(patch_size=(1, 2, 2), num_attention_heads=3, attention_head_dim=20, in_channels=6,
                    out_channels=6, text_dim=16, freq_dim=32, ffn_dim=64, num_layers=2, cross_attn_norm=True,
                    qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)),
    "wan-p222-f32": dict(
        seed=1703, dtype=torch.float32, per_token=False,
        latents=(2, 3, 4, 4, 2), text_len=6, timesteps=[500.0, 12.75],
        config=dict(patch_size=(2, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=3,
                    out_channels=5, text_dim=8, freq_dim=8, ffn_dim=40, num_layers=2, cross_attn_norm=False,
                    qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)),
}


def randomise(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn_like(p) * 0.2
            is_norm_weight = ".norm" in name and name.endswith(".weight")
            p.copy_(1.0 + noise if is_norm_weight else noise)


def make(name: str, spec: dict) -> None:
    torch.manual_seed(spec["seed"])
    model = WanTransformer3DModel(**spec["config"]).eval()
    randomise(model)
    out = FIXTURES / name
    shutil.rmtree(out, ignore_errors=True)
    (out / "transformer").mkdir(parents=True)
    model.to(spec["dtype"]).save_pretrained(out / "transformer", safe_serialization=True)

    # The reference: the saved folder reloaded in f32, as quanta loads it.
    ref = WanTransformer3DModel.from_pretrained(out / "transformer", torch_dtype=torch.float32).eval()
    b, c, f, h, w = spec["latents"]
    latents = torch.randn(b, c, f, h, w)
    text = torch.randn(b, spec["text_len"], spec["config"]["text_dim"])
    ts = torch.tensor(spec["timesteps"], dtype=torch.float32)
    if spec["per_token"]:
        pt, ph, pw = spec["config"]["patch_size"]
        frames, per_frame = f // pt, (h // ph) * (w // pw)
        mask = torch.ones(frames, per_frame)
        mask[0] = 0.0  # the TI2V first-frame mask: the conditioning frame is at t = 0
        timestep = (mask.flatten()[None, :] * ts[:, None]).contiguous()
    else:
        timestep = ts
    with torch.no_grad():
        output = ref(hidden_states=latents, timestep=timestep, encoder_hidden_states=text).sample
    meta = {"fixture": name, "seed": spec["seed"], "diffusers": diffusers.__version__, "torch": torch.__version__,
            "weights_dtype": str(spec["dtype"]).removeprefix("torch."), "max_abs_output": float(output.abs().max())}
    save_file({"latents": latents, "timestep": timestep, "encoder_hidden_states": text,
               "output": output.contiguous()}, str(out / "reference.safetensors"),
              metadata={"quanta_fixture": json.dumps(meta)})
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{name}: output {tuple(output.shape)}, max |out| {meta['max_abs_output']:.3f}, {size / 1024:.0f} KiB")


def main() -> int:
    torch.set_num_threads(1)
    names = sys.argv[1:] or list(VARIANTS)
    for n in names:
        make(n, VARIANTS[n])
    return 0


if __name__ == "__main__":
    sys.exit(main())
