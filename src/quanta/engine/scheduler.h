// The serving engine: continuous batching over a paged KV pool with a prefix cache.
//
// One scheduler thread owns the model's KV pool. Each step it admits waiting
// requests while there is room (prefix-cache hits first share cached blocks),
// then runs ONE forward pass holding a token for every decoding request plus
// prompt chunks of prefilling ones up to chunked_prefill_size tokens, so long
// prompts never stall decoding and every weight is read once per step. When the
// pool cannot hold the next step, the newest request is preempted: its KV goes
// to the prefix cache and it waits to resume. Cancelled requests (client gone)
// leave at the next step, their blocks freed.
//
// Requests speak token ids; text, stop strings and API shapes belong to the server.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "quanta/engine/radix_cache.h"
#include "quanta/engine/sampler.h"
#include "quanta/grammar/matcher.h"
#include "quanta/model/decoder.h"

namespace quanta {
class ThreadPool;
}

namespace quanta::engine {

enum class FinishReason { kNone, kStop, kLength, kAbort };
const char* finish_reason_name(FinishReason r);

// What the scheduler reports for each generated token (and once more at the end).
struct TokenEvent {
  int32_t token = -1;              // -1 on a final event that carries no token
  float logprob = 0.0f;            // of `token` under the model's distribution
  std::vector<TokenLogprob> top;   // the top_logprobs most likely tokens, when asked
  FinishReason finish = FinishReason::kNone;
  std::string error;               // set when the request failed
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;       // prompt tokens served by the prefix cache
  int64_t completion_tokens = 0;
  // On the request's first event (its first token, or the final event when max_new_tokens is 0),
  // when prompt_logprobs_from >= 0: prompt tokens prompt_logprobs_from + 1 .. end, each scored by
  // the positions before it (the first of the range has nothing before it in scope).
  std::vector<ScoredToken> prompt_logprobs;
};

struct GenerateRequest {
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  int64_t max_new_tokens = 128;  // 0: only the prompt is run (scored, with prompt_logprobs_from)
  std::vector<int32_t> stop_token_ids;  // besides the model's EOS unless ignore_eos
  bool ignore_eos = false;
  int top_logprobs = -1;  // -1: no logprobs; 0: only the chosen token's; k: also top k
  // >= 0: score the prompt from this position on (top_logprobs alternatives each, at least 0). The
  // prefix cache holds no logits, so at most this many prompt tokens come from it.
  int64_t prompt_logprobs_from = -1;
  // Constrained decoding: every token drawn continues this grammar (each request its own matcher).
  std::shared_ptr<const grammar::CompiledGrammar> grammar;
  // Called on the scheduler thread; must be quick (queue, do not block).
  std::function<void(const TokenEvent&)> on_event;
};

// A handle the caller keeps to cancel the request.
class RequestHandle {
 public:
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

 private:
  std::atomic<bool> cancelled_{false};
};

struct SchedulerOptions {
  int64_t kv_blocks = 1024;
  int64_t block_size = 16;
  int max_running_requests = 64;
  int64_t chunked_prefill_size = 512;
  int64_t context_length = 4096;
  std::vector<int32_t> eos_token_ids;
  // Tokens [0, sample_vocab) are the ones sampled and reported in logprobs (0: all of the
  // model's vocabulary). Checkpoints pad their embedding and output rows past the
  // tokenizer's last id (Qwen2.5: 151936 rows, 151665 tokens); those ids decode to nothing.
  int64_t sample_vocab = 0;
};

struct SchedulerStats {
  int running = 0;
  int waiting = 0;
  int64_t kv_blocks_total = 0;
  int64_t kv_blocks_used = 0;
  int64_t cached_blocks = 0;
  uint64_t prompt_tokens = 0;       // total, all requests
  uint64_t cached_prompt_tokens = 0;
  uint64_t generation_tokens = 0;
  uint64_t requests_finished = 0;
  uint64_t preemptions = 0;
  uint64_t grammar_tokens = 0;    // tokens drawn under a grammar
  double grammar_seconds = 0.0;   // spent in the grammar for them (checks, masks, advancing; not sampling)
  uint64_t grammar_masks = 0;     // of those draws, how many needed the full mask
};

class Scheduler {
 public:
  Scheduler(const model::DecoderModel& model, ThreadPool& pool, SchedulerOptions options);
  ~Scheduler();

  // Queues a request; throws quanta::Error if it can never run (empty or too long).
  std::shared_ptr<RequestHandle> submit(GenerateRequest request);
  SchedulerStats stats() const;
  // Drops the prefix cache's unused blocks.
  void flush_cache();
  const SchedulerOptions& options() const { return options_; }

 private:
  struct Active;
  void loop();
  void step(std::unique_lock<std::mutex>& lock);
  bool admit(Active& a);
  void finish(Active& a, FinishReason reason, const std::string& error = "");
  void preempt(Active& a);

  const model::DecoderModel& model_;
  ThreadPool& pool_;
  SchedulerOptions options_;
  model::KvPool kv_;
  RadixCache radix_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Active>> incoming_;  // guarded by mutex_
  bool stop_ = false;
  bool flush_requested_ = false;
  SchedulerStats stats_;  // guarded by mutex_

  // Scheduler-thread state.
  std::deque<std::unique_ptr<Active>> waiting_;
  std::vector<std::unique_ptr<Active>> running_;
  std::vector<float> logits_;  // [rows, vocab] of the last step; grows to the largest step
  std::thread thread_;
};

}  // namespace quanta::engine
