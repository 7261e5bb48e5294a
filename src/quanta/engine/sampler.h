// Token sampling with SGLang's semantics.
//
// Order: repetition penalty (over prompt and output, as transformers and SGLang:
// positive logits divided, negative multiplied), frequency and presence
// penalties (over output tokens, OpenAI's definition), then temperature;
// temperature 0 (or top_k 1) is greedy argmax. Then softmax, top-k, top-p
// (keep the smallest prefix of the sorted distribution whose mass reaches
// top_p), min-p (drop tokens below min_p times the top probability),
// renormalise and draw. A given seed yields the same tokens on every run.
#pragma once

#include <cstdint>
#include <random>
#include <unordered_map>
#include <vector>

namespace quanta::engine {

struct SamplingParams {
  double temperature = 1.0;
  int64_t top_k = -1;  // <= 0: disabled
  double top_p = 1.0;
  double min_p = 0.0;
  double repetition_penalty = 1.0;
  double frequency_penalty = 0.0;
  double presence_penalty = 0.0;
  uint64_t seed = 0;

  bool greedy() const { return temperature == 0.0 || top_k == 1; }
  // Throws quanta::Error naming the parameter when a value is out of range.
  void validate() const;
};

class Sampler {
 public:
  Sampler(const SamplingParams& params, const std::vector<int32_t>& prompt);

  // Picks the next token from `logits` (modified in place) and records it.
  int32_t sample(float* logits, int64_t vocab);

 private:
  void apply_penalties(float* logits, int64_t vocab) const;

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::unordered_map<int32_t, int> seen_;          // prompt + output tokens (repetition penalty)
  std::unordered_map<int32_t, int> output_counts_;  // output tokens (frequency/presence)
  std::vector<std::pair<float, int32_t>> scratch_;
};

}  // namespace quanta::engine
