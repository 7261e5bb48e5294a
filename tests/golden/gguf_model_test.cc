// GGUF models against transformers: each tiny model in tests/golden/fixtures/gguf/
// (made by tools/make_gguf_model_fixtures.py: llama.cpp's converter + llama-quantize)
// must give the logits and greedy tokens that transformers computed when it
// loaded the same .gguf file (gguf_file=, dequantized to f32).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "quanta/core/thread_pool.h"
#include "quanta/engine/loader.h"
#include "quanta/format/safetensors.h"
#include "test_util.h"

namespace quanta {
namespace {

const std::vector<std::string> kFixtures = {
    // hidden 64 (gemma3: 32), converted to F32/BF16 and quantized to the legacy types;
    // on rows this narrow llama-quantize turns Q4_K_M into Q5_0/Q8_0 (+ Q4_K where a row is 256+ wide).
    "llama-gqa-f32", "llama-gqa-q8_0", "llama-gqa-q4_0", "llama-gqa-q4_k_m",  //
    "qwen2-bias-q8_0", "qwen2-bias-q4_0",                                     //
    "qwen3-qknorm-bf16", "qwen3-qknorm-q8_0", "qwen3-qknorm-q4_0",             //
    "gemma3-bf16", "gemma3-q8_0", "gemma3-q4_0", "gemma3-q4_k_m",              //
    // hidden 256: real K-quant blocks (Q2_K..Q6_K between them).
    "llama-k-q4_k_m", "qwen2-k-q5_k_m", "qwen3-k-q6_k", "qwen3-k-q2_k", "gemma3-k-q4_k_m",
    // Mixtures of experts (tools/make_moe_fixtures.py): 3-D expert tensors served per expert.
    // qwen3moe-k-q4_k_m has Q4_K down experts in layer 0 and Q6_K in layer 1; -down_q8_0 has
    // w13 in Q4_K and w2 in Q8_0. Mixtral is llama-arch with experts (permuted q/k).
    "qwen3moe-q8_0", "qwen3moe-q4_0", "qwen2moe-q8_0", "mixtral-q8_0", "mixtral-q4_0",  //
    "qwen3moe-k-q4_k_m", "qwen3moe-k-q4_k_m-down_q8_0",
    // gpt-oss (tools/make_gptoss_fixtures.py): arch gpt-oss, sinks, expert and router biases;
    // MXFP4_MOE has its experts in MXFP4 (ggml type 39), the rest Q8_0.
    "gptoss-q8_0", "gptoss-mxfp4_moe",
};

std::string fixture_dir() { return test::source_path("tests/golden/fixtures/gguf"); }

struct Reference {
  std::vector<int32_t> prompt;
  Tensor logits;  // [L, vocab] f32
  std::vector<int32_t> greedy;
};

std::vector<int32_t> to_ids(const Tensor& t) {
  std::vector<int32_t> ids;
  for (int64_t i = 0; i < t.numel(); ++i) ids.push_back(static_cast<int32_t>(t.data<int64_t>()[i]));
  return ids;
}

std::vector<Reference> read_references(const std::string& stem) {
  format::SafetensorsFile file(fixture_dir() + "/" + stem + ".reference.safetensors");
  std::vector<Reference> refs;
  for (int i = 0; file.has("prompt_" + std::to_string(i)); ++i) {
    const std::string s = std::to_string(i);
    refs.push_back(
        {to_ids(file.tensor("prompt_" + s)), file.tensor("logits_" + s), to_ids(file.tensor("greedy_" + s))});
  }
  return refs;
}

// Max |a - b| over all entries, relative to the range of the reference logits.
double relative_max_error(const float* got, const Tensor& ref) {
  const float* r = ref.data<float>();
  auto [lo, hi] = std::minmax_element(r, r + ref.numel());
  double err = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) err = std::max(err, std::fabs(static_cast<double>(got[i]) - r[i]));
  return err / (*hi - *lo);
}

// Every fixture file is in the list above (a new one cannot be left untested).
TEST(GgufModelGolden, EveryFixtureIsListed) {
  std::set<std::string> listed(std::begin(kFixtures), std::end(kFixtures)), found;
  for (const auto& e : std::filesystem::directory_iterator(fixture_dir())) {
    const std::string name = e.path().filename().string();
    if (e.path().extension() == ".gguf") found.insert(name.substr(0, name.size() - 5));
  }
  EXPECT_EQ(found, listed);
}

class GgufModelGolden : public ::testing::TestWithParam<std::string> {};

// Native kernels (the default) and --gguf-dequantize. Dequantized, quanta and
// transformers multiply the same f32 weights and only the summation order
// differs: 1e-4 of the logit range. Native, the activations of a matmul with
// fewer than 8 tokens are also rounded to 16 bits per block of 32 (a relative
// error of at most 2^-16 of the block's largest value per matmul input),
// compounded over the layers: 5e-4 (measured up to 1.1e-4).
TEST_P(GgufModelGolden, LogitsAndGreedyTokensMatchTransformers) {
  const std::string path = fixture_dir() + "/" + GetParam() + ".gguf";
  std::vector<Reference> refs = read_references(GetParam());
  ASSERT_EQ(refs.size(), 2u);
  ThreadPool pool(2);
  for (bool dequantize : {false, true}) {
    SCOPED_TRACE(dequantize ? "--gguf-dequantize" : "native kernels");
    engine::LoadedModel lm = engine::load_model(path, {}, {.gguf_dequantize = dequantize});
    const auto& cfg = lm.config;
    const double tolerance = dequantize ? 1e-4 : 5e-4;
    for (size_t pi = 0; pi < refs.size(); ++pi) {
      const Reference& ref = refs[pi];
      const int64_t L = static_cast<int64_t>(ref.prompt.size());
      SCOPED_TRACE("prompt " + std::to_string(pi));
      ASSERT_EQ(ref.logits.numel(), L * cfg.vocab_size);

      // Whole prompt in one pass.
      std::vector<float> logits(static_cast<size_t>(L * cfg.vocab_size));
      model::KvCache cache = lm.model->make_cache(L + 40);
      lm.model->forward(ref.prompt.data(), L, cache, logits.data(), true, pool);
      const double err = relative_max_error(logits.data(), ref.logits);
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.3g", err);
      RecordProperty(std::string(dequantize ? "dequantized" : "native") + "_relative_max_error_" + std::to_string(pi),
                     buf);
      EXPECT_LE(err, tolerance);

      // The same prompt in two chunks: the second attends to the cached first.
      const int64_t split = L / 2 + 1;
      model::KvCache c2 = lm.model->make_cache(L);
      std::vector<float> part(static_cast<size_t>(L * cfg.vocab_size));
      lm.model->forward(ref.prompt.data(), split, c2, part.data(), true, pool);
      lm.model->forward(ref.prompt.data() + split, L - split, c2, part.data() + split * cfg.vocab_size, true, pool);
      EXPECT_LE(relative_max_error(part.data(), ref.logits), tolerance);

      // Greedy decoding with the KV cache, one token per step.
      std::vector<int32_t> out;
      std::vector<float> last(logits.end() - cfg.vocab_size, logits.end());
      for (size_t step = 0; step < ref.greedy.size(); ++step) {
        int32_t tok = static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
        out.push_back(tok);
        lm.model->forward(&tok, 1, cache, last.data(), false, pool);
      }
      EXPECT_EQ(out, ref.greedy);
    }
  }
}

// The CLI takes the .gguf file as --model-path; on the scalar path it gives the same greedy tokens
// (--ids: these files carry a tokenizer, so the CLI would print text otherwise).
TEST_P(GgufModelGolden, CliGreedyOnScalarPathMatches) {
  const std::string path = fixture_dir() + "/" + GetParam() + ".gguf";
  const Reference ref = read_references(GetParam()).at(0);
  std::string ids;
  for (int32_t t : ref.prompt) ids += (ids.empty() ? "" : ",") + std::to_string(t);
  auto r = test::run_quanta({"generate", "--model-path", path, "--prompt-ids", ids, "--max-new-tokens",
                             std::to_string(ref.greedy.size()), "--temperature", "0", "--ignore-eos", "--ids",
                             "--threads", "2"},
                            "", {"QUANTA_ISA=scalar"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string expect;
  for (int32_t t : ref.greedy) expect += (expect.empty() ? "" : " ") + std::to_string(t);
  EXPECT_EQ(r.out, expect + "\n");
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GgufModelGolden, ::testing::ValuesIn(kFixtures), [](const auto& info) {
  std::string n = info.param;
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
});

}  // namespace
}  // namespace quanta
