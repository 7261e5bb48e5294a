#include "quanta/core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include <sys/mman.h>

#include "quanta/core/error.h"

namespace quanta {

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

Tensor Tensor::zeros(DType dtype, Shape shape) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  size_t bytes = (t.nbytes() + 63) / 64 * 64;
  // Large tensors (weights repacked or converted at load) get 2 MB pages: they
  // are streamed once per token, and 4 KB pages cost a TLB miss each.
  constexpr size_t kHuge = size_t{2} << 20;
  void* p = nullptr;
  if (bytes >= kHuge) {
    bytes = (bytes + kHuge - 1) / kHuge * kHuge;
    p = std::aligned_alloc(kHuge, bytes);
    if (p) ::madvise(p, bytes, MADV_HUGEPAGE);
  } else {
    p = std::aligned_alloc(64, bytes == 0 ? 64 : bytes);
  }
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, bytes);
  t.storage_ = std::shared_ptr<const void>(p, [](const void* q) { std::free(const_cast<void*>(q)); });
  t.data_ = p;
  t.owned_ = true;
  return t;
}

Tensor Tensor::view(DType dtype, Shape shape, const void* data, std::shared_ptr<const void> keepalive) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.data_ = data;
  t.storage_ = std::move(keepalive);
  return t;
}

void* Tensor::raw_mut() {
  QUANTA_ASSERT(owned_);
  return const_cast<void*>(data_);
}

Tensor Tensor::to_f32() const {
  Tensor out = zeros(DType::kF32, shape_);
  convert_to_f32(dtype_, data_, out.data_mut<float>(), static_cast<size_t>(numel()));
  return out;
}

}  // namespace quanta
