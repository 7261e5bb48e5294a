// Tokenizer::Impl and the loaders' shared helpers (internal header).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "quanta/tokenizer/pipeline.h"
#include "quanta/tokenizer/tokenizer.h"

namespace quanta::tokenizer {

struct Tokenizer::Impl {
  Pipeline pipeline;
  TokenizerConfig config;
  SpecialIds special;
  std::vector<int32_t> stop_ids;
  int32_t vocab_size = 0;
  std::string source;  // file or folder, for error messages
};

// Parses tokenizer.json into `impl.pipeline` (throws Error naming `source` and the field).
void parse_tokenizer_json(std::string_view json_text, const std::string& source, Tokenizer::Impl& impl);
// Parses tokenizer_config.json into `impl.config`.
void parse_tokenizer_config(std::string_view json_text, const std::string& source, TokenizerConfig& config);
// Parses one pre-tokenizer object (tokenizer.json syntax) and appends its steps.
void parse_pre_tokenizer_json(std::string_view json_text, const std::string& source,
                              std::vector<PreTokenizerStep>& out);
// Fills vocab_size, special ids and stop ids from the pipeline and config.
void finish_impl(Tokenizer::Impl& impl);

}  // namespace quanta::tokenizer
