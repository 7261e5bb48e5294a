#include "quanta/tokenizer/tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "quanta/core/error.h"
#include "quanta/tokenizer/gguf_vocab.h"
#include "quanta/tokenizer/tokenizer_impl.h"
#include "quanta/tokenizer/unicode.h"

namespace quanta::tokenizer {

namespace fs = std::filesystem;

namespace {

std::string read_text_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw Error("cannot open", {.file = p.string()});
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error("cannot read", {.file = p.string()});
  return ss.str();
}

bool has_gguf_magic(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::string_view(magic, 4) == "GGUF";
}

// Tokens that end a chat turn in the supported families, most specific first.
constexpr const char* kEndOfTurnTokens[] = {"<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>",
                                            "<|end_of_turn|>", "<｜end▁of▁sentence｜>"};

}  // namespace

void finish_impl(Tokenizer::Impl& impl) {
  const Pipeline& p = impl.pipeline;
  int32_t n = p.model.id_end();
  for (const AddedToken& t : p.added.tokens()) n = std::max(n, t.id + 1);
  impl.vocab_size = n;

  auto lookup = [&](const std::optional<std::string>& content) -> int32_t {
    if (!content) return -1;
    if (const AddedToken* t = p.added.by_content(*content)) return t->id;
    if (auto id = p.model.token_to_id(*content)) return *id;
    return -1;
  };
  SpecialIds& s = impl.special;
  if (s.bos < 0) s.bos = lookup(impl.config.bos_token);
  if (s.eos < 0) s.eos = lookup(impl.config.eos_token);
  if (s.pad < 0) s.pad = lookup(impl.config.pad_token);
  if (s.unk < 0) s.unk = lookup(impl.config.unk_token);
  if (s.unk < 0 && p.model.options().unk_token) s.unk = lookup(p.model.options().unk_token);
  if (s.eot < 0)
    for (const char* name : kEndOfTurnTokens)
      if (int32_t id = lookup(std::string(name)); id >= 0) {
        s.eot = id;
        break;
      }
  if (s.eot < 0) s.eot = s.eos;
  impl.stop_ids.clear();
  for (int32_t id : {s.eos, s.eot})
    if (id >= 0 && std::find(impl.stop_ids.begin(), impl.stop_ids.end(), id) == impl.stop_ids.end())
      impl.stop_ids.push_back(id);
}

Tokenizer::Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_json(std::string_view tokenizer_json, std::string_view tokenizer_config_json,
                               const std::string& source) {
  auto impl = std::make_shared<Impl>();
  impl->source = source;
  parse_tokenizer_json(tokenizer_json, source, *impl);
  if (!tokenizer_config_json.empty()) {
    std::string config_source = (fs::path(source).parent_path() / "tokenizer_config.json").string();
    parse_tokenizer_config(tokenizer_config_json, config_source, impl->config);
  }
  finish_impl(*impl);
  // transformers (5.x, TokenizersBackend.update_post_processor) rebuilds the
  // post-processor as "[bos] $A [eos]" when tokenizer_config.json states
  // add_bos_token or add_eos_token, or when tokenizer.json has none.
  const TokenizerConfig& c = impl->config;
  if (c.add_bos_token || c.add_eos_token) {
    PostProcessor& post = impl->pipeline.post;
    post = PostProcessor{};
    if (c.add_bos_token.value_or(false) && impl->special.bos >= 0) post.prefix.push_back(impl->special.bos);
    if (c.add_eos_token.value_or(false) && impl->special.eos >= 0) post.suffix.push_back(impl->special.eos);
  }
  return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::from_gguf(const std::string& path) {
  auto impl = std::make_shared<Impl>();
  impl->source = path;
  build_from_gguf(read_gguf_vocab(path), *impl);
  finish_impl(*impl);
  return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::load(const std::string& path) {
  fs::path p(path);
  std::error_code ec;
  if (fs::is_directory(p, ec)) {
    fs::path tj = p / "tokenizer.json";
    if (!fs::exists(tj)) {
      // A folder holding one GGUF file is accepted as that file.
      fs::path gguf;
      int count = 0;
      for (const auto& e : fs::directory_iterator(p, ec))
        if (e.path().extension() == ".gguf") gguf = e.path(), ++count;
      if (count == 1) return from_gguf(gguf.string());
      throw Error("no tokenizer.json in this folder (quanta reads Hugging Face tokenizer.json or a GGUF file)",
                  {.file = path});
    }
    fs::path tc = p / "tokenizer_config.json";
    std::string config = fs::exists(tc) ? read_text_file(tc) : std::string();
    return from_json(read_text_file(tj), config, tj.string());
  }
  if (!fs::exists(p, ec)) throw Error("no such file or folder", {.file = path});
  if (has_gguf_magic(p)) return from_gguf(path);
  if (p.extension() == ".json") {
    fs::path tc = p.parent_path() / "tokenizer_config.json";
    std::string config = fs::exists(tc) ? read_text_file(tc) : std::string();
    return from_json(read_text_file(p), config, p.string());
  }
  throw Error("not a tokenizer: expected a Hugging Face folder, a tokenizer.json or a GGUF file", {.file = path});
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  size_t bad = utf8_validate(text);
  if (bad != std::string_view::npos)
    throw Error("text is not valid UTF-8 (invalid byte 0x" +
                [&] {
                  static const char* hex = "0123456789abcdef";
                  auto b = static_cast<uint8_t>(text[bad]);
                  return std::string{hex[b >> 4], hex[b & 15]};
                }() +
                " at byte offset " + std::to_string(bad) + ")");
  const Pipeline& p = impl_->pipeline;
  std::vector<int32_t> ids;
  if (add_special) ids = p.post.prefix;
  p.encode(text, parse_special, ids);
  if (add_special) ids.insert(ids.end(), p.post.suffix.begin(), p.post.suffix.end());
  return ids;
}

namespace {
std::string decode_ids(const Tokenizer::Impl& impl, std::span<const int32_t> ids, bool skip_special,
                       bool continuation) {
  const Pipeline& p = impl.pipeline;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || id >= impl.vocab_size)
      throw Error("token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                  std::to_string(impl.vocab_size - 1) + ")");
    if (const AddedToken* t = p.added.by_id(id)) {
      if (skip_special && t->special) continue;
      tokens.push_back(t->content);
    } else if (const std::string* s = p.model.id_to_token(id)) {
      tokens.push_back(*s);
    }
  }
  return p.decode_tokens(std::move(tokens), /*raw=*/false, continuation);
}
}  // namespace

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  return decode_ids(*impl_, ids, skip_special, /*continuation=*/false);
}

std::string Tokenizer::token_to_piece(int32_t id) const {
  const Pipeline& p = impl_->pipeline;
  if (const AddedToken* t = p.added.by_id(id)) return t->content;
  if (const std::string* s = p.model.id_to_token(id)) return *s;
  throw Error("token id " + std::to_string(id) + " is not in the vocabulary");
}

std::string Tokenizer::token_bytes(int32_t id) const {
  const Pipeline& p = impl_->pipeline;
  std::string piece;
  if (const AddedToken* t = p.added.by_id(id)) {
    if (t->special) return std::string();
    piece = t->content;
  } else if (const std::string* s = p.model.id_to_token(id)) {
    piece = *s;
  } else {
    return std::string();
  }
  return p.decode_tokens({piece}, /*raw=*/true, /*continuation=*/true);
}

std::vector<std::string> Tokenizer::vocab_bytes() const {
  std::vector<std::string> out(static_cast<size_t>(vocab_size()));
  for (int32_t id = 0; id < vocab_size(); ++id) out[static_cast<size_t>(id)] = token_bytes(id);
  return out;
}

std::optional<int32_t> Tokenizer::piece_to_token(std::string_view piece) const {
  const Pipeline& p = impl_->pipeline;
  if (const AddedToken* t = p.added.by_content(piece)) return t->id;
  return p.model.token_to_id(piece);
}

int32_t Tokenizer::vocab_size() const { return impl_->vocab_size; }

bool Tokenizer::is_special(int32_t id) const {
  const AddedToken* t = impl_->pipeline.added.by_id(id);
  return t && t->special;
}

const SpecialIds& Tokenizer::special_ids() const { return impl_->special; }
const std::vector<int32_t>& Tokenizer::stop_ids() const { return impl_->stop_ids; }
const TokenizerConfig& Tokenizer::config() const { return impl_->config; }

// ---------------------------------------------------------------------------
// StreamDecoder: the DecodeStream algorithm of tokenizers (decode a window that
// starts with already emitted context; emit what grew, unless it ends in U+FFFD).

namespace {
constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
// A character is at most 4 bytes: after this many undecided tokens the
// replacement characters are real (invalid bytes), not an incomplete character.
constexpr size_t kMaxPendingTokens = 8;
}  // namespace

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(&tokenizer), skip_special_(skip_special) {}

std::string StreamDecoder::step(int32_t id) {
  ids_.push_back(id);
  std::string text = decode_ids(tokenizer_->impl(), ids_, skip_special_, !at_start_);
  bool incomplete = text.size() >= kReplacement.size() &&
                    text.compare(text.size() - kReplacement.size(), kReplacement.size(), kReplacement) == 0;
  if (text.size() <= prefix_text_.size() || (incomplete && ids_.size() - prefix_count_ < kMaxPendingTokens))
    return std::string();
  return advance(text);
}

std::string StreamDecoder::flush() {
  if (ids_.size() <= prefix_count_) return std::string();
  return advance(decode_ids(tokenizer_->impl(), ids_, skip_special_, !at_start_));
}

std::string StreamDecoder::advance(const std::string& text) {
  // Decoders only append to a window's text; were one to rewrite it, the cut
  // still lands on a character boundary, so the output stays valid UTF-8.
  size_t cut = prefix_text_.size();
  while (cut < text.size() && (static_cast<uint8_t>(text[cut]) & 0xC0) == 0x80) ++cut;
  std::string out = cut < text.size() ? text.substr(cut) : std::string();
  // The new context: the ids that produced `out`. Once the window has moved past
  // the first id, it is decoded as a continuation (no start-of-text rules).
  if (prefix_count_ > 0) at_start_ = false;
  ids_.erase(ids_.begin(), ids_.begin() + static_cast<std::ptrdiff_t>(prefix_count_));
  prefix_count_ = ids_.size();
  prefix_text_ = decode_ids(tokenizer_->impl(), ids_, skip_special_, !at_start_);
  return out;
}

}  // namespace quanta::tokenizer
