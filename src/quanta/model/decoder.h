// The decoder-only transformer shared by the llama family: Llama, Mistral,
// Qwen2, Qwen3, Gemma3 (text) and their mixture-of-experts kin (Qwen2-MoE,
// Qwen3-MoE, Mixtral: sparse layers are a MoeBlock in place of the MLP).
// Differences between them are data in
// ModelConfig (norm style, q/k norm, biases, activation, sliding layers, rope
// per layer type, softcaps), not separate code paths per architecture.
//
// Tensors are asked for by their Hugging Face names; a TensorSource for another
// container (GGUF) maps those names onto its own. Every Linear goes through a
// QuantMethod, so the model never knows how its weights are stored.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "quanta/core/tensor.h"
#include "quanta/format/hf_config.h"
#include "quanta/format/tensor_source.h"
#include "quanta/model/kv_cache.h"
#include "quanta/model/rope.h"
#include "quanta/quant/quant_method.h"

namespace quanta {
class ThreadPool;
}
namespace quanta::dist {
class Communicator;
}

namespace quanta::model {

// One sequence's part of a forward pass: its new tokens, appended to its cache.
struct SequenceStep {
  KvSequence* kv;
  const int32_t* tokens;
  int64_t n_tokens;
  bool all_logits;  // logits for every new token, else only for the last
};

// A pool sized for a single sequence, with that sequence (for generate, bench, tests).
struct KvCache {
  KvPool pool;
  KvSequence seq;
  int64_t capacity() const { return pool.n_blocks() * pool.block_size(); }
};

// Called during loading with (bytes done, bytes total).
using LoadProgress = std::function<void(size_t, size_t)>;

class DecoderModel {
 public:
  // With a communicator of N > 1 ranks (tensor parallelism), this rank keeps its
  // shard of every attention and MLP Linear: heads of q/k/v/o (KV heads replicated
  // when fewer than ranks, as SGLang does), rows of gate/up and columns of down;
  // the partial outputs of o_proj and down_proj are summed by one all-reduce each.
  // The embedding is whole on every rank; lm_head is split by vocabulary (logits gathered
  // on rank 0) when the vocabulary divides, else whole on rank 0 alone.
  static std::unique_ptr<DecoderModel> load(const format::ModelConfig& config,
                                            const format::TensorSource& source,
                                            const quant::QuantMethod& method,
                                            const LoadProgress& progress = {},
                                            dist::Communicator* comm = nullptr, bool expert_parallel = false);
  // Throws Error naming what does not divide when the model cannot be split n ways
  // (expert_parallel: MoE experts partitioned over the ranks, --enable-ep-moe).
  static void check_tp_split(const format::ModelConfig& config, int n, bool expert_parallel = false);
  // Rank 0 (of more than one) tells the other ranks to leave follow().
  ~DecoderModel();

  // Ranks other than 0: run every step rank 0 runs, as rank 0 broadcasts them (tokens,
  // positions, block tables), on a KV pool of the same blocks, until rank 0's model is
  // destroyed. Computes its slice of the logits when lm_head is split.
  void follow(ThreadPool& pool) const;

  const format::ModelConfig& config() const { return config_; }
  // A paged pool for this model's layers and heads.
  KvPool make_pool(int64_t n_blocks, int64_t block_size = kDefaultBlockSize) const;
  KvCache make_cache(int64_t capacity) const;
  static constexpr int64_t kDefaultBlockSize = 16;

  // One step over several sequences at once: their tokens go through every
  // Linear together (each weight is read once per step), attention runs per
  // sequence over its own cache. Each sequence's tokens take positions
  // kv->n_tokens.. and are appended to its cache, growing its block table.
  // Logits rows are written in step order: n_tokens rows for a step with
  // all_logits, else one. Throws Error for a token id outside the vocabulary or
  // a pool without room (nothing is appended then). Under tensor parallelism only rank 0
  // calls it (the others are in follow()); logits are rank 0's alone.
  void forward(const std::vector<SequenceStep>& steps, KvPool& kv_pool, float* logits,
               ThreadPool& pool) const;
  // Single-sequence form of the above.
  void forward(const int32_t* tokens, int64_t n_tokens, KvCache& cache, float* logits,
               bool all_logits, ThreadPool& pool) const;

  size_t weight_bytes() const;

 private:
  struct Layer;
  DecoderModel() = default;

  format::ModelConfig config_;
  std::shared_ptr<quant::LinearKernel> embedding_;  // [vocab, hidden], looked up by row
  Tensor final_norm_;  // [hidden] f32
  std::shared_ptr<quant::LinearKernel> lm_head_;  // [vocab, hidden]; the embedding's kernel when tied
  std::vector<std::unique_ptr<Layer>> layers_;
  RopeTable rope_full_, rope_sliding_;
  dist::Communicator* comm_ = nullptr;  // null: one process
  // This rank's share of the heads and of the MLP's intermediate features.
  int64_t n_heads_ = 0, n_kv_heads_ = 0, d_ff_ = 0;
  bool vocab_split_ = false;  // each rank computes a slice of the logits, gathered on rank 0
  bool tp() const;
  static void check_same_plan(dist::Communicator& comm, const DecoderModel& m);
};

}  // namespace quanta::model
