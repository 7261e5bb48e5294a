// quanta inspect: what a checkpoint is and how each of its tensors is stored.
//
// Reads headers only: the GGUF header and metadata, or the safetensors headers,
// config.json and tokenizer files of a folder. Tensor data is mapped, never read,
// so inspecting a model costs what its header costs, whatever its size.
//
// One row per checkpoint weight tensor, named as the checkpoint names it (GGUF
// names for a GGUF file, Hugging Face names for a folder), with its scheme,
// weight bits, activation bits, group size, shape, bytes and bits per weight.
// For a folder the method and the per-tensor schemes come from one call,
// folder_schemes() below: the place the scheme resolver plugs in.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "quanta/cli/commands.h"
#include "quanta/core/dtype.h"
#include "quanta/core/error.h"
#include "quanta/core/json.h"
#include "quanta/format/ggml_types.h"
#include "quanta/format/gguf.h"
#include "quanta/format/gguf_model.h"
#include "quanta/format/hf_config.h"
#include "quanta/format/safetensors.h"
#include "quanta/kernels/quant_dot.h"
#include "quanta/quant/resolver.h"
#include "quanta/report/quant_map.h"
#include "quanta/report/svg.h"
#include "quanta/tokenizer/builtin_templates.h"
#include "quanta/tokenizer/tokenizer.h"

namespace quanta::cli {

namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

// How one checkpoint tensor is stored.
struct TensorRow {
  std::string tensor;     // name in the checkpoint
  std::string scheme;     // GGUF: ggml type name; folder: FLOAT or the resolver's scheme string
  int weight_bits = 0;    // nominal bits of one stored weight element
  int act_bits = 0;       // bits of the activations the scheme pairs the weight with (0: none)
  int64_t group_size = 0; // elements sharing one scale (0: float, no groups)
  std::string zero_point; // HF integer formats: "sym" / "asym"
  bool act_order = false; // HF integer formats: groups follow g_idx
  std::string layout;     // HF integer formats: the packing read, e.g. "gptq v1"
  Shape shape;            // row-major, outermost first (packed weights: the logical [n_out, n_in])
  uint64_t bytes = 0;     // bytes of the tensor (and its side tensors) in the checkpoint
  double bits_per_weight() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n > 0 ? 8.0 * static_cast<double>(bytes) / static_cast<double>(n) : 0.0;
  }
};

// One layer's experts: the schemes of w13 (gate+up) and w2 (down) over all its experts.
struct ExpertGroup {
  std::string prefix;  // "model.layers.3.mlp.experts" or "blk.3"
  std::string w13, w2;
};

struct Report {
  std::vector<ExpertGroup> experts;  // MoE layers, in layer order
  std::string path;
  std::string format;  // "gguf" | "safetensors"
  std::string method;  // "gguf" | "unquantized" | the resolver's method name
  ordered_json details;  // container facts (GGUF version, files, ...)
  ordered_json hparams;
  ordered_json tokenizer;  // null when the checkpoint has none
  std::vector<TensorRow> rows;
};

std::vector<ExpertGroup> expert_groups(const std::vector<TensorRow>& rows);

// ---- Folders: the scheme of each tensor --------------------------------------
//
// The one call inspect makes to learn how a Hugging Face folder is quantized:
// the method, and one row per checkpoint weight tensor, from the scheme resolver
// (quant/resolver.h), which alone decides which tensors are rows (side tensors such
// as weight_scale belong to their weight and add to its bytes).
struct FolderSchemes {
  std::string method;
  std::vector<TensorRow> rows;
};

FolderSchemes folder_schemes(const std::string& dir, const format::SafetensorsCheckpoint& ckpt) {
  const quant::CheckpointSchemes cs = quant::resolve_checkpoint_schemes(dir, ckpt);
  FolderSchemes out{cs.method, {}};
  auto info = [&](const std::string& name) -> const format::SafetensorsTensorInfo* {
    for (const auto& file : ckpt.files())
      if (const auto* t = file->find(name)) return t;
    return nullptr;
  };
  for (const quant::TensorScheme& ts : cs.tensors) {
    const format::SafetensorsTensorInfo* t = info(ts.tensor);
    if (!t) continue;
    TensorRow r;
    r.tensor = ts.tensor;
    r.scheme = ts.scheme;
    r.weight_bits = ts.weight_bits;
    r.act_bits = ts.act_bits;
    r.group_size = ts.group_size;
    r.zero_point = ts.zero_point;
    r.act_order = ts.act_order;
    r.layout = ts.layout;
    r.shape = ts.logical_shape.empty() ? t->shape : Shape(ts.logical_shape.begin(), ts.logical_shape.end());
    // MXFP4 stores two elements per byte: show the logical [n_out, n_in].
    if ((ts.scheme == "W4A4_MXFP4" || ts.scheme == "W4A8_MXFP") && r.shape.size() == 2) r.shape[1] *= 2;
    r.bytes = t->nbytes;
    for (const auto& side : ts.side_tensors)
      if (const auto* st = info(side)) r.bytes += st->nbytes;
    out.rows.push_back(std::move(r));
  }
  return out;
}

ordered_json hparams_json(const format::ModelConfig& c);
ordered_json tokenizer_json(const tokenizer::Tokenizer& tok, const std::string& kind, const std::string& path,
                            const std::string& architecture);

// ---- GGUF: the scheme of each tensor -----------------------------------------

// Nominal bits of a ggml type's elements, from its name: the number after the
// letters ("Q4_K" 4, "IQ2_XXS" 2, "MXFP4" 4, "BF16" 16, "F32" 32, "I8" 8).
int ggml_weight_bits(std::string_view name) {
  size_t i = 0;
  while (i < name.size() && (name[i] < '0' || name[i] > '9')) ++i;
  int bits = 0;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9') bits = bits * 10 + (name[i++] - '0');
  return bits;
}

// Bits of the activations quanta multiplies a GGUF weight with when decoding:
// quantized types with a dot kernel on this CPU meet 16-bit activation blocks
// (kernels/quant_dot.h), the others are dequantized and meet f32 (as every
// type does in prompts of 8 tokens or more); F16/BF16 are named W16A16 as in
// Hugging Face folders; integer tensors are no matmul operands (0).
int ggml_act_bits(format::GgmlType t) {
  using format::GgmlType;
  switch (t) {
    case GgmlType::kF32: return 32;
    case GgmlType::kF64: return 64;
    case GgmlType::kF16:
    case GgmlType::kBF16: return 16;
    case GgmlType::kI8:
    case GgmlType::kI16:
    case GgmlType::kI32:
    case GgmlType::kI64: return 0;
    default: return kernels::quant_dot(static_cast<uint32_t>(t)).fn ? 16 : 32;
  }
}

Report inspect_gguf(const std::string& path) {
  const format::GgufFile file(path);
  Report rep;
  rep.path = path;
  rep.format = "gguf";
  rep.method = "gguf";
  const format::GgufMetadata& md = file.metadata();
  rep.details = {{"gguf_version", file.version()},
                 {"alignment", file.alignment()},
                 {"tensor_count", file.tensors().size()},
                 {"metadata_count", md.size()},
                 {"file_bytes", file.file_size()}};
  if (md.has("general.name")) rep.details["name"] = md.get_string("general.name");
  if (md.has("general.architecture")) rep.details["gguf_architecture"] = md.get_string("general.architecture");
  if (md.has("general.file_type")) rep.details["file_type"] = md.get_u32("general.file_type");
  for (const format::GgufTensorInfo& t : file.tensors()) {
    const format::GgmlTypeInfo& info = format::ggml_type_info(t.type);
    TensorRow r;
    r.tensor = t.name;
    r.scheme = std::string(info.name);
    r.weight_bits = ggml_weight_bits(info.name);
    r.act_bits = ggml_act_bits(t.type);
    r.group_size = info.block_size > 1 ? info.block_size : 0;
    r.shape = t.shape;
    r.bytes = t.nbytes;
    rep.rows.push_back(std::move(r));
  }
  try {
    rep.hparams = hparams_json(format::gguf_model_config(file));
    rep.hparams.erase("dtype");  // config.json's torch_dtype; a GGUF has none
  } catch (const Error& e) {
    // An architecture quanta cannot run yet (e.g. the MoE qwen2moe/qwen3moe):
    // still list its tensors, with its own scalar hyper-parameters as stored.
    rep.hparams = {{"runnable", false}, {"reason", e.what()}};
    const std::string prefix = md.get_string_or("general.architecture", "") + ".";
    for (const auto& [key, value] : md.entries()) {
      if (key.rfind(prefix, 0) != 0) continue;
      if (value.is_integer()) rep.hparams[key] = value.as_i64();
      else if (value.type() == format::GgufValueType::kF32 || value.type() == format::GgufValueType::kF64)
        rep.hparams[key] = value.as_f64();
      else if (value.type() == format::GgufValueType::kBool) rep.hparams[key] = value.as_bool();
      else if (value.type() == format::GgufValueType::kString) rep.hparams[key] = value.as_string();
    }
  }
  rep.experts = expert_groups(rep.rows);
  if (md.has("tokenizer.ggml.model")) {
    const std::string kind = md.get_string("tokenizer.ggml.model");
    const std::string pre = md.get_string_or("tokenizer.ggml.pre", "");
    std::string desc = kind == "llama" ? "SentencePiece BPE" : kind == "gpt2" ? "byte-level BPE" : kind;
    desc += " (tokenizer.ggml.model " + kind + (pre.empty() ? "" : ", pre " + pre) + ")";
    rep.tokenizer = tokenizer_json(tokenizer::Tokenizer::load(path), desc, path, md.get_string_or("general.architecture", ""));
  }
  return rep;
}

// ---- Hyper-parameters and tokenizer ------------------------------------------

const char* activation_name(format::Activation a) {
  return a == format::Activation::kGeluTanh ? "gelu_pytorch_tanh" : "silu";
}

ordered_json rope_json(const format::RopeConfig& r) {
  ordered_json j = {{"type", r.type}, {"theta", r.theta}};
  if (r.type != "default") {
    j["factor"] = r.factor;
    if (r.original_max_position_embeddings) j["original_max_position_embeddings"] = r.original_max_position_embeddings;
  }
  if (r.partial_rotary_factor != 1.0) j["partial_rotary_factor"] = r.partial_rotary_factor;
  if (!r.freq_divisors.empty()) j["freq_divisors"] = r.freq_divisors.size();
  return j;
}

// The configuration quanta runs the model with (format::ModelConfig).
ordered_json hparams_json(const format::ModelConfig& c) {
  int64_t n_sliding = 0;
  for (bool s : c.layer_is_sliding) n_sliding += s;
  ordered_json j = {
      {"architecture", c.architecture},
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.n_layers},
      {"num_attention_heads", c.n_heads},
      {"num_key_value_heads", c.n_kv_heads},
      {"head_dim", c.d_head},
      {"max_position_embeddings", c.max_position_embeddings},
      {"rms_norm_eps", c.rms_norm_eps},
      {"hidden_act", activation_name(c.activation)},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"attention_bias", c.attention_bias},
      {"qk_norm", c.qk_norm},
      {"rope", rope_json(c.rope_full)},
  };
  if (c.sliding_window > 0) {
    j["sliding_window"] = c.sliding_window;
    j["sliding_layers"] = n_sliding;
    j["rope_sliding"] = rope_json(c.rope_sliding);
  }
  if (c.attn_logit_softcap > 0) j["attn_logit_softcapping"] = c.attn_logit_softcap;
  if (c.final_logit_softcap > 0) j["final_logit_softcapping"] = c.final_logit_softcap;
  if (c.rope_interleaved) j["rope_interleaved"] = true;
  if (c.attention_sinks) j["attention_sinks"] = true;
  if (c.moe.n_experts > 0) {
    int64_t sparse = 0;
    for (bool m : c.layer_is_moe) sparse += m;
    ordered_json m = {{"experts", c.moe.n_experts},
                      {"experts_per_token", c.moe.n_experts_used},
                      {"expert_ffn", c.moe.expert_ffn},
                      {"norm_topk_prob", c.moe.norm_topk},
                      {"sparse_layers", sparse}};
    if (c.moe.routed_scaling != 1.0) m["routed_scaling_factor"] = c.moe.routed_scaling;
    if (c.moe.shared_expert_ffn > 0) m["shared_expert_ffn"] = c.moe.shared_expert_ffn;
    if (c.moe.softmax_topk) m["router"] = "top-k logits then softmax";
    if (c.moe.swiglu_limit > 0) {
      m["swiglu_alpha"] = c.moe.swiglu_alpha;
      m["swiglu_limit"] = c.moe.swiglu_limit;
    }
    j["moe"] = m;
  }
  j["dtype"] = std::string(dtype_name(c.dtype));
  return j;
}

ordered_json tokenizer_json(const tokenizer::Tokenizer& tok, const std::string& kind, const std::string& path,
                            const std::string& architecture) {
  const tokenizer::SpecialIds& s = tok.special_ids();
  auto special = [&](int32_t id) -> ordered_json {
    if (id < 0) return nullptr;
    return {{"id", id}, {"piece", tok.token_to_piece(id)}};
  };
  // Whether encoding adds BOS, as the tokenizer's post-processor decides.
  const std::vector<int32_t> ids = tok.encode("a", true, false);
  const bool adds_bos = s.bos >= 0 && !ids.empty() && ids.front() == s.bos;
  return {{"type", kind},
          {"vocab_size", tok.vocab_size()},
          {"bos", special(s.bos)},
          {"eos", special(s.eos)},
          {"eot", special(s.eot)},
          {"pad", special(s.pad)},
          {"adds_bos", adds_bos},
          // The one `serve` would use (without --chat-template).
          {"chat_template", tokenizer::choose_chat_template("", path, tok, architecture).origin}};
}

// Expert tensors "<prefix>.experts.<E>.<rest>" collapse into one row per (prefix, rest), named
// "<prefix>.experts.*.<rest>" with shape [experts, ...] and the sum of their bytes; experts of
// different schemes show as "A x120 + B x8". Rows keep their order of first appearance.
std::vector<TensorRow> group_experts(const std::vector<TensorRow>& rows) {
  std::vector<TensorRow> out;
  std::map<std::string, size_t> group_of;  // grouped name -> index in out
  std::map<std::string, std::vector<std::pair<std::string, int64_t>>> schemes;  // name -> (scheme, count)
  std::map<std::string, bool> same_shape;
  for (const TensorRow& r : rows) {
    const size_t at = r.tensor.find(".experts.");
    const size_t idx = at == std::string::npos ? at : at + 9;
    const size_t dot = idx == std::string::npos ? idx : r.tensor.find('.', idx);
    if (dot == std::string::npos || r.tensor.find_first_not_of("0123456789", idx) != dot) {
      out.push_back(r);
      continue;
    }
    const std::string name = r.tensor.substr(0, idx) + "*" + r.tensor.substr(dot);
    auto it = group_of.find(name);
    if (it == group_of.end()) {
      group_of[name] = out.size();
      TensorRow g = r;
      g.tensor = name;
      g.shape.insert(g.shape.begin(), 1);
      out.push_back(std::move(g));
      schemes[name] = {{r.scheme, 1}};
      same_shape[name] = true;
      continue;
    }
    TensorRow& g = out[it->second];
    g.shape[0] += 1;
    g.bytes += r.bytes;
    same_shape[name] = same_shape[name] && Shape(g.shape.begin() + 1, g.shape.end()) == r.shape;
    auto& list = schemes[name];
    auto s = std::find_if(list.begin(), list.end(), [&](const auto& e) { return e.first == r.scheme; });
    if (s == list.end()) list.push_back({r.scheme, 1});
    else ++s->second;
  }
  for (auto& [name, i] : group_of) {
    const auto& list = schemes[name];
    if (list.size() > 1) {
      std::string mixed;
      for (const auto& [scheme, n] : list) mixed += (mixed.empty() ? "" : " + ") + scheme + " x" + std::to_string(n);
      out[i].scheme = mixed;
    }
    if (!same_shape[name]) throw Error("the experts of " + name + " have different shapes", {.tensor = name});
  }
  return out;
}

// The w13 and w2 scheme of each MoE layer, from the grouped rows (folders: experts.*.gate_proj /
// w1 and down_proj / w2; GGUF: ffn_gate_exps (or ffn_gate_up_exps) and ffn_down_exps).
std::vector<ExpertGroup> expert_groups(const std::vector<TensorRow>& rows) {
  std::vector<ExpertGroup> out;
  auto group = [&](const std::string& prefix) -> ExpertGroup& {
    for (ExpertGroup& g : out)
      if (g.prefix == prefix) return g;
    out.push_back({prefix, "", ""});
    return out.back();
  };
  auto ends = [](const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
  };
  for (const TensorRow& r : rows) {
    const std::string& t = r.tensor;
    for (const char* w13 : {".*.gate_proj.weight", ".*.w1.weight", ".*.gate_proj.qweight", ".*.gate_proj.weight_packed"})
      if (ends(t, w13)) group(t.substr(0, t.size() - std::string(w13).size())).w13 = r.scheme;
    for (const char* w2 : {".*.down_proj.weight", ".*.w2.weight", ".*.down_proj.qweight", ".*.down_proj.weight_packed"})
      if (ends(t, w2)) group(t.substr(0, t.size() - std::string(w2).size())).w2 = r.scheme;
    for (const char* w13 : {".ffn_gate_exps.weight", ".ffn_gate_up_exps.weight"})
      if (ends(t, w13)) group(t.substr(0, t.size() - std::string(w13).size())).w13 = r.scheme;
    if (ends(t, ".ffn_down_exps.weight")) group(t.substr(0, t.size() - 21)).w2 = r.scheme;
  }
  return out;
}

Report inspect_folder(const std::string& dir) {
  format::ModelConfig config = format::load_model_config(dir);
  format::SafetensorsCheckpoint ckpt(dir);
  FolderSchemes schemes = folder_schemes(dir, ckpt);
  Report rep;
  rep.path = dir;
  rep.format = "safetensors";
  rep.method = schemes.method;
  rep.rows = group_experts(schemes.rows);
  rep.experts = expert_groups(rep.rows);
  ordered_json files = ordered_json::array();
  for (const auto& f : ckpt.files()) files.push_back(fs::path(f->path()).filename().string());
  rep.details = {{"files", files}};
  if (!ckpt.index_path().empty()) rep.details["index"] = fs::path(ckpt.index_path()).filename().string();
  rep.hparams = hparams_json(config);
  const fs::path tj = fs::path(dir) / "tokenizer.json";
  if (fs::exists(tj)) {
    tokenizer::Tokenizer tok = tokenizer::Tokenizer::load(dir);
    const nlohmann::json j = parse_json(format::read_text_file(tj.string()), {.file = tj.string()});
    std::string kind = "unknown";
    if (j.is_object() && j.contains("model") && j["model"].is_object() && j["model"].contains("type") &&
        j["model"]["type"].is_string())
      kind = j["model"]["type"].get<std::string>() + " (tokenizer.json)";
    rep.tokenizer = tokenizer_json(tok, kind, dir, config.architecture);
  }
  return rep;
}

Report inspect_path(const std::string& path) {
  if (!fs::exists(path)) throw Error("model path does not exist", {.file = path});
  if (fs::is_directory(path)) return inspect_folder(path);
  if (!format::is_gguf_file(path))
    throw Error("expected a Hugging Face model folder (config.json + *.safetensors) or a GGUF file", {.file = path});
  return inspect_gguf(path);
}

// ---- Output ------------------------------------------------------------------

std::string shape_string(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

std::string value_string(const ordered_json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object()) {
    std::string out;
    for (auto it = v.begin(); it != v.end(); ++it)
      out += (out.empty() ? "" : ", ") + it.key() + " " + value_string(it.value());
    return out;
  }
  return v.dump();
}

ordered_json experts_json(const Report& rep) {
  ordered_json out = ordered_json::array();
  for (const ExpertGroup& g : rep.experts)
    out.push_back({{"prefix", g.prefix}, {"w13", g.w13}, {"w2", g.w2}, {"differ", g.w13 != g.w2}});
  return out;
}

ordered_json report_json(const Report& rep) {
  uint64_t total_bytes = 0;
  int64_t total_params = 0;
  ordered_json layers = ordered_json::array();
  for (const TensorRow& r : rep.rows) {
    int64_t n = 1;
    for (int64_t d : r.shape) n *= d;
    total_bytes += r.bytes;
    total_params += n;
    ordered_json row = {{"tensor", r.tensor},
                        {"scheme", r.scheme},
                        {"weight_bits", r.weight_bits},
                        {"act_bits", r.act_bits},
                        {"group_size", r.group_size},
                        {"shape", r.shape},
                        {"bytes", r.bytes},
                        {"bits_per_weight", r.bits_per_weight()}};
    if (!r.layout.empty()) {
      row["zero_point"] = r.zero_point;
      row["act_order"] = r.act_order;
      row["layout"] = r.layout;
    }
    layers.push_back(std::move(row));
  }
  return {{"path", rep.path},
          {"format", rep.format},
          {"method", rep.method},
          {"details", rep.details},
          {"hyperparameters", rep.hparams},
          {"tokenizer", rep.tokenizer},
          {"total_params", total_params},
          {"total_bytes", total_bytes},
          {"layers", layers},
          {"experts", experts_json(rep)}};
}

void print_text(const Report& rep) {
  std::printf("model:   %s\n", rep.path.c_str());
  std::printf("format:  %s", rep.format.c_str());
  if (!rep.details.empty()) std::printf(" (%s)", value_string(rep.details).c_str());
  std::printf("\nmethod:  %s\n", rep.method.c_str());
  std::printf("\nhyper-parameters:\n");
  for (auto it = rep.hparams.begin(); it != rep.hparams.end(); ++it)
    std::printf("  %-26s %s\n", it.key().c_str(), value_string(it.value()).c_str());
  std::printf("\ntokenizer:");
  if (rep.tokenizer.is_null()) {
    std::printf(" none\n");
  } else {
    std::printf("\n");
    for (auto it = rep.tokenizer.begin(); it != rep.tokenizer.end(); ++it) {
      const ordered_json& v = it.value();
      std::string s = v.is_null() ? "-" : v.is_object() ? std::to_string(v["id"].get<int>()) + " " + v["piece"].dump()
                                                        : value_string(v);
      std::printf("  %-26s %s\n", it.key().c_str(), s.c_str());
    }
  }

  size_t w = 6;
  for (const TensorRow& r : rep.rows) w = std::max(w, r.tensor.size());
  bool hf = false;
  for (const TensorRow& r : rep.rows) hf |= !r.layout.empty();
  std::printf("\n%-*s  %-8s %6s %6s %6s  %-20s %12s %7s%s\n", static_cast<int>(w), "tensor", "scheme", "w_bits",
              "a_bits", "group", "shape", "bytes", "bpw", hf ? "  zero  act-order  layout" : "");
  // Per-scheme totals, in order of first appearance.
  std::vector<std::string> order;
  std::map<std::string, std::pair<int64_t, uint64_t>> per_scheme;  // count, bytes
  uint64_t total_bytes = 0;
  int64_t total_params = 0;
  for (const TensorRow& r : rep.rows) {
    std::printf("%-*s  %-8s %6d %6d %6lld  %-20s %12llu %7.3f", static_cast<int>(w), r.tensor.c_str(),
                r.scheme.c_str(), r.weight_bits, r.act_bits, static_cast<long long>(r.group_size),
                shape_string(r.shape).c_str(), static_cast<unsigned long long>(r.bytes), r.bits_per_weight());
    if (!r.layout.empty())
      std::printf("  %-4s  %-9s  %s", r.zero_point.c_str(), r.act_order ? "yes" : "no", r.layout.c_str());
    std::printf("\n");
    if (!per_scheme.count(r.scheme)) order.push_back(r.scheme);
    auto& [count, bytes] = per_scheme[r.scheme];
    ++count;
    bytes += r.bytes;
    int64_t n = 1;
    for (int64_t d : r.shape) n *= d;
    total_params += n;
    total_bytes += r.bytes;
  }
  std::printf("\n");
  for (const std::string& s : order)
    std::printf("%-8s %5lld tensors  %s\n", s.c_str(), static_cast<long long>(per_scheme[s].first),
                report::human_bytes(static_cast<double>(per_scheme[s].second)).c_str());
  std::printf("total    %5zu tensors  %s, %lld parameters, %.3f bits per weight\n", rep.rows.size(),
              report::human_bytes(static_cast<double>(total_bytes)).c_str(), static_cast<long long>(total_params),
              total_params ? 8.0 * static_cast<double>(total_bytes) / static_cast<double>(total_params) : 0.0);
  if (!rep.experts.empty()) {
    std::printf("\nexperts (w13 = gate+up, w2 = down):\n");
    for (const ExpertGroup& g : rep.experts)
      std::printf("  %-*s  w13 %-10s w2 %s%s\n", static_cast<int>(w), g.prefix.c_str(), g.w13.c_str(), g.w2.c_str(),
                  g.w13 != g.w2 ? "  <- differ" : "");
  }
}

struct InspectOptions {
  std::string model_path;
  bool json = false;
  std::string svg, html;  // files for the quantization map
};

std::vector<report::MapTensor> map_tensors(const Report& rep) {
  std::vector<report::MapTensor> out;
  for (const TensorRow& r : rep.rows) {
    int64_t n = 1;
    for (int64_t d : r.shape) n *= d;
    out.push_back({r.tensor, r.scheme, n, r.bytes});
  }
  return out;
}

int run_inspect(const InspectOptions& o) {
  if (o.model_path.empty()) throw Error("give the model: quanta inspect MODEL (a GGUF file or a Hugging Face folder)");
  Report rep = inspect_path(o.model_path);
  fs::path name(o.model_path);
  if (!name.has_filename()) name = name.parent_path();  // "folder/"
  const std::string title = name.filename().string() + " (" + rep.method + ")";
  if (!o.svg.empty()) report::write_report(o.svg, report::quant_map_svg(title, map_tensors(rep)), "--svg");
  if (!o.html.empty()) report::write_report(o.html, report::quant_map_html(title, map_tensors(rep)), "--html");
  if (o.json) std::printf("%s\n", report_json(rep).dump(2).c_str());
  else if (o.svg.empty() && o.html.empty()) print_text(rep);
  return 0;
}

}  // namespace

Command add_inspect(CLI::App& app) {
  auto o = std::make_shared<InspectOptions>();
  CLI::App* sub = app.add_subcommand("inspect", "Show a checkpoint's architecture, tokenizer and how each tensor is stored.");
  sub->footer(
      "Reads headers only (GGUF header, safetensors headers, config.json, tokenizer); no weights are loaded.\n"
      "One row per checkpoint weight tensor, named as in the checkpoint (GGUF names for a GGUF file,\n"
      "Hugging Face names for a folder):\n"
      "  scheme       GGUF: the ggml type (Q4_K, Q6_K, F32, ...); folder: FLOAT for unquantized tensors\n"
      "  w_bits       nominal bits of a stored weight element (Q4_K 4, Q6_K 6, BF16 16)\n"
      "  a_bits       bits of the activations the weight is multiplied with when decoding: GGUF quantized\n"
      "               types 16 (16-bit blocks of 32 in quanta's dot kernels; 32 for types this CPU has no\n"
      "               kernel for, which run dequantized), F16/BF16 16, F32 32;\n"
      "               FLOAT tensors: their dtype's bits (bf16 is W16A16); 0 for integer tensors\n"
      "  group        elements per quantization block: the ggml block size (32 for Q4_0/Q8_0; the 256-element\n"
      "               super-block for K-quants, whose 16- or 32-element sub-blocks carry 6- or 8-bit scales);\n"
      "               0 for float tensors\n"
      "  bytes, bpw   bytes in the checkpoint, and 8 * bytes / elements (Q4_K 4.5, Q6_K 6.5625)\n"
      "Method: \"gguf\" for a GGUF file, \"unquantized\" for a float folder.\n"
      "--json prints one object: path, format, method, details, hyperparameters, tokenizer, total_params,\n"
      "total_bytes, and layers (a list of {tensor, scheme, weight_bits, act_bits, group_size, shape, bytes,\n"
      "bits_per_weight}) and experts (per MoE layer: {prefix, w13, w2, differ}).\n"
      "Mixture-of-experts layers: a folder's per-expert tensors show as one row per projection,\n"
      "experts.*.<name> with shape [experts, ...] (schemes that differ between experts: \"A x120 + B x8\"),\n"
      "as a GGUF's 3-D expert tensors do; the experts section gives each layer's w13 and w2 schemes.\n"
      "--svg FILE / --html FILE draw the map: each cell coloured by scheme (stripes by share of parameters\n"
      "where a cell's tensors differ, e.g. experts), labelled with bits per weight, with per-scheme totals.");
  sub->add_option("model", o->model_path, "GGUF file or Hugging Face folder");
  sub->add_option("--model-path", o->model_path, "Same as the positional MODEL");
  sub->add_flag("--json", o->json, "Print JSON instead of text");
  sub->add_option("--svg", o->svg, "Write the quantization map (one row per layer, one column per projection) as SVG");
  sub->add_option("--html", o->html, "Write the quantization map and a table of every tensor as an HTML page");
  return [o] { return run_inspect(*o); };
}

}  // namespace quanta::cli
