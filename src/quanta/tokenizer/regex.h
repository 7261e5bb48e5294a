// Regex: a compiled PCRE2 pattern (UTF, Unicode properties, JIT) for the
// Split pre-tokenizer and the Replace normalizer/decoder.
//
// Hugging Face tokenizers compiles these patterns with Oniguruma in Ruby
// syntax. The differences that matter for tokenizer patterns are bridged here:
//   - `$` and `^` are line anchors in Ruby syntax: compiled with PCRE2_MULTILINE.
//   - `\s` in Oniguruma matches U+0085 (NEL, which is White_Space); PCRE2's
//     Unicode \s does not, so `\s`/`\S` are rewritten to include it.
// Matching never allocates per call: each thread keeps its match data and JIT
// stack. A Regex is immutable after construction and safe to share.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace quanta::tokenizer {

class Regex {
 public:
  // Throws Error naming the pattern when it does not compile.
  explicit Regex(const std::string& pattern);
  // A pattern matching `literal` exactly.
  static Regex literal(std::string_view literal);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends [start, end) byte ranges of the successive non-overlapping matches
  // in `s` (valid UTF-8). After an empty match the search resumes one character
  // later, as Oniguruma's find_iter does.
  void find_all(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const;
  const std::string& pattern() const { return pattern_; }

 private:
  Regex() = default;
  struct Code;
  std::string pattern_;
  std::unique_ptr<Code> code_;
};

}  // namespace quanta::tokenizer
