// Reference kernels: plain loops, obviously right. They are the truth the fast
// kernels are tested against and the scalar path on CPUs without AVX2.
#include "quanta/core/dtype.h"
#include "quanta/kernels/kernels.h"
#include "quanta/kernels/ops.h"

namespace quanta::kernels {

namespace {

template <typename LoadW>
void matmul_ref(const MatmulArgs& a, LoadW load_w) {
  for (int64_t t = 0; t < a.n_tokens; ++t) {
    const float* x = a.x + t * a.n_in;
    for (int64_t o = a.o_begin; o < a.o_end; ++o) {
      float sum = 0.0f;
      for (int64_t k = 0; k < a.n_in; ++k) sum += x[k] * load_w(o * a.n_in + k);
      a.y[t * a.ldy + o] = sum;
    }
  }
}

void matmul_f32_ref(const MatmulArgs& a) {
  const float* w = static_cast<const float*>(a.w);
  matmul_ref(a, [w](int64_t i) { return w[i]; });
}

void matmul_bf16_ref(const MatmulArgs& a) {
  const uint16_t* w = static_cast<const uint16_t*>(a.w);
  matmul_ref(a, [w](int64_t i) { return bf16_to_f32(w[i]); });
}

void matmul_f16_ref(const MatmulArgs& a) {
  const uint16_t* w = static_cast<const uint16_t*>(a.w);
  matmul_ref(a, [w](int64_t i) { return f16_to_f32(w[i]); });
}

float dot_f32_ref(const float* a, const float* b, int64_t n) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

void axpy_f32_ref(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

void silu_mul_ref(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = silu(gate[i]) * up[i];
}

void gelu_tanh_mul_ref(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = gelu_tanh(gate[i]) * up[i];
}

}  // namespace

const KernelTable& reference_table() {
  static const KernelTable table = {Isa::kScalar, matmul_f32_ref, matmul_bf16_ref, matmul_f16_ref, matmul_f32_ref,
                                    dot_f32_ref, axpy_f32_ref, silu_mul_ref, gelu_tanh_mul_ref};
  return table;
}

}  // namespace quanta::kernels
