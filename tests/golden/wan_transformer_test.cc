// The Wan DiT (WanTransformer3DModel) against diffusers 0.42.1 on tiny random fixtures made by
// tools/make_wan_fixtures.py, and its bad-input errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "quanta/core/error.h"
#include "quanta/core/thread_pool.h"
#include "quanta/format/safetensors.h"
#include "quanta/model/wan_transformer.h"
#include "test_util.h"

namespace quanta {
namespace {

using model::WanTransformer;

std::string fixture(const std::string& name) { return test::source_path("tests/golden/fixtures/" + name); }

struct Reference {
  Tensor latents, timestep, text, output;
};

Reference read_reference(const std::string& name) {
  format::SafetensorsFile f(fixture(name) + "/reference.safetensors");
  return {f.tensor("latents").to_f32(), f.tensor("timestep").to_f32(), f.tensor("encoder_hidden_states").to_f32(),
          f.tensor("output").to_f32()};
}

// Tolerance: both sides compute in f32 from the same weights (bf16 ones upcast exactly), so they
// differ only by rounding: summation order in the matmuls (K <= 64 here: ~sqrt(K) * 2^-24 ~ 5e-7
// relative each), torch's vectorised exp/sin/cos/tanh against libm (<= 2 ulp) and the f64 statistics
// of our LayerNorm. The LayerNorms re-normalise the residual stream, so these do not compound much
// over 2 blocks: measured worst 5.3e-7 * max|ref| (scalar, AVX2 and AVX-512 tiers). 4e-6 * max|ref|
// is ~8x that, and still far below what a real mistake moves (a rope pair, a modulation index, a
// missing norm or the unpatchify order change outputs by O(0.1) * max|ref|).
constexpr double kRelTol = 4e-6;

void expect_matches_diffusers(const std::string& name) {
  SCOPED_TRACE(name);
  const auto model = WanTransformer::load(fixture(name) + "/transformer");
  const Reference ref = read_reference(name);
  ThreadPool pool(2);
  const Tensor got = model->forward(ref.latents, ref.timestep, ref.text, pool);
  ASSERT_EQ(got.shape(), ref.output.shape());
  const float* g = got.data<float>();
  const float* r = ref.output.data<float>();
  double max_ref = 0.0, max_err = 0.0;
  for (int64_t i = 0; i < got.numel(); ++i) {
    max_ref = std::max(max_ref, std::abs(static_cast<double>(r[i])));
    max_err = std::max(max_err, std::abs(static_cast<double>(g[i]) - r[i]));
  }
  std::printf("%s: max |quanta - diffusers| = %.3g, max |diffusers| = %.3g (%.3g relative)\n", name.c_str(), max_err,
              max_ref, max_err / max_ref);
  ASSERT_GT(max_ref, 0.5);  // the fixture's output is not degenerate
  EXPECT_LE(max_err, kRelTol * max_ref);
}

TEST(WanTransformer, Wan21MatchesDiffusers) { expect_matches_diffusers("wan21-f32"); }
// bf16 weights, per-token timesteps [B, seq_len] (frame 0 at t = 0), B = 2.
TEST(WanTransformer, Wan22Ti2vPerTokenTimestepsMatchesDiffusers) { expect_matches_diffusers("wan22-ti2v-bf16"); }
// Temporal patch 2, no cross-attention norm, out_channels != in_channels, B = 2.
TEST(WanTransformer, Patch222MatchesDiffusers) { expect_matches_diffusers("wan-p222-f32"); }

// The per-token path agrees with the per-sample one when every token has the sample's timestep.
TEST(WanTransformer, PerTokenTimestepsEqualPerSampleWhenUniform) {
  const auto model = WanTransformer::load(fixture("wan21-f32") + "/transformer");
  const Reference ref = read_reference("wan21-f32");
  const int64_t seq = ref.latents.dim(2) * (ref.latents.dim(3) / 2) * (ref.latents.dim(4) / 2);
  Tensor per_token = Tensor::zeros(DType::kF32, {1, seq});
  std::fill(per_token.data_mut<float>(), per_token.data_mut<float>() + seq, ref.timestep.data<float>()[0]);
  ThreadPool pool(2);
  const Tensor a = model->forward(ref.latents, ref.timestep, ref.text, pool);
  const Tensor b = model->forward(ref.latents, per_token, ref.text, pool);
  for (int64_t i = 0; i < a.numel(); ++i) ASSERT_EQ(a.data<float>()[i], b.data<float>()[i]) << i;
}

// A copy of a fixture's transformer folder with its safetensors edited.
std::string edited_copy(const std::string& name, const std::function<void(test::Safetensors&)>& edit) {
  const std::string dir = test::temp_dir() + "/transformer";
  std::filesystem::create_directories(dir);
  const std::string src = fixture(name) + "/transformer";
  std::filesystem::copy_file(src + "/config.json", dir + "/config.json");
  test::Safetensors st = test::read_st(src + "/diffusion_pytorch_model.safetensors");
  edit(st);
  test::write_st(dir + "/diffusion_pytorch_model.safetensors", st);
  return dir;
}

TEST(WanTransformer, MissingTensorIsNamed) {
  const std::string dir = edited_copy("wan21-f32", [](test::Safetensors& st) {
    // Renamed, so the data section stays fully covered.
    st.header["blocks.1.attn2.to_k.renamed"] = st.header["blocks.1.attn2.to_k.weight"];
    st.header.erase("blocks.1.attn2.to_k.weight");
  });
  test::expect_error([&] { WanTransformer::load(dir); }, {"blocks.1.attn2.to_k.weight"});
}

TEST(WanTransformer, WrongShapedTensorIsNamed) {
  // The same bytes read as [16, 64] instead of [32, 32].
  const std::string dir = edited_copy("wan21-f32", [](test::Safetensors& st) {
    st.header["blocks.0.attn1.to_v.weight"]["shape"] = {16, 64};
  });
  test::expect_error([&] { WanTransformer::load(dir); }, {"blocks.0.attn1.to_v.weight", "[16, 64]", "[32, 32]"});
  const std::string dir2 = edited_copy("wan21-f32", [](test::Safetensors& st) {
    st.header["blocks.1.scale_shift_table"]["shape"] = {6, 32};
  });
  test::expect_error([&] { WanTransformer::load(dir2); }, {"blocks.1.scale_shift_table", "[6, 32]", "[1, 6, 32]"});
}

// A sharded Diffusers folder: diffusion_pytorch_model.safetensors.index.json names the shards.
TEST(WanTransformer, LoadsThroughTheDiffusersShardIndex) {
  const std::string src = fixture("wan21-f32") + "/transformer";
  const std::string dir = test::temp_dir() + "/transformer";
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(src + "/config.json", dir + "/config.json");
  const std::string shard = "diffusion_pytorch_model-00001-of-00001.safetensors";
  std::filesystem::copy_file(src + "/diffusion_pytorch_model.safetensors", dir + "/" + shard);
  nlohmann::json index = {{"metadata", nlohmann::json::object()}, {"weight_map", nlohmann::json::object()}};
  const test::Safetensors st = test::read_st(dir + "/" + shard);
  for (const auto& [name, info] : st.header.items())
    if (name != "__metadata__") index["weight_map"][name] = shard;
  test::write_file(dir + "/diffusion_pytorch_model.safetensors.index.json", index.dump());
  const Reference ref = read_reference("wan21-f32");
  ThreadPool pool(1);
  const Tensor a = WanTransformer::load(src)->forward(ref.latents, ref.timestep, ref.text, pool);
  const Tensor b = WanTransformer::load(dir)->forward(ref.latents, ref.timestep, ref.text, pool);
  for (int64_t i = 0; i < a.numel(); ++i) ASSERT_EQ(a.data<float>()[i], b.data<float>()[i]) << i;
  // The index is what is read: a shard it names that is absent is an error naming it.
  index["weight_map"]["proj_out.bias"] = "diffusion_pytorch_model-00002-of-00002.safetensors";
  test::write_file(dir + "/diffusion_pytorch_model.safetensors.index.json", index.dump());
  test::expect_error([&] { WanTransformer::load(dir); }, {"diffusion_pytorch_model-00002-of-00002.safetensors"});
}

TEST(WanTransformer, BadInputShapesAreNamed) {
  const auto model = WanTransformer::load(fixture("wan21-f32") + "/transformer");
  const Reference ref = read_reference("wan21-f32");
  ThreadPool pool(1);
  // Width 5 is not a multiple of the patch's 2.
  const Tensor odd = Tensor::zeros(DType::kF32, {1, 4, 3, 4, 5});
  test::expect_error([&] { model->forward(odd, ref.timestep, ref.text, pool); }, {"latents", "patch size", "[1, 2, 2]"});
  const Tensor channels = Tensor::zeros(DType::kF32, {1, 5, 3, 4, 6});
  test::expect_error([&] { model->forward(channels, ref.timestep, ref.text, pool); }, {"latents", "in_channels=4"});
  const Tensor ts = Tensor::zeros(DType::kF32, {1, 7});  // seq_len is 18
  test::expect_error([&] { model->forward(ref.latents, ts, ref.text, pool); }, {"timestep", "[1, 18]"});
  const Tensor text = Tensor::zeros(DType::kF32, {1, 7, 23});
  test::expect_error([&] { model->forward(ref.latents, ref.timestep, text, pool); }, {"encoder_hidden_states", "text_dim=24"});
}

TEST(WanTransformer, BadConfigIsNamed) {
  test::expect_error([] { model::parse_wan_config(R"({"patch_size": [1, 2], "num_attention_heads": 2})", "c.json"); },
                     {"patch_size"});
  test::expect_error(
      [] {
        model::parse_wan_config(R"({"patch_size": [1, 2, 2], "num_attention_heads": 2, "attention_head_dim": 16,
          "in_channels": 4, "text_dim": 8, "freq_dim": 8, "ffn_dim": 8, "num_layers": 1, "image_dim": 1280})",
                                "c.json");
      },
      {"image_dim", "not supported"});
  // Sizes past any real model are refused before they are multiplied together.
  test::expect_error(
      [] {
        model::parse_wan_config(R"({"patch_size": [1, 2, 2], "num_attention_heads": 4611686018427387904,
          "attention_head_dim": 16, "in_channels": 4, "text_dim": 8, "freq_dim": 8, "ffn_dim": 8, "num_layers": 1})",
                                "c.json");
      },
      {"num_attention_heads", "2^20"});
  test::expect_error([] { model::parse_wan_config(R"({"patch_size": [1, 100000, 2]})", "c.json"); }, {"patch_size"});
}

}  // namespace
}  // namespace quanta
