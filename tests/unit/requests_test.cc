#include "quanta/server/requests.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace quanta::server {
namespace {

RequestContext context() {
  RequestContext c;
  c.served_model_name = "served";
  c.model_path = "/models/m.gguf";
  c.max_n = 4;
  c.vocab = 100;
  c.has_chat_template = true;
  c.tool_call_parser = ToolCallFormat::kQwen25;
  c.reasoning_parser = ReasoningFormat::kQwen3;
  return c;
}

// The ApiError `body` gets at `endpoint`, or a failure if it is accepted.
ApiError refusal(Endpoint endpoint, const std::string& body, RequestContext c = context()) {
  try {
    parse_request(endpoint, body, c);
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "accepted: " << body;
  return ApiError(0, "", "");
}

TEST(Requests, CompletionFields) {
  const Plan p = parse_request(Endpoint::kCompletions, R"({"model": "/models/m.gguf", "prompt": "Hello",
      "temperature": 0.5, "top_k": 7, "stop": ["\n", "END"], "n": 2, "best_of": 3, "logprobs": 2, "echo": true,
      "seed": 11, "logit_bias": {"5": -100, "17": 2.5}, "stop_token_ids": [3, 4], "min_tokens": 1})", context());
  ASSERT_EQ(p.prompts.size(), 1u);
  EXPECT_EQ(p.prompts[0].text, "Hello");
  EXPECT_TRUE(p.prompts[0].ids.empty());
  EXPECT_EQ(p.prompts[0].field, "prompt");
  EXPECT_DOUBLE_EQ(p.sampling.temperature, 0.5);
  EXPECT_EQ(p.sampling.top_k, 7);
  EXPECT_EQ(p.sampling.min_new_tokens, 1);
  EXPECT_EQ(p.stop, (std::vector<std::string>{"\n", "END"}));
  EXPECT_EQ(p.stop_token_ids, (std::vector<int32_t>{3, 4}));
  const std::map<int32_t, float> bias(p.sampling.logit_bias.begin(), p.sampling.logit_bias.end());
  EXPECT_EQ(bias, (std::map<int32_t, float>{{5, -100.0f}, {17, 2.5f}}));
  EXPECT_EQ(p.n, 2);
  EXPECT_EQ(p.best_of, 3);
  EXPECT_EQ(p.seed, std::optional<uint64_t>(11));
  EXPECT_EQ(p.top_logprobs, 2);
  EXPECT_TRUE(p.echo);
  EXPECT_EQ(p.prompt_logprobs_from, 0);  // echo with logprobs scores the prompt
  EXPECT_EQ(p.max_tokens, std::optional<int64_t>(16));  // OpenAI's default
  EXPECT_TRUE(p.allow_zero_tokens);
  EXPECT_FALSE(p.stream);
}

TEST(Requests, CompletionPromptLists) {
  const Plan p = parse_request(Endpoint::kCompletions, R"({"prompt": [[1, 2, 3], "two"], "max_tokens": 3})", context());
  ASSERT_EQ(p.prompts.size(), 2u);
  EXPECT_EQ(p.prompts[0].ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(p.prompts[0].field, "prompt[0]");
  EXPECT_EQ(p.prompts[1].text, "two");
  EXPECT_EQ(p.max_tokens, std::optional<int64_t>(3));
  EXPECT_EQ(p.top_logprobs, -1);
  // One list of ids is one prompt.
  const Plan one = parse_request(Endpoint::kCompletions, R"({"prompt": [9, 8]})", context());
  ASSERT_EQ(one.prompts.size(), 1u);
  EXPECT_EQ(one.prompts[0].ids, (std::vector<int32_t>{9, 8}));
  EXPECT_EQ(one.prompts[0].field, "prompt");
}

TEST(Requests, GenerationDefaultsApplyUnlessGiven) {
  RequestContext c = context();
  c.defaults.temperature = 0.6;
  c.defaults.top_p = 0.95;
  const Plan p = parse_request(Endpoint::kCompletions, R"({"prompt": "x", "top_p": 0.5})", c);
  EXPECT_DOUBLE_EQ(p.sampling.temperature, 0.6);
  EXPECT_DOUBLE_EQ(p.sampling.top_p, 0.5);
  c.defaults.do_sample = false;
  EXPECT_DOUBLE_EQ(parse_request(Endpoint::kCompletions, R"({"prompt": "x"})", c).sampling.temperature, 0.0);
}

TEST(Requests, ChatWithTools) {
  const Plan p = parse_request(Endpoint::kChatCompletions, R"({"messages": [
      {"role": "user", "content": "Weather?"},
      {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "w", "arguments": "{\"city\": \"Oslo\"}"}}]}],
      "tools": [{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}],
      "tool_choice": {"type": "function", "function": {"name": "w"}}, "parallel_tool_calls": false,
      "chat_template_kwargs": {"enable_thinking": false}, "max_completion_tokens": 20, "max_tokens": 5,
      "logprobs": true, "top_logprobs": 3, "stream": true, "stream_options": {"include_usage": true}})", context());
  EXPECT_TRUE(p.prompts.empty());
  ASSERT_EQ(p.messages.size(), 2u);
  // The template gets the arguments as an object.
  EXPECT_EQ(p.messages[1]["tool_calls"][0]["function"]["arguments"]["city"], "Oslo");
  EXPECT_EQ(p.chat_template_kwargs["enable_thinking"], false);
  EXPECT_TRUE(p.tools.required);
  EXPECT_EQ(p.tools.only, "w");
  EXPECT_FALSE(p.tools.parallel);
  EXPECT_TRUE(p.tools.parse_calls);
  ASSERT_TRUE(p.tools.for_template.is_array());
  EXPECT_EQ(p.tools.for_template[0]["function"]["name"], "w");
  EXPECT_EQ(p.calls_format, ToolCallFormat::kQwen25);
  EXPECT_TRUE(p.separate_reasoning);
  EXPECT_EQ(p.max_tokens, std::optional<int64_t>(20));
  EXPECT_EQ(p.max_tokens_field, "max_completion_tokens");
  EXPECT_EQ(p.top_logprobs, 3);
  EXPECT_TRUE(p.stream);
  EXPECT_TRUE(p.include_usage);
  // A chat request without max_tokens gets what the context leaves.
  EXPECT_FALSE(parse_request(Endpoint::kChatCompletions, R"({"messages": [{"role": "user"}]})", context()).max_tokens);
}

TEST(Requests, ToolChoiceNoneGivesTheTemplateNoTools) {
  const Plan p = parse_request(Endpoint::kChatCompletions, R"({"messages": [{"role": "user"}], "tool_choice": "none",
      "tools": [{"type": "function", "function": {"name": "w"}}]})", context());
  EXPECT_TRUE(p.tools.for_template.is_null());
  EXPECT_FALSE(p.tools.parse_calls);
  EXPECT_EQ(p.calls_format, ToolCallFormat::kNone);
}

TEST(Requests, ResponseFormatKeepsTheSchemasKeyOrder) {
  const Plan p = parse_request(Endpoint::kChatCompletions, R"({"messages": [{"role": "user"}], "response_format":
      {"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": "object",
      "properties": {"zeta": {"type": "string"}, "alpha": {"type": "integer"}}}}}})", context());
  EXPECT_EQ(p.constraint.kind, "json_schema");
  EXPECT_EQ(p.constraint.field, "response_format.json_schema.schema");
  EXPECT_LT(p.constraint.text.find("zeta"), p.constraint.text.find("alpha"));
  const Plan plain = parse_request(Endpoint::kChatCompletions,
                                   R"({"messages": [{"role": "user"}], "response_format": {"type": "text"}})", context());
  EXPECT_TRUE(plain.constraint.kind.empty());
}

TEST(Requests, GenerateFields) {
  const Plan p = parse_request(Endpoint::kGenerate, R"j({"input_ids": [[1, 2, 3], [4, 5]], "sampling_params":
      {"temperature": 0, "max_new_tokens": 0, "n": 2, "regex": "(yes|no)", "min_new_tokens": 0, "stop": "."},
      "return_logprob": true, "logprob_start_len": 1, "top_logprobs_num": 4, "return_text_in_logprobs": true,
      "rid": "r-1", "stream": true})j", context());
  ASSERT_EQ(p.prompts.size(), 2u);
  EXPECT_EQ(p.prompts[1].ids, (std::vector<int32_t>{4, 5}));
  EXPECT_EQ(p.prompts[1].field, "input_ids[1]");
  EXPECT_DOUBLE_EQ(p.sampling.temperature, 0.0);
  EXPECT_EQ(p.max_tokens, std::optional<int64_t>(0));  // with return_logprob: the prompt only
  EXPECT_EQ(p.max_tokens_field, "max_new_tokens");
  EXPECT_EQ(p.n, 2);
  EXPECT_EQ(p.constraint.kind, "regex");
  EXPECT_EQ(p.constraint.text, "(yes|no)");
  EXPECT_EQ(p.constraint.field, "regex");
  EXPECT_EQ(p.stop, std::vector<std::string>{"."});
  EXPECT_TRUE(p.return_logprob);
  EXPECT_EQ(p.logprob_start_len, 1);
  EXPECT_EQ(p.prompt_logprobs_from, 1);
  EXPECT_FALSE(p.score_last_prompt_token);
  EXPECT_EQ(p.top_logprobs, 4);
  EXPECT_TRUE(p.return_text_in_logprobs);
  EXPECT_EQ(p.rid, "r-1");
  EXPECT_TRUE(p.stream);

  const Plan text = parse_request(Endpoint::kGenerate, R"({"text": "hi", "return_logprob": true})", context());
  ASSERT_EQ(text.prompts.size(), 1u);
  EXPECT_EQ(text.prompts[0].text, "hi");
  EXPECT_EQ(text.prompts[0].field, "text");
  EXPECT_EQ(text.max_tokens, std::optional<int64_t>(128));  // SGLang's default
  EXPECT_TRUE(text.score_last_prompt_token);  // logprob_start_len -1: the last prompt token
  EXPECT_EQ(text.top_logprobs, 0);
}

TEST(Requests, RefusalsNameTheField) {
  struct Case {
    Endpoint endpoint;
    const char* body;
    int status;
    const char* field;
    const char* message;  // a part of it
  };
  const Case cases[] = {
      {Endpoint::kCompletions, "[1]", 400, "", "must be a JSON object"},
      {Endpoint::kCompletions, "{\"prompt\": \"\xff\"}", 400, "", "not valid UTF-8"},
      {Endpoint::kCompletions, R"({"prompt": "x", "model": "other"})", 404, "model", "does not exist"},
      {Endpoint::kCompletions, R"({"prompt": "x", "temperature": "hot"})", 400, "temperature", "must be a number"},
      {Endpoint::kCompletions, R"({"prompt": "x", "temperature": -1})", 400, "temperature", ">= 0"},
      {Endpoint::kCompletions, R"({"prompt": "x", "n": 5})", 400, "n", "between 1 and 4"},
      {Endpoint::kCompletions, R"({"prompt": "x", "n": 4294967297})", 400, "n", "between 1 and 4"},
      {Endpoint::kCompletions, R"({"prompt": "x", "n": 2, "best_of": 1})", 400, "best_of", "at least 'n'"},
      {Endpoint::kCompletions, R"({"prompt": "x", "best_of": 2, "stream": true})", 400, "best_of", "cannot be streamed"},
      {Endpoint::kCompletions, R"({"prompt": "x", "logprobs": 21})", 400, "logprobs", "between 0 and 20"},
      {Endpoint::kCompletions, R"({"prompt": "x", "max_tokens": 9223372036854775808})", 400, "max_tokens", "between 1"},
      {Endpoint::kCompletions, R"({"prompt": [1, -2]})", 400, "prompt", "not a token id"},
      {Endpoint::kCompletions, R"({"prompt": ["a", 3]})", 400, "prompt[1]", "a string or a list of token ids"},
      {Endpoint::kCompletions, R"({"prompt": []})", 400, "prompt", "a string or a list of token ids"},
      {Endpoint::kCompletions, R"({"temperature": 1})", 400, "prompt", "is required"},
      {Endpoint::kCompletions, R"({"prompt": "x", "stop": [1]})", 400, "stop", "list of strings"},
      {Endpoint::kCompletions, R"({"prompt": "x", "logit_bias": {"100": 1}})", 400, "logit_bias", "[0, 100)"},
      {Endpoint::kCompletions, R"({"prompt": "x", "logit_bias": {"1": 101}})", 400, "logit_bias", "[-100, 100]"},
      {Endpoint::kCompletions, R"({"prompt": "x", "regex": "a", "ebnf": "b"})", 400, "ebnf", "not several"},
      {Endpoint::kCompletions, R"({"prompt": "x", "stream_options": 1})", 400, "stream_options", "an object"},
      {Endpoint::kChatCompletions, R"({"messages": []})", 400, "messages", "non-empty list"},
      {Endpoint::kChatCompletions, R"({"messages": [{"content": "x"}]})", 400, "messages", "'role'"},
      {Endpoint::kChatCompletions, R"({"messages": [{"role": "user"}], "echo": true})", 400, "echo", "/v1/completions"},
      {Endpoint::kChatCompletions, R"({"messages": [{"role": "user"}], "tools": [{"type": "x"}]})", 400, "tools[0].type",
       "\"function\""},
      {Endpoint::kChatCompletions, R"({"messages": [{"role": "user"}], "tools": [{"type": "function", "function": {}}]})",
       400, "tools[0].function.name", "non-empty string"},
      {Endpoint::kChatCompletions, R"({"messages": [{"role": "user"}], "tool_choice": "required"})", 400, "tool_choice",
       "needs 'tools'"},
      {Endpoint::kChatCompletions,
       R"({"messages": [{"role": "user"}], "tools": [{"type": "function", "function": {"name": "w"}}], "tool_choice": "required",
           "response_format": {"type": "json_object"}})",
       400, "tool_choice", "both constrain"},
      {Endpoint::kChatCompletions, R"({"messages": [{"role": "user"}], "response_format": {"type": "xml"}})", 400,
       "response_format.type", "unknown"},
      {Endpoint::kChatCompletions, R"({"messages": [{"role": "user"}], "response_format": {"type": "json_schema"}})", 400,
       "response_format.json_schema", "an object"},
      {Endpoint::kChatCompletions, R"({"messages": [{"role": "user"}], "chat_template_kwargs": []})", 400,
       "chat_template_kwargs", "an object"},
      {Endpoint::kChatCompletions, R"({"messages": [{"role": "user"}], "max_completion_tokens": 0})", 400,
       "max_completion_tokens", "between 1"},
      {Endpoint::kGenerate, R"({"sampling_params": {"max_new_tokens": 1}})", 400, "text", "'text' or 'input_ids'"},
      {Endpoint::kGenerate, R"({"text": "x", "sampling_params": []})", 400, "sampling_params", "an object"},
      {Endpoint::kGenerate, R"({"text": "x", "sampling_params": {"top_p": 0}})", 400, "top_p", "(0, 1]"},
      {Endpoint::kGenerate, R"({"text": "x", "sampling_params": {"max_new_tokens": 0}})", 400, "max_new_tokens", "between 1"},
      {Endpoint::kGenerate, R"({"text": ["x", 1]})", 400, "text[1]", "must be a string"},
      {Endpoint::kGenerate, R"({"text": []})", 400, "text", "1 to 128 prompts"},
      {Endpoint::kGenerate, R"({"input_ids": []})", 400, "input_ids", "the prompt is empty"},
      {Endpoint::kGenerate, R"({"input_ids": [[1], 2]})", 400, "input_ids[1]", "list of token ids"},
      {Endpoint::kGenerate, R"({"input_ids": [4294967296]})", 400, "input_ids", "not a token id"},
      {Endpoint::kGenerate, R"({"text": "x", "logprob_start_len": 1.5})", 400, "logprob_start_len", "an integer"},
      {Endpoint::kGenerate, R"({"text": "x", "top_logprobs_num": -1})", 400, "top_logprobs_num", "between 0 and 20"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.body);
    const ApiError e = refusal(c.endpoint, c.body);
    EXPECT_EQ(e.status, c.status);
    EXPECT_EQ(e.context().field, c.field);
    EXPECT_NE(e.message().find(c.message), std::string::npos) << e.message();
  }
}

TEST(Requests, ServerFactsDecide) {
  RequestContext no_template = context();
  no_template.has_chat_template = false;
  EXPECT_EQ(refusal(Endpoint::kChatCompletions, R"({"messages": [{"role": "user"}]})", no_template).context().field,
            "messages");
  RequestContext no_parser = context();
  no_parser.tool_call_parser = ToolCallFormat::kNone;
  const ApiError e = refusal(Endpoint::kChatCompletions, R"({"messages": [{"role": "user"}],
      "tools": [{"type": "function", "function": {"name": "w"}}], "tool_choice": "required"})", no_parser);
  EXPECT_EQ(e.context().field, "tool_choice");
  EXPECT_NE(e.message().find("--tool-call-parser"), std::string::npos);
}

}  // namespace
}  // namespace quanta::server
