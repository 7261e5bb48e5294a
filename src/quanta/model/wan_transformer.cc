#include "quanta/model/wan_transformer.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "quanta/core/error.h"
#include "quanta/core/json.h"
#include "quanta/core/thread_pool.h"
#include "quanta/format/safetensors.h"
#include "quanta/kernels/kernels.h"
#include "quanta/kernels/ops.h"
#include "quanta/quant/group_int_linear.h"

namespace quanta::model {

using quant::LinearKernel;
using quant::LinearSpec;
using quant::ParallelRole;

struct WanTransformer::Block {
  Tensor modulation;        // scale_shift_table [6, dim] f32: shift, scale, gate (attn1), shift, scale, gate (ffn)
  Tensor norm2_w, norm2_b;  // [dim] f32 when cross_attn_norm, else empty (identity)
  Tensor q1_norm, k1_norm, q2_norm, k2_norm;  // RMSNorm over all heads, [dim] f32
  std::unique_ptr<LinearKernel> q1, k1, v1, o1;  // attn1 (self)
  std::unique_ptr<LinearKernel> q2, k2, v2, o2;  // attn2 (cross, k/v from the text)
  std::unique_ptr<LinearKernel> ff1, ff2;        // ffn.net.0.proj [ffn, dim], ffn.net.2 [dim, ffn]

  size_t weight_bytes() const {
    size_t n = 0;
    for (const auto* l : {q1.get(), k1.get(), v1.get(), o1.get(), q2.get(), k2.get(), v2.get(), o2.get(), ff1.get(),
                          ff2.get()})
      n += l->weight_bytes();
    return n;
  }
};

namespace {

// ---- config ----

const nlohmann::json& field(const nlohmann::json& j, const char* name, const std::string& file) {
  if (!j.contains(name)) throw Error("missing", {.file = file, .field = name});
  return j.at(name);
}

int64_t positive_int(const nlohmann::json& j, const char* name, const std::string& file) {
  const auto& v = field(j, name, file);
  // Bounded far above any real Wan size, so that products of the sizes cannot overflow.
  constexpr int64_t kMax = int64_t{1} << 20;
  if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > kMax)
    throw Error("must be a positive integer up to 2^20, not " + v.dump(), {.file = file, .field = name});
  return v.get<int64_t>();
}

// ---- loading ----

// A norm or modulation table as f32 [numel], its shape checked.
Tensor load_float(const format::TensorSource& src, const std::string& name, const Shape& shape) {
  Tensor t = src.get(name);
  if (t.shape() != shape)
    throw Error("shape " + shape_str(t.shape()) + " does not match the transformer config, which needs " +
                    shape_str(shape),
                {.file = src.file_of(name), .tensor = name});
  if (t.dtype() != DType::kF32 && t.dtype() != DType::kBF16 && t.dtype() != DType::kF16)
    throw Error("dtype " + std::string(dtype_name(t.dtype())) + " is not a float type",
                {.file = src.file_of(name), .tensor = name});
  return t.to_f32();
}

std::unique_ptr<LinearKernel> load_linear(const quant::QuantMethod& method, const format::TensorSource& src,
                                          const std::string& prefix, int64_t n_in, int64_t n_out, ParallelRole role) {
  LinearSpec spec;
  spec.prefix = prefix;
  spec.n_in = n_in;
  spec.n_out = n_out;
  spec.has_bias = true;  // every Linear of the Wan DiT has a bias
  spec.role = role;
  return method.load_linear(src, spec);
}

// ---- element-wise pieces, as diffusers computes them ----

// torch LayerNorm over each row of n (biased variance): y = (x - mean) / sqrt(var + eps) [* w + b].
void layer_norm(const float* x, float* y, int64_t n, float eps, const float* w = nullptr, const float* b = nullptr) {
  double mean = 0.0, var = 0.0;
  for (int64_t i = 0; i < n; ++i) mean += x[i];
  mean /= static_cast<double>(n);
  for (int64_t i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  const double inv = 1.0 / std::sqrt(var / static_cast<double>(n) + eps);
  for (int64_t i = 0; i < n; ++i) {
    float v = static_cast<float>((x[i] - mean) * inv);
    y[i] = w ? v * w[i] + b[i] : v;
  }
}

void silu_inplace(std::vector<float>& v) {
  for (float& x : v) x = kernels::silu(x);
}
void gelu_tanh_inplace(std::vector<float>& v) {
  for (float& x : v) x = kernels::gelu_tanh(x);
}

// diffusers get_timestep_embedding(t, freq_dim, flip_sin_to_cos=True, downscale_freq_shift=0), in f32
// step by step as torch does it (the angle t * freq reaches ~1000 rad, so its rounding matters):
// [cos(t f_k), sin(t f_k)] with f_k = exp(-ln(10000) k / half), zero-padded to an odd freq_dim.
void timestep_sinusoid(float t, int64_t freq_dim, float* out) {
  const int64_t half = freq_dim / 2;
  const float neg_log_period = static_cast<float>(-std::log(10000.0));
  for (int64_t k = 0; k < half; ++k) {
    const float exponent = neg_log_period * static_cast<float>(k) / static_cast<float>(half);
    const float arg = t * std::exp(exponent);
    out[k] = std::cos(arg);
    out[half + k] = std::sin(arg);
  }
  if (freq_dim % 2) out[freq_dim - 1] = 0.0f;
}

// WanRotaryPosEmbed: head_dim splits into frames (t), height (h) and width (w) parts, h = w =
// 2 * (d_head / 6) and t the rest; each part rotates its pairs by its own coordinate times
// 1 / 10000^(2j / part). Pairs are adjacent (2i, 2i + 1). Angles in f64, cos/sin rounded to f32
// (diffusers builds its tables in float64 and casts them).
struct Rope3d {
  int64_t half = 0;          // d_head / 2 pairs per head
  std::vector<float> cos_, sin_;  // [n_tokens, half]

  Rope3d(int64_t d_head, int64_t f, int64_t h, int64_t w) : half(d_head / 2) {
    const int64_t hw_dim = 2 * (d_head / 6), t_dim = d_head - 2 * hw_dim;
    const int64_t part_dim[3] = {t_dim, hw_dim, hw_dim};
    cos_.resize(static_cast<size_t>(f * h * w * half));
    sin_.resize(cos_.size());
    for (int64_t fi = 0; fi < f; ++fi)
      for (int64_t hi = 0; hi < h; ++hi)
        for (int64_t wi = 0; wi < w; ++wi) {
          const int64_t tok = (fi * h + hi) * w + wi;
          const int64_t coord[3] = {fi, hi, wi};
          int64_t pair = 0;
          for (int part = 0; part < 3; ++part)
            for (int64_t j = 0; j < part_dim[part] / 2; ++j, ++pair) {
              const double freq = 1.0 / std::pow(10000.0, static_cast<double>(2 * j) / static_cast<double>(part_dim[part]));
              const double angle = static_cast<double>(coord[part]) * freq;
              cos_[static_cast<size_t>(tok * half + pair)] = static_cast<float>(std::cos(angle));
              sin_[static_cast<size_t>(tok * half + pair)] = static_cast<float>(std::sin(angle));
            }
        }
  }

  // x [n_tokens, n_heads * d_head], rotated in place.
  void apply(float* x, int64_t n_tokens, int64_t n_heads) const {
    for (int64_t t = 0; t < n_tokens; ++t)
      for (int64_t hd = 0; hd < n_heads; ++hd) {
        float* v = x + (t * n_heads + hd) * 2 * half;
        const float* c = cos_.data() + t * half;
        const float* s = sin_.data() + t * half;
        for (int64_t i = 0; i < half; ++i) {
          const float x1 = v[2 * i], x2 = v[2 * i + 1];
          v[2 * i] = x1 * c[i] - x2 * s[i];
          v[2 * i + 1] = x1 * s[i] + x2 * c[i];
        }
      }
  }
};

// Non-causal attention of q [n_q, heads * d_head] over k, v [n_kv, heads * d_head], through the
// paged attention kernel with the whole sequence in one block.
void full_attention(const float* q, const float* k, const float* v, int64_t n_q, int64_t n_kv, int64_t n_heads,
                    int64_t d_head, float* out, ThreadPool& pool) {
  const int64_t dim = n_heads * d_head;
  std::vector<float> kb(static_cast<size_t>(n_kv * dim)), vb(kb.size());  // [heads, n_kv, d_head]
  for (int64_t j = 0; j < n_kv; ++j)
    for (int64_t h = 0; h < n_heads; ++h)
      for (int64_t d = 0; d < d_head; ++d) {
        kb[static_cast<size_t>((h * n_kv + j) * d_head + d)] = k[j * dim + h * d_head + d];
        vb[static_cast<size_t>((h * n_kv + j) * d_head + d)] = v[j * dim + h * d_head + d];
      }
  const std::vector<int64_t> positions(static_cast<size_t>(n_q), 0);  // unused without causality
  const int32_t block = 0;
  kernels::AttentionShape shape{static_cast<int>(n_heads), static_cast<int>(n_heads), static_cast<int>(d_head),
                                static_cast<float>(1.0 / std::sqrt(static_cast<double>(d_head))), 0.0f, 0, false};
  kernels::KvLayout layout{kb.data(), vb.data(), n_kv, dim, dim};
  kernels::AttentionSeq seq{q, out, n_q, positions.data(), &block, n_kv};
  kernels::attention(kernels::kernels(), shape, layout, &seq, 1, &pool);
}

std::vector<float> run(const LinearKernel& lin, const float* x, int64_t n, ThreadPool& pool) {
  std::vector<float> y(static_cast<size_t>(n * lin.n_out()));
  lin.forward(x, n, y.data(), pool);
  return y;
}

}  // namespace

WanConfig parse_wan_config(const std::string& text, const std::string& file) {
  const auto j = parse_json(text, {.file = file});
  if (!j.is_object()) throw Error("config.json must be an object", {.file = file});
  WanConfig c;
  if (j.contains("_class_name") && j["_class_name"] != "WanTransformer3DModel")
    throw Error("is " + j["_class_name"].dump() + ", not \"WanTransformer3DModel\"", {.file = file, .field = "_class_name"});
  const auto& ps = field(j, "patch_size", file);
  if (!ps.is_array() || ps.size() != 3) throw Error("must be a list of 3 integers", {.file = file, .field = "patch_size"});
  for (size_t i = 0; i < 3; ++i) {
    if (!ps[i].is_number_integer() || ps[i].get<int64_t>() < 1 || ps[i].get<int64_t>() > 64)
      throw Error("must be a list of 3 integers in [1, 64]", {.file = file, .field = "patch_size"});
    c.patch_size[i] = ps[i].get<int64_t>();
  }
  c.n_heads = positive_int(j, "num_attention_heads", file);
  c.d_head = positive_int(j, "attention_head_dim", file);
  c.in_channels = positive_int(j, "in_channels", file);
  // out_channels: null means in_channels (diffusers: out_channels or in_channels).
  c.out_channels = j.contains("out_channels") && !j["out_channels"].is_null() ? positive_int(j, "out_channels", file)
                                                                              : c.in_channels;
  c.text_dim = positive_int(j, "text_dim", file);
  c.freq_dim = positive_int(j, "freq_dim", file);
  c.ffn_dim = positive_int(j, "ffn_dim", file);
  c.n_layers = positive_int(j, "num_layers", file);
  if (j.contains("rope_max_seq_len")) c.rope_max_seq_len = positive_int(j, "rope_max_seq_len", file);
  if (j.contains("cross_attn_norm")) {
    if (!j["cross_attn_norm"].is_boolean()) throw Error("must be true or false", {.file = file, .field = "cross_attn_norm"});
    c.cross_attn_norm = j["cross_attn_norm"].get<bool>();
  }
  if (j.contains("eps")) {
    if (!j["eps"].is_number() || !(j["eps"].get<double>() > 0)) throw Error("must be a positive number", {.file = file, .field = "eps"});
    c.eps = j["eps"].get<float>();
  }
  for (const char* img : {"image_dim", "added_kv_proj_dim", "pos_embed_seq_len"})
    if (j.contains(img) && !j[img].is_null())
      throw Error("image conditioning (Wan I2V) is not supported yet", {.file = file, .field = img});
  // The rope splits d_head into three even parts (diffusers asserts each is even).
  if (c.d_head % 2 != 0 || (c.d_head - 4 * (c.d_head / 6)) % 2 != 0 || c.d_head < 6)
    throw Error("must split into three even rope parts (t, h, w); " + std::to_string(c.d_head) + " does not",
                {.file = file, .field = "attention_head_dim"});
  return c;
}

WanTransformer::WanTransformer() = default;
WanTransformer::~WanTransformer() = default;

std::unique_ptr<WanTransformer> WanTransformer::load(const std::string& dir, const WanLoadOptions& options) {
  const std::string cfg_path = dir + "/config.json";
  std::ifstream in(cfg_path, std::ios::binary);
  if (!in) throw Error("cannot open the transformer's config.json", {.file = cfg_path});
  std::stringstream ss;
  ss << in.rdbuf();
  const WanConfig config = parse_wan_config(ss.str(), cfg_path);
  std::shared_ptr<const format::TensorSource> source = format::open_safetensors(dir);
  const auto unquantized = quant::make_unquantized_method();
  return load(config, std::move(source), options.method ? *options.method : *unquantized);
}

std::unique_ptr<WanTransformer> WanTransformer::load(const WanConfig& c, std::shared_ptr<const format::TensorSource> source,
                                                     const quant::QuantMethod& method) {
  std::unique_ptr<WanTransformer> m(new WanTransformer());
  m->config_ = c;
  m->source_ = std::move(source);
  const format::TensorSource& src = *m->source_;
  const auto floats = quant::make_unquantized_method();  // the layers that stay float
  const int64_t dim = c.dim(), patch = c.patch_size[0] * c.patch_size[1] * c.patch_size[2];

  // Conv3d with kernel = stride = patch: a Linear over each patch's (channel, t, h, w) values.
  {
    const std::string name = "patch_embedding.weight";
    Tensor w = src.get(name);
    const Shape want = {dim, c.in_channels, c.patch_size[0], c.patch_size[1], c.patch_size[2]};
    if (w.shape() != want)
      throw Error("shape " + shape_str(w.shape()) + " does not match the transformer config, which needs " +
                      shape_str(want),
                  {.file = src.file_of(name), .tensor = name});
    if (w.dtype() != DType::kF32 && w.dtype() != DType::kBF16 && w.dtype() != DType::kF16)
      throw Error("dtype " + std::string(dtype_name(w.dtype())) + " is not a float type",
                  {.file = src.file_of(name), .tensor = name});
    Tensor w2d = Tensor::view(w.dtype(), {dim, c.in_channels * patch}, w.raw(), w.storage());
    m->patch_embedding_ = quant::make_float_linear(w2d, load_float(src, "patch_embedding.bias", {dim}));
  }
  const std::string ce = "condition_embedder.";
  m->time_linear_1_ = load_linear(*floats, src, ce + "time_embedder.linear_1", c.freq_dim, dim, ParallelRole::kReplicated);
  m->time_linear_2_ = load_linear(*floats, src, ce + "time_embedder.linear_2", dim, dim, ParallelRole::kReplicated);
  m->time_proj_ = load_linear(*floats, src, ce + "time_proj", dim, 6 * dim, ParallelRole::kReplicated);
  m->text_linear_1_ = load_linear(*floats, src, ce + "text_embedder.linear_1", c.text_dim, dim, ParallelRole::kReplicated);
  m->text_linear_2_ = load_linear(*floats, src, ce + "text_embedder.linear_2", dim, dim, ParallelRole::kReplicated);

  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string p = "blocks." + std::to_string(i) + ".";
    auto b = std::make_unique<Block>();
    b->modulation = load_float(src, p + "scale_shift_table", {1, 6, dim});
    if (c.cross_attn_norm) {
      b->norm2_w = load_float(src, p + "norm2.weight", {dim});
      b->norm2_b = load_float(src, p + "norm2.bias", {dim});
    }
    b->q1_norm = load_float(src, p + "attn1.norm_q.weight", {dim});
    b->k1_norm = load_float(src, p + "attn1.norm_k.weight", {dim});
    b->q2_norm = load_float(src, p + "attn2.norm_q.weight", {dim});
    b->k2_norm = load_float(src, p + "attn2.norm_k.weight", {dim});
    const auto col = ParallelRole::kColumn, row = ParallelRole::kRow;
    b->q1 = load_linear(method, src, p + "attn1.to_q", dim, dim, col);
    b->k1 = load_linear(method, src, p + "attn1.to_k", dim, dim, col);
    b->v1 = load_linear(method, src, p + "attn1.to_v", dim, dim, col);
    b->o1 = load_linear(method, src, p + "attn1.to_out.0", dim, dim, row);
    b->q2 = load_linear(method, src, p + "attn2.to_q", dim, dim, col);
    b->k2 = load_linear(method, src, p + "attn2.to_k", dim, dim, col);
    b->v2 = load_linear(method, src, p + "attn2.to_v", dim, dim, col);
    b->o2 = load_linear(method, src, p + "attn2.to_out.0", dim, dim, row);
    b->ff1 = load_linear(method, src, p + "ffn.net.0.proj", dim, c.ffn_dim, col);
    b->ff2 = load_linear(method, src, p + "ffn.net.2", c.ffn_dim, dim, row);
    m->blocks_.push_back(std::move(b));
  }
  m->out_modulation_ = load_float(src, "scale_shift_table", {1, 2, dim});
  m->proj_out_ = load_linear(*floats, src, "proj_out", dim, c.out_channels * patch, ParallelRole::kReplicated);
  return m;
}

size_t WanTransformer::weight_bytes() const {
  size_t n = 0;
  for (const auto& b : blocks_) n += b->weight_bytes();
  for (const auto* l : {patch_embedding_.get(), time_linear_1_.get(), time_linear_2_.get(), time_proj_.get(),
                        text_linear_1_.get(), text_linear_2_.get(), proj_out_.get()})
    n += l->weight_bytes();
  return n;
}

Tensor WanTransformer::forward(const Tensor& latents_in, const Tensor& timestep_in, const Tensor& text_in,
                               ThreadPool& pool) const {
  const WanConfig& c = config_;
  const int64_t dim = c.dim();
  const auto [pt, ph, pw] = c.patch_size;
  auto bad = [](const std::string& param, const std::string& what) { throw Error(what, {.field = param}); };

  if (latents_in.rank() != 5 || latents_in.dim(1) != c.in_channels)
    bad("latents", "shape " + shape_str(latents_in.shape()) + " is not [B, in_channels=" + std::to_string(c.in_channels) +
                       ", F, H, W]");
  const int64_t B = latents_in.dim(0), F = latents_in.dim(2), H = latents_in.dim(3), W = latents_in.dim(4);
  if (B < 1 || F < 1 || H < 1 || W < 1) bad("latents", "shape " + shape_str(latents_in.shape()) + " has an empty dimension");
  if (F % pt || H % ph || W % pw)
    bad("latents", "frames, height and width " + shape_str({F, H, W}) + " are not multiples of the patch size " +
                       shape_str({pt, ph, pw}));
  const int64_t f = F / pt, h = H / ph, w = W / pw, S = f * h * w;
  if (std::max({f, h, w}) > c.rope_max_seq_len)
    bad("latents", "patches per axis " + shape_str({f, h, w}) + " exceed rope_max_seq_len " +
                       std::to_string(c.rope_max_seq_len));
  const bool per_token = timestep_in.rank() == 2;
  if (!(timestep_in.shape() == Shape{B} || timestep_in.shape() == Shape{B, S}))
    bad("timestep", "shape " + shape_str(timestep_in.shape()) + " is neither [B] = " + shape_str({B}) +
                        " nor [B, seq_len] = " + shape_str({B, S}));
  if (text_in.rank() != 3 || text_in.dim(0) != B || text_in.dim(1) < 1 || text_in.dim(2) != c.text_dim)
    bad("encoder_hidden_states", "shape " + shape_str(text_in.shape()) + " is not [B=" + std::to_string(B) +
                                     ", L, text_dim=" + std::to_string(c.text_dim) + "]");
  const int64_t L = text_in.dim(1);
  const Tensor latents = latents_in.to_f32(), timestep = timestep_in.to_f32(), text = text_in.to_f32();
  const float* lat = latents.data<float>();

  const int64_t patch = pt * ph * pw, patch_in = c.in_channels * patch, patch_out = c.out_channels * patch;
  Tensor output = Tensor::zeros(DType::kF32, {B, c.out_channels, F, H, W});
  float* out = output.data_mut<float>();
  const Rope3d rope(c.d_head, f, h, w);

  for (int64_t b = 0; b < B; ++b) {
    // Patchify: token (fi, hi, wi) in that order, features (channel, kt, kh, kw) as the Conv3d weight.
    std::vector<float> patches(static_cast<size_t>(S * patch_in));
    for (int64_t s = 0; s < S; ++s) {
      const int64_t fi = s / (h * w), hi = s / w % h, wi = s % w;
      for (int64_t ch = 0; ch < c.in_channels; ++ch)
        for (int64_t kt = 0; kt < pt; ++kt)
          for (int64_t kh = 0; kh < ph; ++kh)
            for (int64_t kw = 0; kw < pw; ++kw)
              patches[static_cast<size_t>(s * patch_in + ((ch * pt + kt) * ph + kh) * pw + kw)] =
                  lat[(((b * c.in_channels + ch) * F + fi * pt + kt) * H + hi * ph + kh) * W + wi * pw + kw];
    }
    std::vector<float> x = run(*patch_embedding_, patches.data(), S, pool);  // [S, dim]

    // Condition: temb = time_embedder(sinusoid(t)) [n_t, dim], modulation = time_proj(silu(temb)) [n_t, 6 dim];
    // n_t = 1, or S with per-token timesteps.
    const int64_t n_t = per_token ? S : 1;
    std::vector<float> sinus(static_cast<size_t>(n_t * c.freq_dim));
    for (int64_t t = 0; t < n_t; ++t)
      timestep_sinusoid(timestep.data<float>()[b * n_t + t], c.freq_dim, sinus.data() + t * c.freq_dim);
    std::vector<float> temb = run(*time_linear_1_, sinus.data(), n_t, pool);
    silu_inplace(temb);
    temb = run(*time_linear_2_, temb.data(), n_t, pool);
    std::vector<float> act = temb;
    silu_inplace(act);
    const std::vector<float> mod = run(*time_proj_, act.data(), n_t, pool);

    std::vector<float> ctx = run(*text_linear_1_, text.data<float>() + b * L * c.text_dim, L, pool);
    gelu_tanh_inplace(ctx);
    ctx = run(*text_linear_2_, ctx.data(), L, pool);  // [L, dim]

    std::vector<float> norm(static_cast<size_t>(S * dim)), attn(norm.size());
    for (const auto& blk : blocks_) {
      // The modulation of token s, part k: scale_shift_table[k] + time_proj row of s.
      const float* table = blk->modulation.data<float>();
      auto m = [&](int64_t s, int k, int64_t i) {
        return table[k * dim + i] + mod[static_cast<size_t>((per_token ? s : 0) * 6 * dim + k * dim + i)];
      };
      auto modulated_norm = [&](int shift, int scale) {
        for (int64_t s = 0; s < S; ++s) {
          float* n = norm.data() + s * dim;
          layer_norm(x.data() + s * dim, n, dim, c.eps);
          for (int64_t i = 0; i < dim; ++i) n[i] = n[i] * (1.0f + m(s, scale, i)) + m(s, shift, i);
        }
      };
      auto gated_add = [&](const std::vector<float>& y, int gate) {
        for (int64_t s = 0; s < S; ++s)
          for (int64_t i = 0; i < dim; ++i) x[static_cast<size_t>(s * dim + i)] += y[static_cast<size_t>(s * dim + i)] * m(s, gate, i);
      };

      // 1. Self-attention over all tokens, q/k RMS-normed across heads, then the 3-D rope.
      modulated_norm(0, 1);
      std::vector<float> q = run(*blk->q1, norm.data(), S, pool), k = run(*blk->k1, norm.data(), S, pool);
      const std::vector<float> v = run(*blk->v1, norm.data(), S, pool);
      kernels::rms_norm(q.data(), blk->q1_norm.data<float>(), q.data(), S, dim, c.eps, false);
      kernels::rms_norm(k.data(), blk->k1_norm.data<float>(), k.data(), S, dim, c.eps, false);
      rope.apply(q.data(), S, c.n_heads);
      rope.apply(k.data(), S, c.n_heads);
      full_attention(q.data(), k.data(), v.data(), S, S, c.n_heads, c.d_head, attn.data(), pool);
      gated_add(run(*blk->o1, attn.data(), S, pool), 2);

      // 2. Cross-attention to the text; ungated, no rope.
      for (int64_t s = 0; s < S; ++s) {
        if (c.cross_attn_norm)
          layer_norm(x.data() + s * dim, norm.data() + s * dim, dim, c.eps, blk->norm2_w.data<float>(),
                     blk->norm2_b.data<float>());
        else
          std::copy(x.begin() + s * dim, x.begin() + (s + 1) * dim, norm.begin() + s * dim);
      }
      q = run(*blk->q2, norm.data(), S, pool);
      k = run(*blk->k2, ctx.data(), L, pool);
      const std::vector<float> v2 = run(*blk->v2, ctx.data(), L, pool);
      kernels::rms_norm(q.data(), blk->q2_norm.data<float>(), q.data(), S, dim, c.eps, false);
      kernels::rms_norm(k.data(), blk->k2_norm.data<float>(), k.data(), L, dim, c.eps, false);
      full_attention(q.data(), k.data(), v2.data(), S, L, c.n_heads, c.d_head, attn.data(), pool);
      const std::vector<float> cross = run(*blk->o2, attn.data(), S, pool);
      for (size_t i = 0; i < x.size(); ++i) x[i] += cross[i];

      // 3. Feed-forward, GELU (tanh), gated.
      modulated_norm(3, 4);
      std::vector<float> hidden = run(*blk->ff1, norm.data(), S, pool);
      gelu_tanh_inplace(hidden);
      gated_add(run(*blk->ff2, hidden.data(), S, pool), 5);
    }

    // Output norm: shift, scale = scale_shift_table + temb (not time_proj's output), then proj_out.
    const float* table = out_modulation_.data<float>();
    for (int64_t s = 0; s < S; ++s) {
      const float* te = temb.data() + (per_token ? s : 0) * dim;
      float* n = norm.data() + s * dim;
      layer_norm(x.data() + s * dim, n, dim, c.eps);
      for (int64_t i = 0; i < dim; ++i) n[i] = n[i] * (1.0f + (table[dim + i] + te[i])) + (table[i] + te[i]);
    }
    const std::vector<float> y = run(*proj_out_, norm.data(), S, pool);  // [S, (kt, kh, kw, channel)]

    // Unpatchify.
    for (int64_t s = 0; s < S; ++s) {
      const int64_t fi = s / (h * w), hi = s / w % h, wi = s % w;
      for (int64_t kt = 0; kt < pt; ++kt)
        for (int64_t kh = 0; kh < ph; ++kh)
          for (int64_t kw = 0; kw < pw; ++kw)
            for (int64_t ch = 0; ch < c.out_channels; ++ch)
              out[(((b * c.out_channels + ch) * F + fi * pt + kt) * H + hi * ph + kh) * W + wi * pw + kw] =
                  y[static_cast<size_t>(s * patch_out + ((kt * ph + kh) * pw + kw) * c.out_channels + ch)];
    }
  }
  return output;
}

}  // namespace quanta::model
