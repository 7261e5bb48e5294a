#include "quanta/quant/quant_method.h"

#include "quanta/core/error.h"

namespace quanta::quant {

void LinearKernel::dequantize_row(int64_t, float*) const {
  throw Error("a " + format() + " Linear weight cannot be used as an embedding table");
}

}  // namespace quanta::quant
