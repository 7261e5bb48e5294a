// The method of AWQ, GPTQ, AutoRound and compressed-tensors folders: each
// Linear is resolved by HfQuantConfig, its tensors are checked by name, dtype
// and shape, unpacked from the producer's bit order (checkpoint-formats-2.md
// sec. 1.3, 2.3, 2.4; checkpoint-formats-1.md sec. 3.4) and repacked once into
// the group-wise integer kernels (group_int_linear.h), or, for compressed-tensors
// W8A8, the int8 kernels of the msModelSlim schemes (quantized_linear.h).
//
// Zero points: AWQ, gptq_v2 and AutoRound's plain/gptqmodel packings store z;
// GPTQ v1 stores z - 1, undone as GPTQModel's loader does (the packed constant
// 0x11111111 added to each 32-bit word with carry for 2/4/8 bits, each 3-bit field
// plus one modulo 8), which inverts GPTQModel's writer exactly; compressed-tensors
// stores q + 2^(b-1) and zp + 2^(b-1) (offset binary), so codes and zeros come out
// unsigned alike. A module whose config says quantized but that holds a float
// `.weight` and no packed tensor is loaded as float (spec sec. 0, step 4).
#pragma once

#include <memory>

#include "quanta/quant/hf_quant_config.h"
#include "quanta/quant/quant_method.h"

namespace quanta::quant {

std::unique_ptr<QuantMethod> make_hf_quant_method(std::unique_ptr<HfQuantConfig> config);

}  // namespace quanta::quant
