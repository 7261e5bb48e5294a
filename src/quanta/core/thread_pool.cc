#include "quanta/core/thread_pool.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <string>

namespace quanta {

namespace {
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}
// About a millisecond of spinning before a worker goes to sleep.
constexpr int kSpinIterations = 1 << 14;
}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
  chunks_.assign(static_cast<size_t>(n_threads_), {0, 0});
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true);
  }
  work_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen && !stop_.load(std::memory_order_relaxed)) {
      if (++spins < kSpinIterations) {
        cpu_relax();
        continue;
      }
      std::unique_lock<std::mutex> lock(mutex_);
      work_cv_.wait(lock, [&] { return stop_.load() || generation_.load() != seen; });
    }
    if (stop_.load()) return;
    seen = generation_.load(std::memory_order_acquire);
    auto chunk = chunks_[static_cast<size_t>(index)];
    if (chunk.first < chunk.second) (*job_)(chunk.first, chunk.second);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain,
                              const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  int64_t n_grains = (n + grain - 1) / grain;
  int n_parts = static_cast<int>(std::min<int64_t>(n_threads_, n_grains));
  bool expected = false;
  if (n_parts <= 1 || !busy_.compare_exchange_strong(expected, true)) {
    fn(0, n);  // too small to split, or nested inside another parallel_for
    return;
  }
  // Split the grains as evenly as possible; chunk 0 is the caller's.
  int64_t start = 0;
  for (int p = 0; p < n_threads_; ++p) {
    int64_t g = p < n_parts ? n_grains / n_parts + (p < n_grains % n_parts ? 1 : 0) : 0;
    int64_t end = std::min(n, start + g * grain);
    chunks_[static_cast<size_t>(p)] = {start, end};
    start = end;
  }
  job_ = &fn;
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mutex_);  // pairs with the sleepers' predicate check
    generation_.fetch_add(1, std::memory_order_release);
  }
  work_cv_.notify_all();
  fn(chunks_[0].first, chunks_[0].second);
  while (pending_.load(std::memory_order_acquire) != 0) cpu_relax();
  busy_.store(false, std::memory_order_release);
}

int ThreadPool::physical_cores() {
  // Count distinct (package, core) pairs from sysfs; SMT siblings share a core.
  std::set<std::pair<std::string, std::string>> cores;
  for (unsigned cpu = 0; cpu < 4096; ++cpu) {
    std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    std::ifstream core(base + "core_id"), pkg(base + "physical_package_id");
    if (!core || !pkg) break;
    std::string c, p;
    core >> c;
    pkg >> p;
    cores.insert({p, c});
  }
  int logical = static_cast<int>(std::thread::hardware_concurrency());
  if (cores.empty()) return std::max(1, logical);
  return static_cast<int>(cores.size());
}

}  // namespace quanta
