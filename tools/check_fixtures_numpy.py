#!/usr/bin/env python3
"""Independent NumPy (float64) re-implementation of the fixture models, used to prove that
tools/NOTES-transformers.md describes transformers 5.23 exactly.

It reads only config.json and model.safetensors of each fixture (torch is used for nothing but
reading bf16/f16 tensors and upcasting them), runs the forward pass written from the notes, and
compares with reference.safetensors: logits_<i> (f32 compute in transformers) and greedy_<i>.

Run:  /root/.cache/quanta/tools-venv/bin/python tools/check_fixtures_numpy.py
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
from safetensors import safe_open

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "golden" / "fixtures"


def load_tensors(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with safe_open(str(path), "pt") as f:
        for k in f.keys():
            out[k] = f.get_tensor(k).float().numpy().astype(np.float64)
    return out


def inv_freq_and_scale(rp: dict, head_dim: int, max_pos: int) -> tuple[np.ndarray, float]:
    """modeling_rope_utils: default / linear / llama3 / yarn."""
    base = rp.get("rope_theta", 10000.0)
    dim = int(head_dim * rp.get("partial_rotary_factor", 1.0))
    inv = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    kind = rp.get("rope_type", rp.get("type", "default"))
    if kind == "default":
        return inv, 1.0
    if kind == "linear":
        return inv / rp["factor"], 1.0
    if kind == "llama3":
        factor, lo, hi = rp["factor"], rp["low_freq_factor"], rp["high_freq_factor"]
        old = rp["original_max_position_embeddings"]
        lo_wl, hi_wl = old / lo, old / hi
        wl = 2 * math.pi / inv
        out = np.where(wl > lo_wl, inv / factor, inv)
        smooth = (old / wl - lo) / (hi - lo)
        smoothed = (1 - smooth) * out / factor + smooth * out
        medium = ~(wl < hi_wl) & ~(wl > lo_wl)
        return np.where(medium, smoothed, out), 1.0
    if kind == "yarn":
        factor = rp["factor"]
        omp = rp["original_max_position_embeddings"]

        def get_mscale(scale, m=1.0):
            return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

        att = rp.get("attention_factor")
        if att is None:
            if rp.get("mscale") and rp.get("mscale_all_dim"):
                att = get_mscale(factor, rp["mscale"]) / get_mscale(factor, rp["mscale_all_dim"])
            else:
                att = get_mscale(factor)
        beta_fast = rp.get("beta_fast") or 32
        beta_slow = rp.get("beta_slow") or 1

        def corr_dim(rot):
            return (dim * math.log(omp / (rot * 2 * math.pi))) / (2 * math.log(base))

        low, high = corr_dim(beta_fast), corr_dim(beta_slow)
        if rp.get("truncate", True):
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, dim - 1)
        if low == high:
            high += 0.001
        ramp = np.clip((np.arange(dim // 2, dtype=np.float64) - low) / (high - low), 0, 1)
        extra = 1 - ramp  # weight of the un-scaled (extrapolation) frequency
        pos_freqs = base ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
        inv = (1.0 / (factor * pos_freqs)) * (1 - extra) + (1.0 / pos_freqs) * extra
        return inv, att
    raise NotImplementedError(kind)


def rope(x: np.ndarray, pos: np.ndarray, inv: np.ndarray, scale: float) -> np.ndarray:
    """x [heads, T, D]; rotate_half pairing (i, i + D/2)."""
    ang = pos[:, None] * inv[None, :]
    emb = np.concatenate([ang, ang], axis=-1)
    cos, sin = np.cos(emb) * scale, np.sin(emb) * scale
    h = x.shape[-1] // 2
    rot = np.concatenate([-x[..., h:], x[..., :h]], axis=-1)
    return x * cos + rot * sin


def rmsnorm(x: np.ndarray, w: np.ndarray, eps: float, gemma: bool) -> np.ndarray:
    y = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    return y * (1.0 + w) if gemma else y * w


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def silu(x):
    return x / (1.0 + np.exp(-x))


class Model:
    def __init__(self, folder: Path):
        self.cfg = cfg = json.loads((folder / "config.json").read_text())
        self.w = load_tensors(folder / "model.safetensors")
        self.mt = cfg["model_type"]
        self.gemma = self.mt == "gemma3_text"
        self.L = cfg["num_hidden_layers"]
        self.H = cfg["num_attention_heads"]
        self.KV = cfg["num_key_value_heads"]
        self.D = cfg.get("head_dim") or cfg["hidden_size"] // self.H
        self.eps = cfg["rms_norm_eps"]
        if cfg.get("layer_types"):
            self.layer_types = cfg["layer_types"]
        elif cfg.get("sliding_window") is not None:  # mistral: every layer slides
            self.layer_types = ["sliding_attention"] * self.L
        else:
            self.layer_types = ["full_attention"] * self.L
        rp = cfg["rope_parameters"]
        if all(k in ("full_attention", "sliding_attention") for k in rp):  # nested per layer type
            self.rope = {k: inv_freq_and_scale(v, self.D, cfg["max_position_embeddings"]) for k, v in rp.items()}
        else:
            r = inv_freq_and_scale(rp, self.D, cfg["max_position_embeddings"])
            self.rope = {"full_attention": r, "sliding_attention": r}
        self.scaling = (cfg["query_pre_attn_scalar"] if self.gemma else self.D) ** -0.5
        self.act = gelu_tanh if self.gemma else silu
        self.lm_head = self.w.get("lm_head.weight", self.w["model.embed_tokens.weight"])

    def lin(self, name, x):
        y = x @ self.w[name + ".weight"].T
        b = self.w.get(name + ".bias")
        return y if b is None else y + b

    def norm(self, name, x):
        return rmsnorm(x, self.w[name + ".weight"], self.eps, self.gemma)

    def forward(self, ids: np.ndarray) -> np.ndarray:
        cfg, T = self.cfg, len(ids)
        x = self.w["model.embed_tokens.weight"][ids]
        if self.gemma:
            x = x * math.sqrt(cfg["hidden_size"])
        pos = np.arange(T, dtype=np.float64)
        i, j = np.arange(T)[:, None], np.arange(T)[None, :]
        for l in range(self.L):
            p = f"model.layers.{l}."
            lt = self.layer_types[l]
            allowed = j <= i
            if lt == "sliding_attention":
                allowed &= (i - j) < cfg["sliding_window"]
            h = self.norm(p + "input_layernorm", x)
            q = self.lin(p + "self_attn.q_proj", h).reshape(T, self.H, self.D).transpose(1, 0, 2)
            k = self.lin(p + "self_attn.k_proj", h).reshape(T, self.KV, self.D).transpose(1, 0, 2)
            v = self.lin(p + "self_attn.v_proj", h).reshape(T, self.KV, self.D).transpose(1, 0, 2)
            if p + "self_attn.q_norm.weight" in self.w:
                q = self.norm(p + "self_attn.q_norm", q)
                k = self.norm(p + "self_attn.k_norm", k)
            inv, sc = self.rope[lt]
            q, k = rope(q, pos, inv, sc), rope(k, pos, inv, sc)
            rep = self.H // self.KV
            k, v = np.repeat(k, rep, axis=0), np.repeat(v, rep, axis=0)  # q head n uses kv head n // rep
            s = q @ k.transpose(0, 2, 1) * self.scaling
            # Gemma3 in transformers 5.23 does NOT apply attn_logit_softcapping (not passed to eager).
            s = np.where(allowed[None], s, -np.inf)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            o = (s @ v).transpose(1, 0, 2).reshape(T, self.H * self.D)
            o = self.lin(p + "self_attn.o_proj", o)
            if self.gemma:
                o = self.norm(p + "post_attention_layernorm", o)
            x = x + o
            h = self.norm(p + ("pre_feedforward_layernorm" if self.gemma else "post_attention_layernorm"), x)
            m = self.lin(p + "mlp.down_proj", self.act(self.lin(p + "mlp.gate_proj", h)) * self.lin(p + "mlp.up_proj", h))
            if self.gemma:
                m = self.norm(p + "post_feedforward_layernorm", m)
            x = x + m
        x = self.norm("model.norm", x)
        logits = x @ self.lm_head.T
        c = cfg.get("final_logit_softcapping")
        if c is not None:
            logits = np.tanh(logits / c) * c
        return logits


def main() -> int:
    bad = n = 0
    for folder in sorted(p for p in FIXTURES.iterdir() if p.is_dir() and not p.name.startswith(".")):
        m = Model(folder)
        ref = load_tensors(folder / "reference.safetensors")
        worst, greedy_ok = 0.0, True
        for i in range(2):
            prompt = ref[f"prompt_{i}"].astype(np.int64)
            lg = m.forward(prompt)
            worst = max(worst, float(np.abs(lg - ref[f"logits_{i}"]).max()))
            seq = list(prompt)
            for t in ref[f"greedy_{i}"].astype(np.int64):
                nxt = int(np.argmax(m.forward(np.array(seq))[-1]))
                if nxt != t:
                    greedy_ok = False
                    break
                seq.append(nxt)
        ok = worst < 1e-3 and greedy_ok
        n += 1
        bad += not ok
        print(f"{folder.name:24s} max|numpy - hf| {worst:.2e}  greedy {'match' if greedy_ok else 'MISMATCH'}  {'ok' if ok else 'FAIL'}")
    print(f"{n - bad} passed, {bad} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
