#include "quanta/server/requests.h"

#include <set>

#include "quanta/core/json.h"
#include "quanta/core/parse.h"

namespace quanta::server {

using nlohmann::json;

namespace {

// An integer JSON value within [lo, hi]; unsigned values past INT64_MAX are out of any range.
bool in_range(const json& v, int64_t lo, int64_t hi) {
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) return false;
  const int64_t x = v.get<int64_t>();
  return x >= lo && x <= hi;
}

bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

void check_model(const Body& b, const RequestContext& ctx) {
  if (!b.has("model")) return;
  const std::string m = b.string("model", "");
  if (m != ctx.served_model_name && m != ctx.model_path)
    throw ApiError{404, "The model '" + m + "' does not exist; this server serves '" + ctx.served_model_name + "'", "model"};
}

// Sampling and limits shared by /v1/completions, /v1/chat/completions and /generate.
void read_sampling(const Body& b, const RequestContext& ctx, Plan& p) {
  engine::SamplingParams& sp = p.sampling;
  const format::GenerationDefaults& d = ctx.defaults;
  if (d.do_sample && !*d.do_sample) sp.temperature = 0.0;
  else if (d.temperature) sp.temperature = *d.temperature;
  if (d.top_p) sp.top_p = *d.top_p;
  if (d.top_k) sp.top_k = *d.top_k;
  if (d.min_p) sp.min_p = *d.min_p;
  if (d.repetition_penalty) sp.repetition_penalty = *d.repetition_penalty;
  sp.temperature = b.number("temperature", sp.temperature);
  sp.top_p = b.number("top_p", sp.top_p);
  sp.top_k = b.integer("top_k", sp.top_k);
  sp.min_p = b.number("min_p", sp.min_p);
  sp.repetition_penalty = b.number("repetition_penalty", sp.repetition_penalty);
  sp.frequency_penalty = b.number("frequency_penalty", 0.0);
  sp.presence_penalty = b.number("presence_penalty", 0.0);
  if (b.has("seed")) p.seed = static_cast<uint64_t>(b.integer("seed", 0));
  p.ignore_eos = b.boolean("ignore_eos", false);
  p.skip_special = b.boolean("skip_special_tokens", true);
  if (b.has("stop")) {
    const json& s = b.j["stop"];
    if (s.is_string()) p.stop.push_back(s.get<std::string>());
    else if (s.is_array()) {
      for (const json& e : s) {
        if (!e.is_string()) throw ApiError{400, "'stop' must be a string or a list of strings", "stop"};
        p.stop.push_back(e.get<std::string>());
      }
    } else {
      throw ApiError{400, "'stop' must be a string or a list of strings", "stop"};
    }
    if (p.stop.size() > 16) throw ApiError{400, "at most 16 stop strings", "stop"};
  }
  if (b.has("stop_token_ids")) {
    if (!b.j["stop_token_ids"].is_array()) throw ApiError{400, "'stop_token_ids' must be a list of integers", "stop_token_ids"};
    p.stop_token_ids = token_ids(b.j["stop_token_ids"], "stop_token_ids");
  }
  // OpenAI's and vLLM's min_tokens, SGLang's min_new_tokens.
  const char* min_key = b.has("min_new_tokens") ? "min_new_tokens" : "min_tokens";
  sp.min_new_tokens = b.integer(min_key, 0, 0, INT32_MAX);
  if (b.has("logit_bias")) {
    const json& lb = b.j["logit_bias"];
    if (!lb.is_object()) throw ApiError{400, "'logit_bias' must be an object of token id -> bias", "logit_bias"};
    for (const auto& [key, bias] : lb.items()) {
      const std::optional<int64_t> id = parse_non_negative(key, ctx.vocab - 1);
      if (!id)
        throw ApiError{400, "'logit_bias' key '" + key + "' is not a token id in [0, " + std::to_string(ctx.vocab) + ")", "logit_bias"};
      if (!bias.is_number()) throw ApiError{400, "'logit_bias' of token " + key + " must be a number", "logit_bias"};
      sp.logit_bias.push_back({static_cast<int32_t>(*id), bias.get<float>()});  // its range: validate()
    }
  }
  try {
    sp.validate();
  } catch (const Error& e) {
    throw ApiError{400, e.message(), e.context().field};
  }
}

// Structured outputs: SGLang's json_schema / regex / ebnf (in sampling_params, or beside the
// OpenAI fields) and OpenAI's response_format. `b` is the request body's object `within` (or the
// body itself); the body is parsed again keeping its keys in the client's order, so that a
// schema's properties are generated in that order.
ConstraintSource read_constraint(const Body& b, const std::string& body, const char* within) {
  ConstraintSource c;
  if (!b.has("json_schema") && !b.has("regex") && !b.has("ebnf") && !b.has("response_format")) return c;
  const auto whole = parse_json<nlohmann::ordered_json>(body);
  const auto& ordered = within && whole.contains(within) ? whole[within] : whole;
  for (const char* key : {"json_schema", "regex", "ebnf"}) {
    if (!b.has(key)) continue;
    if (!c.kind.empty()) throw ApiError{400, "give one of 'json_schema', 'regex' and 'ebnf', not several", key};
    const auto& v = ordered[key];
    if (key == std::string("json_schema") && v.is_object()) c.text = v.dump();
    else if (v.is_string()) c.text = v.get<std::string>();
    else throw ApiError{400, std::string("'") + key + "' must be a string", key};
    c.kind = c.field = key;
  }
  if (b.has("response_format")) {
    const auto& rf = ordered["response_format"];
    const std::string type = rf.is_object() && rf.contains("type") && rf["type"].is_string() ? rf["type"].get<std::string>() : "";
    if (type == "json_object" || type == "json_schema") {
      if (!c.kind.empty()) throw ApiError{400, "'response_format' and '" + c.kind + "' both constrain the output; give one", "response_format"};
      c.kind = type;
      c.field = "response_format";
      if (type == "json_schema") {
        if (!rf.contains("json_schema") || !rf["json_schema"].is_object())
          throw ApiError{400, "'response_format.json_schema' must be an object with a 'schema'", "response_format.json_schema"};
        const auto& js = rf["json_schema"];
        if (js.contains("strict") && !js["strict"].is_boolean() && !js["strict"].is_null())
          throw ApiError{400, "'response_format.json_schema.strict' must be true or false", "response_format.json_schema.strict"};
        // Without a schema any JSON value is allowed (strict or not, the output is JSON).
        c.text = js.contains("schema") && !js["schema"].is_null() ? js["schema"].dump() : "true";
        c.field = "response_format.json_schema.schema";
      }
    } else if (type != "text") {
      throw ApiError{400, "response_format type '" + type + "' is unknown (text, json_object or json_schema)", "response_format.type"};
    }
  }
  return c;
}

ChatTools read_tools(const Body& b, ToolCallFormat parser) {
  ChatTools t;
  t.parallel = b.boolean("parallel_tool_calls", true);
  std::set<std::string> names;
  if (b.has("tools")) {
    const json& tools = b.j["tools"];
    if (!tools.is_array()) throw ApiError{400, "'tools' must be a list", "tools"};
    for (size_t i = 0; i < tools.size(); ++i) {
      const std::string at = "tools[" + std::to_string(i) + "]";
      const json& tool = tools[i];
      if (!tool.is_object() || !tool.contains("type") || tool["type"] != "function")
        throw ApiError{400, "'" + at + ".type' must be \"function\"", at + ".type"};
      if (!tool.contains("function") || !tool["function"].is_object())
        throw ApiError{400, "'" + at + ".function' must be an object", at + ".function"};
      const json& f = tool["function"];
      if (!f.contains("name") || !f["name"].is_string() || f["name"].get_ref<const std::string&>().empty())
        throw ApiError{400, "'" + at + ".function.name' must be a non-empty string", at + ".function.name"};
      if (f.contains("parameters") && !f["parameters"].is_null() && !f["parameters"].is_object())
        throw ApiError{400, "'" + at + ".function.parameters' must be a JSON Schema object", at + ".function.parameters"};
      names.insert(f["name"].get<std::string>());
    }
  }
  std::string choice = names.empty() ? "none" : "auto";
  if (b.has("tool_choice")) {
    const json& tc = b.j["tool_choice"];
    if (tc.is_string() && (tc == "none" || tc == "auto" || tc == "required")) {
      choice = tc.get<std::string>();
    } else if (tc.is_object() && tc.contains("function") && tc["function"].is_object() && tc["function"].contains("name") &&
               tc["function"]["name"].is_string()) {
      const std::string name = tc["function"]["name"].get<std::string>();
      if (!names.count(name))
        throw ApiError{400, "'tool_choice' names the function '" + name + "', which is not in 'tools'", "tool_choice"};
      choice = "function";
    } else {
      throw ApiError{400, "'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}",
                     "tool_choice"};
    }
    if (choice != "none" && names.empty()) throw ApiError{400, "'tool_choice' needs 'tools'", "tool_choice"};
  }
  if (choice == "none") return t;
  if (choice == "required" || choice == "function") {
    if (parser == ToolCallFormat::kNone)
      throw ApiError{400, "tool_choice '" + choice + "' needs a tool-call parser (--tool-call-parser); this model's template names none",
                     "tool_choice"};
    t.required = true;
    if (choice == "function") t.only = b.j["tool_choice"]["function"]["name"].get<std::string>();
  }
  t.for_template = b.j["tools"];
  t.parse_calls = parser != ToolCallFormat::kNone;
  return t;
}

// Messages as a chat template expects them: OpenAI gives an assistant's tool-call arguments as JSON
// text, templates (like transformers') expect the object.
json template_messages(const json& messages) {
  json out = messages;
  for (json& m : out) {
    if (!m.is_object() || !m.contains("tool_calls") || !m["tool_calls"].is_array()) continue;
    for (json& c : m["tool_calls"]) {
      if (!c.is_object() || !c.contains("function") || !c["function"].is_object()) continue;
      json& f = c["function"];
      if (!f.contains("arguments") || !f["arguments"].is_string()) continue;
      try {
        json args = parse_json(f["arguments"].get<std::string>());
        if (args.is_object()) f["arguments"] = std::move(args);
      } catch (const Error&) {
        // not JSON: the template gets the text as it was
      }
    }
  }
  return out;
}

// The chat: messages, template variables and tools.
void read_chat(const Body& b, const RequestContext& ctx, Plan& p) {
  if (!b.has("messages") || !b.j["messages"].is_array() || b.j["messages"].empty())
    throw ApiError{400, "'messages' must be a non-empty list", "messages"};
  for (const json& m : b.j["messages"])
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
      throw ApiError{400, "each message needs a 'role'", "messages"};
  if (!ctx.has_chat_template) throw ApiError{400, "this model has no chat template; use /v1/completions", "messages"};
  p.chat_template_kwargs = b.has("chat_template_kwargs") ? b.j["chat_template_kwargs"] : json::object();
  if (!p.chat_template_kwargs.is_object())
    throw ApiError{400, "'chat_template_kwargs' must be an object", "chat_template_kwargs"};
  p.tools = read_tools(b, ctx.tool_call_parser);
  if (p.tools.required && !p.constraint.kind.empty())
    throw ApiError{400, "tool_choice '" + std::string(p.tools.only.empty() ? "required" : "function") +
                            "' and a structured output format both constrain the answer; give one", "tool_choice"};
  // Harmony (gpt-oss) answers are always read: their channels are the answer's structure.
  p.calls_format = p.tools.parse_calls || ctx.tool_call_parser == ToolCallFormat::kGptOss ? ctx.tool_call_parser
                                                                                          : ToolCallFormat::kNone;
  if (needs_special_tokens(p.calls_format) && !b.has("skip_special_tokens"))
    p.skip_special = false;  // the markers are special tokens
  p.separate_reasoning = b.boolean("separate_reasoning", true) && ctx.reasoning_parser != ReasoningFormat::kNone;
  p.messages = template_messages(b.j["messages"]);
}

// /v1/completions' prompt: a string, a list of token ids, or a list of either (several prompts).
void read_prompts(const Body& b, Plan& p) {
  if (!b.has("prompt")) throw ApiError{400, "'prompt' is required", "prompt"};
  const json& pr = b.j["prompt"];
  const bool several = pr.is_array() && !pr.empty() && (pr[0].is_string() || pr[0].is_array());
  if (several && pr.size() > kMaxPrompts)
    throw ApiError{400, "'prompt' holds " + std::to_string(pr.size()) + " prompts; at most " + std::to_string(kMaxPrompts),
                   "prompt"};
  for (size_t k = 0; k < (several ? pr.size() : 1); ++k) {
    const json& one = several ? pr[k] : pr;
    Prompt q{.field = several ? "prompt[" + std::to_string(k) + "]" : "prompt"};
    if (one.is_string()) q.text = one.get<std::string>();
    else if (one.is_array() && !one.empty()) q.ids = token_ids(one, q.field);
    else throw ApiError{400, "'" + q.field + "' must be a string or a list of token ids", q.field};
    p.prompts.push_back(std::move(q));
  }
}

Plan parse_openai(const json& j, const std::string& body, bool is_chat, const RequestContext& ctx) {
  const Body b{j};
  check_model(b, ctx);
  Plan p;
  p.echo = b.boolean("echo", false);
  if (p.echo && is_chat) throw ApiError{400, "'echo' is for /v1/completions", "echo"};
  read_sampling(b, ctx, p);
  p.constraint = read_constraint(b, body, nullptr);
  p.n = static_cast<int>(b.integer("n", 1, 1, ctx.max_n));
  p.stream = b.boolean("stream", false);
  p.rid = b.string("rid", "");
  p.best_of = p.n;
  if (!is_chat) {
    p.best_of = static_cast<int>(b.integer("best_of", p.n, 1, ctx.max_n));
    if (p.best_of < p.n) throw ApiError{400, "'best_of' must be at least 'n' (" + std::to_string(p.n) + ")", "best_of"};
    if (p.best_of > p.n && p.stream) throw ApiError{400, "'best_of' greater than 'n' cannot be streamed", "best_of"};
  }
  if (b.has("stream_options")) {
    if (!j["stream_options"].is_object()) throw ApiError{400, "'stream_options' must be an object", "stream_options"};
    p.include_usage = Body{j["stream_options"]}.boolean("include_usage", false);
  }
  if (is_chat) {
    if (b.boolean("logprobs", false)) p.top_logprobs = static_cast<int>(b.integer("top_logprobs", 0, 0, 20));
  } else if (b.has("logprobs")) {
    p.top_logprobs = static_cast<int>(b.integer("logprobs", 0, 0, 20));
  }
  if (p.echo && p.top_logprobs >= 0) p.prompt_logprobs_from = 0;  // every prompt token scored
  if (is_chat) read_chat(b, ctx, p);
  else read_prompts(b, p);
  p.max_tokens_field = is_chat && b.has("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  p.allow_zero_tokens = p.echo;  // 0 with echo: the prompt scored, nothing generated
  if (b.has(p.max_tokens_field.c_str())) p.max_tokens = b.integer(p.max_tokens_field.c_str(), 0, p.echo ? 0 : 1);
  else if (!is_chat) p.max_tokens = 16;  // OpenAI's default for completions
  return p;
}

// SGLang's native /generate.
Plan parse_generate(const json& j, const std::string& body, const RequestContext& ctx) {
  const Body b{j};
  Plan p;
  const json sp_json = b.has("sampling_params") ? j["sampling_params"] : json::object();
  if (!sp_json.is_object()) throw ApiError{400, "'sampling_params' must be an object", "sampling_params"};
  const Body sp{sp_json};
  read_sampling(sp, ctx, p);
  p.constraint = read_constraint(sp, body, "sampling_params");
  // One prompt, or a batch: `text` a list of strings, `input_ids` a list of token lists.
  const char* key = b.has("input_ids") ? "input_ids" : b.has("text") ? "text" : nullptr;
  if (!key) throw ApiError{400, "give 'text' or 'input_ids'", "text"};
  const bool ids = key == std::string("input_ids");
  const json& in = j[key];
  const bool batch = ids ? in.is_array() && !in.empty() && in[0].is_array() : in.is_array();
  if (batch && (in.empty() || in.size() > kMaxPrompts))
    throw ApiError{400, std::string("'") + key + "' must hold 1 to " + std::to_string(kMaxPrompts) + " prompts", key};
  for (size_t k = 0; k < (batch ? in.size() : 1); ++k) {
    const json& one = batch ? in[k] : in;
    Prompt q{.field = batch ? std::string(key) + "[" + std::to_string(k) + "]" : std::string(key)};
    if (ids) {
      if (!one.is_array()) throw ApiError{400, "'" + q.field + "' must be a list of token ids", q.field};
      q.ids = token_ids(one, q.field);
      if (q.ids.empty()) throw ApiError{400, "the prompt is empty", q.field};
    } else {
      if (!one.is_string()) throw ApiError{400, "'" + q.field + "' must be a string", q.field};
      q.text = one.get<std::string>();
    }
    p.prompts.push_back(std::move(q));
  }
  p.n = static_cast<int>(sp.integer("n", 1, 1, ctx.max_n));
  p.best_of = p.n;
  // 0 new tokens with return_logprob: the prompt only, scored.
  p.return_logprob = b.boolean("return_logprob", false);
  p.max_tokens_field = "max_new_tokens";
  p.allow_zero_tokens = p.return_logprob;
  p.max_tokens = sp.integer("max_new_tokens", 128, p.return_logprob ? 0 : 1);
  p.stream = b.boolean("stream", false);
  p.rid = b.string("rid", "");
  // SGLang's log-probabilities: of the output tokens, and of the prompt from logprob_start_len
  // (-1: only its last token, with no value, as SGLang gives it); top_logprobs_num alternatives each.
  // Its upper bound is the shortest prompt's length, known once tokenized; past INT64_MAX it is
  // out of range all the same.
  if (b.has("logprob_start_len")) {
    const json& v = j["logprob_start_len"];
    if (!v.is_number_integer()) throw ApiError{400, "'logprob_start_len' must be an integer", "logprob_start_len"};
    p.logprob_start_len = in_range(v, INT64_MIN, INT64_MAX) ? v.get<int64_t>() : INT64_MAX;
  }
  const int top_n = static_cast<int>(b.integer("top_logprobs_num", 0, 0, 20));
  p.return_text_in_logprobs = b.boolean("return_text_in_logprobs", false);
  if (p.return_logprob) {
    p.top_logprobs = top_n;
    p.prompt_logprobs_from = p.logprob_start_len;
    p.score_last_prompt_token = p.logprob_start_len < 0;
  }
  return p;
}

}  // namespace

bool Body::has(const char* k) const { return j.contains(k) && !j[k].is_null(); }

double Body::number(const char* k, double fallback) const {
  if (!has(k)) return fallback;
  if (!j[k].is_number()) throw ApiError{400, std::string("'") + k + "' must be a number", k};
  return j[k].get<double>();
}

int64_t Body::integer(const char* k, int64_t fallback, int64_t lo, int64_t hi) const {
  if (!has(k)) return fallback;
  if (!j[k].is_number_integer()) throw ApiError{400, std::string("'") + k + "' must be an integer", k};
  if (!in_range(j[k], lo, hi))
    throw ApiError{400, std::string("'") + k + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi), k};
  return j[k].get<int64_t>();
}

bool Body::boolean(const char* k, bool fallback) const {
  if (!has(k)) return fallback;
  if (!j[k].is_boolean()) throw ApiError{400, std::string("'") + k + "' must be true or false", k};
  return j[k].get<bool>();
}

std::string Body::string(const char* k, const std::string& fallback) const {
  if (!has(k)) return fallback;
  if (!j[k].is_string()) throw ApiError{400, std::string("'") + k + "' must be a string", k};
  return j[k].get<std::string>();
}

std::vector<int32_t> token_ids(const json& list, const std::string& field, int64_t limit) {
  std::vector<int32_t> ids;
  for (const json& e : list) {
    if (!e.is_number_integer()) throw ApiError{400, "'" + field + "' must be a list of token ids", field};
    if (!in_range(e, 0, limit - 1))
      throw ApiError{400, "'" + field + "' holds " + e.dump() + ", not a token id in [0, " + std::to_string(limit) + ")", field};
    ids.push_back(static_cast<int32_t>(e.get<int64_t>()));
  }
  return ids;
}

json parse_body(const std::string& body) {
  if (!valid_utf8(body)) throw ApiError{400, "the request body is not valid UTF-8", ""};
  // Refused before parsing: a deep body would overflow the stack in copies and dump() (core/json.h).
  try {
    check_json_depth(body, {});
  } catch (const Error& e) {
    throw ApiError{400, "the request body: " + e.message(), ""};
  }
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded()) throw ApiError{400, "the request body is not valid JSON", ""};
  if (!j.is_object()) throw ApiError{400, "the request body must be a JSON object", ""};
  return j;
}

Plan parse_request(Endpoint endpoint, const std::string& body, const RequestContext& context) {
  const json j = parse_body(body);
  if (endpoint == Endpoint::kGenerate) return parse_generate(j, body, context);
  return parse_openai(j, body, endpoint == Endpoint::kChatCompletions, context);
}

}  // namespace quanta::server
