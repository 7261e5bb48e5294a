// The default model, Gemma 3 270M in Q4_K_M (models/gemma-3-270m-q4_k_m.gguf,
// fetched by scripts/fetch-default-model.sh), against what transformers computes
// when it loads the same file (tools/make_default_model_reference.py ->
// tests/golden/fixtures/gemma3-270m-reference.safetensors):
//   - the tokenizer gives the same ids for the prompts and the text;
//   - the greedy continuation of each fixed prompt agrees for at least 16 tokens;
//   - a teacher-forced pass over tests/golden/data/persuasion-chapter-1.txt
//     (llama-perplexity method: chunks of 512 with fresh context, BOS first,
//     the second half of each chunk scored) picks the same top-1 token on at
//     least 99% of the scored positions, and its perplexity is within 1%.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "quanta/core/thread_pool.h"
#include "quanta/engine/loader.h"
#include "quanta/engine/perplexity.h"
#include "quanta/format/safetensors.h"
#include "quanta/tokenizer/tokenizer.h"
#include "test_util.h"

namespace quanta {
namespace {

constexpr int64_t kCtx = 512;

const char* const kPrompts[] = {
    "The capital of France is",
    "Once upon a time, in a small village by the sea, there lived",
    "The three primary colors are",
    "To make a good cup of tea, you should first",
};

std::string model_path() { return test::source_path("models/gemma-3-270m-q4_k_m.gguf"); }

format::SafetensorsFile reference() {
  return format::SafetensorsFile(test::source_path("tests/golden/fixtures/gemma3-270m-reference.safetensors"));
}

std::vector<int32_t> ids_of(const Tensor& t) {
  std::vector<int32_t> out(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i)
    out[static_cast<size_t>(i)] =
        t.dtype() == DType::kI64 ? static_cast<int32_t>(t.data<int64_t>()[i]) : t.data<int32_t>()[i];
  return out;
}

// Absent model: a failure that says how to get it, never a silent skip.
#define REQUIRE_DEFAULT_MODEL()                                                             \
  if (!std::filesystem::exists(model_path()))                                               \
  FAIL() << model_path() << " is missing: run scripts/fetch-default-model.sh (it downloads " \
         << "the default model, Gemma 3 270M Q4_K_M, into models/)"

int threads() { return static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }

// Loaded once for the whole suite: dequantized to f32 it is about 1 GiB.
class DefaultModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (std::filesystem::exists(model_path())) lm_ = new engine::LoadedModel(engine::load_model(model_path()));
  }
  static void TearDownTestSuite() {
    delete lm_;
    lm_ = nullptr;
  }
  static engine::LoadedModel* lm_;
};
engine::LoadedModel* DefaultModel::lm_ = nullptr;

TEST_F(DefaultModel, TokenizerMatchesTransformers) {
  REQUIRE_DEFAULT_MODEL();
  auto tok = tokenizer::Tokenizer::load(model_path());
  auto ref = reference();
  for (size_t i = 0; i < std::size(kPrompts); ++i)
    EXPECT_EQ(tok.encode(kPrompts[i]), ids_of(ref.tensor("prompt_" + std::to_string(i)))) << kPrompts[i];
  const std::string text = test::read_file(test::source_path("tests/golden/data/persuasion-chapter-1.txt"));
  EXPECT_EQ(tok.encode(text), ids_of(ref.tensor("text_ids")));
}

TEST_F(DefaultModel, GreedyContinuationsAgreeForAtLeast16Tokens) {
  REQUIRE_DEFAULT_MODEL();
  auto ref = reference();
  ThreadPool pool(threads());
  const int64_t vocab = lm_->config.vocab_size;
  for (size_t i = 0; i < std::size(kPrompts); ++i) {
    const std::vector<int32_t> prompt = ids_of(ref.tensor("prompt_" + std::to_string(i)));
    const std::vector<int32_t> expect = ids_of(ref.tensor("greedy_" + std::to_string(i)));
    model::KvCache cache = lm_->model->make_cache(static_cast<int64_t>(prompt.size() + expect.size()));
    std::vector<float> last(static_cast<size_t>(vocab));
    lm_->model->forward(prompt.data(), static_cast<int64_t>(prompt.size()), cache, last.data(), false, pool);
    std::vector<int32_t> out;
    for (size_t step = 0; step < expect.size(); ++step) {
      int32_t tok = static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
      out.push_back(tok);
      lm_->model->forward(&tok, 1, cache, last.data(), false, pool);
    }
    size_t agree = 0;
    while (agree < out.size() && out[agree] == expect[agree]) ++agree;
    RecordProperty("greedy_agreement_" + std::to_string(i), static_cast<int>(agree));
    EXPECT_GE(agree, 16u) << "prompt " << i << " (" << kPrompts[i] << "): the first " << agree
                          << " of 32 greedy tokens agree with transformers";
  }
}

TEST_F(DefaultModel, TeacherForcedTop1AndPerplexityMatchTransformers) {
  REQUIRE_DEFAULT_MODEL();
  auto ref = reference();
  ThreadPool pool(threads());
  const int64_t vocab = lm_->config.vocab_size;
  const std::vector<int32_t> ids = ids_of(ref.tensor("text_ids"));
  const std::vector<int32_t> ref_top1 = ids_of(ref.tensor("top1"));
  const Tensor ref_logprob = ref.tensor("logprob");
  const int64_t n_chunks = static_cast<int64_t>(ids.size()) / kCtx, scored = engine::ppl_scored_per_chunk(kCtx);
  ASSERT_EQ(static_cast<int64_t>(ref_top1.size()), n_chunks * scored);
  ASSERT_TRUE(lm_->config.bos_token_id.has_value());

  // The scoring loop is the one `quanta perplexity` runs (engine/perplexity.h).
  int64_t agree = 0, total = 0;
  double nll = 0, ref_nll = 0;
  engine::run_scored_chunks(
      *lm_->model, ids, kCtx, n_chunks, static_cast<int32_t>(*lm_->config.bos_token_id), pool,
      [&](int64_t c, int64_t j0, int64_t n, const float* logits, const int32_t* targets) {
        for (int64_t j = 0; j < n; ++j) {
          const engine::RowStats s = engine::row_stats(logits + j * vocab, vocab, targets[j]);
          const int64_t at = c * scored + j0 + j;
          nll += s.nll;
          ref_nll -= ref_logprob.data<float>()[at];
          agree += s.top == ref_top1[static_cast<size_t>(at)];
          ++total;
        }
      });
  const double agreement = static_cast<double>(agree) / static_cast<double>(total);
  const double ppl = std::exp(nll / static_cast<double>(total));
  const double ref_ppl = std::exp(ref_nll / static_cast<double>(total));
  RecordProperty("top1_agreement", std::to_string(agreement));
  RecordProperty("perplexity", std::to_string(ppl));
  RecordProperty("reference_perplexity", std::to_string(ref_ppl));
  std::printf("teacher-forced: %lld positions, top-1 agreement %.4f, perplexity %.4f (transformers %.4f)\n",
              static_cast<long long>(total), agreement, ppl, ref_ppl);
  EXPECT_GE(agreement, 0.99);
  EXPECT_LE(std::fabs(ppl / ref_ppl - 1.0), 0.01);
}

}  // namespace
}  // namespace quanta
