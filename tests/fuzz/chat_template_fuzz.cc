// libFuzzer target for the chat-template engine: the lexer, the parser and the interpreter.
//
// The input is a template. If it parses, it is rendered against a conversation with tool
// calls, tools, unicode and empty content, under small limits. Any input must either render
// or end in quanta::tokenizer::TemplateError: a crash, a sanitizer report, a hang, another
// exception type or a runaway allocation is a bug.
//
// Build and run: tests/fuzz/run.sh (clang++ -fsanitize=fuzzer,address,undefined).
#include <cstddef>
#include <cstdint>
#include <string>

#include "quanta/tokenizer/chat_template.h"

namespace {

const nlohmann::ordered_json& context() {
  static const nlohmann::ordered_json ctx = [] {
    quanta::tokenizer::ChatInputs in;
    in.messages = nlohmann::ordered_json::parse(R"([
      {"role": "system", "content": "You are helpful."},
      {"role": "user", "content": "Hi 👋 café\n<think>x</think>"},
      {"role": "assistant", "content": "", "reasoning_content": "r",
       "tool_calls": [{"id": "abc123XYZ", "type": "function",
                       "function": {"name": "get_weather", "arguments": {"city": "Paris", "n": 1.5, "ok": true}}}]},
      {"role": "tool", "tool_call_id": "abc123XYZ", "content": "{\"t\": 21}"},
      {"role": "assistant", "content": null},
      {"role": "user", "content": [{"type": "text", "text": "part"}]}])");
    in.tools = nlohmann::ordered_json::parse(R"([{"type": "function", "function": {"name": "get_weather",
      "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
      "required": ["city"]}}}])");
    in.add_generation_prompt = true;
    in.variables = {{"bos_token", "<s>"}, {"eos_token", "</s>"}, {"enable_thinking", false}};
    return quanta::tokenizer::make_chat_context(in);
  }();
  return ctx;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string source(reinterpret_cast<const char*>(data), size);
  quanta::tokenizer::RenderOptions options;
  options.max_steps = 200'000;
  options.max_loop_iterations = 20'000;
  options.max_call_depth = 64;
  options.max_output_bytes = 1 << 20;
  options.now = std::tm{};
  try {
    quanta::tokenizer::ChatTemplate tmpl(source, "fuzz");
    std::string out = tmpl.render(context(), options);
    if (out.size() > options.max_output_bytes) __builtin_trap();
  } catch (const quanta::tokenizer::TemplateError&) {
  }
  return 0;
}
