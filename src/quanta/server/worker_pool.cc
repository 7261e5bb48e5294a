#include "quanta/server/worker_pool.h"

namespace quanta::server {

WorkerPool::WorkerPool(size_t n_threads) {
  for (size_t i = 0; i < n_threads; ++i) workers_.push_back(std::make_unique<Worker>());
  for (size_t i = 0; i < n_threads; ++i) threads_.emplace_back([this, i] { work(i); });
}

WorkerPool::~WorkerPool() { shutdown(); }

void WorkerPool::enqueue(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  jobs_.push_back(std::move(fn));
  if (!idle_.empty()) {
    Worker& w = *workers_[idle_.back()];
    idle_.pop_back();
    w.woken = true;
    w.cv.notify_one();
  }
}

void WorkerPool::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shutdown_) return;
    shutdown_ = true;
    for (auto& w : workers_) w->cv.notify_one();
  }
  for (auto& t : threads_) t.join();
}

void WorkerPool::work(size_t i) {
  Worker& me = *workers_[i];
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (!jobs_.empty()) {
      std::function<void()> fn = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      fn();
      lock.lock();
      continue;
    }
    if (shutdown_) return;
    // Idle. A worker woken for a job another one took first simply comes back here.
    idle_.push_back(i);
    me.cv.wait(lock, [&] { return me.woken || shutdown_; });
    me.woken = false;
  }
}

}  // namespace quanta::server
