#include "quanta/server/metrics.h"

#include <cstdio>

namespace quanta::server {

void Histogram::observe(double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < kBounds.size(); ++i)
    if (seconds <= kBounds[i]) ++counts_[i];
  ++total_;
  sum_ += seconds;
}

std::string Histogram::render(const std::string& name, const std::string& help) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out = "# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n";
  char buf[512];
  for (size_t i = 0; i < kBounds.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%s_bucket{le=\"%g\"} %llu\n", name.c_str(), kBounds[i],
                  static_cast<unsigned long long>(counts_[i]));
    out += buf;
  }
  std::snprintf(buf, sizeof buf, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name.c_str(),
                static_cast<unsigned long long>(total_), name.c_str(), sum_, name.c_str(),
                static_cast<unsigned long long>(total_));
  return out + buf;
}

std::string Metrics::render(const engine::SchedulerStats& st) const {
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help, double value) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "# HELP %s %s\n# TYPE %s %s\n%s %.10g\n", name, help, name, type, name, value);
    out += buf;
  };
  metric("quanta_num_running_reqs", "gauge", "Requests in the running batch.", st.running);
  metric("quanta_num_queue_reqs", "gauge", "Requests waiting to run.", st.waiting);
  metric("quanta_kv_blocks_total", "gauge", "Blocks in the KV pool.", static_cast<double>(st.kv_blocks_total));
  metric("quanta_kv_blocks_used", "gauge", "KV blocks in use (requests and prefix cache).", static_cast<double>(st.kv_blocks_used));
  metric("quanta_kv_usage", "gauge", "Share of the KV pool in use.",
         st.kv_blocks_total ? static_cast<double>(st.kv_blocks_used) / static_cast<double>(st.kv_blocks_total) : 0.0);
  metric("quanta_prefix_cache_blocks", "gauge", "KV blocks held by the prefix cache.", static_cast<double>(st.cached_blocks));
  metric("quanta_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.", static_cast<double>(st.prompt_tokens));
  metric("quanta_cached_prompt_tokens_total", "counter", "Prompt tokens served from the prefix cache.",
         static_cast<double>(st.cached_prompt_tokens));
  metric("quanta_prefix_cache_hit_rate", "gauge", "Cached share of all prompt tokens.",
         st.prompt_tokens ? static_cast<double>(st.cached_prompt_tokens) / static_cast<double>(st.prompt_tokens) : 0.0);
  metric("quanta_generation_tokens_total", "counter", "Generated tokens.", static_cast<double>(st.generation_tokens));
  metric("quanta_preemptions_total", "counter", "Requests preempted for lack of KV space.", static_cast<double>(st.preemptions));
  metric("quanta_grammar_tokens_total", "counter", "Tokens drawn under a grammar (structured outputs).",
         static_cast<double>(st.grammar_tokens));
  metric("quanta_grammar_masks_total", "counter", "Grammar-constrained draws that built the vocabulary mask.",
         static_cast<double>(st.grammar_masks));
  metric("quanta_grammar_seconds_total", "counter", "Time spent in grammars: checking draws, building and applying masks, advancing matchers.",
         st.grammar_seconds);
  {
    std::lock_guard<std::mutex> lock(mu);
    metric("quanta_requests_total", "counter", "HTTP generation requests received.", static_cast<double>(requests_total));
    metric("quanta_requests_failed_total", "counter", "Requests answered with an error.", static_cast<double>(requests_failed));
  }
  out += time_to_first_token.render("quanta_time_to_first_token_seconds", "Time to first token.");
  out += inter_token_latency.render("quanta_inter_token_latency_seconds", "Time between tokens of a request.");
  out += e2e_latency.render("quanta_e2e_request_latency_seconds", "Request latency.");
  return out;
}

}  // namespace quanta::server
