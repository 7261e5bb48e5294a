// The HTTP server's worker threads, handing each connection to the most
// recently idle worker.
//
// httplib's own pool wakes idle workers in turn, so over hours every one of its
// threads serves requests and keeps its stack and allocator caches resident:
// memory creeps up long after the load stopped growing. Last-in-first-out
// reuse keeps only as many threads warm as were ever busy at once, so resident
// memory follows peak concurrency. Jobs that find no idle worker wait in
// arrival order for the next one that frees up.
#pragma once

#include <httplib.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace quanta::server {

class WorkerPool : public httplib::TaskQueue {
 public:
  explicit WorkerPool(size_t n_threads);
  ~WorkerPool() override;

  void enqueue(std::function<void()> fn) override;
  // Runs the queued jobs, then joins every thread.
  void shutdown() override;

 private:
  struct Worker {
    std::condition_variable cv;
    bool woken = false;
  };
  void work(size_t i);

  std::mutex mu_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<size_t> idle_;  // most recently idle last
  bool shutdown_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace quanta::server
