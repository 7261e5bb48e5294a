// The tokenizer as data: the normalizer, pre-tokenizer, model, post-processor
// and decoder stages of a Hugging Face tokenizer.json, each a list of steps.
//
// Both sources (tokenizer.json and GGUF metadata) are translated into this one
// description, so there is a single encoder and a single decoder, and a family
// differs from another only in its data. The semantics of every step are those
// of the Hugging Face `tokenizers` library (0.23), which is the reference the
// golden tests compare against; the comments name the Rust type each mirrors.
//
// Internal header: users go through quanta/tokenizer/tokenizer.h.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "quanta/tokenizer/added_vocab.h"
#include "quanta/tokenizer/bpe.h"
#include "quanta/tokenizer/regex.h"

namespace quanta::tokenizer {

// tokenizers::SplitDelimiterBehavior.
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
// tokenizers::pre_tokenizers::metaspace::PrependScheme.
enum class PrependScheme { kAlways, kFirst, kNever };

struct NormalizerStep {
  enum class Kind { kNfc, kNfd, kNfkc, kNfkd, kLowercase, kStrip, kStripAccents, kReplace, kPrepend };
  Kind kind;
  bool strip_left = false, strip_right = false;  // kStrip
  std::shared_ptr<const Regex> pattern;          // kReplace
  std::string content;                           // kReplace: replacement; kPrepend: prefix
};

struct PreTokenizerStep {
  // Digits, Punctuation, Whitespace and WhitespaceSplit are kSplit with a pattern.
  enum class Kind { kSplit, kByteLevel, kMetaspace };
  Kind kind;
  std::shared_ptr<const Regex> pattern;  // kSplit
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
  bool add_prefix_space = false;  // kByteLevel
  bool use_regex = true;          // kByteLevel: split with the GPT-2 pattern first
  std::string replacement;        // kMetaspace (one character, UTF-8)
  PrependScheme prepend_scheme = PrependScheme::kAlways;
  bool split = true;              // kMetaspace
};

struct DecoderStep {
  enum class Kind { kByteLevel, kMetaspace, kByteFallback, kFuse, kStrip, kReplace };
  Kind kind;
  std::string content;  // kStrip: the character; kReplace: replacement; kMetaspace: replacement
  size_t start = 0, stop = 0;  // kStrip
  std::shared_ptr<const Regex> pattern;  // kReplace
  PrependScheme prepend_scheme = PrependScheme::kAlways;  // kMetaspace
};

// The post-processor reduced to what it does to the ids of one sequence: ids
// before and after it (TemplateProcessing, BertProcessing, RobertaProcessing;
// ByteLevel's only effect is on offsets).
struct PostProcessor {
  std::vector<int32_t> prefix, suffix;
};

struct Pipeline {
  std::vector<NormalizerStep> normalizers;
  std::vector<PreTokenizerStep> pre_tokenizers;
  BpeModel model;
  AddedVocab added;
  PostProcessor post;
  std::vector<DecoderStep> decoders;
  bool has_decoder = false;  // without one, tokens are joined with spaces

  // One piece of text on its way through the stages.
  struct Piece {
    enum class Form : uint8_t {
      kText,              // plain UTF-8
      kByteLevelRaw,      // raw bytes, each standing for its byte-level character
      kByteLevelSpelled,  // byte-level characters spelled out as UTF-8
    };
    std::string text;
    int32_t id = -1;        // an added token matched whole, or -1
    bool at_start = false;  // begins at offset 0 of the original text
    Form form = Form::kText;
  };

  // Runs normalizers and added-token extraction, pre-tokenizers and the model.
  void encode(std::string_view text, bool parse_special, std::vector<int32_t>& out) const;
  std::string normalize(std::string_view text) const;
  void pre_tokenize(std::vector<Piece>& pieces) const;
  // Runs the decoder chain over the tokens' strings; the result is valid UTF-8.
  // raw: bytes as the tokens spell them, invalid UTF-8 kept (not replaced by U+FFFD).
  // continuation: the tokens follow earlier text, so the rules for the start of a
  // text (Metaspace's dropped first space, Strip's leading cut after a Fuse) do not apply.
  std::string decode_tokens(std::vector<std::string> tokens, bool raw = false, bool continuation = false) const;
};

}  // namespace quanta::tokenizer
