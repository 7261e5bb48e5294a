#include "quanta/core/error.h"

#include <cstdio>
#include <cstdlib>

namespace quanta {

namespace {
std::string format_with_context(const std::string& message, const ErrorContext& c) {
  std::string out;
  auto add = [&out](const char* key, const std::string& value) {
    if (value.empty()) return;
    if (!out.empty()) out += ", ";
    out += key;
    out += " '";
    out += value;
    out += "'";
  };
  add("file", c.file);
  add("tensor", c.tensor);
  add("field", c.field);
  return out.empty() ? message : out + ": " + message;
}
}  // namespace

Error::Error(const std::string& message, ErrorContext context)
    : std::runtime_error(format_with_context(message, context)),
      message_(message),
      context_(std::move(context)) {}

void assert_fail(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "quanta: internal error: assertion '%s' failed at %s:%d\n", expr, file, line);
  std::abort();
}

}  // namespace quanta
