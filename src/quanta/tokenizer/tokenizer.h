// Tokenizer: text <-> token ids for the model families quanta runs.
//
// Built from a Hugging Face folder (tokenizer.json + tokenizer_config.json) or
// from the tokenizer metadata of a GGUF file (a vocabulary-only GGUF too). Both
// become the same pipeline (quanta/tokenizer/pipeline.h): normalizers, added
// tokens, pre-tokenizers, a BPE model, a post-processor and decoders, with the
// semantics of the Hugging Face `tokenizers` library, which the golden tests
// hold it to (tests/unit/data/tokenizers/, made by tools/make_tokenizer_fixtures.py).
//
// Invariants and choices:
//   - encode() takes UTF-8. Invalid UTF-8 is rejected with an Error naming the
//     byte offset (the reference library accepts only Python str, so there is no
//     reference behaviour to copy, and silently replacing bytes would hide bugs).
//   - decode() always returns valid UTF-8; ids outside the vocabulary are an Error.
//   - A Tokenizer is immutable after loading and safe to use from many threads;
//     copies share the loaded data.
// Non-goals: WordPiece (BERT) and Unigram (T5) models, training, offsets.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace quanta::tokenizer {

struct Pipeline;

// What tokenizer_config.json (or the GGUF metadata) says around the vocabulary.
struct TokenizerConfig {
  // The default chat template: `chat_template` as a string, or the entry named
  // "default" when it is a list of {name, template}. Empty when there is none.
  std::string chat_template;
  // Every named template when chat_template is a list (including "default").
  std::map<std::string, std::string> chat_templates;
  std::optional<std::string> bos_token, eos_token, pad_token, unk_token;
  std::optional<bool> add_bos_token, add_eos_token;
};

// Special token ids; -1 when the tokenizer has none.
struct SpecialIds {
  int32_t bos = -1;
  int32_t eos = -1;
  int32_t eot = -1;  // end of turn (<|im_end|>, <|eot_id|>, <end_of_turn>), else eos
  int32_t pad = -1;
  int32_t unk = -1;
};

class Tokenizer {
 public:
  // A Hugging Face folder (with tokenizer.json) or a .gguf file.
  static Tokenizer load(const std::string& path);
  // From the text of tokenizer.json and (optionally) tokenizer_config.json.
  // `source` names them in errors.
  static Tokenizer from_json(std::string_view tokenizer_json, std::string_view tokenizer_config_json = {},
                             const std::string& source = "tokenizer.json");
  static Tokenizer from_gguf(const std::string& path);

  // add_special: the post-processor's tokens (BOS/EOS as the model wants them).
  // parse_special: special tokens written in the text become their ids; when
  // false they are tokenized as plain text.
  std::vector<int32_t> encode(std::string_view text, bool add_special = true, bool parse_special = true) const;
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

  // The vocabulary entry of `id` as stored ("Ġhello", "▁the", "<0x0A>"); throws for unknown ids.
  std::string token_to_piece(int32_t id) const;
  std::optional<int32_t> piece_to_token(std::string_view piece) const;
  // The bytes `id` adds to a decoded text after other tokens (so without a first token's
  // leading-space rules), invalid UTF-8 kept: a byte token of a split character is that byte.
  // Special tokens give "". For grammars, which match tokens as bytes.
  std::string token_bytes(int32_t id) const;
  // token_bytes of every id, in order.
  std::vector<std::string> vocab_bytes() const;
  // One past the largest id (model vocabulary and added tokens).
  int32_t vocab_size() const;
  bool is_special(int32_t id) const;

  const SpecialIds& special_ids() const;
  // Ids that end generation: eos, eot and any other end-of-sequence token the config names.
  const std::vector<int32_t>& stop_ids() const;
  const TokenizerConfig& config() const;

  Tokenizer(const Tokenizer&) = default;
  Tokenizer& operator=(const Tokenizer&) = default;
  Tokenizer(Tokenizer&&) noexcept = default;
  Tokenizer& operator=(Tokenizer&&) noexcept = default;
  ~Tokenizer();

  // Internal: the loaders build these.
  struct Impl;
  explicit Tokenizer(std::shared_ptr<const Impl> impl);
  const Impl& impl() const { return *impl_; }

 private:
  std::shared_ptr<const Impl> impl_;
};

// Incremental detokenization for streaming: feed ids one at a time, get the
// text that became final. Never emits a partial UTF-8 character, never loses or
// repeats one when a character spans tokens, and keeps the decoders' rules
// about leading spaces (a SentencePiece model's first word) intact: it decodes a
// window that starts at an earlier, already emitted token, and once that is not
// the first token, decodes it as a continuation of the text.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = false);
  // Text completed by `id` (possibly empty while a character is incomplete).
  std::string step(int32_t id);
  // Whatever is still held back (an incomplete character becomes U+FFFD).
  std::string flush();

 private:
  // Emits what `text` (the window's decode) adds to the context, and makes the ids behind it the new context.
  std::string advance(const std::string& text);

  const Tokenizer* tokenizer_;
  bool skip_special_;
  bool at_start_ = true;      // ids_[0] is the first id of the text
  std::vector<int32_t> ids_;  // window: ids_[0, prefix_count_) are context already emitted
  size_t prefix_count_ = 0;
  std::string prefix_text_;   // decode of the context ids
};

}  // namespace quanta::tokenizer
