#include "quanta/quant/resolver.h"

#include <algorithm>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "quanta/core/dtype.h"
#include "quanta/core/error.h"
#include "quanta/core/json.h"
#include "quanta/format/hf_config.h"
#include "quanta/format/tensor_source.h"
#include "quanta/quant/hf_quant_config.h"

namespace quanta::quant {

namespace fs = std::filesystem;

namespace {

constexpr SchemeInfo kSchemes[] = {
    {Scheme::kFloat, "FLOAT", 0, 0, false},
    {Scheme::kW8A16, "W8A16", 8, 0, false},
    {Scheme::kW8A8, "W8A8", 8, 8, false},
    {Scheme::kW8A8Dynamic, "W8A8_DYNAMIC", 8, 8, false},
    {Scheme::kW4A4Dynamic, "W4A4_DYNAMIC", 4, 4, false},
    {Scheme::kW8A8Mxfp8, "W8A8_MXFP8", 8, 8, true},
    {Scheme::kW4A8Mxfp, "W4A8_MXFP", 4, 8, true},
    {Scheme::kW4A4Mxfp4, "W4A4_MXFP4", 4, 4, true},
};

// msModelSlim type strings quanta knows but does not run (sec. 1.2).
constexpr const char* kKnownUnsupported[] = {
    "W16A16S", "W8A8_MIX", "W4A8_DYNAMIC", "WFP8AFP8_DYNAMIC", "W4A4_MXFP4_DUALSCALE", "W8A8S", "W8A8_TIMESTEP",
    "C8", "FAQuant", "FAKQuant"};

std::string known_list() {
  std::string s;
  for (const auto& i : kSchemes) s += (s.empty() ? "" : ", ") + std::string(i.name);
  return s;
}

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// Scheme of a type string, or an Error naming the tensor and the description.
Scheme scheme_or_throw(const std::string& type, const std::string& tensor, const std::string& file) {
  if (auto s = scheme_from_name(type)) return *s;
  for (const char* k : kKnownUnsupported)
    if (type == k)
      throw Error("scheme '" + type + "' is an msModelSlim type quanta does not run yet (it runs " + known_list() +
                      ")", {.file = file, .tensor = tensor});
  if (type.find("FLATQUANT") != std::string::npos || type.find("_SVD") != std::string::npos)
    throw Error("scheme '" + type + "' is a FlatQuant/SVD-wrapped layer, which quanta does not run yet",
                {.file = file, .tensor = tensor});
  throw Error("unknown scheme '" + type + "' (known: " + known_list() + ")", {.file = file, .tensor = tensor});
}

bool is_never_quantized(const std::string& prefix) {
  return prefix == "model.embed_tokens" || prefix == "lm_head" || ends_with(prefix, ".embed_tokens");
}

}  // namespace

const SchemeInfo& scheme_info(Scheme s) {
  for (const auto& i : kSchemes)
    if (i.scheme == s) return i;
  return kSchemes[0];
}

const char* scheme_name(Scheme s) { return scheme_info(s).name; }

std::optional<Scheme> scheme_from_name(std::string_view name) {
  for (const auto& i : kSchemes)
    if (name == i.name) return i.scheme;
  return std::nullopt;
}

QuantDescription parse_quant_description(const std::string& json_text, const std::string& file) {
  check_json_depth(json_text, {.file = file});
  nlohmann::json j = nlohmann::json::parse(json_text, nullptr, false);
  if (j.is_discarded()) throw Error("not valid JSON", {.file = file});
  if (!j.is_object()) throw Error("expected a JSON object of tensor name -> quant type", {.file = file});
  QuantDescription d;
  d.file = file;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    if (key == "group_size") {
      if (!it->is_number_integer() || it->get<int64_t>() < 0)
        throw Error("expected a non-negative integer", {.file = file, .field = key});
      d.group_size = it->get<int64_t>();
    } else if (key == "version") {
      if (it->is_string()) d.version = it->get<std::string>();
    } else if (key == "model_quant_type") {
      if (it->is_string()) d.model_quant_type = it->get<std::string>();
    } else if (it->is_string()) {
      // Per-tensor entries, plus global string keys (kv_cache_type, fa_quant_type, ...)
      // and per-attention ".quant_type" descriptors, which name no weight and are ignored.
      std::string name = key;
      if (auto p = name.find("weight_packed"); p != std::string::npos) name.replace(p, 13, "weight");
      d.entries[name] = it->get<std::string>();
      if (key.find("norm.bias") != std::string::npos) d.norm_bias = true;
    }
    // Objects and other types (metadata, optional, is_rot_used, ...) are not per-tensor: ignored.
  }
  return d;
}

std::optional<QuantDescription> load_quant_description(const std::string& model_dir) {
  const fs::path p = fs::path(model_dir) / "quant_model_description.json";
  if (!fs::exists(p)) return std::nullopt;
  return parse_quant_description(format::read_text_file(p.string()), p.string());
}

const std::vector<std::string>& quantization_names() {
  static const std::vector<std::string> names = {"modelslim", "awq", "gptq", "auto-round", "compressed-tensors",
                                                  "mxfp8", "w8a8_int8"};
  return names;
}

MethodDecision decide_method(const std::string& model_dir, const std::string& requested) {
  MethodDecision d{"unquantized", "", false};
  const fs::path desc = fs::path(model_dir) / "quant_model_description.json";
  const fs::path cfg = fs::path(model_dir) / "config.json";
  if (fs::exists(desc)) {
    d = {"modelslim", desc.string(), false};
  } else if (fs::exists(cfg)) {
    const std::string text = format::read_text_file(cfg.string());
    check_json_depth(text, {.file = cfg.string()});
    nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (!j.is_discarded() && j.is_object()) {
      const nlohmann::json* qc = nullptr;
      if (j.contains("quantization_config")) qc = &j["quantization_config"];
      else if (j.contains("compression_config")) qc = &j["compression_config"];
      if (qc) {
        if (!qc->is_object() || !qc->contains("quant_method") || !(*qc)["quant_method"].is_string())
          throw Error("quantization_config has no quant_method string", {.file = cfg.string(),
                                                                         .field = "quantization_config.quant_method"});
        std::string m = (*qc)["quant_method"].get<std::string>();
        std::transform(m.begin(), m.end(), m.begin(), [](unsigned char c) { return std::tolower(c); });
        if (m == "intel/auto-round" || m == "auto_round") m = "auto-round";
        d = {m, cfg.string(), false};
      }
    }
  }
  if (d.method == "unquantized")
    // Side files of AutoRound, AutoGPTQ/GPTQModel and old AutoAWQ.
    if (auto hf = HfQuantConfig::load(model_dir)) d = {hf->method(), hf->file(), false};
  if (requested.empty() || requested == d.method) return d;
  const auto& names = quantization_names();
  if (std::find(names.begin(), names.end(), requested) == names.end()) {
    std::string list;
    for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
    throw Error("unknown quantization method '" + requested + "' (known: " + list + ")", {.field = "--quantization"});
  }
  if (requested == "mxfp8" || requested == "w8a8_int8") {
    if (d.method != "unquantized")
      throw Error("--quantization " + requested + " quantizes float weights at load, but this checkpoint is already '" +
                      d.method + "' quantized (" + d.source + ")", {.field = "--quantization"});
    return {requested, "", true};
  }
  throw Error("--quantization " + requested + " contradicts the checkpoint, which is " +
                  (d.source.empty() ? "'" + d.method + "' (no quantization description or config)"
                                    : "'" + d.method + "' according to " + d.source),
              {.field = "--quantization"});
}

SchemeResolver::SchemeResolver(QuantDescription description) : desc_(std::move(description)) {}

std::string SchemeResolver::type_of(const std::string& tensor) const {
  auto it = desc_.entries.find(tensor);
  return it == desc_.entries.end() ? std::string() : it->second;
}

Scheme SchemeResolver::linear_scheme(const std::string& prefix) const {
  const std::string wname = prefix + ".weight";
  const std::string type = type_of(wname);
  if (is_never_quantized(prefix)) {
    // SGLang never gives embeddings or the LM head a quant method; absent counts as float.
    if (type.empty() || type == "FLOAT") return Scheme::kFloat;
    throw Error("the description quantizes " + wname + " as '" + type +
                    "', but embeddings and lm_head are never quantized (export them as FLOAT)",
                {.file = desc_.file, .tensor = wname});
  }
  if (type.empty())
    throw Error("the description has no entry for " + wname +
                    " (a layer missing from it is an error, not a float layer)",
                {.file = desc_.file, .tensor = wname});
  return scheme_or_throw(type, wname, desc_.file);
}

Scheme SchemeResolver::fused_scheme(const std::vector<std::string>& shard_prefixes) const {
  QUANTA_ASSERT(!shard_prefixes.empty());
  const Scheme first = linear_scheme(shard_prefixes[0]);
  for (size_t i = 1; i < shard_prefixes.size(); ++i) {
    const Scheme s = linear_scheme(shard_prefixes[i]);
    if (s != first)
      throw Error("fused shards disagree: " + shard_prefixes[0] + ".weight is " + scheme_name(first) + " but " +
                      shard_prefixes[i] + ".weight is " + scheme_name(s) +
                      " (all shards of a fused layer must have the same scheme)",
                  {.file = desc_.file, .tensor = shard_prefixes[i] + ".weight"});
  }
  return first;
}

SchemeResolver::MoeSchemes SchemeResolver::moe_schemes(const std::string& experts_prefix) const {
  const std::string e0 = experts_prefix + ".0.";
  const bool hf = !type_of(e0 + "gate_proj.weight").empty() || type_of(e0 + "w1.weight").empty();
  const std::string gate = e0 + (hf ? "gate_proj" : "w1"), up = e0 + (hf ? "up_proj" : "w3"),
                    down = e0 + (hf ? "down_proj" : "w2");
  return {fused_scheme({gate, up}), linear_scheme(down)};
}

void SchemeResolver::validate_decoder(int64_t n_layers, const std::vector<bool>& sparse) const {
  linear_scheme("model.embed_tokens");
  linear_scheme("lm_head");
  for (int64_t i = 0; i < n_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    fused_scheme({p + "self_attn.q_proj", p + "self_attn.k_proj", p + "self_attn.v_proj"});
    linear_scheme(p + "self_attn.o_proj");
    if (static_cast<size_t>(i) < sparse.size() && sparse[static_cast<size_t>(i)]) {
      const bool mixtral = !type_of(p + "block_sparse_moe.experts.0.w1.weight").empty() ||
                           !type_of(p + "block_sparse_moe.experts.0.gate_proj.weight").empty();
      moe_schemes(p + (mixtral ? "block_sparse_moe.experts" : "mlp.experts"));
      continue;
    }
    fused_scheme({p + "mlp.gate_proj", p + "mlp.up_proj"});
    linear_scheme(p + "mlp.down_proj");
  }
}

namespace {

// The rows of an AWQ / GPTQ / AutoRound / compressed-tensors folder: one per
// packed weight (qweight, weight_packed, or an int8 weight with a weight_scale)
// with its logical shape, the rest (float weights) as FLOAT.
void hf_schemes(const HfQuantConfig& hf, const format::TensorSource& source, CheckpointSchemes& out) {
  const std::vector<std::string> names = source.names();
  std::map<std::string, std::string> side_of;
  std::map<std::string, TensorScheme> packed;  // by weight name
  for (const auto& name : names) {
    const size_t dot = name.rfind('.');
    if (dot == std::string::npos) continue;
    const std::string prefix = name.substr(0, dot), suffix = name.substr(dot + 1);
    const DType wdt = suffix == "weight" ? source.get(name).dtype() : DType::kI32;
    const bool int_weight = suffix == "weight" && source.has(prefix + ".weight_scale") &&
                            (wdt == DType::kI8 || wdt == DType::kF8E4M3);
    if (suffix != "qweight" && suffix != "weight_packed" && !int_weight) continue;
    const LayerQuant q = hf.resolve(prefix);
    const Shape s = source.get(name).shape();
    if (s.size() != 2 || q.bits < 1 || q.bits > 8) continue;
    TensorScheme row;
    row.tensor = name;
    const bool a8 = q.act_dynamic8 || q.fp8_act != Fp8Act::kNone;
    row.scheme = "W" + std::to_string(q.bits) + (a8 ? "A8" : "A16") + (q.layout == HfLayout::kCtFp8 ? "_FP8" : "");
    row.weight_bits = q.bits;
    row.act_bits = a8 ? 8 : 16;
    int64_t n = s[0], k = s[1];
    if (suffix == "qweight" && q.layout == HfLayout::kAwq) {
      k = s[0];
      n = s[1] * 32 / q.bits;
      row.layout = "awq gemm";
    } else if (suffix == "qweight") {
      k = s[0] * 32 / q.bits;
      n = s[1];
      row.layout = q.zero_minus_one ? "gptq v1" : "gptq v2";
    } else if (suffix == "weight_packed") {
      k = s[1] * 32 / q.bits;
      if (source.has(prefix + ".weight_shape")) {
        const Tensor ws = source.get(prefix + ".weight_shape");
        if (ws.numel() == 2 && ws.dtype() == DType::kI64) k = ws.data<int64_t>()[1];
      }
      row.layout = "compressed-tensors pack-quantized";
    } else {
      row.layout = q.layout == HfLayout::kCtFp8 ? "compressed-tensors float-quantized" : "compressed-tensors int-quantized";
    }
    row.logical_shape = {n, k};
    row.group_size = q.group_size < 0 ? k : q.group_size;
    row.zero_point = q.sym ? "sym" : "asym";
    row.act_order = q.act_order || source.has(prefix + ".weight_g_idx");
    for (auto it = std::lower_bound(names.begin(), names.end(), prefix + ".");
         it != names.end() && starts_with(*it, prefix + "."); ++it)
      if (*it != name && it->find('.', prefix.size() + 1) == std::string::npos) {
        side_of[*it] = name;
        row.side_tensors.push_back(*it);
      }
    packed[name] = std::move(row);
  }
  for (const auto& name : names) {
    if (side_of.count(name)) continue;
    if (auto it = packed.find(name); it != packed.end()) {
      out.tensors.push_back(it->second);
      continue;
    }
    TensorScheme row;
    row.tensor = name;
    row.scheme = "FLOAT";
    row.weight_bits = dtype_bits(source.get(name).dtype());
    row.act_bits = row.weight_bits;
    out.tensors.push_back(std::move(row));
  }
}

}  // namespace

CheckpointSchemes resolve_checkpoint_schemes(const std::string& model_dir, const format::TensorSource& source) {
  CheckpointSchemes out;
  out.method = decide_method(model_dir).method;
  if (out.method == "awq" || out.method == "gptq" || out.method == "auto-round" || out.method == "compressed-tensors") {
    if (auto hf = HfQuantConfig::load(model_dir)) {
      hf_schemes(*hf, source, out);
      return out;
    }
  }
  std::optional<QuantDescription> desc = load_quant_description(model_dir);
  const std::vector<std::string> names = source.names();
  std::map<std::string, std::string> side_of;  // side tensor -> its weight
  if (desc) {
    for (const auto& name : names) {
      if (!ends_with(name, ".weight")) continue;
      const std::string type = desc->entries.count(name) ? desc->entries.at(name) : "";
      if (type.empty() || type == "FLOAT") continue;
      const std::string prefix = name.substr(0, name.size() - 7) + ".";
      // names is sorted: the tensors under this prefix are one run of it.
      for (auto it = std::lower_bound(names.begin(), names.end(), prefix); it != names.end() && starts_with(*it, prefix);
           ++it)
        if (*it != name && it->find('.', prefix.size()) == std::string::npos) side_of[*it] = name;
    }
  }
  // gpt-oss MXFP4 experts: <proj>_blocks [E, rows, cols/32, 16] with its <proj>_scales.
  if (out.method == "mxfp4")
    for (const auto& name : names)
      if (ends_with(name, "_blocks") && source.has(name.substr(0, name.size() - 7) + "_scales"))
        side_of[name.substr(0, name.size() - 7) + "_scales"] = name;
  for (const auto& name : names) {
    if (side_of.count(name)) continue;
    TensorScheme row;
    row.tensor = name;
    if (out.method == "mxfp4" && ends_with(name, "_blocks")) {
      const Shape sh = source.get(name).shape();
      row.scheme = "MXFP4";
      row.weight_bits = 4;
      row.act_bits = 16;  // repacked into ggml MXFP4 rows, run by the GGUF kernels (16-bit activations)
      row.group_size = 32;
      if (sh.size() == 4) row.logical_shape = {sh[0], sh[1], sh[2] * 32};
      row.side_tensors.push_back(name.substr(0, name.size() - 7) + "_scales");
      out.tensors.push_back(std::move(row));
      continue;
    }
    const std::string type = desc && desc->entries.count(name) ? desc->entries.at(name) : "";
    const std::optional<Scheme> s = type.empty() ? std::optional<Scheme>(Scheme::kFloat) : scheme_from_name(type);
    row.scheme = type.empty() ? "FLOAT" : type;
    if (s && *s == Scheme::kFloat) {
      const DType dt = source.get(name).dtype();
      row.weight_bits = dtype_bits(dt);
      const bool is_float = dt == DType::kF64 || dt == DType::kF32 || dt == DType::kF16 || dt == DType::kBF16;
      row.act_bits = is_float ? row.weight_bits : 0;
    } else if (s) {
      const SchemeInfo& info = scheme_info(*s);
      row.weight_bits = info.weight_bits;
      row.act_bits = info.act_bits ? info.act_bits : 16;
      row.group_size = info.mx ? 32 : desc->group_size;
    }
    for (const auto& [side, weight] : side_of)
      if (weight == name) row.side_tensors.push_back(side);
    out.tensors.push_back(std::move(row));
  }
  return out;
}

}  // namespace quanta::quant
