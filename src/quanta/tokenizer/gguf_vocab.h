// GGUF vocabularies -> the tokenizer pipeline.
//
// A GGUF file carries its tokenizer as metadata under llama.cpp's key names
// (tokenizer.ggml.model, .pre, .tokens, .scores, .token_type, .merges, the
// special ids and add_bos/add_eos flags). Two models are supported:
//   - "gpt2": byte-level BPE with merges; `tokenizer.ggml.pre` names the
//     pre-tokenizer of the family, mapped here to the Split/ByteLevel steps of
//     that family's Hugging Face tokenizer.json (the regexes are format facts,
//     listed in llama.cpp src/llama-vocab.cpp as "original regex from
//     tokenizer.json").
//   - "llama": SentencePiece BPE with scores and no merges; the merges are
//     recovered from the scores the way transformers' GGUF converter does
//     (integrations/gguf/gguf_tokenizer_mapping.py, generate_merges), with its
//     Gemma and Phi-3 special cases, so quanta matches transformers' tokenizer
//     for the same file.
// Unsupported: "bert" (WordPiece), "t5" (Unigram), "rwkv", "plamo2", and pre
// types not in the table; each is an Error naming the key and value.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "quanta/tokenizer/tokenizer_impl.h"

namespace quanta::tokenizer {

// The tokenizer metadata of a GGUF file, as read from it.
struct GgufVocab {
  std::string source;        // file path, for errors
  std::string architecture;  // general.architecture
  std::string model;         // tokenizer.ggml.model
  std::string pre;           // tokenizer.ggml.pre ("" when absent)
  std::vector<std::string> tokens;
  std::vector<float> scores;          // empty when absent
  std::vector<int32_t> token_types;   // empty when absent
  std::vector<std::string> merges;    // "a b"
  std::optional<int64_t> bos_id, eos_id, eot_id, unk_id, pad_id;
  std::optional<bool> add_bos, add_eos, add_space_prefix;
  std::string chat_template;
};

// llama.cpp's token types (tokenizer.ggml.token_type).
enum GgufTokenType : int32_t {
  kGgufTokenNormal = 1, kGgufTokenUnknown = 2, kGgufTokenControl = 3,
  kGgufTokenUserDefined = 4, kGgufTokenUnused = 5, kGgufTokenByte = 6,
};

// Reads the tokenizer metadata of the GGUF file at `path` (throws Error).
GgufVocab read_gguf_vocab(const std::string& path);
// Builds the pipeline, config and special ids of `impl` from `vocab`.
void build_from_gguf(const GgufVocab& vocab, Tokenizer::Impl& impl);
// The pre types `tokenizer.ggml.pre` may name (for messages and tests).
std::vector<std::string> supported_gguf_pre_types();

}  // namespace quanta::tokenizer
