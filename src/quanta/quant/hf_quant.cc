#include "quanta/quant/hf_quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "quanta/core/error.h"
#include "quanta/quant/fp8_linear.h"
#include "quanta/quant/group_int_linear.h"
#include "quanta/quant/quantized_linear.h"

namespace quanta::quant {

namespace {

// AWQ's interleave: field i of a word holds column 8j + kAwqOrder[i]; column c is in
// field kAwqReverse[c % 8] (checkpoint-formats-2.md sec. 1.3).
constexpr int kAwqReverse[8] = {0, 4, 1, 5, 2, 6, 3, 7};

bool is_float(DType d) { return d == DType::kF32 || d == DType::kBF16 || d == DType::kF16; }

class Reader {
 public:
  Reader(const format::TensorSource& source, const LinearSpec& spec, const LayerQuant& q)
      : source_(source), spec_(spec), q_(q) {}

  bool has(const std::string& suffix) const { return source_.has(spec_.prefix + "." + suffix); }

  // The tensor prefix.suffix with one of `dtypes` and the shape `shape`.
  Tensor get(const std::string& suffix, std::initializer_list<DType> dtypes, const Shape& shape) const {
    const std::string name = spec_.prefix + "." + suffix;
    if (!source_.has(name))
      throw Error("the config quantizes this layer (" + q_.rule + ", " + std::to_string(q_.bits) +
                      " bits) but the checkpoint has no " + name,
                  {.file = source_.location(), .tensor = name});
    Tensor t = source_.get(name);
    if (std::find(dtypes.begin(), dtypes.end(), t.dtype()) == dtypes.end()) {
      std::string list;
      for (DType d : dtypes) list += (list.empty() ? "" : " or ") + std::string(dtype_name(d));
      throw Error("dtype " + std::string(dtype_name(t.dtype())) + ", expected " + list,
                  {.file = source_.file_of(name), .tensor = name});
    }
    if (t.shape() != shape)
      throw Error("shape " + shape_str(t.shape()) + ", but " + std::to_string(q_.bits) + "-bit weights of a [" +
                      std::to_string(spec_.n_out) + ", " + std::to_string(spec_.n_in) + "] Linear (" + q_.rule +
                      ") need " + shape_str(shape),
                  {.file = source_.file_of(name), .tensor = name});
    return t;
  }

  std::string name(const std::string& suffix) const { return spec_.prefix + "." + suffix; }
  // The shape of prefix.suffix, empty when absent (to tell layouts apart).
  Shape shape(const std::string& suffix) const { return has(suffix) ? source_.get(name(suffix)).shape() : Shape{}; }
  // A scale: [rows, cols] or, per tensor, [1].
  Tensor scale(const std::string& suffix, const Shape& full) const {
    const Shape s = shape(suffix);
    return get(suffix, {DType::kF16, DType::kBF16, DType::kF32}, s == Shape{1} ? Shape{1} : full);
  }

 private:
  const format::TensorSource& source_;
  const LinearSpec& spec_;
  const LayerQuant& q_;
};

// Field `index` of a little-endian bit stream of b-bit fields in 32-bit words
// w[0], w[stride], w[2 * stride], ... (fields may straddle two words).
inline uint32_t stream_field(const uint32_t* w, int64_t stride, int64_t index, int b) {
  const int64_t bit = index * b, word = bit / 32;
  const int sh = static_cast<int>(bit % 32);
  uint32_t v = w[word * stride] >> sh;
  if (sh + b > 32) v |= w[(word + 1) * stride] << (32 - sh);
  return v & ((1u << b) - 1);
}

const uint32_t* words(const Tensor& t) { return reinterpret_cast<const uint32_t*>(t.raw()); }

// Scales [G, N] (K-major, GPTQ/AWQ) or [N, G] (compressed-tensors) into w.scale [N, G].
void take_scales(const Tensor& t, bool k_major, GroupIntWeights& w, int64_t n_groups) {
  const Tensor f = t.to_f32();
  const float* s = f.data<float>();
  w.scale.resize(static_cast<size_t>(w.n_out * n_groups));
  for (int64_t n = 0; n < w.n_out; ++n)
    for (int64_t g = 0; g < n_groups; ++g)
      w.scale[n * n_groups + g] = k_major ? s[g * w.n_out + n] : s[f.numel() == 1 ? 0 : n * n_groups + g];
}

void take_g_idx(const Tensor& t, GroupIntWeights& w) { w.g_idx.assign(t.data<int32_t>(), t.data<int32_t>() + w.n_in); }

void load_gptq(const Reader& r, const LayerQuant& q, int64_t n_groups, GroupIntWeights& w) {
  const int64_t K = w.n_in, N = w.n_out;
  const int b = q.bits;
  if ((K * b) % 32 != 0 || (N * b) % 32 != 0)
    throw Error("GPTQ packing needs in and out features whose bit counts are whole 32-bit words (" +
                    std::to_string(K) + " x " + std::to_string(N) + " at " + std::to_string(b) + " bits)",
                {.tensor = r.name("qweight")});
  const Tensor qw = r.get("qweight", {DType::kI32}, {K * b / 32, N});
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < N; ++n) w.q[n * K + k] = static_cast<uint8_t>(stream_field(words(qw) + n, N, k, b));
  take_scales(r.get("scales", {DType::kF16, DType::kBF16, DType::kF32}, {n_groups, N}), true, w, n_groups);
  w.zero.resize(static_cast<size_t>(N * n_groups));
  if (r.has("qzeros")) {
    const Tensor qz = r.get("qzeros", {DType::kI32}, {n_groups, N * b / 32});
    std::vector<uint32_t> row(static_cast<size_t>(N * b / 32));
    // v1 stores z - 1: GPTQModel adds one to every field as a packed constant
    // (with carry between fields) for 2/4/8 bits, and field by field for 3 bits.
    uint32_t one = 0;
    if (q.zero_minus_one && 32 % b == 0)
      for (int i = 0; i < 32 / b; ++i) one |= 1u << (i * b);
    for (int64_t g = 0; g < n_groups; ++g) {
      for (size_t i = 0; i < row.size(); ++i) row[i] = words(qz)[g * static_cast<int64_t>(row.size()) + i] + one;
      for (int64_t n = 0; n < N; ++n) {
        uint32_t z = stream_field(row.data(), 1, n, b);
        if (q.zero_minus_one && b == 3) z = (z + 1) & 7;
        w.zero[n * n_groups + g] = static_cast<int32_t>(z);
      }
    }
  } else if (q.sym) {
    std::fill(w.zero.begin(), w.zero.end(), 1 << (b - 1));
  } else {
    r.get("qzeros", {DType::kI32}, {n_groups, N * b / 32});  // throws: asymmetric weights need their zeros
  }
  if (r.has("g_idx")) take_g_idx(r.get("g_idx", {DType::kI32}, {K}), w);
}

void load_awq(const Reader& r, const LayerQuant& q, int64_t n_groups, GroupIntWeights& w) {
  const int64_t K = w.n_in, N = w.n_out;
  if (N % 8 != 0)
    throw Error("AWQ packs 8 output features per word; " + std::to_string(N) + " is not a multiple of 8",
                {.tensor = r.name("qweight")});
  const Tensor qw = r.get("qweight", {DType::kI32}, {K, N / 8});
  const uint32_t* p = words(qw);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < N; ++n)
      w.q[n * K + k] = static_cast<uint8_t>((p[k * (N / 8) + n / 8] >> (4 * kAwqReverse[n % 8])) & 0xF);
  take_scales(r.get("scales", {DType::kF16, DType::kBF16, DType::kF32}, {n_groups, N}), true, w, n_groups);
  w.zero.assign(static_cast<size_t>(N * n_groups), 8);  // symmetric AWQ without qzeros: 2^(b-1)
  if (r.has("qzeros") || !q.sym) {
    const Tensor qz = r.get("qzeros", {DType::kI32}, {n_groups, N / 8});
    const uint32_t* z = words(qz);
    for (int64_t g = 0; g < n_groups; ++g)
      for (int64_t n = 0; n < N; ++n)
        w.zero[n * n_groups + g] = static_cast<int32_t>((z[g * (N / 8) + n / 8] >> (4 * kAwqReverse[n % 8])) & 0xF);
  }
}

void load_ct(const Reader& r, const LayerQuant& q, int64_t n_groups, bool packed, GroupIntWeights& w) {
  const int64_t K = w.n_in, N = w.n_out;
  const int b = q.bits;
  const int offset = 1 << (b - 1);
  if (r.has("weight_shape")) {
    const Tensor s = r.get("weight_shape", {DType::kI64, DType::kI32}, {2});
    const int64_t d0 = s.dtype() == DType::kI64 ? s.data<int64_t>()[0] : s.data<int32_t>()[0];
    const int64_t d1 = s.dtype() == DType::kI64 ? s.data<int64_t>()[1] : s.data<int32_t>()[1];
    if (d0 != N || d1 != K)
      throw Error("weight_shape [" + std::to_string(d0) + ", " + std::to_string(d1) + "] does not match the model "
                  "config, which needs [" + std::to_string(N) + ", " + std::to_string(K) + "]",
                  {.tensor = r.name("weight_shape")});
  }
  if (packed) {
    const int64_t row_words = (K * b + 31) / 32;
    const Tensor wp = r.get("weight_packed", {DType::kI32}, {N, row_words});
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k)
        w.q[n * K + k] = static_cast<uint8_t>(stream_field(words(wp) + n * row_words, 1, k, b));
  } else {
    const Tensor wt = r.get("weight", {DType::kI8}, {N, K});
    const int8_t* v = wt.data<int8_t>();
    for (int64_t i = 0; i < N * K; ++i) {
      const int c = v[i] + offset;
      if (c < 0 || c >= 2 * offset)
        throw Error("value " + std::to_string(v[i]) + " is outside the " + std::to_string(b) + "-bit range",
                    {.tensor = r.name("weight")});
      w.q[i] = static_cast<uint8_t>(c);
    }
  }
  const Shape full{N, n_groups};
  take_scales(r.scale("weight_scale", full), false, w, n_groups);
  w.zero.assign(static_cast<size_t>(N * n_groups), offset);
  if (!q.sym) {
    const std::string zname = "weight_zero_point";
    const int64_t zrows = (N * b + 31) / 32;
    if (packed && r.shape(zname) == Shape{zrows, n_groups} && zrows != N) {
      // Packed along the output dimension, offset binary like the weights.
      const Tensor zp = r.get(zname, {DType::kI32}, {zrows, n_groups});
      for (int64_t g = 0; g < n_groups; ++g)
        for (int64_t n = 0; n < N; ++n)
          w.zero[n * n_groups + g] = static_cast<int32_t>(stream_field(words(zp) + g, n_groups, n, b));
    } else {
      const Tensor zp = r.get(zname, {DType::kI8, DType::kI32}, full).to_f32();
      for (int64_t i = 0; i < N * n_groups; ++i) w.zero[i] = static_cast<int32_t>(zp.data<float>()[i]) + offset;
    }
  }
  if (r.has("weight_g_idx")) take_g_idx(r.get("weight_g_idx", {DType::kI32}, {K}), w);
}

std::string describe(const std::string& method, const LayerQuant& q, int64_t group, int64_t K, bool act_order) {
  std::string s = method + " W" + std::to_string(q.bits) + (q.act_dynamic8 ? "A8" : "A16") + " " +
                  (group == K ? std::string("per-channel") : "g" + std::to_string(group)) + (q.sym ? " sym" : " asym");
  if (act_order) s += " act-order";
  return s;
}

// Spec's shard of unpacked group-int weights: whole groups of input features for a
// row-parallel layer (a per-channel layer splits anywhere: its one group becomes the
// shard's), rows for a column-parallel one. Act-order across an input split is refused:
// the shard's columns would need groups of the other shards.
GroupIntWeights shard_group_int(const GroupIntWeights& w, const LinearSpec& spec, bool act_order) {
  const bool by_rows = spec.role != ParallelRole::kRow;
  const bool per_channel = w.group_size == w.n_in;
  if (!by_rows && act_order)
    throw Error("act-order (g_idx) weights cannot be split along their input features for tensor parallelism yet",
                {.tensor = spec.prefix + ".g_idx", .field = "--tp-size"});
  const ShardRange split = shard_range(spec, by_rows || per_channel ? 1 : w.group_size, "quantization group");
  const ShardRange rows = by_rows ? split : ShardRange{0, w.n_out};
  const ShardRange cols = by_rows ? ShardRange{0, w.n_in} : split;
  const int64_t n_groups = w.n_in / w.group_size;
  const ShardRange groups = by_rows || per_channel ? ShardRange{0, n_groups}
                                                   : ShardRange{cols.begin / w.group_size, cols.end / w.group_size};
  GroupIntWeights s;
  s.n_out = rows.size();
  s.n_in = cols.size();
  s.bits = w.bits;
  s.group_size = per_channel ? cols.size() : w.group_size;
  s.act_int8 = w.act_int8;
  s.format = w.format;
  for (int64_t r = rows.begin; r < rows.end; ++r) {
    s.q.insert(s.q.end(), w.q.begin() + r * w.n_in + cols.begin, w.q.begin() + r * w.n_in + cols.end);
    s.scale.insert(s.scale.end(), w.scale.begin() + r * n_groups + groups.begin, w.scale.begin() + r * n_groups + groups.end);
    if (!w.zero.empty())
      s.zero.insert(s.zero.end(), w.zero.begin() + r * n_groups + groups.begin, w.zero.begin() + r * n_groups + groups.end);
  }
  if (!w.g_idx.empty() && by_rows) s.g_idx = w.g_idx;  // act-order rows keep the whole input order
  if (!w.bias.empty() && (by_rows || spec.shard == 0))
    s.bias.assign(w.bias.begin() + rows.begin, w.bias.begin() + rows.end);
  return s;
}

class HfQuantMethod : public QuantMethod {
 public:
  explicit HfQuantMethod(std::unique_ptr<HfQuantConfig> cfg) : cfg_(std::move(cfg)) {}

  std::string name() const override { return cfg_->method(); }

  std::unique_ptr<LinearKernel> load_linear(const format::TensorSource& source,
                                            const LinearSpec& spec) const override {
    const LayerQuant q = cfg_->resolve(spec.prefix);
    const std::string& P = spec.prefix;
    const bool packed_on_disk = source.has(P + ".qweight") || source.has(P + ".weight_packed");
    if (q.layout == HfLayout::kFloat) {
      if (packed_on_disk)
        throw Error("the config leaves this layer unquantized (" + q.rule + ") but the checkpoint stores it packed",
                    {.file = cfg_->file(), .tensor = P + (source.has(P + ".qweight") ? ".qweight" : ".weight_packed")});
      return float_->load_linear(source, spec);
    }
    const std::string main = q.layout == HfLayout::kGptq || q.layout == HfLayout::kAwq ? "qweight"
                             : q.layout == HfLayout::kCtPacked                         ? "weight_packed"
                                                                                       : "weight";
    if (!source.has(P + "." + main) && q.layout != HfLayout::kCtInt && source.has(P + ".weight") &&
        is_float(source.get(P + ".weight").dtype()))
      return float_->load_linear(source, spec);  // a float module, whatever the config says (spec sec. 0)
    if ((q.layout == HfLayout::kCtInt || q.layout == HfLayout::kCtFp8) && source.has(P + ".weight") &&
        is_float(source.get(P + ".weight").dtype()) &&
        !source.has(P + ".weight_scale"))
      return float_->load_linear(source, spec);
    const int64_t K = spec.n_in, N = spec.n_out;
    const int64_t G = q.group_size < 0 ? K : q.group_size;
    if (K % G != 0)
      throw Error("group_size " + std::to_string(G) + " does not divide the input features (" + std::to_string(K) +
                      ")",
                  {.file = cfg_->file(), .tensor = P + "." + main, .field = "group_size"});
    const int64_t n_groups = K / G;
    Reader r(source, spec, q);
    Tensor bias;
    std::vector<float> bias_v;
    if (spec.has_bias || source.has(P + ".bias")) {
      bias = r.get("bias", {DType::kF16, DType::kBF16, DType::kF32}, {N}).to_f32();
      bias_v.assign(bias.data<float>(), bias.data<float>() + N);
    }

    if (q.layout == HfLayout::kCtFp8) {
      Fp8LinearWeights fw;
      fw.weight = r.get("weight", {DType::kF8E4M3}, {N, K});
      Shape scale_shape{N, 1};
      if (q.block_n > 0) scale_shape = {(N + q.block_n - 1) / q.block_n, (K + q.block_k - 1) / q.block_k};
      else if (r.shape("weight_scale") == Shape{1}) scale_shape = {1};
      const Tensor sc = r.get("weight_scale", {DType::kF32, DType::kBF16, DType::kF16}, scale_shape).to_f32();
      fw.scale.assign(sc.data<float>(), sc.data<float>() + sc.numel());
      if (sc.numel() == 1) fw.scale.assign(static_cast<size_t>(N), fw.scale[0]);
      fw.block_n = q.block_n;
      fw.block_k = q.block_k;
      fw.act = q.fp8_act;
      fw.act_group = q.act_group;
      if (q.fp8_act == Fp8Act::kStatic) {
        const Shape is = r.shape("input_scale");
        fw.input_scale = r.get("input_scale", {DType::kF32, DType::kBF16, DType::kF16}, is.size() == 2 ? Shape{1, 1} : Shape{1})
                             .to_f32()
                             .data<float>()[0];
        if (!(fw.input_scale > 0.0f) || !std::isfinite(fw.input_scale))
          throw Error("input_scale " + std::to_string(fw.input_scale) + " is not a positive number",
                      {.file = source.file_of(P + ".input_scale"), .tensor = P + ".input_scale"});
      }
      fw.bias = std::move(bias_v);
      fw.format = cfg_->method() + " FP8 E4M3 " +
                  (q.block_n > 0 ? "block " + std::to_string(q.block_n) + "x" + std::to_string(q.block_k)
                                 : std::string("per-channel")) +
                  (q.fp8_act == Fp8Act::kNone ? " A16" : " A8");
      return make_fp8_linear(shard_fp8_linear(std::move(fw), spec));
    }
    if (q.act_dynamic8 && q.layout == HfLayout::kCtInt && q.bits == 8 && q.sym) {
      // compressed-tensors W8A8: int8 weights and per-token int8 activations.
      IntLinearWeights iw;
      iw.scheme = Scheme::kW8A8Dynamic;
      iw.weight = r.get("weight", {DType::kI8}, {N, K});
      GroupIntWeights tmp;
      tmp.n_out = N;
      take_scales(r.scale("weight_scale", {N, n_groups}), false, tmp, n_groups);
      iw.scale = std::move(tmp.scale);
      iw.group_size = G;
      iw.act_full_range = true;  // compressed-tensors: s = amax / 127.5, x_q in [-128, 127]
      iw.bias = std::move(bias_v);
      return make_int_linear(shard_int_linear(std::move(iw), spec));
    }

    GroupIntWeights w;
    w.n_out = N;
    w.n_in = K;
    w.bits = q.bits;
    w.group_size = G;
    w.q.resize(static_cast<size_t>(N * K));
    std::string g_idx_name = P + ".g_idx";
    switch (q.layout) {
      case HfLayout::kGptq: load_gptq(r, q, n_groups, w); break;
      case HfLayout::kAwq: load_awq(r, q, n_groups, w); break;
      default:
        load_ct(r, q, n_groups, q.layout == HfLayout::kCtPacked, w);
        g_idx_name = P + ".weight_g_idx";
        break;
    }
    bool act_order = false;
    for (int64_t k = 0; k < static_cast<int64_t>(w.g_idx.size()) && !act_order; ++k) act_order = w.g_idx[k] != k / G;
    w.format = describe(cfg_->method(), q, G, K, act_order);
    w.act_int8 = q.act_dynamic8;
    w.bias = std::move(bias_v);
    if (spec.n_shards > 1) w = shard_group_int(w, spec, act_order);
    return make_group_int_linear(std::move(w), g_idx_name);
  }

 private:
  std::unique_ptr<HfQuantConfig> cfg_;
  std::unique_ptr<QuantMethod> float_ = make_unquantized_method();
};

}  // namespace

std::unique_ptr<QuantMethod> make_hf_quant_method(std::unique_ptr<HfQuantConfig> config) {
  return std::make_unique<HfQuantMethod>(std::move(config));
}

}  // namespace quanta::quant
