#include "quanta/quant/quant_method.h"

#include <cstring>

#include "quanta/core/error.h"

namespace quanta::quant {

void LinearKernel::dequantize_row(int64_t, float*) const {
  throw Error("a " + format() + " Linear weight cannot be used as an embedding table");
}

}  // namespace quanta::quant

namespace quanta::quant {

ShardRange shard_range(const LinearSpec& spec, int64_t unit, const std::string& unit_name) {
  const bool rows = spec.role != ParallelRole::kRow;
  const int64_t dim = rows ? spec.n_out : spec.n_in;
  if (spec.n_shards <= 1) return {0, dim};
  const int64_t part = dim / spec.n_shards;
  if (dim % spec.n_shards != 0 || part % unit != 0)
    throw Error(std::string(rows ? "output" : "input") + " features (" + std::to_string(dim) + ") do not split into " +
                    std::to_string(spec.n_shards) + " parts of whole " + unit_name + "s of " + std::to_string(unit),
                {.tensor = spec.prefix, .field = "--tp-size"});
  return {spec.shard * part, (spec.shard + 1) * part};
}

// Rows [r.begin, r.end) of a 1-D or 2-D tensor: a view sharing its storage.
Tensor slice_rows(const Tensor& t, ShardRange r) {
  if (r.begin == 0 && r.end == t.dim(0)) return t;
  Shape shape = t.shape();
  shape[0] = r.size();
  const size_t row = t.nbytes() / static_cast<size_t>(t.dim(0));
  return Tensor::view(t.dtype(), shape, static_cast<const uint8_t*>(t.raw()) + r.begin * row, t.storage());
}

// Columns [c.begin, c.end) of a 2-D tensor, copied: the matmul kernels take dense rows.
Tensor copy_columns(const Tensor& t, ShardRange c) {
  Tensor out = Tensor::zeros(t.dtype(), {t.dim(0), c.size()});
  const size_t el = dtype_bytes(t.dtype(), 1), in_row = el * static_cast<size_t>(t.dim(1));
  const size_t out_row = el * static_cast<size_t>(c.size());
  const auto* src = static_cast<const uint8_t*>(t.raw()) + el * static_cast<size_t>(c.begin);
  auto* dst = static_cast<uint8_t*>(out.raw_mut());
  for (int64_t r = 0; r < t.dim(0); ++r) std::memcpy(dst + r * out_row, src + r * in_row, out_row);
  return out;
}

void refuse_shard(const LinearSpec& spec, const std::string& format) {
  if (spec.n_shards > 1)
    throw Error(format + " weights cannot be split for tensor parallelism yet; run with --tp-size 1",
                {.tensor = spec.prefix, .field = "--tp-size"});
}

}  // namespace quanta::quant
