// Dense llama-family models against transformers: for each fixture made by
// tools/make_hf_fixtures.py, the logits of fixed prompts and 32 greedy tokens
// must match what transformers computed for the same saved folder.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "quanta/core/thread_pool.h"
#include "quanta/engine/loader.h"
#include "quanta/format/safetensors.h"
#include "test_util.h"

namespace quanta {
namespace {

struct Reference {
  std::vector<int32_t> prompt;
  Tensor logits;         // [L, vocab] f32, transformers in f32
  Tensor logits_native;  // [L, vocab] f32, transformers in the checkpoint's dtype (bf16/f16 only)
  std::vector<int32_t> greedy;
};

std::vector<int32_t> to_ids(const Tensor& t) {
  std::vector<int32_t> ids;
  for (int64_t i = 0; i < t.numel(); ++i) ids.push_back(static_cast<int32_t>(t.data<int64_t>()[i]));
  return ids;
}

std::vector<Reference> read_references(const std::string& dir) {
  format::SafetensorsFile file(dir + "/reference.safetensors");
  std::vector<Reference> refs;
  for (int i = 0; file.has("prompt_" + std::to_string(i)); ++i) {
    Reference r;
    std::string s = std::to_string(i);
    r.prompt = to_ids(file.tensor("prompt_" + s));
    r.logits = file.tensor("logits_" + s);
    if (file.has("logits_native_" + s)) r.logits_native = file.tensor("logits_native_" + s);
    r.greedy = to_ids(file.tensor("greedy_" + s));
    refs.push_back(std::move(r));
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

class ModelGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelGolden, LogitsAndGreedyTokensMatchTransformers) {
  const std::string dir = test::source_path("tests/golden/fixtures/" + GetParam());
  engine::LoadedModel lm = engine::load_model(dir);
  const auto& cfg = lm.config;
  const bool low_precision = cfg.dtype != DType::kF32;
  ThreadPool pool(2);
  std::vector<Reference> refs = read_references(dir);
  ASSERT_FALSE(refs.empty());

  for (size_t pi = 0; pi < refs.size(); ++pi) {
    const Reference& ref = refs[pi];
    const int64_t L = static_cast<int64_t>(ref.prompt.size());
    SCOPED_TRACE("prompt " + std::to_string(pi));

    // Whole prompt in one pass: every position's logits.
    std::vector<float> logits(static_cast<size_t>(L * cfg.vocab_size));
    model::KvCache cache = lm.model->make_cache(L + 40);
    lm.model->forward(ref.prompt.data(), L, cache, logits.data(), true, pool);
    // The reference ran the same (upcast) weights in f32: only summation order differs.
    EXPECT_LE(relative_max_error(logits.data(), ref.logits), 1e-4);
    if (low_precision) {
      // transformers run natively in bf16/f16 also rounds every activation to
      // 8 (or 11) bits, which alone moves its logits by about 1e-2 of their range
      // on these models (measured 0.6e-2..1.2e-2 for bf16, 0.2e-2 for f16); quanta
      // keeps activations in f32, so it is held to the f32 run above at 1e-4 and
      // to the native run only within that rounding noise.
      ASSERT_FALSE(ref.logits_native.empty());
      double native = relative_max_error(logits.data(), ref.logits_native);
      RecordProperty("native_relative_max_error_" + std::to_string(pi), std::to_string(native));
      EXPECT_LE(native, 2e-2);
    }

    // The same prompt in two chunks: the second attends to the cached first.
    if (L > 3) {
      const int64_t split = L / 2 + 1;
      model::KvCache c2 = lm.model->make_cache(L);
      std::vector<float> part(static_cast<size_t>(L * cfg.vocab_size));
      lm.model->forward(ref.prompt.data(), split, c2, part.data(), true, pool);
      lm.model->forward(ref.prompt.data() + split, L - split, c2, part.data() + split * cfg.vocab_size, true, pool);
      EXPECT_LE(relative_max_error(part.data(), ref.logits), 1e-4);
    }

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

// All prompts of a fixture batched into one forward pass per step (prefill
// together, then decode in lockstep) give the same logits and greedy tokens as
// the reference: sequences sharing a step must not see each other.
TEST_P(ModelGolden, BatchedSequencesMatchTransformers) {
  const std::string dir = test::source_path("tests/golden/fixtures/" + GetParam());
  engine::LoadedModel lm = engine::load_model(dir);
  const int64_t vocab = lm.config.vocab_size;
  ThreadPool pool(2);
  std::vector<Reference> refs = read_references(dir);
  model::KvPool kv_pool = lm.model->make_pool(64, 8);  // small blocks: tables span many blocks
  std::vector<model::KvSequence> seqs(refs.size());
  std::vector<model::SequenceStep> steps;
  int64_t rows = 0;
  for (size_t i = 0; i < refs.size(); ++i) {
    steps.push_back({&seqs[i], refs[i].prompt.data(), static_cast<int64_t>(refs[i].prompt.size()), true});
    rows += static_cast<int64_t>(refs[i].prompt.size());
  }
  std::vector<float> logits(static_cast<size_t>(rows * vocab));
  lm.model->forward(steps, kv_pool, logits.data(), pool);
  std::vector<std::vector<int32_t>> out(refs.size());
  std::vector<int32_t> next(refs.size());
  int64_t row = 0;
  for (size_t i = 0; i < refs.size(); ++i) {
    const int64_t L = static_cast<int64_t>(refs[i].prompt.size());
    EXPECT_LE(relative_max_error(logits.data() + row * vocab, refs[i].logits), 1e-4) << "prompt " << i;
    row += L;
    const float* last = logits.data() + (row - 1) * vocab;
    next[i] = static_cast<int32_t>(std::max_element(last, last + vocab) - last);
  }
  for (size_t step = 0; step < refs[0].greedy.size(); ++step) {
    steps.clear();
    for (size_t i = 0; i < refs.size(); ++i) {
      out[i].push_back(next[i]);
      steps.push_back({&seqs[i], &next[i], 1, false});
    }
    lm.model->forward(steps, kv_pool, logits.data(), pool);
    for (size_t i = 0; i < refs.size(); ++i) {
      const float* l = logits.data() + static_cast<int64_t>(i) * vocab;
      next[i] = static_cast<int32_t>(std::max_element(l, l + vocab) - l);
    }
  }
  for (size_t i = 0; i < refs.size(); ++i) EXPECT_EQ(out[i], refs[i].greedy) << "prompt " << i;
  // Freeing the sequences returns every block to the pool.
  for (auto& s : seqs) model::kv_release(kv_pool, s);
  EXPECT_EQ(kv_pool.n_free(), kv_pool.n_blocks());
}

// The CLI on the scalar path: same greedy tokens, exit code 0.
TEST_P(ModelGolden, CliGreedyOnScalarPathMatches) {
  const std::string dir = test::source_path("tests/golden/fixtures/" + GetParam());
  std::vector<Reference> refs = read_references(dir);
  const Reference& ref = refs.at(0);
  std::string ids;
  for (int32_t t : ref.prompt) ids += (ids.empty() ? "" : ",") + std::to_string(t);
  auto r = test::run_quanta({"generate", "--model-path", dir, "--prompt-ids", ids, "--max-new-tokens",
                             std::to_string(ref.greedy.size()), "--temperature", "0", "--ignore-eos",
                             "--threads", "2"},
                            "", {"QUANTA_ISA=scalar"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string expect;
  for (int32_t t : ref.greedy) expect += (expect.empty() ? "" : " ") + std::to_string(t);
  EXPECT_EQ(r.out, expect + "\n");
  EXPECT_NE(r.err.find("scalar"), std::string::npos) << r.err;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ModelGolden,
                         ::testing::Values("llama-gqa-f32", "llama-mha6-f32", "llama-linear-tied-f32", "llama3-rope-bf16",
                                           "mistral-swa-f32", "qwen2-bias-yarn-f32", "qwen3-qknorm-bf16",
                                           "gemma3-f32", "gemma3-bf16", "llama-f16",
                                           // mixtures of experts (tools/make_moe_fixtures.py)
                                           "qwen3moe-f32", "qwen2moe-f32", "qwen2moe-dense1-f32", "mixtral-f32",
                                           // gpt-oss: sinks, clamped SwiGLU, fused experts (tools/make_gptoss_fixtures.py)
                                           "gptoss-f32", "gptoss-mxfp4"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

}  // namespace
}  // namespace quanta
