#include "quanta/server/generation.h"

#include <algorithm>

namespace quanta::server {

Generation::Generation(engine::Scheduler& scheduler, const tokenizer::Tokenizer& tok,
                       engine::GenerateRequest request, std::vector<std::string> stop_strings, bool skip_special)
    : decoder_(tok, skip_special), stops_(std::move(stop_strings)), start_(std::chrono::steady_clock::now()),
      queue_(std::make_shared<Queue>()) {
  stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string()), stops_.end());
  for (const auto& s : stops_) holdback_ = std::max(holdback_, s.size() - 1);
  // The callback outlives nothing: it holds the queue, not the Generation.
  std::shared_ptr<Queue> q = queue_;
  request.on_event = [q](const engine::TokenEvent& ev) {
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard<std::mutex> lock(q->mu);
    q->events.push_back(ev);
    q->times.push_back(now);
    q->cv.notify_all();
  };
  handle_ = scheduler.submit(std::move(request));
}

Generation::~Generation() {
  if (!finished_) handle_->cancel();
}

void Generation::cancel() { handle_->cancel(); }

std::optional<Delta> Generation::next(std::chrono::milliseconds timeout) {
  if (finished_) return std::nullopt;
  std::deque<engine::TokenEvent> events;
  std::deque<std::chrono::steady_clock::time_point> times;
  {
    std::unique_lock<std::mutex> lock(queue_->mu);
    if (!queue_->cv.wait_for(lock, timeout, [&] { return !queue_->events.empty(); })) return std::nullopt;
    events.swap(queue_->events);
    times.swap(queue_->times);
  }
  Delta d;
  for (size_t i = 0; i < events.size(); ++i) {
    const engine::TokenEvent& ev = events[i];
    if (finished_) break;
    if (!ev.prompt_logprobs.empty()) d.prompt_logprobs = ev.prompt_logprobs;
    if (ev.token >= 0) {
      if (d.tokens.empty()) d.first_token_time = times[i];
      d.last_token_time = times[i];
      d.tokens.push_back(ev.token);
      d.events.push_back(ev);
      pending_ += decoder_.step(ev.token);
    }
    d.prompt_tokens = ev.prompt_tokens;
    d.cached_tokens = ev.cached_tokens;
    d.completion_tokens = ev.completion_tokens;
    if (ev.finish != engine::FinishReason::kNone) {
      pending_ += decoder_.flush();
      d.finish = ev.finish;
      d.error = ev.error;
      finished_ = true;
    }
    // A stop string ends the text before it, wherever it started.
    size_t cut = std::string::npos;
    for (const auto& s : stops_) {
      size_t at = pending_.find(s);
      if (at != std::string::npos && at < cut) cut = at, d.matched_stop = s;
    }
    if (cut != std::string::npos) {
      pending_.resize(cut);
      d.finish = engine::FinishReason::kStop;
      if (!finished_) handle_->cancel();
      finished_ = true;
    }
  }
  // Release what can no longer become the start of a stop string.
  size_t release = finished_ ? pending_.size() : (pending_.size() > holdback_ ? pending_.size() - holdback_ : 0);
  // Never split a UTF-8 character when holding back.
  while (release > 0 && release < pending_.size() && (static_cast<unsigned char>(pending_[release]) & 0xC0) == 0x80)
    --release;
  d.text = pending_.substr(0, release);
  pending_.erase(0, release);
  return d;
}

}  // namespace quanta::server
