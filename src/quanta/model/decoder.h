// The decoder-only transformer shared by the llama family: Llama, Mistral,
// Qwen2, Qwen3 and Gemma3 (text). Differences between them are data in
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
#include "quanta/model/rope.h"
#include "quanta/quant/quant_method.h"

namespace quanta {
class ThreadPool;
}

namespace quanta::model {

// Key/value cache of one sequence: per layer [n_kv_heads, capacity, d_head] f32.
struct KvCache {
  int64_t capacity = 0;
  int64_t n_tokens = 0;  // positions filled so far
  std::vector<Tensor> k, v;
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
  KvCache make_cache(int64_t capacity) const;

  // Runs n_tokens tokens at positions cache.n_tokens .. + n_tokens - 1, appends
  // their keys and values to the cache and writes logits: for every token
  // ([n_tokens, vocab]) when all_logits, else for the last one ([vocab]).
  // Throws Error for a token id outside the vocabulary or a full cache.
  void forward(const int32_t* tokens, int64_t n_tokens, KvCache& cache, float* logits,
               bool all_logits, ThreadPool& pool) const;

  size_t weight_bytes() const;

 private:
  struct Layer;
  DecoderModel() = default;

  format::ModelConfig config_;
  Tensor embedding_;  // [vocab, hidden], as stored
  Tensor final_norm_;  // [hidden] f32
  std::unique_ptr<quant::LinearKernel> lm_head_;  // [vocab, hidden]
  std::vector<std::unique_ptr<Layer>> layers_;
  RopeTable rope_full_, rope_sliding_;
};

}  // namespace quanta::model
