// QuantMethod: turns a layer's checkpoint tensors into a ready-to-run kernel.
//
// One method per quantization family (unquantized, later modelslim, awq, gptq,
// auto-round, compressed-tensors, gguf, mx). Given a layer's name, role and
// shapes, a method reads that layer's tensors from a TensorSource, validates
// their names, dtypes and shapes (an Error naming the tensor otherwise), and
// returns a LinearKernel. Repacking into a kernel-friendly layout happens here,
// once, at load. Model code only sees LinearKernel, so adding a format never
// touches model code.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "quanta/format/tensor_source.h"

namespace quanta {
class ThreadPool;
}

namespace quanta::quant {

// How a Linear is split under tensor parallelism: column-parallel layers split
// their output features (q/k/v, gate/up), row-parallel ones their input features
// and sum partial outputs (o_proj, down_proj). Replicated layers are not split.
enum class ParallelRole { kColumn, kRow, kReplicated };

struct LinearSpec {
  std::string prefix;  // checkpoint name without ".weight", e.g. "model.layers.0.self_attn.q_proj"
  int64_t n_in = 0;
  int64_t n_out = 0;
  bool has_bias = false;
  ParallelRole role = ParallelRole::kReplicated;
  // Under tensor parallelism, the part of the Linear this rank keeps: shard `shard` of
  // `n_shards` equal parts of the output features (kColumn) or of the input features
  // (kRow). n_in and n_out stay the whole layer's (what the checkpoint holds); the
  // kernel's are the shard's. A row-parallel shard other than 0 leaves the bias out
  // (the partial outputs are summed). 1: the whole Linear.
  int64_t shard = 0, n_shards = 1;
  // A row-parallel shard's way to make per-token statistics the whole row's: replaces
  // values[0, n) by their maximum over the shards (an all-reduce). Kernels that scale
  // activations by each token's max |x| (dynamic int8 / int4) use it, so that every shard
  // quantizes with the scale one process would. Empty: nothing to combine.
  std::function<void(float* values, int64_t n)> reduce_max;
  // An embedding table only looked up a row at a time (lm_head is another kernel): its
  // pages are left to be mapped on first use instead of prefaulted at load.
  bool lookup_only = false;
};

// [begin, end) of spec's shard along its split dimension (rows for kColumn, input
// features for kRow); the whole dimension when n_shards is 1. Throws Error naming the
// layer when the dimension does not split into n_shards parts of whole `unit`s (a
// format's block or group, `unit_name` in the message).
struct ShardRange {
  int64_t begin, end;
  int64_t size() const { return end - begin; }
};
ShardRange shard_range(const LinearSpec& spec, int64_t unit, const std::string& unit_name);
// Rows [r.begin, r.end) of a 1-D or 2-D tensor: a view sharing its storage.
Tensor slice_rows(const Tensor& t, ShardRange r);
// Columns [c.begin, c.end) of a 2-D tensor, copied: the matmul kernels take dense rows.
Tensor copy_columns(const Tensor& t, ShardRange c);
// Throws Error when spec asks for a shard: `format` cannot be split for tensor parallelism yet.
void refuse_shard(const LinearSpec& spec, const std::string& format);

class LinearKernel {
 public:
  virtual ~LinearKernel() = default;
  // y[n_tokens, n_out] = x[n_tokens, n_in] * W^T (+ bias). f32 in and out.
  virtual void forward(const float* x, int64_t n_tokens, float* y, ThreadPool& pool) const = 0;
  virtual int64_t n_in() const = 0;
  virtual int64_t n_out() const = 0;
  // Short description of the stored format ("bf16", "f32", ...), for inspect/logs.
  virtual std::string format() const = 0;
  // Bytes of weight data the kernel reads per forward pass.
  virtual size_t weight_bytes() const = 0;
  // Row `row` of W (the n_in weights of one output feature) as f32: how an
  // embedding table stored as a Linear weight is looked up.
  virtual void dequantize_row(int64_t row, float* out) const;
};

// One layer's routed experts: `prefix` + ".E." + a projection name + ".weight"...
// (gate/up/down = gate_proj/up_proj/down_proj, or Mixtral's w1/w3/w2).
struct MoeSpec {
  std::string prefix;  // e.g. "model.layers.3.mlp.experts"
  std::string gate = "gate_proj", up = "up_proj", down = "down_proj";
  int64_t n_experts = 0;
  int64_t hidden = 0;
  int64_t d_ff = 0;  // one expert's intermediate size (the whole of it, as stored)
  bool bias = false;  // every projection has <name>.bias (gpt-oss)
  // Under tensor parallelism, the part of every expert this rank keeps: gate/up by rows,
  // down by input features, as LinearSpec's shard / n_shards / reduce_max (1: whole).
  int64_t shard = 0, n_shards = 1;
  std::function<void(float* values, int64_t n)> reduce_max;
  // Expert parallelism instead (--enable-ep-moe): shard s of n_shards keeps experts
  // [s E / n, (s + 1) E / n) whole and none of the others.
  bool expert_parallel = false;
  bool keeps_expert(int64_t e) const {
    return !expert_parallel || n_shards <= 1 || e * n_shards / n_experts == shard;
  }
};

// The grouped matmuls of one layer's experts: each call multiplies the rows of the
// tokens routed to one expert by that expert's weights. w13 (gate+up) and w2 (down)
// may have different schemes; experts of one layer may too. The router, the
// activation and the weighted scatter back are the model's (model/moe.h).
class MoeKernel {
 public:
  virtual ~MoeKernel() = default;
  // Whether this rank holds expert e (expert parallelism leaves the others out).
  virtual bool has_expert(int64_t e) const = 0;
  // gate[n, d_ff], up[n, d_ff] for rows x[n, hidden] routed to expert e.
  virtual void gate_up(int64_t e, const float* x, int64_t n, float* gate, float* up, ThreadPool& pool) const = 0;
  // y[n, hidden] for h[n, d_ff].
  virtual void down(int64_t e, const float* h, int64_t n, float* y, ThreadPool& pool) const = 0;
  virtual int64_t n_experts() const = 0;
  // The stored formats of w13 and w2, for inspect and logs ("q4_K", "Q6_K/Q8_0" when experts differ).
  virtual std::string w13_format() const = 0;
  virtual std::string w2_format() const = 0;
  // Bytes of all experts' weights (a step reads only the chosen experts').
  virtual size_t weight_bytes() const = 0;
};

class QuantMethod {
 public:
  virtual ~QuantMethod() = default;
  virtual std::string name() const = 0;
  virtual std::unique_ptr<LinearKernel> load_linear(const format::TensorSource& source,
                                                    const LinearSpec& spec) const = 0;
  // The experts of one layer. The default loads each expert projection as a Linear
  // through load_linear, so every scheme a method reads for Linear layers works for
  // experts too, zero-copy where its Linear is. Throws Error naming the layer and
  // expert when the checkpoint's experts do not match spec.n_experts, and (unless the
  // format stores gate and up apart, as GGUF does) when an expert's gate and up differ.
  // `names` is source.names() (sorted), listed once by the caller for every layer.
  virtual std::unique_ptr<MoeKernel> load_experts(const format::TensorSource& source, const MoeSpec& spec,
                                                  const std::vector<std::string>& names) const;

 protected:
  // Whether gate and up of an expert may have different schemes (they are never fused).
  virtual bool separate_gate_up() const { return false; }
};

// Float weights (f32, bf16, f16) used as stored, zero-copy from the checkpoint.
std::unique_ptr<QuantMethod> make_unquantized_method();
// GGUF weights multiplied in their ggml block formats, read from the file's
// mapping (float GGUF weights go to the unquantized kernels). Needs a
// format::GgufTensorSource.
std::unique_ptr<QuantMethod> make_gguf_method();
// A Linear over ggml blocks held in memory (a checkpoint's quantized weights repacked
// once into a ggml block layout, then run by the GGUF kernels): blocks U8 [n_out,
// ggml_row_bytes(type, n_in)], bias [n_out] f32 or empty.
std::unique_ptr<LinearKernel> make_ggml_linear(const Tensor& blocks, uint32_t ggml_type, int64_t n_in, Tensor bias);

}  // namespace quanta::quant
