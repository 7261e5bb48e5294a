// TensorSource: "give me tensor NAME of the checkpoint".
//
// Loaders ask a source for tensors by name; they never open files themselves.
// Implementations (safetensors folders, later GGUF files) validate their
// container when opened, so every tensor handed out has a known dtype and shape
// and data that lies inside its file. Tensors are zero-copy views where the
// container allows it.
#pragma once

#include <string>
#include <vector>

#include "quanta/core/tensor.h"

namespace quanta::format {

class TensorSource {
 public:
  virtual ~TensorSource() = default;

  // Whether the checkpoint holds a tensor of this name.
  virtual bool has(const std::string& name) const = 0;
  // The tensor; throws Error naming the tensor (and where it was looked for) if absent.
  virtual Tensor get(const std::string& name) const = 0;
  // The file a tensor lives in, for error messages ("" if unknown).
  virtual std::string file_of(const std::string& name) const = 0;
  // Bytes the tensor occupies in the checkpoint (for load progress; no read).
  virtual size_t stored_bytes(const std::string& name) const { return get(name).nbytes(); }
  // All tensor names, sorted.
  virtual std::vector<std::string> names() const = 0;
  // A short description of the checkpoint for messages (its folder or file).
  virtual std::string location() const = 0;
};

}  // namespace quanta::format
