// The structured log line of one generation request (/v1/completions,
// /v1/chat/completions, /generate): one JSON object per line on stderr, written
// once when the request ends, however it ends (finished, refused with an error,
// or the client went away). Fields:
//
//   event "request", id (the response's id), path, status (HTTP status sent),
//   n (choices), prompt_tokens, cached_tokens (prompt tokens from the prefix
//   cache), completion_tokens (all choices), ttft_ms (to the first token; null if
//   none), total_ms, decode_tps (tokens after the first per second of decoding;
//   null with fewer than two tokens), finish_reason ("stop", "length", "abort",
//   or null when no generation ran), error (message or null).
//
// With n > 1, finish_reason is "abort" if any choice was aborted, else "length"
// if any hit its limit, else "stop".
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "quanta/server/generation.h"

namespace quanta::server {

struct RequestLog {
  using Clock = std::chrono::steady_clock;

  std::string id;
  std::string path;
  Clock::time_point start = Clock::now();
  int status = 0;
  std::string error;
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;

  // Sizes the per-choice state; call before on_delta.
  void set_choices(size_t n);
  // Records what a generation's delta tells: token counts, token times, finish.
  void on_delta(size_t choice, const Delta& d);
  // Marks every unfinished choice aborted (client gone).
  void abort_unfinished(const std::string& why);
  std::string line(Clock::time_point end) const;

 private:
  std::optional<Clock::time_point> first_token_, last_token_;
  std::vector<int64_t> completion_tokens_;       // per choice
  std::vector<engine::FinishReason> finish_;     // per choice
};

}  // namespace quanta::server
