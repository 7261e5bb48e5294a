#include "quanta/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "quanta/core/error.h"
#include "quanta/tokenizer/unicode.h"

namespace quanta::tokenizer {

struct Regex::Code {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Code() {
    if (code) pcre2_code_free(code);
  }
};

namespace {

// Rewrites Oniguruma's `\s` (which includes U+0085) for PCRE2, whose Unicode \s
// does not. Inside a class `\s` gains `\x{85}`; outside, `\s` and `\S` become classes.
std::string bridge_oniguruma(const std::string& p) {
  std::string out;
  out.reserve(p.size() + 16);
  int class_depth = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      char n = p[i + 1];
      if (n == 's') out += class_depth ? "\\s\\x{85}" : "[\\s\\x{85}]";
      else if (n == 'S' && !class_depth) out += "[^\\s\\x{85}]";
      else out.append(p, i, 2);
      ++i;
      continue;
    }
    if (c == '[') {
      ++class_depth;
      out += c;
      // A ']' right after '[' or '[^' is a literal, not the end of the class.
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    if (c == ']' && class_depth) --class_depth;
    out += c;
  }
  return out;
}

struct ThreadMatchState {
  pcre2_match_data* data = nullptr;
  pcre2_jit_stack* stack = nullptr;
  pcre2_match_context* context = nullptr;
  ThreadMatchState() {
    data = pcre2_match_data_create(1, nullptr);
    // Patterns like \s+(?!\S) over long runs need more than PCRE2's default 32 KiB.
    stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    context = pcre2_match_context_create(nullptr);
    if (stack && context) pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~ThreadMatchState() {
    if (data) pcre2_match_data_free(data);
    if (context) pcre2_match_context_free(context);
    if (stack) pcre2_jit_stack_free(stack);
  }
};

ThreadMatchState& thread_state() {
  thread_local ThreadMatchState state;
  return state;
}

std::string escape_literal(std::string_view s) {
  // Every ASCII character that is not alphanumeric is written as \x{..}, so
  // nothing in the literal can act as syntax (or as \s for the bridge above).
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (char ch : s) {
    auto c = static_cast<uint8_t>(ch);
    if (c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
      out += ch;
    } else {
      out += "\\x{";
      out += hex[c >> 4];
      out += hex[c & 15];
      out += '}';
    }
  }
  return out;
}

}  // namespace

Regex::Regex(const std::string& pattern) : pattern_(pattern), code_(std::make_unique<Code>()) {
  std::string bridged = bridge_oniguruma(pattern);
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  code_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(bridged.data()), bridged.size(),
                              PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &err, &err_offset, nullptr);
  if (!code_->code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof(msg));
    throw Error("regular expression does not compile at offset " + std::to_string(err_offset) + ": " +
                    reinterpret_cast<char*>(msg) + " (pattern: " + pattern + ")",
                {.field = "pattern"});
  }
  code_->jit = pcre2_jit_compile(code_->code, PCRE2_JIT_COMPLETE) == 0;
}

Regex Regex::literal(std::string_view literal) {
  Regex r(escape_literal(literal));
  r.pattern_ = std::string(literal);
  return r;
}

Regex::~Regex() = default;
Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;

void Regex::find_all(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const {
  ThreadMatchState& st = thread_state();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  size_t pos = 0;
  while (pos <= s.size()) {
    int rc = code_->jit ? pcre2_jit_match(code_->code, subject, s.size(), pos, 0, st.data, st.context)
                        : pcre2_match(code_->code, subject, s.size(), pos, PCRE2_NO_UTF_CHECK, st.data, st.context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof(msg));
      throw Error(std::string("regular expression matching failed: ") + reinterpret_cast<char*>(msg) +
                      " (pattern: " + pattern_ + ")",
                  {.field = "pattern"});
    }
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(st.data);
    size_t start = ov[0], end = ov[1];
    out.emplace_back(start, end);
    if (end > start) {
      pos = end;
    } else {
      if (end >= s.size()) break;
      pos = end + utf8_len(static_cast<uint8_t>(s[end]));
    }
  }
}

}  // namespace quanta::tokenizer
