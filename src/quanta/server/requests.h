// The request bodies of /v1/completions, /v1/chat/completions and SGLang's /generate, read into
// a Plan: every field checked, defaulted and named in its error here, so the handlers only run
// what was asked. Nothing here needs the model: prompts stay text (or the token ids given), a
// structured-output constraint stays its source, the chat stays messages; the server tokenizes,
// renders the template and compiles grammars. Fuzzed by tests/fuzz/requests_fuzz.cc.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "quanta/core/error.h"
#include "quanta/engine/sampler.h"
#include "quanta/format/hf_config.h"
#include "quanta/server/chat_output.h"

namespace quanta::server {

// A request refused with an OpenAI-style error body: its HTTP status, and the field it names
// (context().field, the body's "param"; empty for the request as a whole).
class ApiError : public Error {
 public:
  ApiError(int status, const std::string& message, const std::string& param)
      : Error(message, {.field = param}), status(status) {}
  int status;
};

// Typed field access on a request body; a wrong type is an ApiError (400) naming the field. A
// field given as null counts as not given.
struct Body {
  const nlohmann::json& j;
  bool has(const char* k) const;
  double number(const char* k, double fallback) const;
  // Within [lo, hi], checked in 64 bits before any narrowing (2^32 + 1 must not become 1).
  int64_t integer(const char* k, int64_t fallback, int64_t lo = INT64_MIN, int64_t hi = INT64_MAX) const;
  bool boolean(const char* k, bool fallback) const;
  std::string string(const char* k, const std::string& fallback) const;
};

// What the parsers know of the server: its names, limits and the model's defaults.
struct RequestContext {
  std::string served_model_name, model_path;  // the names `model` may give
  int max_n = 16;                             // largest `n` (and `best_of`)
  int64_t vocab = 0;                          // logit_bias keys are token ids below it
  format::GenerationDefaults defaults;        // generation_config.json: the sampling defaults
  bool has_chat_template = false;
  ToolCallFormat tool_call_parser = ToolCallFormat::kNone;
  ReasoningFormat reasoning_parser = ReasoningFormat::kNone;
};

enum class Endpoint { kCompletions, kChatCompletions, kGenerate };

// One prompt as the client gave it.
struct Prompt {
  std::string text;          // to tokenize, when `ids` is empty
  std::vector<int32_t> ids;  // the token ids given (never empty)
  std::string field;         // what names it in errors: "prompt", "prompt[2]", "input_ids[0]"
};

// A chat request's tools: what the template is given and whether the answer is read for calls.
struct ChatTools {
  nlohmann::json for_template;  // null: no tools (none given, or tool_choice "none")
  bool parse_calls = false;
  bool parallel = true;    // parallel_tool_calls: false keeps the first call only
  bool required = false;   // tool_choice "required" or a named function: the answer is a call
  std::string only;        // the named function
};

// A structured-output constraint as given (SGLang's json_schema / regex / ebnf, OpenAI's
// response_format), for constraint_ebnf() and the grammar cache.
struct ConstraintSource {
  std::string kind;   // "json_schema", "regex", "ebnf" or "json_object"; empty: none
  std::string text;   // the schema as JSON text (keys in the client's order), the regex or the grammar
  std::string field;  // what its errors name
};

// Everything a generation request asks for.
struct Plan {
  // The prompt: one or several to tokenize (completions, /generate)...
  std::vector<Prompt> prompts;
  // ...or the chat: messages as the template expects them (tool-call arguments as objects), its
  // extra variables, the tools, and how the answer is read.
  nlohmann::json messages, chat_template_kwargs;
  ChatTools tools;
  ToolCallFormat calls_format = ToolCallFormat::kNone;
  bool separate_reasoning = false;  // the answer's reasoning goes to reasoning_content

  engine::SamplingParams sampling;  // validated; its seed is set per generation
  std::optional<uint64_t> seed;     // generation i draws from seed + i; none: a random seed each
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  bool skip_special = true;
  ConstraintSource constraint;

  // Checked against the context once the prompt is tokenized; none: what the context leaves.
  std::optional<int64_t> max_tokens;
  std::string max_tokens_field = "max_tokens";  // its name in this endpoint's errors
  bool allow_zero_tokens = false;  // 0 runs the prompt only, scored (echo, return_logprob)

  int n = 1;
  int best_of = 1;  // generations run per prompt; the n with the highest cumulative log-probability are returned
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  std::string rid;             // the client's request id (/abort_request), if given

  // Log-probabilities: of the output (top_logprobs alternatives each; -1: none) and of the prompt
  // from prompt_logprobs_from (-1: not scored; score_last_prompt_token: its last token only).
  int top_logprobs = -1;
  int64_t prompt_logprobs_from = -1;
  bool score_last_prompt_token = false;
  bool echo = false;  // completions: the prompt is prepended to each answer
  // /generate: return_logprob, logprob_start_len (its range, [-1, shortest prompt - 1], is checked
  // once the prompts are tokenized: its error names the bound) and return_text_in_logprobs.
  bool return_logprob = false;
  int64_t logprob_start_len = -1;
  bool return_text_in_logprobs = false;
};

// Prompts in one request at most (a list of strings or of token lists).
inline constexpr size_t kMaxPrompts = 128;

// The body of a request to `endpoint`, or an ApiError naming the field that is wrong.
Plan parse_request(Endpoint endpoint, const std::string& body, const RequestContext& context);

// A body as a JSON object: valid UTF-8, not too deep (core/json.h), an object; else an ApiError.
nlohmann::json parse_body(const std::string& body);

// A list of token ids, each an integer in [0, limit) (the vocabulary or, where the scheduler
// checks that, 32 bits); anything else is an ApiError naming `field`.
std::vector<int32_t> token_ids(const nlohmann::json& list, const std::string& field, int64_t limit = INT32_MAX);

}  // namespace quanta::server
