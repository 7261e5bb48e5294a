// The unquantized method: f32/bf16/f16 weights multiplied as stored.
#include <algorithm>
#include <cstring>

#include "quanta/core/error.h"
#include "quanta/core/mapped_file.h"
#include "quanta/core/thread_pool.h"
#include "quanta/kernels/kernels.h"
#include "quanta/kernels/tile_gemm.h"
#include "quanta/quant/group_int_linear.h"
#include "quanta/quant/quant_method.h"

namespace quanta::quant {

namespace {

class FloatLinear : public LinearKernel {
 public:
  FloatLinear(Tensor weight, Tensor bias) : weight_(std::move(weight)), bias_(std::move(bias)) {
    const auto& kt = kernels::kernels();
    switch (weight_.dtype()) {
      case DType::kF32: matmul_ = kt.matmul_f32; break;
      case DType::kBF16: matmul_ = kt.matmul_bf16; break;
      default: matmul_ = kt.matmul_f16; break;
    }
  }

  void forward(const float* x, int64_t n_tokens, float* y, ThreadPool& pool) const override {
    const int64_t n_out = this->n_out(), n_in = this->n_in();
    if (weight_.dtype() == DType::kBF16 && n_tokens >= kernels::kTileMinTokens &&
        kernels::tiles_usable(kernels::active_isa())) {
      // bf16 weights are AMX tiles as stored, against activations split in two bf16 parts.
      const kernels::TileVector<uint8_t> xp = kernels::tile_pack_bf16(x, n_in, n_tokens, n_in, true, pool);
      pool.parallel_for(n_out, 32, [&](int64_t begin, int64_t end) {
        kernels::tile_gemm_bf16(kernels::tile_terms_w_xsplit(
            {xp.data(), n_tokens, n_in, weight_.raw(), 2 * n_in, begin, end, y + begin, n_out}));
      });
    } else {
      // Split output rows over threads in multiples of 16 (whole register tiles).
      pool.parallel_for(n_out, 16, [&](int64_t begin, int64_t end) {
        matmul_({x, n_tokens, n_in, weight_.raw(), y, n_out, begin, end});
      });
    }
    if (!bias_.empty()) {
      const float* b = bias_.data<float>();
      for (int64_t t = 0; t < n_tokens; ++t)
        for (int64_t o = 0; o < n_out; ++o) y[t * n_out + o] += b[o];
    }
  }
  int64_t n_in() const override { return weight_.dim(1); }
  int64_t n_out() const override { return weight_.dim(0); }
  std::string format() const override { return std::string(dtype_name(weight_.dtype())); }
  size_t weight_bytes() const override { return weight_.nbytes(); }
  void dequantize_row(int64_t row, float* out) const override {
    const size_t n = static_cast<size_t>(n_in());
    convert_to_f32(weight_.dtype(), static_cast<const uint8_t*>(weight_.raw()) + row * dtype_bytes(weight_.dtype(), n),
                   out, n);
  }

 private:
  Tensor weight_;  // [n_out, n_in], f32/bf16/f16, a view into the checkpoint
  Tensor bias_;    // [n_out] f32, or empty
  kernels::MatmulFn matmul_;
};

void check_tensor(const format::TensorSource& source, const std::string& name, const Tensor& t,
                  const Shape& expected) {
  if (t.shape() != expected)
    throw Error("shape " + shape_str(t.shape()) + " does not match the model config, which needs " +
                    shape_str(expected),
                {.file = source.file_of(name), .tensor = name});
  DType d = t.dtype();
  if (d != DType::kF32 && d != DType::kBF16 && d != DType::kF16)
    throw Error("dtype " + std::string(dtype_name(d)) +
                    " is not a float type; an unquantized layer needs F32, BF16 or F16",
                {.file = source.file_of(name), .tensor = name});
}

class UnquantizedMethod : public QuantMethod {
 public:
  std::string name() const override { return "unquantized"; }

  std::unique_ptr<LinearKernel> load_linear(const format::TensorSource& source,
                                            const LinearSpec& spec) const override {
    std::string wname = spec.prefix + ".weight";
    Tensor w = source.get(wname);
    check_tensor(source, wname, w, {spec.n_out, spec.n_in});
    const ShardRange split = shard_range(spec, 1, "element");
    const bool by_rows = spec.role != ParallelRole::kRow;
    const ShardRange rows = by_rows ? split : ShardRange{0, spec.n_out};
    if (spec.n_shards > 1) w = by_rows ? slice_rows(w, rows) : copy_columns(w, split);
    if (!spec.lookup_only) touch_pages(w.raw(), w.nbytes());
    Tensor b;
    if (spec.has_bias && (by_rows || spec.shard == 0)) {
      std::string bname = spec.prefix + ".bias";
      Tensor raw = source.get(bname);
      check_tensor(source, bname, raw, {spec.n_out});
      b = slice_rows(raw.to_f32(), rows);
    }
    return std::make_unique<FloatLinear>(std::move(w), std::move(b));
  }
};

}  // namespace

std::unique_ptr<QuantMethod> make_unquantized_method() { return std::make_unique<UnquantizedMethod>(); }

std::unique_ptr<LinearKernel> make_float_linear(Tensor weight, Tensor bias) {
  return std::make_unique<FloatLinear>(std::move(weight), std::move(bias));
}

}  // namespace quanta::quant
