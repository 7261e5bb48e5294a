// Element-wise and attention kernels used by the model layers.
//
// Activations are f32. Functions that run in the hot path take the kernel table
// to use, so tests can hold every ISA path to the reference.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "quanta/kernels/kernels.h"

namespace quanta {
class ThreadPool;
}

namespace quanta::kernels {

// RMSNorm of each of n_rows rows of length n: y = x / sqrt(mean(x^2) + eps) * g,
// with g = w (Llama) or g = 1 + w (Gemma). x and y may alias.
void rms_norm(const float* x, const float* w, float* y, int64_t n_rows, int64_t n, float eps,
              bool one_plus_weight);

// Rotary embedding: for each of n_heads heads of width d_head in each of
// n_tokens rows (row stride `stride`), rotate pairs of the first d_rot elements
// by angle pos * inv_freq[i] and scale cos/sin by `attention_factor`. Pair i is
// (i, i + d_rot/2) in the rotate-half convention of transformers, or (2i, 2i+1)
// when `interleaved` (llama.cpp's NORM rope).
void rope(float* x, int64_t n_tokens, int64_t stride, int n_heads, int d_head, int d_rot,
          const int64_t* positions, const float* inv_freq, float attention_factor, bool interleaved = false);

// In-place softmax of n values.
void softmax(float* x, int64_t n);

float gelu_tanh(float x);
float silu(float x);

// Scaled dot-product attention over a paged KV cache.
//
// Keys and values live in blocks of block_size positions, [n_blocks, n_kv_heads,
// block_size, d_head]; position j of a sequence is in block blocks[j / block_size]
// at slot j % block_size. Query i (at position positions[i]) sees positions j < n_kv
// with j <= positions[i] (causal; all of them when not causal) and, when
// window > 0, only j > positions[i] - window. Scores are q.k * scale, then
// softcap * tanh(s / softcap) when softcap > 0.
struct AttentionShape {
  int n_heads;
  int n_kv_heads;
  int d_head;
  float scale;
  float softcap;  // 0: none
  int window;     // 0: none
  bool causal;
  // gpt-oss: one logit per head [n_heads] that joins each softmax's denominator and
  // takes no value (null: none).
  const float* sinks = nullptr;
};

// One sequence's queries and cache.
struct AttentionSeq {
  const float* q;            // [n_tokens, q_stride], heads at h * d_head
  float* out;                // [n_tokens, out_stride]
  int64_t n_tokens;
  const int64_t* positions;  // [n_tokens]
  const int32_t* blocks;     // block table
  int64_t n_kv;              // positions in the cache
};

struct KvLayout {
  const float* k;
  const float* v;
  int64_t block_size;
  int64_t q_stride;
  int64_t out_stride;
};

void attention(const KernelTable& kt, const AttentionShape& s, const KvLayout& kv,
               const AttentionSeq* seqs, size_t n_seqs, ThreadPool* pool);

// The same computation written as plainly as possible (the truth for tests).
void attention_reference(const AttentionShape& s, const KvLayout& kv, const AttentionSeq& seq);

}  // namespace quanta::kernels
