// `quanta quantize`: a float Hugging Face folder to an msModelSlim (AscendV1)
// layout folder, round to nearest, one layer at a time.
//
// Methods and what each decoder Linear (q/k/v/o, gate/up/down) becomes:
//   modelslim-w8a8-dynamic  W8A8_DYNAMIC: int8 per channel, scale = max|w| / 127
//   modelslim-w4a4-dynamic  W4A4_DYNAMIC: int4 (one per int8 byte) per channel, max|w| / 7
//   mxfp8                   W8A8_MXFP8: E4M3 + E8M0 per 32 (OCP rule, core/mx.h)
//   mxfp4                   W4A4_MXFP4: E2M1 packed two per byte + E8M0 per 32
// Embeddings, lm_head, norms and every other tensor are copied as stored and
// marked FLOAT; a Linear whose name contains an `ignored` pattern stays FLOAT.
// Output: quant_model_description.json, quant_model_weights-00001-of-00001.safetensors
// with its index, config.json without quantization_config, and the tokenizer and
// other .json/.txt/.jinja/.model files of the input.
//
// Not done: modelslim-w8a8 (static activations need calibration on text, which
// needs the model's per-layer activations; refused with that reason).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace quanta::quant {

struct QuantizeOptions {
  std::string method;
  std::vector<std::string> ignored;
};

struct QuantizeReport {
  int64_t n_quantized = 0;  // Linear weights quantized
  int64_t n_float = 0;      // tensors copied as FLOAT
  uint64_t bytes_out = 0;   // tensor bytes written
  std::string scheme;       // the description's type string
};

// Throws Error naming the folder, tensor or option that is wrong.
QuantizeReport write_quantized_checkpoint(const std::string& in_dir, const std::string& out_dir,
                                          const QuantizeOptions& options);

}  // namespace quanta::quant
