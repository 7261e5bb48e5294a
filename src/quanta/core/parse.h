// Strict parsing of integers written by users (token ids on the command line, JSON keys).
#pragma once

#include <charconv>
#include <cstdint>
#include <optional>
#include <string_view>

namespace quanta {

// The whole of `s` as a decimal integer in [0, max]; nullopt for anything else (sign, spaces, overflow).
inline std::optional<int64_t> parse_non_negative(std::string_view s, int64_t max = INT64_MAX) {
  int64_t v = -1;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v < 0 || v > max) return std::nullopt;
  return v;
}

}  // namespace quanta
