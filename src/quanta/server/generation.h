// One generation seen from the API side: submits a request to the scheduler,
// receives its token events and turns them into text deltas, applying stop
// strings (which may span tokens: text that could still become a stop string is
// held back until it cannot).
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "quanta/engine/scheduler.h"
#include "quanta/tokenizer/tokenizer.h"

namespace quanta::server {

struct Delta {
  std::string text;                    // new text, safe to show
  std::vector<int32_t> tokens;         // tokens that produced it
  std::vector<engine::TokenEvent> events;  // their events (logprobs)
  std::vector<engine::ScoredToken> prompt_logprobs;  // in the first Delta, when the prompt was scored
  engine::FinishReason finish = engine::FinishReason::kNone;
  std::string matched_stop;            // the stop string that ended it, if any
  std::string error;
  int64_t prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;
  // When the scheduler produced the first and last of `tokens` (set if any).
  std::chrono::steady_clock::time_point first_token_time, last_token_time;
};

class Generation {
 public:
  Generation(engine::Scheduler& scheduler, const tokenizer::Tokenizer& tok, engine::GenerateRequest request,
             std::vector<std::string> stop_strings, bool skip_special);
  ~Generation();

  // Waits up to `timeout` for new output. Returns nullopt on timeout; a Delta
  // with finish != kNone is the last one.
  std::optional<Delta> next(std::chrono::milliseconds timeout);
  // Stops generating (client gone); the scheduler frees the KV within a step.
  void cancel();
  // For /abort_request: cancelling it ends the generation with finish kAbort.
  std::shared_ptr<engine::RequestHandle> handle() const { return handle_; }
  std::chrono::steady_clock::time_point start() const { return start_; }

 private:
  std::shared_ptr<engine::RequestHandle> handle_;
  tokenizer::StreamDecoder decoder_;
  std::vector<std::string> stops_;
  size_t holdback_ = 0;  // longest stop string - 1
  std::string pending_;  // decoded text not yet released (may start a stop string)
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;

  struct Queue {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<engine::TokenEvent> events;
    std::deque<std::chrono::steady_clock::time_point> times;  // of each event, as it arrived
  };
  std::shared_ptr<Queue> queue_;
};

}  // namespace quanta::server
