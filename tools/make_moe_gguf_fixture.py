#!/usr/bin/env python3
"""A tiny qwen3moe GGUF written by gguf-py (pinned in requirements-gguf.txt), for the tests
that MoE files are read (quanta inspect lists every tensor with its type and shape) and
refused with a clear message by the loaders until MoE layers exist.

Tensor names and metadata keys follow llama.cpp's converter for Qwen3-MoE
(gguf-py's constants: MODEL_TENSOR.FFN_GATE_INP / FFN_GATE_EXP / FFN_UP_EXP /
FFN_DOWN_EXP, keys {arch}.expert_count, expert_used_count,
expert_feed_forward_length). Expert matrices are 3-D: numpy shape
[n_expert, rows, cols], quantized to Q8_0 by gguf-py's own quantizer.

Usage: python tools/make_moe_gguf_fixture.py tests/e2e/fixtures/gguf/qwen3moe-tiny.gguf [EXPERT_FFN]
The tensor-parallel test's file has EXPERT_FFN 64, so that an expert's down projection splits
into two halves of whole Q8_0 blocks:
  python tools/make_moe_gguf_fixture.py tests/dist/fixtures/qwen3moe-ffn64-q8_0.gguf 64
"""
import sys

import numpy as np
import gguf
from gguf import quants

ARCH = "qwen3moe"
N_EMBD, N_HEAD, N_HEAD_KV, D_HEAD, N_EXPERT, N_USED, N_FF_EXP, N_VOCAB, N_LAYER = 64, 4, 2, 16, 4, 2, 32, 32, 1


def main(out, n_ff_exp=N_FF_EXP):
    global N_FF_EXP
    N_FF_EXP = n_ff_exp
    rng = np.random.default_rng(20261127)
    w = gguf.GGUFWriter(out, ARCH)
    w.add_name("quanta qwen3moe fixture")
    w.add_block_count(N_LAYER)
    w.add_context_length(128)
    w.add_embedding_length(N_EMBD)
    w.add_feed_forward_length(N_FF_EXP)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_key_length(D_HEAD)
    w.add_value_length(D_HEAD)
    w.add_rope_freq_base(1e6)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_expert_count(N_EXPERT)
    w.add_expert_used_count(N_USED)
    w.add_expert_feed_forward_length(N_FF_EXP)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list([f"t{i}" for i in range(N_VOCAB)])
    w.add_token_types([1] * N_VOCAB)
    w.add_token_merges([])

    def f32(name, shape):
        w.add_tensor(name, (rng.standard_normal(shape) * 0.02).astype(np.float32))

    def q8(name, shape):
        data = (rng.standard_normal(shape) * 0.02).astype(np.float32)
        w.add_tensor(name, quants.quantize(data, gguf.GGMLQuantizationType.Q8_0),
                     raw_dtype=gguf.GGMLQuantizationType.Q8_0)

    q8("token_embd.weight", (N_VOCAB, N_EMBD))
    f32("output_norm.weight", (N_EMBD,))
    for i in range(N_LAYER):
        p = f"blk.{i}."
        f32(p + "attn_norm.weight", (N_EMBD,))
        q8(p + "attn_q.weight", (N_HEAD * D_HEAD, N_EMBD))
        q8(p + "attn_k.weight", (N_HEAD_KV * D_HEAD, N_EMBD))
        q8(p + "attn_v.weight", (N_HEAD_KV * D_HEAD, N_EMBD))
        q8(p + "attn_output.weight", (N_EMBD, N_HEAD * D_HEAD))
        f32(p + "attn_q_norm.weight", (D_HEAD,))
        f32(p + "attn_k_norm.weight", (D_HEAD,))
        f32(p + "ffn_norm.weight", (N_EMBD,))
        f32(p + "ffn_gate_inp.weight", (N_EXPERT, N_EMBD))
        q8(p + "ffn_gate_exps.weight", (N_EXPERT, N_FF_EXP, N_EMBD))
        q8(p + "ffn_up_exps.weight", (N_EXPERT, N_FF_EXP, N_EMBD))
        q8(p + "ffn_down_exps.weight", (N_EXPERT, N_EMBD, N_FF_EXP))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else N_FF_EXP)
