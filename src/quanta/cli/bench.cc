// quanta bench: prompt-processing and generation speed, defined as llama-bench does.
//   pp<P>: one forward pass over a batch of P prompt tokens into an empty cache.
//   tg<N>: N tokens generated one at a time, starting from an empty cache.
// Each test runs once to warm up, then REPS times; reported as mean +- sample
// standard deviation of tokens/s over the repetitions.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "quanta/cli/commands.h"
#include "quanta/cli/quant_options.h"
#include "quanta/dist/comm.h"
#include "quanta/core/error.h"
#include "quanta/core/thread_pool.h"
#include "quanta/engine/loader.h"
#include "quanta/kernels/kernels.h"

namespace quanta::cli {

namespace {

struct BenchOptions {
  std::string model_path;
  engine::LoadOptions load;
  std::vector<int64_t> n_prompt = {512};
  std::vector<int64_t> n_gen = {128};
  std::vector<int> threads;
  int reps = 5;
  bool json = false;
};

struct Result {
  int64_t n_prompt, n_gen;
  int threads;
  double avg_ts, stddev_ts;
  std::vector<double> samples_ts;
  int tp_size = 1;
  double allreduce_share = 0, allreduce_us = 0;  // of the measured time, on rank 0
};

// VmHWM of /proc/self/status, in MB (0 where unknown).
double peak_rss_mb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

int run_bench(const BenchOptions& o) {
  if (o.reps < 1) throw Error("must be at least 1", {.field = "--repetitions"});
  kernels::active_isa();
  engine::LoadedModel lm = engine::load_model(o.model_path, {}, o.load);
  const auto& cfg = lm.config;
  std::vector<int> thread_counts = o.threads;
  if (thread_counts.empty()) thread_counts.push_back(dist::default_threads());
  if (engine::is_follower()) {  // tensor parallelism: the other ranks follow rank 0's steps
    ThreadPool pool(thread_counts[0]);
    lm.model->follow(pool);
    std::fprintf(stderr, "rank %d: peak resident memory %.1f MB\n", dist::world().rank(), peak_rss_mb());
    return 0;
  }
  dist::Communicator& comm = dist::world();

  // Random tokens, as llama-bench uses.
  std::mt19937 rng(42);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(cfg.vocab_size - 1));
  std::vector<float> logits(static_cast<size_t>(cfg.vocab_size));

  std::vector<Result> results;
  auto measure = [&](int64_t pp, int64_t tg, ThreadPool& pool) {
    Result r{pp, tg, pool.size(), 0, 0, {}};
    double reduce_s = 0, total_s = 0;
    int64_t reduce_calls = 0;
    for (int rep = -1; rep < o.reps; ++rep) {  // rep -1 is the warm-up
      model::KvCache cache = lm.model->make_cache(std::max<int64_t>(pp + tg, 1));
      std::vector<int32_t> tokens(static_cast<size_t>(std::max(pp, tg)));
      for (auto& t : tokens) t = token(rng);
      const double r0 = comm.reduce_seconds;
      const int64_t c0 = comm.reduce_calls;
      auto t0 = std::chrono::steady_clock::now();
      if (pp > 0) {
        lm.model->forward(tokens.data(), pp, cache, logits.data(), false, pool);
      } else {
        for (int64_t i = 0; i < tg; ++i) lm.model->forward(&tokens[static_cast<size_t>(i)], 1, cache, logits.data(), false, pool);
      }
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (rep >= 0) {
        r.samples_ts.push_back(static_cast<double>(pp + tg) / secs);
        reduce_s += comm.reduce_seconds - r0;
        reduce_calls += comm.reduce_calls - c0;
        total_s += secs;
      }
    }
    double sum = 0, sq = 0;
    for (double v : r.samples_ts) sum += v;
    r.avg_ts = sum / static_cast<double>(r.samples_ts.size());
    for (double v : r.samples_ts) sq += (v - r.avg_ts) * (v - r.avg_ts);
    r.stddev_ts = r.samples_ts.size() > 1 ? std::sqrt(sq / static_cast<double>(r.samples_ts.size() - 1)) : 0.0;
    r.tp_size = comm.size();
    r.allreduce_share = total_s > 0 ? reduce_s / total_s : 0;
    r.allreduce_us = reduce_calls > 0 ? 1e6 * reduce_s / static_cast<double>(reduce_calls) : 0;
    if (comm.size() > 1)
      std::fprintf(stderr, "%s: all-reduce %.1f us per call, %lld calls, %.1f%% of the time on rank 0\n",
                   pp ? ("pp" + std::to_string(pp)).c_str() : ("tg" + std::to_string(tg)).c_str(), r.allreduce_us,
                   static_cast<long long>(reduce_calls), 100 * r.allreduce_share);
    results.push_back(r);
    if (!o.json) {
      std::string name = o.model_path.substr(o.model_path.find_last_of('/') + 1);
      std::string test = pp ? "pp" + std::to_string(pp) : "tg" + std::to_string(tg);
      char speed[64];
      std::snprintf(speed, sizeof speed, "%.2f ± %.2f", r.avg_ts, r.stddev_ts);
      std::printf("| %-28s | %7d | %10s | %16s |\n", name.c_str(), r.threads, test.c_str(), speed);
    }
    std::fflush(stdout);
  };

  if (!o.json) {
    std::printf("| %-28s | %7s | %10s | %14s |\n", "model", "threads", "test", "t/s");
    std::printf("| %s | %s | %s | %s |\n", std::string(28, '-').c_str(), std::string(7, '-').c_str(),
                std::string(10, '-').c_str(), std::string(14, '-').c_str());
  }
  for (int nt : thread_counts) {
    if (nt < 1) throw Error("must be at least 1", {.field = "--threads"});
    ThreadPool pool(nt);
    for (int64_t pp : o.n_prompt)
      if (pp > 0) measure(pp, 0, pool);
    for (int64_t tg : o.n_gen)
      if (tg > 0) measure(0, tg, pool);
  }
  if (o.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const Result& r : results)
      out.push_back({{"model_filename", o.model_path}, {"n_prompt", r.n_prompt}, {"n_gen", r.n_gen},
                     {"n_threads", r.threads}, {"avg_ts", r.avg_ts}, {"stddev_ts", r.stddev_ts},
                     {"samples_ts", r.samples_ts}, {"isa", kernels::isa_name(kernels::active_isa())},
                     {"model_size", lm.model->weight_bytes()}, {"tp_size", r.tp_size},
                     {"allreduce_us_per_call", r.allreduce_us}, {"allreduce_share", r.allreduce_share},
                     {"peak_rss_mb_rank0", peak_rss_mb()}});
    std::printf("%s\n", out.dump(2).c_str());
  }
  std::fprintf(stderr, "rank 0: peak resident memory %.1f MB (of %d ranks)\n", peak_rss_mb(), comm.size());
  return 0;
}

}  // namespace

Command add_bench(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  CLI::App* sub = app.add_subcommand("bench", "Measure prompt-processing and generation speed (as llama-bench).");
  add_quantization_options(sub, o->load);
  sub->footer(
      "pp<P>: one forward pass over P random prompt tokens into an empty context.\n"
      "tg<N>: N tokens generated one at a time from an empty context.\n"
      "Each test runs once to warm up, then --repetitions times; t/s is the mean +- standard deviation.");
  sub->add_option("-m,--model-path", o->model_path, "Model folder")->required();
  sub->add_option("-p,--n-prompt", o->n_prompt, "Prompt lengths to test (0 skips)")->delimiter(',')->capture_default_str();
  sub->add_option("-n,--n-gen", o->n_gen, "Generation lengths to test (0 skips)")->delimiter(',')->capture_default_str();
  sub->add_option("-t,--threads", o->threads, "Thread counts to test (default: physical cores)")->delimiter(',');
  sub->add_option("-r,--repetitions", o->reps, "Repetitions of each test")->capture_default_str();
  sub->add_flag("--json", o->json, "Print a JSON list of results (n_prompt, n_gen, n_threads, avg_ts, stddev_ts, ...)");
  return [o] { return run_bench(*o); };
}

}  // namespace quanta::cli
