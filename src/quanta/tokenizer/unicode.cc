#include "quanta/tokenizer/unicode.h"

#include <utf8proc.h>

#include <cstdlib>
#include <memory>

#include "quanta/core/error.h"

namespace quanta::tokenizer {

char32_t utf8_next(std::string_view s, size_t& i) {
  auto b = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  uint8_t c = b(i);
  size_t n = utf8_len(c);
  if (i + n > s.size()) n = 1;
  char32_t cp;
  switch (n) {
    case 1: cp = c; break;
    case 2: cp = ((c & 0x1Fu) << 6) | (b(i + 1) & 0x3Fu); break;
    case 3: cp = ((c & 0x0Fu) << 12) | ((b(i + 1) & 0x3Fu) << 6) | (b(i + 2) & 0x3Fu); break;
    default:
      cp = ((c & 0x07u) << 18) | ((b(i + 1) & 0x3Fu) << 12) | ((b(i + 2) & 0x3Fu) << 6) | (b(i + 3) & 0x3Fu);
  }
  i += n;
  return cp;
}

void utf8_append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

namespace {

// Checks the sequence at s[i]. Returns its length when valid; otherwise 0 and
// sets `bad` to the length of the maximal invalid subpart (Unicode's
// "substitution of maximal subparts", which Rust's Utf8Chunks implements), and
// `truncated` when the input ended inside a sequence that was valid so far.
size_t check_sequence(std::string_view s, size_t i, size_t& bad, bool& truncated) {
  auto b = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  uint8_t c = b(i);
  truncated = false;
  if (c < 0x80) return 1;
  size_t width = 0;
  uint8_t lo = 0x80, hi = 0xBF;  // range of the second byte
  if (c >= 0xC2 && c <= 0xDF) width = 2;
  else if (c == 0xE0) width = 3, lo = 0xA0;
  else if (c >= 0xE1 && c <= 0xEC) width = 3;
  else if (c == 0xED) width = 3, hi = 0x9F;
  else if (c >= 0xEE && c <= 0xEF) width = 3;
  else if (c == 0xF0) width = 4, lo = 0x90;
  else if (c >= 0xF1 && c <= 0xF3) width = 4;
  else if (c == 0xF4) width = 4, hi = 0x8F;
  if (width == 0) {
    bad = 1;
    return 0;
  }
  for (size_t k = 1; k < width; ++k) {
    if (i + k >= s.size()) {
      bad = k;
      truncated = true;
      return 0;
    }
    uint8_t x = b(i + k);
    bool ok = k == 1 ? (x >= lo && x <= hi) : (x >= 0x80 && x <= 0xBF);
    if (!ok) {
      bad = k;
      return 0;
    }
  }
  return width;
}

}  // namespace

size_t utf8_validate(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    size_t bad;
    bool truncated;
    size_t n = check_sequence(s, i, bad, truncated);
    if (n == 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t i = 0;
  while (i < bytes.size()) {
    size_t bad;
    bool truncated;
    size_t n = check_sequence(bytes, i, bad, truncated);
    if (n) {
      out.append(bytes.data() + i, n);
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      i += bad;
    }
  }
  return out;
}

size_t utf8_complete_prefix(std::string_view bytes) {
  // Only the last three bytes can start an incomplete sequence.
  size_t start = bytes.size() > 3 ? bytes.size() - 3 : 0;
  for (size_t i = start; i < bytes.size(); ++i) {
    size_t bad;
    bool truncated;
    if (check_sequence(bytes, i, bad, truncated) == 0 && truncated) return i;
  }
  return bytes.size();
}

const std::array<char32_t, 256>& byte_to_unicode() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    bool direct[256] = {};
    for (int b = '!'; b <= '~'; ++b) direct[b] = true;
    for (int b = 0xA1; b <= 0xAC; ++b) direct[b] = true;
    for (int b = 0xAE; b <= 0xFF; ++b) direct[b] = true;
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) t[b] = direct[b] ? static_cast<char32_t>(b) : next++;
    return t;
  }();
  return table;
}

int unicode_to_byte(char32_t cp) {
  static const std::array<int16_t, 512> inverse = [] {
    std::array<int16_t, 512> inv;
    inv.fill(-1);
    const auto& t = byte_to_unicode();
    for (int b = 0; b < 256; ++b) inv[t[b]] = static_cast<int16_t>(b);
    return inv;
  }();
  return cp < 512 ? inverse[cp] : -1;
}

std::string byte_level_encode(std::string_view bytes) {
  static const std::array<std::string, 256> spelled = [] {
    std::array<std::string, 256> s;
    for (int b = 0; b < 256; ++b) utf8_append(s[b], byte_to_unicode()[b]);
    return s;
  }();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += spelled[static_cast<uint8_t>(c)];
  return out;
}

bool byte_level_decode(std::string_view text, std::string& out) {
  out.clear();
  size_t i = 0;
  while (i < text.size()) {
    int b = unicode_to_byte(utf8_next(text, i));
    if (b < 0) return false;
    out += static_cast<char>(b);
  }
  return true;
}

namespace {

std::string utf8proc_apply(std::string_view s, int options) {
  utf8proc_uint8_t* result = nullptr;
  utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                    static_cast<utf8proc_ssize_t>(s.size()), &result,
                                    static_cast<utf8proc_option_t>(options));
  if (n < 0) throw Error(std::string("Unicode normalization failed: ") + utf8proc_errmsg(n));
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> guard(result, &std::free);
  return std::string(reinterpret_cast<char*>(result), static_cast<size_t>(n));
}

bool is_ascii(std::string_view s) {
  for (char c : s)
    if (static_cast<uint8_t>(c) >= 0x80) return false;
  return true;
}

}  // namespace

std::string normalize(std::string_view s, NormalForm form) {
  // ASCII is invariant under every normal form; skipping it keeps the common case fast.
  if (is_ascii(s)) return std::string(s);
  int opts = UTF8PROC_STABLE;
  switch (form) {
    case NormalForm::kNfc: opts |= UTF8PROC_COMPOSE; break;
    case NormalForm::kNfd: opts |= UTF8PROC_DECOMPOSE; break;
    case NormalForm::kNfkc: opts |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    case NormalForm::kNfkd: opts |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
  }
  return utf8proc_apply(s, opts);
}

std::string lowercase(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    char32_t cp = utf8_next(s, i);
    // U+0130 lowercases to "i" + combining dot in full case mapping (Rust does so).
    if (cp == 0x130) {
      out += "i\xCC\x87";
      continue;
    }
    utf8_append(out, static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))));
  }
  return out;
}

std::string strip_accents(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    size_t start = i;
    char32_t cp = utf8_next(s, i);
    if (utf8proc_category(static_cast<utf8proc_int32_t>(cp)) == UTF8PROC_CATEGORY_MN) continue;
    out.append(s.data() + start, i - start);
  }
  return out;
}

bool is_whitespace(char32_t cp) {
  // The White_Space property list (Unicode PropList.txt).
  switch (cp) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20: case 0x85: case 0xA0:
    case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

bool is_word_char(char32_t cp) {
  if (cp == '_') return true;
  if (cp < 0x80) return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO: case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return false;
  }
}

}  // namespace quanta::tokenizer
