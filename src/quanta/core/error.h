// Error type for bad input and failed operations.
//
// Every error that reaches the user names what is wrong: the file, the tensor or
// the field, and what was expected. Errors are exceptions that are caught at the
// boundary (CLI main, request handler) and printed as one line. Internal
// invariants use QUANTA_ASSERT instead, which is a programming error.
#pragma once

#include <stdexcept>
#include <string>

namespace quanta {

// Where an error happened. Empty fields are left out of the message.
struct ErrorContext {
  std::string file;    // e.g. "model-00001-of-00002.safetensors"
  std::string tensor;  // e.g. "model.layers.0.self_attn.q_proj.weight"
  std::string field;   // e.g. "num_attention_heads" or "header.dtype"
};

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message, ErrorContext context = {});

  const ErrorContext& context() const { return context_; }
  // The bare message, without the context prefix.
  const std::string& message() const { return message_; }

 private:
  std::string message_;
  ErrorContext context_;
};

[[noreturn]] void assert_fail(const char* expr, const char* file, int line);

}  // namespace quanta

#define QUANTA_ASSERT(cond) \
  do { if (!(cond)) ::quanta::assert_fail(#cond, __FILE__, __LINE__); } while (0)
