// UTF-8 and Unicode helpers for the tokenizer.
//
// Strings are std::string holding UTF-8. Text entering the tokenizer is checked
// once (utf8_validate); everything after that may assume valid UTF-8. Decoding
// produces arbitrary bytes (byte-level tokens can split a character), so the
// decoders turn bytes back into valid UTF-8 with utf8_lossy, which replaces
// invalid sequences exactly like Rust's String::from_utf8_lossy (the Hugging
// Face tokenizers library is written in Rust, and its outputs are the reference).
//
// Normalization forms come from utf8proc (Debian libutf8proc-dev).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace quanta::tokenizer {

// Length in bytes of the UTF-8 sequence that starts with lead byte `b` (1 for
// continuation or invalid lead bytes, so that walking never stalls).
inline size_t utf8_len(uint8_t b) {
  if (b < 0x80) return 1;
  if ((b & 0xE0) == 0xC0) return 2;
  if ((b & 0xF0) == 0xE0) return 3;
  if ((b & 0xF8) == 0xF0) return 4;
  return 1;
}

// Decodes the code point at s[i] (valid UTF-8 assumed) and advances i.
char32_t utf8_next(std::string_view s, size_t& i);
void utf8_append(std::string& out, char32_t cp);

// Offset of the first byte that makes `s` invalid UTF-8 (overlong forms,
// surrogates and values above U+10FFFF are invalid), or npos when valid.
size_t utf8_validate(std::string_view s);

// Valid UTF-8 from arbitrary bytes: each maximal invalid subsequence becomes
// U+FFFD, as Rust's String::from_utf8_lossy does.
std::string utf8_lossy(std::string_view bytes);

// Length of the longest prefix of `bytes` that does not end inside a
// possibly-incomplete UTF-8 sequence (a valid lead byte followed by fewer
// continuation bytes than it needs, at the very end).
size_t utf8_complete_prefix(std::string_view bytes);

// GPT-2's byte-level alphabet: every byte maps to one printable code point
// (printable Latin-1 bytes map to themselves, the rest to U+0100 upwards).
// Format fact from openai/gpt-2 encoder.py bytes_to_unicode, which Hugging Face
// tokenizers' ByteLevel pre-tokenizer and decoder reproduce.
const std::array<char32_t, 256>& byte_to_unicode();
// Inverse of byte_to_unicode: the byte for a code point, or -1.
int unicode_to_byte(char32_t cp);
// The byte-level spelling of raw bytes (each byte as its UTF-8 encoded code point).
std::string byte_level_encode(std::string_view bytes);
// Raw bytes of a byte-level spelled string; false when a code point is not in the alphabet.
bool byte_level_decode(std::string_view text, std::string& out);

enum class NormalForm { kNfc, kNfd, kNfkc, kNfkd };
std::string normalize(std::string_view s, NormalForm form);
// Full-string lowercase (per code point; what Rust's char::to_lowercase gives
// for everything but final sigma).
std::string lowercase(std::string_view s);
// Removes combining marks (general category Mn), as tokenizers' StripAccents.
std::string strip_accents(std::string_view s);

// Unicode White_Space property (Rust's char::is_whitespace).
bool is_whitespace(char32_t cp);
// Rust's char::is_alphanumeric (alphabetic or numeric) or '_', i.e. regex \w.
bool is_word_char(char32_t cp);

}  // namespace quanta::tokenizer
