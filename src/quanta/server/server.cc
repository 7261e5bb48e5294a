#include "quanta/server/server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <thread>
#include <unordered_map>

#include "quanta/core/error.h"
#include "quanta/server/client_connection.h"
#include "quanta/server/generation.h"
#include "quanta/server/metrics.h"
#include "quanta/server/request_log.h"
#include "quanta/server/requests.h"
#include "quanta/server/structured.h"
#include "quanta/server/worker_pool.h"

namespace quanta::server {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

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
  ServerOptions opt;
  RequestContext requests;  // what the request parsers know of this server
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
      : scheduler(s), tok(t), chat(std::move(c)), opt(std::move(o)),
        requests{.served_model_name = opt.served_model_name,
                 .model_path = opt.model_path,
                 .max_n = opt.max_n,
                 .vocab = s.options().sample_vocab > 0 ? s.options().sample_vocab : static_cast<int64_t>(t.vocab_size()),
                 .defaults = std::move(d),
                 .has_chat_template = static_cast<bool>(chat),
                 .tool_call_parser = opt.tool_call_parser,
                 .reasoning_parser = opt.reasoning_parser},
        grammars(t, s.options().eos_token_ids) {}

  void reply(httplib::Response& res, int status, const json& body) {
    res.status = status;
    res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
    if (status >= 400) {
      std::lock_guard<std::mutex> lock(metrics.mu);
      ++metrics.requests_failed;
    }
  }

  // What every generation of `p` starts from; the handler adds the grammar and max_new_tokens.
  static engine::GenerateRequest base_request(const Plan& p) {
    engine::GenerateRequest r;
    r.sampling = p.sampling;
    r.stop_token_ids = p.stop_token_ids;
    r.ignore_eos = p.ignore_eos;
    // best_of ranks the candidates by their chosen tokens' log-probabilities.
    r.top_logprobs = p.best_of > p.n ? std::max(p.top_logprobs, 0) : p.top_logprobs;
    r.prompt_logprobs_from = p.prompt_logprobs_from;
    return r;
  }

  // The request's structured-output constraint compiled; null if it has none.
  std::shared_ptr<const grammar::CompiledGrammar> compile(const ConstraintSource& c) {
    if (c.kind.empty()) return nullptr;
    try {
      return grammars.get(constraint_ebnf(c.kind, c.text, c.field), c.field);
    } catch (const Error& e) {
      throw ApiError{400, e.message(), c.field};
    }
  }

  // A prompt's token ids: as given, or its text tokenized (with the special tokens the model adds).
  std::vector<int32_t> tokenize(const Prompt& q) {
    std::vector<int32_t> ids = q.ids.empty() ? tok.encode(q.text, true) : q.ids;
    if (ids.empty()) throw ApiError{400, "the prompt is empty", q.field};
    return ids;
  }

  // The plan's max_tokens, or all the room the longest prompt leaves in the context; more than
  // that room is a 400, as is a min_tokens above it.
  int64_t max_new_tokens(const Plan& p, size_t longest) {
    const std::string& param = p.max_tokens_field;
    const int64_t ctx = scheduler.options().context_length;
    const int64_t room = ctx - static_cast<int64_t>(longest);
    if (room <= 0)
      throw ApiError{400, "the prompt has " + std::to_string(longest) +
                              " tokens, which does not fit the context length of " + std::to_string(ctx),
                     "messages"};
    const int64_t n = p.max_tokens.value_or(room);
    if (n < (p.allow_zero_tokens ? 0 : 1))
      throw ApiError{400, "'" + param + "' must be at least " + (p.allow_zero_tokens ? "0" : "1"), param};
    if (n > room)
      throw ApiError{400, "'" + param + "' is " + std::to_string(n) + ", but the prompt (" + std::to_string(longest) +
                              " tokens) leaves room for " + std::to_string(room) + " in the context of " + std::to_string(ctx),
                     param};
    if (p.sampling.min_new_tokens > n)
      throw ApiError{400, "'min_tokens' (" + std::to_string(p.sampling.min_new_tokens) + ") exceeds '" + param +
                              "' (" + std::to_string(n) + ")", "min_tokens"};
    return n;
  }

  // max(n, best_of) generations of each prompt, in order, from `base`.
  std::vector<std::unique_ptr<Generation>> start(const Plan& p, const std::vector<std::vector<int32_t>>& prompts,
                                                 const engine::GenerateRequest& base, const Flight& flight = nullptr) {
    if (flight) register_ids(flight, p.rid);
    std::vector<std::unique_ptr<Generation>> gens;
    const int per_prompt = std::max(p.n, p.best_of);
    for (size_t k = 0; k < prompts.size(); ++k)
      for (int i = 0; i < per_prompt; ++i) {
        engine::GenerateRequest r = base;
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
    const Plan p = parse_request(is_chat ? Endpoint::kChatCompletions : Endpoint::kCompletions, req.body, requests);
    const bool echo = p.echo;
    const int top_logprobs = p.top_logprobs;
    engine::GenerateRequest base = base_request(p);
    base.grammar = compile(p.constraint);
    std::vector<std::vector<int32_t>> prompt_ids;
    std::vector<std::string> prompt_texts;  // what echo prepends, per prompt
    if (is_chat) {
      if (p.tools.required) {
        try {
          // A named function is called once; "required" allows several calls unless parallel_tool_calls is false.
          const bool several = p.tools.parallel && p.tools.only.empty();
          base.grammar = grammars.get(tool_call_ebnf(p.tools.for_template, p.tools.only, opt.tool_call_parser, several), "tool_choice");
        } catch (const Error& e) {
          throw ApiError{400, e.message(), e.context().field.empty() ? "tool_choice" : e.context().field};
        }
      }
      std::string text;
      try {
        text = chat(p.messages, p.tools.for_template, true, p.chat_template_kwargs);
      } catch (const Error& e) {
        throw ApiError{400, std::string("chat template: ") + e.what(), "messages"};
      }
      prompt_ids.push_back(tok.encode(text, /*add_special=*/false));
      if (prompt_ids[0].empty()) throw ApiError{400, "the prompt is empty", "messages"};
      prompt_texts.emplace_back();
    } else {
      for (const Prompt& q : p.prompts) {
        prompt_ids.push_back(tokenize(q));
        prompt_texts.push_back(q.ids.empty() ? q.text : echo ? tok.decode(q.ids, p.skip_special) : "");
      }
    }
    size_t longest = 0;  // bounds max_tokens
    for (const auto& q : prompt_ids) longest = std::max(longest, q.size());
    base.max_new_tokens = max_new_tokens(p, longest);

    const std::string id = flight->log.id;
    const size_t per_prompt = static_cast<size_t>(std::max(p.n, p.best_of));
    flight->log.set_choices(prompt_ids.size() * per_prompt);
    const int64_t created = unix_time();
    const std::string object = is_chat ? "chat.completion" : "text_completion";
    auto gens = start(p, prompt_ids, base, flight);
    const bool prompt_logprobs = base.prompt_logprobs_from >= 0;

    // Each chat answer read for reasoning and tool calls as it streams.
    const bool separate_reasoning = p.separate_reasoning;
    const ChatOutputParser parser(separate_reasoning ? opt.reasoning_parser : ReasoningFormat::kNone, p.calls_format);
    const bool parallel_calls = p.tools.parallel;

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
    const Plan p = parse_request(Endpoint::kGenerate, req.body, requests);
    engine::GenerateRequest base = base_request(p);
    base.grammar = compile(p.constraint);
    std::vector<std::vector<int32_t>> prompts;
    for (const Prompt& q : p.prompts) prompts.push_back(tokenize(q));
    size_t shortest = SIZE_MAX, longest = 0;  // the longest bounds max_new_tokens
    for (const auto& q : prompts) shortest = std::min(shortest, q.size()), longest = std::max(longest, q.size());
    base.max_new_tokens = max_new_tokens(p, longest);
    const int64_t start_len = p.logprob_start_len;
    if (start_len < -1 || start_len > static_cast<int64_t>(shortest) - 1)
      throw ApiError{400, "'logprob_start_len' must be between -1 and " + std::to_string(static_cast<int64_t>(shortest) - 1),
                     "logprob_start_len"};
    const bool return_logprob = p.return_logprob;
    const bool with_text = p.return_text_in_logprobs;
    const int top_n = p.top_logprobs;  // top_logprobs_num, with return_logprob
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
    auto gens = start(p, prompts, base, flight);
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
      reply(res, e.status, error_body(e.status, e.message(), e.context().field));
      return e.message();
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
      engine::GenerateRequest base;
      base.sampling.temperature = 0;
      base.max_new_tokens = 1;
      base.ignore_eos = true;
      const std::vector<int32_t> prompt{tok.special_ids().bos >= 0 ? tok.special_ids().bos : 0};
      auto gens = start(Plan{}, {prompt}, base);
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
      json j = parse_body(req.body);
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
      json j = parse_body(req.body);
      Body b{j};
      std::string text = b.has("content") ? b.string("content", "") : b.string("prompt", "");
      // add_special (SGLang) or add_special_tokens (vLLM, lm-eval's remote tokenizer).
      const bool add = b.has("add_special_tokens") ? b.boolean("add_special_tokens", false) : b.boolean("add_special", false);
      const std::vector<int32_t> ids = tok.encode(text, add);
      reply(res, 200, {{"tokens", ids}, {"count", ids.size()}, {"max_model_len", scheduler.options().context_length}});
    }));
    http.Post("/detokenize", guarded([this](const httplib::Request& req, httplib::Response& res) {
      json j = parse_body(req.body);
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
