// engine/perplexity.h: the per-row arithmetic of perplexity and KL divergence,
// held to direct float64 computations of the formulas on small rows.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "quanta/engine/perplexity.h"

namespace quanta::engine {
namespace {

std::vector<double> log_softmax(const std::vector<float>& x) {
  double mx = x[0];
  for (float v : x) mx = std::max(mx, static_cast<double>(v));
  double sum = 0;
  for (float v : x) sum += std::exp(v - mx);
  std::vector<double> out;
  for (float v : x) out.push_back(v - mx - std::log(sum));
  return out;
}

TEST(Perplexity, RowStats) {
  const std::vector<float> x = {1.0f, 2.0f, 3.0f, 0.5f};
  const RowStats s = row_stats(x.data(), 4, 0);
  EXPECT_NEAR(s.nll, -log_softmax(x)[0], 1e-6);
  EXPECT_EQ(s.top, 2);
  // The first of equal maxima, as llama-perplexity's argmax.
  const std::vector<float> tie = {0.0f, 5.0f, 5.0f};
  EXPECT_EQ(row_stats(tie.data(), 3, 1).top, 1);
}

TEST(Perplexity, AccumulatorMatchesLlamaPerplexityFormula) {
  PplAccumulator a;
  for (double v : {1.0, 2.0, 3.0, 4.0}) a.add(v);
  EXPECT_NEAR(a.ppl(), std::exp(2.5), 1e-12);
  // err = PPL * sqrt((E[x^2] - E[x]^2) / (n - 1)) = e^2.5 * sqrt(1.25 / 3)
  EXPECT_NEAR(a.ppl_err(), std::exp(2.5) * std::sqrt(1.25 / 3), 1e-12);
}

TEST(Perplexity, EncodedRowsDecodeWithinHalfAStep) {
  std::mt19937 rng(7);
  std::normal_distribution<float> d(0.0f, 4.0f);
  const int64_t vocab = 1001;  // odd: the row is padded to even
  std::vector<float> x(vocab);
  for (float& v : x) v = d(rng);
  std::vector<uint16_t> row(static_cast<size_t>(kl_row_u16(vocab)), 0xffff);
  ASSERT_EQ(row.size(), 1002u + 4u);
  encode_log_probs(x.data(), vocab, row.data());
  float scale, min_log_prob;
  std::memcpy(&scale, row.data(), 4);
  std::memcpy(&min_log_prob, row.data() + 2, 4);
  const std::vector<double> lp = log_softmax(x);
  double top = lp[0];
  for (double v : lp) top = std::max(top, v);
  EXPECT_NEAR(scale, 16.0 / 65535, 1e-9);  // the range exceeds the 16-nat window
  EXPECT_EQ(row.back(), 0);                 // the pad
  for (int64_t i = 0; i < vocab; ++i) {
    const double decoded = scale * row[4 + i] + min_log_prob;
    if (lp[i] > top - 16) EXPECT_NEAR(decoded, lp[i], scale / 2 + 1e-5) << i;
    else EXPECT_EQ(row[4 + i], 0) << i;  // below the window: the floor
  }
}

TEST(Perplexity, KlPositionMatchesTheFormula) {
  // Base p and model q over 5 tokens, all within the 16-nat window.
  const std::vector<float> base = {2.0f, 1.0f, 0.0f, -1.0f, 0.5f};
  const std::vector<float> model = {1.5f, 1.2f, 0.3f, -2.0f, 0.5f};
  std::vector<uint16_t> row(static_cast<size_t>(kl_row_u16(5)));
  encode_log_probs(base.data(), 5, row.data());
  const std::vector<double> lp = log_softmax(base), lq = log_softmax(model);
  double kl = 0;
  for (int i = 0; i < 5; ++i) kl += std::exp(lp[i]) * (lp[i] - lq[i]);
  const int32_t target = 1;
  const KlPosition k = kl_position(model.data(), 5, row.data(), target);
  const double step = 3.0 / 65535;  // range of the base logits / 65535
  EXPECT_NEAR(k.kld, kl, step);
  EXPECT_NEAR(k.nll, -lq[target], 1e-6);
  EXPECT_NEAR(k.nll_base, -lp[target], step);
  EXPECT_NEAR(k.p_diff, std::exp(lq[target]) - std::exp(lp[target]), step);
  EXPECT_TRUE(k.same_top);  // both put token 0 on top
  const std::vector<float> other = {0.0f, 3.0f, 0.0f, 0.0f, 0.0f};
  EXPECT_FALSE(kl_position(other.data(), 5, row.data(), target).same_top);
  // A model against its own row: KL ~ 0 within the rounding.
  EXPECT_NEAR(kl_position(base.data(), 5, row.data(), target).kld, 0.0, step);
}

TEST(Perplexity, SummaryStatistics) {
  KlAccumulator a;
  for (int i = 0; i <= 100; ++i) a.add({i * 0.01, 1.0, 1.0, (i - 50) * 0.001, i % 4 != 0});
  const KlSummary s = summarize(a);
  EXPECT_EQ(s.count, 101);
  EXPECT_NEAR(s.kld.mean, 0.5, 1e-12);
  // Standard error of the mean of 0, 0.01, ..., 1: sqrt(var / (n - 1)), var the population variance.
  double var = 0;
  for (int i = 0; i <= 100; ++i) var += (i * 0.01 - 0.5) * (i * 0.01 - 0.5);
  var /= 101;
  EXPECT_NEAR(s.kld.err, std::sqrt(var / 100), 1e-9);
  EXPECT_NEAR(s.same_top.mean, 75.0 / 101, 1e-12);
  EXPECT_NEAR(s.p_diff.mean, 0.0, 1e-12);
  EXPECT_NEAR(s.ppl.mean, std::exp(1.0), 1e-12);
  EXPECT_NEAR(s.log_ppl_ratio.mean, 0.0, 1e-12);
  auto find = [](const std::vector<std::pair<std::string, double>>& v, const std::string& k) {
    for (const auto& [label, x] : v)
      if (label == k) return x;
    ADD_FAILURE() << "no " << k;
    return 0.0;
  };
  EXPECT_NEAR(find(s.kld_percentiles, "Maximum"), 1.0, 1e-6);
  EXPECT_NEAR(find(s.kld_percentiles, "Median"), 0.5, 1e-6);
  EXPECT_NEAR(find(s.kld_percentiles, "90.0%"), 0.9, 1e-6);
  EXPECT_NEAR(find(s.kld_percentiles, "99.9%"), 0.999, 1e-6);  // interpolated between 0.99 and 1.00
  EXPECT_NEAR(find(s.kld_percentiles, "Minimum"), 0.0, 1e-6);
  EXPECT_NEAR(find(s.p_diff_percentiles, "25.0%"), -0.025, 1e-6);
}

}  // namespace
}  // namespace quanta::engine
