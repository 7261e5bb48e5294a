// libFuzzer target for the HTTP request parsers (server/requests: /v1/completions,
// /v1/chat/completions and SGLang's /generate).
//
// Byte 0 picks the endpoint (% 3) and what the server is: its tool-call parser (/ 3 % 5), its
// reasoning parser (/ 15 % 4) and whether the model has a chat template (/ 60 % 2); the rest is
// the request body. A body is either refused with a quanta::Error (an ApiError has a 400 or 404
// status) or read into a Plan that holds what the parser promises. A Plan's grammars are then
// written as the server writes them (server/structured: the constraint, the tool-call grammar of
// tool_choice "required") and compiled, without a vocabulary; a grammar quanta wrote itself (from
// a schema, a regex, the tools) must compile. Anything else (another exception, a sanitizer
// report, a broken promise) is a crash.
//
// Build and run: tests/fuzz/run.sh (clang++ -fsanitize=fuzzer,address,undefined).
#include <cstddef>
#include <cstdint>
#include <string>

#include "quanta/core/error.h"
#include "quanta/grammar/grammar.h"
#include "quanta/server/requests.h"
#include "quanta/server/structured.h"

namespace {

using namespace quanta::server;

constexpr int kMaxN = 16;
constexpr int64_t kVocab = 1000;

void check(bool promise) {
  if (!promise) __builtin_trap();
}

// What the parser promises of every Plan it returns.
void check_plan(const Plan& p, Endpoint endpoint, const RequestContext& ctx) {
  check(p.n >= 1 && p.n <= kMaxN && p.best_of >= p.n && p.best_of <= kMaxN);
  check(!(p.stream && p.best_of > p.n));
  check(p.top_logprobs >= -1 && p.top_logprobs <= 20);
  check(p.stop.size() <= 16);
  for (const auto& [id, bias] : p.sampling.logit_bias) check(id >= 0 && id < kVocab && bias >= -100 && bias <= 100);
  for (int32_t id : p.stop_token_ids) check(id >= 0);
  check(!p.max_tokens || *p.max_tokens >= (p.allow_zero_tokens ? 0 : 1));
  const std::string& kind = p.constraint.kind;
  check(kind.empty() || ((kind == "json_schema" || kind == "regex" || kind == "ebnf" || kind == "json_object") &&
                         !p.constraint.field.empty()));
  if (endpoint == Endpoint::kChatCompletions) {
    check(ctx.has_chat_template && p.prompts.empty() && !p.echo);
    check(p.messages.is_array() && !p.messages.empty() && p.chat_template_kwargs.is_object());
    check(!p.tools.required || (ctx.tool_call_parser != ToolCallFormat::kNone && kind.empty()));
    check(p.tools.for_template.is_null() || p.tools.for_template.is_array());
  } else {
    check(!p.prompts.empty() && p.prompts.size() <= kMaxPrompts);
    for (const Prompt& q : p.prompts) {
      check(!q.field.empty());
      for (int32_t id : q.ids) check(id >= 0);
    }
  }
  if (endpoint == Endpoint::kGenerate) check(p.max_tokens.has_value());
}

// A grammar quanta wrote itself (from a schema, a regex, the tools) must compile.
void must_compile(const std::string& ebnf, const std::string& field) {
  try {
    quanta::grammar::compile_ebnf(ebnf, field);
  } catch (const quanta::Error&) {
    __builtin_trap();
  }
}

// The plan's grammars, as the server writes them.
void compile_grammars(const Plan& p, const RequestContext& ctx) {
  const ConstraintSource& c = p.constraint;
  if (!c.kind.empty()) {
    const std::string ebnf = constraint_ebnf(c.kind, c.text, c.field);
    // The client's own grammar or regex may be refused (e.g. a regex whose repetitions grow the
    // grammar past its bound); schemas and json_object are quanta's to get right.
    if (c.kind == "ebnf" || c.kind == "regex") quanta::grammar::compile_ebnf(ebnf, c.field);
    else must_compile(ebnf, c.field);
  }
  if (p.tools.required)
    must_compile(tool_call_ebnf(p.tools.for_template, p.tools.only, ctx.tool_call_parser,
                                p.tools.parallel && p.tools.only.empty()),
                 "tool_choice");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const Endpoint endpoint = static_cast<Endpoint>(data[0] % 3);
  RequestContext ctx;
  ctx.served_model_name = "served";
  ctx.model_path = "/models/m.gguf";
  ctx.max_n = kMaxN;
  ctx.vocab = kVocab;
  ctx.tool_call_parser = static_cast<ToolCallFormat>(data[0] / 3 % 5);
  ctx.reasoning_parser = static_cast<ReasoningFormat>(data[0] / 15 % 4);
  ctx.has_chat_template = data[0] / 60 % 2 == 1;
  const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    const Plan plan = parse_request(endpoint, body, ctx);
    check_plan(plan, endpoint, ctx);
    compile_grammars(plan, ctx);
  } catch (const ApiError& e) {
    check((e.status == 400 || e.status == 404) && !e.message().empty());
  } catch (const quanta::Error& e) {
    check(e.what()[0] != '\0');
  }
  return 0;
}
