// The quantization configs of AWQ, GPTQ (AutoGPTQ, GPTQModel, transformers),
// AutoRound and compressed-tensors (LLM Compressor) folders, parsed, and the
// per-layer answer "how is this Linear stored" (checkpoint-formats-2.md sec. 0-3,
// checkpoint-formats-1.md sec. 3).
//
// Where the config lives: config.json's quantization_config (or
// compression_config), else quantization_config.json (AutoRound), else
// quantize_config.json (AutoGPTQ / GPTQModel), else quant_config.json (old AutoAWQ).
//
// Per layer:
//   awq          bits/w_bit, group_size/q_group_size, zero_point, version (gemm, and
//                the exllama/ipex kernels over it); modules_to_not_convert by substring.
//   gptq         bits, group_size, sym, desc_act, checkpoint_format/format (gptq: zero
//                stored minus one; gptq_v2: as is); GPTQModel's `dynamic` overrides
//                (regexes matched at the start, first match wins, "-:" = not quantized).
//   auto-round   packing_format picks the layout (auto_round:auto_gptq = GPTQ v1;
//                auto_round, auto_round:gptqmodel = GPTQ v2; auto_round:auto_awq = AWQ;
//                auto_round:llm_compressor = compressed-tensors); extra_config overrides
//                by exact name, then by regex (searched); 16 bits or more = float.
//   compressed-tensors  config_groups (targets: "Linear", exact names, "re:" regexes
//                matched at the start), ignore wins; per-group or global format:
//                pack-quantized / naive-quantized (int weights, float activations),
//                int-quantized (int8 weights, dynamic per-token int8 activations).
// What quanta cannot run is refused by name with the field that says so.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace quanta::quant {

// How one Linear's weight is stored.
enum class HfLayout : uint8_t {
  kFloat,     // .weight in f32/bf16/f16
  kGptq,      // qweight [K*b/32, N] packed along K, qzeros [G, N*b/32], scales [G, N], g_idx [K]
  kAwq,       // qweight [K, N/8] AWQ-interleaved, qzeros [G, N/8], scales [G, N]
  kCtPacked,  // weight_packed [N, K*b/32], weight_scale [N, G], weight_zero_point, weight_g_idx, weight_shape
  kCtInt,     // weight int8 [N, K] (one value per byte), weight_scale [N, G], weight_zero_point
  kCtFp8,     // weight F8_E4M3 [N, K], weight_scale [N, 1], [1] or per block [N/bn, K/bk]
};

// Activation quantization of FP8 layers (compressed-tensors float input_activations).
enum class Fp8Act : uint8_t {
  kNone,    // f32 activations (weight-only FP8)
  kToken,   // dynamic, one scale per token: amax / 448
  kGroup,   // dynamic, one scale per token and act_group elements
  kStatic,  // input_scale from the checkpoint, one per tensor
};

struct LayerQuant {
  HfLayout layout = HfLayout::kFloat;
  int bits = 16;
  int64_t group_size = -1;     // -1: one group over all of K (per channel)
  bool sym = true;
  bool zero_minus_one = false;  // GPTQ v1 ("gptq", "auto_round:auto_gptq"): the stored zero is z - 1
  bool act_dynamic8 = false;    // compressed-tensors int-quantized: per-token dynamic int8 activations
  bool act_order = false;       // the config says act-order (desc_act, actorder): expect a g_idx
  int64_t block_n = 0, block_k = 0;  // kCtFp8 weights with block strategy (0: per channel or tensor)
  Fp8Act fp8_act = Fp8Act::kNone;
  int64_t act_group = 0;             // Fp8Act::kGroup
  std::string rule;             // what decided it, for messages and inspect
};

class HfQuantConfig {
 public:
  // qc: the quantization_config object; file: where it was read (for messages).
  HfQuantConfig(const nlohmann::ordered_json& qc, std::string file);
  // From a folder (see the file list above); nullptr when none of them names an
  // awq / gptq / auto-round / compressed-tensors quant_method.
  static std::unique_ptr<HfQuantConfig> load(const std::string& model_dir);

  const std::string& method() const { return method_; }  // "awq", "gptq", "auto-round", "compressed-tensors"
  const std::string& file() const { return file_; }
  // The layer at `prefix` ("model.layers.0.self_attn.q_proj"); embeddings are float.
  LayerQuant resolve(const std::string& prefix) const;

 private:
  LayerQuant resolve_awq(const std::string& prefix) const;
  LayerQuant resolve_gptq(const std::string& prefix) const;
  LayerQuant resolve_auto_round(const std::string& prefix) const;
  LayerQuant resolve_compressed_tensors(const std::string& prefix) const;
  [[noreturn]] void fail(const std::string& field, const std::string& message) const;

  nlohmann::ordered_json qc_;  // ordered: GPTQ dynamic and AutoRound extra_config match in insertion order
  std::string file_;
  std::string method_;
};

}  // namespace quanta::quant
