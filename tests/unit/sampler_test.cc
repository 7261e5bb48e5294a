#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "quanta/core/error.h"
#include "quanta/engine/sampler.h"

namespace quanta::engine {
namespace {

std::vector<int32_t> draw(const SamplingParams& p, const std::vector<float>& logits, int n,
                          const std::vector<int32_t>& prompt = {}) {
  Sampler s(p, prompt);
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    std::vector<float> l = logits;
    out.push_back(s.sample(l.data(), static_cast<int64_t>(l.size())));
  }
  return out;
}

TEST(Sampler, GreedyPicksArgmax) {
  SamplingParams p;
  p.temperature = 0.0;
  EXPECT_EQ(draw(p, {0.1f, 3.0f, 2.9f, -1.0f}, 1)[0], 1);
  p.temperature = 1.0;
  p.top_k = 1;
  EXPECT_EQ(draw(p, {0.1f, 3.0f, 2.9f, -1.0f}, 5), (std::vector<int32_t>{1, 1, 1, 1, 1}));
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDifferent) {
  SamplingParams p;
  p.seed = 42;
  std::vector<float> logits(50, 0.0f);
  auto a = draw(p, logits, 40), b = draw(p, logits, 40);
  EXPECT_EQ(a, b);
  p.seed = 43;
  EXPECT_NE(a, draw(p, logits, 40));
}

TEST(Sampler, FrequenciesFollowSoftmaxOfScaledLogits) {
  SamplingParams p;
  p.temperature = 0.5;
  p.seed = 7;
  const std::vector<float> logits = {0.0f, 0.5f, 1.0f};
  const int n = 20000;
  auto got = draw(p, logits, n);
  double z = 0;
  std::vector<double> expect(3);
  for (int i = 0; i < 3; ++i) z += expect[static_cast<size_t>(i)] = std::exp(logits[static_cast<size_t>(i)] / 0.5);
  for (int i = 0; i < 3; ++i) {
    double freq = std::count(got.begin(), got.end(), i) / static_cast<double>(n);
    double pexp = expect[static_cast<size_t>(i)] / z;
    EXPECT_NEAR(freq, pexp, 5 * std::sqrt(pexp * (1 - pexp) / n)) << "token " << i;  // 5 sigma
  }
}

TEST(Sampler, TopKTopPMinPRestrictTheCandidates) {
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  SamplingParams p;
  p.seed = 1;
  p.top_k = 2;
  for (int32_t t : draw(p, logits, 300)) EXPECT_LT(t, 2);
  p.top_k = -1;
  p.top_p = 0.6;  // mass before token 1 is 0.5, before token 2 is 0.8: tokens 0 and 1 stay
  auto got = draw(p, logits, 300);
  for (int32_t t : got) EXPECT_LT(t, 2);
  EXPECT_GT(std::count(got.begin(), got.end(), 1), 0);
  p.top_p = 0.4;
  for (int32_t t : draw(p, logits, 100)) EXPECT_EQ(t, 0);
  p.top_p = 1.0;
  p.min_p = 0.35;  // keeps p >= 0.175: tokens 0 and 1
  got = draw(p, logits, 300);
  for (int32_t t : got) EXPECT_LT(t, 2);
}

TEST(Sampler, PenaltiesChangeTheArgmax) {
  SamplingParams p;
  p.temperature = 0.0;
  // Repetition penalty divides positive logits of seen tokens (prompt included).
  p.repetition_penalty = 2.0;
  EXPECT_EQ(draw(p, {3.0f, 2.0f}, 1, {0})[0], 1);
  // Negative logits are multiplied: seen token 1 falls further behind.
  EXPECT_EQ(draw(p, {-1.5f, -1.0f}, 1, {1})[0], 0);
  // Frequency penalty grows with each repeat in the output; presence is flat.
  p.repetition_penalty = 1.0;
  p.frequency_penalty = 0.6;
  EXPECT_EQ(draw(p, {1.0f, 0.0f}, 3), (std::vector<int32_t>{0, 0, 1}));
  p.frequency_penalty = 0.0;
  p.presence_penalty = 0.3;  // 0.7 stays above 0.6 however often token 0 repeats
  EXPECT_EQ(draw(p, {1.0f, 0.6f}, 3), (std::vector<int32_t>{0, 0, 0}));
  p.presence_penalty = 1.5;
  EXPECT_EQ(draw(p, {1.0f, 0.6f}, 3), (std::vector<int32_t>{0, 1, 0}));
}

TEST(Sampler, RejectsOutOfRangeParameters) {
  SamplingParams p;
  p.top_p = 0.0;
  try {
    p.validate();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.context().field, "top_p");
  }
  p = {};
  p.temperature = -1;
  EXPECT_THROW(p.validate(), Error);
  p = {};
  p.repetition_penalty = 0;
  EXPECT_THROW(p.validate(), Error);
}


TEST(Sampler, LogitBiasForcesOrBansAToken) {
  SamplingParams p;
  p.temperature = 0.0;
  p.logit_bias = {{3, 100.0f}};
  EXPECT_EQ(draw(p, {0.1f, 3.0f, 2.9f, -1.0f}, 1)[0], 3);
  p.logit_bias = {{1, -100.0f}};
  EXPECT_EQ(draw(p, {0.1f, 3.0f, 2.9f, -1.0f}, 1)[0], 2);
  p.logit_bias = {{1, 101.0f}};
  EXPECT_THROW(p.validate(), Error);
}

TEST(Sampler, MinNewTokensBansStopTokensUntilReached) {
  SamplingParams p;
  p.temperature = 0.0;
  p.min_new_tokens = 2;
  Sampler s(p, {}, {1});
  const std::vector<float> logits = {0.1f, 3.0f, 2.9f, -1.0f};
  std::vector<int32_t> got;
  for (int i = 0; i < 3; ++i) {
    std::vector<float> l = logits;
    got.push_back(s.sample(l.data(), 4));
  }
  EXPECT_EQ(got, (std::vector<int32_t>{2, 2, 1}));
}

TEST(Sampler, ScoreTokenIsLogSoftmaxWithTopK) {
  const std::vector<float> logits = {1.0f, 3.0f, 2.0f, 3.0f};
  double z = 0;
  for (float l : logits) z += std::exp(static_cast<double>(l));
  ScoredToken s = score_token(logits.data(), 4, 2, 3);
  EXPECT_NEAR(s.logprob, 2.0 - std::log(z), 1e-6);
  ASSERT_EQ(s.top.size(), 3u);
  EXPECT_EQ(s.top[0].token, 1);  // ties by id
  EXPECT_EQ(s.top[1].token, 3);
  EXPECT_EQ(s.top[2].token, 2);
  EXPECT_NEAR(s.top[2].logprob, s.logprob, 1e-7);
  EXPECT_TRUE(score_token(logits.data(), 4, 0, 0).top.empty());
}

}  // namespace
}  // namespace quanta::engine
