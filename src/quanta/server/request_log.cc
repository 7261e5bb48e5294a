#include "quanta/server/request_log.h"

#include <algorithm>

#include <nlohmann/json.hpp>

namespace quanta::server {

void RequestLog::set_choices(size_t n) {
  completion_tokens_.assign(n, 0);
  finish_.assign(n, engine::FinishReason::kNone);
}

void RequestLog::on_delta(size_t choice, const Delta& d) {
  if (choice >= finish_.size()) set_choices(choice + 1);
  if (!d.tokens.empty()) {
    if (!first_token_ || d.first_token_time < *first_token_) first_token_ = d.first_token_time;
    if (!last_token_ || d.last_token_time > *last_token_) last_token_ = d.last_token_time;
  }
  // Choice 0's counts, or another's until it reports: a client that hangs up after the first
  // event of another choice still gets the prompt logged.
  if (choice == 0 || prompt_tokens == 0) {
    prompt_tokens = d.prompt_tokens;
    cached_tokens = d.cached_tokens;
  }
  completion_tokens_[choice] = std::max(completion_tokens_[choice], d.completion_tokens);
  if (d.finish != engine::FinishReason::kNone) {
    finish_[choice] = d.finish;
    if (!d.error.empty() && error.empty()) error = d.error;
  }
}

void RequestLog::abort_unfinished(const std::string& why) {
  bool any = false;
  for (auto& f : finish_)
    if (f == engine::FinishReason::kNone) f = engine::FinishReason::kAbort, any = true;
  if (any && error.empty()) error = why;
}

std::string RequestLog::line(Clock::time_point end) const {
  using json = nlohmann::ordered_json;  // fields in the documented order
  auto ms = [](Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
  int64_t completion = 0;
  for (int64_t c : completion_tokens_) completion += c;

  json finish = nullptr;
  if (!finish_.empty()) {
    auto any = [&](engine::FinishReason r) { return std::find(finish_.begin(), finish_.end(), r) != finish_.end(); };
    // A choice that never reported its end (the request stopped early) counts as aborted.
    if (any(engine::FinishReason::kAbort) || any(engine::FinishReason::kNone)) finish = "abort";
    else if (any(engine::FinishReason::kLength)) finish = "length";
    else finish = "stop";
  }
  json ttft = nullptr, decode_tps = nullptr;
  if (first_token_) ttft = ms(*first_token_ - start);
  // Decode speed: the tokens after each choice's first, over the time from the first token to the last.
  int64_t with_tokens = 0;
  for (int64_t c : completion_tokens_) with_tokens += c > 0;
  if (first_token_ && completion - with_tokens > 0 && *last_token_ > *first_token_)
    decode_tps = static_cast<double>(completion - with_tokens) /
                 std::chrono::duration<double>(*last_token_ - *first_token_).count();

  json j = {{"event", "request"},
            {"id", id},
            {"path", path},
            {"status", status},
            {"n", completion_tokens_.size()},
            {"prompt_tokens", prompt_tokens},
            {"cached_tokens", cached_tokens},
            {"completion_tokens", completion},
            {"ttft_ms", ttft},
            {"total_ms", ms(end - start)},
            {"decode_tps", decode_tps},
            {"finish_reason", finish},
            {"error", error.empty() ? json(nullptr) : json(error)}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace quanta::server
