// Writes a safetensors file one tensor at a time, so a writer never holds more
// than the tensor it is producing: the header (names, dtypes, shapes, offsets) is
// laid out first from the plan, then each tensor's bytes come from its producer
// in plan order. The header is padded with spaces to a multiple of 8 bytes, as
// the reference writer does.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "quanta/core/tensor.h"

namespace quanta::format {

struct PlannedTensor {
  std::string name;
  DType dtype;
  Shape shape;
  // Returns the tensor's bytes (dtype and shape as planned; checked).
  std::function<Tensor()> produce;
};

// Throws Error naming the file (I/O) or the tensor (a producer that breaks its plan).
void write_safetensors(const std::string& path, const std::vector<PlannedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace quanta::format
