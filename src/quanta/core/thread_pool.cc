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

struct ThreadPool::Job {
  const std::function<void(int64_t, int64_t)>* fn;
  int64_t n, grain_per_chunk, n_chunks;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
};

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
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

void ThreadPool::work_on(Job& job) {
  for (;;) {
    int64_t c = job.next.fetch_add(1, std::memory_order_relaxed);
    if (c >= job.n_chunks) return;
    int64_t begin = c * job.grain_per_chunk, end = std::min(job.n, begin + job.grain_per_chunk);
    (*job.fn)(begin, end);
    job.done.fetch_add(1, std::memory_order_release);
  }
}

void ThreadPool::worker_loop(int) {
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
    std::shared_ptr<Job> job;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      seen = generation_.load();
      job = job_;
    }
    // A job that finished before this worker woke has no chunks left: nothing runs.
    if (job) work_on(*job);
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain,
                              const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t n_grains = (n + grain - 1) / grain;
  bool expected = false;
  if (n_threads_ == 1 || n_grains == 1 || !busy_.compare_exchange_strong(expected, true)) {
    fn(0, n);  // too small to split, or nested inside another parallel_for
    return;
  }
  // A few chunks per thread, each a whole number of grains.
  const int64_t n_chunks_wanted = std::min<int64_t>(n_grains, static_cast<int64_t>(n_threads_) * 4);
  const int64_t grains_per_chunk = (n_grains + n_chunks_wanted - 1) / n_chunks_wanted;
  auto job = std::make_shared<Job>();
  job->fn = &fn;
  job->n = n;
  job->grain_per_chunk = grains_per_chunk * grain;
  job->n_chunks = (n_grains + grains_per_chunk - 1) / grains_per_chunk;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = job;
    generation_.fetch_add(1, std::memory_order_release);
  }
  work_cv_.notify_all();
  work_on(*job);
  while (job->done.load(std::memory_order_acquire) != job->n_chunks) cpu_relax();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_.reset();
  }
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
