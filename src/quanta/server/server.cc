#include "quanta/server/server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>

#include "quanta/core/error.h"
#include "quanta/core/json.h"
#include "quanta/core/parse.h"
#include "quanta/server/client_connection.h"
#include "quanta/server/generation.h"
#include "quanta/server/metrics.h"
#include "quanta/server/request_log.h"
#include "quanta/server/structured.h"
#include "quanta/server/worker_pool.h"

namespace quanta::server {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

// An error answered as an OpenAI-style JSON body with an HTTP status.
struct ApiError {
  int status;
  std::string message;
  std::string param;
};

const char* error_type(int status) {
  switch (status) {
    case 400: return "invalid_request_error";
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 503: return "service_unavailable";
    default: return "server_error";
  }
}

json error_body(int status, const std::string& message, const std::string& param = "") {
  return {{"error", {{"message", message}, {"type", error_type(status)},
                     {"param", param.empty() ? json(nullptr) : json(param)}, {"code", status}}}};
}

std::string random_id(const char* prefix) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt = std::random_device{}();
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s%08llx%08llx", prefix, static_cast<unsigned long long>(salt & 0xffffffffu),
                static_cast<unsigned long long>(counter.fetch_add(1)));
  return buf;
}

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// An integer JSON value within [lo, hi]; unsigned values past INT64_MAX are out of any range.
bool in_range(const json& v, int64_t lo, int64_t hi) {
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) return false;
  const int64_t x = v.get<int64_t>();
  return x >= lo && x <= hi;
}

// A list of token ids, each an integer in [0, limit) (the vocabulary or, where the scheduler
// checks that, 32 bits); anything else is a 400 naming the field.
std::vector<int32_t> token_ids(const json& list, const std::string& field, int64_t limit = INT32_MAX) {
  std::vector<int32_t> ids;
  for (const json& e : list) {
    if (!e.is_number_integer()) throw ApiError{400, "'" + field + "' must be a list of token ids", field};
    if (!in_range(e, 0, limit - 1))
      throw ApiError{400, "'" + field + "' holds " + e.dump() + ", not a token id in [0, " + std::to_string(limit) + ")", field};
    ids.push_back(static_cast<int32_t>(e.get<int64_t>()));
  }
  return ids;
}

// Typed field access on a request body; a wrong type is a 400 naming the field.
struct Body {
  const json& j;
  bool has(const char* k) const { return j.contains(k) && !j[k].is_null(); }
  double number(const char* k, double fallback) const {
    if (!has(k)) return fallback;
    if (!j[k].is_number()) throw ApiError{400, std::string("'") + k + "' must be a number", k};
    return j[k].get<double>();
  }
  std::optional<double> opt_number(const char* k) const {
    if (!has(k)) return std::nullopt;
    return number(k, 0);
  }
  // Within [lo, hi], checked in 64 bits before any narrowing (2^32 + 1 must not become 1).
  int64_t integer(const char* k, int64_t fallback, int64_t lo = INT64_MIN, int64_t hi = INT64_MAX) const {
    if (!has(k)) return fallback;
    if (!j[k].is_number_integer()) throw ApiError{400, std::string("'") + k + "' must be an integer", k};
    if (!in_range(j[k], lo, hi))
      throw ApiError{400, std::string("'") + k + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi), k};
    return j[k].get<int64_t>();
  }
  bool boolean(const char* k, bool fallback) const {
    if (!has(k)) return fallback;
    if (!j[k].is_boolean()) throw ApiError{400, std::string("'") + k + "' must be true or false", k};
    return j[k].get<bool>();
  }
  std::string string(const char* k, const std::string& fallback) const {
    if (!has(k)) return fallback;
    if (!j[k].is_string()) throw ApiError{400, std::string("'") + k + "' must be a string", k};
    return j[k].get<std::string>();
  }
};

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

// What every generation endpoint extracts from its body.
struct Plan {
  std::vector<int32_t> prompt;
  engine::GenerateRequest base;
  std::vector<std::string> stop;
  int n = 1;
  bool stream = false;
  bool include_usage = false;
  bool skip_special = true;
  std::optional<uint64_t> seed;
  int best_of = 1;  // generations run; the n with the highest cumulative log-probability are returned
  std::string rid;  // the client's request id (/abort_request), if given
  // A list of prompts (/v1/completions, a /generate batch): each gets max(n, best_of) generations,
  // in order (empty: `prompt` alone).
  std::vector<std::vector<int32_t>> prompts;
  bool score_last_prompt_token = false;  // /generate's logprob_start_len -1: each prompt's last token
};

// Prompts in one request at most (a list of strings or of token lists).
constexpr size_t kMaxPrompts = 128;

// A chat request's tools: what the template is given and whether the answer is read for calls.
struct ChatTools {
  json for_template;       // null: no tools (none given, or tool_choice "none")
  bool parse_calls = false;
  bool parallel = true;    // parallel_tool_calls: false keeps the first call only
  bool required = false;   // tool_choice "required" or a named function: the answer is a call
  std::string only;        // the named function
};

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

void append_parts(ChatParts& into, ChatParts from) {
  into.reasoning += from.reasoning;
  into.content += from.content;
  for (auto& c : from.calls) into.calls.push_back(std::move(c));
}

json tool_call_json(const ToolCall& c) {
  return {{"id", c.id}, {"type", "function"}, {"function", {{"name", c.name}, {"arguments", c.arguments}}}};
}

}  // namespace

struct Server::Impl {
  engine::Scheduler& scheduler;
  const tokenizer::Tokenizer& tok;
  ChatRenderer chat;
  format::GenerationDefaults defaults;
  ServerOptions opt;
  Metrics metrics;
  GrammarCache grammars;
  httplib::Server http;
  std::atomic<int> active{0};  // generation requests in flight
  std::atomic<bool> draining{false};  // drain(): refuse new work
  std::atomic<bool> aborting{false};  // drain()'s grace is over: end the requests in flight
  static constexpr const char* kShuttingDown = "the server is shutting down";

  // One generation request from arrival to its last byte: holds its place in
  // `active` and writes its log line when the last holder (the handler, or the
  // stream it started) lets go, so every way a request ends is logged once.
  struct InFlight {
    Impl& impl;
    RequestLog log;
    int position;  // 1-based count of requests in flight at arrival
    // Guarded by impl.registry_mu: the ids it answers to in /abort_request, and its generations.
    std::vector<std::string> ids;
    std::vector<std::shared_ptr<engine::RequestHandle>> handles;
    explicit InFlight(Impl& i) : impl(i), position(++i.active) {}
    ~InFlight() {
      {
        std::lock_guard<std::mutex> lock(impl.registry_mu);
        for (const auto& id : ids) {
          auto it = impl.registry.find(id);
          if (it != impl.registry.end() && it->second == this) impl.registry.erase(it);
        }
      }
      --impl.active;
      if (log.status < 400) log.abort_unfinished("the client went away");
      if (impl.opt.log_requests) {
        const std::string l = log.line(Clock::now()) + "\n";
        std::fputs(l.c_str(), stderr);
      }
    }
  };
  using Flight = std::shared_ptr<InFlight>;
  // Requests in flight by their response id and the client's rid, for /abort_request.
  std::mutex registry_mu;
  std::unordered_map<std::string, InFlight*> registry;

  // The one model this server serves, as /v1/models lists it.
  json model_entry() const {
    return {{"id", opt.served_model_name}, {"object", "model"}, {"created", unix_time()}, {"owned_by", "quanta"},
            {"root", opt.model_path}, {"max_model_len", scheduler.options().context_length}};
  }

  // Makes the request abortable by its response id and by `rid` (a rid already in flight is a 400).
  void register_ids(const Flight& f, const std::string& rid) {
    std::lock_guard<std::mutex> lock(registry_mu);
    if (!rid.empty() && registry.count(rid))
      throw ApiError{400, "the rid '" + rid + "' is already in use by a request in flight", "rid"};
    for (const std::string& id : {f->log.id, rid})
      if (!id.empty() && !registry.count(id)) registry[id] = f.get(), f->ids.push_back(id);
  }
  void attach(const Flight& f, const std::vector<std::unique_ptr<Generation>>& gens) {
    std::lock_guard<std::mutex> lock(registry_mu);
    for (const auto& g : gens) f->handles.push_back(g->handle());
  }
  // Cancels the request with this id: its generations end with finish_reason abort. Returns whether it was found.
  bool abort_request(const std::string& id) {
    std::lock_guard<std::mutex> lock(registry_mu);
    auto it = registry.find(id);
    if (it == registry.end()) return false;
    for (const auto& h : it->second->handles) h->cancel();
    return true;
  }

  Impl(engine::Scheduler& s, const tokenizer::Tokenizer& t, ChatRenderer c, format::GenerationDefaults d,
       ServerOptions o)
      : scheduler(s), tok(t), chat(std::move(c)), defaults(std::move(d)), opt(std::move(o)),
        grammars(t, s.options().eos_token_ids) {}

  // Structured outputs: SGLang's json_schema / regex / ebnf (in sampling_params, or beside the
  // OpenAI fields) and OpenAI's response_format. `b` is the request body's object `within` (or the
  // body itself); the body is parsed again keeping its keys in the client's order, so that a
  // schema's properties are generated in that order.
  void read_constraint(const Body& b, const std::string& body, const char* within, Plan& p) {
    if (!b.has("json_schema") && !b.has("regex") && !b.has("ebnf") && !b.has("response_format")) return;
    const auto whole = parse_json<nlohmann::ordered_json>(body);
    const auto& ordered = within && whole.contains(within) ? whole[within] : whole;
    std::string kind, text, field;
    for (const char* key : {"json_schema", "regex", "ebnf"}) {
      if (!b.has(key)) continue;
      if (!kind.empty()) throw ApiError{400, "give one of 'json_schema', 'regex' and 'ebnf', not several", key};
      const auto& v = ordered[key];
      if (key == std::string("json_schema") && v.is_object()) text = v.dump();
      else if (v.is_string()) text = v.get<std::string>();
      else throw ApiError{400, std::string("'") + key + "' must be a string", key};
      kind = key;
      field = key;
    }
    if (b.has("response_format")) {
      const auto& rf = ordered["response_format"];
      const std::string type = rf.is_object() && rf.contains("type") && rf["type"].is_string() ? rf["type"].get<std::string>() : "";
      if (type == "json_object" || type == "json_schema") {
        if (!kind.empty()) throw ApiError{400, "'response_format' and '" + kind + "' both constrain the output; give one", "response_format"};
        kind = type;
        field = "response_format";
        if (type == "json_schema") {
          if (!rf.contains("json_schema") || !rf["json_schema"].is_object())
            throw ApiError{400, "'response_format.json_schema' must be an object with a 'schema'", "response_format.json_schema"};
          const auto& js = rf["json_schema"];
          if (js.contains("strict") && !js["strict"].is_boolean() && !js["strict"].is_null())
            throw ApiError{400, "'response_format.json_schema.strict' must be true or false", "response_format.json_schema.strict"};
          // Without a schema any JSON value is allowed (strict or not, the output is JSON).
          text = js.contains("schema") && !js["schema"].is_null() ? js["schema"].dump() : "true";
          field = "response_format.json_schema.schema";
        }
      } else if (type != "text") {
        throw ApiError{400, "response_format type '" + type + "' is unknown (text, json_object or json_schema)", "response_format.type"};
      }
    }
    if (kind.empty()) return;
    try {
      p.base.grammar = grammars.get(constraint_ebnf(kind, text, field), field);
    } catch (const Error& e) {
      throw ApiError{400, e.message(), field};
    }
  }

  void reply(httplib::Response& res, int status, const json& body) {
    res.status = status;
    res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
    if (status >= 400) {
      std::lock_guard<std::mutex> lock(metrics.mu);
      ++metrics.requests_failed;
    }
  }

  json parse_body(const httplib::Request& req) {
    if (!valid_utf8(req.body)) throw ApiError{400, "the request body is not valid UTF-8", ""};
    // Refused before parsing: a deep body would overflow the stack in copies and dump() (core/json.h).
    try {
      check_json_depth(req.body, {});
    } catch (const Error& e) {
      throw ApiError{400, "the request body: " + e.message(), ""};
    }
    json j = json::parse(req.body, nullptr, false);
    if (j.is_discarded()) throw ApiError{400, "the request body is not valid JSON", ""};
    if (!j.is_object()) throw ApiError{400, "the request body must be a JSON object", ""};
    return j;
  }

  void check_model(const Body& b) {
    if (b.has("model")) {
      std::string m = b.string("model", "");
      if (m != opt.served_model_name && m != opt.model_path)
        throw ApiError{404, "The model '" + m + "' does not exist; this server serves '" + opt.served_model_name + "'",
                       "model"};
    }
  }

  // Sampling and limits shared by /v1/completions, /v1/chat/completions and /generate.
  void read_sampling(const Body& b, Plan& p) {
    engine::SamplingParams& sp = p.base.sampling;
    if (defaults.do_sample && !*defaults.do_sample) sp.temperature = 0.0;
    else if (defaults.temperature) sp.temperature = *defaults.temperature;
    if (defaults.top_p) sp.top_p = *defaults.top_p;
    if (defaults.top_k) sp.top_k = *defaults.top_k;
    if (defaults.min_p) sp.min_p = *defaults.min_p;
    if (defaults.repetition_penalty) sp.repetition_penalty = *defaults.repetition_penalty;
    sp.temperature = b.number("temperature", sp.temperature);
    sp.top_p = b.number("top_p", sp.top_p);
    sp.top_k = b.integer("top_k", sp.top_k);
    sp.min_p = b.number("min_p", sp.min_p);
    sp.repetition_penalty = b.number("repetition_penalty", sp.repetition_penalty);
    sp.frequency_penalty = b.number("frequency_penalty", 0.0);
    sp.presence_penalty = b.number("presence_penalty", 0.0);
    if (b.has("seed")) p.seed = static_cast<uint64_t>(b.integer("seed", 0));
    p.base.ignore_eos = b.boolean("ignore_eos", false);
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
      p.base.stop_token_ids = token_ids(b.j["stop_token_ids"], "stop_token_ids");
    }
    // OpenAI's and vLLM's min_tokens, SGLang's min_new_tokens.
    const char* min_key = b.has("min_new_tokens") ? "min_new_tokens" : "min_tokens";
    sp.min_new_tokens = b.integer(min_key, 0, 0, INT32_MAX);
    if (b.has("logit_bias")) {
      const json& lb = b.j["logit_bias"];
      if (!lb.is_object()) throw ApiError{400, "'logit_bias' must be an object of token id -> bias", "logit_bias"};
      const int64_t vocab = scheduler.options().sample_vocab > 0 ? scheduler.options().sample_vocab : tok.vocab_size();
      for (const auto& [key, bias] : lb.items()) {
        const std::optional<int64_t> id = parse_non_negative(key, vocab - 1);
        if (!id)
          throw ApiError{400, "'logit_bias' key '" + key + "' is not a token id in [0, " + std::to_string(vocab) + ")", "logit_bias"};
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

  // allow_zero: 0 runs the prompt only (scoring it). Also checks min_tokens against the maximum.
  void set_max_tokens(Plan& p, std::optional<int64_t> requested, const std::string& param = "max_tokens",
                      bool allow_zero = false) {
    const int64_t ctx = scheduler.options().context_length;
    const int64_t room = ctx - static_cast<int64_t>(p.prompt.size());
    if (room <= 0)
      throw ApiError{400, "the prompt has " + std::to_string(p.prompt.size()) +
                              " tokens, which does not fit the context length of " + std::to_string(ctx),
                     "messages"};
    int64_t n = requested.value_or(room);
    if (n < (allow_zero ? 0 : 1))
      throw ApiError{400, "'" + param + "' must be at least " + (allow_zero ? "0" : "1"), param};
    if (n > room)
      throw ApiError{400, "'" + param + "' is " + std::to_string(n) + ", but the prompt (" + std::to_string(p.prompt.size()) +
                              " tokens) leaves room for " + std::to_string(room) + " in the context of " + std::to_string(ctx),
                     param};
    p.base.max_new_tokens = n;
    if (p.base.sampling.min_new_tokens > n)
      throw ApiError{400, "'min_tokens' (" + std::to_string(p.base.sampling.min_new_tokens) + ") exceeds '" + param +
                              "' (" + std::to_string(n) + ")", "min_tokens"};
  }

  std::vector<std::unique_ptr<Generation>> start(const Plan& p, const Flight& flight = nullptr) {
    if (flight) register_ids(flight, p.rid);
    std::vector<std::unique_ptr<Generation>> gens;
    const int per_prompt = std::max(p.n, p.best_of);
    const std::vector<std::vector<int32_t>> one{p.prompt};
    const auto& prompts = p.prompts.empty() ? one : p.prompts;
    for (size_t k = 0; k < prompts.size(); ++k)
      for (int i = 0; i < per_prompt; ++i) {
        engine::GenerateRequest r = p.base;
        r.prompt = prompts[k];
        if (p.score_last_prompt_token) r.prompt_logprobs_from = static_cast<int64_t>(prompts[k].size()) - 1;
        // Each choice draws from its own stream; a fixed seed still fixes all of them.
        const uint64_t stream = k * static_cast<uint64_t>(per_prompt) + static_cast<uint64_t>(i);
        r.sampling.seed = p.seed ? *p.seed + stream : std::random_device{}();
        try {
          gens.push_back(std::make_unique<Generation>(scheduler, tok, std::move(r), p.stop, p.skip_special));
        } catch (const Error& e) {
          throw ApiError{400, e.message(), e.context().field};
        }
      }
    if (flight) attach(flight, gens);
    return gens;
  }

  // --timeout: a generation running longer is aborted as /abort_request would (its output so far is
  // returned, finish_reason "abort"). Cancelling twice is harmless.
  void enforce_timeout(Generation& g) {
    if (opt.request_timeout_sec > 0 &&
        std::chrono::duration<double>(Clock::now() - g.start()).count() > opt.request_timeout_sec)
      g.handle()->cancel();
  }

  // Collects a whole generation (non-streaming).
  struct Result {
    std::string text;
    std::vector<int32_t> tokens;
    std::vector<engine::TokenEvent> events;
    std::vector<engine::ScoredToken> prompt_logprobs;
    Delta last;
  };
  static constexpr const char* kClientGone = "the client disconnected";
  // Waits for g to finish. With `client`, a hang-up is noticed within a scheduler
  // step: it throws (status 499, nginx's "client closed request"), and unwinding
  // destroys the request's generations, which cancels them and frees their KV.
  Result collect(Generation& g, RequestLog* log = nullptr, size_t choice = 0, const ClientConnection* client = nullptr) {
    Result r;
    bool first = true;
    auto prev = Clock::now();
    for (;;) {
      auto d = g.next(std::chrono::milliseconds(client ? 20 : 100));
      enforce_timeout(g);
      if (aborting) {
        if (log) log->abort_unfinished(kShuttingDown);
        throw ApiError{503, kShuttingDown, ""};
      }
      if (client && client->closed()) {
        if (log) log->abort_unfinished(kClientGone);
        throw ApiError{499, kClientGone, ""};
      }
      if (!d) continue;
      auto now = Clock::now();
      if (log) log->on_delta(choice, *d);
      if (!d->tokens.empty()) {
        if (first) metrics.time_to_first_token.observe(std::chrono::duration<double>(now - g.start()).count());
        else metrics.inter_token_latency.observe(std::chrono::duration<double>(now - prev).count() / static_cast<double>(d->tokens.size()));
        first = false;
        prev = now;
      }
      r.text += d->text;
      r.tokens.insert(r.tokens.end(), d->tokens.begin(), d->tokens.end());
      r.events.insert(r.events.end(), d->events.begin(), d->events.end());
      if (!d->prompt_logprobs.empty()) r.prompt_logprobs = std::move(d->prompt_logprobs);
      if (d->finish != engine::FinishReason::kNone) {
        r.last = std::move(*d);
        metrics.e2e_latency.observe(std::chrono::duration<double>(now - g.start()).count());
        return r;
      }
    }
  }

  static const char* finish_name(const Delta& d) {
    return d.finish == engine::FinishReason::kLength ? "length" : d.finish == engine::FinishReason::kAbort ? "abort" : "stop";
  }

  // lasts: every generation's last Delta, `per_prompt` of them for each prompt in turn.
  json usage(const std::vector<Delta>& lasts, size_t per_prompt = 0) {
    int64_t completion = 0, prompt = 0, cached = 0;
    for (const auto& d : lasts) completion += d.completion_tokens;
    if (per_prompt == 0) per_prompt = std::max<size_t>(lasts.size(), 1);
    for (size_t i = 0; i < lasts.size(); i += per_prompt) prompt += lasts[i].prompt_tokens, cached += lasts[i].cached_tokens;
    return {{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion},
            {"prompt_tokens_details", {{"cached_tokens", cached}}}};
  }

  json chat_logprobs(const std::vector<engine::TokenEvent>& events) {
    json content = json::array();
    auto entry = [&](int32_t id, float lp) {
      std::string piece = tok.decode(std::vector<int32_t>{id});
      std::vector<int> bytes(piece.begin(), piece.end());
      for (int& b : bytes) b &= 0xFF;
      return json{{"token", piece}, {"logprob", lp}, {"bytes", bytes}};
    };
    for (const auto& ev : events) {
      json e = entry(ev.token, ev.logprob);
      json top = json::array();
      for (const auto& t : ev.top) top.push_back(entry(t.token, t.logprob));
      e["top_logprobs"] = top;
      content.push_back(e);
    }
    return {{"content", content}};
  }

  // OpenAI's completions logprobs. With `prompt` (echo), its tokens come first, as OpenAI and vLLM
  // give them: the first with null (nothing predicts it), the others from `scores` (prompt tokens
  // 1..). text_offset counts the token strings' bytes from `offset`.
  json completion_logprobs(const std::vector<engine::TokenEvent>& events, size_t offset = 0,
                           const std::vector<int32_t>* prompt = nullptr,
                           const std::vector<engine::ScoredToken>* scores = nullptr) {
    json tokens = json::array(), lps = json::array(), tops = json::array(), offsets = json::array();
    auto add = [&](int32_t id, json lp, json top) {
      std::string piece = tok.decode(std::vector<int32_t>{id});
      tokens.push_back(piece);
      lps.push_back(std::move(lp));
      tops.push_back(std::move(top));
      offsets.push_back(offset);
      offset += piece.size();
    };
    auto top_of = [&](const std::vector<engine::TokenLogprob>& top) {
      json t = json::object();
      for (const auto& e : top) t[tok.decode(std::vector<int32_t>{e.token})] = e.logprob;
      return t;
    };
    if (prompt)
      for (size_t i = 0; i < prompt->size(); ++i) {
        if (i == 0 || !scores || i - 1 >= scores->size()) add((*prompt)[i], nullptr, nullptr);
        else add((*prompt)[i], (*scores)[i - 1].logprob, top_of((*scores)[i - 1].top));
      }
    for (const auto& ev : events) add(ev.token, ev.logprob, top_of(ev.top));
    return {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
  }

  // Streams server-sent events until every generation finished or the client left.
  void stream(httplib::Response& res, const Flight& flight, std::vector<std::unique_ptr<Generation>> gens,
              std::function<std::vector<json>(size_t, const Delta&, bool first)> chunk_of,
              std::function<std::optional<json>(const std::vector<Delta>&)> final_chunk) {
    auto shared = std::make_shared<std::vector<std::unique_ptr<Generation>>>(std::move(gens));
    res.set_header("Cache-Control", "no-cache");
    flight->log.status = 200;
    // The provider holds the flight: the request is in flight (and logged) until the stream ends.
    res.set_chunked_content_provider("text/event-stream", [this, flight, shared, chunk_of, final_chunk](
                                                              size_t, httplib::DataSink& sink) {
      auto& gs = *shared;
      std::vector<Delta> lasts(gs.size());
      std::vector<bool> done(gs.size(), false), first(gs.size(), true);
      std::vector<Clock::time_point> prev(gs.size(), Clock::now());
      size_t n_done = 0;
      auto send = [&](const json& j) {
        std::string line = "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
        return sink.write(line.data(), line.size());
      };
      while (n_done < gs.size()) {
        if (aborting) {  // drain()'s grace is over: an error event, then the usual end of stream
          for (auto& g : gs) g->cancel();
          flight->log.abort_unfinished(kShuttingDown);
          send(error_body(503, kShuttingDown));
          static const char kEnd[] = "data: [DONE]\n\n";
          sink.write(kEnd, sizeof kEnd - 1);
          sink.done();
          return true;
        }
        bool progressed = false;
        for (size_t i = 0; i < gs.size(); ++i) {
          if (done[i]) continue;
          auto d = gs[i]->next(std::chrono::milliseconds(gs.size() == 1 ? 100 : 5));
          enforce_timeout(*gs[i]);
          if (!d) continue;
          progressed = true;
          auto now = Clock::now();
          flight->log.on_delta(i, *d);
          if (!d->tokens.empty()) {
            if (first[i]) metrics.time_to_first_token.observe(std::chrono::duration<double>(now - gs[i]->start()).count());
            else metrics.inter_token_latency.observe(std::chrono::duration<double>(now - prev[i]).count() / static_cast<double>(d->tokens.size()));
            prev[i] = now;
          }
          for (const json& c : chunk_of(i, *d, first[i]))
            if (!send(c)) {
              for (auto& g : gs) g->cancel();
              flight->log.abort_unfinished(kClientGone);
              return false;
            }
          first[i] = false;
          if (d->finish != engine::FinishReason::kNone) {
            done[i] = true;
            ++n_done;
            lasts[i] = std::move(*d);
            metrics.e2e_latency.observe(std::chrono::duration<double>(now - gs[i]->start()).count());
          }
        }
        if (!progressed && !sink.is_writable()) {  // client gone while we wait
          for (auto& g : gs) g->cancel();
          flight->log.abort_unfinished(kClientGone);
          return false;
        }
      }
      if (auto f = final_chunk(lasts)) send(*f);
      static const char kDone[] = "data: [DONE]\n\n";
      sink.write(kDone, sizeof kDone - 1);
      sink.done();
      return true;
    });
  }

  void handle_completion(const httplib::Request& req, httplib::Response& res, bool is_chat, const Flight& flight) {
    json j = parse_body(req);
    Body b{j};
    check_model(b);
    Plan p;
    const bool echo = b.boolean("echo", false);
    if (echo && is_chat) throw ApiError{400, "'echo' is for /v1/completions", "echo"};
    read_sampling(b, p);
    read_constraint(b, req.body, nullptr, p);
    p.n = static_cast<int>(b.integer("n", 1, 1, opt.max_n));
    p.stream = b.boolean("stream", false);
    p.rid = b.string("rid", "");
    if (!is_chat) {
      p.best_of = static_cast<int>(b.integer("best_of", p.n, 1, opt.max_n));
      if (p.best_of < p.n) throw ApiError{400, "'best_of' must be at least 'n' (" + std::to_string(p.n) + ")", "best_of"};
      if (p.best_of > p.n && p.stream) throw ApiError{400, "'best_of' greater than 'n' cannot be streamed", "best_of"};
    }
    if (b.has("stream_options")) {
      if (!j["stream_options"].is_object()) throw ApiError{400, "'stream_options' must be an object", "stream_options"};
      p.include_usage = Body{j["stream_options"]}.boolean("include_usage", false);
    }
    int top_logprobs = -1;
    if (is_chat) {
      if (b.boolean("logprobs", false)) {
        top_logprobs = static_cast<int>(b.integer("top_logprobs", 0, 0, 20));
      }
    } else if (b.has("logprobs")) {
      top_logprobs = static_cast<int>(b.integer("logprobs", 0, 0, 20));
    }
    p.base.top_logprobs = top_logprobs;
    if (p.best_of > p.n) p.base.top_logprobs = std::max(top_logprobs, 0);  // ranks by the chosen tokens' log-probs
    if (echo && top_logprobs >= 0) p.base.prompt_logprobs_from = 0;  // every prompt token scored
    std::vector<std::string> prompt_texts;  // what echo prepends, per prompt
    ChatTools tools;
    ToolCallFormat calls_format = ToolCallFormat::kNone;  // how the chat answer is read for calls
    bool separate_reasoning = false;

    if (is_chat) {
      if (!b.has("messages") || !j["messages"].is_array() || j["messages"].empty())
        throw ApiError{400, "'messages' must be a non-empty list", "messages"};
      for (const json& m : j["messages"])
        if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
          throw ApiError{400, "each message needs a 'role'", "messages"};
      if (!chat) throw ApiError{400, "this model has no chat template; use /v1/completions", "messages"};
      json extra = b.has("chat_template_kwargs") ? j["chat_template_kwargs"] : json::object();
      if (!extra.is_object()) throw ApiError{400, "'chat_template_kwargs' must be an object", "chat_template_kwargs"};
      tools = read_tools(b, opt.tool_call_parser);
      if (tools.required) {
        if (p.base.grammar)
          throw ApiError{400, "tool_choice '" + std::string(tools.only.empty() ? "required" : "function") +
                                  "' and a structured output format both constrain the answer; give one", "tool_choice"};
        try {
          // A named function is called once; "required" allows several calls unless parallel_tool_calls is false.
          const bool several = tools.parallel && tools.only.empty();
          p.base.grammar = grammars.get(tool_call_ebnf(tools.for_template, tools.only, opt.tool_call_parser, several), "tool_choice");
        } catch (const Error& e) {
          throw ApiError{400, e.message(), e.context().field.empty() ? "tool_choice" : e.context().field};
        }
      }
      // Harmony (gpt-oss) answers are always read: their channels are the answer's structure.
      calls_format = tools.parse_calls || opt.tool_call_parser == ToolCallFormat::kGptOss ? opt.tool_call_parser
                                                                                          : ToolCallFormat::kNone;
      if (needs_special_tokens(calls_format) && !b.has("skip_special_tokens"))
        p.skip_special = false;  // the markers are special tokens
      separate_reasoning = b.boolean("separate_reasoning", true) && opt.reasoning_parser != ReasoningFormat::kNone;
      std::string text;
      try {
        text = chat(template_messages(j["messages"]), tools.for_template, true, extra);
      } catch (const Error& e) {
        throw ApiError{400, std::string("chat template: ") + e.what(), "messages"};
      }
      p.prompt = tok.encode(text, /*add_special=*/false);
    } else {
      if (!b.has("prompt")) throw ApiError{400, "'prompt' is required", "prompt"};
      const json& pr = j["prompt"];
      // A string, a list of token ids, or a list of either (several prompts).
      const bool several = pr.is_array() && !pr.empty() && (pr[0].is_string() || pr[0].is_array());
      if (several && pr.size() > kMaxPrompts)
        throw ApiError{400, "'prompt' holds " + std::to_string(pr.size()) + " prompts; at most " + std::to_string(kMaxPrompts),
                       "prompt"};
      for (size_t k = 0; k < (several ? pr.size() : 1); ++k) {
        const json& one = several ? pr[k] : pr;
        const std::string field = several ? "prompt[" + std::to_string(k) + "]" : "prompt";
        std::vector<int32_t> ids;
        std::string text;
        if (one.is_string()) {
          text = one.get<std::string>();
          ids = tok.encode(text, true);
        } else if (one.is_array() && !one.empty()) {
          ids = token_ids(one, field);
          if (echo) text = tok.decode(ids, p.skip_special);
        } else {
          throw ApiError{400, "'" + field + "' must be a string or a list of token ids", field};
        }
        if (ids.empty()) throw ApiError{400, "the prompt is empty", field};
        if (ids.size() > p.prompt.size()) p.prompt = ids;  // the longest bounds max_tokens
        p.prompts.push_back(std::move(ids));
        prompt_texts.push_back(std::move(text));
      }
      if (p.prompts.size() == 1) p.prompts.clear();
    }
    if (p.prompt.empty()) throw ApiError{400, "the prompt is empty", is_chat ? "messages" : "prompt"};
    if (prompt_texts.empty()) prompt_texts.emplace_back();
    std::optional<int64_t> max_tokens;
    const char* mt_key = is_chat && b.has("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    if (b.has(mt_key)) max_tokens = b.integer(mt_key, 0, echo ? 0 : 1);
    else if (!is_chat) max_tokens = 16;  // OpenAI's default for completions
    set_max_tokens(p, max_tokens, mt_key, echo);  // 0 with echo: the prompt scored, nothing generated

    const std::string id = flight->log.id;
    const size_t per_prompt = static_cast<size_t>(std::max(p.n, p.best_of));
    flight->log.set_choices(std::max<size_t>(p.prompts.size(), 1) * per_prompt);
    const int64_t created = unix_time();
    const std::string object = is_chat ? "chat.completion" : "text_completion";
    auto gens = start(p, flight);
    const bool prompt_logprobs = p.base.prompt_logprobs_from >= 0;
    const std::vector<std::vector<int32_t>> prompt_ids =
        p.prompts.empty() ? std::vector<std::vector<int32_t>>{p.prompt} : p.prompts;

    // Each chat answer read for reasoning and tool calls as it streams.
    const ChatOutputParser parser(separate_reasoning ? opt.reasoning_parser : ReasoningFormat::kNone, calls_format);
    const bool parallel_calls = tools.parallel;

    if (p.stream) {
      auto parsers = std::make_shared<std::vector<ChatOutputParser>>(gens.size(), parser);
      auto calls_sent = std::make_shared<std::vector<int>>(gens.size(), 0);
      const std::string chunk_object = is_chat ? "chat.completion.chunk" : "text_completion";
      const bool with_logprobs = top_logprobs >= 0;
      const bool include_usage = p.include_usage;
      stream(res, flight, std::move(gens),
             [=, this](size_t i, const Delta& d, bool first) {
               std::vector<json> out;
               json choice = {{"index", i}, {"finish_reason", nullptr}, {"logprobs", nullptr}};
               bool has_delta = !d.text.empty();
               if (is_chat) {
                 if (first) {
                   json c0 = choice;
                   c0["delta"] = {{"role", "assistant"}, {"content", ""}};
                   out.push_back({{"id", id}, {"object", chunk_object}, {"created", created}, {"model", opt.served_model_name},
                                  {"choices", {c0}}});
                 }
                 ChatParts parts = (*parsers)[i].feed(d.text);
                 if (d.finish != engine::FinishReason::kNone) append_parts(parts, (*parsers)[i].finish());
                 json delta = json::object();
                 if (!parts.reasoning.empty()) delta["reasoning_content"] = parts.reasoning;
                 if (!parts.content.empty()) delta["content"] = parts.content;
                 json calls = json::array();
                 for (const ToolCall& c : parts.calls) {
                   int& sent = (*calls_sent)[i];
                   if (!parallel_calls && sent > 0) break;
                   json call = tool_call_json(c);
                   call["index"] = sent++;
                   calls.push_back(std::move(call));
                 }
                 if (!calls.empty()) delta["tool_calls"] = std::move(calls);
                 has_delta = !delta.empty();
                 choice["delta"] = std::move(delta);
               } else {
                 choice["text"] = echo && first ? prompt_texts[i / per_prompt] + d.text : d.text;
               }
               if (is_chat && with_logprobs && !d.events.empty()) choice["logprobs"] = chat_logprobs(d.events);
               if (!is_chat && with_logprobs && (!d.events.empty() || (echo && first)))
                 choice["logprobs"] = echo && first ? completion_logprobs(d.events, 0, &prompt_ids[i / per_prompt], &d.prompt_logprobs)
                                                    : completion_logprobs(d.events);
               if (d.finish != engine::FinishReason::kNone)
                 choice["finish_reason"] = is_chat && (*calls_sent)[i] > 0 && d.finish != engine::FinishReason::kAbort
                                               ? "tool_calls" : finish_name(d);
               if (has_delta || d.finish != engine::FinishReason::kNone || (with_logprobs && !d.events.empty()) ||
                   (echo && first))
                 out.push_back({{"id", id}, {"object", chunk_object}, {"created", created}, {"model", opt.served_model_name},
                                {"choices", {choice}}});
               return out;
             },
             [=, this](const std::vector<Delta>& lasts) -> std::optional<json> {
               if (!include_usage) return std::nullopt;
               return json{{"id", id}, {"object", chunk_object}, {"created", created}, {"model", opt.served_model_name},
                           {"choices", json::array()}, {"usage", usage(lasts, per_prompt)}};
             });
      return;
    }

    std::vector<Result> results;
    std::vector<Delta> lasts;
    const ClientConnection client(req.remote_addr, req.remote_port, req.local_addr, req.local_port);
    for (size_t i = 0; i < gens.size(); ++i) {
      results.push_back(collect(*gens[i], &flight->log, i, &client));
      if (!results.back().last.error.empty()) throw ApiError{500, results.back().last.error, ""};
      lasts.push_back(results.back().last);
    }
    std::vector<size_t> prompt_of(results.size());  // which prompt each result answers
    for (size_t i = 0; i < results.size(); ++i) prompt_of[i] = i / per_prompt;
    if (p.best_of > p.n) {  // of each prompt's candidates, the n with the highest cumulative log-probability, best first
      auto total = [](const Result& r) {
        double t = 0;
        for (const auto& ev : r.events) t += ev.logprob;
        return t;
      };
      std::vector<Result> best;
      prompt_of.clear();
      for (size_t k = 0; k < results.size(); k += per_prompt) {
        const auto first = results.begin() + static_cast<std::ptrdiff_t>(k);
        std::stable_sort(first, first + static_cast<std::ptrdiff_t>(per_prompt),
                         [&](const Result& x, const Result& y) { return total(x) > total(y); });
        for (int i = 0; i < p.n; ++i) best.push_back(std::move(results[k + static_cast<size_t>(i)])), prompt_of.push_back(k / per_prompt);
      }
      results = std::move(best);
    }
    json choices = json::array();
    for (size_t i = 0; i < results.size(); ++i) {
      const Result& r = results[i];
      json choice = {{"index", i}, {"finish_reason", finish_name(r.last)}, {"logprobs", nullptr}};
      if (is_chat) {
        ChatOutputParser answer = parser;
        ChatParts parts = answer.feed(r.text);
        append_parts(parts, answer.finish());
        if (!parallel_calls && parts.calls.size() > 1) parts.calls.resize(1);
        json message = {{"role", "assistant"},
                        {"content", parts.content.empty() && !parts.calls.empty() ? json(nullptr) : json(parts.content)}};
        if (separate_reasoning) message["reasoning_content"] = parts.reasoning.empty() ? json(nullptr) : json(parts.reasoning);
        if (!parts.calls.empty()) {
          json calls = json::array();
          for (const ToolCall& c : parts.calls) calls.push_back(tool_call_json(c));
          message["tool_calls"] = std::move(calls);
          if (r.last.finish != engine::FinishReason::kAbort) choice["finish_reason"] = "tool_calls";
        }
        choice["message"] = std::move(message);
      } else {
        choice["text"] = echo ? prompt_texts[prompt_of[i]] + r.text : r.text;
      }
      if (top_logprobs >= 0)
        choice["logprobs"] = is_chat ? chat_logprobs(r.events)
                             : echo  ? completion_logprobs(r.events, 0, &prompt_ids[prompt_of[i]], prompt_logprobs ? &r.prompt_logprobs : nullptr)
                                     : completion_logprobs(r.events);
      choices.push_back(choice);
    }
    reply(res, 200, {{"id", id}, {"object", object}, {"created", created}, {"model", opt.served_model_name},
                     {"choices", choices}, {"usage", usage(lasts, per_prompt)}});
  }

  // SGLang's native POST /generate.
  void handle_generate(const httplib::Request& req, httplib::Response& res, const Flight& flight) {
    json j = parse_body(req);
    Body b{j};
    Plan p;
    json sp_json = b.has("sampling_params") ? j["sampling_params"] : json::object();
    if (!sp_json.is_object()) throw ApiError{400, "'sampling_params' must be an object", "sampling_params"};
    Body sp{sp_json};
    read_sampling(sp, p);
    read_constraint(sp, req.body, "sampling_params", p);
    // One prompt, or a batch: `text` a list of strings, `input_ids` a list of token lists.
    const char* key = b.has("input_ids") ? "input_ids" : b.has("text") ? "text" : nullptr;
    if (!key) throw ApiError{400, "give 'text' or 'input_ids'", "text"};
    const json& in = j[key];
    const bool batch = key == std::string("text") ? in.is_array() : in.is_array() && !in.empty() && in[0].is_array();
    if (batch && (in.empty() || in.size() > kMaxPrompts))
      throw ApiError{400, std::string("'") + key + "' must hold 1 to " + std::to_string(kMaxPrompts) + " prompts", key};
    std::vector<std::vector<int32_t>> prompts;
    for (size_t k = 0; k < (batch ? in.size() : 1); ++k) {
      const json& one = batch ? in[k] : in;
      const std::string field = batch ? std::string(key) + "[" + std::to_string(k) + "]" : std::string(key);
      if (key == std::string("input_ids")) {
        if (!one.is_array()) throw ApiError{400, "'" + field + "' must be a list of token ids", field};
        prompts.push_back(token_ids(one, field));
      } else {
        if (!one.is_string()) throw ApiError{400, "'" + field + "' must be a string", field};
        prompts.push_back(tok.encode(one.get<std::string>(), true));
      }
      if (prompts.back().empty()) throw ApiError{400, "the prompt is empty", field};
      if (prompts.back().size() > p.prompt.size()) p.prompt = prompts.back();  // the longest bounds max_new_tokens
    }
    size_t shortest = SIZE_MAX;
    for (const auto& q : prompts) shortest = std::min(shortest, q.size());
    if (batch) p.prompts = prompts;
    p.n = static_cast<int>(sp.integer("n", 1, 1, opt.max_n));
    // 0 new tokens with return_logprob: the prompt only, scored.
    const bool return_logprob = b.boolean("return_logprob", false);
    set_max_tokens(p, sp.has("max_new_tokens") ? std::optional<int64_t>(sp.integer("max_new_tokens", 128, return_logprob ? 0 : 1))
                                                : std::optional<int64_t>(128), "max_new_tokens", return_logprob);
    p.stream = b.boolean("stream", false);
    p.rid = b.string("rid", "");
    // SGLang's log-probabilities: of the output tokens, and of the prompt from logprob_start_len
    // (-1: only its last token, with no value, as SGLang gives it); top_logprobs_num alternatives each.
    const int64_t start_len = b.integer("logprob_start_len", -1, -1, static_cast<int64_t>(shortest) - 1);
    const int top_n = static_cast<int>(b.integer("top_logprobs_num", 0, 0, 20));
    const bool with_text = b.boolean("return_text_in_logprobs", false);
    if (return_logprob) {
      p.base.top_logprobs = top_n;
      p.base.prompt_logprobs_from = start_len;
      p.score_last_prompt_token = start_len < 0;
    }
    if (!p.rid.empty()) flight->log.id = p.rid;  // SGLang's meta_info.id is the rid
    const std::string id = flight->log.id;
    const size_t n_gens = prompts.size() * static_cast<size_t>(p.n);
    flight->log.set_choices(n_gens);
    // (logprob, token id, text or null) triples; a null logprob where nothing predicts the token.
    auto triple = [this, with_text](json lp, int32_t token) {
      return json::array({std::move(lp), token, with_text ? json(tok.decode(std::vector<int32_t>{token})) : json(nullptr)});
    };
    auto tops = [triple](const std::vector<engine::TokenLogprob>& top) {
      json t = json::array();
      for (const auto& e : top) t.push_back(triple(e.logprob, e.token));
      return t;
    };
    const int per_prompt = p.n;
    // Generation i answers prompt i / n.
    auto add_logprobs = [=](json& m, size_t i, const std::vector<engine::ScoredToken>& prompt_scores,
                            const std::vector<engine::TokenEvent>& events) {
      const std::vector<int32_t>& ids = prompts[i / static_cast<size_t>(per_prompt)];
      const size_t from = start_len < 0 ? ids.size() - 1 : static_cast<size_t>(start_len);
      json in = json::array({triple(nullptr, ids[from])}), in_top = json::array({nullptr});
      for (const auto& sc : prompt_scores) {
        in.push_back(triple(sc.logprob, sc.token));
        in_top.push_back(tops(sc.top));
      }
      json out = json::array(), out_top = json::array();
      for (const auto& ev : events) {
        out.push_back(triple(ev.logprob, ev.token));
        out_top.push_back(tops(ev.top));
      }
      m["input_token_logprobs"] = in;
      m["output_token_logprobs"] = out;
      if (top_n > 0) {
        m["input_top_logprobs"] = in_top;
        m["output_top_logprobs"] = out_top;
      }
    };
    auto meta = [id](const Delta& d, double latency) {
      json fr = nullptr;
      if (d.finish == engine::FinishReason::kLength) fr = {{"type", "length"}, {"length", d.completion_tokens}};
      else if (d.finish == engine::FinishReason::kAbort)
        fr = {{"type", "abort"}, {"message", d.error.empty() ? "the request was aborted" : d.error}};
      else if (d.finish == engine::FinishReason::kStop)
        fr = d.matched_stop.empty() ? json{{"type", "stop"}, {"matched", nullptr}} : json{{"type", "stop"}, {"matched", d.matched_stop}};
      return json{{"id", id}, {"finish_reason", fr}, {"prompt_tokens", d.prompt_tokens},
                  {"completion_tokens", d.completion_tokens}, {"cached_tokens", d.cached_tokens},
                  {"e2e_latency", latency}};
    };
    auto gens = start(p, flight);
    if (p.stream) {
      // SGLang streams the text so far in each chunk (and the log-probabilities so far).
      // Several generations: each chunk carries its "index", as SGLang's do.
      struct SoFar {
        std::string text;
        std::vector<int32_t> ids;
        std::vector<engine::TokenEvent> events;
        std::vector<engine::ScoredToken> prompt_scores;
      };
      auto so_far = std::make_shared<std::vector<SoFar>>(n_gens);
      auto t0 = Clock::now();
      stream(res, flight, std::move(gens),
             [=](size_t i, const Delta& d, bool) {
               SoFar& g = (*so_far)[i];
               g.text += d.text;
               g.ids.insert(g.ids.end(), d.tokens.begin(), d.tokens.end());
               g.events.insert(g.events.end(), d.events.begin(), d.events.end());
               if (!d.prompt_logprobs.empty()) g.prompt_scores = d.prompt_logprobs;
               if (d.text.empty() && d.finish == engine::FinishReason::kNone) return std::vector<json>{};
               json m = meta(d, std::chrono::duration<double>(Clock::now() - t0).count());
               if (return_logprob) add_logprobs(m, i, g.prompt_scores, g.events);
               json chunk = {{"text", g.text}, {"output_ids", g.ids}, {"meta_info", m}};
               if (n_gens > 1) chunk["index"] = i;
               return std::vector<json>{std::move(chunk)};
             },
             [](const std::vector<Delta>&) -> std::optional<json> { return std::nullopt; });
      return;
    }
    const ClientConnection client(req.remote_addr, req.remote_port, req.local_addr, req.local_port);
    json outs = json::array();
    for (size_t i = 0; i < gens.size(); ++i) {
      Result r = collect(*gens[i], &flight->log, i, &client);
      if (!r.last.error.empty()) throw ApiError{500, r.last.error, ""};
      double latency = std::chrono::duration<double>(Clock::now() - gens[i]->start()).count();
      json m = meta(r.last, latency);
      if (return_logprob) add_logprobs(m, i, r.prompt_logprobs, r.events);
      outs.push_back({{"text", r.text}, {"output_ids", r.tokens}, {"meta_info", m}});
    }
    // One object for one generation; a list (prompt by prompt, n each) for a batch or n > 1, as SGLang.
    reply(res, 200, n_gens == 1 ? outs[0] : outs);
  }

  // Runs a handler, answering its failures as OpenAI-style errors (never a crash).
  // Returns the error message sent, if any.
  std::string answer_errors(httplib::Response& res, const std::function<void()>& fn) {
    try {
      fn();
      return "";
    } catch (const ApiError& e) {
      reply(res, e.status, error_body(e.status, e.message, e.param));
      return e.message;
    } catch (const Error& e) {
      reply(res, 400, error_body(400, e.what()));
      return e.what();
    } catch (const std::exception& e) {
      const std::string m = std::string("internal error: ") + e.what();
      reply(res, 500, error_body(500, m));
      return m;
    }
  }

  bool authorized(const httplib::Request& req) const {
    return opt.api_key.empty() || req.get_header_value("Authorization") == "Bearer " + opt.api_key;
  }
  static constexpr const char* kAuthError = "invalid or missing API key (send 'Authorization: Bearer KEY')";

  // Wraps a handler: auth, and errors as JSON.
  httplib::Server::Handler guarded(std::function<void(const httplib::Request&, httplib::Response&)> fn,
                                   bool needs_auth = true) {
    return [this, fn, needs_auth](const httplib::Request& req, httplib::Response& res) {
      if (needs_auth && !authorized(req)) return reply(res, 401, error_body(401, kAuthError));
      answer_errors(res, [&] { fn(req, res); });
    };
  }

  // Wraps a generation handler: also the concurrency limit, the request count
  // and the request's log line. Responses carry ids that start with id_prefix.
  httplib::Server::Handler generation(
      const char* id_prefix, std::function<void(const httplib::Request&, httplib::Response&, const Flight&)> fn) {
    return [this, fn, id_prefix](const httplib::Request& req, httplib::Response& res) {
      auto flight = std::make_shared<InFlight>(*this);
      flight->log.id = random_id(id_prefix);
      flight->log.path = req.path;
      {
        std::lock_guard<std::mutex> lock(metrics.mu);
        ++metrics.requests_total;
      }
      const std::string error = answer_errors(res, [&] {
        if (!authorized(req)) throw ApiError{401, kAuthError, ""};
        if (draining) throw ApiError{503, kShuttingDown, ""};
        if (flight->position > opt.max_connections) {
          res.set_header("Retry-After", "1");
          throw ApiError{503, "too many concurrent requests (the limit is " + std::to_string(opt.max_connections) +
                                  "); try again later", ""};
        }
        fn(req, res, flight);
      });
      if (!error.empty()) flight->log.error = error;
      if (!error.empty() || flight->log.status == 0) flight->log.status = res.status;
    };
  }

  void routes() {
    http.Get("/health", guarded([this](const httplib::Request&, httplib::Response& res) {
      if (draining) throw ApiError{503, kShuttingDown, ""};  // not ready: load balancers move on
      res.set_content("", "text/plain");
    }, false));
    http.Get("/health_generate", guarded([this](const httplib::Request&, httplib::Response& res) {
      Plan p;
      p.prompt = {tok.special_ids().bos >= 0 ? tok.special_ids().bos : 0};
      p.base.sampling.temperature = 0;
      p.base.max_new_tokens = 1;
      p.base.ignore_eos = true;
      auto gens = start(p);
      Result r = collect(*gens[0]);
      if (!r.last.error.empty()) throw ApiError{503, r.last.error, ""};
      res.set_content("", "text/plain");
    }, false));
    http.Get("/v1/models", guarded([this](const httplib::Request&, httplib::Response& res) {
      reply(res, 200, {{"object", "list"}, {"data", json::array({model_entry()})}});
    }));
    // One model: its entry, or 404 for any other id.
    http.Get(R"(/v1/models/(.+))", guarded([this](const httplib::Request& req, httplib::Response& res) {
      const std::string want = req.matches[1];
      if (want != opt.served_model_name && want != opt.model_path)
        throw ApiError{404, "The model '" + want + "' does not exist; this server serves '" + opt.served_model_name + "'",
                       "model"};
      reply(res, 200, model_entry());
    }));
    // SGLang's: ends the request with this rid (or response id); its stream ends with finish_reason abort.
    http.Post("/abort_request", guarded([this](const httplib::Request& req, httplib::Response& res) {
      json j = parse_body(req);
      Body b{j};
      if (b.boolean("abort_all", false)) {
        std::vector<std::string> ids;
        {
          std::lock_guard<std::mutex> lock(registry_mu);
          for (const auto& [id, f] : registry) ids.push_back(id);
        }
        for (const auto& id : ids) abort_request(id);
        return reply(res, 200, {{"aborted", !ids.empty()}});
      }
      if (!b.has("rid") || !j["rid"].is_string() || j["rid"].get<std::string>().empty())
        throw ApiError{400, "'rid' must be the id of a request (a string)", "rid"};
      reply(res, 200, {{"rid", j["rid"]}, {"aborted", abort_request(j["rid"].get<std::string>())}});
    }));
    http.Post("/v1/completions", generation("cmpl-", [this](const httplib::Request& q, httplib::Response& r, const Flight& f) {
      handle_completion(q, r, false, f);
    }));
    http.Post("/v1/chat/completions", generation("chatcmpl-", [this](const httplib::Request& q, httplib::Response& r, const Flight& f) {
      handle_completion(q, r, true, f);
    }));
    http.Post("/generate", generation("", [this](const httplib::Request& q, httplib::Response& r, const Flight& f) {
      handle_generate(q, r, f);
    }));
    http.Get("/get_model_info", guarded([this](const httplib::Request&, httplib::Response& res) {
      reply(res, 200, {{"model_path", opt.model_path},
                      {"tokenizer_path", opt.tokenizer_path},
                      {"is_generation", true},
                      {"chat_template", opt.chat_template}});
    }));
    http.Get("/get_server_info", guarded([this](const httplib::Request&, httplib::Response& res) {
      json info = opt.server_args;
      info["version"] = "quanta 0.1.0";
      reply(res, 200, info);
    }));
    auto flush = guarded([this](const httplib::Request&, httplib::Response& res) {
      scheduler.flush_cache();
      res.set_content("Cache flushed.\n", "text/plain");
    });
    http.Post("/flush_cache", flush);
    http.Get("/flush_cache", flush);
    http.Post("/tokenize", guarded([this](const httplib::Request& req, httplib::Response& res) {
      json j = parse_body(req);
      Body b{j};
      std::string text = b.has("content") ? b.string("content", "") : b.string("prompt", "");
      // add_special (SGLang) or add_special_tokens (vLLM, lm-eval's remote tokenizer).
      const bool add = b.has("add_special_tokens") ? b.boolean("add_special_tokens", false) : b.boolean("add_special", false);
      const std::vector<int32_t> ids = tok.encode(text, add);
      reply(res, 200, {{"tokens", ids}, {"count", ids.size()}, {"max_model_len", scheduler.options().context_length}});
    }));
    http.Post("/detokenize", guarded([this](const httplib::Request& req, httplib::Response& res) {
      json j = parse_body(req);
      if (!j.contains("tokens") || !j["tokens"].is_array()) throw ApiError{400, "'tokens' must be a list of ids", "tokens"};
      const std::string text = tok.decode(token_ids(j["tokens"], "tokens", tok.vocab_size()));
      reply(res, 200, {{"content", text}, {"prompt", text}});  // SGLang's field, vLLM's
    }));
    // vLLM's, which lm-eval's remote tokenizer reads: the special tokens as text.
    http.Get("/tokenizer_info", guarded([this](const httplib::Request&, httplib::Response& res) {
      auto piece = [this](int32_t id) { return id >= 0 ? json(tok.decode(std::vector<int32_t>{id})) : json(nullptr); };
      const tokenizer::SpecialIds& sp = tok.special_ids();
      reply(res, 200, {{"eos_token", piece(sp.eos)}, {"bos_token", piece(sp.bos)}, {"pad_token", piece(sp.pad)},
                       {"model_max_length", scheduler.options().context_length}});
    }));
    http.Get("/metrics", guarded([this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics.render(scheduler.stats()), "text/plain; version=0.0.4");
    }));
    // httplib's own errors (malformed HTTP, URI too long, body too large, no route) come with an
    // empty body; they get the JSON error every other error has.
    http.set_error_handler([this](const httplib::Request&, httplib::Response& res) {
      if (!res.body.empty()) return;
      switch (res.status) {
        case 404: return reply(res, 404, error_body(404, "no such endpoint"));
        case 413: return reply(res, 413, error_body(413, "request body too large"));
        case 414: return reply(res, 414, error_body(414, "request URI too long"));
        case 400: return reply(res, 400, error_body(400, "malformed HTTP request"));
        default:
          if (res.status >= 400) reply(res, res.status, error_body(res.status, "HTTP error " + std::to_string(res.status)));
      }
    });
    http.set_payload_max_length(opt.max_body_bytes);
  }
};

Server::Server(engine::Scheduler& scheduler, const tokenizer::Tokenizer& tok, ChatRenderer chat,
               format::GenerationDefaults defaults, ServerOptions options)
    : impl_(std::make_unique<Impl>(scheduler, tok, std::move(chat), std::move(defaults), std::move(options))) {
  // A thread per request in flight up to the limit, and spares so that requests
  // over it, /health and /metrics are still answered at once.
  const int threads = impl_->opt.max_connections + 16;
  impl_->http.new_task_queue = [threads] { return new WorkerPool(static_cast<size_t>(threads)); };
  const ServerOptions& o = impl_->opt;
  impl_->http.set_read_timeout(o.read_timeout_sec, 0);
  impl_->http.set_write_timeout(o.write_timeout_sec, 0);
  impl_->http.set_keep_alive_timeout(o.keep_alive_timeout_sec);
  impl_->http.set_keep_alive_max_count(static_cast<size_t>(o.keep_alive_max));
  // The listening socket, to raise its backlog after bind: Debian's httplib is a compiled
  // library, so CPPHTTPLIB_LISTEN_BACKLOG cannot be changed, but listen() may be called again.
  impl_->http.set_socket_options([this](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);  // httplib's default, replaced here
    listen_fd_ = sock;
  });
  impl_->routes();
}

Server::~Server() { stop(); }

bool Server::run() {
  int port = impl_->opt.port;
  if (port == 0) {
    port = impl_->http.bind_to_any_port(impl_->opt.host);
  } else if (!impl_->http.bind_to_port(impl_->opt.host, port)) {
    port = -1;
  }
  if (port < 0) {
    std::fprintf(stderr, "quanta: error: cannot listen on %s:%d\n", impl_->opt.host.c_str(), impl_->opt.port);
    return false;
  }
  bound_port_ = port;
  if (listen_fd_ >= 0 && ::listen(listen_fd_, impl_->opt.listen_backlog) != 0)
    std::fprintf(stderr, "quanta: warning: cannot raise the listen backlog to %d\n", impl_->opt.listen_backlog);
  std::fprintf(stderr, "quanta: serving '%s' on http://%s:%d\n", impl_->opt.served_model_name.c_str(),
               impl_->opt.host.c_str(), port);
  return impl_->http.listen_after_bind();
}

void Server::stop() { impl_->http.stop(); }

void Server::drain() {
  Impl& m = *impl_;
  m.draining = true;
  auto wait_idle = [&](double seconds) {
    const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
    while (m.active > 0 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  };
  wait_idle(m.opt.shutdown_grace_sec);
  if (m.active > 0) {
    std::fprintf(stderr, "quanta: %d requests still running after %.0f s; ending them\n", m.active.load(),
                 m.opt.shutdown_grace_sec);
    m.aborting = true;
    wait_idle(5);  // each notices within a scheduler step
  }
  m.http.stop();
}

}  // namespace quanta::server
