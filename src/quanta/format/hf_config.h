// config.json and generation_config.json of a Hugging Face model folder.
//
// ModelConfig is the architecture-neutral description the model code builds
// from; the parser maps each supported architecture's fields onto it, accepting
// both the transformers 5.x layout (`rope_parameters`, `layer_types`) and the
// older one (`rope_scaling` + `rope_theta`, `rope_local_base_freq`,
// `sliding_window_pattern`, `use_sliding_window`/`max_window_layers`) that
// checkpoints in the wild still carry. A missing or ill-typed required field is
// an Error naming config.json and the field.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "quanta/core/dtype.h"

namespace quanta::format {

// Rotary embedding parameters of one attention type, as transformers'
// modeling_rope_utils reads them.
struct RopeConfig {
  std::string type = "default";  // default | linear | llama3 | yarn
  double theta = 10000.0;
  double factor = 1.0;
  double low_freq_factor = 1.0;   // llama3
  double high_freq_factor = 4.0;  // llama3
  int64_t original_max_position_embeddings = 0;  // llama3, yarn
  double beta_fast = 32.0;  // yarn
  double beta_slow = 1.0;   // yarn
  std::optional<double> attention_factor;  // yarn
  std::optional<double> mscale, mscale_all_dim;  // yarn
  bool truncate = true;  // yarn
  double partial_rotary_factor = 1.0;
  // Per-frequency divisors (GGUF's rope_freqs tensor, how llama.cpp stores Llama 3.1 scaling).
  std::vector<float> freq_divisors;
};

enum class Activation { kSilu, kGeluTanh };

// How a router turns its logits into expert weights.
enum class RouterScoring { kSoftmax, kSigmoid };

// Mixture-of-experts layers (Qwen3-MoE, Qwen2-MoE, Mixtral). A layer is sparse when
// ModelConfig::layer_is_moe says so; the others keep the dense MLP of intermediate_size.
// The router picks n_experts_used of n_experts per token: scores by `scoring` over all
// experts, the top k (equal scores ordered as torch.topk orders them), optionally renormalised to
// sum 1, times routed_scaling. Room is left for DeepSeek-V3's grouped top-k with a score
// bias, which would add fields here, not a second router.
struct MoeConfig {
  int64_t n_experts = 0;       // 0: a dense model
  int64_t n_experts_used = 0;  // top-k
  int64_t expert_ffn = 0;      // intermediate size of one routed expert
  bool norm_topk = false;
  double routed_scaling = 1.0;
  RouterScoring scoring = RouterScoring::kSoftmax;
  int64_t shared_expert_ffn = 0;  // Qwen2-MoE's shared expert (0: none); its output is scaled by a sigmoid gate
  // gpt-oss: the router has a bias and takes the top k of its logits, then a softmax over
  // those k (instead of scoring all experts first); experts have biases; their activation
  // is the clamped SwiGLU (up clamped to [-limit, limit] + 1) * g * sigmoid(alpha * g),
  // g = min(gate, limit), used when swiglu_limit > 0.
  bool softmax_topk = false;
  bool router_bias = false;
  bool expert_bias = false;
  double swiglu_alpha = 0.0, swiglu_limit = 0.0;
};

// Bounds on sizes that no real model comes near (the largest have ~25k hidden, 128 heads
// of at most 512, a few hundred layers). Both config readers (config.json, GGUF metadata)
// refuse a size outside [1, bound] before anything divides by, multiplies or allocates
// per layer from it: a corrupt file is an error, not a SIGFPE, an overflow or 0.5 GB.
inline constexpr int64_t kMaxWidth = 1 << 20;    // hidden, intermediate and expert widths
inline constexpr int64_t kMaxLayers = 1 << 12;
inline constexpr int64_t kMaxHeads = 1 << 12;    // query and key/value heads
inline constexpr int64_t kMaxHeadDim = 1 << 12;
inline constexpr int64_t kMaxVocab = 1 << 24;

struct ModelConfig {
  std::string architecture;  // e.g. "LlamaForCausalLM"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t d_head = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v (and o for Llama's attention_bias) carry biases
  bool o_proj_bias = false;
  bool mlp_bias = false;
  bool attention_sinks = false;  // gpt-oss: self_attn.sinks [heads], one logit per head in the softmax
  bool qk_norm = false;          // per-head RMSNorm of q and k before RoPE (Qwen3, Gemma3)
  bool gemma_norms = false;      // (1 + w) RMSNorm and the extra post-attention/post-MLP norms
  Activation activation = Activation::kSilu;
  float embedding_scale = 1.0f;  // Gemma multiplies embeddings by sqrt(hidden_size)
  float attention_scale = 0.0f;  // q.k multiplier (1/sqrt(d_head) or query_pre_attn_scalar^-0.5)
  float attn_logit_softcap = 0.0f;   // 0: none
  float final_logit_softcap = 0.0f;  // 0: none
  int64_t sliding_window = 0;        // 0: none
  std::vector<bool> layer_is_sliding;  // per layer
  RopeConfig rope_full;     // rope of full-attention layers
  RopeConfig rope_sliding;  // rope of sliding-window layers (== rope_full unless Gemma3)
  // Rotate adjacent pairs (2i, 2i+1) instead of halves (i, i + d/2): llama.cpp's
  // "NORM" rope, which GGUF llama-arch files need (their q/k rows are permuted for it).
  bool rope_interleaved = false;
  DType dtype = DType::kF32;  // torch_dtype / dtype in config.json
  MoeConfig moe;
  std::vector<bool> layer_is_moe;  // per layer; all false for a dense model
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;
};

// Parses the text of a config.json; `file` names it in errors.
ModelConfig parse_model_config(const std::string& json_text, const std::string& file);
ModelConfig load_model_config(const std::string& model_dir);

// The architectures parse_model_config accepts.
const std::vector<std::string>& supported_architectures();

// Sampling defaults of generation_config.json (fields absent stay unset).
struct GenerationDefaults {
  std::optional<bool> do_sample;
  std::optional<double> temperature;
  std::optional<int64_t> top_k;
  std::optional<double> top_p;
  std::optional<double> min_p;
  std::optional<double> repetition_penalty;
  std::optional<int64_t> max_new_tokens;
  std::vector<int64_t> eos_token_ids;
  std::optional<int64_t> bos_token_id;
};
GenerationDefaults parse_generation_config(const std::string& json_text, const std::string& file);
// Reads generation_config.json if the folder has one; empty defaults otherwise.
GenerationDefaults load_generation_config(const std::string& model_dir);

// Reads a whole file; Error naming it if it cannot be read.
std::string read_text_file(const std::string& path);

}  // namespace quanta::format
