#include "quanta/server/chat_output.h"

#include <random>

#include <nlohmann/json.hpp>

#include "quanta/core/error.h"
#include "quanta/core/json.h"

namespace quanta::server {

using nlohmann::ordered_json;

namespace {

constexpr std::string_view kThinkOpen = "<think>", kThinkClose = "</think>";
constexpr std::string_view kQwenOpen = "<tool_call>", kQwenClose = "</tool_call>";
constexpr std::string_view kPythonTag = "<|python_tag|>";
constexpr std::string_view kMistralCalls = "[TOOL_CALLS]", kMistralArgs = "[ARGS]", kMistralCallId = "[CALL_ID]";

// Harmony's markers (gpt-oss): a message is [<|start|>ROLE][ to=RECIPIENT]<|channel|>NAME[ to=…][ json|<|constrain|>json]<|message|>TEXT END.
constexpr std::string_view kHarmonyMessage = "<|message|>", kHarmonyChannel = "<|channel|>";
constexpr std::string_view kHarmonyEnds[] = {"<|end|>", "<|call|>", "<|return|>", "<|start|>"};
constexpr size_t kMaxHarmonyHeader = 512;  // a header longer than this is not one

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}
std::string_view trim_front(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  return s;
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// The length of the longest end of `s` that is a proper beginning of `marker`: text that must
// wait for the next piece before it can be called content.
size_t partial_marker(std::string_view s, std::string_view marker) {
  for (size_t n = std::min(s.size(), marker.size() - 1); n > 0; --n)
    if (s.substr(s.size() - n) == marker.substr(0, n)) return n;
  return 0;
}

// Appends `text` to `out`, holding its trailing whitespace in `ws` until more text follows.
void append_held(std::string_view text, std::string& out, std::string& ws) {
  size_t body = text.size();
  while (body > 0 && is_space(text[body - 1])) --body;
  if (body == 0) {
    ws.append(text);
    return;
  }
  out += ws;
  out.append(text.substr(0, body));
  ws.assign(text.substr(body));
}

std::string call_id() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id += kChars[rng() % (sizeof kChars - 1)];
  return id;
}

// One call from a parsed object: its name under "name", its arguments under `args_key` (an object,
// or a string holding one, as some models write it). False if the object is not a call.
bool to_call(const ordered_json& j, std::vector<ToolCall>& calls) {
  if (!j.is_object() || !j.contains("name") || !j["name"].is_string() || j["name"].get<std::string>().empty()) return false;
  ordered_json args = ordered_json::object();
  for (const char* key : {"arguments", "parameters"}) {
    if (!j.contains(key)) continue;
    args = j[key];
    if (args.is_string()) {
      try {
        args = parse_json<ordered_json>(args.get<std::string>());
      } catch (const Error&) {
        return false;
      }
    }
    break;
  }
  if (!args.is_object()) return false;
  calls.push_back({call_id(), j["name"].get<std::string>(), args.dump(-1, ' ', false, ordered_json::error_handler_t::replace)});
  return true;
}

// The word after the first `marker` in a harmony header (up to a space or the next <|…|>), "" if none.
std::string word_after(std::string_view header, std::string_view marker) {
  const size_t at = header.find(marker);
  if (at == std::string_view::npos) return "";
  const std::string_view rest = header.substr(at + marker.size());
  size_t n = 0;
  while (n < rest.size() && !is_space(rest[n]) && rest[n] != '<') ++n;
  return std::string(rest.substr(0, n));
}

// Where the JSON object or array starting at s[0] ends (one past its closing bracket), or npos.
size_t json_end(std::string_view s) {
  if (s.empty() || (s[0] != '{' && s[0] != '[')) return std::string_view::npos;
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (--depth == 0) return i + 1;
    }
  }
  return std::string_view::npos;
}

bool parse_object(std::string_view text, ordered_json& out) {
  try {
    out = parse_json<ordered_json>(text);
    return true;
  } catch (const Error&) {
    return false;
  }
}

// Llama 3: one or more objects separated by ';', after an optional <|python_tag|>.
bool parse_llama3(std::string_view s, std::vector<ToolCall>& calls) {
  s = trim(s);
  if (starts_with(s, kPythonTag)) s = trim(s.substr(kPythonTag.size()));
  while (!s.empty()) {
    const size_t end = json_end(s);
    ordered_json j;
    if (end == std::string_view::npos || !parse_object(s.substr(0, end), j) || !to_call(j, calls)) return false;
    s = trim_front(s.substr(end));
    if (!s.empty()) {
      if (s[0] != ';') return false;
      s = trim_front(s.substr(1));
    }
  }
  return !calls.empty();
}

// Mistral, after [TOOL_CALLS]: a JSON list of calls (v3 tokenizers), or name[ARGS]{…} (v11+, with
// an optional [CALL_ID]id before [ARGS]); several calls each start with their own [TOOL_CALLS].
bool parse_mistral(std::string_view s, std::vector<ToolCall>& calls) {
  while (!s.empty()) {
    s = trim(s);
    size_t next = s.find(kMistralCalls);
    std::string_view one = trim(s.substr(0, next));
    s = next == std::string_view::npos ? std::string_view() : s.substr(next + kMistralCalls.size());
    if (one.empty()) continue;
    if (one[0] == '[') {
      ordered_json j;
      if (json_end(one) != one.size() || !parse_object(one, j)) return false;
      for (const auto& c : j)
        if (!to_call(c, calls)) return false;
      continue;
    }
    const size_t args = one.find(kMistralArgs);
    if (args == std::string_view::npos) return false;
    std::string_view name = one.substr(0, args);
    if (size_t id = name.find(kMistralCallId); id != std::string_view::npos) name = name.substr(0, id);
    const std::string_view body = trim(one.substr(args + kMistralArgs.size()));
    ordered_json j;
    if (json_end(body) != body.size() || !parse_object(body, j)) return false;
    if (!to_call(ordered_json{{"name", std::string(trim(name))}, {"arguments", j}}, calls)) return false;
  }
  return !calls.empty();
}

}  // namespace

ReasoningFormat reasoning_format(const std::string& name, const char* flag) {
  if (name.empty() || name == "none") return ReasoningFormat::kNone;
  if (name == "gpt-oss") return ReasoningFormat::kGptOss;
  if (name == "qwen3" || name == "glm45") return ReasoningFormat::kQwen3;
  if (name == "deepseek-r1" || name == "qwen3-thinking") return ReasoningFormat::kDeepSeekR1;
  throw Error("unknown reasoning parser '" + name + "' (known: qwen3, qwen3-thinking, deepseek-r1, glm45, gpt-oss, none)",
              {.field = flag});
}

ToolCallFormat tool_call_format(const std::string& name, const char* flag) {
  if (name == "none") return ToolCallFormat::kNone;
  if (name == "qwen25" || name == "qwen" || name == "qwen3" || name == "hermes") return ToolCallFormat::kQwen25;
  if (name == "llama3") return ToolCallFormat::kLlama3;
  if (name == "mistral") return ToolCallFormat::kMistral;
  if (name == "gpt-oss") return ToolCallFormat::kGptOss;
  throw Error("unknown tool-call parser '" + name + "' (known: qwen25, hermes, llama3, mistral, gpt-oss, none)", {.field = flag});
}

const char* format_name(ReasoningFormat f) {
  switch (f) {
    case ReasoningFormat::kQwen3: return "qwen3";
    case ReasoningFormat::kDeepSeekR1: return "deepseek-r1";
    case ReasoningFormat::kGptOss: return "gpt-oss";
    default: return "none";
  }
}

const char* format_name(ToolCallFormat f) {
  switch (f) {
    case ToolCallFormat::kQwen25: return "qwen25";
    case ToolCallFormat::kLlama3: return "llama3";
    case ToolCallFormat::kMistral: return "mistral";
    case ToolCallFormat::kGptOss: return "gpt-oss";
    default: return "none";
  }
}

ToolCallFormat detect_tool_call_format(std::string_view t) {
  if (t.find(kHarmonyChannel) != std::string_view::npos) return ToolCallFormat::kGptOss;
  if (t.find(kQwenOpen) != std::string_view::npos) return ToolCallFormat::kQwen25;
  if (t.find(kMistralCalls) != std::string_view::npos) return ToolCallFormat::kMistral;
  // Llama 3.1+ templates answer tool results as role ipython and mention <|python_tag|>.
  if (t.find("<|python_tag|>") != std::string_view::npos || t.find("ipython") != std::string_view::npos)
    return ToolCallFormat::kLlama3;
  return ToolCallFormat::kNone;
}

bool needs_special_tokens(ToolCallFormat f) {
  return f == ToolCallFormat::kLlama3 || f == ToolCallFormat::kMistral || f == ToolCallFormat::kGptOss;
}

ChatOutputParser::ChatOutputParser(ReasoningFormat reasoning, ToolCallFormat tools)
    : reasoning_(reasoning),
      tools_(tools),
      thinking_(reasoning == ReasoningFormat::kNone ? Thinking::kDone : Thinking::kUndecided),
      harmony_(reasoning == ReasoningFormat::kGptOss || tools == ToolCallFormat::kGptOss) {}

ChatParts ChatOutputParser::feed(std::string_view text) {
  ChatParts out;
  held_.append(text);
  if (harmony_) harmony(false, out);
  else reason(false, out);
  return out;
}

ChatParts ChatOutputParser::finish() {
  ChatParts out;
  if (harmony_) {
    harmony(true, out);
    return out;
  }
  reason(true, out);
  answer({}, true, out);
  return out;
}

void ChatOutputParser::harmony(bool at_end, ChatParts& out) {
  for (;;) {
    if (plain_) {  // not harmony after all: the rest is content
      out.content += held_;
      held_.clear();
      return;
    }
    if (!in_message_) {  // a header, up to a <|message|> that starts within kMaxHarmonyHeader bytes
      const size_t body = held_.find(kHarmonyMessage);
      if (body == std::string::npos || body > kMaxHarmonyHeader) {
        // Decided by the header's own bytes, never by where the stream was cut.
        if (!at_end && body == std::string::npos && held_.size() < kMaxHarmonyHeader + kHarmonyMessage.size()) return;
        plain_ = true;
        continue;
      }
      const std::string_view header(held_.data(), body);
      channel_ = word_after(header, kHarmonyChannel);
      recipient_ = word_after(header, "to=");
      held_.erase(0, body + kHarmonyMessage.size());
      in_message_ = true;
      continue;
    }
    // The message's text, up to the first end marker.
    size_t end = std::string::npos, end_len = 0;
    for (std::string_view m : kHarmonyEnds)
      if (size_t at = held_.find(m); at < end) end = at, end_len = m == "<|start|>" ? 0 : m.size();
    const bool is_call = starts_with(recipient_, "functions.") && tools_ == ToolCallFormat::kGptOss;
    if (is_call) {
      if (end == std::string::npos && !at_end) return;
      const std::string body = held_.substr(0, end == std::string::npos ? held_.size() : end);
      ordered_json j;
      if (!parse_object(trim(body), j) || !to_call(ordered_json{{"name", recipient_.substr(10)}, {"arguments", j}}, out.calls))
        out.content += body;  // not a call after all
    } else {
      size_t take = end;
      if (end == std::string::npos) {
        size_t hold = 0;
        if (!at_end)
          for (std::string_view m : kHarmonyEnds) hold = std::max(hold, partial_marker(held_, m));
        take = held_.size() - hold;
      }
      const bool reasoning = channel_ == "analysis" && reasoning_ == ReasoningFormat::kGptOss;
      (reasoning ? out.reasoning : out.content).append(held_, 0, take);
      if (end == std::string::npos) {
        held_.erase(0, take);
        return;
      }
    }
    held_.erase(0, end == std::string::npos ? held_.size() : end + end_len);
    in_message_ = false;
    if (end == std::string::npos) return;
  }
}

// The reasoning step: decides whether the text opens with <think> (or, for DeepSeek-R1, was
// opened by the prompt), passes the reasoning out until </think>, and the rest on to answer().
void ChatOutputParser::reason(bool at_end, ChatParts& out) {
  for (;;) {
    if (thinking_ == Thinking::kUndecided) {
      const std::string_view lead = trim_front(held_);
      if (starts_with(lead, kThinkOpen)) {
        held_.erase(0, held_.size() - lead.size() + kThinkOpen.size());
        thinking_ = Thinking::kInside;
      } else if (!at_end && starts_with(kThinkOpen, lead)) {
        return;  // still could be <think>
      } else {
        thinking_ = reasoning_ == ReasoningFormat::kDeepSeekR1 ? Thinking::kInside : Thinking::kDone;
      }
      continue;
    }
    if (thinking_ == Thinking::kInside) {
      const size_t close = held_.find(kThinkClose);
      size_t take = close != std::string::npos ? close : at_end ? held_.size() : held_.size() - partial_marker(held_, kThinkClose);
      std::string_view piece(held_.data(), take);
      if (reasoning_lead_) {
        const std::string_view t = trim_front(piece);
        reasoning_lead_ = t.empty();
        piece = t;
      }
      append_held(piece, out.reasoning, reasoning_ws_);
      if (close == std::string::npos) {
        held_.erase(0, take);
        if (at_end) reasoning_ws_.clear();
        return;
      }
      reasoning_ws_.clear();
      held_.erase(0, close + kThinkClose.size());
      thinking_ = Thinking::kDone;
      content_lead_ = true;
      continue;
    }
    std::string_view rest = held_;
    if (content_lead_) {
      rest = trim_front(rest);
      content_lead_ = rest.empty();
    }
    if (!rest.empty()) answer(rest, false, out);
    held_.clear();
    return;
  }
}

void ChatOutputParser::emit_content(std::string_view text, ChatParts& out) {
  if (tools_ == ToolCallFormat::kNone) out.content.append(text);
  else append_held(text, out.content, content_ws_);
}

// The end of the answer: its trailing whitespace is content unless the answer made calls.
void ChatOutputParser::end_content(ChatParts& out) {
  if (!called_) out.content += content_ws_;
  content_ws_.clear();
}

// A call's text once read: its calls, or the raw text back as content if it is not one.
void ChatOutputParser::add_calls(std::string_view raw, std::string_view body, ChatParts& out) {
  std::vector<ToolCall> calls;
  bool ok = false;
  switch (tools_) {
    case ToolCallFormat::kQwen25: {
      ordered_json j;
      ok = parse_object(trim(body), j) && to_call(j, calls);
      break;
    }
    case ToolCallFormat::kLlama3: ok = parse_llama3(body, calls); break;
    case ToolCallFormat::kMistral: ok = parse_mistral(body, calls); break;
    default: break;
  }
  if (ok) {
    content_ws_.clear();  // the whitespace before a call is not part of the content
    called_ = true;
    for (auto& c : calls) out.calls.push_back(std::move(c));
  } else {
    emit_content(raw, out);
  }
}

// The tool-call step, on the answer text (after any reasoning).
void ChatOutputParser::answer(std::string_view text, bool at_end, ChatParts& out) {
  answer_.append(text);
  for (;;) {
    switch (calls_) {
      case Calls::kStart: {  // Llama 3 calls are the whole answer: look at how it starts
        if (tools_ != ToolCallFormat::kLlama3) {
          calls_ = Calls::kText;
          continue;
        }
        const std::string_view lead = trim_front(answer_);
        if (!lead.empty() && (lead[0] == '{' || starts_with(lead, kPythonTag))) {
          calls_ = Calls::kToEnd;
        } else if (!at_end && starts_with(kPythonTag, lead)) {
          return;
        } else {
          calls_ = Calls::kText;
        }
        continue;
      }
      case Calls::kText: {
        if (tools_ == ToolCallFormat::kNone || tools_ == ToolCallFormat::kLlama3) {
          emit_content(answer_, out);
          answer_.clear();
          if (at_end) end_content(out);
          return;
        }
        const std::string_view open = tools_ == ToolCallFormat::kQwen25 ? kQwenOpen : kMistralCalls;
        const size_t at = answer_.find(open);
        if (at == std::string::npos) {
          const size_t take = at_end ? answer_.size() : answer_.size() - partial_marker(answer_, open);
          emit_content(std::string_view(answer_).substr(0, take), out);
          answer_.erase(0, take);
          if (at_end) end_content(out);
          return;
        }
        emit_content(std::string_view(answer_).substr(0, at), out);
        answer_.erase(0, at + open.size());
        calls_ = tools_ == ToolCallFormat::kQwen25 ? Calls::kInCall : Calls::kToEnd;
        continue;
      }
      case Calls::kInCall: {  // Qwen: a JSON object, then </tool_call> (which its strings may hold)
        const std::string_view lead = trim_front(answer_);
        size_t close = std::string::npos;  // where </tool_call> starts
        if (const size_t end = json_end(lead); end != std::string_view::npos) {
          const std::string_view after = trim_front(lead.substr(end));
          if (starts_with(after, kQwenClose)) close = answer_.size() - after.size();
          else if (!at_end && starts_with(kQwenClose, after)) return;
        } else if (!at_end && (starts_with(lead, "{") || starts_with(lead, "["))) {
          return;  // the object (or, not a call but read alike, a list) is still being written
        }
        if (close == std::string::npos) close = answer_.find(kQwenClose);  // not a well-formed call
        if (close == std::string::npos) {
          if (!at_end) return;
          add_calls(std::string(kQwenOpen) + answer_, answer_, out);  // stopped before </tool_call>
          answer_.clear();
          calls_ = Calls::kText;
          continue;
        }
        const std::string body = answer_.substr(0, close);
        add_calls(std::string(kQwenOpen) + body + std::string(kQwenClose), body, out);
        answer_.erase(0, close + kQwenClose.size());
        calls_ = Calls::kText;
        continue;
      }
      case Calls::kToEnd: {  // Llama 3 and Mistral: the calls run to the end of the text
        if (!at_end) return;
        const std::string raw = (tools_ == ToolCallFormat::kMistral ? std::string(kMistralCalls) : std::string()) + answer_;
        add_calls(raw, answer_, out);
        answer_.clear();
        end_content(out);
        return;
      }
    }
  }
}

}  // namespace quanta::server
