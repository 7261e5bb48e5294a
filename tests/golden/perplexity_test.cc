// `quanta perplexity` on the default model (models/gemma-3-270m-q4_k_m.gguf, from
// scripts/fetch-default-model.sh) against transformers loading the same file and
// scoring the same text with llama-perplexity's method
// (tools/make_perplexity_reference.py -> tests/golden/fixtures/perplexity-reference.json).
//
// The run is kept short for CI: a context of 256 and the first 6 chunks of
// tests/golden/data/persuasion-chapter-1.txt (762 scored positions). The
// reference records the running PPL after every chunk, so the value after
// chunk k of a --chunks k run is compared; each must be within 1%.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace quanta {
namespace {

using nlohmann::json;

constexpr int kCtx = 256;
constexpr int kChunks = 6;

TEST(DefaultModelPerplexity, WithinOnePercentOfTransformers) {
  const std::string model = test::source_path("models/gemma-3-270m-q4_k_m.gguf");
  if (!std::filesystem::exists(model))
    FAIL() << model << " is missing: run scripts/fetch-default-model.sh (it downloads the default model, "
           << "Gemma 3 270M Q4_K_M, into models/)";
  const json ref = json::parse(test::read_file(test::source_path("tests/golden/fixtures/perplexity-reference.json")));
  const json& tf = ref.at("transformers").at("ctx").at(std::to_string(kCtx));
  const std::vector<double> ref_running = tf.at("chunk_ppl").get<std::vector<double>>();
  ASSERT_GE(ref_running.size(), static_cast<size_t>(kChunks));

  const int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  test::RunResult r = test::run_quanta({"perplexity", "-m", model, "-f",
                                        test::source_path(ref.at("text").get<std::string>()), "-c",
                                        std::to_string(kCtx), "--chunks", std::to_string(kChunks), "-t",
                                        std::to_string(threads), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json out = json::parse(r.out);
  EXPECT_EQ(out.at("n_tokens").get<int64_t>(), ref.at("text_tokens").get<int64_t>());
  EXPECT_EQ(out.at("n_chunks").get<int>(), kChunks);
  EXPECT_EQ(out.at("n_scored").get<int>(), kChunks * (kCtx - 1 - kCtx / 2));
  const std::vector<double> running = out.at("chunk_ppl").get<std::vector<double>>();
  ASSERT_EQ(running.size(), static_cast<size_t>(kChunks));
  for (int c = 0; c < kChunks; ++c)
    EXPECT_LE(std::fabs(running[c] / ref_running[c] - 1.0), 0.01)
        << "after chunk " << c + 1 << ": quanta " << running[c] << ", transformers " << ref_running[c];
  const double ppl = out.at("ppl").get<double>();
  EXPECT_DOUBLE_EQ(ppl, running.back());
  RecordProperty("perplexity", std::to_string(ppl));
  RecordProperty("transformers_perplexity", std::to_string(ref_running[kChunks - 1]));
  std::printf("n_ctx %d, %d chunks: quanta PPL %.4f +/- %.4f, transformers %.4f (%+.3f%%)\n", kCtx, kChunks, ppl,
              out.at("ppl_err").get<double>(), ref_running[kChunks - 1], 100 * (ppl / ref_running[kChunks - 1] - 1));
}

}  // namespace
}  // namespace quanta
