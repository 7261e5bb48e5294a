#include "quanta/format/hf_config.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "quanta/core/error.h"
#include "quanta/core/json.h"

namespace quanta::format {

namespace fs = std::filesystem;
using nlohmann::json;

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read file", {.file = path});
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

namespace {

// Typed access to a JSON object with errors that name the file and field.
class Fields {
 public:
  Fields(const json& j, std::string file, std::string prefix = "")
      : j_(j), file_(std::move(file)), prefix_(std::move(prefix)) {}

  bool has(const char* key) const { return j_.contains(key) && !j_[key].is_null(); }

  [[noreturn]] void fail(const char* key, const std::string& what) const {
    throw Error(what, {.file = file_, .field = prefix_ + key});
  }

  int64_t integer(const char* key) const {
    if (!has(key)) fail(key, "missing required field");
    return as_int(key, j_[key]);
  }
  int64_t integer(const char* key, int64_t fallback) const { return has(key) ? as_int(key, j_[key]) : fallback; }
  double number(const char* key, double fallback) const {
    if (!has(key)) return fallback;
    if (!j_[key].is_number()) fail(key, "expected a number, got " + j_[key].dump());
    return j_[key].get<double>();
  }
  std::optional<double> optional_number(const char* key) const {
    if (!has(key)) return std::nullopt;
    return number(key, 0.0);
  }
  bool boolean(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    if (!j_[key].is_boolean()) fail(key, "expected true or false, got " + j_[key].dump());
    return j_[key].get<bool>();
  }
  std::string string(const char* key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    if (!j_[key].is_string()) fail(key, "expected a string, got " + j_[key].dump());
    return j_[key].get<std::string>();
  }
  // An int or a list of ints (eos_token_id).
  std::vector<int64_t> int_list(const char* key) const {
    std::vector<int64_t> out;
    if (!has(key)) return out;
    const json& v = j_[key];
    if (v.is_array()) {
      for (const json& e : v) out.push_back(as_int(key, e));
    } else {
      out.push_back(as_int(key, v));
    }
    return out;
  }
  const json& raw() const { return j_; }

 private:
  int64_t as_int(const char* key, const json& v) const {
    if (v.is_number_unsigned() && v.get<uint64_t>() > INT64_MAX) fail(key, v.dump() + " is out of range");
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float()) {
      double d = v.get<double>();
      if (d == std::floor(d) && std::fabs(d) < 9e15) return static_cast<int64_t>(d);
    }
    fail(key, "expected an integer, got " + v.dump());
  }

  const json& j_;
  std::string file_;
  std::string prefix_;
};

json parse_object(const std::string& text, const std::string& file) {
  json j = quanta::parse_json(text, {.file = file});
  if (!j.is_object()) throw Error("expected a JSON object at the top level", {.file = file});
  return j;
}

RopeConfig parse_rope(const json& params, const std::string& file, const std::string& prefix,
                      double default_theta, int64_t max_pos) {
  if (!params.is_object()) throw Error("expected an object, got " + params.dump(), {.file = file, .field = prefix});
  Fields f(params, file, prefix + ".");
  RopeConfig r;
  // Old configs spell the type "type", new ones "rope_type".
  r.type = f.string("rope_type", f.string("type", "default"));
  r.theta = f.number("rope_theta", default_theta);
  r.factor = f.number("factor", 1.0);
  r.low_freq_factor = f.number("low_freq_factor", 1.0);
  r.high_freq_factor = f.number("high_freq_factor", 4.0);
  r.original_max_position_embeddings = f.integer("original_max_position_embeddings", max_pos);
  r.beta_fast = f.number("beta_fast", 32.0);
  r.beta_slow = f.number("beta_slow", 1.0);
  // transformers treats 0 like "unset" for these (`or 32`, `or 1`).
  if (r.beta_fast == 0.0) r.beta_fast = 32.0;
  if (r.beta_slow == 0.0) r.beta_slow = 1.0;
  r.attention_factor = f.optional_number("attention_factor");
  r.mscale = f.optional_number("mscale");
  r.mscale_all_dim = f.optional_number("mscale_all_dim");
  r.truncate = f.boolean("truncate", true);
  r.partial_rotary_factor = f.number("partial_rotary_factor", 1.0);
  if (r.type != "default" && r.type != "linear" && r.type != "llama3" && r.type != "yarn")
    throw Error("unsupported rope type '" + r.type + "' (supported: default, linear, llama3, yarn)",
                {.file = file, .field = prefix + ".rope_type"});
  if (r.partial_rotary_factor != 1.0)
    throw Error("partial rotary embeddings are not supported", {.file = file, .field = prefix + ".partial_rotary_factor"});
  if (r.factor <= 0.0) throw Error("must be positive", {.file = file, .field = prefix + ".factor"});
  return r;
}

struct ArchTraits {
  const char* name;
  bool qkv_bias_always;  // Qwen2
  bool qk_norm;
  bool gemma;
  bool moe;
};

constexpr ArchTraits kArchitectures[] = {
    {"LlamaForCausalLM", false, false, false, false},
    {"MistralForCausalLM", false, false, false, false},
    {"Qwen2ForCausalLM", true, false, false, false},
    {"Qwen3ForCausalLM", false, true, false, false},
    {"Gemma3ForCausalLM", false, true, true, false},
    {"Qwen2MoeForCausalLM", true, false, false, true},
    {"Qwen3MoeForCausalLM", false, true, false, true},
    {"MixtralForCausalLM", false, false, false, true},
    {"GptOssForCausalLM", false, false, false, true},
};

// The MoE fields of Qwen2-MoE, Qwen3-MoE and Mixtral configs (transformers'
// Qwen2MoeConfig / Qwen3MoeConfig / MixtralConfig and their defaults).
void parse_moe(const Fields& f, ModelConfig& c) {
  MoeConfig& m = c.moe;
  const bool gptoss = c.architecture == "GptOssForCausalLM";
  const bool mixtral = gptoss || c.architecture == "MixtralForCausalLM";  // experts intermediate_size wide, every layer sparse
  // Older transformers wrote num_experts for Mixtral too; newer ones num_local_experts.
  const char* count_key = f.has("num_local_experts") ? "num_local_experts" : "num_experts";
  m.n_experts = f.integer(count_key);
  m.n_experts_used = f.integer("num_experts_per_tok");
  if (m.n_experts <= 0) f.fail(count_key, "must be positive");
  if (m.n_experts_used <= 0 || m.n_experts_used > m.n_experts)
    f.fail("num_experts_per_tok", "must be between 1 and the expert count (" + std::to_string(m.n_experts) + ")");
  // Mixtral's experts are intermediate_size wide and its router always renormalises.
  m.expert_ffn = mixtral ? c.intermediate_size : f.integer("moe_intermediate_size");
  if (m.expert_ffn <= 0 || m.expert_ffn > kMaxWidth)
    f.fail("moe_intermediate_size", "must be positive and at most " + std::to_string(kMaxWidth));
  m.norm_topk = (mixtral && !gptoss) || f.boolean("norm_topk_prob", false);
  if (gptoss) {
    m.softmax_topk = m.router_bias = m.expert_bias = true;
    m.swiglu_alpha = f.number("swiglu_alpha", 1.702);
    m.swiglu_limit = f.number("swiglu_limit", 7.0);
    if (!(m.swiglu_limit > 0.0) || !std::isfinite(m.swiglu_limit)) f.fail("swiglu_limit", "must be positive and finite");
    if (!std::isfinite(m.swiglu_alpha)) f.fail("swiglu_alpha", "must be finite");
  }
  if (c.architecture == "Qwen2MoeForCausalLM") {
    m.shared_expert_ffn = f.integer("shared_expert_intermediate_size");
    if (m.shared_expert_ffn <= 0 || m.shared_expert_ffn > kMaxWidth)
      f.fail("shared_expert_intermediate_size", "must be positive and at most " + std::to_string(kMaxWidth));
  }
  // Qwen's decoder_sparse_step and mlp_only_layers choose which layers are sparse.
  const int64_t step = mixtral ? 1 : f.integer("decoder_sparse_step", 1);
  if (step <= 0) f.fail("decoder_sparse_step", "must be positive");
  c.layer_is_moe.assign(static_cast<size_t>(c.n_layers), false);
  for (int64_t i = 0; i < c.n_layers; ++i) c.layer_is_moe[static_cast<size_t>(i)] = (i + 1) % step == 0;
  if (!mixtral)
    for (int64_t i : f.int_list("mlp_only_layers")) {
      if (i < 0 || i >= c.n_layers) f.fail("mlp_only_layers", "layer " + std::to_string(i) + " does not exist");
      c.layer_is_moe[static_cast<size_t>(i)] = false;
    }
}

}  // namespace

const std::vector<std::string>& supported_architectures() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& a : kArchitectures) v.emplace_back(a.name);
    return v;
  }();
  return names;
}

ModelConfig parse_model_config(const std::string& json_text, const std::string& file) {
  json j = parse_object(json_text, file);
  Fields f(j, file);
  ModelConfig c;

  if (!j.contains("architectures") || !j["architectures"].is_array() || j["architectures"].empty() ||
      !j["architectures"][0].is_string())
    f.fail("architectures", "missing or not a list of names");
  c.architecture = j["architectures"][0].get<std::string>();
  const ArchTraits* arch = nullptr;
  for (const auto& a : kArchitectures)
    if (c.architecture == a.name) arch = &a;
  if (!arch) {
    std::string list;
    for (const auto& n : supported_architectures()) list += (list.empty() ? "" : ", ") + n;
    f.fail("architectures", "unknown architecture '" + c.architecture + "' (supported: " + list + ")");
  }

  c.vocab_size = f.integer("vocab_size");
  c.hidden_size = f.integer("hidden_size");
  c.intermediate_size = f.integer("intermediate_size");
  c.n_layers = f.integer("num_hidden_layers");
  c.n_heads = f.integer("num_attention_heads");
  c.n_kv_heads = f.integer("num_key_value_heads", c.n_heads);
  const std::pair<const char*, int64_t> bounds[] = {
      {"vocab_size", kMaxVocab},          {"hidden_size", kMaxWidth},         {"intermediate_size", kMaxWidth},
      {"num_hidden_layers", kMaxLayers}, {"num_attention_heads", kMaxHeads}, {"num_key_value_heads", kMaxHeads}};
  for (const auto& [key, max] : bounds)
    if (const int64_t v = f.integer(key, 1); v <= 0 || v > max)
      f.fail(key, "must be positive and at most " + std::to_string(max) + ", got " + std::to_string(v));
  if (c.n_heads % c.n_kv_heads != 0)
    f.fail("num_key_value_heads", "num_attention_heads (" + std::to_string(c.n_heads) +
                                      ") is not a multiple of num_key_value_heads (" +
                                      std::to_string(c.n_kv_heads) + ")");
  c.d_head = f.integer("head_dim", c.hidden_size / c.n_heads);
  if (c.d_head <= 0 || c.d_head % 2 != 0 || c.d_head > kMaxHeadDim)
    f.fail("head_dim",
           "must be positive, even and at most " + std::to_string(kMaxHeadDim) + ", got " + std::to_string(c.d_head));
  c.max_position_embeddings = f.integer("max_position_embeddings", 2048);
  c.rms_norm_eps = f.number("rms_norm_eps", 1e-6);
  c.tie_word_embeddings = f.boolean("tie_word_embeddings", arch->gemma);
  const bool gptoss = c.architecture == "GptOssForCausalLM";  // attention_bias defaults to true there
  c.attention_bias = arch->qkv_bias_always || f.boolean("attention_bias", gptoss);
  c.o_proj_bias = !arch->qkv_bias_always && f.boolean("attention_bias", gptoss);
  c.attention_sinks = gptoss;
  c.mlp_bias = f.boolean("mlp_bias", false);
  c.qk_norm = arch->qk_norm;
  c.gemma_norms = arch->gemma;
  c.layer_is_moe.assign(static_cast<size_t>(c.n_layers), false);
  if (arch->moe) parse_moe(f, c);

  std::string act = f.string(arch->gemma ? "hidden_activation" : "hidden_act",
                             arch->gemma ? "gelu_pytorch_tanh" : "silu");
  if (act == "silu" || act == "swish") c.activation = Activation::kSilu;
  else if (act == "gelu_pytorch_tanh" || act == "gelu_tanh") c.activation = Activation::kGeluTanh;
  else f.fail(arch->gemma ? "hidden_activation" : "hidden_act", "unsupported activation '" + act + "'");

  if (arch->gemma) {
    c.embedding_scale = std::sqrt(static_cast<float>(c.hidden_size));
    double scalar = f.number("query_pre_attn_scalar", static_cast<double>(c.d_head));
    if (scalar <= 0) f.fail("query_pre_attn_scalar", "must be positive");
    c.attention_scale = static_cast<float>(std::pow(scalar, -0.5));
  } else {
    c.attention_scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.d_head)));
  }
  if (f.boolean("use_bidirectional_attention", false))
    f.fail("use_bidirectional_attention", "bidirectional (embedding) models are not supported; quanta runs causal decoders");
  // transformers' Gemma3 attention never passes attn_logit_softcapping on (Gemma3Attention.forward,
  // 5.23), so Gemma3 checkpoints run without it even when their config sets it.
  c.attn_logit_softcap = arch->gemma ? 0.0f : static_cast<float>(f.number("attn_logit_softcapping", 0.0));
  c.final_logit_softcap = static_cast<float>(f.number("final_logit_softcapping", 0.0));

  // Sliding-window layers: `layer_types` when present, else each family's older rule.
  int64_t window = f.integer("sliding_window", 0);
  if (window < 0) f.fail("sliding_window", "must not be negative");
  c.layer_is_sliding.assign(static_cast<size_t>(c.n_layers), false);
  if (f.has("layer_types")) {
    const json& types = j["layer_types"];
    if (!types.is_array() || static_cast<int64_t>(types.size()) != c.n_layers)
      f.fail("layer_types", "expected a list of " + std::to_string(c.n_layers) + " layer types");
    for (size_t i = 0; i < types.size(); ++i) {
      std::string t = types[i].is_string() ? types[i].get<std::string>() : types[i].dump();
      if (t == "sliding_attention") c.layer_is_sliding[i] = true;
      else if (t != "full_attention")
        f.fail("layer_types", "unsupported layer type '" + t + "' at index " + std::to_string(i));
    }
  } else if (c.architecture == "MistralForCausalLM" || c.architecture == "MixtralForCausalLM") {
    c.layer_is_sliding.assign(static_cast<size_t>(c.n_layers), window > 0);
  } else if (arch->gemma) {
    int64_t pattern = f.integer("sliding_window_pattern", 6);
    if (pattern <= 0) f.fail("sliding_window_pattern", "must be positive");
    for (int64_t i = 0; i < c.n_layers; ++i) c.layer_is_sliding[static_cast<size_t>(i)] = (i + 1) % pattern != 0;
  } else if (f.boolean("use_sliding_window", false)) {
    int64_t first = f.integer("max_window_layers", 28);
    for (int64_t i = first; i < c.n_layers; ++i) c.layer_is_sliding[static_cast<size_t>(i)] = true;
  }
  // Qwen2/Qwen3 drop the window unless use_sliding_window is set.
  if (c.architecture.rfind("Qwen", 0) == 0 && !f.boolean("use_sliding_window", false))
    window = 0;
  c.sliding_window = window;
  if (window == 0) c.layer_is_sliding.assign(static_cast<size_t>(c.n_layers), false);

  // RoPE: transformers 5 writes `rope_parameters` (nested by layer type for Gemma3);
  // older configs have `rope_theta` + `rope_scaling`.
  double theta = f.number("rope_theta", arch->gemma ? 1000000.0 : 10000.0);
  if (f.has("rope_parameters")) {
    const json& rp = j["rope_parameters"];
    if (rp.is_object() && (rp.contains("full_attention") || rp.contains("sliding_attention"))) {
      if (rp.contains("full_attention"))
        c.rope_full = parse_rope(rp["full_attention"], file, "rope_parameters.full_attention", theta, c.max_position_embeddings);
      else
        c.rope_full.theta = theta;
      c.rope_sliding = rp.contains("sliding_attention")
                           ? parse_rope(rp["sliding_attention"], file, "rope_parameters.sliding_attention",
                                        arch->gemma ? 10000.0 : theta, c.max_position_embeddings)
                           : c.rope_full;
    } else {
      c.rope_full = parse_rope(rp, file, "rope_parameters", theta, c.max_position_embeddings);
      c.rope_sliding = c.rope_full;
    }
  } else {
    if (f.has("rope_scaling")) {
      c.rope_full = parse_rope(j["rope_scaling"], file, "rope_scaling", theta, c.max_position_embeddings);
    } else {
      c.rope_full.theta = theta;
    }
    if (arch->gemma) {
      c.rope_sliding = RopeConfig{};
      c.rope_sliding.theta = f.number("rope_local_base_freq", 10000.0);
    } else {
      c.rope_sliding = c.rope_full;
    }
  }

  std::string dtype = f.string("dtype", f.string("torch_dtype", "float32"));
  if (dtype == "float32") c.dtype = DType::kF32;
  else if (dtype == "bfloat16") c.dtype = DType::kBF16;
  else if (dtype == "float16") c.dtype = DType::kF16;
  else f.fail(f.has("dtype") ? "dtype" : "torch_dtype", "unsupported dtype '" + dtype + "'");

  if (f.has("bos_token_id")) c.bos_token_id = f.integer("bos_token_id");
  c.eos_token_ids = f.int_list("eos_token_id");
  return c;
}

ModelConfig load_model_config(const std::string& model_dir) {
  std::string path = (fs::path(model_dir) / "config.json").string();
  if (!fs::exists(path)) throw Error("model folder has no config.json", {.file = path});
  return parse_model_config(read_text_file(path), path);
}

GenerationDefaults parse_generation_config(const std::string& json_text, const std::string& file) {
  json j = parse_object(json_text, file);
  Fields f(j, file);
  GenerationDefaults g;
  if (f.has("do_sample")) g.do_sample = f.boolean("do_sample", false);
  if (f.has("temperature")) g.temperature = f.number("temperature", 1.0);
  if (f.has("top_k")) g.top_k = f.integer("top_k");
  if (f.has("top_p")) g.top_p = f.number("top_p", 1.0);
  if (f.has("min_p")) g.min_p = f.number("min_p", 0.0);
  if (f.has("repetition_penalty")) g.repetition_penalty = f.number("repetition_penalty", 1.0);
  if (f.has("max_new_tokens")) g.max_new_tokens = f.integer("max_new_tokens");
  g.eos_token_ids = f.int_list("eos_token_id");
  if (f.has("bos_token_id")) g.bos_token_id = f.integer("bos_token_id");
  return g;
}

GenerationDefaults load_generation_config(const std::string& model_dir) {
  std::string path = (fs::path(model_dir) / "generation_config.json").string();
  if (!fs::exists(path)) return {};
  return parse_generation_config(read_text_file(path), path);
}

}  // namespace quanta::format
