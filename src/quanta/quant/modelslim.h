// The msModelSlim method (checkpoint-formats-1.md sec. 1) and online
// quantization of float checkpoints (--quantization mxfp8 | w8a8_int8).
//
// Every Linear is resolved through SchemeResolver; FLOAT layers, embeddings and
// lm_head load through the unquantized method. Side tensors are validated by
// name, dtype and shape against the spec's tables before anything is computed;
// the first mismatch is an Error naming the tensor, its file and what was expected.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "quanta/quant/quant_method.h"
#include "quanta/quant/resolver.h"

namespace quanta::quant {

std::unique_ptr<QuantMethod> make_modelslim_method(QuantDescription description);

// method: "mxfp8" (MXFP8 E4M3 weights and activations, W8A8_MXFP8) or "w8a8_int8"
// (per-channel int8 weights, per-token int8 activations, W8A8_DYNAMIC). A Linear
// whose prefix contains any of `ignored` stays float, as do embeddings and lm_head.
std::unique_ptr<QuantMethod> make_online_method(const std::string& method, std::vector<std::string> ignored);

// The method for a Hugging Face folder: decide_method(dir, requested), then the
// msModelSlim method (after checking the decoder-wide rules for the layers of
// `layer_is_moe`, true where a layer is sparse), an
// online method, or the unquantized one. Methods quanta has no loader for yet
// (AWQ, GPTQ, compressed-tensors, ...) are an Error naming config.json.
std::unique_ptr<QuantMethod> make_folder_method(const std::string& dir, const std::string& requested,
                                                const std::vector<std::string>& ignored_layers,
                                                const std::vector<bool>& layer_is_moe);

}  // namespace quanta::quant
