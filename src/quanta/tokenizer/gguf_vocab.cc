#include "quanta/tokenizer/gguf_vocab.h"

#include <algorithm>
#include <map>
#include <unordered_map>

#include "quanta/core/error.h"
#include "quanta/tokenizer/unicode.h"

namespace quanta::tokenizer {

namespace {

// --- Pre-tokenizers of the byte-level families, by tokenizer.ggml.pre --------
//
// Written in tokenizer.json syntax and parsed by the same code as a Hugging
// Face folder. The regexes are those of each family's tokenizer.json, as
// llama.cpp's src/llama-vocab.cpp (llm_tokenizer_bpe) quotes them; where
// llama.cpp rewrites a pattern for its own regex engine, the original is used,
// since PCRE2 runs it as is.

#define QUANTA_BYTE_LEVEL R"({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false})"
#define QUANTA_SPLIT(re) R"({"type": "Split", "pattern": {"Regex": ")" re R"("}, "behavior": "Isolated", "invert": false})"

// GPT-2 byte-level with its built-in regex (gpt-2, mpt, olmo, jina, roberta-bpe, ...).
constexpr const char* kGpt2 = R"({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true})";

// Llama 3 (meta-llama/Meta-Llama-3-8B tokenizer.json).
constexpr const char* kLlama3 = R"({"type": "Sequence", "pretokenizers": [)" QUANTA_SPLIT(
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+)") ", " QUANTA_BYTE_LEVEL "]}";

// Qwen2 / Qwen2.5 / Qwen3 (Qwen/Qwen2-7B tokenizer.json): single digits.
constexpr const char* kQwen2 = R"({"type": "Sequence", "pretokenizers": [)" QUANTA_SPLIT(
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+)") ", " QUANTA_BYTE_LEVEL "]}";

// Qwen3.5: combining marks join letters.
constexpr const char* kQwen35 = R"({"type": "Sequence", "pretokenizers": [)" QUANTA_SPLIT(
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+)") ", " QUANTA_BYTE_LEVEL "]}";

// Mistral Tekken.
constexpr const char* kTekken = R"({"type": "Sequence", "pretokenizers": [)" QUANTA_SPLIT(
    R"([^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+)") ", " QUANTA_BYTE_LEVEL "]}";

// GPT-4o / Llama 4.
constexpr const char* kGpt4o = R"({"type": "Sequence", "pretokenizers": [)" QUANTA_SPLIT(
    R"([^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+)") ", " QUANTA_BYTE_LEVEL "]}";

// DeepSeek LLM: the letter class is Unicode's cased letters (written out by
// DeepSeek; code points here for legibility).
constexpr const char* kDeepseekLlm = R"({"type": "Sequence", "pretokenizers": [)"
    QUANTA_SPLIT(R"([\\r\\n])") ", "
    QUANTA_SPLIT(R"(\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}]+)") ", "
    QUANTA_SPLIT(R"(\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+)") ", "
    QUANTA_SPLIT(R"(\\s+$)") ", "
    QUANTA_SPLIT(R"([\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+)") ", "
    R"({"type": "Digits", "individual_digits": false}, )" QUANTA_BYTE_LEVEL "]}";

// DeepSeek Coder.
constexpr const char* kDeepseekCoder = R"({"type": "Sequence", "pretokenizers": [)"
    QUANTA_SPLIT(R"([\\r\\n])") ", "
    QUANTA_SPLIT(R"(\\s?\\p{L}+)") ", "
    QUANTA_SPLIT(R"(\\s?\\p{P}+)") ", "
    QUANTA_SPLIT(R"([\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+)") ", "
    R"({"type": "Digits", "individual_digits": true}, )" QUANTA_BYTE_LEVEL "]}";

// DeepSeek V3 / R1.
constexpr const char* kDeepseekV3 = R"({"type": "Sequence", "pretokenizers": [)"
    QUANTA_SPLIT(R"(\\p{N}{1,3})") ", "
    QUANTA_SPLIT(R"([\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+)") ", "
    QUANTA_SPLIT(R"([!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+)") ", "
    QUANTA_BYTE_LEVEL "]}";

// Falcon (tiiuae/falcon-7b tokenizer.json).
constexpr const char* kFalcon = R"({"type": "Sequence", "pretokenizers": [
    {"type": "Punctuation", "behavior": "Contiguous"},
    {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
    {"type": "Digits", "individual_digits": false},
    )" QUANTA_SPLIT(R"([0-9][0-9][0-9])") "]}";

// StarCoder, Refact, Command-R, SmolLM: single digits, then GPT-2.
constexpr const char* kStarcoder = R"({"type": "Sequence", "pretokenizers": [
    {"type": "Digits", "individual_digits": true},
    {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]})";

#undef QUANTA_SPLIT
#undef QUANTA_BYTE_LEVEL

struct PreType {
  const char* json;
  bool ignore_merges = false;  // llama.cpp sets tokenizer_ignore_merges for the Llama 3 group
  bool nfc = false;            // Qwen's tokenizer.json normalizes to NFC first
  bool add_bos = false;        // llama.cpp's default when the file has no add_bos_token
};

const std::map<std::string, PreType>& pre_types() {
  // Names as llama.cpp's llama_vocab::impl::load maps them (src/llama-vocab.cpp).
  static const std::map<std::string, PreType> table = {
      {"default", {kGpt2}},         {"gpt-2", {kGpt2}},          {"phi-2", {kGpt2}},
      {"mpt", {kGpt2}},             {"olmo", {kGpt2}},           {"jais", {kGpt2}},
      {"roberta-bpe", {kGpt2}},     {"jina-es", {kGpt2}},        {"jina-de", {kGpt2}},
      {"jina-v2-es", {kGpt2}},      {"jina-v2-de", {kGpt2}},     {"jina-v2-code", {kGpt2}},
      {"gigachat", {kGpt2}},        {"trillion", {kGpt2}},
      {"llama3", {kLlama3, true, false, true}},    {"llama-v3", {kLlama3, true, false, true}},
      {"llama-bpe", {kLlama3, true, false, true}}, {"falcon3", {kLlama3, true, false, true}},
      {"smaug-bpe", {kLlama3}},     {"dbrx", {kLlama3}},         {"chatglm-bpe", {kLlama3}},
      {"qwen2", {kQwen2, false, true}},            {"deepseek-r1-qwen", {kQwen2, false, true}},
      {"stablelm2", {kQwen2}},      {"megrez", {kQwen2, false, true}},
      {"qwen35", {kQwen35, false, true}},
      {"tekken", {kTekken}},        {"gpt-4o", {kGpt4o}},        {"llama4", {kGpt4o}},
      {"deepseek-llm", {kDeepseekLlm}},            {"deepseek-coder", {kDeepseekCoder}},
      {"deepseek-v3", {kDeepseekV3}},
      {"falcon", {kFalcon}},
      {"starcoder", {kStarcoder}},  {"refact", {kStarcoder}},    {"command-r", {kStarcoder}},
      {"smollm", {kStarcoder}},     {"codeshell", {kStarcoder}},
  };
  return table;
}

[[noreturn]] void fail(const GgufVocab& v, const std::string& key, const std::string& msg) {
  throw Error(msg, {.file = v.source, .field = key});
}

int32_t type_of(const GgufVocab& v, size_t i) {
  return i < v.token_types.size() ? v.token_types[i] : kGgufTokenNormal;
}

std::vector<std::pair<std::string, int32_t>> vocab_pairs(const std::vector<std::string>& tokens) {
  std::vector<std::pair<std::string, int32_t>> pairs;
  pairs.reserve(tokens.size());
  // A later duplicate must not steal the id of an earlier entry: keep the first.
  std::unordered_map<std::string_view, bool> seen;
  seen.reserve(tokens.size() * 2);
  for (size_t i = 0; i < tokens.size(); ++i)
    if (seen.emplace(tokens[i], true).second) pairs.emplace_back(tokens[i], static_cast<int32_t>(i));
  return pairs;
}

// Python's `not s.strip()`: nothing but whitespace.
bool trim_is_empty(std::string_view s) {
  size_t i = 0;
  while (i < s.size())
    if (!is_whitespace(utf8_next(s, i))) return false;
  return true;
}

int64_t code_points(std::string_view s) {
  int64_t n = 0;
  for (char c : s) n += (static_cast<uint8_t>(c) & 0xC0) != 0x80;
  return n;
}

// transformers' generate_merges(vocab, vocab_scores): every split of a token into
// two vocabulary entries is a merge; merges are ordered by the token's score,
// then longer left part, then longer right part (descending, stable), and within
// one token by the ids of the parts.
std::vector<std::pair<std::pair<std::string, std::string>, uint32_t>> generate_merges(
    const std::vector<std::string>& tokens, const std::vector<double>& scores) {
  std::unordered_map<std::string_view, int32_t> vocab;  // last occurrence wins, as in a Python dict
  vocab.reserve(tokens.size() * 2);
  for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = static_cast<int32_t>(i);
  struct Cand {
    uint32_t left, right;  // token indices of the parts
    double score;
    int64_t len_left, len_right;
  };
  // A cut can only match if both parts have the byte length of some entry. Real vocabularies
  // have a few dozen lengths, so a token of 400 KB costs a few dozen lookups instead of one
  // per byte, each hashing the whole token (29 s). The bytes hashed are also capped, so a
  // crafted vocabulary of every length is refused instead of taking hours.
  std::vector<size_t> lengths;  // distinct entry lengths, ascending
  {
    size_t longest = 0;
    for (const auto& t : tokens) longest = std::max(longest, t.size());
    std::vector<bool> seen(longest + 1);
    for (const auto& t : tokens) seen[t.size()] = true;
    for (size_t n = 1; n <= longest; ++n)
      if (seen[n]) lengths.push_back(n);
  }
  std::vector<bool> is_length;
  if (!lengths.empty()) is_length.assign(lengths.back() + 1, false);
  for (size_t n : lengths) is_length[n] = true;
  constexpr uint64_t kMaxHashedBytes = uint64_t{1} << 32;  // real vocabularies: < 10^8
  uint64_t hashed = 0;
  std::vector<Cand> cands;
  std::vector<Cand> local;
  for (size_t t = 0; t < tokens.size(); ++t) {
    if (vocab[tokens[t]] != static_cast<int32_t>(t)) continue;  // the dict holds each spelling once
    std::string_view s = tokens[t];
    local.clear();
    for (size_t cut : lengths) {
      if (cut >= s.size()) break;
      if (!is_length[s.size() - cut]) continue;
      if ((static_cast<uint8_t>(s[cut]) & 0xC0) == 0x80) continue;  // split between characters only
      hashed += s.size();
      if (hashed > kMaxHashedBytes)
        throw Error("the vocabulary is too large to derive its merges from (over " +
                    std::to_string(kMaxHashedBytes) + " bytes of lookups)");
      auto l = vocab.find(s.substr(0, cut));
      auto r = vocab.find(s.substr(cut));
      if (l == vocab.end() || r == vocab.end()) continue;
      hashed += s.size();  // code_points below
      local.push_back(Cand{static_cast<uint32_t>(l->second), static_cast<uint32_t>(r->second), scores[t],
                           code_points(s.substr(0, cut)), code_points(s.substr(cut))});
    }
    std::sort(local.begin(), local.end(),
              [](const Cand& a, const Cand& b) { return a.left != b.left ? a.left < b.left : a.right < b.right; });
    cands.insert(cands.end(), local.begin(), local.end());
  }
  std::stable_sort(cands.begin(), cands.end(), [](const Cand& a, const Cand& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.len_left != b.len_left) return a.len_left > b.len_left;
    return a.len_right > b.len_right;
  });
  std::vector<std::pair<std::pair<std::string, std::string>, uint32_t>> merges;
  merges.reserve(cands.size());
  for (size_t i = 0; i < cands.size(); ++i)
    merges.push_back({{tokens[cands[i].left], tokens[cands[i].right]}, static_cast<uint32_t>(i)});
  return merges;
}

void add_special_tokens(const GgufVocab& v, const std::vector<std::string>& tokens, Pipeline& p,
                        bool byte_level) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    int32_t type = type_of(v, i);
    if (type != kGgufTokenControl && type != kGgufTokenUserDefined && type != kGgufTokenUnknown) continue;
    if (tokens[i].empty()) continue;
    AddedToken t;
    t.content = tokens[i];
    t.id = static_cast<int32_t>(i);
    t.normalized = false;
    t.special = type != kGgufTokenUserDefined;
    if (!byte_level && type == kGgufTokenUserDefined && tokens[i] != v.tokens[i]) continue;  // respelled (Gemma)
    p.added.add(std::move(t));
  }
}

void parse_pre(const char* json, const std::string& source, Pipeline& p) {
  parse_pre_tokenizer_json(json, source, p.pre_tokenizers);
}

void build_byte_level(const GgufVocab& v, Tokenizer::Impl& impl) {
  Pipeline& p = impl.pipeline;
  auto it = pre_types().find(v.pre.empty() ? "default" : v.pre);
  if (it == pre_types().end()) {
    std::string names;
    for (const auto& [name, _] : pre_types()) names += (names.empty() ? "" : ", ") + name;
    fail(v, "tokenizer.ggml.pre", "pre-tokenizer type '" + v.pre + "' is not supported (supported: " + names + ")");
  }
  const PreType& pre = it->second;
  if (pre.nfc) p.normalizers.push_back({NormalizerStep::Kind::kNfc});
  parse_pre(pre.json, v.source, p);
  BpeOptions o;
  o.ignore_merges = pre.ignore_merges;
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(v.merges.size());
  for (const std::string& m : v.merges) {
    size_t sp = m.find(' ', 1);  // a merge's left part is never empty
    if (sp == std::string::npos) fail(v, "tokenizer.ggml.merges", "merge '" + m + "' has no space");
    merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
  }
  try {
    p.model.init(vocab_pairs(v.tokens), merges, o);
  } catch (const Error& e) {
    fail(v, "tokenizer.ggml.merges", e.message());
  }
  add_special_tokens(v, v.tokens, p, /*byte_level=*/true);
  p.decoders.push_back({DecoderStep::Kind::kByteLevel});
  p.has_decoder = true;
  if (!v.add_bos && pre.add_bos) impl.config.add_bos_token = true;
}

void build_sentencepiece(const GgufVocab& v, Tokenizer::Impl& impl) {
  Pipeline& p = impl.pipeline;
  const std::string& arch = v.architecture;
  const bool gemma = arch == "gemma" || arch == "gemma2" || arch == "gemma3" || arch == "gemma3n";
  if (v.scores.size() != v.tokens.size() && !gemma)
    fail(v, "tokenizer.ggml.scores", "a SentencePiece vocabulary needs one score per token (" +
                                         std::to_string(v.scores.size()) + " scores, " +
                                         std::to_string(v.tokens.size()) + " tokens)");
  std::vector<std::string> tokens = v.tokens;
  std::vector<double> scores(tokens.size());
  if (gemma) {
    // Gemma files store tokens of several spaces as spaces, and their scores do
    // not follow the merge order; the file order does (transformers' gemma_tokenizer).
    for (auto& t : tokens)
      if (t.find(' ') != std::string::npos && trim_is_empty(t)) t = [&] {
          std::string r;
          for (int64_t k = 0, n = code_points(t); k < n; ++k) r += "\xE2\x96\x81";
          return r;
        }();
    for (size_t i = 0; i < tokens.size(); ++i) scores[i] = -static_cast<double>(i);
  } else {
    for (size_t i = 0; i < tokens.size(); ++i) scores[i] = v.scores[i];
  }
  BpeOptions o;
  o.byte_fallback = true;
  o.fuse_unk = true;
  if (v.unk_id && *v.unk_id >= 0 && static_cast<size_t>(*v.unk_id) < tokens.size()) o.unk_token = tokens[*v.unk_id];
  try {
    p.model.init_ranked(vocab_pairs(tokens), generate_merges(tokens, scores), o);
  } catch (const Error& e) {
    fail(v, "tokenizer.ggml.tokens", e.message());
  }
  add_special_tokens(v, tokens, p, /*byte_level=*/false);

  using NK = NormalizerStep::Kind;
  using DK = DecoderStep::Kind;
  const std::string space = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space
  auto replace_space = [&] {
    NormalizerStep s{NK::kReplace};
    s.pattern = std::make_shared<const Regex>(Regex::literal(" "));
    s.content = space;
    return s;
  };
  DecoderStep to_space{DK::kReplace};
  to_space.pattern = std::make_shared<const Regex>(Regex::literal(space));
  to_space.content = " ";
  p.decoders = {to_space, {DK::kByteFallback}, {DK::kFuse}};
  const bool prefix_space = v.add_space_prefix.value_or(true) && !gemma;  // Gemma files say false
  if (gemma) {
    p.normalizers.push_back(replace_space());  // GemmaTokenizer: no prefix space
  } else {
    // SentencePiece's dummy prefix: a space before every text piece, even one
    // that starts with a space (" Hello" is "▁▁Hello"), as Llama 2's and Phi-3's
    // tokenizer.json (Prepend + Replace normalizers) and llama.cpp do.
    // transformers' GGUF converter uses Metaspace(prepend_scheme="first") for
    // Llama instead, which drops the prefix before a leading space and after
    // special tokens; it disagrees with the reference ids of llama.cpp's
    // ggml-vocab-llama-spm test, so the real tokenizer's shape is used.
    if (prefix_space) {
      NormalizerStep pre{NK::kPrepend};
      pre.content = space;
      p.normalizers.push_back(pre);
    }
    p.normalizers.push_back(replace_space());
  }
  if (prefix_space) {
    DecoderStep strip{DK::kStrip};
    strip.content = " ";
    strip.start = 1;
    p.decoders.push_back(strip);
  }
  p.has_decoder = true;
  // transformers adds BOS to a SentencePiece vocabulary that does not say otherwise.
  if (!v.add_bos) impl.config.add_bos_token = true;
}

}  // namespace

std::vector<std::string> supported_gguf_pre_types() {
  std::vector<std::string> names;
  for (const auto& [name, _] : pre_types()) names.push_back(name);
  return names;
}

void build_from_gguf(const GgufVocab& v, Tokenizer::Impl& impl) {
  if (v.tokens.empty()) fail(v, "tokenizer.ggml.tokens", "missing or empty: this GGUF file has no vocabulary");
  if (!v.token_types.empty() && v.token_types.size() != v.tokens.size())
    fail(v, "tokenizer.ggml.token_type", "has " + std::to_string(v.token_types.size()) + " entries for " +
                                             std::to_string(v.tokens.size()) + " tokens");
  impl.config.add_bos_token = v.add_bos;
  impl.config.add_eos_token = v.add_eos;
  if (v.model == "gpt2") build_byte_level(v, impl);
  else if (v.model == "llama") build_sentencepiece(v, impl);
  else
    fail(v, "tokenizer.ggml.model",
         "tokenizer model '" + v.model + "' is not supported (quanta reads 'gpt2' byte-level BPE and 'llama' SentencePiece)");
  Pipeline& p = impl.pipeline;
  p.added.build([&p](std::string_view s) { return p.normalize(s); });

  auto id_of = [&](const std::optional<int64_t>& id, const char* key) -> int32_t {
    if (!id) return -1;
    if (*id < 0 || *id >= static_cast<int64_t>(v.tokens.size()))
      fail(v, key, "id " + std::to_string(*id) + " is outside the vocabulary of " + std::to_string(v.tokens.size()));
    return static_cast<int32_t>(*id);
  };
  SpecialIds& s = impl.special;
  s.bos = id_of(v.bos_id, "tokenizer.ggml.bos_token_id");
  s.eos = id_of(v.eos_id, "tokenizer.ggml.eos_token_id");
  s.eot = id_of(v.eot_id, "tokenizer.ggml.eot_token_id");
  s.unk = id_of(v.unk_id, "tokenizer.ggml.unknown_token_id");
  s.pad = id_of(v.pad_id, "tokenizer.ggml.padding_token_id");
  TokenizerConfig& c = impl.config;
  c.chat_template = v.chat_template;
  if (s.bos >= 0) c.bos_token = v.tokens[s.bos];
  if (s.eos >= 0) c.eos_token = v.tokens[s.eos];
  if (s.pad >= 0) c.pad_token = v.tokens[s.pad];
  if (s.unk >= 0) c.unk_token = v.tokens[s.unk];
  PostProcessor& post = p.post;
  post = PostProcessor{};
  if (c.add_bos_token.value_or(false)) {
    if (s.bos < 0) fail(v, "tokenizer.ggml.add_bos_token", "is true, but tokenizer.ggml.bos_token_id is not set");
    post.prefix.push_back(s.bos);
  }
  if (c.add_eos_token.value_or(false)) {
    if (s.eos < 0) fail(v, "tokenizer.ggml.add_eos_token", "is true, but tokenizer.ggml.eos_token_id is not set");
    post.suffix.push_back(s.eos);
  }
}

}  // namespace quanta::tokenizer
