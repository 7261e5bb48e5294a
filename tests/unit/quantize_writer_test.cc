// quanta quantize (quant/quantize_writer.h) round trips: real float weights (the
// transformers-made llama-gqa-f32 fixture) quantized, written, loaded back through
// the msModelSlim method, dequantized by running each Linear on the identity, and
// held to the quantization step. A transposed or mis-packed layout fails here.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "quanta/core/error.h"
#include "quanta/core/mx.h"
#include "quanta/core/thread_pool.h"
#include "quanta/format/hf_config.h"
#include "quanta/format/safetensors.h"
#include "quanta/quant/modelslim.h"
#include "quanta/quant/quantize_writer.h"
#include "quanta/quant/quantized_linear.h"
#include "test_util.h"

namespace quanta::quant {
namespace {

// Hand-checked: row {0.5, -1.27, 0.254, 0, 0.005}: amax 1.27, s = 1.27 / 127 = 0.01
// (in f32), q = round(w / s) = {50, -127, 25 (25.4), 0, 0 (0.5 -> even 0)}.
TEST(QuantizeWriter, HandCheckedInt8Row) {
  const float w[5] = {0.5f, -1.27f, 0.254f, 0.0f, 0.005f};
  int8_t q[5];
  const float s = quantize_row_symmetric(w, 5, 127, q);
  EXPECT_FLOAT_EQ(s, 0.01f);
  const int8_t want[5] = {50, -127, 25, 0, 0};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(q[i], want[i]) << i;
  // int4: s = 1.27 / 7; 0.5 / s = 2.756 -> 3; 0.254 / s = 1.4 -> 1.
  int8_t q4[5];
  quantize_row_symmetric(w, 5, 7, q4);
  const int8_t want4[5] = {3, -7, 1, 0, 0};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(q4[i], want4[i]) << i;
}

// The dequantized weight of a loaded Linear: y = W x for x = e_k. With per-token
// activation quantization e_k is exact (int: amax 1 -> 127 * (1/127); MX: 1.0 in
// a block of zeros), so row k of the output is column k of the dequantized W.
std::vector<float> dequantize(const LinearKernel& l, ThreadPool& pool) {
  const int64_t K = l.n_in(), N = l.n_out();
  std::vector<float> x(static_cast<size_t>(K * K), 0.0f), y(static_cast<size_t>(K * N));
  for (int64_t k = 0; k < K; ++k) x[k * K + k] = 1.0f;
  l.forward(x.data(), K, y.data(), pool);
  std::vector<float> w(static_cast<size_t>(N * K));
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < N; ++n) w[n * K + k] = y[k * N + n];
  return w;
}

class RoundTrip : public ::testing::TestWithParam<std::string> {};

TEST_P(RoundTrip, EveryLinearWithinTheQuantizationStep) {
  const std::string method = GetParam();
  const std::string in = test::source_path("tests/golden/fixtures/llama-gqa-f32");
  const std::string out = test::temp_dir() + "/q";
  QuantizeReport r = write_quantized_checkpoint(in, out, {method, {"layers.1.mlp.down_proj"}});
  const format::ModelConfig cfg = format::load_model_config(out);
  EXPECT_EQ(r.n_quantized, 7 * cfg.n_layers - 1);

  // The description marks the ignored layer FLOAT and the rest with the scheme.
  auto desc = nlohmann::json::parse(test::read_file(out + "/quant_model_description.json"));
  EXPECT_EQ(desc["model.layers.1.mlp.down_proj.weight"], "FLOAT");
  EXPECT_EQ(desc["model.layers.0.self_attn.q_proj.weight"], r.scheme);
  EXPECT_EQ(desc["model.embed_tokens.weight"], "FLOAT");

  auto qsrc = format::open_safetensors(out);
  auto fsrc = format::open_safetensors(in);
  auto m = make_folder_method(out, "", {}, cfg.layer_is_moe);
  ThreadPool pool(2);
  const bool mx = method == "mxfp8" || method == "mxfp4";
  for (int64_t i = 0; i < cfg.n_layers; ++i)
    for (const char* proj : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                             "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}) {
      const std::string prefix = "model.layers." + std::to_string(i) + "." + proj;
      Tensor wf = fsrc->get(prefix + ".weight").to_f32();
      const int64_t N = wf.dim(0), K = wf.dim(1);
      auto lin = m->load_linear(*qsrc, {prefix, K, N, false, ParallelRole::kReplicated});
      EXPECT_EQ(lin->format(), i == 1 && std::string(proj) == "mlp.down_proj" ? "F32" : r.scheme);
      const std::vector<float> wd = dequantize(*lin, pool);
      double worst = 0;  // max error / allowed
      for (int64_t n = 0; n < N; ++n) {
        float amax_row = 0;
        for (int64_t k = 0; k < K; ++k) amax_row = std::max(amax_row, std::fabs(wf.data<float>()[n * K + k]));
        for (int64_t k = 0; k < K; ++k) {
          const float w = wf.data<float>()[n * K + k];
          double bound;
          if (!mx) {
            // Half an integer step of the row's scale (f32 rounding of the scale aside).
            const double step = amax_row / (method == "modelslim-w8a8-dynamic" ? 127.0 : 7.0);
            bound = 0.5 * step * (1 + 1e-5) + 1e-7;
          } else {
            float amax_blk = 0;
            for (int64_t j = k / 32 * 32; j < k / 32 * 32 + 32; ++j)
              amax_blk = std::max(amax_blk, std::fabs(wf.data<float>()[n * K + j]));
            const double X = std::ldexp(1.0, mx_scale_code(method == "mxfp8" ? MxElem::kE4M3 : MxElem::kE2M1, amax_blk) - 127);
            // E4M3: half a mantissa step (2^-4 relative) or of the subnormal step 2^-9 X,
            // E2M1: at most half the widest grid gap (2, between 4 and 6) times X, plus
            // saturation of (6, 8) X down to 6 X: at most 2 X.
            // E4M3 saturates (448 X, 512 X) down to 448 X.
            bound = method == "mxfp8" ? std::max(std::fabs(double{w}) / 16, std::fabs(double{w}) - 448 * X) + std::ldexp(X, -10)
                                      : 2 * X;
          }
          worst = std::max(worst, std::fabs(double{wd[n * K + k]} - w) / bound);
        }
      }
      EXPECT_LE(worst, 1.0) << prefix;
    }
}

INSTANTIATE_TEST_SUITE_P(Methods, RoundTrip,
                         ::testing::Values("modelslim-w8a8-dynamic", "modelslim-w4a4-dynamic", "mxfp8", "mxfp4"));

TEST(QuantizeWriter, RefusesWhatItCannotDo) {
  const std::string in = test::source_path("tests/golden/fixtures/llama-gqa-f32");
  auto expect = [&](const std::string& method, const std::string& needle) {
    try {
      write_quantized_checkpoint(in, test::temp_dir() + "/x", {method, {}});
      ADD_FAILURE() << method;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect("modelslim-w8a8", "calibration");
  expect("int3", "unknown method 'int3'");
  try {
    write_quantized_checkpoint(test::source_path("tests/golden/fixtures/modelslim-int"), test::temp_dir() + "/y",
                               {"mxfp8", {}});
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("already an msModelSlim checkpoint"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace quanta::quant
