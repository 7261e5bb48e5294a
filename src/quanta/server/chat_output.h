// Splits the text a chat model generates into its parts, as the model family writes them:
// reasoning (`<think>…</think>`, SGLang's --reasoning-parser), the answer, and tool calls
// (--tool-call-parser). It works on a whole text and on a stream alike: feeding the text in
// any number of pieces gives the same parts as feeding it at once, and text is held back
// only while it could still be the start of a marker (or of a call being read).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace quanta::server {

enum class ReasoningFormat {
  kNone,
  kQwen3,          // `<think>…</think>` when the answer starts with <think>
  kDeepSeekR1,     // the prompt opened <think>: everything up to </think> is reasoning
  kGptOss,         // harmony: the analysis channel
};
enum class ToolCallFormat {
  kNone,
  kQwen25,   // Qwen 2.5/3, Hermes: <tool_call>{"name": …, "arguments": {…}}</tool_call>
  kLlama3,   // Llama 3.1+: the whole answer is [<|python_tag|>]{"name": …, "parameters": {…}}[; {…}]
  kMistral,  // [TOOL_CALLS][{"name": …, "arguments": {…}}, …] or [TOOL_CALLS]name[ARGS]{…}
  kGptOss,   // harmony: <|channel|>commentary to=functions.NAME …<|message|>{…}<|call|>
};

// By SGLang's names; an unknown name throws quanta::Error naming `flag` and the known names.
ReasoningFormat reasoning_format(const std::string& name, const char* flag = "--reasoning-parser");
ToolCallFormat tool_call_format(const std::string& name, const char* flag = "--tool-call-parser");
const char* format_name(ReasoningFormat f);
const char* format_name(ToolCallFormat f);
// The call syntax a chat template teaches its model, from the markers it writes; kNone if unknown.
ToolCallFormat detect_tool_call_format(std::string_view chat_template);
// Whether the format's markers are special tokens, which the text must keep (skip_special_tokens off).
bool needs_special_tokens(ToolCallFormat f);

struct ToolCall {
  std::string id;         // "call_" and 24 random characters, as OpenAI's
  std::string name;
  std::string arguments;  // a JSON object, as text
};

struct ChatParts {
  std::string reasoning;
  std::string content;
  std::vector<ToolCall> calls;
};

// gpt-oss writes its answer as harmony messages (`<|channel|>NAME …<|message|>TEXT<|end|>`, the next
// one opened by `<|start|>assistant`): either format kGptOss reads them, the final channel (and
// commentary addressed to no tool) as content, analysis as reasoning if the reasoning format is
// kGptOss (else as content), commentary to `functions.NAME` as calls if the tool format is.
class ChatOutputParser {
 public:
  ChatOutputParser(ReasoningFormat reasoning, ToolCallFormat tools);
  // The parts of `text` (the next piece of the generation) that can be told apart already.
  ChatParts feed(std::string_view text);
  // End of generation: what was held back. A call left unfinished (no closing marker) is a call
  // if what was read parses; otherwise it is given back as content, like any malformed call.
  ChatParts finish();

 private:
  void reason(bool at_end, ChatParts& out);
  void answer(std::string_view text, bool at_end, ChatParts& out);
  void emit_content(std::string_view text, ChatParts& out);
  void add_calls(std::string_view raw, std::string_view body, ChatParts& out);
  void end_content(ChatParts& out);
  void harmony(bool at_end, ChatParts& out);

  ReasoningFormat reasoning_;
  ToolCallFormat tools_;
  enum class Thinking { kUndecided, kInside, kDone } thinking_;
  std::string held_;           // generated text the reasoning step has not placed yet
  bool reasoning_lead_ = true; // strip whitespace right after <think>
  std::string reasoning_ws_;   // trailing whitespace of the reasoning, dropped at </think>
  bool content_lead_ = false;  // strip whitespace right after </think>
  enum class Calls { kStart, kText, kInCall, kToEnd } calls_ = Calls::kStart;
  std::string answer_;         // answer text the tool-call step has not placed yet
  std::string content_ws_;     // trailing whitespace of the content, dropped before a call
  bool called_ = false;        // a call was read
  // Harmony: inside a message's text, of this channel and recipient (empty: none).
  // plain_: a header ran past its bound, so the rest of the text is content.
  bool harmony_ = false, in_message_ = false, plain_ = false;
  std::string channel_, recipient_;
};

}  // namespace quanta::server
