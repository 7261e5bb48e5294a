#include "quanta/server/chat_output.h"

#include <gtest/gtest.h>

#include <random>

#include <nlohmann/json.hpp>

#include "quanta/core/error.h"

namespace quanta::server {
namespace {

struct Split {
  std::string reasoning, content;
  std::vector<std::pair<std::string, std::string>> calls;  // name, arguments
};

Split collect(ChatOutputParser& p, const std::vector<std::string>& pieces) {
  Split s;
  auto add = [&](const ChatParts& d) {
    s.reasoning += d.reasoning;
    s.content += d.content;
    for (const auto& c : d.calls) {
      EXPECT_EQ(c.id.size(), 29u);
      EXPECT_EQ(c.id.substr(0, 5), "call_");
      s.calls.emplace_back(c.name, c.arguments);
    }
  };
  for (const auto& piece : pieces) add(p.feed(piece));
  add(p.finish());
  return s;
}

// The text parsed whole, then in every split into two pieces, then in random pieces (as a stream
// delivers it, down to single bytes): all must agree.
Split parse_every_way(ReasoningFormat r, ToolCallFormat t, const std::string& text) {
  ChatOutputParser whole(r, t);
  const Split ref = collect(whole, {text});
  auto same = [&](const Split& s, const std::string& how) {
    EXPECT_EQ(s.reasoning, ref.reasoning) << how;
    EXPECT_EQ(s.content, ref.content) << how;
    EXPECT_EQ(s.calls, ref.calls) << how;
  };
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    ChatOutputParser p(r, t);
    same(collect(p, {text.substr(0, cut), text.substr(cut)}), "cut at " + std::to_string(cut));
  }
  std::mt19937 rng(7);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<std::string> pieces;
    for (size_t i = 0; i < text.size();) {
      const size_t n = 1 + rng() % 4;
      pieces.push_back(text.substr(i, n));
      i += n;
    }
    ChatOutputParser p(r, t);
    same(collect(p, pieces), "random pieces, trial " + std::to_string(trial));
  }
  return ref;
}

using Calls = std::vector<std::pair<std::string, std::string>>;

TEST(ChatOutput, PlainTextPassesThroughUnchanged) {
  const std::string text = "  Hello <b>world</b>\n\n";
  for (auto t : {ToolCallFormat::kNone, ToolCallFormat::kQwen25, ToolCallFormat::kLlama3, ToolCallFormat::kMistral}) {
    const Split s = parse_every_way(ReasoningFormat::kNone, t, text);
    EXPECT_EQ(s.content, text) << format_name(t);
    EXPECT_TRUE(s.calls.empty());
  }
  // Text that starts like a marker but is not one.
  EXPECT_EQ(parse_every_way(ReasoningFormat::kQwen3, ToolCallFormat::kQwen25, "<thin> and <tool_ca").content, "<thin> and <tool_ca");
}

TEST(ChatOutput, Qwen3ReasoningIsSplitOnlyWhenTheAnswerOpensWithThink) {
  Split s = parse_every_way(ReasoningFormat::kQwen3, ToolCallFormat::kNone, "<think>\nLet me think.\n</think>\n\nThe answer is 4.");
  EXPECT_EQ(s.reasoning, "Let me think.");
  EXPECT_EQ(s.content, "The answer is 4.");
  s = parse_every_way(ReasoningFormat::kQwen3, ToolCallFormat::kNone, "No thinking here. <think>x</think>");
  EXPECT_EQ(s.reasoning, "");
  EXPECT_EQ(s.content, "No thinking here. <think>x</think>");
  // Unfinished reasoning: all of it is reasoning.
  s = parse_every_way(ReasoningFormat::kQwen3, ToolCallFormat::kNone, "<think>still going");
  EXPECT_EQ(s.reasoning, "still going");
  EXPECT_EQ(s.content, "");
}

TEST(ChatOutput, DeepSeekR1ReasoningStartsInThePrompt) {
  Split s = parse_every_way(ReasoningFormat::kDeepSeekR1, ToolCallFormat::kNone, "First, 2+2.\n</think>\n\n4");
  EXPECT_EQ(s.reasoning, "First, 2+2.");
  EXPECT_EQ(s.content, "4");
  s = parse_every_way(ReasoningFormat::kDeepSeekR1, ToolCallFormat::kNone, "<think>\nhm</think>ok");
  EXPECT_EQ(s.reasoning, "hm");
  EXPECT_EQ(s.content, "ok");
  s = parse_every_way(ReasoningFormat::kDeepSeekR1, ToolCallFormat::kNone, "never closed");
  EXPECT_EQ(s.reasoning, "never closed");
  EXPECT_EQ(s.content, "");
}

TEST(ChatOutput, QwenToolCallsAreParsedWithTheTextAround) {
  const std::string text =
      "<think>Need weather.</think>\nLet me check.\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
      "{\"city\": \"Paris\", \"days\": [1, 2], \"q\": \"a \\\"}</tool_call>\\\" b\"}}\n</tool_call>\n"
      "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
  const Split s = parse_every_way(ReasoningFormat::kQwen3, ToolCallFormat::kQwen25, text);
  EXPECT_EQ(s.reasoning, "Need weather.");
  EXPECT_EQ(s.content, "Let me check.");
  ASSERT_EQ(s.calls.size(), 2u);
  EXPECT_EQ(s.calls[0].first, "get_weather");
  // Key order is kept, and the arguments are one compact JSON object.
  EXPECT_EQ(s.calls[0].second, R"({"city":"Paris","days":[1,2],"q":"a \"}</tool_call>\" b"})");
  EXPECT_EQ(s.calls[1], (std::pair<std::string, std::string>{"get_time", "{}"}));
}

TEST(ChatOutput, QwenCallWithoutClosingTagAndMalformedCalls) {
  // The model stopped (EOS) before </tool_call>: still a call if it parses.
  Split s = parse_every_way(ReasoningFormat::kNone, ToolCallFormat::kQwen25, "<tool_call>{\"name\": \"f\", \"arguments\": {\"x\": 1}}");
  EXPECT_EQ(s.calls, (Calls{{"f", R"({"x":1})"}}));
  EXPECT_EQ(s.content, "");
  // Arguments written as a JSON string holding an object.
  s = parse_every_way(ReasoningFormat::kNone, ToolCallFormat::kQwen25, "<tool_call>{\"name\": \"f\", \"arguments\": \"{\\\"x\\\": 2}\"}</tool_call>");
  EXPECT_EQ(s.calls, (Calls{{"f", R"({"x":2})"}}));
  // Not calls: given back as the text they were.
  for (const std::string bad : {"<tool_call>{\"name\": \"f\", \"arguments\": [1]}</tool_call>",
                                "<tool_call>{\"arguments\": {}}</tool_call>", "<tool_call>not json</tool_call>",
                                "<tool_call>{\"name\": \"f\", \"arguments\": {\"x\": </tool_call>",
                                "<tool_call>{\"name\": \"f\"" /* cut off */}) {
    s = parse_every_way(ReasoningFormat::kNone, ToolCallFormat::kQwen25, "A " + bad);
    EXPECT_TRUE(s.calls.empty()) << bad;
    EXPECT_EQ(s.content, "A " + bad);
  }
}

TEST(ChatOutput, Llama3CallsAreTheWholeAnswer) {
  Split s = parse_every_way(ReasoningFormat::kNone, ToolCallFormat::kLlama3,
                            "<|python_tag|>{\"name\": \"a\", \"parameters\": {\"k\": \"v;}\"}}; {\"name\": \"b\", \"parameters\": {}}");
  EXPECT_EQ(s.calls, (Calls{{"a", R"({"k":"v;}"})"}, {"b", "{}"}}));
  EXPECT_EQ(s.content, "");
  s = parse_every_way(ReasoningFormat::kNone, ToolCallFormat::kLlama3, "\n{\"name\": \"a\", \"arguments\": {\"n\": 1}}");
  EXPECT_EQ(s.calls, (Calls{{"a", R"({"n":1})"}}));
  // JSON that is not a call, and a call after prose, stay text.
  for (const std::string text : {"{\"answer\": 4}", "The call: {\"name\": \"a\", \"parameters\": {}}", "{\"name\": \"a\", \"parameters\": {}} trailing"}) {
    s = parse_every_way(ReasoningFormat::kNone, ToolCallFormat::kLlama3, text);
    EXPECT_TRUE(s.calls.empty()) << text;
    EXPECT_EQ(s.content, text);
  }
}

TEST(ChatOutput, MistralBothSyntaxes) {
  Split s = parse_every_way(ReasoningFormat::kNone, ToolCallFormat::kMistral,
                            "Sure. [TOOL_CALLS] [{\"name\": \"a\", \"arguments\": {\"x\": [1]}}, {\"name\": \"b\", \"arguments\": {}}]");
  EXPECT_EQ(s.content, "Sure.");
  EXPECT_EQ(s.calls, (Calls{{"a", R"({"x":[1]})"}, {"b", "{}"}}));
  s = parse_every_way(ReasoningFormat::kNone, ToolCallFormat::kMistral,
                      "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Oslo\"}[TOOL_CALLS]get_time[CALL_ID]abc123[ARGS]{}");
  EXPECT_EQ(s.content, "");
  EXPECT_EQ(s.calls, (Calls{{"get_weather", R"({"city":"Oslo"})"}, {"get_time", "{}"}}));
  s = parse_every_way(ReasoningFormat::kNone, ToolCallFormat::kMistral, "[TOOL_CALLS]broken[ARGS]{\"x\":");
  EXPECT_TRUE(s.calls.empty());
  EXPECT_EQ(s.content, "[TOOL_CALLS]broken[ARGS]{\"x\":");
}

TEST(ChatOutput, QwenListInACallIsReadWholeBeforeItsClose) {
  // A list after <tool_call> is not a call, but its strings may hold </tool_call> as an object's
  // may: the text is content as a whole, however it is cut (fuzz finding, 2026-12-08).
  const std::string text = R"(<tool_call>["</tool_call><tool_call>{"name":"f"}"}</tool_call>)";
  const Split s = parse_every_way(ReasoningFormat::kQwen3, ToolCallFormat::kQwen25, text);
  EXPECT_TRUE(s.calls.empty());
  EXPECT_EQ(s.content, text);
}

TEST(ChatOutput, GptOssHarmonyChannels) {
  const std::string answer =
      "<|channel|>analysis<|message|>User asks for the weather.<|end|><|start|>assistant<|channel|>final<|message|>It is sunny.";
  Split s = parse_every_way(ReasoningFormat::kGptOss, ToolCallFormat::kGptOss, answer);
  EXPECT_EQ(s.reasoning, "User asks for the weather.");
  EXPECT_EQ(s.content, "It is sunny.");
  // Without the reasoning parser, the analysis is part of the content.
  s = parse_every_way(ReasoningFormat::kNone, ToolCallFormat::kGptOss, answer);
  EXPECT_EQ(s.reasoning, "");
  EXPECT_EQ(s.content, "User asks for the weather.It is sunny.");
  // A call as the model writes it, and as the template writes it (recipient before the channel;
  // <|call|> is an end-of-generation token, so the text may stop before it).
  s = parse_every_way(ReasoningFormat::kGptOss, ToolCallFormat::kGptOss,
                      "<|channel|>analysis<|message|>Need the tool.<|end|><|start|>assistant<|channel|>commentary "
                      "to=functions.get_weather <|constrain|>json<|message|>{\"city\": \"Paris\"}<|call|>"
                      "<|start|>assistant to=functions.get_time<|channel|>commentary json<|message|>{}");
  EXPECT_EQ(s.reasoning, "Need the tool.");
  EXPECT_EQ(s.content, "");
  EXPECT_EQ(s.calls, (Calls{{"get_weather", R"({"city":"Paris"})"}, {"get_time", "{}"}}));
  // Not harmony at all: content, once it is clear.
  s = parse_every_way(ReasoningFormat::kGptOss, ToolCallFormat::kGptOss, "Plain words.");
  EXPECT_EQ(s.content, "Plain words.");
  // A header that runs past its bound is not one, and neither is anything after it, however the
  // text is cut: a later <|message|> no longer opens a message (fuzz finding, 2026-12-07).
  const std::string junk = "<|channel|>" + std::string(600, 'x');
  s = parse_every_way(ReasoningFormat::kGptOss, ToolCallFormat::kGptOss,
                      junk + "<|message|>hidden?<|end|><|channel|>final<|message|>Hi");
  EXPECT_EQ(s.reasoning, "");
  EXPECT_EQ(s.content, junk + "<|message|>hidden?<|end|><|channel|>final<|message|>Hi");
  EXPECT_EQ(detect_tool_call_format("{{- '<|start|>assistant<|channel|>final<|message|>' }}"), ToolCallFormat::kGptOss);
}

TEST(ChatOutput, DeeplyNestedArgumentsAreRefusedNotRecursed) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  ChatOutputParser p(ReasoningFormat::kNone, ToolCallFormat::kQwen25);
  const std::string text = "<tool_call>{\"name\": \"f\", \"arguments\": {\"x\": " + deep + "}}</tool_call>";
  const Split s = collect(p, {text});
  EXPECT_TRUE(s.calls.empty());
  EXPECT_EQ(s.content, text);
}

TEST(ChatOutput, NamesAndDetection) {
  EXPECT_EQ(reasoning_format("qwen3"), ReasoningFormat::kQwen3);
  EXPECT_EQ(reasoning_format("deepseek-r1"), ReasoningFormat::kDeepSeekR1);
  EXPECT_EQ(tool_call_format("hermes"), ToolCallFormat::kQwen25);
  try {
    tool_call_format("qwen9");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.context().field, "--tool-call-parser");
    EXPECT_NE(std::string(e.what()).find("qwen9"), std::string::npos);
  }
  EXPECT_THROW(reasoning_format("thinky"), Error);
  EXPECT_EQ(detect_tool_call_format("{% for tool in tools %}<tool_call>{{ tool }}</tool_call>{% endfor %}"), ToolCallFormat::kQwen25);
  EXPECT_EQ(detect_tool_call_format("[AVAILABLE_TOOLS]{{ tools }}[TOOL_CALLS]"), ToolCallFormat::kMistral);
  EXPECT_EQ(detect_tool_call_format("<|start_header_id|>ipython<|end_header_id|>"), ToolCallFormat::kLlama3);
  EXPECT_EQ(detect_tool_call_format("{{ messages }}"), ToolCallFormat::kNone);
}

}  // namespace
}  // namespace quanta::server
