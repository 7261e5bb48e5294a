#include "quanta/core/json.h"

namespace quanta {

void check_json_depth(std::string_view text, const ErrorContext& where) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;  // skips the escaped character, so \" does not end the string
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth)
        throw Error("JSON nests arrays and objects deeper than the limit of " + std::to_string(kMaxJsonDepth) +
                        " levels (at byte " + std::to_string(i) + ")",
                    where);
    } else if (c == ']' || c == '}') {
      if (depth > 0) --depth;  // unbalanced text is left to the parser to refuse
    }
  }
}

std::string json_error_text(const nlohmann::json::exception& e) {
  std::string s = e.what();
  if (!s.empty() && s[0] == '[') {
    const size_t close = s.find("] ");
    if (close != std::string::npos) s.erase(0, close + 2);
  }
  return s;
}

}  // namespace quanta
