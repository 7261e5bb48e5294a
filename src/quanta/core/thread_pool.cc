#include "quanta/core/thread_pool.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <string>

namespace quanta {

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int64_t, int64_t)>* job;
    std::pair<int64_t, int64_t> chunk;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      work_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
      chunk = chunks_[static_cast<size_t>(index)];
    }
    if (chunk.first < chunk.second) (*job)(chunk.first, chunk.second);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain,
                              const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  int64_t n_grains = (n + grain - 1) / grain;
  int n_parts = static_cast<int>(std::min<int64_t>(n_threads_, n_grains));
  bool nested;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    nested = busy_;
    if (!nested && n_parts > 1) busy_ = true;
  }
  if (nested || n_parts <= 1) {
    fn(0, n);
    return;
  }
  // Split the grains as evenly as possible; chunk 0 is the caller's.
  std::vector<std::pair<int64_t, int64_t>> chunks(static_cast<size_t>(n_threads_), {0, 0});
  int64_t start = 0;
  for (int p = 0; p < n_parts; ++p) {
    int64_t g = n_grains / n_parts + (p < n_grains % n_parts ? 1 : 0);
    int64_t end = std::min(n, start + g * grain);
    chunks[static_cast<size_t>(p)] = {start, end};
    start = end;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    chunks_ = std::move(chunks);
    job_ = &fn;
    pending_ = n_threads_ - 1;
    ++generation_;
  }
  work_cv_.notify_all();
  fn(chunks_[0].first, chunks_[0].second);
  std::unique_lock<std::mutex> lock(mutex_);
  done_cv_.wait(lock, [&] { return pending_ == 0; });
  busy_ = false;
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
