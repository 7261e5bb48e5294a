#include "quanta/quant/quant_method.h"

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

void refuse_shard(const LinearSpec& spec, const std::string& format) {
  if (spec.n_shards > 1)
    throw Error(format + " weights cannot be split for tensor parallelism yet; run with --tp-size 1",
                {.tensor = spec.prefix, .field = "--tp-size"});
}

}  // namespace quanta::quant
