// Chat templates: turns a conversation into the model's prompt text, byte for byte as
// transformers' apply_chat_template does with jinja2.
//
// A ChatTemplate parses a model's Jinja chat template once and renders it any number of times.
// The interpreter (jinja_*.h) covers the Jinja2 subset real chat templates use, with Python's
// semantics where the output depends on them (str() of values, json.dumps, string methods,
// dict order). jinja2 is set up the way transformers 5.x sets it up: ImmutableSandboxedEnvironment
// with trim_blocks and lstrip_blocks, the loopcontrols extension, transformers' tojson,
// raise_exception, strftime_now, dict and namespace, and the {% generation %} block.
//
// Invariants: templates are untrusted input. Rendering reads no files and no environment,
// and stops with a TemplateError (never a crash or a hang) past RenderOptions' limits.
// Errors name the template, the line and the column, and carry the Python exception type and
// message jinja2 would have raised (TemplateError with the template's own message for
// raise_exception).
//
// Non-goals: template inheritance and include (there are no other files), the assistant-token
// mask of {% generation %}, continue_final_message (a caller-side edit of the output).
#pragma once

#include <cstdint>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "quanta/core/error.h"

namespace quanta::tokenizer {

namespace jinja {
struct Program;
}

class TemplateError : public Error {
 public:
  TemplateError(std::string kind, std::string detail, const std::string& template_name, int line, int column);
  // The Python exception jinja2 would raise, e.g. "TemplateError" (raise_exception),
  // "TemplateSyntaxError", "UndefinedError", "TypeError"; quanta's own: "LimitError" for a
  // runaway template, "UnsupportedError" for Jinja features this engine does not implement.
  const std::string& kind() const { return kind_; }
  const std::string& detail() const { return detail_; }  // str(exception) in Python
  int line() const { return line_; }
  int column() const { return column_; }

 private:
  std::string kind_, detail_;
  int line_, column_;
};

struct RenderOptions {
  int64_t max_steps = 20'000'000;           // statements, calls and copied elements
  int64_t max_loop_iterations = 1'000'000;  // over all loops of one render
  int max_call_depth = 100;                 // nested macro calls
  size_t max_output_bytes = 64u << 20;      // the prompt, and any one string or list built on the way
  // The clock of strftime_now; unset means the local time when rendering starts.
  std::optional<std::tm> now;
};

class ChatTemplate {
 public:
  // Parses source; throws TemplateError for a syntax error. name appears in error messages.
  explicit ChatTemplate(std::string_view source, std::string name = "chat_template");
  ~ChatTemplate();
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;

  // Renders with these top-level variables (a JSON object), e.g. from make_chat_context().
  // Safe to call from several threads at once: a render keeps all its state to itself.
  std::string render(const nlohmann::ordered_json& context, const RenderOptions& options = {}) const;
  const std::string& name() const;

 private:
  std::unique_ptr<jinja::Program> program_;
};

// What apply_chat_template passes to a template.
struct ChatInputs {
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  nlohmann::ordered_json tools;      // null: no tools (the template still sees `tools` defined, as None)
  nlohmann::ordered_json documents;  // null: none
  bool add_generation_prompt = false;
  // Special tokens (bos_token, eos_token, ...) and extra template variables (enable_thinking, ...);
  // later keys win, so put special tokens first.
  nlohmann::ordered_json variables = nlohmann::ordered_json::object();
};

// The render context as transformers 5.x builds it (utils/chat_template_utils.py,
// render_jinja_template): messages (with reasoning aliased: a message with reasoning_content,
// thinking or reasoning gets all of `thinking` first and `reasoning_content`), tools, documents,
// add_generation_prompt, then the variables.
nlohmann::ordered_json make_chat_context(const ChatInputs& inputs);

// The chat template of a Hugging Face model folder, chosen as transformers does:
// chat_template.jinja and additional_chat_templates/NAME.jinja, else tokenizer_config.json's
// chat_template (a string, or a list of {name, template}). With an empty name: "tool_use" when
// tools are given and it exists, else "default". Throws Error naming the file otherwise.
std::string read_chat_template(const std::string& model_dir, const std::string& name = "", bool have_tools = false);
// bos_token, eos_token, unk_token, sep_token, pad_token, cls_token, mask_token from
// tokenizer_config.json (strings or {"content": ...}), as transformers' special_tokens_map.
nlohmann::ordered_json read_special_tokens(const std::string& model_dir);

}  // namespace quanta::tokenizer
