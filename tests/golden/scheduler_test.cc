// The serving scheduler against transformers' greedy tokens: many concurrent
// requests, a pool small enough to force preemption, prefix-cache reuse and
// cancellation must never change what a request generates.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "quanta/core/error.h"
#include "quanta/core/thread_pool.h"
#include "quanta/engine/loader.h"
#include "quanta/engine/scheduler.h"
#include "quanta/format/safetensors.h"
#include "test_util.h"

namespace quanta::engine {
namespace {

struct Collector {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int32_t> tokens;
  TokenEvent last;
  bool done = false;

  std::function<void(const TokenEvent&)> callback() {
    return [this](const TokenEvent& ev) {
      std::lock_guard<std::mutex> lock(mu);
      if (ev.token >= 0) tokens.push_back(ev.token);
      last = ev;
      if (ev.finish != FinishReason::kNone) done = true;
      cv.notify_all();
    };
  }
  void wait() {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return done; })) << "request never finished";
  }
};

struct Fixture {
  LoadedModel lm;
  std::vector<std::vector<int32_t>> prompts, greedy;
};

Fixture load(const std::string& name) {
  Fixture f;
  const std::string dir = test::source_path("tests/golden/fixtures/" + name);
  f.lm = load_model(dir);
  format::SafetensorsFile ref(dir + "/reference.safetensors");
  auto ids = [](const Tensor& t) {
    std::vector<int32_t> v;
    for (int64_t i = 0; i < t.numel(); ++i) v.push_back(static_cast<int32_t>(t.data<int64_t>()[i]));
    return v;
  };
  for (int i = 0; ref.has("prompt_" + std::to_string(i)); ++i) {
    f.prompts.push_back(ids(ref.tensor("prompt_" + std::to_string(i))));
    f.greedy.push_back(ids(ref.tensor("greedy_" + std::to_string(i))));
  }
  return f;
}

GenerateRequest greedy_request(const std::vector<int32_t>& prompt, int64_t n, Collector& c) {
  GenerateRequest r;
  r.prompt = prompt;
  r.sampling.temperature = 0.0;
  r.max_new_tokens = n;
  r.ignore_eos = true;
  r.on_event = c.callback();
  return r;
}

// The scheduler's stats once it has retired n requests (the last event reaches
// the client just before the scheduler frees the request).
SchedulerStats wait_idle(const Scheduler& sched, size_t n) {
  for (int i = 0; i < 500; ++i) {
    SchedulerStats st = sched.stats();
    if (st.running == 0 && st.waiting == 0 && st.requests_finished >= n) return st;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return sched.stats();
}

void run_concurrent(const Fixture& f, SchedulerOptions opt, int copies, SchedulerStats* stats_out) {
  ThreadPool pool(2);
  Scheduler sched(*f.lm.model, pool, opt);
  std::vector<std::unique_ptr<Collector>> cs;
  std::vector<size_t> which;
  for (int c = 0; c < copies; ++c)
    for (size_t p = 0; p < f.prompts.size(); ++p) {
      cs.push_back(std::make_unique<Collector>());
      which.push_back(p);
      sched.submit(greedy_request(f.prompts[p], static_cast<int64_t>(f.greedy[p].size()), *cs.back()));
    }
  for (size_t i = 0; i < cs.size(); ++i) {
    cs[i]->wait();
    EXPECT_EQ(cs[i]->tokens, f.greedy[which[i]]) << "request " << i;
    EXPECT_EQ(cs[i]->last.finish, FinishReason::kLength);
  }
  *stats_out = wait_idle(sched, cs.size());
  // Everything still allocated belongs to the prefix cache.
  EXPECT_EQ(stats_out->kv_blocks_used, stats_out->cached_blocks);
}

TEST(Scheduler, SixteenConcurrentRequestsMatchTransformers) {
  for (const char* name : {"qwen3-qknorm-bf16", "gemma3-f32", "mistral-swa-f32"}) {
    SCOPED_TRACE(name);
    Fixture f = load(name);
    SchedulerOptions opt;
    opt.kv_blocks = 256;
    opt.block_size = 16;
    opt.context_length = 256;
    opt.chunked_prefill_size = 7;  // prompts arrive in several chunks, mixed with decoding
    SchedulerStats st;
    run_concurrent(f, opt, 8, &st);
    EXPECT_EQ(st.requests_finished, 16u);
  }
}

TEST(Scheduler, PreemptionWhenThePoolIsFullKeepsOutputs) {
  Fixture f = load("llama-gqa-f32");
  SchedulerOptions opt;
  opt.block_size = 4;
  opt.kv_blocks = 16;  // 64 tokens: two or three requests at a time at most
  opt.context_length = 64;
  SchedulerStats st;
  run_concurrent(f, opt, 4, &st);
  EXPECT_GT(st.preemptions, 0u);
}

TEST(Scheduler, RepeatedPromptHitsThePrefixCache) {
  Fixture f = load("qwen2-bias-yarn-f32");
  ThreadPool pool(2);
  SchedulerOptions opt;
  opt.block_size = 4;
  opt.kv_blocks = 128;
  opt.context_length = 256;
  Scheduler sched(*f.lm.model, pool, opt);
  const auto& prompt = f.prompts[0];
  Collector first, second;
  sched.submit(greedy_request(prompt, 4, first));
  first.wait();
  EXPECT_EQ(first.last.cached_tokens, 0);
  sched.submit(greedy_request(prompt, 4, second));
  second.wait();
  // Every full block but the one holding the last prompt token is reused.
  EXPECT_EQ(second.last.cached_tokens, (static_cast<int64_t>(prompt.size()) - 1) / 4 * 4);
  EXPECT_EQ(second.tokens, first.tokens);
  sched.flush_cache();
  Collector third;
  sched.submit(greedy_request(prompt, 4, third));
  third.wait();
  EXPECT_EQ(third.last.cached_tokens, 0);
}

TEST(Scheduler, CancelledRequestFreesItsBlocks) {
  Fixture f = load("llama-gqa-f32");
  ThreadPool pool(2);
  SchedulerOptions opt;
  opt.block_size = 4;
  opt.kv_blocks = 128;
  opt.context_length = 256;
  Scheduler sched(*f.lm.model, pool, opt);
  Collector c;
  auto handle = sched.submit(greedy_request(f.prompts[0], 200, c));
  {
    std::unique_lock<std::mutex> lock(c.mu);
    c.cv.wait(lock, [&] { return !c.tokens.empty(); });
  }
  handle->cancel();
  c.wait();
  EXPECT_EQ(c.last.finish, FinishReason::kAbort);
  EXPECT_LT(c.tokens.size(), 200u);
  SchedulerStats st = wait_idle(sched, 1);
  EXPECT_EQ(st.running, 0);
  EXPECT_EQ(st.kv_blocks_used, st.cached_blocks);
}

TEST(Scheduler, RejectsRequestsThatCanNeverRun) {
  Fixture f = load("llama-gqa-f32");
  ThreadPool pool(1);
  SchedulerOptions opt;
  opt.kv_blocks = 16;
  opt.block_size = 16;
  opt.context_length = 64;
  Scheduler sched(*f.lm.model, pool, opt);
  Collector c;
  EXPECT_THROW(sched.submit(greedy_request({}, 4, c)), Error);
  EXPECT_THROW(sched.submit(greedy_request(std::vector<int32_t>(60, 5), 10, c)), Error);
  EXPECT_THROW(sched.submit(greedy_request({5, 100000}, 1, c)), Error);
}

}  // namespace
}  // namespace quanta::engine
