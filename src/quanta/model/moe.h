// A sparse mixture-of-experts block (Qwen3-MoE, Qwen2-MoE, Mixtral): router, tokens
// grouped by expert, one grouped matmul per projection and expert over the tokens
// routed to it (MoeKernel), the activation, and the weighted sum back per token; plus
// Qwen2-MoE's shared expert scaled by its sigmoid gate.
//
// A decode step reads only the chosen experts' weights; a prompt reads each active
// expert's weights once for all its tokens. Experts are spread over the thread pool
// (each expert's matmuls then run on one thread); an expert with more than its share of
// the step's rows runs alone with the whole pool, so one hot expert does not serialise.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "quanta/format/hf_config.h"
#include "quanta/format/tensor_source.h"
#include "quanta/quant/quant_method.h"

namespace quanta {
class ThreadPool;
}

namespace quanta::model {

// The experts each token is sent to: slot t * k + j holds its j-th choice.
struct Routing {
  int64_t n_tokens = 0, k = 0;
  std::vector<int32_t> expert;
  std::vector<float> weight;
};

// Routing from router logits [n_tokens, n_experts], as transformers computes it: scores
// (softmax or sigmoid, f32), the top k by score (equal scores in torch.topk's CPU order), renormalised
// to sum 1 when config.norm_topk, times routed_scaling.
Routing route(const format::MoeConfig& config, const float* logits, int64_t n_tokens);

class MoeBlock {
 public:
  // The block of layer `layer_prefix` ("model.layers.3."): its router and experts under
  // mlp. (Qwen, GPTQModel's Mixtral) or block_sparse_moe. (Mixtral), projections named
  // gate_proj/up_proj/down_proj or w1/w3/w2, whichever the checkpoint has.
  // Under tensor parallelism (tp.n_shards > 1) every expert, and the shared expert, is split
  // as a dense MLP is: gate/up by rows, down by input features; or, with tp.expert_parallel,
  // the rank keeps its share of the experts whole (the shared expert is still split).
  // forward then returns this rank's partial sum, which the caller all-reduces. The router
  // is whole on every rank.
  static std::unique_ptr<MoeBlock> load(const format::ModelConfig& config, const format::TensorSource& source,
                                        const std::vector<std::string>& names, const quant::QuantMethod& method,
                                        const std::string& layer_prefix, const quant::MoeSpec& tp = {});
  ~MoeBlock();

  // y[n_tokens, hidden] = MoE(x[n_tokens, hidden]).
  void forward(const float* x, int64_t n_tokens, float* y, ThreadPool& pool) const;

  const quant::MoeKernel& experts() const { return *experts_; }
  size_t weight_bytes() const;

 private:
  MoeBlock() = default;
  format::MoeConfig config_;
  int64_t hidden_ = 0;
  int64_t d_ff_ = 0, shared_ff_ = 0;  // this rank's part of an expert's and the shared expert's
  format::Activation activation_ = format::Activation::kSilu;
  std::unique_ptr<quant::LinearKernel> router_;  // [n_experts, hidden]
  std::unique_ptr<quant::MoeKernel> experts_;
  // Qwen2-MoE's shared expert and its gate [1, hidden]; null elsewhere.
  std::unique_ptr<quant::LinearKernel> shared_gate_, shared_up_, shared_down_;
  std::vector<float> shared_scale_;  // [hidden]: sigmoid(x . w) scales the shared expert
};

}  // namespace quanta::model
