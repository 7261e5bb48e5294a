#include "quanta/quant/hf_quant_config.h"

#include <algorithm>
#include <filesystem>
#include <memory>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "quanta/core/error.h"
#include "quanta/core/json.h"
#include "quanta/format/hf_config.h"

namespace quanta::quant {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string canonical_method(const std::string& m) {
  const std::string l = lower(m);
  if (l == "intel/auto-round" || l == "auto_round" || l == "autoround") return "auto-round";
  return l;
}

bool is_embedding(const std::string& prefix) {
  return prefix.size() >= 12 && prefix.compare(prefix.size() - 12, 12, "embed_tokens") == 0;
}

// Python's re.match (at_start) or re.search of `pattern` in `s`, by PCRE2, whose syntax is
// Python's for what these configs use. Both steps are bounded: compiling checks nesting without
// recursion (std::regex recursed per parenthesis and overflowed the stack on a deep pattern),
// and matching stops at a backtracking limit (a pattern like (.*)*x would otherwise hang a load).
bool regex_matches(const std::string& pattern, const std::string& s, bool at_start, const std::string& file,
                   const std::string& field) {
  auto fail = [&](const std::string& why) {
    return Error("'" + pattern.substr(0, 200) + "' is not a regular expression quanta can use (" + why + ")",
                 {.file = file, .field = field});
  };
  auto message = [](int code) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(code, buf, sizeof buf);
    return std::string(reinterpret_cast<const char*>(buf));
  };
  int err = 0;
  PCRE2_SIZE at = 0;
  std::unique_ptr<pcre2_code, decltype(&pcre2_code_free)> code(
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF, &err, &at, nullptr),
      pcre2_code_free);
  if (!code) throw fail(message(err) + " at offset " + std::to_string(at));
  std::unique_ptr<pcre2_match_context, decltype(&pcre2_match_context_free)> ctx(pcre2_match_context_create(nullptr),
                                                                                pcre2_match_context_free);
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> data(
      pcre2_match_data_create_from_pattern(code.get(), nullptr), pcre2_match_data_free);
  if (!ctx || !data) throw fail("out of memory");
  pcre2_set_match_limit(ctx.get(), 1'000'000);
  pcre2_set_depth_limit(ctx.get(), 10'000);
  const int rc = pcre2_match(code.get(), reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), 0,
                             at_start ? PCRE2_ANCHORED : 0, data.get(), ctx.get());
  if (rc >= 0) return true;
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  throw fail("matching '" + s + "': " + message(rc));
}

bool has_regex_chars(const std::string& s) { return s.find_first_of("*+?[](){}|^$\\") != std::string::npos; }

LayerQuant float_layer(std::string rule) {
  LayerQuant q;
  q.rule = std::move(rule);
  return q;
}

// An integer field under any of its spellings; `def` when absent.
template <class J>
int64_t int_field(const J& obj, std::initializer_list<const char*> keys, int64_t def, const std::string& file) {
  for (const char* k : keys)
    if (obj.contains(k) && !obj[k].is_null()) {
      if (!obj[k].is_number_integer()) throw Error(std::string(k) + " must be an integer", {.file = file, .field = k});
      return obj[k].template get<int64_t>();
    }
  return def;
}

template <class J>
std::string string_field(const J& obj, const char* key, const std::string& def, const std::string& file) {
  if (!obj.contains(key) || obj[key].is_null()) return def;
  if (!obj[key].is_string()) throw Error(std::string(key) + " must be a string", {.file = file, .field = key});
  return obj[key].template get<std::string>();
}

template <class J>
bool bool_field(const J& obj, const char* key, bool def, const std::string& file) {
  if (!obj.contains(key) || obj[key].is_null()) return def;
  if (!obj[key].is_boolean()) throw Error(std::string(key) + " must be true or false", {.file = file, .field = key});
  return obj[key].template get<bool>();
}

}  // namespace

[[noreturn]] void HfQuantConfig::fail(const std::string& field, const std::string& message) const {
  throw Error(message, {.file = file_, .field = field});
}

HfQuantConfig::HfQuantConfig(const Json& qc, std::string file) : qc_(qc), file_(std::move(file)) {
  if (!qc_.is_object() || !qc_.contains("quant_method") || !qc_["quant_method"].is_string())
    fail("quantization_config.quant_method", "quantization_config has no quant_method string");
  method_ = canonical_method(qc_["quant_method"].get<std::string>());
  auto str = [&](const char* key, const std::string& def) {
    if (!qc_.contains(key) || qc_[key].is_null()) return def;
    if (!qc_[key].is_string()) fail(key, std::string(key) + " must be a string");
    return lower(qc_[key].get<std::string>());
  };
  if (method_ == "awq") {
    const std::string v = str("version", "gemm");
    if (v != "gemm" && v != "exllama" && v != "ipex")
      fail("version", "AWQ version '" + v + "' is not supported (quanta reads the GEMM layout, which the gemm, "
                      "exllama and ipex versions share)");
  } else if (method_ == "gptq") {
    const std::string f = str("checkpoint_format", str("format", "gptq"));
    if (f != "gptq" && f != "gptq_v2")
      fail("checkpoint_format", "GPTQ checkpoint format '" + f + "' is not supported (quanta reads gptq and gptq_v2)");
    if (bool_field(qc_, "is_marlin_format", false, file_))
      fail("is_marlin_format", "Marlin-repacked GPTQ weights are not supported (quanta reads the plain gptq layout)");
    const std::string pd = str("pack_dtype", "int32");
    if (pd != "int32") fail("pack_dtype", "GPTQ pack_dtype '" + pd + "' is not supported (only int32)");
  } else if (method_ == "auto-round") {
    const std::string pf = str("packing_format", "auto_round:auto_gptq");
    if (pf != "auto_round" && pf != "auto_round:auto_gptq" && pf != "auto_round:gptqmodel" &&
        pf != "auto_round:auto_awq" && pf != "auto_round:llm_compressor")
      fail("packing_format", "AutoRound packing_format '" + pf + "' is not supported (quanta reads auto_round, "
                             "auto_round:auto_gptq, auto_round:gptqmodel, auto_round:auto_awq, auto_round:llm_compressor)");
  } else if (method_ == "compressed-tensors") {
    if (qc_.contains("kv_cache_scheme") && !qc_["kv_cache_scheme"].is_null())
      fail("kv_cache_scheme", "a quantized KV cache (kv_cache_scheme) is not supported: quanta's KV cache is f32");
    for (const char* key : {"sparsity_config", "transform_config"})
      if (qc_.contains(key) && !qc_[key].is_null() && !(qc_[key].is_object() && qc_[key].empty()))
        fail(key, std::string(key) + " is not supported (sparse or transformed weights)");
    const std::string status = str("quantization_status", "compressed");
    if (status != "compressed")
      fail("quantization_status", "quantization_status '" + status + "': quanta reads compressed checkpoints only");
    if (!qc_.contains("config_groups") || !qc_["config_groups"].is_object())
      fail("config_groups", "compressed-tensors config has no config_groups object");
  } else {
    fail("quant_method", "quant_method '" + method_ + "' is not an AWQ, GPTQ, AutoRound or compressed-tensors method");
  }
  // Resolving a probe layer (or, for compressed-tensors, each group) checks the
  // fields now, so a bad one fails at load rather than at its first layer.
  if (method_ != "compressed-tensors") resolve("model.layers.0.mlp.down_proj");
  else
    for (const auto& [name, group] : qc_["config_groups"].items()) resolve("\x01probe:" + name);
}

std::unique_ptr<HfQuantConfig> HfQuantConfig::load(const std::string& model_dir) {
  auto read = [&](const fs::path& p) -> Json {
    const std::string text = format::read_text_file(p.string());
    check_json_depth(text, {.file = p.string()});
    const Json j = Json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw Error("not a JSON object", {.file = p.string()});
    return j;
  };
  const fs::path dir(model_dir);
  std::vector<std::pair<Json, fs::path>> found;
  if (fs::exists(dir / "config.json")) {
    const auto cfg = read(dir / "config.json");
    for (const char* key : {"quantization_config", "compression_config"})
      if (cfg.contains(key)) {
        found.emplace_back(cfg[key], dir / "config.json");
        break;
      }
  }
  for (const char* side : {"quantization_config.json", "quantize_config.json", "quant_config.json"})
    if (found.empty() && fs::exists(dir / side)) found.emplace_back(read(dir / side), dir / side);
  if (found.empty()) return nullptr;
  auto& [qc, path] = found.front();
  // Old AutoAWQ side files carry no quant_method; their keys say AWQ.
  if (qc.is_object() && !qc.contains("quant_method") && path.filename() == "quant_config.json") qc["quant_method"] = "awq";
  if (!qc.is_object() || !qc.contains("quant_method") || !qc["quant_method"].is_string()) return nullptr;
  const std::string m = canonical_method(qc["quant_method"].get<std::string>());
  if (m != "awq" && m != "gptq" && m != "auto-round" && m != "compressed-tensors") return nullptr;
  return std::make_unique<HfQuantConfig>(qc, path.string());
}

LayerQuant HfQuantConfig::resolve(const std::string& prefix) const {
  if (is_embedding(prefix)) return float_layer("embeddings are not quantized");
  if (method_ == "awq") return resolve_awq(prefix);
  if (method_ == "gptq") return resolve_gptq(prefix);
  if (method_ == "auto-round") return resolve_auto_round(prefix);
  return resolve_compressed_tensors(prefix);
}

namespace {

void check_bits_group(int bits, int64_t group, std::initializer_list<int> allowed, const std::string& method,
                      const std::string& where, const std::string& file) {
  if (std::find(allowed.begin(), allowed.end(), bits) == allowed.end()) {
    std::string list;
    for (int b : allowed) list += (list.empty() ? "" : ", ") + std::to_string(b);
    throw Error(method + " with " + std::to_string(bits) + " bits is not supported (" + method + " allows " + list +
                    ")" + where,
                {.file = file, .field = "bits"});
  }
  if (group == 0 || group < -1)
    throw Error("group_size " + std::to_string(group) + " is not a group size (-1 or a positive count)" + where,
                {.file = file, .field = "group_size"});
}

}  // namespace

LayerQuant HfQuantConfig::resolve_awq(const std::string& prefix) const {
  LayerQuant q;
  q.layout = HfLayout::kAwq;
  q.bits = static_cast<int>(int_field(qc_, {"bits", "w_bit"}, 4, file_));
  q.group_size = int_field(qc_, {"group_size", "q_group_size"}, 128, file_);
  q.sym = !bool_field(qc_, "zero_point", true, file_);
  q.rule = "awq";
  check_bits_group(q.bits, q.group_size, {4}, "AWQ", "", file_);
  if (qc_.contains("modules_to_not_convert") && qc_["modules_to_not_convert"].is_array())
    for (const auto& m : qc_["modules_to_not_convert"])
      if (m.is_string() && prefix.find(m.get<std::string>()) != std::string::npos)
        return float_layer("modules_to_not_convert '" + m.get<std::string>() + "'");
  return q;
}

LayerQuant HfQuantConfig::resolve_gptq(const std::string& prefix) const {
  LayerQuant q;
  q.layout = HfLayout::kGptq;
  q.bits = static_cast<int>(int_field(qc_, {"bits", "w_bit"}, 4, file_));
  q.group_size = int_field(qc_, {"group_size", "q_group_size"}, -1, file_);
  q.sym = bool_field(qc_, "sym", true, file_);
  const std::string fmt = lower(string_field(qc_, "checkpoint_format", string_field(qc_, "format", "gptq", file_), file_));
  q.zero_minus_one = fmt == "gptq";
  q.act_order = bool_field(qc_, "desc_act", false, file_);
  q.rule = "gptq";
  if (prefix == "lm_head" && !bool_field(qc_, "lm_head", false, file_))
    return float_layer("lm_head is not quantized (lm_head: false)");
  std::string where;
  if (qc_.contains("dynamic") && qc_["dynamic"].is_object()) {
    // In insertion order (GPTQModel's rule): qc_ is an ordered_json.
    for (const auto& [key, over] : qc_["dynamic"].items()) {
      const bool negative = key.rfind("-:", 0) == 0;
      const std::string pat = negative || key.rfind("+:", 0) == 0 ? key.substr(2) : key;
      if (!regex_matches(pat, prefix, true, file_, "dynamic")) continue;
      if (negative) return float_layer("dynamic '" + key + "'");
      if (!over.is_object()) fail("dynamic", "dynamic entry '" + key + "' must be an object");
      q.bits = static_cast<int>(int_field(over, {"bits"}, q.bits, file_));
      q.group_size = int_field(over, {"group_size"}, q.group_size, file_);
      q.sym = bool_field(over, "sym", q.sym, file_);
      q.act_order = bool_field(over, "desc_act", q.act_order, file_);
      q.rule = "gptq dynamic '" + key + "'";
      where = " (dynamic '" + key + "')";
      break;
    }
  }
  check_bits_group(q.bits, q.group_size, {2, 3, 4, 8}, "GPTQ", where, file_);
  return q;
}

LayerQuant HfQuantConfig::resolve_auto_round(const std::string& prefix) const {
  const std::string pf = lower(string_field(qc_, "packing_format", "auto_round:auto_gptq", file_));
  LayerQuant q;
  q.bits = static_cast<int>(int_field(qc_, {"bits"}, 4, file_));
  q.group_size = int_field(qc_, {"group_size"}, 128, file_);
  q.sym = bool_field(qc_, "sym", true, file_);
  std::string data_type = lower(string_field(qc_, "data_type", "int", file_));
  int64_t act_bits = int_field(qc_, {"act_bits"}, 16, file_);
  q.rule = "auto-round " + pf;
  std::string where;
  if (qc_.contains("extra_config") && qc_["extra_config"].is_object()) {
    const Json& ordered = qc_["extra_config"];
    const Json* over = nullptr;
    std::string key_used;
    if (ordered.contains(prefix)) {
      over = &ordered[prefix];
      key_used = prefix;
    } else {
      for (const auto& [key, val] : ordered.items())
        if (has_regex_chars(key) && regex_matches(key, prefix, false, file_, "extra_config")) {
          over = &val;
          key_used = key;
          break;
        }
    }
    if (over) {
      if (!over->is_object()) fail("extra_config", "extra_config entry '" + key_used + "' must be an object");
      q.bits = static_cast<int>(int_field(*over, {"bits"}, q.bits, file_));
      q.group_size = int_field(*over, {"group_size"}, q.group_size, file_);
      q.sym = bool_field(*over, "sym", q.sym, file_);
      if (over->contains("data_type") && (*over)["data_type"].is_string())
        data_type = lower((*over)["data_type"].get<std::string>());
      act_bits = int_field(*over, {"act_bits"}, act_bits, file_);
      q.rule += " extra_config '" + key_used + "'";
      where = " (extra_config '" + key_used + "')";
    }
  }
  if (q.bits >= 16)
    return float_layer(q.rule);
  if (data_type != "int")
    fail("data_type", "AutoRound data_type '" + data_type + "' is not supported (quanta reads integer weights)" + where);
  if (act_bits < 16)
    fail("act_bits", "AutoRound with " + std::to_string(act_bits) +
                         "-bit activations is not supported (quanta reads weight-only W2/W3/W4/W8 A16)" + where);
  check_bits_group(q.bits, q.group_size, {2, 3, 4, 8}, "AutoRound", where, file_);
  if (pf == "auto_round:auto_awq") {
    q.layout = HfLayout::kAwq;
    if (q.bits != 4) fail("bits", "AutoRound auto_awq packing holds 4-bit weights only, not " + std::to_string(q.bits) + where);
  } else if (pf == "auto_round:llm_compressor") {
    q.layout = HfLayout::kCtPacked;
  } else {
    q.layout = HfLayout::kGptq;
    q.zero_minus_one = pf == "auto_round:auto_gptq";
  }
  return q;
}

LayerQuant HfQuantConfig::resolve_compressed_tensors(const std::string& prefix) const {
  // A probe ("\x01probe:<group>") checks one group's fields at load.
  const bool probe = prefix.rfind("\x01probe:", 0) == 0;
  auto matches = [&](const Json& list, const std::string& field) {
    if (!list.is_array()) fail(field, field + " must be a list");
    for (const auto& t : list) {
      if (!t.is_string()) fail(field, field + " entries must be strings");
      const std::string s = t.get<std::string>();
      if (s.rfind("re:", 0) == 0) {
        if (regex_matches(s.substr(3), prefix, true, file_, field)) return true;
      } else if (s == prefix || (s == "Linear" && !is_embedding(prefix))) {
        return true;
      }
    }
    return false;
  };
  if (!probe && qc_.contains("ignore") && !qc_["ignore"].is_null() && matches(qc_["ignore"], "ignore"))
    return float_layer("compressed-tensors ignore");
  const std::string global_format = lower(string_field(qc_, "format", "", file_));
  for (const auto& [name, group] : qc_["config_groups"].items()) {
    const std::string field = "config_groups." + name;
    if (probe ? prefix.substr(7) != name : !(group.is_object() && group.contains("targets") && matches(group["targets"], field + ".targets")))
      continue;
    if (!group.is_object()) fail(field, field + " must be an object");
    std::string format = lower(string_field(group, "format", global_format, file_));
    LayerQuant q;
    q.rule = "compressed-tensors " + name;
    const Json& w = group.contains("weights") ? group["weights"] : Json();
    if (w.is_null()) fail(field + ".weights", "a group without weight quantization is not supported");
    if (!w.is_object()) fail(field + ".weights", field + ".weights must be an object");
    const std::string type = lower(string_field(w, "type", "int", file_));
    if (type != "int" && type != "float")
      fail(field + ".weights.type", "compressed-tensors weight type '" + type + "' is not supported");
    q.bits = static_cast<int>(int_field(w, {"num_bits"}, 8, file_));
    q.sym = bool_field(w, "symmetric", true, file_);
    q.act_order = w.contains("actorder") && !w["actorder"].is_null() &&
                  !(w["actorder"].is_boolean() && !w["actorder"].get<bool>());
    const std::string strategy = lower(string_field(w, "strategy", w.contains("group_size") ? "group" : "tensor", file_));
    if (strategy == "group" && type == "int") {
      q.group_size = int_field(w, {"group_size"}, -1, file_);
      if (q.group_size <= 0) fail(field + ".weights.group_size", "strategy group needs a positive group_size");
    } else if (strategy == "channel" || strategy == "tensor") {
      q.group_size = -1;
    } else if (strategy == "block" && type == "float") {
      const Json& bs = w.contains("block_structure") ? w["block_structure"] : Json();
      if (bs.is_array() && bs.size() == 2 && bs[0].is_number_integer() && bs[1].is_number_integer()) {
        q.block_n = bs[0].get<int64_t>();
        q.block_k = bs[1].get<int64_t>();
      } else if (bs.is_string() && std::sscanf(bs.get<std::string>().c_str(), "%ldx%ld", &q.block_n, &q.block_k) == 2) {
      } else {
        fail(field + ".weights.block_structure", "block strategy needs block_structure [rows, cols]");
      }
      if (q.block_n <= 0 || q.block_k <= 0)
        fail(field + ".weights.block_structure", "block_structure sizes must be positive");
    } else {
      fail(field + ".weights.strategy", "weight strategy '" + strategy + "' is not supported for " + type +
                                        " weights (quanta reads group, channel and tensor; block for float)");
    }
    if (type == "float") {
      if (q.bits != 8 || !q.sym)
        fail(field + ".weights.num_bits", "float weights are supported as symmetric FP8 (8 bits, E4M3)");
      q.layout = HfLayout::kCtFp8;
    } else if (q.bits < 1 || q.bits > 8) {
      fail(field + ".weights.num_bits", "num_bits " + std::to_string(q.bits) + " is not 1..8");
    }
    const Json& a = group.contains("input_activations") ? group["input_activations"] : Json();
    if (!a.is_null()) {
      const bool dyn = a.contains("dynamic") && a["dynamic"].is_boolean() && a["dynamic"].get<bool>();
      const std::string atype = lower(string_field(a, "type", "int", file_));
      const std::string astrat = lower(string_field(a, "strategy", "tensor", file_));
      const bool a8sym = int_field(a, {"num_bits"}, 8, file_) == 8 && bool_field(a, "symmetric", true, file_);
      if (type == "int" && atype == "int" && a8sym && astrat == "token" && dyn) {
        q.act_dynamic8 = true;
      } else if (type == "float" && atype == "float" && a8sym && astrat == "token" && dyn) {
        q.fp8_act = Fp8Act::kToken;
      } else if (type == "float" && atype == "float" && a8sym && astrat == "group" && dyn) {
        q.fp8_act = Fp8Act::kGroup;
        q.act_group = int_field(a, {"group_size"}, 0, file_);
        if (q.act_group <= 0) fail(field + ".input_activations.group_size", "group activations need a group_size");
      } else if (type == "float" && atype == "float" && a8sym && astrat == "tensor" && !dyn) {
        q.fp8_act = Fp8Act::kStatic;
      } else {
        fail(field + ".input_activations",
             "activation quantization '" + atype + " " + astrat + (dyn ? " dynamic" : " static") + "' with " + type +
                 " weights is not supported (quanta runs int8 per-token dynamic with int weights, and FP8 per-token, "
                 "per-group dynamic or per-tensor static with FP8 weights)");
      }
      if (q.act_dynamic8 && group.contains("activation_use_clip") && group["activation_use_clip"].is_boolean() &&
          group["activation_use_clip"].get<bool>())
        fail(field + ".activation_use_clip", "W4A8 with activation clipping (Ascend's packed layout) is not supported");
    }
    if (group.contains("output_activations") && !group["output_activations"].is_null())
      fail(field + ".output_activations", "output activation quantization is not supported");
    const bool float_format = format == "float-quantized" || format == "naive-quantized";
    if (q.layout == HfLayout::kCtFp8 && !float_format)
      fail(group.contains("format") ? field + ".format" : "format",
           "FP8 weights in compressed-tensors format '" + format + "' are not supported (float-quantized)");
    if (q.layout == HfLayout::kCtFp8) {
    } else if (format == "pack-quantized") {
      q.layout = HfLayout::kCtPacked;
    } else if (format == "int-quantized" || format == "naive-quantized") {
      q.layout = HfLayout::kCtInt;
    } else {
      fail(group.contains("format") ? field + ".format" : "format",
           "compressed-tensors format '" + format + "' is not supported (quanta reads pack-quantized, "
           "int-quantized and naive-quantized integer weights, float-quantized FP8)");
    }
    return q;
  }
  return float_layer("no config group targets it");
}

}  // namespace quanta::quant
