#include "quanta/engine/sampler.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <string>

#include "quanta/core/error.h"
#include "quanta/grammar/matcher.h"

namespace quanta::engine {

void SamplingParams::validate() const {
  auto bad = [](const char* field, const std::string& why) { throw Error(why, {.field = field}); };
  if (!(temperature >= 0.0) || !std::isfinite(temperature)) bad("temperature", "must be a finite number >= 0");
  if (!(top_p > 0.0 && top_p <= 1.0)) bad("top_p", "must be in (0, 1]");
  if (!(min_p >= 0.0 && min_p <= 1.0)) bad("min_p", "must be in [0, 1]");
  if (!(repetition_penalty > 0.0) || !std::isfinite(repetition_penalty)) bad("repetition_penalty", "must be a finite number > 0");
  if (!(frequency_penalty >= -2.0 && frequency_penalty <= 2.0)) bad("frequency_penalty", "must be in [-2, 2]");
  if (!(presence_penalty >= -2.0 && presence_penalty <= 2.0)) bad("presence_penalty", "must be in [-2, 2]");
  if (min_new_tokens < 0) bad("min_tokens", "must be >= 0");
  for (const auto& [tok, bias] : logit_bias) {
    if (tok < 0) bad("logit_bias", "token " + std::to_string(tok) + " is not a token id");
    if (!(bias >= -100.0f && bias <= 100.0f)) bad("logit_bias", "the bias of token " + std::to_string(tok) + " must be in [-100, 100]");
  }
}

Sampler::Sampler(const SamplingParams& params, const std::vector<int32_t>& prompt, std::vector<int32_t> stop_tokens)
    : params_(params), stop_tokens_(std::move(stop_tokens)), rng_(params.seed) {
  params_.validate();
  for (int32_t t : prompt) ++seen_[t];
}

void Sampler::apply_penalties(float* logits, int64_t vocab) const {
  if (params_.repetition_penalty != 1.0) {
    const float p = static_cast<float>(params_.repetition_penalty);
    for (const auto& [tok, n] : seen_) {
      if (tok < 0 || tok >= vocab) continue;
      float& l = logits[tok];
      l = l > 0 ? l / p : l * p;
    }
  }
  if (params_.frequency_penalty != 0.0 || params_.presence_penalty != 0.0) {
    for (const auto& [tok, n] : output_counts_) {
      if (tok < 0 || tok >= vocab) continue;
      logits[tok] -= static_cast<float>(params_.frequency_penalty * n + params_.presence_penalty);
    }
  }
  for (const auto& [tok, bias] : params_.logit_bias)
    if (tok < vocab) logits[tok] += bias;
  if (n_drawn_ < params_.min_new_tokens)
    for (int32_t tok : stop_tokens_)
      if (tok >= 0 && tok < vocab) logits[tok] = -std::numeric_limits<float>::infinity();
}

bool Sampler::truncates(int64_t vocab) const {
  return !params_.greedy() && ((params_.top_k > 0 && params_.top_k < vocab) || params_.top_p < 1.0 || params_.min_p > 0.0);
}

int32_t Sampler::sample(float* logits, int64_t vocab, grammar::Matcher* grammar) {
  apply_penalties(logits, vocab);
  int32_t chosen = -1;
  masked_ = false;
  grammar_seconds_ = 0.0;
  const auto since = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  };
  if (grammar && !truncates(vocab)) {
    chosen = draw(logits, vocab);
    const auto t0 = std::chrono::steady_clock::now();
    if (!grammar->accepts(chosen)) chosen = -1;
    grammar_seconds_ += since(t0);
  }
  if (grammar && chosen < 0) {
    masked_ = true;
    const auto t0 = std::chrono::steady_clock::now();
    auto mask = grammar->mask();
    const auto n_mask = static_cast<int64_t>(mask->size()) * 64;
    bool any = false;
    for (int64_t i = 0; i < vocab; ++i) {
      if (i < n_mask && (((*mask)[static_cast<size_t>(i >> 6)] >> (i & 63)) & 1) && logits[i] > -std::numeric_limits<float>::infinity()) any = true;
      else logits[i] = -std::numeric_limits<float>::infinity();
    }
    grammar_seconds_ += since(t0);
    if (!any) return -1;
  }
  if (chosen < 0) chosen = draw(logits, vocab);
  ++seen_[chosen];
  ++output_counts_[chosen];
  ++n_drawn_;
  return chosen;
}

int32_t Sampler::draw(const float* logits, int64_t vocab) {
  int32_t chosen;
  if (params_.greedy()) {
    chosen = static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
  } else {
    // Softmax of logits / temperature, sorted by probability when top-k/top-p/min-p need the
    // order (ties by id, so the order, and with it the draw, never depends on the sort
    // implementation); plain temperature sampling draws in id order, without the sort.
    const float inv_t = static_cast<float>(1.0 / params_.temperature);
    float max_l = *std::max_element(logits, logits + vocab);
    scratch_.resize(static_cast<size_t>(vocab));
    double sum = 0.0;
    for (int64_t i = 0; i < vocab; ++i) {
      float p = std::exp((logits[i] - max_l) * inv_t);
      scratch_[static_cast<size_t>(i)] = {p, static_cast<int32_t>(i)};
      sum += p;
    }
    auto by_prob = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
    int64_t keep = vocab;
    if (params_.top_k > 0 && params_.top_k < vocab) {
      keep = params_.top_k;
      std::partial_sort(scratch_.begin(), scratch_.begin() + keep, scratch_.end(), by_prob);
    } else if (params_.top_p < 1.0 || params_.min_p > 0.0) {
      std::sort(scratch_.begin(), scratch_.end(), by_prob);
    }
    const double top = scratch_[0].first;
    if (params_.top_p < 1.0) {
      // Keep token i while the mass before it is below top_p (the first always stays).
      double before = 0.0;
      int64_t n = 0;
      while (n < keep && before <= params_.top_p * sum) before += scratch_[static_cast<size_t>(n++)].first;
      keep = std::max<int64_t>(1, n);
    }
    if (params_.min_p > 0.0) {
      int64_t n = 0;
      while (n < keep && scratch_[static_cast<size_t>(n)].first >= params_.min_p * top) ++n;
      keep = std::max<int64_t>(1, n);
    }
    double kept = 0.0;
    for (int64_t i = 0; i < keep; ++i) kept += scratch_[static_cast<size_t>(i)].first;
    double r = std::uniform_real_distribution<double>(0.0, kept)(rng_);
    chosen = scratch_[static_cast<size_t>(keep - 1)].second;
    double acc = 0.0;
    for (int64_t i = 0; i < keep; ++i) {
      acc += scratch_[static_cast<size_t>(i)].first;
      if (r < acc) {
        chosen = scratch_[static_cast<size_t>(i)].second;
        break;
      }
    }
  }
  return chosen;
}

ScoredToken score_token(const float* logits, int64_t vocab, int32_t token, int top_k) {
  const float mx = *std::max_element(logits, logits + vocab);
  double sum = 0.0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - mx));
  const double log_sum = static_cast<double>(mx) + std::log(sum);
  auto lp = [&](int32_t t) { return static_cast<float>(static_cast<double>(logits[t]) - log_sum); };
  ScoredToken s;
  s.token = token;
  s.logprob = lp(token);
  const int64_t k = std::min<int64_t>(std::max(top_k, 0), vocab);
  if (k > 0) {
    // The k largest, found in one pass with a small sorted list (k <= 20 in the APIs).
    std::vector<int32_t> best;
    auto better = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
    for (int32_t i = 0; i < vocab; ++i) {
      if (static_cast<int64_t>(best.size()) == k && !better(i, best.back())) continue;
      best.insert(std::upper_bound(best.begin(), best.end(), i, better), i);
      if (static_cast<int64_t>(best.size()) > k) best.pop_back();
    }
    for (int32_t t : best) s.top.push_back({t, lp(t)});
  }
  return s;
}

}  // namespace quanta::engine
