// One pool of worker threads for the whole process, sized by --threads.
//
// The pool runs fork-join loops: parallel_for splits [0, n) into one contiguous
// chunk per thread and returns when all chunks are done. The calling thread
// takes a chunk itself, so a pool of N threads has N-1 workers. Nested
// parallel_for calls run serially on the caller. No thread is ever created per
// request or per layer.
//
// A decode step makes hundreds of short parallel_for calls, so waking workers
// through a condition variable each time (tens of microseconds) would dominate:
// workers spin on an atomic generation counter for a while after each job and
// only then sleep on the condition variable. Work is split into a few chunks per
// thread that every participant, the caller included, takes from a shared
// counter: a worker the OS has not scheduled yet (other processes on the same
// cores) delays nothing, because the others take its chunks.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace quanta {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(begin, end) on disjoint chunks covering [0, n). Chunks are multiples of
  // `grain` (except the last), so kernels can keep their blocking intact.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

  // Number of physical cores of this machine (falls back to logical CPUs).
  static int physical_cores();

 private:
  void worker_loop(int index);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  struct Job;
  // Takes and runs chunks of `job` until none is left.
  static void work_on(Job& job);

  std::shared_ptr<Job> job_;  // guarded by mutex_
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
  std::atomic<bool> busy_{false};
};

}  // namespace quanta
