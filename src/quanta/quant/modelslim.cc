#include "quanta/quant/modelslim.h"

#include <cmath>
#include <cstring>

#include "quanta/core/error.h"
#include "quanta/core/mx.h"
#include "quanta/quant/hf_quant.h"
#include "quanta/quant/quantized_linear.h"

namespace quanta::quant {

namespace {

bool is_float(DType d) { return d == DType::kF32 || d == DType::kBF16 || d == DType::kF16; }

std::string dtypes_str(std::initializer_list<DType> ds) {
  std::string s;
  for (DType d : ds) s += (s.empty() ? "" : " or ") + std::string(dtype_name(d));
  return s;
}

// One layer's tensors, fetched and checked by name.
class LayerReader {
 public:
  LayerReader(const format::TensorSource& source, std::string prefix, Scheme scheme)
      : source_(source), prefix_(std::move(prefix)), scheme_(scheme) {}

  Tensor get(const std::string& suffix, std::initializer_list<DType> dtypes, const Shape& shape) const {
    Tensor t = get_unshaped(suffix, dtypes, shape_str(shape));
    if (t.shape() != shape)
      throw error(suffix, "shape " + shape_str(t.shape()) + ", but a " + scheme_name(scheme_) + " layer needs " +
                              shape_str(shape));
    return t;
  }
  // Presence and dtype only; `shape_hint` says what is wanted in the message.
  Tensor get_unshaped(const std::string& suffix, std::initializer_list<DType> dtypes,
                      const std::string& shape_hint) const {
    const std::string name = prefix_ + "." + suffix;
    if (!source_.has(name))
      throw Error(std::string("missing tensor: a ") + scheme_name(scheme_) + " layer needs " + name + " (" +
                      dtypes_str(dtypes) + " " + shape_hint + ")",
                  {.file = source_.location(), .tensor = name});
    Tensor t = source_.get(name);
    bool ok = false;
    for (DType d : dtypes) ok |= t.dtype() == d;
    if (!ok)
      throw Error("dtype " + std::string(dtype_name(t.dtype())) + ", but a " + scheme_name(scheme_) + " layer needs " +
                      dtypes_str(dtypes), {.file = source_.file_of(name), .tensor = name});
    return t;
  }
  bool has(const std::string& suffix) const { return source_.has(prefix_ + "." + suffix); }
  Error error(const std::string& suffix, const std::string& msg) const {
    const std::string name = prefix_ + "." + suffix;
    return Error(msg, {.file = source_.file_of(name), .tensor = name});
  }
  std::vector<float> floats(const Tensor& t) const {
    Tensor f = t.to_f32();
    return std::vector<float>(f.data<float>(), f.data<float>() + f.numel());
  }
  // Optional float bias [n_out].
  std::vector<float> bias(int64_t n_out) const {
    if (!has("bias")) return {};
    return floats(get("bias", {DType::kF32, DType::kBF16, DType::kF16}, {n_out}));
  }
  const std::string& prefix() const { return prefix_; }

 private:
  const format::TensorSource& source_;
  std::string prefix_;
  Scheme scheme_;
};

// weight_scale [N, 1] or [N, K/G]: returns the group size along K.
int64_t scale_groups(const LayerReader& r, const Tensor& scale, int64_t n_out, int64_t n_in, int64_t desc_group) {
  if (scale.rank() != 2 || scale.dim(0) != n_out || scale.dim(1) < 1 || n_in % scale.dim(1) != 0)
    throw r.error("weight_scale", "shape " + shape_str(scale.shape()) + ", but the weight is [" +
                                      std::to_string(n_out) + ", " + std::to_string(n_in) +
                                      "]: expected [" + std::to_string(n_out) + ", 1] (per channel) or [" +
                                      std::to_string(n_out) + ", " + std::to_string(n_in) + "/group_size]");
  const int64_t g = n_in / scale.dim(1);
  if (scale.dim(1) > 1 && desc_group > 0 && g != desc_group)
    throw r.error("weight_scale", "shape " + shape_str(scale.shape()) + " means groups of " + std::to_string(g) +
                                      ", but the description's group_size is " + std::to_string(desc_group));
  return g;
}

std::unique_ptr<LinearKernel> load_int(const LayerReader& r, Scheme scheme, const LinearSpec& spec,
                                       int64_t desc_group) {
  const int64_t N = spec.n_out, K = spec.n_in;
  IntLinearWeights w;
  w.scheme = scheme;
  w.weight = r.get("weight", {DType::kI8}, {N, K});
  if (scheme == Scheme::kW4A4Dynamic) {
    // One signed int4 per byte (the saver writes weight.to(int8), unpacked).
    const int8_t* q = w.weight.data<int8_t>();
    for (int64_t i = 0; i < N * K; ++i)
      if (q[i] < -8 || q[i] > 7)
        throw r.error("weight", "value " + std::to_string(q[i]) + " at [" + std::to_string(i / K) + ", " +
                                    std::to_string(i % K) + "] is outside int4 [-8, 7] (W4A4_DYNAMIC stores one "
                                    "int4 per int8 byte)");
  }
  if (scheme == Scheme::kW8A8) {
    const auto fl = {DType::kF32, DType::kBF16, DType::kF16};
    const float in_scale = r.floats(r.get("input_scale", fl, {1}))[0];
    if (!(in_scale > 0.0f) || !std::isfinite(in_scale))
      throw r.error("input_scale", "must be a positive finite number, is " + std::to_string(in_scale));
    const Tensor off = r.get("input_offset", {DType::kF32, DType::kBF16, DType::kF16, DType::kI8}, {1});
    const float in_off = r.floats(off)[0];
    if (in_off != std::nearbyint(in_off) || in_off < -128 || in_off > 127)
      throw r.error("input_offset", "must be an integer in [-128, 127], is " + std::to_string(in_off));
    const Tensor qb = r.get("quant_bias", {DType::kI32}, {N});
    const Tensor dq = r.get("deq_scale", {DType::kF32, DType::kI64}, {N});
    w.input_scale = in_scale;
    w.input_offset = in_off;
    w.quant_bias.assign(qb.data<int32_t>(), qb.data<int32_t>() + N);
    w.deq_scale.resize(static_cast<size_t>(N));
    if (dq.dtype() == DType::kI64) {
      // The low 32 bits are the IEEE-754 bits of the f32 value (sec. 1.6.3).
      for (int64_t n = 0; n < N; ++n) {
        const uint32_t bits = static_cast<uint32_t>(static_cast<uint64_t>(dq.data<int64_t>()[n]) & 0xFFFFFFFFu);
        std::memcpy(&w.deq_scale[n], &bits, 4);
      }
    } else {
      std::memcpy(w.deq_scale.data(), dq.data<float>(), static_cast<size_t>(N) * 4);
    }
    // P.bias, if present, is already folded into quant_bias: never added again.
    return make_int_linear(shard_int_linear(std::move(w), spec));
  }
  const auto fl = {DType::kF32, DType::kBF16, DType::kF16};
  const Tensor scale = r.get_unshaped("weight_scale", fl, "[" + std::to_string(N) + ", 1 or in/group_size]");
  w.group_size = scale_groups(r, scale, N, K, desc_group);
  w.scale = r.floats(scale);
  if (r.has("weight_offset")) {
    const Tensor off = r.get("weight_offset", fl, scale.shape());
    for (float v : r.floats(off))
      if (v != 0.0f)
        throw r.error("weight_offset", "nonzero weight offset " + std::to_string(v) +
                                           ": asymmetric weights are not supported (their sign convention is "
                                           "unconfirmed, spec sec. 1.6.2)");
  }
  w.bias = r.bias(N);
  return make_int_linear(shard_int_linear(std::move(w), spec));
}

std::unique_ptr<LinearKernel> load_mx(const LayerReader& r, Scheme scheme, const LinearSpec& spec) {
  const int64_t N = spec.n_out, K = spec.n_in;
  if (K % kMxBlock != 0)
    throw r.error("weight", "in_features " + std::to_string(K) + " is not a multiple of 32, which MX layers need");
  MxLinearWeights w;
  w.scheme = scheme;
  if (scheme == Scheme::kW8A8Mxfp8) {
    w.weight = r.get("weight", {DType::kF8E4M3, DType::kU8}, {N, K});
    const uint8_t* c = static_cast<const uint8_t*>(w.weight.raw());
    for (int64_t i = 0; i < N * K; ++i)
      if ((c[i] & 0x7F) == 0x7F)
        throw r.error("weight", "NaN element at [" + std::to_string(i / K) + ", " + std::to_string(i % K) + "]");
  } else {
    w.weight = r.get("weight", {DType::kU8}, {N, K / 2});
  }
  w.scale = r.get("weight_scale", {DType::kU8, DType::kE8M0}, {N, K / kMxBlock});
  const uint8_t* s = static_cast<const uint8_t*>(w.scale.raw());
  for (int64_t i = 0; i < w.scale.numel(); ++i)
    if (s[i] == 0xFF) throw r.error("weight_scale", "NaN scale (0xFF) at block " + std::to_string(i));
  w.bias = r.bias(N);
  return make_mx_linear(shard_mx_linear(std::move(w), spec));
}

class ModelSlimMethod : public QuantMethod {
 public:
  explicit ModelSlimMethod(QuantDescription d) : resolver_(std::move(d)), float_(make_unquantized_method()) {}
  std::string name() const override { return "modelslim"; }

  std::unique_ptr<LinearKernel> load_linear(const format::TensorSource& source,
                                            const LinearSpec& spec) const override {
    const Scheme scheme = resolver_.linear_scheme(spec.prefix);
    // Anti-outlier smoothing gives layers a float bias the original config does not know of.
    LinearSpec s = spec;
    s.has_bias = spec.has_bias || source.has(spec.prefix + ".bias");
    if (scheme == Scheme::kFloat) return float_->load_linear(source, s);
    LayerReader r(source, spec.prefix, scheme);
    if (scheme_info(scheme).mx) return load_mx(r, scheme, s);
    return load_int(r, scheme, s, resolver_.description().group_size);
  }

  const SchemeResolver& resolver() const { return resolver_; }

 private:
  SchemeResolver resolver_;
  std::unique_ptr<QuantMethod> float_;
};

class OnlineMethod : public QuantMethod {
 public:
  OnlineMethod(std::string method, std::vector<std::string> ignored)
      : method_(std::move(method)), ignored_(std::move(ignored)), float_(make_unquantized_method()) {}
  std::string name() const override { return method_; }

  std::unique_ptr<LinearKernel> load_linear(const format::TensorSource& source,
                                            const LinearSpec& spec) const override {
    bool keep = spec.prefix == "model.embed_tokens" || spec.prefix == "lm_head";
    for (const auto& pat : ignored_) keep |= spec.prefix.find(pat) != std::string::npos;
    if (keep) return float_->load_linear(source, spec);
    const int64_t N = spec.n_out, K = spec.n_in;
    const std::string wname = spec.prefix + ".weight";
    const Tensor raw = source.get(wname);
    if (raw.shape() != Shape{N, K} || !is_float(raw.dtype()))
      throw Error("expected a float weight " + shape_str({N, K}) + " to quantize, found " +
                      std::string(dtype_name(raw.dtype())) + " " + shape_str(raw.shape()),
                  {.file = source.file_of(wname), .tensor = wname});
    // Under tensor parallelism a column-parallel rank quantizes only its own rows; a
    // row-parallel one quantizes whole rows (int8's per-row scale needs all of a row)
    // and keeps its columns.
    const bool own_rows = spec.n_shards > 1 && spec.role != ParallelRole::kRow;
    const ShardRange rows = own_rows ? shard_range(spec, 1, "row") : ShardRange{0, N};
    LinearSpec kept = spec;
    if (own_rows) {
      kept.n_shards = 1;
      kept.shard = 0;
    }
    const int64_t M = rows.size();
    std::vector<float> bias;
    if (spec.has_bias) {
      const std::string bname = spec.prefix + ".bias";
      Tensor b = source.get(bname).to_f32();
      if (b.shape() != Shape{N})
        throw Error("expected a bias " + shape_str({N}) + ", found " + shape_str(b.shape()),
                    {.file = source.file_of(bname), .tensor = bname});
      bias.assign(b.data<float>() + rows.begin, b.data<float>() + rows.end);
    }
    // One row at a time: the float weight is never copied whole.
    std::vector<float> row(static_cast<size_t>(K));
    const size_t row_bytes = dtype_bytes(raw.dtype(), static_cast<size_t>(K));
    const auto* src = static_cast<const uint8_t*>(raw.raw()) + rows.begin * row_bytes;
    if (method_ == "mxfp8") {
      if (K % kMxBlock != 0)
        throw Error("in_features " + std::to_string(K) + " is not a multiple of 32, which mxfp8 needs",
                    {.tensor = wname});
      MxLinearWeights w;
      w.scheme = Scheme::kW8A8Mxfp8;
      w.weight = Tensor::zeros(DType::kU8, {M, K});
      w.scale = Tensor::zeros(DType::kU8, {M, K / kMxBlock});
      for (int64_t n = 0; n < M; ++n) {
        convert_to_f32(raw.dtype(), src + n * row_bytes, row.data(), static_cast<size_t>(K));
        mx_quantize_row(MxElem::kE4M3, row.data(), K, w.weight.data_mut<uint8_t>() + n * K,
                        w.scale.data_mut<uint8_t>() + n * (K / kMxBlock));
      }
      w.bias = std::move(bias);
      return make_mx_linear(shard_mx_linear(std::move(w), kept));
    }
    IntLinearWeights w;
    w.scheme = Scheme::kW8A8Dynamic;
    w.weight = Tensor::zeros(DType::kI8, {M, K});
    w.scale.resize(static_cast<size_t>(M));
    for (int64_t n = 0; n < M; ++n) {
      convert_to_f32(raw.dtype(), src + n * row_bytes, row.data(), static_cast<size_t>(K));
      w.scale[n] = quantize_row_symmetric(row.data(), K, 127, w.weight.data_mut<int8_t>() + n * K);
    }
    w.bias = std::move(bias);
    return make_int_linear(shard_int_linear(std::move(w), kept));
  }

 private:
  std::string method_;
  std::vector<std::string> ignored_;
  std::unique_ptr<QuantMethod> float_;
};

}  // namespace

std::unique_ptr<QuantMethod> make_modelslim_method(QuantDescription description) {
  return std::make_unique<ModelSlimMethod>(std::move(description));
}

std::unique_ptr<QuantMethod> make_online_method(const std::string& method, std::vector<std::string> ignored) {
  if (method != "mxfp8" && method != "w8a8_int8")
    throw Error("unknown online quantization method '" + method + "' (known: mxfp8, w8a8_int8)",
                {.field = "--quantization"});
  return std::make_unique<OnlineMethod>(method, std::move(ignored));
}

std::unique_ptr<QuantMethod> make_folder_method(const std::string& dir, const std::string& requested,
                                                const std::vector<std::string>& ignored_layers,
                                                const std::vector<bool>& layer_is_moe) {
  const MethodDecision d = decide_method(dir, requested);
  if (d.method == "unquantized") {
    if (!ignored_layers.empty())
      throw Error("--quantization-ignored-layers needs an online --quantization (mxfp8 or w8a8_int8)",
                  {.field = "--quantization-ignored-layers"});
    return make_unquantized_method();
  }
  if (d.online) return make_online_method(d.method, ignored_layers);
  // gpt-oss's MXFP4 (transformers' Mxfp4Config): only the fused experts are quantized, and the
  // MoE block reads their _blocks/_scales itself; every other tensor is float.
  if (d.method == "mxfp4") {
    if (!ignored_layers.empty())
      throw Error("--quantization-ignored-layers applies to online quantization, but this checkpoint is already 'mxfp4' "
                  "quantized", {.field = "--quantization-ignored-layers"});
    return make_unquantized_method();
  }
  if (!ignored_layers.empty())
    throw Error("--quantization-ignored-layers applies to online quantization, but this checkpoint is already '" +
                    d.method + "' quantized", {.field = "--quantization-ignored-layers"});
  if (d.method == "modelslim") {
    SchemeResolver resolver(*load_quant_description(dir));
    resolver.validate_decoder(static_cast<int64_t>(layer_is_moe.size()), layer_is_moe);
    return make_modelslim_method(resolver.description());
  }
  if (auto hf = HfQuantConfig::load(dir)) return make_hf_quant_method(std::move(hf));
  throw Error("quantization method '" + d.method + "' is not supported (quanta runs modelslim, awq, gptq, "
              "auto-round, compressed-tensors, and mxfp8 / w8a8_int8 online)",
              {.file = d.source, .field = "quantization_config.quant_method"});
}

}  // namespace quanta::quant
