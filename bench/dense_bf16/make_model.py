#!/usr/bin/env python3
"""Random-weight bf16 model with Qwen3-0.6B's shapes, written twice: as a Hugging Face folder
(config.json + model.safetensors, read by quanta) and as a BF16 GGUF (read by llama.cpp).

Both files hold the same numbers: every weight matrix is the same bf16 bit pattern in both; the
1-D norm weights are bf16 in the safetensors file and the exact f32 widening of those bf16 values
in the GGUF (what llama.cpp's convert_hf_to_gguf.py --outtype bf16 does: 1-D tensors stay f32).
`--verify` re-reads both files and checks that, tensor by tensor.

Weights: matrices ~ N(0, 0.02^2), norms ~ 1 + N(0, 0.02^2), from numpy's PCG64 with a fixed seed,
rounded f32 -> bf16 to nearest even. Tied embeddings (no lm_head.weight), as Qwen3-0.6B.

Needs numpy and gguf (gguf-py) only; see requirements.txt.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

# Qwen3-0.6B's shapes (its config.json), random weights.
HIDDEN = 1024
LAYERS = 28
HEADS = 16
KV_HEADS = 8
HEAD_DIM = 128
FFN = 3072
VOCAB = 151936
CONTEXT = 40960
EPS = 1e-6
THETA = 1000000.0
DEFAULT_SEED = 20260101

# config.json exactly as transformers 5.23 saves Qwen3Config(...) for these shapes
# (Qwen3Config(...).save_pretrained, keys sorted as it writes them).
CONFIG = {
    "architectures": ["Qwen3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "dtype": "bfloat16",
    "eos_token_id": 151645,
    "head_dim": HEAD_DIM,
    "hidden_act": "silu",
    "hidden_size": HIDDEN,
    "initializer_range": 0.02,
    "intermediate_size": FFN,
    "layer_types": ["full_attention"] * LAYERS,
    "max_position_embeddings": CONTEXT,
    "max_window_layers": LAYERS,
    "model_type": "qwen3",
    "num_attention_heads": HEADS,
    "num_hidden_layers": LAYERS,
    "num_key_value_heads": KV_HEADS,
    "pad_token_id": None,
    "rms_norm_eps": EPS,
    "rope_parameters": {"rope_theta": THETA, "rope_type": "default"},
    "sliding_window": None,
    "tie_word_embeddings": True,
    "transformers_version": "5.23.0",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": VOCAB,
}


def tensor_plan():
    """(hf_name, gguf_name, shape as [out, in] / [n], is_norm), in generation order."""
    q_out, kv_out = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    plan = [("model.embed_tokens.weight", "token_embd.weight", (VOCAB, HIDDEN), False)]
    for i in range(LAYERS):
        p, g = f"model.layers.{i}.", f"blk.{i}."
        plan += [
            (p + "input_layernorm.weight", g + "attn_norm.weight", (HIDDEN,), True),
            (p + "self_attn.q_proj.weight", g + "attn_q.weight", (q_out, HIDDEN), False),
            (p + "self_attn.k_proj.weight", g + "attn_k.weight", (kv_out, HIDDEN), False),
            (p + "self_attn.v_proj.weight", g + "attn_v.weight", (kv_out, HIDDEN), False),
            (p + "self_attn.o_proj.weight", g + "attn_output.weight", (HIDDEN, q_out), False),
            (p + "self_attn.q_norm.weight", g + "attn_q_norm.weight", (HEAD_DIM,), True),
            (p + "self_attn.k_norm.weight", g + "attn_k_norm.weight", (HEAD_DIM,), True),
            (p + "post_attention_layernorm.weight", g + "ffn_norm.weight", (HIDDEN,), True),
            (p + "mlp.gate_proj.weight", g + "ffn_gate.weight", (FFN, HIDDEN), False),
            (p + "mlp.up_proj.weight", g + "ffn_up.weight", (FFN, HIDDEN), False),
            (p + "mlp.down_proj.weight", g + "ffn_down.weight", (HIDDEN, FFN), False),
        ]
    plan.append(("model.norm.weight", "output_norm.weight", (HIDDEN,), True))
    return plan


def f32_to_bf16_bits(x):
    """f32 -> bf16 bit patterns (uint16), round to nearest, ties to even (no NaNs here)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    u = u + (np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))
    return (u >> np.uint32(16)).astype(np.uint16)


def bf16_bits_to_f32(b):
    return (b.astype(np.uint32) << np.uint32(16)).view(np.float32)


def make_weights(seed):
    rng = np.random.default_rng(seed)
    out = {}
    for hf, _, shape, is_norm in tensor_plan():
        x = rng.standard_normal(shape, dtype=np.float32)
        x *= np.float32(0.02)
        if is_norm:
            x += np.float32(1.0)
        out[hf] = f32_to_bf16_bits(x)
    return out


def write_safetensors(path, weights):
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    names = sorted(weights)
    for n in names:
        nbytes = weights[n].nbytes
        header[n] = {"dtype": "BF16", "shape": list(weights[n].shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the data starts 8-byte aligned, as safetensors pads it
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for n in names:
            weights[n].tofile(f)
    os.replace(tmp, path)


def write_gguf(path, weights):
    import gguf

    w = gguf.GGUFWriter(path + ".tmp", "qwen3")
    w.add_name("qwen3-0.6b-shape-random-bf16")
    w.add_block_count(LAYERS)
    w.add_context_length(CONTEXT)
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_key_length(HEAD_DIM)
    w.add_value_length(HEAD_DIM)
    w.add_rope_freq_base(THETA)
    w.add_layer_norm_rms_eps(EPS)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    # The minimum vocabulary llama.cpp loads: tokenizer model "none" plus <arch>.vocab_size, for
    # which it makes that many dummy tokens (llama-vocab.cpp, LLAMA_VOCAB_TYPE_NONE). The
    # benchmark feeds random token ids, so no real tokenizer is needed.
    w.add_tokenizer_model("none")
    w.add_vocab_size(VOCAB)
    for hf, gg, _, is_norm in tensor_plan():
        if is_norm:
            w.add_tensor(gg, bf16_bits_to_f32(weights[hf]))
        else:
            w.add_tensor(gg, weights[hf], raw_dtype=gguf.GGMLQuantizationType.BF16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(path + ".tmp", path)


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "BF16", (name, info["dtype"])
        b, e = info["data_offsets"]
        out[name] = mm[8 + n + b: 8 + n + e].view(np.uint16).reshape(info["shape"])
    return out


def verify(hf_dir, gguf_path):
    """Every tensor of the GGUF equals its safetensors twin (bitwise; norms after widening)."""
    import gguf

    st = read_safetensors(os.path.join(hf_dir, "model.safetensors"))
    reader = gguf.GGUFReader(gguf_path)
    gg = {t.name: t for t in reader.tensors}
    plan = tensor_plan()
    assert set(st) == {p[0] for p in plan}, "safetensors names differ from the plan"
    assert set(gg) == {p[1] for p in plan}, "gguf names differ from the plan"
    for hf, name, shape, is_norm in plan:
        t, ref = gg[name], st[hf]
        assert tuple(ref.shape) == shape, (hf, ref.shape)
        # GGUF stores ne reversed: ne[0] is the row length (n_in).
        assert tuple(int(d) for d in t.shape) == tuple(reversed(shape)), (name, t.shape)
        if is_norm:
            assert t.tensor_type == gguf.GGMLQuantizationType.F32, name
            ok = np.array_equal(np.asarray(t.data, dtype=np.float32).reshape(-1), bf16_bits_to_f32(ref).reshape(-1))
        else:
            assert t.tensor_type == gguf.GGMLQuantizationType.BF16, name
            ok = np.array_equal(np.asarray(t.data).view(np.uint16).reshape(-1), ref.reshape(-1))
        if not ok:
            raise SystemExit(f"MISMATCH: {hf} vs {name}")
    kv = {f.name: f for f in reader.fields.values()}
    assert "qwen3.vocab_size" in kv and "tokenizer.ggml.model" in kv
    print(f"verified: {len(plan)} tensors equal in {hf_dir}/model.safetensors and {gguf_path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models", "bench"),
                    help="output folder (default: <repo>/models/bench)")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--verify", action="store_true", help="after writing (or alone, with --verify-only), compare the files")
    ap.add_argument("--verify-only", action="store_true")
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    hf_dir = os.path.join(out, "qwen3-0.6b-shape-bf16")
    gguf_path = os.path.join(out, "qwen3-0.6b-shape-bf16.gguf")
    if not args.verify_only:
        os.makedirs(hf_dir, exist_ok=True)
        weights = make_weights(args.seed)
        n = sum(v.size for v in weights.values())
        print(f"{len(weights)} tensors, {n} parameters ({n * 2 / 1e9:.3f} GB bf16), seed {args.seed}")
        with open(os.path.join(hf_dir, "config.json"), "w") as f:
            json.dump(CONFIG, f, indent=2)
            f.write("\n")
        write_safetensors(os.path.join(hf_dir, "model.safetensors"), weights)
        print(f"wrote {hf_dir}")
        write_gguf(gguf_path, weights)
        print(f"wrote {gguf_path}")
        with open(os.path.join(hf_dir, "make_model.json"), "w") as f:
            json.dump({"seed": args.seed, "gguf": os.path.basename(gguf_path)}, f)
            f.write("\n")
    if args.verify or args.verify_only:
        verify(hf_dir, gguf_path)


if __name__ == "__main__":
    sys.exit(main())
