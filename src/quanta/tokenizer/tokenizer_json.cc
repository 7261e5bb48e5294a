// tokenizer.json (Hugging Face tokenizers' serialization) -> Pipeline, and
// tokenizer_config.json (transformers) -> TokenizerConfig.
//
// Field names and defaults are those of tokenizers 0.23's serde definitions
// (normalizers/, pre_tokenizers/, models/bpe/serialization.rs, processors/,
// decoders/). Anything quanta does not implement is an Error naming the
// component, never a silent approximation.
#include <algorithm>

#include <nlohmann/json.hpp>

#include "quanta/core/error.h"
#include "quanta/core/json.h"
#include "quanta/tokenizer/tokenizer_impl.h"

namespace quanta::tokenizer {

namespace {

using nlohmann::json;

// Token ids may leave holes: up to twice the entry count, and any id below this.
constexpr int64_t kMinIdLimit = 1024;

// An integer JSON value as int64, values past INT64_MAX saturated.
int64_t as_int64(const json& v) {
  return v.is_number_unsigned() && v.get<uint64_t>() > INT64_MAX ? INT64_MAX : v.get<int64_t>();
}

[[noreturn]] void fail(const std::string& source, const std::string& field, const std::string& msg) {
  throw Error(msg, {.file = source, .field = field});
}

std::string get_string(const json& j, const char* key, const std::string& source, const std::string& where,
                       const std::string& fallback = std::string(), bool required = false) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) fail(source, where + "." + key, "missing");
    return fallback;
  }
  if (!it->is_string()) fail(source, where + "." + key, "expected a string, got " + std::string(it->type_name()));
  return it->get<std::string>();
}

bool get_bool(const json& j, const char* key, bool fallback, const std::string& source, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) fail(source, where + "." + key, "expected true or false");
  return it->get<bool>();
}

std::string type_of(const json& j, const std::string& source, const std::string& where) {
  if (!j.is_object()) fail(source, where, "expected an object");
  return get_string(j, "type", source, where, "", true);
}

// {"String": "..."} or {"Regex": "..."}.
std::shared_ptr<const Regex> parse_pattern(const json& j, const std::string& source, const std::string& where) {
  auto it = j.find("pattern");
  if (it == j.end() || !it->is_object()) fail(source, where + ".pattern", "expected {\"String\": ...} or {\"Regex\": ...}");
  if (it->contains("String") && (*it)["String"].is_string())
    return std::make_shared<const Regex>(Regex::literal((*it)["String"].get<std::string>()));
  if (it->contains("Regex") && (*it)["Regex"].is_string()) {
    try {
      return std::make_shared<const Regex>((*it)["Regex"].get<std::string>());
    } catch (const Error& e) {
      fail(source, where + ".pattern", e.message());
    }
  }
  fail(source, where + ".pattern", "expected {\"String\": ...} or {\"Regex\": ...}");
}

SplitBehavior parse_behavior(const json& j, const std::string& source, const std::string& where,
                             SplitBehavior fallback) {
  std::string b = get_string(j, "behavior", source, where);
  if (b.empty()) return fallback;
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return SplitBehavior::kContiguous;
  fail(source, where + ".behavior", "unknown split behavior '" + b + "'");
}

// Metaspace's prepend_scheme, or the legacy add_prefix_space flag.
PrependScheme parse_prepend_scheme(const json& j, const std::string& source, const std::string& where) {
  std::string s = get_string(j, "prepend_scheme", source, where);
  if (s.empty()) return get_bool(j, "add_prefix_space", true, source, where) ? PrependScheme::kAlways : PrependScheme::kNever;
  if (s == "always") return PrependScheme::kAlways;
  if (s == "first") return PrependScheme::kFirst;
  if (s == "never") return PrependScheme::kNever;
  fail(source, where + ".prepend_scheme", "unknown prepend scheme '" + s + "'");
}

void parse_normalizer(const json& j, const std::string& source, const std::string& where,
                      std::vector<NormalizerStep>& out) {
  if (j.is_null()) return;
  std::string type = type_of(j, source, where);
  using K = NormalizerStep::Kind;
  if (type == "Sequence") {
    const json& list = j.value("normalizers", json::array());
    for (size_t i = 0; i < list.size(); ++i)
      parse_normalizer(list[i], source, where + ".normalizers[" + std::to_string(i) + "]", out);
  } else if (type == "NFC") {
    out.push_back({K::kNfc});
  } else if (type == "NFD") {
    out.push_back({K::kNfd});
  } else if (type == "NFKC") {
    out.push_back({K::kNfkc});
  } else if (type == "NFKD") {
    out.push_back({K::kNfkd});
  } else if (type == "Lowercase") {
    out.push_back({K::kLowercase});
  } else if (type == "StripAccents") {
    out.push_back({K::kStripAccents});
  } else if (type == "Strip") {
    NormalizerStep s{K::kStrip};
    s.strip_left = get_bool(j, "strip_left", true, source, where);
    s.strip_right = get_bool(j, "strip_right", true, source, where);
    out.push_back(std::move(s));
  } else if (type == "Replace") {
    NormalizerStep s{K::kReplace};
    s.pattern = parse_pattern(j, source, where);
    s.content = get_string(j, "content", source, where, "", true);
    out.push_back(std::move(s));
  } else if (type == "Prepend") {
    NormalizerStep s{K::kPrepend};
    s.content = get_string(j, "prepend", source, where, "", true);
    out.push_back(std::move(s));
  } else if (type == "Precompiled") {
    // SentencePiece's compiled normalization rules; an empty map normalizes nothing.
    auto it = j.find("precompiled_charsmap");
    if (it != j.end() && !it->is_null() && !(it->is_string() && it->get<std::string>().empty()))
      fail(source, where, "the Precompiled (SentencePiece charsmap) normalizer is not supported");
  } else {
    fail(source, where, "normalizer '" + type + "' is not supported");
  }
}

void parse_pre_tokenizer(const json& j, const std::string& source, const std::string& where,
                         std::vector<PreTokenizerStep>& out) {
  if (j.is_null()) return;
  std::string type = type_of(j, source, where);
  using K = PreTokenizerStep::Kind;
  auto split = [&](const std::string& pattern, SplitBehavior behavior, bool invert) {
    PreTokenizerStep s{K::kSplit};
    s.pattern = std::make_shared<const Regex>(pattern);
    s.behavior = behavior;
    s.invert = invert;
    out.push_back(std::move(s));
  };
  if (type == "Sequence") {
    const json& list = j.value("pretokenizers", json::array());
    for (size_t i = 0; i < list.size(); ++i)
      parse_pre_tokenizer(list[i], source, where + ".pretokenizers[" + std::to_string(i) + "]", out);
  } else if (type == "Split") {
    PreTokenizerStep s{K::kSplit};
    s.pattern = parse_pattern(j, source, where);
    s.behavior = parse_behavior(j, source, where, SplitBehavior::kIsolated);
    s.invert = get_bool(j, "invert", false, source, where);
    out.push_back(std::move(s));
  } else if (type == "ByteLevel") {
    PreTokenizerStep s{K::kByteLevel};
    s.add_prefix_space = get_bool(j, "add_prefix_space", true, source, where);
    s.use_regex = get_bool(j, "use_regex", true, source, where);
    out.push_back(std::move(s));
  } else if (type == "Metaspace") {
    PreTokenizerStep s{K::kMetaspace};
    s.replacement = get_string(j, "replacement", source, where, "\xE2\x96\x81");
    s.prepend_scheme = parse_prepend_scheme(j, source, where);
    s.split = get_bool(j, "split", true, source, where);
    s.pattern = std::make_shared<const Regex>(Regex::literal(s.replacement));
    out.push_back(std::move(s));
  } else if (type == "Digits") {
    // char::is_numeric is \p{N}; contiguous digits are one run.
    split(get_bool(j, "individual_digits", false, source, where) ? "\\p{N}" : "\\p{N}+", SplitBehavior::kIsolated, false);
  } else if (type == "Punctuation") {
    // tokenizers' is_punc: ASCII punctuation or a Unicode punctuation category, one character at a time.
    split("[\\p{P}!-/:-@\\[-`{-~]", parse_behavior(j, source, where, SplitBehavior::kIsolated), false);
  } else if (type == "Whitespace") {
    split("\\w+|[^\\w\\s]+", SplitBehavior::kRemoved, true);
  } else if (type == "WhitespaceSplit") {
    split("\\s", SplitBehavior::kRemoved, false);
  } else if (type == "CharDelimiterSplit") {
    PreTokenizerStep s{K::kSplit};
    s.pattern = std::make_shared<const Regex>(Regex::literal(get_string(j, "delimiter", source, where, "", true)));
    s.behavior = SplitBehavior::kRemoved;
    out.push_back(std::move(s));
  } else {
    fail(source, where, "pre-tokenizer '" + type + "' is not supported");
  }
}

void parse_decoder(const json& j, const std::string& source, const std::string& where, std::vector<DecoderStep>& out) {
  std::string type = type_of(j, source, where);
  using K = DecoderStep::Kind;
  if (type == "Sequence") {
    const json& list = j.value("decoders", json::array());
    for (size_t i = 0; i < list.size(); ++i)
      parse_decoder(list[i], source, where + ".decoders[" + std::to_string(i) + "]", out);
  } else if (type == "ByteLevel") {
    out.push_back({K::kByteLevel});
  } else if (type == "Metaspace") {
    DecoderStep d{K::kMetaspace};
    d.content = get_string(j, "replacement", source, where, "\xE2\x96\x81");
    d.prepend_scheme = parse_prepend_scheme(j, source, where);
    out.push_back(std::move(d));
  } else if (type == "ByteFallback") {
    out.push_back({K::kByteFallback});
  } else if (type == "Fuse") {
    out.push_back({K::kFuse});
  } else if (type == "Strip") {
    DecoderStep d{K::kStrip};
    d.content = get_string(j, "content", source, where, " ");
    d.start = j.value("start", size_t{0});
    d.stop = j.value("stop", size_t{0});
    out.push_back(std::move(d));
  } else if (type == "Replace") {
    DecoderStep d{K::kReplace};
    d.pattern = parse_pattern(j, source, where);
    d.content = get_string(j, "content", source, where, "", true);
    out.push_back(std::move(d));
  } else {
    fail(source, where, "decoder '" + type + "' is not supported");
  }
}

// Ids a TemplateProcessing item list puts around sequence A.
void parse_template(const json& j, const json& special_tokens, const std::string& source, const std::string& where,
                    PostProcessor& post) {
  if (!j.is_array()) fail(source, where, "expected a list of template pieces");
  bool seen_a = false;
  for (const json& item : j) {
    if (item.contains("Sequence")) {
      seen_a = true;
    } else if (item.contains("SpecialToken")) {
      std::string name = get_string(item["SpecialToken"], "id", source, where, "", true);
      auto it = special_tokens.find(name);
      if (it == special_tokens.end() || !it->contains("ids"))
        fail(source, where, "template names special token '" + name + "', which special_tokens does not define");
      for (const json& id : (*it)["ids"]) (seen_a ? post.suffix : post.prefix).push_back(id.get<int32_t>());
    } else {
      fail(source, where, "unknown template piece " + item.dump());
    }
  }
}

void parse_post_processor(const json& j, const std::string& source, const std::string& where, PostProcessor& post) {
  if (j.is_null()) return;
  std::string type = type_of(j, source, where);
  if (type == "Sequence") {
    const json& list = j.value("processors", json::array());
    for (size_t i = 0; i < list.size(); ++i)
      parse_post_processor(list[i], source, where + ".processors[" + std::to_string(i) + "]", post);
  } else if (type == "TemplateProcessing") {
    parse_template(j.value("single", json::array()), j.value("special_tokens", json::object()), source,
                   where + ".single", post);
  } else if (type == "ByteLevel") {
    // Only trims offsets; ids are unchanged.
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    const json& cls = j.at("cls");
    const json& sep = j.at("sep");
    post.prefix.insert(post.prefix.begin(), cls.at(1).get<int32_t>());
    post.suffix.push_back(sep.at(1).get<int32_t>());
  } else {
    fail(source, where, "post-processor '" + type + "' is not supported");
  }
}

void parse_model(const json& m, const std::string& source, Pipeline& p) {
  if (!m.is_object()) fail(source, "model", "expected an object");
  std::string type = get_string(m, "type", source, "model", "BPE");
  if (type != "BPE")
    fail(source, "model.type", "model '" + type + "' is not supported (quanta implements BPE tokenizers)");
  if (m.contains("dropout") && !m["dropout"].is_null() && m["dropout"].get<double>() != 0.0)
    fail(source, "model.dropout", "BPE dropout is for training; a dropout tokenizer is not deterministic");
  BpeOptions o;
  std::string unk = get_string(m, "unk_token", source, "model");
  if (!unk.empty()) o.unk_token = unk;
  o.continuing_subword_prefix = get_string(m, "continuing_subword_prefix", source, "model");
  o.end_of_word_suffix = get_string(m, "end_of_word_suffix", source, "model");
  o.fuse_unk = get_bool(m, "fuse_unk", false, source, "model");
  o.byte_fallback = get_bool(m, "byte_fallback", false, source, "model");
  o.ignore_merges = get_bool(m, "ignore_merges", false, source, "model");

  const json& vocab = m.value("vocab", json::object());
  if (!vocab.is_object()) fail(source, "model.vocab", "expected an object of token: id");
  std::vector<std::pair<std::string, int32_t>> v;
  v.reserve(vocab.size());
  // Ids index dense tables: one far past the entry count (10^8 among a few entries) would take GBs.
  const int64_t id_limit = std::max<int64_t>(2 * static_cast<int64_t>(vocab.size()), kMinIdLimit);
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer()) fail(source, "model.vocab", "id of '" + it.key() + "' is not an integer");
    const int64_t id = as_int64(it.value());
    if (id < 0 || id >= id_limit)
      fail(source, "model.vocab", "id " + it.value().dump() + " of '" + it.key() + "' is out of range for " +
                                      std::to_string(vocab.size()) + " entries (at most " + std::to_string(id_limit - 1) + ")");
    v.emplace_back(it.key(), static_cast<int32_t>(id));
  }
  const json& merges = m.value("merges", json::array());
  if (!merges.is_array()) fail(source, "model.merges", "expected a list");
  std::vector<std::pair<std::string, std::string>> mm;
  mm.reserve(merges.size());
  for (const json& x : merges) {
    if (x.is_string()) {
      // Legacy "a b": split at the first space, as tokenizers does.
      const std::string& s = x.get_ref<const std::string&>();
      size_t sp = s.find(' ');
      if (sp == std::string::npos) fail(source, "model.merges", "merge '" + s + "' has no space");
      mm.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (x.is_array() && x.size() == 2 && x[0].is_string() && x[1].is_string()) {
      mm.emplace_back(x[0].get<std::string>(), x[1].get<std::string>());
    } else {
      fail(source, "model.merges", "expected \"a b\" or [\"a\", \"b\"], got " + x.dump());
    }
  }
  try {
    p.model.init(std::move(v), mm, std::move(o));
  } catch (const Error& e) {
    fail(source, e.context().field, e.message());
  }
}

}  // namespace

void parse_tokenizer_json(std::string_view json_text, const std::string& source, Tokenizer::Impl& impl) {
  const json j = parse_json(json_text, {.file = source});
  if (!j.is_object()) throw Error("expected a JSON object at the top level", {.file = source});
  Pipeline& p = impl.pipeline;
  try {
    parse_model(j.value("model", json()), source, p);
    parse_normalizer(j.value("normalizer", json()), source, "normalizer", p.normalizers);
    parse_pre_tokenizer(j.value("pre_tokenizer", json()), source, "pre_tokenizer", p.pre_tokenizers);
    parse_post_processor(j.value("post_processor", json()), source, "post_processor", p.post);
    if (j.contains("decoder") && !j["decoder"].is_null()) {
      parse_decoder(j["decoder"], source, "decoder", p.decoders);
      p.has_decoder = true;
    }
    const json& added = j.value("added_tokens", json::array());
    if (!added.is_array()) fail(source, "added_tokens", "expected a list");
    const int64_t id_limit =
        std::max<int64_t>(2 * (static_cast<int64_t>(p.model.id_end()) + static_cast<int64_t>(added.size())), kMinIdLimit);
    for (size_t i = 0; i < added.size(); ++i) {
      const json& a = added[i];
      std::string where = "added_tokens[" + std::to_string(i) + "]";
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer())
        fail(source, where, "expected an object with an integer id");
      AddedToken t;
      const int64_t id = as_int64(a["id"]);
      if (id < 0) fail(source, where + ".id", "negative id");
      if (id >= id_limit)
        fail(source, where + ".id", "id " + a["id"].dump() + " is out of range (at most " + std::to_string(id_limit - 1) + ")");
      t.id = static_cast<int32_t>(id);
      t.content = get_string(a, "content", source, where, "", true);
      t.single_word = get_bool(a, "single_word", false, source, where);
      t.lstrip = get_bool(a, "lstrip", false, source, where);
      t.rstrip = get_bool(a, "rstrip", false, source, where);
      t.normalized = get_bool(a, "normalized", true, source, where);
      t.special = get_bool(a, "special", false, source, where);
      p.added.add(std::move(t));
    }
  } catch (const json::exception& e) {
    throw Error(std::string("malformed tokenizer: ") + e.what(), {.file = source});
  }
  p.added.build([&p](std::string_view s) { return p.normalize(s); });
}

void parse_pre_tokenizer_json(std::string_view json_text, const std::string& source,
                              std::vector<PreTokenizerStep>& out) {
  try {
    parse_pre_tokenizer(parse_json(json_text, {.file = source}), source, "pre_tokenizer", out);
  } catch (const json::exception& e) {
    throw Error(std::string("malformed pre-tokenizer: ") + e.what(), {.file = source});
  }
}

void parse_tokenizer_config(std::string_view json_text, const std::string& source, TokenizerConfig& c) {
  const json j = parse_json(json_text, {.file = source});
  if (!j.is_object()) throw Error("expected a JSON object at the top level", {.file = source});
  // Special tokens are a string or an AddedToken-like object {"content": ...}.
  auto token = [&](const char* key) -> std::optional<std::string> {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::nullopt;
    if (it->is_string()) return it->get<std::string>();
    if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
      return (*it)["content"].get<std::string>();
    throw Error("expected a string or {\"content\": ...}", {.file = source, .field = key});
  };
  c.bos_token = token("bos_token");
  c.eos_token = token("eos_token");
  c.pad_token = token("pad_token");
  c.unk_token = token("unk_token");
  auto flag = [&](const char* key) -> std::optional<bool> {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::nullopt;
    if (!it->is_boolean()) throw Error("expected true or false", {.file = source, .field = key});
    return it->get<bool>();
  };
  c.add_bos_token = flag("add_bos_token");
  c.add_eos_token = flag("add_eos_token");
  auto ct = j.find("chat_template");
  if (ct != j.end() && !ct->is_null()) {
    if (ct->is_string()) {
      c.chat_template = ct->get<std::string>();
    } else if (ct->is_array()) {
      // [{"name": "default", "template": "..."}, {"name": "tool_use", ...}]
      for (const json& e : *ct) {
        if (!e.is_object() || !e.contains("name") || !e.contains("template") || !e["name"].is_string() ||
            !e["template"].is_string())
          throw Error("expected a list of {\"name\", \"template\"}", {.file = source, .field = "chat_template"});
        c.chat_templates[e["name"].get<std::string>()] = e["template"].get<std::string>();
      }
      auto d = c.chat_templates.find("default");
      if (d != c.chat_templates.end()) c.chat_template = d->second;
    } else {
      throw Error("expected a string or a list", {.file = source, .field = "chat_template"});
    }
  }
}

}  // namespace quanta::tokenizer
