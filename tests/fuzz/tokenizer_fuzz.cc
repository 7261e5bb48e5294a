// libFuzzer target for the tokenizer: the tokenizer.json parser and the encoder.
//
// The first input byte picks the mode:
//   0: the rest is a tokenizer.json; if it loads, encode and decode a few
//      strings with it (parser + every pipeline step the file configures);
//   1: the rest is text for the Qwen2 fixture tokenizer (byte-level BPE, NFC,
//      added tokens): encode with and without special tokens, decode, stream;
//   2: the same with a SentencePiece-style tokenizer (Prepend/Replace,
//      byte fallback, lstrip/rstrip added token, Strip decoder);
//   3: the rest is a list of 16-bit ids to decode and stream-decode.
// Bad input must end in quanta::Error (a clear message), never in a crash, a
// sanitizer report, or any other exception.
//
// Build and run: tests/fuzz/run.sh (clang++ -fsanitize=fuzzer,address,undefined).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "quanta/core/error.h"
#include "quanta/tokenizer/tokenizer.h"
#include "quanta/tokenizer/unicode.h"

using quanta::tokenizer::StreamDecoder;
using quanta::tokenizer::Tokenizer;

namespace {

const char* kSpmJson = R"({
  "added_tokens": [
    {"id": 0, "content": "<unk>", "special": true, "normalized": false},
    {"id": 1, "content": "<s>", "special": true, "normalized": false},
    {"id": 13, "content": "<tool>", "lstrip": true, "rstrip": true, "normalized": false},
    {"id": 14, "content": "hi!", "single_word": true, "normalized": true}
  ],
  "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Prepend", "prepend": "\u2581"},
                 {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
  "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": true},
  "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                     "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
  "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
              {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
  "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": true,
            "vocab": {"<unk>": 0, "<s>": 1, "\u2581": 2, "h": 3, "i": 4, "\u2581h": 5, "\u2581hi": 6, "<0xC3>": 7, "<0xA9>": 8,
                      "!": 9, "hi": 10, "<0x21>": 11, "<0x41>": 12, "<tool>": 13, "hi!": 14},
            "merges": ["\u2581 h", "\u2581h i", "h i"]}
})";

const Tokenizer& qwen() {
  static const Tokenizer t = Tokenizer::load(std::string(QUANTA_SOURCE_DIR) + "/tests/unit/data/tokenizers/qwen2");
  return t;
}

const Tokenizer& spm() {
  static const Tokenizer t = Tokenizer::from_json(kSpmJson);
  return t;
}

void exercise(const Tokenizer& tok, std::string_view text) {
  for (bool add : {false, true})
    for (bool parse : {false, true}) {
      std::vector<int32_t> ids = tok.encode(text, add, parse);
      std::string out = tok.decode(ids, !parse);
      if (quanta::tokenizer::utf8_validate(out) != std::string::npos) __builtin_trap();
      StreamDecoder stream(tok);
      std::string streamed;
      for (int32_t id : ids) streamed += stream.step(id);
      streamed += stream.flush();
      std::string whole = tok.decode(ids);
      if (whole.find("\xEF\xBF\xBD") == std::string::npos && streamed != whole) __builtin_trap();
    }
}

void decode_ids(const Tokenizer& tok, const uint8_t* data, size_t size) {
  std::vector<int32_t> ids;
  for (size_t i = 0; i + 1 < size; i += 2) ids.push_back(static_cast<int32_t>(data[i] | (data[i + 1] << 8)) % tok.vocab_size());
  std::string out = tok.decode(ids);
  if (quanta::tokenizer::utf8_validate(out) != std::string::npos) __builtin_trap();
  StreamDecoder stream(tok);
  std::string streamed;
  for (int32_t id : ids) {
    std::string piece = stream.step(id);
    if (quanta::tokenizer::utf8_validate(piece) != std::string::npos) __builtin_trap();
    streamed += piece;
  }
  streamed += stream.flush();
  // Invalid byte runs can be invalidated retroactively (ByteFallback turns a
  // whole run into U+FFFDs once it turns out invalid), which a stream cannot take
  // back; valid text must stream exactly.
  if (out.find("\xEF\xBF\xBD") == std::string::npos && streamed != out) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    switch (data[0] % 4) {
      case 0: {
        Tokenizer tok = Tokenizer::from_json(rest);
        for (std::string_view s : {"Hello world", " hi  hi! <tool>x", "日本語 123\n\n", ""}) exercise(tok, s);
        break;
      }
      case 1: exercise(qwen(), rest); break;
      case 2: exercise(spm(), rest); break;
      case 3: decode_ids(data[1 % size] & 1 ? qwen() : spm(), data + 1, size - 1); break;
    }
  } catch (const quanta::Error&) {
    // A clear error is the expected outcome for bad input.
  }
  return 0;
}
