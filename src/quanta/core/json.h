// The one way quanta parses JSON text it did not write itself: configs,
// tokenizer files, safetensors headers, CLI arguments and HTTP request bodies.
//
// nlohmann's parser is iterative, but copying, dump(), comparison and our own
// converters (jinja values, config readers) recurse once per level, so a file or
// request of 100000 nested '[' would overflow the stack long after parsing.
// Every text is therefore refused before any tree is built if its arrays and
// objects nest deeper than kMaxJsonDepth. Real inputs stay far below it
// (configs and tokenizer.json nest < 10 levels, tool schemas a few dozen).
#pragma once

#include <string_view>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "quanta/core/error.h"

namespace quanta {

// Deepest nesting of arrays and objects accepted (`[]` is depth 1).
inline constexpr int kMaxJsonDepth = 256;

// Throws Error (at `where`) if `text` nests arrays and objects deeper than
// kMaxJsonDepth. A linear scan outside strings, exact for any valid JSON.
void check_json_depth(std::string_view text, const ErrorContext& where);

// nlohmann's message without its "[json.exception.parse_error.101] " prefix.
std::string json_error_text(const nlohmann::json::exception& e);

// Parses into ordered_json in linear time. nlohmann's own parse inserts every key through
// ordered_map's linear search, so an object of 200000 keys took minutes. A repeated key keeps
// its first position and its last value, as nlohmann (and Python's json) do.
nlohmann::ordered_json parse_ordered_json(std::string_view text, const ErrorContext& where);

// Sets each key of `from` (an object) on the object `into`, in linear time: a key `into`
// already has keeps its position, others are appended in `from`'s order.
void assign_keys(nlohmann::ordered_json& into, const nlohmann::ordered_json& from);

// check_json_depth, then parse. Malformed text throws Error("invalid JSON: ...").
// Json is nlohmann::json or nlohmann::ordered_json.
template <class Json = nlohmann::json>
Json parse_json(std::string_view text, const ErrorContext& where = {}) {
  check_json_depth(text, where);
  if constexpr (std::is_same_v<Json, nlohmann::ordered_json>) {
    return parse_ordered_json(text, where);
  } else {
    try {
      return Json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      throw Error("invalid JSON: " + json_error_text(e), where);
    }
  }
}

}  // namespace quanta
