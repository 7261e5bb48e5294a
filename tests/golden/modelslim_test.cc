// msModelSlim checkpoints made by msModelSlim 26.1.0 itself (tools/make_modelslim_fixtures.py,
// CPU run): quanta's logits against transformers' Qwen3 forward pass with every Linear
// computing the spec's formula on the saved tensors (tests/golden/fixtures/README-modelslim.md).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "quanta/core/thread_pool.h"
#include "quanta/format/hf_config.h"
#include "quanta/format/safetensors.h"
#include "quanta/model/decoder.h"
#include "quanta/quant/modelslim.h"
#include "quanta/quant/resolver.h"
#include "test_util.h"

namespace quanta {
namespace {

struct Loaded {
  format::ModelConfig config;
  std::unique_ptr<format::TensorSource> source;
  std::unique_ptr<quant::QuantMethod> method;
  std::unique_ptr<model::DecoderModel> model;
};

Loaded load(const std::string& dir) {
  Loaded l;
  l.config = format::load_model_config(dir);
  l.source = format::open_safetensors(dir);
  l.method = quant::make_folder_method(dir, "", {}, l.config.layer_is_moe);
  l.model = model::DecoderModel::load(l.config, *l.source, *l.method);
  return l;
}

class ModelSlimGolden : public ::testing::TestWithParam<std::string> {};

// Max |quanta - reference| relative to the reference's logit range. The reference
// is f32 too; beyond summation order, a dynamic activation whose x/s lands within
// rounding noise of a .5 boundary may round the other way in one of the two
// (changing one int8 by 1: a relative change of about 1/127 of one product), which
// the bound below leaves room for; the measured errors are far below it.
TEST_P(ModelSlimGolden, LogitsMatchTheSpecReference) {
  const std::string dir = test::source_path("tests/golden/fixtures/" + GetParam());
  Loaded l = load(dir);
  EXPECT_EQ(l.method->name(), "modelslim");
  format::SafetensorsFile ref(dir + "/reference.safetensors");
  ThreadPool pool(2);
  for (int i = 0; ref.has("prompt_" + std::to_string(i)); ++i) {
    const std::string s = std::to_string(i);
    Tensor p = ref.tensor("prompt_" + s), want = ref.tensor("logits_" + s), flt = ref.tensor("float_logits_" + s);
    std::vector<int32_t> ids;
    for (int64_t k = 0; k < p.numel(); ++k) ids.push_back(static_cast<int32_t>(p.data<int64_t>()[k]));
    const int64_t L = static_cast<int64_t>(ids.size()), V = l.config.vocab_size;
    std::vector<float> got(static_cast<size_t>(L * V));
    model::KvCache cache = l.model->make_cache(L + 8);
    l.model->forward(ids.data(), L, cache, got.data(), true, pool);
    const float* w = want.data<float>();
    auto [lo, hi] = std::minmax_element(w, w + want.numel());
    double err = 0, err_float = 0;
    for (int64_t k = 0; k < want.numel(); ++k) {
      err = std::max(err, std::fabs(double{got[k]} - w[k]));
      err_float = std::max(err_float, std::fabs(double{got[k]} - flt.data<float>()[k]));
    }
    const double rel = err / (*hi - *lo), rel_float = err_float / (*hi - *lo);
    RecordProperty("relative_max_error_" + s, std::to_string(rel));
    std::printf("%s prompt %d: relative max error %.3g vs the spec reference, %.3g vs the float model\n",
                GetParam().c_str(), i, rel, rel_float);
    EXPECT_LE(rel, 2e-3);
    // The quantized model is not the float model: a reader that ignored the
    // quantization (or mis-read a layout) would not sit this close to the reference.
    EXPECT_GT(rel_float, 10 * rel);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ModelSlimGolden, ::testing::Values("modelslim-int", "modelslim-mx", "modelslim-smooth"));

// The resolver's answer per layer for the mix-bits fixture, as msModelSlim wrote it.
TEST(ModelSlimGolden, ResolverSeesTheMixedSchemes) {
  const std::string dir = test::source_path("tests/golden/fixtures/modelslim-int");
  auto source = format::open_safetensors(dir);
  quant::CheckpointSchemes cs = quant::resolve_checkpoint_schemes(dir, *source);
  EXPECT_EQ(cs.method, "modelslim");
  std::map<std::string, const quant::TensorScheme*> by;
  for (const auto& t : cs.tensors) by[t.tensor] = &t;
  auto scheme = [&](const std::string& n) { return by.count(n) ? by[n]->scheme : "<none>"; };
  EXPECT_EQ(scheme("model.layers.0.self_attn.q_proj.weight"), "W8A8");
  EXPECT_EQ(scheme("model.layers.0.self_attn.o_proj.weight"), "W8A8_DYNAMIC");
  EXPECT_EQ(scheme("model.layers.0.mlp.gate_proj.weight"), "W4A4_DYNAMIC");
  EXPECT_EQ(scheme("model.layers.0.mlp.down_proj.weight"), "FLOAT");
  EXPECT_EQ(scheme("model.layers.1.mlp.up_proj.weight"), "W8A16");
  EXPECT_EQ(scheme("model.embed_tokens.weight"), "FLOAT");
  // Side tensors are not rows of their own; they belong to their weight.
  EXPECT_EQ(by.count("model.layers.0.self_attn.q_proj.deq_scale"), 0u);
  const auto& q = *by["model.layers.0.self_attn.q_proj.weight"];
  EXPECT_EQ(q.weight_bits, 8);
  EXPECT_EQ(q.act_bits, 8);
  EXPECT_EQ(q.side_tensors.size(), 4u);  // deq_scale, input_offset, input_scale, quant_bias
  const auto& g = *by["model.layers.0.mlp.gate_proj.weight"];
  EXPECT_EQ(g.weight_bits, 4);
  EXPECT_EQ(g.act_bits, 4);
  EXPECT_EQ(by["model.layers.0.mlp.down_proj.weight"]->weight_bits, 32);  // f32 float layer
}

}  // namespace
}  // namespace quanta
