#include "quanta/engine/scheduler.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "quanta/core/error.h"
#include "quanta/core/thread_pool.h"

namespace quanta::engine {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kAbort: return "abort";
    case FinishReason::kNone: break;
  }
  return "";
}

struct Scheduler::Active {
  GenerateRequest req;
  std::shared_ptr<RequestHandle> handle;
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<grammar::Matcher> matcher;  // when the request is constrained
  std::vector<int32_t> tokens;  // prompt, then generated tokens
  model::KvSequence kv;         // KV of tokens[0, kv.n_tokens)
  int64_t prompt_len = 0;
  int64_t n_generated = 0;
  int64_t cached_tokens = 0;    // of the first admission
  bool ever_admitted = false;
  std::vector<ScoredToken> prompt_scores;  // gathered during prefill when the prompt is scored
  bool first_event_sent = false;           // the scores go out with the first event

  // Prompt positions [prompt_logprobs_from, prompt_len - 1) still to be scored (their logits are needed).
  bool scoring_prompt() const {
    return !first_event_sent && req.prompt_logprobs_from >= 0 && req.prompt_logprobs_from < prompt_len - 1;
  }
};

namespace {
// Rows of logits one step may hold for scored prompts: bounds the buffer (rows * vocab floats).
constexpr int64_t kMaxScoredRows = 128;
}  // namespace

Scheduler::Scheduler(const model::DecoderModel& model, ThreadPool& pool, SchedulerOptions options)
    : model_(model),
      pool_(pool),
      options_(std::move(options)),
      kv_(model.make_pool(options_.kv_blocks, options_.block_size)),
      radix_(kv_) {
  if (options_.context_length > options_.kv_blocks * options_.block_size)
    throw Error("the KV pool holds " + std::to_string(options_.kv_blocks * options_.block_size) +
                    " tokens, fewer than the context length " + std::to_string(options_.context_length),
                {.field = "max_total_tokens"});
  stats_.kv_blocks_total = options_.kv_blocks;
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  for (auto& a : running_) radix_.release(a->kv);
}

std::shared_ptr<RequestHandle> Scheduler::submit(GenerateRequest request) {
  if (request.prompt.empty()) throw Error("the prompt is empty", {.field = "prompt"});
  const int64_t total = static_cast<int64_t>(request.prompt.size()) + request.max_new_tokens;
  if (total > options_.context_length)
    throw Error("prompt (" + std::to_string(request.prompt.size()) + " tokens) plus max_tokens (" +
                    std::to_string(request.max_new_tokens) + ") exceeds the context length of " +
                    std::to_string(options_.context_length), {.field = "max_tokens"});
  if (request.max_new_tokens < 0) throw Error("must be >= 0", {.field = "max_tokens"});
  for (int32_t t : request.prompt)
    if (t < 0 || t >= model_.config().vocab_size)
      throw Error("token id " + std::to_string(t) + " is outside the vocabulary", {.field = "input_ids"});
  std::vector<int32_t> stops = request.stop_token_ids;  // banned until min_new_tokens
  if (!request.ignore_eos) stops.insert(stops.end(), options_.eos_token_ids.begin(), options_.eos_token_ids.end());
  auto a = std::make_unique<Active>();
  a->sampler = std::make_unique<Sampler>(request.sampling, request.prompt, std::move(stops));  // validates sampling
  if (request.grammar) a->matcher = std::make_unique<grammar::Matcher>(request.grammar);
  a->tokens = request.prompt;
  a->prompt_len = static_cast<int64_t>(request.prompt.size());
  a->req = std::move(request);
  a->handle = std::make_shared<RequestHandle>();
  auto handle = a->handle;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    incoming_.push_back(std::move(a));
  }
  cv_.notify_all();
  return handle;
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void Scheduler::flush_cache() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    flush_requested_ = true;
  }
  cv_.notify_all();
}

void Scheduler::loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || flush_requested_ || !incoming_.empty() || !running_.empty() || !waiting_.empty(); });
    if (stop_) break;
    step(lock);
  }
  // Shutting down: every unfinished request ends as aborted.
  for (auto& a : incoming_) waiting_.push_back(std::move(a));
  incoming_.clear();
  lock.unlock();
  for (auto& a : running_) finish(*a, FinishReason::kAbort, "server shutting down");
  for (auto& a : waiting_) finish(*a, FinishReason::kAbort, "server shutting down");
  waiting_.clear();
}

bool Scheduler::admit(Active& a) {
  // Reuse the longest cached prefix, always leaving one token to compute so the
  // step yields logits for the last prompt token, and the scored part of a prompt
  // (cached blocks have no logits; a preempted request scores its prompt anew).
  int64_t reusable = static_cast<int64_t>(a.tokens.size()) - 1;
  if (a.scoring_prompt()) {
    reusable = std::min(reusable, a.req.prompt_logprobs_from);
    a.prompt_scores.clear();
  }
  a.kv.blocks = radix_.match(a.tokens, reusable);
  a.kv.n_tokens = static_cast<int64_t>(a.kv.blocks.size()) * kv_.block_size();
  const int64_t pending = static_cast<int64_t>(a.tokens.size()) - a.kv.n_tokens;
  const int64_t need = (a.kv.n_tokens + pending + kv_.block_size() - 1) / kv_.block_size() -
                       static_cast<int64_t>(a.kv.blocks.size());
  if (need > kv_.n_free()) radix_.evict(need - kv_.n_free());
  if (!model::kv_reserve(kv_, a.kv, pending)) {
    radix_.release(a.kv);
    return false;
  }
  if (!a.ever_admitted) {
    a.ever_admitted = true;
    a.cached_tokens = a.kv.n_tokens;
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.prompt_tokens += static_cast<uint64_t>(a.prompt_len);
    stats_.cached_prompt_tokens += static_cast<uint64_t>(a.kv.n_tokens);
  }
  return true;
}

void Scheduler::finish(Active& a, FinishReason reason, const std::string& error) {
  // Keep what was computed for later requests with the same prefix.
  if (!a.kv.blocks.empty()) radix_.insert(a.tokens, a.kv.n_tokens, a.kv.blocks);
  radix_.release(a.kv);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++stats_.requests_finished;
  }
  // A stop or length finish was reported with the last token; an abort has no token.
  if (reason == FinishReason::kAbort) {
    TokenEvent ev;
    ev.finish = reason;
    ev.error = error;
    ev.prompt_tokens = a.prompt_len;
    ev.cached_tokens = a.cached_tokens;
    ev.completion_tokens = a.n_generated;
    if (a.req.on_event) a.req.on_event(ev);
  }
}

void Scheduler::preempt(Active& a) {
  // Its KV goes to the prefix cache; on resumption the cached blocks come back.
  radix_.insert(a.tokens, a.kv.n_tokens, a.kv.blocks);
  radix_.release(a.kv);
  std::lock_guard<std::mutex> lock(mutex_);
  ++stats_.preemptions;
}

void Scheduler::step(std::unique_lock<std::mutex>& lock) {
  while (!incoming_.empty()) {
    waiting_.push_back(std::move(incoming_.front()));
    incoming_.pop_front();
  }
  const bool flush = flush_requested_;
  flush_requested_ = false;
  lock.unlock();

  if (flush) radix_.clear();

  // Requests whose client went away leave now, and free their blocks.
  for (auto it = running_.begin(); it != running_.end();) {
    if ((*it)->handle->cancelled()) {
      finish(**it, FinishReason::kAbort);
      it = running_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if ((*it)->handle->cancelled()) {
      finish(**it, FinishReason::kAbort);
      it = waiting_.erase(it);
    } else {
      ++it;
    }
  }

  // Admit waiting requests in arrival order while there is room.
  while (!waiting_.empty() && static_cast<int>(running_.size()) < options_.max_running_requests) {
    if (!admit(*waiting_.front())) break;
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }

  // Decoding requests need room for one more token; preempt the newest when the
  // pool is full (a request alone in the pool always fits: context <= pool).
  for (size_t i = 0; i < running_.size(); ++i) {
    Active& a = *running_[i];
    while (!model::kv_reserve(kv_, a.kv, static_cast<int64_t>(a.tokens.size()) - a.kv.n_tokens)) {
      if (radix_.evict(1) > 0) continue;
      size_t victim = running_.size() - 1;
      preempt(*running_[victim]);
      waiting_.push_front(std::move(running_[victim]));
      running_.pop_back();
      if (victim == i) break;
    }
  }

  // One forward pass: one token per decoding request, prompt chunks within budget.
  // A scored prompt runs up to its first scored position without logits, then in
  // chunks of at most kMaxScoredRows with logits for every position.
  std::vector<model::SequenceStep> steps;
  std::vector<Active*> stepped;
  std::vector<int64_t> first_row;  // of each step in the logits
  int64_t budget = options_.chunked_prefill_size, rows = 0, scored_rows = kMaxScoredRows;
  for (auto& ap : running_) {
    Active& a = *ap;
    const int64_t pending = static_cast<int64_t>(a.tokens.size()) - a.kv.n_tokens;
    int64_t n = pending;
    bool all_logits = false;
    if (pending > 1) {  // prefill
      if (budget <= 0) continue;
      n = std::min(pending, budget);
      if (a.scoring_prompt()) {
        if (a.kv.n_tokens < a.req.prompt_logprobs_from) {
          n = std::min(n, a.req.prompt_logprobs_from - a.kv.n_tokens);
        } else {
          if (scored_rows <= 0) continue;
          n = std::min(n, scored_rows);
          scored_rows -= n;
          all_logits = true;
        }
      }
      budget -= n;
    }
    steps.push_back({&a.kv, a.tokens.data() + a.kv.n_tokens, n, all_logits});
    stepped.push_back(&a);
    first_row.push_back(rows);
    rows += all_logits ? n : 1;
  }

  if (!steps.empty()) {
    const int64_t vocab = model_.config().vocab_size;
    const int64_t n_sampled = options_.sample_vocab > 0 ? std::min(vocab, options_.sample_vocab) : vocab;
    // Kept across steps: a fresh [rows, vocab] buffer each step is tens of MB mapped and faulted in anew.
    if (logits_.size() < static_cast<size_t>(rows * vocab)) logits_.resize(static_cast<size_t>(rows * vocab));
    float* logits = logits_.data();
    std::vector<int64_t> start_pos(stepped.size());  // where each step's tokens began
    for (size_t i = 0; i < stepped.size(); ++i) start_pos[i] = stepped[i]->kv.n_tokens;
    std::string error;
    try {
      model_.forward(steps, kv_, logits, pool_);
    } catch (const std::exception& e) {
      error = e.what();
    }
    std::vector<Active*> done;
    for (size_t i = 0; i < stepped.size(); ++i) {
      Active& a = *stepped[i];
      if (!error.empty()) {
        done.push_back(&a);
        continue;
      }
      const int64_t n_rows = steps[i].all_logits ? steps[i].n_tokens : 1;
      float* rows0 = logits + first_row[i] * vocab;
      if (steps[i].all_logits) {  // a scored prompt chunk: position p predicts prompt token p + 1
        for (int64_t j = 0; j < n_rows; ++j) {
          const int64_t pos = start_pos[i] + j;
          if (pos < a.req.prompt_logprobs_from || pos + 1 >= a.prompt_len) continue;
          a.prompt_scores.push_back(score_token(rows0 + j * vocab, n_sampled, a.tokens[static_cast<size_t>(pos + 1)],
                                                std::max(a.req.top_logprobs, 0)));
        }
      }
      if (a.kv.n_tokens < static_cast<int64_t>(a.tokens.size())) continue;  // mid-prefill chunk
      float* row = rows0 + (n_rows - 1) * vocab;
      TokenEvent ev;
      if (!a.first_event_sent) {
        a.first_event_sent = true;
        ev.prompt_logprobs = std::move(a.prompt_scores);
      }
      ev.prompt_tokens = a.prompt_len;
      ev.cached_tokens = a.cached_tokens;
      if (a.req.max_new_tokens == 0) {  // the prompt only: no token drawn
        ev.finish = FinishReason::kLength;
        if (a.req.on_event) a.req.on_event(ev);
        done.push_back(&a);
        continue;
      }
      std::vector<float> raw;  // the logits before sampling changes them, for the log-probabilities
      if (a.req.top_logprobs >= 0) raw.assign(row, row + n_sampled);
      int32_t tok;
      double advance_s = 0.0;
      try {
        tok = a.sampler->sample(row, n_sampled, a.matcher.get());
        if (a.matcher && tok >= 0) {
          const auto t0 = std::chrono::steady_clock::now();
          a.matcher->advance(tok);
          advance_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        }
      } catch (const Error& e) {  // a grammar past its limits: this request ends, the others go on
        ev.finish = FinishReason::kAbort;
        ev.error = e.what();
        ev.completion_tokens = a.n_generated;
        if (a.req.on_event) a.req.on_event(ev);
        done.push_back(&a);
        continue;
      }
      if (a.matcher) {
        std::lock_guard<std::mutex> g(mutex_);
        ++stats_.grammar_tokens;
        stats_.grammar_masks += a.sampler->last_masked() ? 1 : 0;
        stats_.grammar_seconds += a.sampler->last_grammar_seconds() + advance_s;
      }
      if (tok < 0) {  // the grammar allows no token of the vocabulary
        const bool complete = a.matcher && a.matcher->can_end();
        ev.finish = complete ? FinishReason::kStop : FinishReason::kAbort;
        if (!complete) ev.error = "the grammar allows no token of the vocabulary here";
        ev.completion_tokens = a.n_generated;
        if (a.req.on_event) a.req.on_event(ev);
        done.push_back(&a);
        continue;
      }
      a.tokens.push_back(tok);
      ++a.n_generated;
      ev.token = tok;
      if (!raw.empty()) {
        ScoredToken st = score_token(raw.data(), n_sampled, tok, a.req.top_logprobs);
        ev.logprob = st.logprob;
        ev.top = std::move(st.top);
      }
      bool stop = std::find(a.req.stop_token_ids.begin(), a.req.stop_token_ids.end(), tok) != a.req.stop_token_ids.end();
      if (!a.req.ignore_eos)
        stop |= std::find(options_.eos_token_ids.begin(), options_.eos_token_ids.end(), tok) != options_.eos_token_ids.end();
      if (stop) ev.finish = FinishReason::kStop;
      else if (a.n_generated >= a.req.max_new_tokens || static_cast<int64_t>(a.tokens.size()) >= options_.context_length)
        ev.finish = FinishReason::kLength;
      ev.completion_tokens = a.n_generated;
      if (a.req.on_event) a.req.on_event(ev);
      if (ev.finish != FinishReason::kNone) done.push_back(&a);
      std::lock_guard<std::mutex> g(mutex_);
      ++stats_.generation_tokens;
    }
    for (Active* a : done) {
      finish(*a, error.empty() ? FinishReason::kStop : FinishReason::kAbort, error);
      running_.erase(std::find_if(running_.begin(), running_.end(), [&](const auto& p) { return p.get() == a; }));
    }
  }

  lock.lock();
  stats_.running = static_cast<int>(running_.size());
  stats_.waiting = static_cast<int>(waiting_.size() + incoming_.size());
  stats_.kv_blocks_used = kv_.n_blocks() - kv_.n_free();
  stats_.cached_blocks = radix_.n_cached_blocks();
}

}  // namespace quanta::engine
