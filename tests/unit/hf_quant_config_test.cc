// Per-layer resolution of AWQ / GPTQ / AutoRound / compressed-tensors configs
// (quant/hf_quant_config.h), and the refusals that name their field.
#include <gtest/gtest.h>

#include "quanta/core/error.h"
#include "quanta/quant/hf_quant_config.h"

namespace quanta::quant {
namespace {

HfQuantConfig config(const char* text) { return HfQuantConfig(nlohmann::ordered_json::parse(text), "config.json"); }

// The field of the Error that constructing `text` throws, with its message checked for `needle`.
std::string refusal(const char* text, const std::string& needle) {
  try {
    config(text);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_EQ(e.context().file, "config.json");
    return e.context().field;
  }
  ADD_FAILURE() << "no error for " << text;
  return "";
}

TEST(HfQuantConfig, GptqDynamicOverridesMatchAtTheStartInInsertionOrder) {
  const HfQuantConfig c = config(R"({"quant_method": "gptq", "bits": 4, "group_size": 128, "sym": true,
      "desc_act": true, "checkpoint_format": "gptq",
      "dynamic": {"-:.*\\.mlp\\.down_proj": {}, "+:model\\.layers\\.1\\..*": {"bits": 8, "group_size": 32},
                  "model\\.layers\\.1\\.self_attn\\.q_proj": {"bits": 2}, ".*o_proj": {"bits": 3, "sym": false}}})");
  LayerQuant q = c.resolve("model.layers.0.self_attn.q_proj");
  EXPECT_EQ(q.layout, HfLayout::kGptq);
  EXPECT_EQ(q.bits, 4);
  EXPECT_EQ(q.group_size, 128);
  EXPECT_TRUE(q.zero_minus_one);
  EXPECT_TRUE(q.act_order);
  EXPECT_EQ(c.resolve("model.layers.0.mlp.down_proj").layout, HfLayout::kFloat);
  q = c.resolve("model.layers.1.self_attn.q_proj");  // the earlier "+:" entry wins over the exact one
  EXPECT_EQ(q.bits, 8);
  EXPECT_EQ(q.group_size, 32);
  q = c.resolve("model.layers.0.self_attn.o_proj");
  EXPECT_EQ(q.bits, 3);
  EXPECT_FALSE(q.sym);
  // "re.match" is anchored at the start only: "layers.1" does not match "model.layers.1".
  EXPECT_EQ(config(R"({"quant_method": "gptq", "bits": 4, "dynamic": {"layers": {"bits": 8}}})")
                .resolve("model.layers.0.mlp.up_proj").bits,
            4);
  EXPECT_EQ(c.resolve("lm_head").layout, HfLayout::kFloat);
  EXPECT_EQ(c.resolve("model.embed_tokens").layout, HfLayout::kFloat);
  EXPECT_FALSE(config(R"({"quant_method": "gptq", "checkpoint_format": "gptq_v2"})").resolve("a.b").zero_minus_one);
}

TEST(HfQuantConfig, AutoRoundPackingFormatsAndExtraConfig) {
  const HfQuantConfig c = config(R"({"quant_method": "auto-round", "packing_format": "auto_round", "bits": 4,
      "group_size": 32, "sym": false, "data_type": "int",
      "extra_config": {"model.layers.0.mlp.gate_proj": {"bits": 16, "data_type": "float"},
                       "model.layers.0.self_attn.q_proj": {"bits": 2, "group_size": 64},
                       ".*down_proj": {"bits": 8, "sym": true}}})");
  EXPECT_EQ(c.resolve("model.layers.0.mlp.gate_proj").layout, HfLayout::kFloat);
  LayerQuant q = c.resolve("model.layers.0.self_attn.q_proj");
  EXPECT_EQ(q.layout, HfLayout::kGptq);
  EXPECT_FALSE(q.zero_minus_one);
  EXPECT_EQ(q.bits, 2);
  EXPECT_EQ(q.group_size, 64);
  q = c.resolve("model.layers.1.mlp.down_proj");
  EXPECT_EQ(q.bits, 8);
  EXPECT_TRUE(q.sym);
  EXPECT_EQ(c.resolve("model.layers.1.mlp.up_proj").bits, 4);
  EXPECT_TRUE(config(R"({"quant_method": "intel/auto-round", "packing_format": "auto_round:auto_gptq"})")
                  .resolve("x.y").zero_minus_one);
  EXPECT_EQ(config(R"({"quant_method": "auto-round", "packing_format": "auto_round:auto_awq", "sym": false})")
                .resolve("x.y").layout,
            HfLayout::kAwq);
  EXPECT_EQ(config(R"({"quant_method": "auto-round", "packing_format": "auto_round:llm_compressor"})")
                .resolve("x.y").layout,
            HfLayout::kCtPacked);
  EXPECT_EQ(refusal(R"({"quant_method": "auto-round", "packing_format": "auto_round:marlin"})", "auto_round:marlin"),
            "packing_format");
  EXPECT_EQ(refusal(R"({"quant_method": "auto-round", "bits": 4, "act_bits": 8})", "activations"), "act_bits");
  EXPECT_EQ(refusal(R"({"quant_method": "auto-round", "bits": 4, "data_type": "mx_fp"})", "mx_fp"), "data_type");
}

TEST(HfQuantConfig, AwqVersionsAndModulesToNotConvert) {
  const HfQuantConfig c = config(R"({"quant_method": "awq", "bits": 4, "group_size": 64, "zero_point": true,
      "version": "GEMM", "modules_to_not_convert": ["mlp.gate", "visual"]})");
  EXPECT_EQ(c.resolve("model.layers.0.mlp.gate_proj").layout, HfLayout::kFloat);  // substring match
  const LayerQuant q = c.resolve("model.layers.0.self_attn.k_proj");
  EXPECT_EQ(q.layout, HfLayout::kAwq);
  EXPECT_FALSE(q.sym);
  EXPECT_EQ(q.group_size, 64);
  EXPECT_EQ(config(R"({"quant_method": "awq", "w_bit": 4, "q_group_size": 32, "version": "exllama"})")
                .resolve("a.b").group_size,
            32);
  EXPECT_EQ(refusal(R"({"quant_method": "awq", "version": "gemv"})", "gemv"), "version");
  EXPECT_EQ(refusal(R"({"quant_method": "awq", "version": "marlin"})", "marlin"), "version");
  EXPECT_EQ(refusal(R"({"quant_method": "awq", "bits": 8})", "8 bits"), "bits");
}

TEST(HfQuantConfig, GptqRefusals) {
  EXPECT_EQ(refusal(R"({"quant_method": "gptq", "bits": 5})", "5 bits"), "bits");
  EXPECT_EQ(refusal(R"({"quant_method": "gptq", "bits": 4, "group_size": 0})", "group_size"), "group_size");
  EXPECT_EQ(refusal(R"({"quant_method": "gptq", "checkpoint_format": "marlin"})", "marlin"), "checkpoint_format");
  EXPECT_EQ(refusal(R"({"quant_method": "gptq", "is_marlin_format": true})", "Marlin"), "is_marlin_format");
  EXPECT_EQ(refusal(R"({"quant_method": "gptq", "pack_dtype": "int16"})", "int16"), "pack_dtype");
  EXPECT_EQ(refusal(R"({"quant_method": "gptq", "bits": 4, "dynamic": {"(": {}}})", "regular expression"), "dynamic");
}

TEST(HfQuantConfig, CompressedTensorsGroupsTargetsAndIgnore) {
  const HfQuantConfig c = config(R"({"quant_method": "compressed-tensors", "format": "mixed-precision",
      "quantization_status": "compressed", "ignore": ["lm_head", "re:.*mlp\\.gate$"],
      "config_groups": {
        "group_0": {"targets": ["re:.*self_attn\\..*"], "format": "int-quantized",
                    "weights": {"num_bits": 8, "type": "int", "symmetric": true, "strategy": "channel"},
                    "input_activations": {"num_bits": 8, "type": "int", "symmetric": true, "strategy": "token",
                                          "dynamic": true}},
        "group_1": {"targets": ["Linear"], "format": "pack-quantized",
                    "weights": {"num_bits": 4, "type": "int", "symmetric": false, "strategy": "group",
                                "group_size": 128, "actorder": "weight"}}}})");
  EXPECT_EQ(c.resolve("lm_head").layout, HfLayout::kFloat);
  EXPECT_EQ(c.resolve("model.layers.0.mlp.gate").layout, HfLayout::kFloat);
  LayerQuant q = c.resolve("model.layers.0.self_attn.o_proj");
  EXPECT_EQ(q.layout, HfLayout::kCtInt);
  EXPECT_TRUE(q.act_dynamic8);
  EXPECT_EQ(q.group_size, -1);
  q = c.resolve("model.layers.0.mlp.gate_proj");
  EXPECT_EQ(q.layout, HfLayout::kCtPacked);
  EXPECT_EQ(q.bits, 4);
  EXPECT_FALSE(q.sym);
  EXPECT_TRUE(q.act_order);
  EXPECT_EQ(q.group_size, 128);
  EXPECT_EQ(c.resolve("model.embed_tokens").layout, HfLayout::kFloat);
  // W4A8: 4-bit packed weights with dynamic per-token int8 activations.
  q = config(R"({"quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": {
      "g": {"targets": ["Linear"], "weights": {"num_bits": 4, "strategy": "group", "group_size": 128},
            "input_activations": {"num_bits": 8, "strategy": "token", "dynamic": true}}}})")
          .resolve("model.layers.0.mlp.up_proj");
  EXPECT_EQ(q.layout, HfLayout::kCtPacked);
  EXPECT_TRUE(q.act_dynamic8);
  // FP8: per-channel weights with per-token activations, and blocks with per-group activations.
  q = config(R"({"quant_method": "compressed-tensors", "format": "float-quantized", "config_groups": {
      "g": {"targets": ["Linear"], "weights": {"num_bits": 8, "type": "float", "strategy": "channel"},
            "input_activations": {"num_bits": 8, "type": "float", "strategy": "token", "dynamic": true}}}})")
          .resolve("model.layers.0.mlp.up_proj");
  EXPECT_EQ(q.layout, HfLayout::kCtFp8);
  EXPECT_EQ(q.fp8_act, Fp8Act::kToken);
  q = config(R"({"quant_method": "compressed-tensors", "format": "float-quantized", "config_groups": {
      "g": {"targets": ["Linear"], "weights": {"num_bits": 8, "type": "float", "strategy": "block",
                                               "block_structure": [128, 64]},
            "input_activations": {"num_bits": 8, "type": "float", "strategy": "group", "group_size": 128,
                                  "dynamic": true}}}})")
          .resolve("model.layers.0.mlp.up_proj");
  EXPECT_EQ(q.block_n, 128);
  EXPECT_EQ(q.block_k, 64);
  EXPECT_EQ(q.fp8_act, Fp8Act::kGroup);
  EXPECT_EQ(q.act_group, 128);
}

TEST(HfQuantConfig, CompressedTensorsRefusalsNameTheGroupAndField) {
  EXPECT_EQ(refusal(R"({"quant_method": "compressed-tensors", "format": "pack-quantized",
      "kv_cache_scheme": {"num_bits": 8, "type": "float"}, "config_groups": {}})", "KV cache"), "kv_cache_scheme");
  EXPECT_EQ(refusal(R"({"quant_method": "compressed-tensors", "format": "pack-quantized",
      "sparsity_config": {"format": "sparse-24-bitmask"}, "config_groups": {}})", "sparse"), "sparsity_config");
  EXPECT_EQ(refusal(R"({"quant_method": "compressed-tensors", "format": "marlin-24", "config_groups": {
      "group_0": {"targets": ["Linear"], "weights": {"num_bits": 4, "strategy": "group", "group_size": 128}}}})",
                    "marlin-24"),
            "format");
  EXPECT_EQ(refusal(R"({"quant_method": "compressed-tensors", "format": "nvfp4-pack-quantized", "config_groups": {
      "group_1": {"targets": ["Linear"], "weights": {"num_bits": 4, "type": "float", "strategy": "tensor_group",
                                                     "group_size": 16}}}})",
                    "tensor_group"),
            "config_groups.group_1.weights.strategy");
  EXPECT_EQ(refusal(R"({"quant_method": "compressed-tensors", "format": "float-quantized", "config_groups": {
      "group_1": {"targets": ["Linear"], "weights": {"num_bits": 4, "type": "float", "strategy": "channel"}}}})",
                    "FP8"),
            "config_groups.group_1.weights.num_bits");
  EXPECT_EQ(refusal(R"({"quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": {
      "g": {"targets": ["Linear"], "weights": {"num_bits": 4, "strategy": "group", "group_size": 128},
            "input_activations": {"num_bits": 8, "strategy": "token", "dynamic": true},
            "activation_use_clip": true}}})",
                    "clipping"),
            "config_groups.g.activation_use_clip");
  EXPECT_EQ(refusal(R"({"quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": {
      "g": {"targets": ["Linear"], "weights": {"num_bits": 4, "strategy": "group", "group_size": 128},
            "input_activations": {"num_bits": 8, "strategy": "tensor", "dynamic": false}}}})",
                    "activation quantization"),
            "config_groups.g.input_activations");
  EXPECT_EQ(refusal(R"({"quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": {
      "g": {"targets": ["Linear"], "weights": {"num_bits": 4, "strategy": "block", "block_structure": [128, 128]}}}})",
                    "block"),
            "config_groups.g.weights.strategy");
}

// Patterns from a downloaded config are bounded: a deeply nested one is refused (std::regex recursed
// once per parenthesis and overflowed the stack), and one that backtracks without end is an error at
// its match limit, not a hang (found by tests/fuzz config; the inputs are in tests/fuzz/regressions).
TEST(HfQuantConfig, HostileRegexesAreRefusedNotRecursedOrHung) {
  auto resolve_error = [](const std::string& text, const std::string& prefix) -> std::string {
    try {
      HfQuantConfig(nlohmann::ordered_json::parse(text), "config.json").resolve(prefix);
    } catch (const Error& e) {
      return e.context().field;
    }
    return "(no error)";
  };
  const std::string deep = "re:" + std::string(30000, '(') + "a" + std::string(30000, ')');
  const std::string ct = R"({"quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": {
      "group_0": {"targets": [")" + deep + R"("], "weights": {"num_bits": 4, "strategy": "group", "group_size": 128}}}})";
  EXPECT_EQ(resolve_error(ct, "model.layers.0.mlp.down_proj"), "config_groups.group_0.targets");
  const std::string hang = R"({"quant_method": "compressed-tensors", "format": "pack-quantized",
      "ignore": ["re:(.|.)*\\d{9}"], "config_groups": {
      "group_0": {"targets": ["Linear"], "weights": {"num_bits": 4, "strategy": "group", "group_size": 128}}}})";
  EXPECT_EQ(resolve_error(hang, "model.layers.0.mlp.down_proj"), "ignore");
  const std::string gptq = R"({"quant_method": "gptq", "bits": 4, "group_size": 128, "dynamic": {"-:(a|": {}}})";
  EXPECT_EQ(resolve_error(gptq, "model.layers.0.mlp.down_proj"), "dynamic");
  // Python's re.match semantics stay: anchored at the start only.
  const HfQuantConfig ok = config(R"({"quant_method": "gptq", "bits": 4, "group_size": 128,
      "dynamic": {"-:.*mlp\\.down": {}}})");
  EXPECT_EQ(ok.resolve("model.layers.0.mlp.down_proj").bits, 16);  // float
  EXPECT_EQ(ok.resolve("model.layers.0.mlp.up_proj").bits, 4);
}

}  // namespace
}  // namespace quanta::quant
