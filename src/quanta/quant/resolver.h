// Which quantization method a checkpoint uses, and which scheme each tensor has.
//
// Detection follows SGLang (checkpoint-formats-1.md sec. 2): a
// quant_model_description.json makes the folder "modelslim", whatever config.json
// says; otherwise config.json's quantization_config.quant_method names the method;
// otherwise the folder is "unquantized". `--quantization NAME` must agree with what
// the checkpoint says, or name an online method (mxfp8, w8a8_int8) applied to a
// float checkpoint; anything else is refused with the reason.
//
// Per-layer resolution for msModelSlim (sec. 1.3): the scheme of a Linear is the
// description's value for "<prefix>.weight"; a missing entry is an error, never a
// silent float; the shards SGLang fuses (q/k/v, gate/up) must all have the same
// scheme; embeddings and lm_head are never quantized; MoE w13 (gate+up of expert
// 0) and w2 (down of expert 0) are resolved independently.
//
// Non-goals: the FlatQuant/SVD/QuaRot wrappers, W4A8_DYNAMIC, W8A8_MIX,
// WFP8AFP8_DYNAMIC, DUALSCALE (recognised and refused by name), KV-cache C8 and
// FA quantization (ignored: quanta's attention stays f32).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace quanta::format {
class TensorSource;
}

namespace quanta::quant {

// The schemes quanta runs for Linear layers.
enum class Scheme : uint8_t {
  kFloat,        // f32/bf16/f16 weight as stored
  kW8A16,        // int8 weight (per channel or group), f32 activations
  kW8A8,         // int8 weight per channel, static per-tensor asymmetric int8 activations
  kW8A8Dynamic,  // int8 weight, per-token symmetric int8 activations
  kW4A4Dynamic,  // int4 weight (one per byte), per-token symmetric int4 activations
  kW8A8Mxfp8,    // MXFP8 E4M3 weight, MXFP8 E4M3 activations
  kW4A8Mxfp,     // MXFP4 weight, MXFP8 E4M3 activations
  kW4A4Mxfp4,    // MXFP4 weight, MXFP4 activations
};

struct SchemeInfo {
  Scheme scheme;
  const char* name;  // msModelSlim's string
  int weight_bits;   // 0 for FLOAT: the stored dtype decides
  int act_bits;      // 0 for FLOAT and W8A16's float activations: the model dtype
  bool mx;           // 32-element E8M0 blocks
};

const SchemeInfo& scheme_info(Scheme s);
const char* scheme_name(Scheme s);
// The scheme of an msModelSlim type string; nullopt if quanta cannot run it.
std::optional<Scheme> scheme_from_name(std::string_view name);

// quant_model_description.json, parsed.
struct QuantDescription {
  std::string file;                            // its path, for messages
  std::map<std::string, std::string> entries;  // tensor name -> type string (string values only)
  int64_t group_size = 0;                      // 0: per channel
  std::string version;
  std::string model_quant_type;
  bool norm_bias = false;  // some key contains "norm.bias": RMSNorm carries an additive bias
};

// Throws Error naming the file and key when the JSON is malformed.
QuantDescription parse_quant_description(const std::string& json_text, const std::string& file);
// nullopt when the folder has no quant_model_description.json.
std::optional<QuantDescription> load_quant_description(const std::string& model_dir);

// The method a folder is loaded with.
struct MethodDecision {
  std::string method;  // "modelslim", "unquantized", "mxfp8", "w8a8_int8", or config.json's quant_method
  std::string source;  // file that decided it ("" for a plain float folder)
  bool online = false; // quantized at load from float weights
};

// The names --quantization accepts.
const std::vector<std::string>& quantization_names();
// Detects the method of `model_dir` and reconciles it with `requested` (a
// --quantization value, "" if none). Throws Error when `requested` is unknown or
// contradicts the checkpoint.
MethodDecision decide_method(const std::string& model_dir, const std::string& requested = "");

// Per-layer resolution over an msModelSlim description.
class SchemeResolver {
 public:
  explicit SchemeResolver(QuantDescription description);

  const QuantDescription& description() const { return desc_; }
  // The type string of a tensor ("" if the description has no entry; keys with
  // "weight_packed" count as "weight", as vllm-ascend aliases them).
  std::string type_of(const std::string& tensor) const;

  // The scheme of the Linear at `prefix` ("model.layers.0.self_attn.q_proj").
  // Throws Error naming the tensor for a missing entry, an unknown or unsupported
  // type string, and for embeddings/lm_head that are not FLOAT.
  Scheme linear_scheme(const std::string& prefix) const;
  // The common scheme of shards SGLang fuses into one Linear; throws Error naming
  // two shards that disagree.
  Scheme fused_scheme(const std::vector<std::string>& shard_prefixes) const;

  // MoE experts at `experts_prefix` ("model.layers.3.mlp.experts"): expert 0's
  // gate/up (which must agree) give w13, its down gives w2. Names gate_proj/up_proj/
  // down_proj, else w1/w3/w2.
  struct MoeSchemes {
    Scheme w13;
    Scheme w2;
  };
  MoeSchemes moe_schemes(const std::string& experts_prefix) const;

  // Checks the checkpoint-wide rules for a llama-family decoder of n_layers:
  // embeddings/lm_head float, q/k/v and gate/up agreeing in every layer (for the
  // layers `sparse` marks, each expert's gate/up, as moe_schemes checks expert 0's).
  void validate_decoder(int64_t n_layers, const std::vector<bool>& sparse = {}) const;

 private:
  QuantDescription desc_;
};

// What `quanta inspect` shows for a folder: the method and one row per
// checkpoint weight tensor (side tensors such as weight_scale belong to their
// weight's row and are listed there).
struct TensorScheme {
  std::string tensor;       // e.g. "model.layers.0.self_attn.q_proj.weight"
  std::string scheme;       // the description's string, "FLOAT" for unquantized tensors
  int weight_bits = 0;      // stored bits per weight element
  int act_bits = 0;         // activation bits the scheme pairs it with (float: the weight dtype's bits)
  int64_t group_size = 0;   // elements per scale along K (0: per channel / none)
  std::vector<std::string> side_tensors;  // weight_scale, input_scale, ... of this weight
  // HF integer formats (awq, gptq, auto-round, compressed-tensors):
  std::string zero_point;   // "sym" or "asym" ("" elsewhere)
  bool act_order = false;   // groups follow g_idx (desc_act / actorder)
  std::string layout;       // the packing it is read from, e.g. "gptq v1"
  std::vector<int64_t> logical_shape;  // [n_out, n_in] of a packed weight (empty: its stored shape)
};

struct CheckpointSchemes {
  std::string method;  // as decide_method() gives it
  std::vector<TensorScheme> tensors;  // sorted by tensor name
};

// For a Hugging Face folder and its tensors. Throws Error for a malformed description.
CheckpointSchemes resolve_checkpoint_schemes(const std::string& model_dir, const format::TensorSource& source);

}  // namespace quanta::quant
