// Prometheus text-format metrics of the server: request and token counters and
// latency histograms, plus the scheduler's gauges at scrape time.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <string>

#include "quanta/engine/scheduler.h"

namespace quanta::server {

class Histogram {
 public:
  static constexpr std::array<double, 14> kBounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                     1, 2.5, 5, 10, 25, 50, 100};  // seconds
  void observe(double seconds);
  std::string render(const std::string& name, const std::string& help) const;

 private:
  mutable std::mutex mu_;
  std::array<uint64_t, kBounds.size()> counts_{};
  uint64_t total_ = 0;
  double sum_ = 0;
};

struct Metrics {
  Histogram time_to_first_token;
  Histogram inter_token_latency;
  Histogram e2e_latency;
  mutable std::mutex mu;
  uint64_t requests_total = 0;
  uint64_t requests_failed = 0;  // rejected with an error status

  std::string render(const engine::SchedulerStats& st) const;
};

}  // namespace quanta::server
