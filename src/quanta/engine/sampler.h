// Token sampling with SGLang's semantics.
//
// Order: repetition penalty (over prompt and output, as transformers and SGLang:
// positive logits divided, negative multiplied), frequency and presence
// penalties (over output tokens, OpenAI's definition), logit_bias (added, OpenAI's), the
// min_new_tokens ban (the stop tokens cannot be drawn before that many outputs), then temperature;
// temperature 0 (or top_k 1) is greedy argmax. Then softmax, top-k, top-p
// (keep the smallest prefix of the sorted distribution whose mass reaches
// top_p), min-p (drop tokens below min_p times the top probability),
// renormalise and draw. A given seed yields the same tokens on every run.
#pragma once

#include <cstdint>
#include <random>
#include <unordered_map>
#include <utility>
#include <vector>

namespace quanta::grammar {
class Matcher;
}

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
  std::vector<std::pair<int32_t, float>> logit_bias;  // (token, bias in [-100, 100]) added to its logit
  int64_t min_new_tokens = 0;  // the stop tokens given to the Sampler are banned until this many outputs

  bool greedy() const { return temperature == 0.0 || top_k == 1; }
  // Throws quanta::Error naming the parameter when a value is out of range.
  void validate() const;
};

class Sampler {
 public:
  // `stop_tokens`: those banned while fewer than params.min_new_tokens tokens were drawn (EOS, stop_token_ids).
  Sampler(const SamplingParams& params, const std::vector<int32_t>& prompt, std::vector<int32_t> stop_tokens = {});

  // Picks the next token from `logits` (modified in place) and records it. With `grammar`, only
  // tokens it allows are drawn (the mask applies before top-k/top-p/min-p); -1 when it allows none.
  // Greedy and plain temperature sampling draw unmasked first and keep an allowed token: a draw
  // from p that lands in the allowed set A is distributed as p restricted to A, so the mask is
  // built only when the draw falls outside it.
  int32_t sample(float* logits, int64_t vocab, grammar::Matcher* grammar = nullptr);
  // Whether the last sample() under a grammar built its mask.
  bool last_masked() const { return masked_; }
  // Time the last sample() spent in the grammar (checking the draw, building and applying the mask).
  double last_grammar_seconds() const { return grammar_seconds_; }

 private:
  void apply_penalties(float* logits, int64_t vocab) const;
  int32_t draw(const float* logits, int64_t vocab);
  bool truncates(int64_t vocab) const;

  SamplingParams params_;
  std::vector<int32_t> stop_tokens_;
  int64_t n_drawn_ = 0;
  bool masked_ = false;
  double grammar_seconds_ = 0.0;
  std::mt19937_64 rng_;
  std::unordered_map<int32_t, int> seen_;          // prompt + output tokens (repetition penalty)
  std::unordered_map<int32_t, int> output_counts_;  // output tokens (frequency/presence)
  std::vector<std::pair<float, int32_t>> scratch_;
};

struct TokenLogprob {
  int32_t token;
  float logprob;
};

// One position scored: its token's log-probability under softmax(logits) and the top_k most
// likely tokens (ties by id), computed in double from the raw logits.
struct ScoredToken {
  int32_t token = -1;
  float logprob = 0.0f;
  std::vector<TokenLogprob> top;
};
ScoredToken score_token(const float* logits, int64_t vocab, int32_t token, int top_k);

}  // namespace quanta::engine
