// Tensor: dtype, shape and contiguous row-major storage.
//
// Storage is either owned (64-byte aligned heap buffer) or a view into memory
// kept alive by someone else (an mmap'd checkpoint file). A Tensor is cheap to
// copy: copies share the storage. There is no autograd and no device notion.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "quanta/core/dtype.h"

namespace quanta {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& s);  // "[4, 8]"

class Tensor {
 public:
  Tensor() = default;

  // Zero-filled owned tensor.
  static Tensor zeros(DType dtype, Shape shape);
  // View into memory owned by `keepalive` (e.g. a mapped file).
  static Tensor view(DType dtype, Shape shape, const void* data,
                     std::shared_ptr<const void> keepalive);

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t dim(size_t i) const { return shape_.at(i); }
  size_t rank() const { return shape_.size(); }
  int64_t numel() const;
  size_t nbytes() const { return dtype_bytes(dtype_, static_cast<size_t>(numel())); }
  bool empty() const { return data_ == nullptr; }

  const void* raw() const { return data_; }
  // Mutable access; only owned tensors are writable.
  void* raw_mut();
  template <typename T> const T* data() const { return static_cast<const T*>(data_); }
  template <typename T> T* data_mut() { return static_cast<T*>(raw_mut()); }

  // The whole tensor converted to f32 (an owned copy).
  Tensor to_f32() const;
  // What keeps the data alive (the allocation or the mapped file).
  const std::shared_ptr<const void>& storage() const { return storage_; }

 private:
  DType dtype_ = DType::kF32;
  Shape shape_;
  const void* data_ = nullptr;
  bool owned_ = false;
  std::shared_ptr<const void> storage_;
};

}  // namespace quanta
