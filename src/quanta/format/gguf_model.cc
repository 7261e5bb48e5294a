#include "quanta/format/gguf_model.h"

#include <algorithm>
#include <cmath>
#include <fstream>

#include "quanta/core/error.h"

namespace quanta::format {

namespace {

struct ArchMap {
  const char* gguf;
  const char* hf;
};
constexpr ArchMap kArchs[] = {
    {"llama", "LlamaForCausalLM"},
    {"qwen2", "Qwen2ForCausalLM"},
    {"qwen3", "Qwen3ForCausalLM"},
    {"gemma3", "Gemma3ForCausalLM"},
    {"qwen2moe", "Qwen2MoeForCausalLM"},
    {"qwen3moe", "Qwen3MoeForCausalLM"},
    {"gpt-oss", "GptOssForCausalLM"},
};

// GGUF block tensor name -> Hugging Face name inside model.layers.N.
struct NameMap {
  const char* gguf;
  const char* hf;
};
constexpr NameMap kBlockNames[] = {
    {"attn_norm", "input_layernorm"},
    {"attn_q", "self_attn.q_proj"},
    {"attn_k", "self_attn.k_proj"},
    {"attn_v", "self_attn.v_proj"},
    {"attn_output", "self_attn.o_proj"},
    {"attn_q_norm", "self_attn.q_norm"},
    {"attn_k_norm", "self_attn.k_norm"},
    {"ffn_gate", "mlp.gate_proj"},
    {"ffn_up", "mlp.up_proj"},
    {"ffn_down", "mlp.down_proj"},
    {"post_ffw_norm", "post_feedforward_layernorm"},
    {"ffn_gate_inp", "mlp.gate"},
    {"ffn_gate_inp_shexp", "mlp.shared_expert_gate"},
    {"ffn_gate_shexp", "mlp.shared_expert.gate_proj"},
    {"ffn_up_shexp", "mlp.shared_expert.up_proj"},
    {"ffn_down_shexp", "mlp.shared_expert.down_proj"},
};

// 3-D expert tensors [n_experts, rows, cols] (ne = {cols, rows, n_experts}); each
// expert's slice is served as one 2-D tensor per projection. llama.cpp's fused
// ffn_gate_up_exps holds gate rows then up rows ([2 * d_ff, hidden] per expert).
struct ExpertMap {
  const char* gguf;
  const char* hf;  // projection name under mlp.experts.E
};
constexpr ExpertMap kExpertNames[] = {
    {"ffn_gate_exps", "gate_proj"},
    {"ffn_up_exps", "up_proj"},
    {"ffn_down_exps", "down_proj"},
};

std::string hf_name(const std::string& gguf, bool gemma) {
  auto split_suffix = [](const std::string& n, std::string* base, std::string* suffix) {
    size_t dot = n.rfind('.');
    if (dot == std::string::npos) return false;
    *base = n.substr(0, dot);
    *suffix = n.substr(dot);  // ".weight" / ".bias"
    return true;
  };
  std::string base, suffix;
  if (!split_suffix(gguf, &base, &suffix)) return "";
  if (base == "token_embd") return "model.embed_tokens" + suffix;
  if (base == "output_norm") return "model.norm" + suffix;
  if (base == "output") return "lm_head" + suffix;
  if (base.rfind("blk.", 0) != 0) return "";
  size_t dot = base.find('.', 4);
  if (dot == std::string::npos) return "";
  std::string layer = base.substr(4, dot - 4), part = base.substr(dot + 1);
  std::string prefix = "model.layers." + layer + ".";
  // Gemma has four norms per block; Llama/Qwen call the second one ffn_norm.
  if (part == "ffn_norm") return prefix + (gemma ? "pre_feedforward_layernorm" : "post_attention_layernorm") + suffix;
  if (part == "post_attention_norm") return prefix + "post_attention_layernorm" + suffix;
  if (part == "attn_sinks" && suffix == ".weight") return prefix + "self_attn.sinks";  // gpt-oss; HF has no suffix
  for (const auto& m : kBlockNames)
    if (part == m.gguf) return prefix + m.hf + suffix;
  return "";
}

// The expert keys llama.cpp reads (src/models/{qwen2moe,qwen3moe,llama}.cpp): Mixtral is
// arch "llama" with an expert count; its experts are feed_forward_length wide. llama.cpp
// renormalises the chosen weights for qwen3moe and llama, not for qwen2moe (norm_w).
void gguf_moe_config(const GgufFile& f, const std::string& arch, ModelConfig& c) {
  const GgufMetadata& md = f.metadata();
  const std::string p = arch + ".";
  c.layer_is_moe.assign(static_cast<size_t>(c.n_layers), false);
  const int64_t n_experts = md.has(p + "expert_count") ? static_cast<int64_t>(md.get_u64(p + "expert_count")) : 0;
  if (n_experts == 0) {
    if (arch == "qwen2moe" || arch == "qwen3moe" || arch == "gpt-oss")
      throw Error("a mixture-of-experts architecture needs an expert count", {.file = f.path(), .field = p + "expert_count"});
    return;
  }
  if (arch == "llama") c.architecture = "MixtralForCausalLM";
  MoeConfig& m = c.moe;
  m.n_experts = n_experts;
  m.n_experts_used = static_cast<int64_t>(md.get_u64(p + "expert_used_count"));
  if (m.n_experts_used <= 0 || m.n_experts_used > m.n_experts)
    throw Error("must be between 1 and expert_count (" + std::to_string(m.n_experts) + ")",
                {.file = f.path(), .field = p + "expert_used_count"});
  m.expert_ffn = arch == "llama" ? c.intermediate_size
                                 : static_cast<int64_t>(md.get_u64(p + "expert_feed_forward_length"));
  if (m.expert_ffn <= 0) throw Error("must be positive", {.file = f.path(), .field = p + "expert_feed_forward_length"});
  m.norm_topk = arch != "qwen2moe" && arch != "gpt-oss";
  if (arch == "gpt-oss") {
    // llama.cpp (src/models/openai-moe.cpp, llama-graph.cpp): softmax over the top-k logits,
    // biases on router and experts, SwiGLU with alpha 1.702 and limit 7 hard-coded (no key).
    m.softmax_topk = m.router_bias = m.expert_bias = true;
    m.swiglu_alpha = 1.702;
    m.swiglu_limit = 7.0;
  }
  const float scale = md.get_f32_or(p + "expert_weights_scale", 0.0f);
  m.routed_scaling = scale != 0.0f ? scale : 1.0;
  if (arch == "qwen2moe") {
    m.shared_expert_ffn = static_cast<int64_t>(md.get_u64(p + "expert_shared_feed_forward_length"));
    if (m.shared_expert_ffn <= 0)
      throw Error("must be positive", {.file = f.path(), .field = p + "expert_shared_feed_forward_length"});
  }
  // A block is sparse when it has a router.
  for (int64_t i = 0; i < c.n_layers; ++i)
    c.layer_is_moe[static_cast<size_t>(i)] = f.has("blk." + std::to_string(i) + ".ffn_gate_inp.weight");
}

}  // namespace

bool is_gguf_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && magic[0] == 'G' && magic[1] == 'G' && magic[2] == 'U' && magic[3] == 'F';
}

ModelConfig gguf_model_config(const GgufFile& f) {
  const GgufMetadata& md = f.metadata();
  const std::string arch = md.get_string("general.architecture");
  ModelConfig c;
  for (const auto& a : kArchs)
    if (arch == a.gguf) c.architecture = a.hf;
  if (c.architecture.empty())
    throw Error("unsupported architecture '" + arch + "' (supported: llama, qwen2, qwen3, gemma3, qwen2moe, qwen3moe, gpt-oss)",
                {.file = f.path(), .field = "general.architecture"});
  const std::string p = arch + ".";
  auto u = [&](const char* key) { return static_cast<int64_t>(md.get_u64(p + key)); };
  auto u_or = [&](const char* key, int64_t fallback) {
    return md.has(p + key) ? static_cast<int64_t>(md.get_u64(p + key)) : fallback;
  };
  // Each size in [min, max] (hf_config.h) before anything divides by or allocates from it.
  auto bounded = [&](const char* key, int64_t v, int64_t min, int64_t max) {
    if (v < min || v > max)
      throw Error("must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " +
                      std::to_string(static_cast<uint64_t>(v)),  // as stored: v is a cast of the u64
                  {.file = f.path(), .field = p + key});
    return v;
  };
  const bool gemma = arch == "gemma3";
  c.hidden_size = bounded("embedding_length", u("embedding_length"), 1, kMaxWidth);
  // MoE files may carry no dense width (every block sparse).
  const bool gptoss = arch == "gpt-oss";
  const bool moe = gptoss || arch.find("moe") != std::string::npos;
  c.intermediate_size = bounded("feed_forward_length", moe ? u_or("feed_forward_length", 0) : u("feed_forward_length"),
                                moe ? 0 : 1, kMaxWidth);
  c.n_layers = bounded("block_count", u("block_count"), 1, kMaxLayers);
  c.n_heads = bounded("attention.head_count", u("attention.head_count"), 1, kMaxHeads);
  c.n_kv_heads = bounded("attention.head_count_kv", u_or("attention.head_count_kv", c.n_heads), 1, kMaxHeads);
  if (c.n_heads % c.n_kv_heads != 0)
    throw Error("attention.head_count (" + std::to_string(c.n_heads) + ") is not a multiple of attention.head_count_kv (" +
                    std::to_string(c.n_kv_heads) + ")",
                {.file = f.path(), .field = p + "attention.head_count_kv"});
  c.d_head = bounded("attention.key_length", u_or("attention.key_length", c.hidden_size / c.n_heads), 2, kMaxHeadDim);
  if (c.d_head % 2)
    throw Error("must be even, got " + std::to_string(c.d_head), {.file = f.path(), .field = p + "attention.key_length"});
  c.max_position_embeddings = u_or("context_length", 2048);
  c.rms_norm_eps = md.get_f32_or(p + "attention.layer_norm_rms_epsilon", 1e-6f);

  const GgufTensorInfo& embd = f.tensor_info("token_embd.weight");
  c.vocab_size = embd.shape.at(0);
  c.tie_word_embeddings = !f.has("output.weight");
  c.attention_bias = f.has("blk.0.attn_q.bias");
  c.o_proj_bias = f.has("blk.0.attn_output.bias");
  c.qk_norm = f.has("blk.0.attn_q_norm.weight");
  c.attention_sinks = gptoss;
  c.gemma_norms = gemma;
  c.activation = gemma ? Activation::kGeluTanh : Activation::kSilu;
  c.rope_interleaved = arch == "llama";
  gguf_moe_config(f, arch, c);

  // RoPE of full-attention layers.
  c.rope_full.theta = md.get_f32_or(p + "rope.freq_base", gemma ? 1e6f : 10000.0f);
  std::string scaling = md.get_string_or(p + "rope.scaling.type", "none");
  if (scaling == "linear" || scaling == "yarn") {
    c.rope_full.type = scaling;
    c.rope_full.factor = md.get_f32(p + "rope.scaling.factor");
    c.rope_full.original_max_position_embeddings = u_or("rope.scaling.original_context_length", c.max_position_embeddings);
    c.rope_full.beta_fast = md.get_f32_or(p + "rope.scaling.yarn_beta_fast", 32.0f);
    c.rope_full.beta_slow = md.get_f32_or(p + "rope.scaling.yarn_beta_slow", 1.0f);
    // gpt-oss's YaRN does not round its correction range (transformers: truncate false in
    // its config); llama.cpp's ggml rounds it, and the file cannot say. quanta follows the model.
    if (gptoss) c.rope_full.truncate = false;
  } else if (scaling != "none") {
    throw Error("unsupported rope scaling '" + scaling + "'", {.file = f.path(), .field = p + "rope.scaling.type"});
  }
  if (f.has("rope_freqs.weight")) {
    Tensor freqs = f.dequantize("rope_freqs.weight");
    c.rope_full.freq_divisors.assign(freqs.data<float>(), freqs.data<float>() + freqs.numel());
  }
  c.rope_sliding = c.rope_full;

  if (gemma) {
    c.embedding_scale = std::sqrt(static_cast<float>(c.hidden_size));
    c.attention_scale = 1.0f / std::sqrt(static_cast<float>(c.d_head));
    c.final_logit_softcap = md.get_f32_or(p + "final_logit_softcapping", 0.0f);
    // llama.cpp: SWA only when the window is given; every 6th layer is global;
    // local layers use base 10000 unscaled unless the file says otherwise.
    c.sliding_window = u_or("attention.sliding_window", 0);
    c.layer_is_sliding.assign(static_cast<size_t>(c.n_layers), false);
    if (c.sliding_window > 0)
      for (int64_t i = 0; i < c.n_layers; ++i) c.layer_is_sliding[static_cast<size_t>(i)] = i % 6 < 5;
    c.rope_sliding = RopeConfig{};
    c.rope_sliding.theta = md.get_f32_or(p + "rope.freq_base_swa", 10000.0f);
  } else {
    c.attention_scale = 1.0f / std::sqrt(static_cast<float>(c.d_head));
    c.sliding_window = u_or("attention.sliding_window", 0);
    c.layer_is_sliding.assign(static_cast<size_t>(c.n_layers), c.sliding_window > 0);
    // gpt-oss alternates: even layers sliding, odd ones full (llama.cpp's swa pattern 2).
    if (gptoss)
      for (int64_t i = 0; i < c.n_layers; ++i) c.layer_is_sliding[static_cast<size_t>(i)] = c.sliding_window > 0 && i % 2 == 0;
  }
  if (md.has("tokenizer.ggml.bos_token_id")) c.bos_token_id = md.get_u32("tokenizer.ggml.bos_token_id");
  if (md.has("tokenizer.ggml.eos_token_id")) c.eos_token_ids.push_back(md.get_u32("tokenizer.ggml.eos_token_id"));
  if (md.has("tokenizer.ggml.eot_token_id")) c.eos_token_ids.push_back(md.get_u32("tokenizer.ggml.eot_token_id"));
  c.dtype = DType::kF32;
  return c;
}

GenerationDefaults gguf_generation_defaults(const GgufFile& f) {
  GenerationDefaults g;
  for (int64_t e : gguf_model_config(f).eos_token_ids) g.eos_token_ids.push_back(e);
  return g;
}

GgufTensorSource::GgufTensorSource(std::shared_ptr<const GgufFile> file, const ModelConfig& config)
    : file_(std::move(file)), gemma_norms_(config.gemma_norms) {
  for (const GgufTensorInfo& t : file_->tensors()) {
    std::string hf = hf_name(t.name, gemma_norms_);
    if (!hf.empty()) hf_to_gguf_[hf] = t.name;
    else add_expert_slices(t);
  }
}

void GgufTensorSource::add_expert_slices(const GgufTensorInfo& t) {
  // blk.N.<part>.weight with <part> an expert tensor, or Mixtral's older per-expert
  // blk.N.ffn_{gate,up,down}.E.weight.
  // An empty tensor has no experts to serve (the model then reports them missing).
  if (t.name.rfind("blk.", 0) != 0 || t.numel == 0) return;
  const size_t dot = t.name.find('.', 4);
  if (dot == std::string::npos) return;
  const std::string layer = t.name.substr(4, dot - 4), rest = t.name.substr(dot + 1);
  const std::string experts = "model.layers." + layer + ".mlp.experts.";
  auto slice = [&](int64_t e, int64_t row0, int64_t rows, const std::string& proj) {
    GgufTensorInfo s = t;
    s.name = t.name + "[expert " + std::to_string(e) + (proj.empty() ? "" : ", " + proj) + "]";
    s.ne = {t.ne[0], rows};
    s.shape = {rows, t.ne[0]};
    s.numel = rows * t.ne[0];
    const uint64_t row_bytes = t.nbytes / static_cast<uint64_t>(t.numel / t.ne[0]);
    const uint64_t start = (static_cast<uint64_t>(e * t.ne[1] + row0)) * row_bytes;
    s.offset += start;
    s.file_offset += start;
    s.nbytes = static_cast<uint64_t>(rows) * row_bytes;
    return s;
  };
  auto add = [&](const std::string& hf, GgufTensorInfo info) {
    slices_[hf] = std::move(info);
    hf_to_gguf_[hf] = slices_[hf].name;
  };
  for (const auto& m : kExpertNames)
    if (rest == std::string(m.gguf) + ".weight" && t.ne.size() == 3)
      for (int64_t e = 0; e < t.ne[2]; ++e)
        add(experts + std::to_string(e) + "." + m.hf + ".weight", slice(e, 0, t.ne[1], ""));
  // gpt-oss's expert biases ffn_{gate,up,down}_exps.bias [n_experts, rows] (ne = {rows, E}).
  for (const auto& m : kExpertNames)
    if (rest == std::string(m.gguf) + ".bias" && t.ne.size() == 2)
      for (int64_t e = 0; e < t.ne[1]; ++e) {
        GgufTensorInfo s = t;
        s.name = t.name + "[expert " + std::to_string(e) + "]";
        s.ne = {t.ne[0]};
        s.shape = {t.ne[0]};
        s.numel = t.ne[0];
        const uint64_t row_bytes = t.nbytes / static_cast<uint64_t>(t.ne[1]);
        s.offset += static_cast<uint64_t>(e) * row_bytes;
        s.file_offset += static_cast<uint64_t>(e) * row_bytes;
        s.nbytes = row_bytes;
        add(experts + std::to_string(e) + "." + m.hf + ".bias", std::move(s));
      }
  if (rest == "ffn_gate_up_exps.weight" && t.ne.size() == 3 && t.ne[1] % 2 == 0)
    for (int64_t e = 0; e < t.ne[2]; ++e) {
      add(experts + std::to_string(e) + ".gate_proj.weight", slice(e, 0, t.ne[1] / 2, "gate"));
      add(experts + std::to_string(e) + ".up_proj.weight", slice(e, t.ne[1] / 2, t.ne[1] / 2, "up"));
    }
  for (const char* proj : {"gate", "up", "down"}) {
    const std::string head = std::string("ffn_") + proj + ".";
    if (rest.rfind(head, 0) != 0 || t.ne.size() != 2) continue;
    const std::string idx = rest.substr(head.size(), rest.size() - head.size() - 7);
    if (idx.empty() || idx.find_first_not_of("0123456789") != std::string::npos || rest.substr(rest.size() - 7) != ".weight")
      continue;
    hf_to_gguf_[experts + idx + "." + proj + "_proj.weight"] = t.name;
  }
}

bool GgufTensorSource::has(const std::string& name) const { return hf_to_gguf_.count(name) != 0; }

std::vector<std::string> GgufTensorSource::names() const {
  std::vector<std::string> out;
  for (const auto& [hf, gguf] : hf_to_gguf_) out.push_back(hf);
  std::sort(out.begin(), out.end());
  return out;
}

const GgufTensorInfo* GgufTensorSource::gguf_tensor(const std::string& name) const {
  auto slice = slices_.find(name);
  if (slice != slices_.end()) return &slice->second;
  auto it = hf_to_gguf_.find(name);
  return it == hf_to_gguf_.end() ? nullptr : &file_->tensor_info(it->second);
}

size_t GgufTensorSource::stored_bytes(const std::string& name) const {
  const GgufTensorInfo* info = gguf_tensor(name);
  return info ? info->nbytes : get(name).nbytes();
}

Tensor GgufTensorSource::get(const std::string& name) const {
  const GgufTensorInfo* found = gguf_tensor(name);
  if (!found)
    throw Error("not found in the GGUF file (looked for the llama.cpp name of this Hugging Face tensor)",
                {.file = file_->path(), .tensor = name});
  const GgufTensorInfo& info = *found;
  const bool plain = ggml_type_dtype(info.type).has_value();
  // Gemma's norms are stored as (1 + w); the model applies (1 + w) itself.
  const bool shifted_norm = gemma_norms_ && name.size() > 11 && name.compare(name.size() - 11, 11, "norm.weight") == 0;
  if (plain && !shifted_norm) return file_->view(info);
  Tensor t = plain ? file_->view(info).to_f32() : file_->dequantize(info);
  if (shifted_norm) {
    float* v = t.data_mut<float>();
    for (int64_t i = 0; i < t.numel(); ++i) v[i] -= 1.0f;
  }
  return t;
}

}  // namespace quanta::format
