// Mixture-of-experts blocks: the router against torch.topk (ties included), the fused block
// (tokens grouped by expert, grouped matmuls, weighted sum back) against a plain per-token,
// per-expert loop over the dequantized weights, and the load errors a broken MoE checkpoint
// gets. Fixtures: tools/make_moe_fixtures.py. CTest also runs the MoeBlockFused tests with
// QUANTA_ISA=scalar and =avx2 (tests/CMakeLists.txt), so every tier the host has is covered.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "quanta/core/error.h"
#include "quanta/core/thread_pool.h"
#include "quanta/engine/loader.h"
#include "quanta/format/safetensors.h"
#include "quanta/kernels/kernels.h"
#include "quanta/model/decoder.h"
#include "quanta/model/moe.h"
#include "test_util.h"

namespace quanta {
namespace {

namespace fs = std::filesystem;

std::string fixture(const std::string& name) { return test::source_path("tests/golden/fixtures/" + name); }

// torch.topk over softmax(logits) as transformers' routers call it: indices must agree exactly
// (equal scores included), values to float rounding.
TEST(MoeRoute, TopKMatchesTorchIncludingTies) {
  format::SafetensorsFile file(fixture("moe-topk.safetensors"));
  for (auto [n, k] : std::vector<std::pair<int64_t, int64_t>>{{8, 2}, {60, 4}, {128, 8}, {256, 4}, {512, 8}}) {
    const std::string s = std::to_string(n) + "_" + std::to_string(k);
    SCOPED_TRACE(s);
    Tensor logits = file.tensor("logits_" + s), indices = file.tensor("indices_" + s), values = file.tensor("values_" + s);
    const int64_t rows = logits.shape()[0];
    format::MoeConfig c;
    c.n_experts = n;
    c.n_experts_used = k;
    model::Routing r = model::route(c, logits.data<float>(), rows);
    for (int64_t i = 0; i < rows * k; ++i) {
      EXPECT_EQ(r.expert[static_cast<size_t>(i)], indices.data<int64_t>()[i]) << "row " << i / k << " choice " << i % k;
      EXPECT_NEAR(r.weight[static_cast<size_t>(i)], values.data<float>()[i], 1e-6f);
    }
  }
}

TEST(MoeRoute, RenormalisesScalesAndScoresBySigmoid) {
  const std::vector<float> logits = {0.5f, -1.0f, 2.0f, 0.0f};
  format::MoeConfig c;
  c.n_experts = 4;
  c.n_experts_used = 2;
  c.norm_topk = true;
  c.routed_scaling = 2.5;
  model::Routing r = model::route(c, logits.data(), 1);
  ASSERT_EQ(r.expert, (std::vector<int32_t>{2, 0}));
  const double e2 = std::exp(2.0), e0 = std::exp(0.5);
  EXPECT_NEAR(r.weight[0], 2.5 * e2 / (e2 + e0), 1e-6);
  EXPECT_NEAR(r.weight[1], 2.5 * e0 / (e2 + e0), 1e-6);
  c.scoring = format::RouterScoring::kSigmoid;
  c.norm_topk = false;
  c.routed_scaling = 1.0;
  r = model::route(c, logits.data(), 1);
  EXPECT_NEAR(r.weight[0], 1.0 / (1.0 + std::exp(-2.0)), 1e-6);
  EXPECT_NEAR(r.weight[1], 1.0 / (1.0 + std::exp(-0.5)), 1e-6);
}

// A source that serves another's tensors, with some replaced.
class OverlaySource : public format::TensorSource {
 public:
  explicit OverlaySource(const format::TensorSource& base) : base_(base) {}
  std::map<std::string, Tensor> replaced;
  bool has(const std::string& n) const override { return replaced.count(n) || base_.has(n); }
  Tensor get(const std::string& n) const override { return replaced.count(n) ? replaced.at(n) : base_.get(n); }
  std::string file_of(const std::string& n) const override { return base_.file_of(n); }
  std::vector<std::string> names() const override { return base_.names(); }
  std::string location() const override { return base_.location(); }

 private:
  const format::TensorSource& base_;
};

// Dequantized f32 weight [rows, cols] of a tensor.
std::vector<double> weights(const format::TensorSource& src, const std::string& name) {
  Tensor t = src.get(name).to_f32();
  return std::vector<double>(t.data<float>(), t.data<float>() + t.numel());
}

// y = W x for W [rows, n] (row-major), in double.
std::vector<double> matvec(const std::vector<double>& w, const double* x, int64_t n) {
  std::vector<double> y(w.size() / static_cast<size_t>(n));
  for (size_t o = 0; o < y.size(); ++o)
    for (int64_t i = 0; i < n; ++i) y[o] += w[o * static_cast<size_t>(n) + static_cast<size_t>(i)] * x[i];
  return y;
}

double silu(double v) { return v / (1.0 + std::exp(-v)); }

// The block's output for one token, token by token and expert by expert, on the source's
// dequantized weights in double: router, softmax, torch-ordered top-k (model::route on the
// logits this loop computed), then each chosen expert's SwiGLU MLP, weighted and summed.
std::vector<double> reference_token(const format::ModelConfig& c, const format::TensorSource& src, const std::string& base,
                                    const std::string& g, const std::string& u, const std::string& d, const float* x) {
  const int64_t hidden = c.hidden_size;
  std::vector<double> xd(x, x + hidden);
  const std::vector<double> logits = matvec(weights(src, base + "gate.weight"), xd.data(), hidden);
  std::vector<float> lf(logits.begin(), logits.end());
  const model::Routing r = model::route(c.moe, lf.data(), 1);
  std::vector<double> y(static_cast<size_t>(hidden));
  for (int64_t j = 0; j < c.moe.n_experts_used; ++j) {
    const std::string e = base + "experts." + std::to_string(r.expert[static_cast<size_t>(j)]) + ".";
    std::vector<double> gate = matvec(weights(src, e + g + ".weight"), xd.data(), hidden);
    const std::vector<double> up = matvec(weights(src, e + u + ".weight"), xd.data(), hidden);
    for (size_t i = 0; i < gate.size(); ++i) gate[i] = silu(gate[i]) * up[i];
    const std::vector<double> out = matvec(weights(src, e + d + ".weight"), gate.data(), static_cast<int64_t>(gate.size()));
    for (int64_t i = 0; i < hidden; ++i) y[static_cast<size_t>(i)] += r.weight[static_cast<size_t>(j)] * out[static_cast<size_t>(i)];
  }
  if (c.moe.shared_expert_ffn > 0) {
    const std::string s = base + "shared_expert.";
    std::vector<double> gate = matvec(weights(src, s + "gate_proj.weight"), xd.data(), hidden);
    const std::vector<double> up = matvec(weights(src, s + "up_proj.weight"), xd.data(), hidden);
    for (size_t i = 0; i < gate.size(); ++i) gate[i] = silu(gate[i]) * up[i];
    const std::vector<double> out = matvec(weights(src, s + "down_proj.weight"), gate.data(), static_cast<int64_t>(gate.size()));
    const double scale = 1.0 / (1.0 + std::exp(-matvec(weights(src, base + "shared_expert_gate.weight"), xd.data(), hidden)[0]));
    for (int64_t i = 0; i < hidden; ++i) y[static_cast<size_t>(i)] += scale * out[static_cast<size_t>(i)];
  }
  return y;
}

bool isa_runs_here() {
  const char* env = std::getenv("QUANTA_ISA");
  if (!env || !*env) return true;
  const std::string want(env);
  const int need = want == "scalar" ? 0 : want == "avx2" ? 1 : want == "avx512" ? 2 : 3;
  return need <= static_cast<int>(kernels::host_isa());
}

struct FusedCase {
  std::string path;  // under tests/golden/fixtures/
  // Largest |fused - loop| allowed, relative to the largest |loop| of the step. Float weights:
  // the same f32 weights, f32 against double accumulation over <= 256-long dots: 1e-5. Quantized
  // weights: the native kernels also round activations to 16 bits per block (a relative 2^-16 of
  // the block's largest value per input of each of the three matmuls): 2e-3.
  double tolerance;
};

class MoeBlockFused : public ::testing::TestWithParam<FusedCase> {};

// The fused block of layer 0 equals the per-token reference loop for 1, 3, 16 and 300 tokens
// (random inputs, so some experts get no token and others many), on the ISA QUANTA_ISA selects.
TEST_P(MoeBlockFused, EqualsPerTokenPerExpertLoop) {
  if (!isa_runs_here()) GTEST_SKIP() << "this CPU cannot run QUANTA_ISA=" << std::getenv("QUANTA_ISA");
  engine::LoadedModel lm = engine::load_model(fixture(GetParam().path));
  const format::ModelConfig& c = lm.config;
  ASSERT_TRUE(c.layer_is_moe[0]);
  const bool mixtral_names = lm.source->has("model.layers.0.block_sparse_moe.gate.weight");
  const std::string base = mixtral_names ? "model.layers.0.block_sparse_moe." : "model.layers.0.mlp.";
  const std::string g = mixtral_names ? "w1" : "gate_proj", u = mixtral_names ? "w3" : "up_proj",
                    d = mixtral_names ? "w2" : "down_proj";
  auto block = model::MoeBlock::load(c, *lm.source, lm.source->names(), *lm.method, "model.layers.0.");
  ThreadPool pool(2);
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (int64_t n : {1, 3, 16, 300}) {
    SCOPED_TRACE("tokens " + std::to_string(n));
    std::vector<float> x(static_cast<size_t>(n * c.hidden_size)), y(x.size());
    for (float& v : x) v = dist(rng);
    block->forward(x.data(), n, y.data(), pool);
    // Checked on a sample of tokens (the loop is slow): every 37th and the last.
    std::vector<int64_t> sample;
    for (int64_t t = 0; t < n; t += n < 37 ? 1 : 37) sample.push_back(t);
    if (sample.back() != n - 1) sample.push_back(n - 1);
    for (int64_t t : sample) {
      const std::vector<double> want = reference_token(c, *lm.source, base, g, u, d, x.data() + t * c.hidden_size);
      double scale = 0, err = 0;
      for (int64_t i = 0; i < c.hidden_size; ++i) {
        scale = std::max(scale, std::fabs(want[static_cast<size_t>(i)]));
        err = std::max(err, std::fabs(want[static_cast<size_t>(i)] - y[static_cast<size_t>(t * c.hidden_size + i)]));
      }
      EXPECT_LE(err, GetParam().tolerance * scale) << "token " << t;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, MoeBlockFused,
                         ::testing::Values(FusedCase{"qwen3moe-f32", 1e-5}, FusedCase{"qwen2moe-f32", 1e-5},
                                           FusedCase{"mixtral-f32", 1e-5}, FusedCase{"gguf/qwen3moe-q4_0.gguf", 2e-3},
                                           FusedCase{"gguf/qwen2moe-q8_0.gguf", 2e-3},
                                           FusedCase{"gguf/mixtral-q8_0.gguf", 2e-3},
                                           FusedCase{"gguf/qwen3moe-k-q4_k_m-down_q8_0.gguf", 2e-3}),
                         [](const auto& info) {
                           std::string s = fs::path(info.param.path).stem().string();
                           for (char& ch : s)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return s;
                         });

// A router that sends every token to experts 2 and 5 (with k = 2 of 8): one hot pair runs on
// the whole pool, the six idle experts are skipped, and equal router rows (a tie between
// experts 2 and 5 when both rows are equal) resolve as torch.topk resolves them.
TEST(MoeBlockFusedRouting, AllTokensToTwoExpertsAndTiedScores) {
  if (!isa_runs_here()) GTEST_SKIP() << "this CPU cannot run QUANTA_ISA=" << std::getenv("QUANTA_ISA");
  engine::LoadedModel lm = engine::load_model(fixture("qwen3moe-f32"));
  const format::ModelConfig& c = lm.config;
  ASSERT_EQ(c.moe.n_experts, 8);
  ASSERT_EQ(c.moe.n_experts_used, 2);
  ThreadPool pool(2);
  for (float second : {0.5f, 1.0f}) {
    SCOPED_TRACE(second == 1.0f ? "tied rows" : "distinct rows");
    OverlaySource src(*lm.source);
    Tensor router = Tensor::zeros(DType::kF32, {8, c.hidden_size});
    for (int64_t i = 0; i < c.hidden_size; ++i) {
      router.data_mut<float>()[2 * c.hidden_size + i] = 1.0f;
      router.data_mut<float>()[5 * c.hidden_size + i] = second;
    }
    src.replaced["model.layers.0.mlp.gate.weight"] = router;
    auto block = model::MoeBlock::load(c, src, src.names(), *lm.method, "model.layers.0.");
    for (int64_t n : {1, 3, 16, 300}) {
      std::vector<float> x(static_cast<size_t>(n * c.hidden_size)), y(x.size());
      std::mt19937 rng(static_cast<uint32_t>(n));
      std::uniform_real_distribution<float> pos(0.1f, 1.0f);
      for (float& v : x) v = pos(rng);  // positive inputs: experts 2 and 5 score highest
      block->forward(x.data(), n, y.data(), pool);
      for (int64_t t : {int64_t{0}, n - 1}) {
        const std::vector<double> want = reference_token(c, src, "model.layers.0.mlp.", "gate_proj", "up_proj",
                                                         "down_proj", x.data() + t * c.hidden_size);
        double scale = 0, err = 0;
        for (int64_t i = 0; i < c.hidden_size; ++i) {
          scale = std::max(scale, std::fabs(want[static_cast<size_t>(i)]));
          err = std::max(err, std::fabs(want[static_cast<size_t>(i)] - y[static_cast<size_t>(t * c.hidden_size + i)]));
        }
        EXPECT_LE(err, 1e-5 * scale) << n << " tokens, token " << t;
      }
    }
  }
}

// --- Load errors: each names the layer, the expert or the field.

// A copy of an HF fixture folder, with config.json edited by `edit_config`.
std::string copy_fixture(const std::string& name, const std::function<void(nlohmann::json&)>& edit_config) {
  const std::string dir = test::temp_dir() + "/" + name;
  fs::create_directories(dir);
  for (const auto& f : fs::directory_iterator(fixture(name))) fs::copy(f.path(), dir + "/" + f.path().filename().string());
  nlohmann::json cfg = nlohmann::json::parse(test::read_file(dir + "/config.json"));
  edit_config(cfg);
  test::write_file(dir + "/config.json", cfg.dump(2));
  return dir;
}


TEST(MoeLoadErrors, ExpertCountDisagreesWithTheTensors) {
  const std::string more = copy_fixture("qwen3moe-f32", [](nlohmann::json& c) { c["num_local_experts"] = 9; });
  test::expect_error([&] { engine::load_model(more); }, {"expert 8", "model.layers.0.mlp.experts", "missing", "9 experts"});
  const std::string fewer = copy_fixture("qwen3moe-f32", [](nlohmann::json& c) { c["num_local_experts"] = 7; });
  test::expect_error([&] { engine::load_model(fewer); }, {"expert 7", "model.layers.0.mlp.experts", "only 7 experts"});
}

TEST(MoeLoadErrors, MissingExpertTensor) {
  const std::string dir = copy_fixture("qwen3moe-f32", [](nlohmann::json&) {});
  test::edit_st(dir, [](test::Safetensors& st) { st.header.erase("model.layers.1.mlp.experts.3.up_proj.weight"); });
  test::expect_error([&] { engine::load_model(dir); }, {"model.layers.1.mlp.experts.3.up_proj"});
}

TEST(MoeLoadErrors, GateAndUpOfDifferentSchemes) {
  // Expert 3's up (w3) stored as bf16 while its gate (w1) is f32: w13 is one fused weight.
  const std::string dir = copy_fixture("mixtral-f32", [](nlohmann::json&) {});
  test::edit_st(dir, [](test::Safetensors& st) {
    auto& t = st.header["model.layers.0.block_sparse_moe.experts.3.w3.weight"];
    const uint64_t begin = t["data_offsets"][0].get<uint64_t>(), end = t["data_offsets"][1].get<uint64_t>();
    t["dtype"] = "BF16";
    t["data_offsets"] = {begin, begin + (end - begin) / 2};
  });
  test::expect_error([&] { engine::load_model(dir); }, {"expert 3", "model.layers.0.block_sparse_moe.experts", "gate is F32", "up is BF16"});
}

TEST(MoeLoadErrors, RouterOfTheWrongShape) {
  const std::string dir = copy_fixture("qwen2moe-f32", [](nlohmann::json&) {});
  test::edit_st(dir, [](test::Safetensors& st) {
    auto& t = st.header["model.layers.1.mlp.gate.weight"];
    const int64_t rows = t["shape"][0].get<int64_t>(), cols = t["shape"][1].get<int64_t>();
    t["shape"] = {rows * 2, cols / 2};
  });
  test::expect_error([&] { engine::load_model(dir); }, {"model.layers.1.mlp.gate"});
}

TEST(MoeLoadErrors, TopKAboveTheExpertCount) {
  const std::string dir = copy_fixture("mixtral-f32", [](nlohmann::json& c) { c["num_experts_per_tok"] = 5; });
  test::expect_error([&] { engine::load_model(dir); }, {"num_experts_per_tok", "config.json"});
}

// --- gpt-oss (tests/golden/fixtures/gptoss-f32, tools/make_gptoss_fixtures.py).

// Its router takes the top k of the logits, then a softmax over those k (GptOssTopKRouter).
TEST(MoeRoute, GptOssSoftmaxOverTheTopKLogits) {
  const std::vector<float> logits = {0.5f, -1.0f, 2.0f, 0.0f, 1.0f, -3.0f};
  format::MoeConfig c;
  c.n_experts = 6;
  c.n_experts_used = 3;
  c.softmax_topk = true;
  model::Routing r = model::route(c, logits.data(), 1);
  ASSERT_EQ(r.expert, (std::vector<int32_t>{2, 4, 0}));
  const double s = std::exp(2.0) + std::exp(1.0) + std::exp(0.5);
  EXPECT_NEAR(r.weight[0], std::exp(2.0) / s, 1e-6);
  EXPECT_NEAR(r.weight[1], std::exp(1.0) / s, 1e-6);
  EXPECT_NEAR(r.weight[2], std::exp(0.5) / s, 1e-6);
}

// gpt-oss's block for one token, straight from transformers' GptOssTopKRouter / GptOssExperts
// on the folder's fused f32 tensors, in double: logits + bias, top k, softmax over the k,
// gate_up = x W + b (gate even columns, up odd), clamped SwiGLU, down + bias.
std::vector<double> gptoss_reference_token(const format::ModelConfig& c, const format::TensorSource& src, const float* x) {
  const int64_t hidden = c.hidden_size, ffn = c.moe.expert_ffn;
  const std::string b = "model.layers.0.mlp.";
  std::vector<double> xd(x, x + hidden);
  std::vector<double> logits = matvec(weights(src, b + "router.weight"), xd.data(), hidden);
  const std::vector<double> rb = weights(src, b + "router.bias");
  for (size_t e = 0; e < logits.size(); ++e) logits[e] += rb[e];
  std::vector<float> lf(logits.begin(), logits.end());
  const model::Routing r = model::route(c.moe, lf.data(), 1);
  const std::vector<double> gu = weights(src, b + "experts.gate_up_proj"), gub = weights(src, b + "experts.gate_up_proj_bias");
  const std::vector<double> dn = weights(src, b + "experts.down_proj"), dnb = weights(src, b + "experts.down_proj_bias");
  const double alpha = c.moe.swiglu_alpha, limit = c.moe.swiglu_limit;
  std::vector<double> y(static_cast<size_t>(hidden));
  for (int64_t j = 0; j < c.moe.n_experts_used; ++j) {
    const int64_t e = r.expert[static_cast<size_t>(j)];
    std::vector<double> h(static_cast<size_t>(ffn));
    for (int64_t i = 0; i < ffn; ++i) {
      double g = gub[static_cast<size_t>(e * 2 * ffn + 2 * i)], u = gub[static_cast<size_t>(e * 2 * ffn + 2 * i + 1)];
      for (int64_t k = 0; k < hidden; ++k) {
        g += xd[static_cast<size_t>(k)] * gu[static_cast<size_t>((e * hidden + k) * 2 * ffn + 2 * i)];
        u += xd[static_cast<size_t>(k)] * gu[static_cast<size_t>((e * hidden + k) * 2 * ffn + 2 * i + 1)];
      }
      g = std::min(g, limit);
      u = std::clamp(u, -limit, limit);
      h[static_cast<size_t>(i)] = (u + 1) * g / (1 + std::exp(-alpha * g));
    }
    for (int64_t o = 0; o < hidden; ++o) {
      double acc = dnb[static_cast<size_t>(e * hidden + o)];
      for (int64_t i = 0; i < ffn; ++i) acc += h[static_cast<size_t>(i)] * dn[static_cast<size_t>((e * ffn + i) * hidden + o)];
      y[static_cast<size_t>(o)] += r.weight[static_cast<size_t>(j)] * acc;
    }
  }
  return y;
}

// The fused block equals that loop for 1, 3, 16 and 300 tokens (f32 weights: 1e-5, as above).
TEST(MoeBlockFusedGptOss, EqualsPerTokenPerExpertLoop) {
  if (!isa_runs_here()) GTEST_SKIP() << "this CPU cannot run QUANTA_ISA=" << std::getenv("QUANTA_ISA");
  engine::LoadedModel lm = engine::load_model(fixture("gptoss-f32"));
  const format::ModelConfig& c = lm.config;
  auto block = model::MoeBlock::load(c, *lm.source, lm.source->names(), *lm.method, "model.layers.0.");
  ThreadPool pool(2);
  std::mt19937 rng(11);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (int64_t n : {1, 3, 16, 300}) {
    SCOPED_TRACE("tokens " + std::to_string(n));
    std::vector<float> x(static_cast<size_t>(n * c.hidden_size)), y(x.size());
    for (float& v : x) v = dist(rng);
    block->forward(x.data(), n, y.data(), pool);
    for (int64_t t = 0; t < n; t += n < 37 ? 1 : 37) {
      const std::vector<double> want = gptoss_reference_token(c, *lm.source, x.data() + t * c.hidden_size);
      double scale = 0, err = 0;
      for (int64_t i = 0; i < c.hidden_size; ++i) {
        scale = std::max(scale, std::fabs(want[static_cast<size_t>(i)]));
        err = std::max(err, std::fabs(want[static_cast<size_t>(i)] - y[static_cast<size_t>(t * c.hidden_size + i)]));
      }
      EXPECT_LE(err, 1e-5 * scale) << "token " << t;
    }
  }
}

TEST(GptOssLoadErrors, SinksOfTheWrongShape) {
  const std::string dir = copy_fixture("gptoss-f32", [](nlohmann::json&) {});
  test::edit_st(dir, [](test::Safetensors& st) {
    auto& t = st.header["model.layers.1.self_attn.sinks"];
    const uint64_t begin = t["data_offsets"][0].get<uint64_t>();
    t["shape"] = {2};
    t["data_offsets"] = {begin, begin + 8};
  });
  test::expect_error([&] { engine::load_model(dir); }, {"model.layers.1.self_attn.sinks", "[2]", "[4]"});
}

TEST(GptOssLoadErrors, MissingExpertBias) {
  const std::string dir = copy_fixture("gptoss-f32", [](nlohmann::json&) {});
  test::edit_st(dir, [](test::Safetensors& st) { st.header.erase("model.layers.1.mlp.experts.down_proj_bias"); });
  test::expect_error([&] { engine::load_model(dir); }, {"model.layers.1.mlp.experts.down_proj_bias", "missing"});
}

TEST(GptOssLoadErrors, MissingRouterBias) {
  const std::string dir = copy_fixture("gptoss-f32", [](nlohmann::json&) {});
  test::edit_st(dir, [](test::Safetensors& st) { st.header.erase("model.layers.0.mlp.router.bias"); });
  test::expect_error([&] { engine::load_model(dir); }, {"model.layers.0.mlp.router.bias", "missing"});
}

TEST(GptOssLoadErrors, FusedExpertsOfTheWrongShape) {
  const std::string dir = copy_fixture("gptoss-f32", [](nlohmann::json&) {});
  test::edit_st(dir, [](test::Safetensors& st) {
    auto& t = st.header["model.layers.0.mlp.experts.gate_up_proj"];
    t["shape"] = {4, 32, 128};  // same bytes, hidden and 2 * ffn swapped
  });
  test::expect_error([&] { engine::load_model(dir); }, {"model.layers.0.mlp.experts.gate_up_proj", "[4, 64, 64]"});
}

TEST(GptOssLoadErrors, MissingMxfp4Scales) {
  const std::string dir = copy_fixture("gptoss-mxfp4", [](nlohmann::json&) {});
  test::edit_st(dir, [](test::Safetensors& st) { st.header.erase("model.layers.1.mlp.experts.down_proj_scales"); });
  test::expect_error([&] { engine::load_model(dir); }, {"model.layers.1.mlp.experts.down_proj_scales", "missing"});
}

TEST(GptOssLoadErrors, Mxfp4BlocksOfTheWrongShape) {
  const std::string dir = copy_fixture("gptoss-mxfp4", [](nlohmann::json&) {});
  test::edit_st(dir, [](test::Safetensors& st) {
    st.header["model.layers.0.mlp.experts.gate_up_proj_blocks"]["shape"] = {4, 64, 1, 32};  // same bytes
  });
  test::expect_error([&] { engine::load_model(dir); }, {"model.layers.0.mlp.experts.gate_up_proj_blocks", "[4, 64, 2, 16]"});
}

// A copy of gguf/gptoss-q8_0.gguf with one tensor renamed (same length, so the file stays valid).
std::string gptoss_gguf_without(const std::string& name) {
  std::string bytes = test::read_file(fixture("gguf/gptoss-q8_0.gguf"));
  const size_t at = bytes.find(name);
  EXPECT_NE(at, std::string::npos) << name;
  if (at != std::string::npos) bytes[at + name.size() - 1] = 'X';
  const std::string path = test::temp_dir() + "/gptoss-without.gguf";
  test::write_file(path, bytes);
  return path;
}

TEST(GptOssLoadErrors, GgufMissingExpertBiasOrSinks) {
  test::expect_error([&] { engine::load_model(gptoss_gguf_without("blk.1.ffn_down_exps.bias")); },
                     {"model.layers.1.mlp.experts.0.down_proj.bias", "not found"});
  test::expect_error([&] { engine::load_model(gptoss_gguf_without("blk.0.attn_sinks.weight")); },
                     {"model.layers.0.self_attn.sinks", "not found"});
  test::expect_error([&] { engine::load_model(gptoss_gguf_without("blk.0.ffn_gate_inp.bias")); },
                     {"model.layers.0.mlp.gate.bias"});
}

// HF MXFP4 experts are not split over ranks (whole experts per rank are): refused by name.
TEST(GptOssLoadErrors, Mxfp4ExpertSplitIsRefusedByName) {
  engine::LoadedModel lm = engine::load_model(fixture("gptoss-mxfp4"));
  quant::MoeSpec tp;
  tp.shard = 0;
  tp.n_shards = 2;
  test::expect_error(
      [&] { model::MoeBlock::load(lm.config, *lm.source, lm.source->names(), *lm.method, "model.layers.0.", tp); },
      {"--tp-size", "model.layers.0.mlp.experts.0.gate_proj", "--enable-ep-moe"});
  tp.expert_parallel = true;  // whole experts: loads
  EXPECT_NE(model::MoeBlock::load(lm.config, *lm.source, lm.source->names(), *lm.method, "model.layers.0.", tp), nullptr);
}

// gpt-oss splits over ranks that divide its heads and experts (sinks go with their heads;
// tests/dist runs tp 2), and a count that does not is refused by name.
TEST(GptOssLoadErrors, TensorParallelismNeedsWholeParts) {
  const format::ModelConfig c = format::load_model_config(fixture("gptoss-f32"));
  test::expect_error([&] { model::DecoderModel::check_tp_split(c, 3); }, {"--tp-size", "not a multiple of 3"});
  model::DecoderModel::check_tp_split(c, 2);
}

TEST(GptOssLoadErrors, NegativeSwigluLimit) {
  const std::string dir = copy_fixture("gptoss-f32", [](nlohmann::json& c) { c["swiglu_limit"] = -7.0; });
  test::expect_error([&] { engine::load_model(dir); }, {"swiglu_limit", "config.json", "positive"});
}

}  // namespace
}  // namespace quanta
