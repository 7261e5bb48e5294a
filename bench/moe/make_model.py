#!/usr/bin/env python3
"""Random-weight BF16 GGUF with Qwen3-30B-A3B's per-layer shapes (hidden 2048, 32 query / 4 KV heads
of head_dim 128, 128 experts of ffn 768, 8 active, renormalised top-k, vocab 151936, untied), as
llama.cpp's converter lays out a qwen3moe file (3-D ffn_{gate,up,down}_exps, F32 router and norms).
`--layers 6` is the truncated model of bench/moe/README.md; `--layers 48` the full-size shape.
Weights ~ N(0, 0.02) in bf16 (router N(0, 0.02) too: random routing, every expert about as busy).
llama-quantize makes the Q4_K_M / Q8_0 files from it (bench/moe/prepare.sh).
Usage: python bench/moe/make_model.py --out models/bench/qwen3-30b-a3b-shape-6l-bf16.gguf [--layers 6]
"""
import argparse
import os

import gguf
import numpy as np

HIDDEN, HEADS, KV_HEADS, HEAD_DIM = 2048, 32, 4, 128
EXPERTS, USED, EXPERT_FFN = 128, 8, 768
VOCAB, CONTEXT, EPS, THETA = 151936, 40960, 1e-6, 1000000.0


def bf16(rng, shape):
    """N(0, 0.02) rounded to bf16 bits (uint16), generated in chunks."""
    out = np.empty(int(np.prod(shape)), dtype=np.uint16)
    step = 1 << 24
    for i in range(0, out.size, step):
        x = (rng.standard_normal(min(step, out.size - i), dtype=np.float32) * 0.02).view(np.uint32)
        out[i:i + x.size] = ((x + 0x7FFF + ((x >> 16) & 1)) >> 16).astype(np.uint16)
    return out.reshape(shape)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--seed", type=int, default=20261202)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    w = gguf.GGUFWriter(a.out + ".tmp", "qwen3moe")
    w.add_name(f"qwen3-30b-a3b-shape-{a.layers}l-random-bf16")
    w.add_block_count(a.layers)
    w.add_context_length(CONTEXT)
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(6144)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_key_length(HEAD_DIM)
    w.add_value_length(HEAD_DIM)
    w.add_rope_freq_base(THETA)
    w.add_layer_norm_rms_eps(EPS)
    w.add_expert_count(EXPERTS)
    w.add_expert_used_count(USED)
    w.add_expert_feed_forward_length(EXPERT_FFN)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    # llama.cpp makes VOCAB dummy tokens for tokenizer model "none"; the benchmark feeds token ids.
    w.add_tokenizer_model("none")
    w.add_vocab_size(VOCAB)
    BF16 = gguf.GGMLQuantizationType.BF16
    ones = lambda n: (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)  # noqa: E731
    w.add_tensor("token_embd.weight", bf16(rng, (VOCAB, HIDDEN)), raw_dtype=BF16)
    for i in range(a.layers):
        g = f"blk.{i}."
        w.add_tensor(g + "attn_norm.weight", ones(HIDDEN))
        w.add_tensor(g + "attn_q.weight", bf16(rng, (HEADS * HEAD_DIM, HIDDEN)), raw_dtype=BF16)
        w.add_tensor(g + "attn_k.weight", bf16(rng, (KV_HEADS * HEAD_DIM, HIDDEN)), raw_dtype=BF16)
        w.add_tensor(g + "attn_v.weight", bf16(rng, (KV_HEADS * HEAD_DIM, HIDDEN)), raw_dtype=BF16)
        w.add_tensor(g + "attn_output.weight", bf16(rng, (HIDDEN, HEADS * HEAD_DIM)), raw_dtype=BF16)
        w.add_tensor(g + "attn_q_norm.weight", ones(HEAD_DIM))
        w.add_tensor(g + "attn_k_norm.weight", ones(HEAD_DIM))
        w.add_tensor(g + "ffn_norm.weight", ones(HIDDEN))
        w.add_tensor(g + "ffn_gate_inp.weight", (0.02 * rng.standard_normal((EXPERTS, HIDDEN))).astype(np.float32))
        w.add_tensor(g + "ffn_gate_exps.weight", bf16(rng, (EXPERTS, EXPERT_FFN, HIDDEN)), raw_dtype=BF16)
        w.add_tensor(g + "ffn_up_exps.weight", bf16(rng, (EXPERTS, EXPERT_FFN, HIDDEN)), raw_dtype=BF16)
        w.add_tensor(g + "ffn_down_exps.weight", bf16(rng, (EXPERTS, HIDDEN, EXPERT_FFN)), raw_dtype=BF16)
    w.add_tensor("output_norm.weight", ones(HIDDEN))
    w.add_tensor("output.weight", bf16(rng, (VOCAB, HIDDEN)), raw_dtype=BF16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(a.out + ".tmp", a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
