// The scheme resolver and the msModelSlim method on bad input: each case one clear
// Error naming the layer (tensor) and what is wrong.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "quanta/core/error.h"
#include "quanta/format/tensor_source.h"
#include "quanta/quant/modelslim.h"
#include "quanta/quant/resolver.h"
#include "test_util.h"

namespace quanta::quant {
namespace {

// A checkpoint held in memory.
class FakeSource : public format::TensorSource {
 public:
  std::map<std::string, Tensor> t;
  bool has(const std::string& n) const override { return t.count(n) > 0; }
  Tensor get(const std::string& n) const override {
    if (!t.count(n)) throw Error("no such tensor", {.tensor = n});
    return t.at(n);
  }
  std::string file_of(const std::string&) const override { return "fake.safetensors"; }
  std::vector<std::string> names() const override {
    std::vector<std::string> v;
    for (const auto& [k, _] : t) v.push_back(k);
    return v;
  }
  std::string location() const override { return "fake"; }
};


QuantDescription desc(const std::string& json) { return parse_quant_description(json, "quant_model_description.json"); }

const std::string kQ = "model.layers.0.self_attn.q_proj";

TEST(Resolver, SchemesAndGlobalKeys) {
  QuantDescription d = desc(R"({"a.weight": "W8A8_DYNAMIC", "b.weight_packed": "W4A4_MXFP4", "c.weight": "FLOAT",
      "model.layers.0.input_layernorm.bias": "FLOAT", "group_size": 32, "version": "1.0.0",
      "model_quant_type": "W4A4_MXFP4", "metadata": {}, "kv_cache_type": "C8"})");
  EXPECT_EQ(d.group_size, 32);
  EXPECT_EQ(d.version, "1.0.0");
  EXPECT_TRUE(d.norm_bias);
  SchemeResolver r(d);
  EXPECT_EQ(r.linear_scheme("a"), Scheme::kW8A8Dynamic);
  EXPECT_EQ(r.linear_scheme("b"), Scheme::kW4A4Mxfp4);  // weight_packed is an alias of weight
  EXPECT_EQ(r.linear_scheme("c"), Scheme::kFloat);
  // Absent embeddings / lm_head are float: SGLang never asks.
  EXPECT_EQ(r.linear_scheme("model.embed_tokens"), Scheme::kFloat);
  EXPECT_EQ(r.linear_scheme("lm_head"), Scheme::kFloat);
  for (const auto& i : {Scheme::kW8A8, Scheme::kW4A8Mxfp, Scheme::kW8A16})
    EXPECT_EQ(scheme_from_name(scheme_name(i)), i);
  test::expect_error([] { desc("[1, 2]"); }, {"quant_model_description.json", "JSON object"});
  test::expect_error([] { desc("{\"group_size\": -1}"); }, {"group_size"});
}

TEST(Resolver, MissingEntryIsAnErrorNotFloat) {
  SchemeResolver r(desc(R"({"x.weight": "FLOAT"})"));
  test::expect_error([&] { r.linear_scheme(kQ); }, {kQ + ".weight", "no entry", "quant_model_description.json"});
}

TEST(Resolver, UnknownAndUnsupportedSchemes) {
  SchemeResolver r(desc(R"({"a.weight": "W3A3_WEIRD", "b.weight": "W4A8_DYNAMIC", "c.weight": "W8A8_FLATQUANT_DYNAMIC"})"));
  test::expect_error([&] { r.linear_scheme("a"); }, {"a.weight", "unknown scheme 'W3A3_WEIRD'", "W8A8_DYNAMIC"});
  test::expect_error([&] { r.linear_scheme("b"); }, {"b.weight", "W4A8_DYNAMIC", "does not run yet"});
  test::expect_error([&] { r.linear_scheme("c"); }, {"c.weight", "FlatQuant"});
}

TEST(Resolver, FusedShardsMustAgree) {
  const std::string p = "model.layers.3.";
  SchemeResolver r(desc(R"({"model.layers.3.self_attn.q_proj.weight": "W8A8_DYNAMIC",
      "model.layers.3.self_attn.k_proj.weight": "W8A8_DYNAMIC", "model.layers.3.self_attn.v_proj.weight": "W8A8",
      "model.layers.3.mlp.gate_proj.weight": "FLOAT", "model.layers.3.mlp.up_proj.weight": "W8A8_DYNAMIC"})"));
  test::expect_error([&] { r.fused_scheme({p + "self_attn.q_proj", p + "self_attn.k_proj", p + "self_attn.v_proj"}); },
               {"model.layers.3.self_attn.q_proj.weight is W8A8_DYNAMIC", "model.layers.3.self_attn.v_proj.weight is W8A8",
                "fused"});
  test::expect_error([&] { r.fused_scheme({p + "mlp.gate_proj", p + "mlp.up_proj"}); },
               {"gate_proj.weight is FLOAT", "up_proj.weight is W8A8_DYNAMIC"});
  test::expect_error([&] { r.validate_decoder(4); }, {"model.layers.0"});  // layer 0 has no entries at all
}

// A sparse layer has experts, not a dense MLP: its w13 (expert 0's gate and up, which must agree)
// and w2 resolve apart, so W8A8_DYNAMIC gate/up with a W4A4_DYNAMIC down is valid.
TEST(Resolver, SparseLayersResolveW13AndW2Apart) {
  const std::string layer = R"("model.embed_tokens.weight": "FLOAT", "lm_head.weight": "FLOAT",
      "model.layers.0.self_attn.q_proj.weight": "W8A8_DYNAMIC", "model.layers.0.self_attn.k_proj.weight": "W8A8_DYNAMIC",
      "model.layers.0.self_attn.v_proj.weight": "W8A8_DYNAMIC", "model.layers.0.self_attn.o_proj.weight": "W8A8_DYNAMIC",
      "model.layers.0.mlp.gate.weight": "FLOAT", "model.layers.0.mlp.experts.0.down_proj.weight": "W4A4_DYNAMIC",
      "model.layers.0.mlp.experts.0.gate_proj.weight": "W8A8_DYNAMIC",)";
  SchemeResolver ok(desc("{" + layer + R"("model.layers.0.mlp.experts.0.up_proj.weight": "W8A8_DYNAMIC"})"));
  ok.validate_decoder(1, {true});
  const auto m = ok.moe_schemes("model.layers.0.mlp.experts");
  EXPECT_EQ(m.w13, Scheme::kW8A8Dynamic);
  EXPECT_EQ(m.w2, Scheme::kW4A4Dynamic);
  test::expect_error([&] { ok.validate_decoder(1); }, {"model.layers.0.mlp.gate_proj.weight"});  // read as dense
  SchemeResolver bad(desc("{" + layer + R"("model.layers.0.mlp.experts.0.up_proj.weight": "W4A4_DYNAMIC"})"));
  test::expect_error([&] { bad.validate_decoder(1, {true}); }, {"experts.0.up_proj.weight is W4A4_DYNAMIC", "fused"});
}

TEST(Resolver, QuantizedEmbeddingOrLmHeadIsRefused) {
  SchemeResolver r(desc(R"({"model.embed_tokens.weight": "W8A8_DYNAMIC", "lm_head.weight": "W4A4_MXFP4"})"));
  test::expect_error([&] { r.linear_scheme("model.embed_tokens"); },
               {"model.embed_tokens.weight", "never quantized", "W8A8_DYNAMIC"});
  test::expect_error([&] { r.linear_scheme("lm_head"); }, {"lm_head.weight", "never quantized"});
  test::expect_error([&] { r.validate_decoder(1); }, {"model.embed_tokens.weight"});
}

TEST(Resolver, MoeW13AndW2Independently) {
  SchemeResolver r(desc(R"({"model.layers.1.mlp.experts.0.gate_proj.weight": "W4A4_DYNAMIC",
      "model.layers.1.mlp.experts.0.up_proj.weight": "W4A4_DYNAMIC",
      "model.layers.1.mlp.experts.0.down_proj.weight": "W8A8_DYNAMIC",
      "model.layers.2.block_sparse_moe.experts.0.w1.weight": "W8A8_MXFP8",
      "model.layers.2.block_sparse_moe.experts.0.w3.weight": "W8A8_MXFP8",
      "model.layers.2.block_sparse_moe.experts.0.w2.weight": "W4A8_MXFP",
      "model.layers.3.mlp.experts.0.gate_proj.weight": "W4A4_DYNAMIC",
      "model.layers.3.mlp.experts.0.up_proj.weight": "W8A8_DYNAMIC",
      "model.layers.3.mlp.experts.0.down_proj.weight": "W8A8_DYNAMIC"})"));
  auto a = r.moe_schemes("model.layers.1.mlp.experts");
  EXPECT_EQ(a.w13, Scheme::kW4A4Dynamic);
  EXPECT_EQ(a.w2, Scheme::kW8A8Dynamic);
  auto b = r.moe_schemes("model.layers.2.block_sparse_moe.experts");  // MiniMax w1/w3/w2 names
  EXPECT_EQ(b.w13, Scheme::kW8A8Mxfp8);
  EXPECT_EQ(b.w2, Scheme::kW4A8Mxfp);
  test::expect_error([&] { r.moe_schemes("model.layers.3.mlp.experts"); }, {"experts.0.gate_proj.weight", "experts.0.up_proj.weight"});
}

std::string folder_with(const std::map<std::string, std::string>& files) {
  std::string d = test::temp_dir();
  for (const auto& [name, text] : files) test::write_file(d + "/" + name, text);
  return d;
}

TEST(Resolver, MethodDetectionAndOverride) {
  const std::string plain = folder_with({{"config.json", "{}"}});
  const std::string ms = folder_with({{"config.json", R"({"quantization_config": {"quant_method": "awq"}})"},
                                      {"quant_model_description.json", "{}"}});
  const std::string awq = folder_with({{"config.json", R"({"quantization_config": {"quant_method": "AWQ"}})"}});
  EXPECT_EQ(decide_method(plain).method, "unquantized");
  EXPECT_EQ(decide_method(ms).method, "modelslim");  // the description wins over config.json
  EXPECT_EQ(decide_method(awq).method, "awq");
  EXPECT_EQ(decide_method(ms, "modelslim").method, "modelslim");
  MethodDecision online = decide_method(plain, "mxfp8");
  EXPECT_EQ(online.method, "mxfp8");
  EXPECT_TRUE(online.online);
  test::expect_error([&] { decide_method(plain, "modelslim"); }, {"--quantization", "contradicts", "unquantized"});
  test::expect_error([&] { decide_method(awq, "modelslim"); }, {"contradicts", "'awq'", "config.json"});
  test::expect_error([&] { decide_method(ms, "w8a8_int8"); }, {"already", "modelslim", "quant_model_description.json"});
  test::expect_error([&] { decide_method(plain, "fp42"); }, {"unknown quantization method 'fp42'", "modelslim"});
  const std::string bnb = folder_with({{"config.json", R"({"quantization_config": {"quant_method": "bitsandbytes"}})"}});
  test::expect_error([&] { make_folder_method(bnb, "", {}, std::vector<bool>(1, false)); },
               {"'bitsandbytes' is not supported", "quantization_config.quant_method", "config.json"});
  test::expect_error([&] { make_folder_method(plain, "", {"mlp"}, std::vector<bool>(1, false)); }, {"--quantization-ignored-layers"});
}

Tensor filled(DType d, Shape s) { return Tensor::zeros(d, std::move(s)); }

std::unique_ptr<QuantMethod> method_for(const std::string& scheme, const std::string& prefix = kQ) {
  return make_modelslim_method(desc("{\"" + prefix + ".weight\": \"" + scheme + "\"}"));
}

TEST(ModelSlimMethod, SideTensorsAreCheckedByNameDtypeAndShape) {
  const LinearSpec spec{kQ, 64, 32, false, ParallelRole::kColumn};
  FakeSource s;
  s.t[kQ + ".weight"] = filled(DType::kI8, {32, 64});
  auto m = method_for("W8A8_DYNAMIC");
  test::expect_error([&] { m->load_linear(s, spec); }, {kQ + ".weight_scale", "missing", "W8A8_DYNAMIC"});
  s.t[kQ + ".weight_scale"] = filled(DType::kF32, {32, 3});
  test::expect_error([&] { m->load_linear(s, spec); }, {kQ + ".weight_scale", "[32, 3]", "[32, 1]"});
  s.t[kQ + ".weight_scale"] = filled(DType::kI32, {32, 1});
  test::expect_error([&] { m->load_linear(s, spec); }, {kQ + ".weight_scale", "dtype I32"});
  s.t[kQ + ".weight_scale"] = filled(DType::kF32, {32, 1});
  s.t[kQ + ".weight_offset"] = filled(DType::kF32, {32, 2});
  test::expect_error([&] { m->load_linear(s, spec); }, {kQ + ".weight_offset", "[32, 2]"});
  s.t[kQ + ".weight_offset"] = filled(DType::kF32, {32, 1});
  EXPECT_NO_THROW(m->load_linear(s, spec));
  s.t[kQ + ".weight"] = filled(DType::kF32, {32, 64});
  test::expect_error([&] { m->load_linear(s, spec); }, {kQ + ".weight", "dtype F32", "I8"});
  s.t[kQ + ".weight"] = filled(DType::kI8, {64, 32});  // transposed
  test::expect_error([&] { m->load_linear(s, spec); }, {kQ + ".weight", "[64, 32]", "[32, 64]"});
}

TEST(ModelSlimMethod, StaticW8A8Tensors) {
  const LinearSpec spec{kQ, 64, 32, false, ParallelRole::kColumn};
  FakeSource s;
  s.t[kQ + ".weight"] = filled(DType::kI8, {32, 64});
  s.t[kQ + ".input_scale"] = filled(DType::kF32, {1});
  s.t[kQ + ".input_scale"].data_mut<float>()[0] = 0.5f;
  s.t[kQ + ".input_offset"] = filled(DType::kF32, {1});
  s.t[kQ + ".quant_bias"] = filled(DType::kI32, {32});
  auto m = method_for("W8A8");
  test::expect_error([&] { m->load_linear(s, spec); }, {kQ + ".deq_scale", "missing"});
  s.t[kQ + ".deq_scale"] = filled(DType::kI32, {32});
  test::expect_error([&] { m->load_linear(s, spec); }, {kQ + ".deq_scale", "dtype I32", "F32 or I64"});
  s.t[kQ + ".deq_scale"] = filled(DType::kI64, {32});
  EXPECT_NO_THROW(m->load_linear(s, spec));
  s.t[kQ + ".input_offset"].data_mut<float>()[0] = 0.5f;
  test::expect_error([&] { m->load_linear(s, spec); }, {kQ + ".input_offset", "integer"});
}

TEST(ModelSlimMethod, Int4ValuesAndMxShapes) {
  const LinearSpec spec{kQ, 64, 32, false, ParallelRole::kColumn};
  FakeSource s;
  s.t[kQ + ".weight"] = filled(DType::kI8, {32, 64});
  s.t[kQ + ".weight"].data_mut<int8_t>()[70] = 9;  // not an int4: e.g. a nibble-packed byte
  s.t[kQ + ".weight_scale"] = filled(DType::kF32, {32, 1});
  test::expect_error([&] { method_for("W4A4_DYNAMIC")->load_linear(s, spec); }, {kQ + ".weight", "[1, 6]", "int4"});

  FakeSource mx;
  mx.t[kQ + ".weight"] = filled(DType::kU8, {32, 64});  // MXFP4 needs [32, 32]: packed two per byte
  mx.t[kQ + ".weight_scale"] = filled(DType::kU8, {32, 2});
  test::expect_error([&] { method_for("W4A4_MXFP4")->load_linear(mx, spec); }, {kQ + ".weight", "[32, 64]", "[32, 32]"});
  mx.t[kQ + ".weight"] = filled(DType::kU8, {32, 32});
  mx.t[kQ + ".weight_scale"].data_mut<uint8_t>()[3] = 0xFF;
  test::expect_error([&] { method_for("W4A8_MXFP")->load_linear(mx, spec); }, {kQ + ".weight_scale", "NaN"});
  const LinearSpec odd{kQ, 48, 32, false, ParallelRole::kColumn};
  test::expect_error([&] { method_for("W8A8_MXFP8")->load_linear(mx, odd); }, {kQ + ".weight", "multiple of 32"});
}

TEST(ModelSlimMethod, DescriptionNamingATensorTheCheckpointLacks) {
  FakeSource s;  // empty checkpoint
  const LinearSpec spec{kQ, 64, 32, false, ParallelRole::kColumn};
  test::expect_error([&] { method_for("W8A8_MXFP8")->load_linear(s, spec); }, {kQ + ".weight", "missing tensor"});
}

}  // namespace
}  // namespace quanta::quant
