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
  static std::unique_ptr<DecoderModel> load(const format::ModelConfig& config,
                                            const format::TensorSource& source,
                                            const quant::QuantMethod& method,
                                            const LoadProgress& progress = {});
  ~DecoderModel();

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
  // a pool without room (nothing is appended then).
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
};

}  // namespace quanta::model
