// The gguf method: Linear weights of a GGUF file multiplied in their ggml
// block formats, straight from the mapping (no copy, no repacking), so memory
// is the file plus the KV cache.
//
// Two regimes. A few tokens (decoding) are bandwidth-bound: the activations are
// quantized once to 16-bit blocks and each weight row is
// streamed once through an integer dot kernel (kernels/quant_dot.h). Many tokens
// (prompt processing) are compute-bound: each weight block is unpacked once per
// panel of rows instead of once per token, into 16-bit codes for the integer
// GEMM where the tier has one (AVX-512), else into an f32 tile that stays in
// cache for the f32 matmul kernel (AVX2, the AMX tiles' bf16 parts). Types without
// a dot kernel (the IQ1..IQ3 and TQ grids, or any type on the scalar level) use
// the second regime for every batch size.
#include <algorithm>
#include <cstring>
#include <vector>

#include "quanta/core/error.h"
#include "quanta/core/mapped_file.h"
#include "quanta/core/thread_pool.h"
#include "quanta/format/ggml_types.h"
#include "quanta/format/gguf_model.h"
#include "quanta/kernels/kernels.h"
#include "quanta/kernels/quant_dot.h"
#include "quanta/kernels/tile_gemm.h"
#include "quanta/quant/quant_method.h"

namespace quanta::quant {

namespace {

using format::GgmlType;

// Batches of at least this many tokens take the dequantize-a-tile path even
// when a dot kernel exists. Measured on the default model, 2 threads, `quanta
// bench -p P -n 0`, dot vs tiles: P=4 83 vs 59 t/s, P=8 98 vs 91, P=16 108 vs
// 131, P=32 106 vs 152; 16-stream serving (logits for every token): 43 vs 67.
// The integer GEMM (AVX-512, Zen 4) crosses over at the same size: dot vs GEMM
// P=8 309 vs 210 t/s, P=12 388 vs 275, P=15 394 vs 340, and P=16 422 on the GEMM.
constexpr int64_t kTileMinTokens = 16;
// f32 bytes of a dequantized tile: small enough to stay in L2 next to a block
// of activations.
constexpr int64_t kTileBytes = 96 * 1024;

class GgufLinear : public LinearKernel {
 public:
  // rows [r.begin, r.end) x input features [c.begin, c.end) of the tensor: a view of the
  // mapping (a column range is a run of whole blocks inside each row, read with the
  // full row's stride).
  GgufLinear(const format::GgufFile& file, const format::GgufTensorInfo& info, ShardRange r, ShardRange c, Tensor bias,
             bool prefault)
      : GgufLinear(file.data(info) + r.begin * format::ggml_row_bytes(info.type, info.shape[1]) +
                       format::ggml_row_bytes(info.type, c.begin),
                   file.keepalive(), info.type, r.size(), c.size(), format::ggml_row_bytes(info.type, info.shape[1]),
                   std::move(bias)) {
    if (prefault)
      for (int64_t o = 0; o < n_out_; ++o) touch_pages(weights_ + o * row_stride_, row_bytes_);
  }
  // Dense rows of ggml blocks in memory: blocks is U8 [n_out, ggml_row_bytes(type, n_in)].
  GgufLinear(const Tensor& blocks, GgmlType type, int64_t n_in, Tensor bias)
      : GgufLinear(blocks.data<uint8_t>(), blocks.storage(), type, blocks.dim(0), n_in, format::ggml_row_bytes(type, n_in),
                   std::move(bias)) {}

  GgufLinear(const uint8_t* weights, std::shared_ptr<const void> keepalive, GgmlType type, int64_t n_out, int64_t n_in,
             size_t row_stride, Tensor bias)
      : weights_(weights),
        keepalive_(std::move(keepalive)),
        type_(type),
        n_out_(n_out),
        n_in_(n_in),
        row_bytes_(format::ggml_row_bytes(type, n_in)),
        row_stride_(row_stride),
        bias_(std::move(bias)),
        has_dot_(kernels::quant_dot(static_cast<uint32_t>(type)).fn != nullptr),
        dequant_(kernels::quant_dequant(static_cast<uint32_t>(type))),
        gemm_(kernels::quant_gemm(static_cast<uint32_t>(type))) {}

  void forward(const float* x, int64_t n_tokens, float* y, ThreadPool& pool) const override {
    const int64_t min_tiles = kernels::tiles_usable(kernels::active_isa()) ? kernels::kTileMinTokens : kTileMinTokens;
    if (has_dot_ && n_tokens < min_tiles)
      forward_dot(x, n_tokens, y, pool);
    else if (gemm_ && !kernels::tiles_usable(kernels::active_isa()))
      forward_gemm(x, n_tokens, y, pool);
    else
      forward_tiles(x, n_tokens, y, pool);
    if (!bias_.empty()) {
      const float* b = bias_.data<float>();
      for (int64_t t = 0; t < n_tokens; ++t)
        for (int64_t o = 0; o < n_out_; ++o) y[t * n_out_ + o] += b[o];
    }
  }

  int64_t n_in() const override { return n_in_; }
  int64_t n_out() const override { return n_out_; }
  std::string format() const override { return format::ggml_type_name(type_); }
  size_t weight_bytes() const override { return row_bytes_ * static_cast<size_t>(n_out_); }
  void dequantize_row(int64_t row, float* out) const override {
    format::dequantize_row(type_, weights_ + row * row_stride_, out, n_in_);
  }

 private:
  void forward_dot(const float* x, int64_t n_tokens, float* y, ThreadPool& pool) const {
    // One quantized activation row per token.
    const kernels::QuantDotKernel dot = kernels::quant_dot(static_cast<uint32_t>(type_), static_cast<int>(n_tokens));
    const int64_t row_bytes = kernels::quant_act_bytes(dot.layout, n_in_);
    std::vector<uint8_t> xq(static_cast<size_t>(row_bytes * n_tokens));
    for (int64_t t = 0; t < n_tokens; ++t) kernels::quantize_act(dot.layout, x + t * n_in_, n_in_, xq.data() + t * row_bytes);
    pool.parallel_for(n_out_, 16, [&](int64_t begin, int64_t end) {
      std::vector<float> out(static_cast<size_t>(n_tokens));
      for (int64_t o = begin; o < end; ++o) {
        dot.fn(n_in_, weights_ + o * row_stride_, xq.data(), row_bytes, static_cast<int>(n_tokens), out.data());
        for (int64_t t = 0; t < n_tokens; ++t) y[t * n_out_ + o] = out[static_cast<size_t>(t)];
      }
    });
  }

  // The integer GEMM: activations quantized with the tokens spread over the pool,
  // then panels of rows.
  void forward_gemm(const float* x, int64_t n_tokens, float* y, ThreadPool& pool) const {
    const int64_t row_bytes = kernels::quant_act_bytes(kernels::ActLayout::kQ16, n_in_);
    std::vector<uint8_t> xq(static_cast<size_t>(row_bytes * n_tokens));
    pool.parallel_for(n_tokens, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) kernels::quantize_act(kernels::ActLayout::kQ16, x + t * n_in_, n_in_, xq.data() + t * row_bytes);
    });
    constexpr int64_t kRows = kernels::quant_gemm_rows;
    pool.parallel_for(n_out_, kRows, [&](int64_t begin, int64_t end) {
      for (int64_t o = begin; o < end; o += kRows)
        gemm_(n_in_, weights_ + o * row_stride_, static_cast<int64_t>(row_stride_), static_cast<int>(std::min(kRows, end - o)),
              xq.data(), row_bytes, n_tokens, y + o, n_out_);
    });
  }

  // Decodes rows [o, o + rows) to f32 into tile (rows x n_in).
  void dequantize_rows(int64_t o, int64_t rows, float* tile) const {
    for (int64_t r = 0; r < rows; ++r) {
      const uint8_t* w = weights_ + (o + r) * row_stride_;
      if (dequant_) dequant_(w, tile + r * n_in_, n_in_);
      else format::dequantize_row(type_, w, tile + r * n_in_, n_in_);
    }
  }

  // AMX: tiles of rows dequantized to f32, split in two bf16 parts, multiplied
  // against every token (also split) by the tile GEMM (tile_gemm.h).
  void forward_amx(const float* x, int64_t n_tokens, float* y, ThreadPool& pool) const {
    const int64_t block = format::ggml_type_info(type_).block_size;
    const size_t block_bytes = row_bytes_ / static_cast<size_t>(n_in_ / block);
    kernels::tile_gemm_decoded(
        x, n_tokens, n_in_, n_out_, true, true,
        [&](int64_t n, int64_t rows, int64_t k0, int64_t len, float* out) {
          for (int64_t r = 0; r < rows; ++r) {
            const uint8_t* w = weights_ + (n + r) * row_stride_ + static_cast<size_t>(k0 / block) * block_bytes;
            if (dequant_) dequant_(w, out + r * len, len);
            else format::dequantize_row(type_, w, out + r * len, len);
          }
        },
        y, pool);
  }

  void forward_tiles(const float* x, int64_t n_tokens, float* y, ThreadPool& pool) const {
    if (kernels::tiles_usable(kernels::active_isa())) return forward_amx(x, n_tokens, y, pool);
    const auto matmul = kernels::kernels().matmul_f32;
    const int64_t tile_rows = std::max<int64_t>(4, kTileBytes / (4 * n_in_) / 4 * 4);
    pool.parallel_for(n_out_, tile_rows, [&](int64_t begin, int64_t end) {
      thread_local std::vector<float> tile;
      tile.resize(static_cast<size_t>(tile_rows * n_in_));
      for (int64_t o = begin; o < end; o += tile_rows) {
        const int64_t rows = std::min(tile_rows, end - o);
        dequantize_rows(o, rows, tile.data());
        matmul({x, n_tokens, n_in_, tile.data(), y + o, n_out_, 0, rows});
      }
    });
  }

  const uint8_t* weights_;  // n_out rows of row_bytes_, row_stride_ apart, inside the GGUF mapping
  std::shared_ptr<const void> keepalive_;
  GgmlType type_;
  int64_t n_out_, n_in_;
  size_t row_bytes_, row_stride_;
  Tensor bias_;  // [n_out] f32, or empty
  bool has_dot_;  // the type has dot kernels on this tier (kernels::quant_dot)
  kernels::QuantDequantFn dequant_;  // the fast decoder for tiles, or nullptr (reference)
  kernels::QuantGemmFn gemm_;        // the integer prompt GEMM, or nullptr
};

class GgufMethod : public QuantMethod {
 public:
  std::string name() const override { return "gguf"; }

 protected:
  // llama.cpp multiplies ffn_gate_exps and ffn_up_exps apart; a file may type them differently.
  bool separate_gate_up() const override { return true; }

 public:

  std::unique_ptr<LinearKernel> load_linear(const format::TensorSource& source,
                                            const LinearSpec& spec) const override {
    const auto* gguf = dynamic_cast<const format::GgufTensorSource*>(&source);
    if (!gguf) throw Error("the gguf quantization method reads GGUF files only", {.file = source.location()});
    const std::string wname = spec.prefix + ".weight";
    const format::GgufTensorInfo* info = gguf->gguf_tensor(wname);
    // Float weights (F32/F16/BF16) run through the unquantized kernels, zero-copy.
    if (!info || format::ggml_type_dtype(info->type)) return unquantized_->load_linear(source, spec);

    const auto& type = format::ggml_type_info(info->type);
    if (info->shape != Shape{spec.n_out, spec.n_in})
      throw Error("shape " + shape_str(info->shape) + " does not match the model config, which needs " +
                      shape_str({spec.n_out, spec.n_in}),
                  {.file = gguf->location(), .tensor = info->name});
    if (!type.has_reference)
      throw Error("ggml type " + std::string(type.name) + " is not supported", {.file = gguf->location(), .tensor = info->name});
    const int64_t block = type.block_size;
    const ShardRange split = shard_range(spec, spec.role == ParallelRole::kRow ? block : 1, std::string(type.name) + " block");
    const bool by_rows = spec.role != ParallelRole::kRow;
    const ShardRange rows = by_rows ? split : ShardRange{0, spec.n_out};
    const ShardRange cols = by_rows ? ShardRange{0, spec.n_in} : split;
    Tensor bias;
    if (spec.has_bias && (by_rows || spec.shard == 0)) {
      const std::string bname = spec.prefix + ".bias";
      Tensor full = source.get(bname).to_f32();
      if (full.shape() != Shape{spec.n_out})
        throw Error("shape " + shape_str(full.shape()) + " does not match the model config, which needs " +
                        shape_str({spec.n_out}),
                    {.file = gguf->location(), .tensor = bname});
      bias = Tensor::zeros(DType::kF32, {rows.size()});
      std::copy_n(full.data<float>() + rows.begin, rows.size(), bias.data_mut<float>());
    }
    if (cols.size() < spec.n_in) return row_shard(gguf->file(), *info, cols, std::move(bias));
    return std::make_unique<GgufLinear>(gguf->file(), *info, rows, cols, std::move(bias), !spec.lookup_only);
  }

 private:
  // A row-parallel shard (input features [c.begin, c.end) of every row) copied into owned
  // memory: as a view of the mapping it is a few hundred bytes of every row, so each rank
  // would map every page of the tensor; the copy keeps 1/N of it, and the source pages
  // are dropped from this process once read.
  static std::unique_ptr<LinearKernel> row_shard(const format::GgufFile& file, const format::GgufTensorInfo& info,
                                                 ShardRange c, Tensor bias) {
    const size_t stride = format::ggml_row_bytes(info.type, info.shape[1]),
                 offset = format::ggml_row_bytes(info.type, c.begin), bytes = format::ggml_row_bytes(info.type, c.size());
    const int64_t n_out = info.shape[0];
    Tensor blocks = Tensor::zeros(DType::kU8, {n_out, static_cast<int64_t>(bytes)});
    const uint8_t* src = file.data(info);
    // In runs of rows of about 1 MB, each dropped once copied, so that the peak stays low too.
    const int64_t run = std::max<int64_t>(1, (1 << 20) / static_cast<int64_t>(stride));
    for (int64_t o0 = 0; o0 < n_out; o0 += run) {
      const int64_t o1 = std::min(n_out, o0 + run);
      for (int64_t o = o0; o < o1; ++o) std::memcpy(blocks.data_mut<uint8_t>() + o * bytes, src + o * stride + offset, bytes);
      release_pages(src + o0 * stride, stride * static_cast<size_t>(o1 - o0));
    }
    return std::make_unique<GgufLinear>(blocks, info.type, c.size(), std::move(bias));
  }

  std::unique_ptr<QuantMethod> unquantized_ = make_unquantized_method();
};

}  // namespace

std::unique_ptr<QuantMethod> make_gguf_method() { return std::make_unique<GgufMethod>(); }

std::unique_ptr<LinearKernel> make_ggml_linear(const Tensor& blocks, uint32_t ggml_type, int64_t n_in, Tensor bias) {
  const auto type = static_cast<GgmlType>(ggml_type);
  if (blocks.dtype() != DType::kU8 || blocks.rank() != 2 ||
      blocks.dim(1) != static_cast<int64_t>(format::ggml_row_bytes(type, n_in)))
    throw Error("ggml " + std::string(format::ggml_type_name(type)) + " rows of " + std::to_string(n_in) +
                " inputs need U8 [rows, " + std::to_string(format::ggml_row_bytes(type, n_in)) + "], got " +
                std::string(dtype_name(blocks.dtype())) + " " + shape_str(blocks.shape()));
  return std::make_unique<GgufLinear>(blocks, type, n_in, std::move(bias));
}

}  // namespace quanta::quant
