#include "quanta/model/moe.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "quanta/core/error.h"
#include "quanta/format/ggml_types.h"
#include "quanta/core/thread_pool.h"
#include "quanta/kernels/kernels.h"

namespace quanta::model {

using format::MoeConfig;
using quant::LinearSpec;
using quant::ParallelRole;

namespace {

// The k largest of `score` as torch.topk picks them on the CPU, ties included, since which
// of two equal scores wins decides which expert runs: (score, index) pairs compared by score
// alone, std::partial_sort of the first k when k * 64 <= n, otherwise std::nth_element at the
// k-th and std::sort of the k-1 before it (torch's topk_impl_loop, aten/src/ATen/native/TopKImpl.h;
// checked against torch 2.15 by tests/golden/moe_test.cc). The same libstdc++ algorithms run here,
// so equal scores come out in torch's order.
void torch_topk(const std::vector<float>& score, int64_t k, std::vector<std::pair<float, int64_t>>& q) {
  auto greater = [](const std::pair<float, int64_t>& a, const std::pair<float, int64_t>& b) {
    return (std::isnan(a.first) && !std::isnan(b.first)) || a.first > b.first;
  };
  q.resize(score.size());
  for (size_t j = 0; j < q.size(); ++j) q[j] = {score[j], static_cast<int64_t>(j)};
  if (k * 64 <= static_cast<int64_t>(score.size())) {
    std::partial_sort(q.begin(), q.begin() + k, q.end(), greater);
  } else {
    std::nth_element(q.begin(), q.begin() + k - 1, q.end(), greater);
    std::sort(q.begin(), q.begin() + k - 1, greater);
  }
}

}  // namespace

Routing route(const MoeConfig& c, const float* logits, int64_t n_tokens) {
  const int64_t n = c.n_experts, k = c.n_experts_used;
  Routing r{n_tokens, k, std::vector<int32_t>(static_cast<size_t>(n_tokens * k)),
            std::vector<float>(static_cast<size_t>(n_tokens * k))};
  std::vector<float> score(static_cast<size_t>(n));
  std::vector<std::pair<float, int64_t>> top;
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* l = logits + t * n;
    if (c.softmax_topk) {
      // gpt-oss: the top k of the raw logits (torch.topk), then a softmax over those k.
      score.assign(l, l + n);
      torch_topk(score, k, top);
      const float mx = top[0].first;
      float total = 0.0f;
      for (int64_t j = 0; j < k; ++j) total += top[static_cast<size_t>(j)].first = std::exp(top[static_cast<size_t>(j)].first - mx);
      for (int64_t j = 0; j < k; ++j) {
        r.expert[static_cast<size_t>(t * k + j)] = static_cast<int32_t>(top[static_cast<size_t>(j)].second);
        r.weight[static_cast<size_t>(t * k + j)] = top[static_cast<size_t>(j)].first / total * static_cast<float>(c.routed_scaling);
      }
      continue;
    }
    if (c.scoring == format::RouterScoring::kSoftmax) {
      const float mx = *std::max_element(l, l + n);
      float sum = 0.0f;
      for (int64_t e = 0; e < n; ++e) sum += score[static_cast<size_t>(e)] = std::exp(l[e] - mx);
      for (float& s : score) s /= sum;
    } else {
      for (int64_t e = 0; e < n; ++e) score[static_cast<size_t>(e)] = 1.0f / (1.0f + std::exp(-l[e]));
    }
    torch_topk(score, k, top);
    float total = 0.0f;
    for (int64_t j = 0; j < k; ++j) total += top[static_cast<size_t>(j)].first;
    for (int64_t j = 0; j < k; ++j) {
      float w = top[static_cast<size_t>(j)].first;
      if (c.norm_topk) w /= total;
      r.expert[static_cast<size_t>(t * k + j)] = static_cast<int32_t>(top[static_cast<size_t>(j)].second);
      r.weight[static_cast<size_t>(t * k + j)] = w * static_cast<float>(c.routed_scaling);
    }
  }
  return r;
}

namespace {

bool has_prefix(const std::vector<std::string>& names, const std::string& prefix) {
  auto it = std::lower_bound(names.begin(), names.end(), prefix);
  return it != names.end() && it->rfind(prefix, 0) == 0;
}

// Expert e of fused float experts (elements of type T): gate_up [E, hidden, 2 ffn] with gate
// and up in alternating columns, down [E, ffn, hidden], into [out, in] Linears.
template <typename T>
void split_expert(const Tensor& gate_up, const Tensor& down, int64_t e, int64_t hidden, int64_t ffn, Tensor& gate,
                  Tensor& up, Tensor& d) {
  // Through memcpy: a safetensors tensor need not be aligned to its element size.
  const auto* gs = static_cast<const uint8_t*>(gate_up.raw()) + static_cast<size_t>(e * hidden * 2 * ffn) * sizeof(T);
  const auto* ds = static_cast<const uint8_t*>(down.raw()) + static_cast<size_t>(e * ffn * hidden) * sizeof(T);
  T* go = static_cast<T*>(gate.raw_mut());
  T* uo = static_cast<T*>(up.raw_mut());
  T* dout = static_cast<T*>(d.raw_mut());
  auto at = [](const uint8_t* p, int64_t i) {
    T v;
    std::memcpy(&v, p + static_cast<size_t>(i) * sizeof(T), sizeof(T));
    return v;
  };
  for (int64_t h = 0; h < hidden; ++h)
    for (int64_t i = 0; i < ffn; ++i) {
      go[i * hidden + h] = at(gs, h * 2 * ffn + 2 * i);
      uo[i * hidden + h] = at(gs, h * 2 * ffn + 2 * i + 1);
      dout[h * ffn + i] = at(ds, i * hidden + h);
    }
}

// gpt-oss's experts as transformers saves them, fused per layer: gate_up_proj [E, hidden,
// 2 ffn] (gate and up in alternating columns), gate_up_proj_bias [E, 2 ffn], down_proj
// [E, ffn, hidden], down_proj_bias [E, hidden]. Served as the per-expert Linears the
// QuantMethods load (experts.E.{gate,up,down}_proj.{weight,bias}, weights [out, in]), copied
// once at load in their stored type: the fused layout is transposed and interleaved, so no view fits.
// MXFP4 experts (_blocks/_scales) are repacked into ggml MXFP4 rows (the same size; run
// by the GGUF kernels, see Mxfp4ExpertMethod).
class FusedExpertSource : public format::TensorSource {
 public:
  FusedExpertSource(const format::TensorSource& base, const std::vector<std::string>& names, const std::string& experts,
                    int64_t n_experts, int64_t hidden, int64_t ffn, bool bias)
      : base_(base) {
    // The fused tensors themselves are not listed: under experts. only experts.E.* may be.
    for (const std::string& n : names)
      if (n.rfind(experts + ".", 0) != 0) names_.push_back(n);
    auto fetch = [&](const std::string& name, const Shape& want) {
      if (!base.has(name))
        throw Error("missing from the checkpoint (gpt-oss experts are stored fused)", {.file = base.location(), .tensor = name});
      Tensor t = base.get(name);
      if (t.shape() != want)
        throw Error("shape " + shape_str(t.shape()) + " does not match the model config, which needs " + shape_str(want),
                    {.file = base.file_of(name), .tensor = name});
      if (t.dtype() != DType::kF32 && t.dtype() != DType::kBF16 && t.dtype() != DType::kF16)
        throw Error("dtype " + std::string(dtype_name(t.dtype())) + " is not a float type",
                    {.file = base.file_of(name), .tensor = name});
      file_of_[name] = base.file_of(name);
      return t;  // in its stored float type: a bf16 checkpoint's experts stay bf16
    };
    // MXFP4 experts (quantization_config.quant_method "mxfp4").
    mxfp4_ = base.has(experts + ".gate_up_proj_blocks") || base.has(experts + ".down_proj_blocks");
    const bool mxfp4 = mxfp4_;
    auto u8 = [&](const std::string& name, const Shape& want) {
      if (!base.has(name))
        throw Error("missing from the checkpoint (gpt-oss MXFP4 experts need _blocks and _scales)",
                    {.file = base.location(), .tensor = name});
      Tensor t = base.get(name);
      if (t.shape() != want || t.dtype() != DType::kU8)
        throw Error(std::string(dtype_name(t.dtype())) + " " + shape_str(t.shape()) + " does not match the model config, which needs U8 " +
                        shape_str(want), {.file = base.file_of(name), .tensor = name});
      file_of_[name] = base.file_of(name);
      return t;
    };
    // [E, rows, cols / 32, 16] codes with [E, rows, cols / 32] E8M0 scales. An expert's rows
    // r0, r0 + step, ... become ggml MXFP4 rows (BlockMXFP4: the scale byte, then 16 bytes
    // whose low nibbles are elements 0-15 and high nibbles 16-31; transformers' bytes hold
    // elements 2j and 2j + 1, low nibble first). Same codes and scales, no dequantization.
    Tensor gu_blocks, gu_scales, dn_blocks, dn_scales;
    auto packed = [&](const std::string& proj, int64_t rows, int64_t cols, Tensor& blocks, Tensor& scales) {
      if (cols % 32 != 0)
        throw Error("MXFP4 needs a multiple of 32 inputs, got " + std::to_string(cols), {.file = base.location(), .tensor = proj + "_blocks"});
      blocks = u8(proj + "_blocks", {n_experts, rows, cols / 32, 16});
      scales = u8(proj + "_scales", {n_experts, rows, cols / 32});
    };
    auto repack = [&](const Tensor& blocks, const Tensor& scales, int64_t e, int64_t rows, int64_t r0, int64_t step,
                      int64_t n_rows, int64_t cols) {
      const int64_t n_blk = cols / 32;
      Tensor out = Tensor::zeros(DType::kU8, {n_rows, n_blk * 17});
      uint8_t* o = out.data_mut<uint8_t>();
      for (int64_t i = 0; i < n_rows; ++i) {
        const int64_t row = e * rows + r0 + i * step;
        for (int64_t k = 0; k < n_blk; ++k, o += 17) {
          const uint8_t* q = blocks.data<uint8_t>() + (row * n_blk + k) * 16;
          uint8_t code[32];
          for (int j = 0; j < 16; ++j) {
            code[2 * j] = q[j] & 0xF;
            code[2 * j + 1] = q[j] >> 4;
          }
          o[0] = scales.data<uint8_t>()[row * n_blk + k];
          for (int j = 0; j < 16; ++j) o[1 + j] = static_cast<uint8_t>(code[j] | code[j + 16] << 4);
        }
      }
      return out;
    };
    Tensor gu, dn;
    if (mxfp4) {
      packed(experts + ".gate_up_proj", 2 * ffn, hidden, gu_blocks, gu_scales);
      packed(experts + ".down_proj", hidden, ffn, dn_blocks, dn_scales);
      file_of_[experts + ".gate_up_proj"] = base.file_of(experts + ".gate_up_proj_blocks");
      file_of_[experts + ".down_proj"] = base.file_of(experts + ".down_proj_blocks");
    } else {
      gu = fetch(experts + ".gate_up_proj", {n_experts, hidden, 2 * ffn});
      dn = fetch(experts + ".down_proj", {n_experts, ffn, hidden});
      if (dn.dtype() != gu.dtype())
        throw Error("dtype " + std::string(dtype_name(dn.dtype())) + ", but gate_up_proj is " + std::string(dtype_name(gu.dtype())) +
                        " (the fused experts of a layer share one float type)",
                    {.file = base.file_of(experts + ".down_proj"), .tensor = experts + ".down_proj"});
    }
    Tensor gub, dnb;
    if (bias) {
      gub = fetch(experts + ".gate_up_proj_bias", {n_experts, 2 * ffn}).to_f32();
      dnb = fetch(experts + ".down_proj_bias", {n_experts, hidden}).to_f32();
    }
    for (int64_t e = 0; e < n_experts; ++e) {
      const std::string p = experts + "." + std::to_string(e) + ".";
      Tensor g, u, d;
      if (mxfp4) {  // gate and up are the even and odd rows of gate_up
        g = repack(gu_blocks, gu_scales, e, 2 * ffn, 0, 2, ffn, hidden);
        u = repack(gu_blocks, gu_scales, e, 2 * ffn, 1, 2, ffn, hidden);
        d = repack(dn_blocks, dn_scales, e, hidden, 0, 1, hidden, ffn);
      } else {
        // Transposed in the stored type (2 or 4 bytes an element).
        g = Tensor::zeros(gu.dtype(), {ffn, hidden});
        u = Tensor::zeros(gu.dtype(), {ffn, hidden});
        d = Tensor::zeros(dn.dtype(), {hidden, ffn});
        if (dtype_bytes(gu.dtype(), 1) == 4)
          split_expert<uint32_t>(gu, dn, e, hidden, ffn, g, u, d);
        else
          split_expert<uint16_t>(gu, dn, e, hidden, ffn, g, u, d);
      }
      add(p + "gate_proj.weight", std::move(g), experts + ".gate_up_proj");
      add(p + "up_proj.weight", std::move(u), experts + ".gate_up_proj");
      add(p + "down_proj.weight", std::move(d), experts + ".down_proj");
      if (!bias) continue;
      Tensor gb = Tensor::zeros(DType::kF32, {ffn}), ub = Tensor::zeros(DType::kF32, {ffn});
      Tensor db = Tensor::zeros(DType::kF32, {hidden});
      for (int64_t i = 0; i < ffn; ++i) {
        gb.data_mut<float>()[i] = gub.data<float>()[e * 2 * ffn + 2 * i];
        ub.data_mut<float>()[i] = gub.data<float>()[e * 2 * ffn + 2 * i + 1];
      }
      std::copy_n(dnb.data<float>() + e * hidden, hidden, db.data_mut<float>());
      add(p + "gate_proj.bias", std::move(gb), experts + ".gate_up_proj_bias");
      add(p + "up_proj.bias", std::move(ub), experts + ".gate_up_proj_bias");
      add(p + "down_proj.bias", std::move(db), experts + ".down_proj_bias");
    }
    std::sort(names_.begin(), names_.end());
  }
  bool has(const std::string& name) const override { return made_.count(name) || base_.has(name); }
  Tensor get(const std::string& name) const override {
    auto it = made_.find(name);
    return it != made_.end() ? it->second : base_.get(name);
  }
  std::string file_of(const std::string& name) const override {
    auto it = file_of_.find(name);
    return it != file_of_.end() ? it->second : base_.file_of(name);
  }
  std::vector<std::string> names() const override { return names_; }
  std::string location() const override { return base_.location(); }
  // The experts' weights are ggml MXFP4 rows (U8), for Mxfp4ExpertMethod.
  bool mxfp4() const { return mxfp4_; }

 private:
  void add(const std::string& name, Tensor t, const std::string& from) {
    file_of_[name] = file_of_[from];
    made_[name] = std::move(t);
    names_.push_back(name);
  }
  const format::TensorSource& base_;
  bool mxfp4_ = false;
  std::vector<std::string> names_;
  std::map<std::string, Tensor> made_;
  std::map<std::string, std::string> file_of_;
};

// The per-expert Linears of MXFP4 experts that FusedExpertSource repacked: ggml MXFP4
// rows multiplied by the GGUF kernels (natively, as a GGUF MXFP4_MOE file's experts are).
class Mxfp4ExpertMethod : public quant::QuantMethod {
 public:
  std::string name() const override { return "mxfp4"; }
  std::unique_ptr<quant::LinearKernel> load_linear(const format::TensorSource& source, const LinearSpec& spec) const override {
    // Split experts are not written for this layout (whole experts per rank are: --enable-ep-moe).
    if (spec.n_shards > 1)
      throw Error("gpt-oss MXFP4 experts from a Hugging Face folder cannot be split over ranks yet; "
                  "--enable-ep-moe keeps each expert whole on one rank",
                  {.tensor = spec.prefix, .field = "--tp-size"});
    Tensor bias = spec.has_bias ? source.get(spec.prefix + ".bias") : Tensor();
    return quant::make_ggml_linear(source.get(spec.prefix + ".weight"), static_cast<uint32_t>(format::GgmlType::kMXFP4),
                                   spec.n_in, std::move(bias));
  }
};

// gpt-oss's clamped SwiGLU, as transformers' GptOssExperts._apply_gate:
// g = min(gate, limit), u = clamp(up, -limit, limit), out = (u + 1) * g * sigmoid(alpha g).
void clamped_swiglu(float* gate, const float* up, int64_t n, float alpha, float limit) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = std::min(gate[i], limit), u = std::clamp(up[i], -limit, limit);
    gate[i] = (u + 1.0f) * (g / (1.0f + std::exp(-alpha * g)));
  }
}

}  // namespace

MoeBlock::~MoeBlock() = default;

std::unique_ptr<MoeBlock> MoeBlock::load(const format::ModelConfig& config, const format::TensorSource& source,
                                         const std::vector<std::string>& names, const quant::QuantMethod& method,
                                         const std::string& layer_prefix, const quant::MoeSpec& tp) {
  std::unique_ptr<MoeBlock> b(new MoeBlock());
  b->config_ = config.moe;
  b->hidden_ = config.hidden_size;
  b->activation_ = config.activation;
  const MoeConfig& m = b->config_;
  const int64_t hidden = config.hidden_size;

  // Mixtral's own names are block_sparse_moe.{gate, experts.E.w1/w3/w2}; transformers 5
  // and GPTQModel write mlp.{gate, experts.E.gate_proj/up_proj/down_proj} for it too.
  const std::string base = layer_prefix + (has_prefix(names, layer_prefix + "block_sparse_moe.") ? "block_sparse_moe." : "mlp.");
  quant::MoeSpec spec;
  spec.prefix = base + "experts";
  if (has_prefix(names, spec.prefix + ".0.w1.")) {
    spec.gate = "w1";
    spec.up = "w3";
    spec.down = "w2";
  }
  spec.n_experts = m.n_experts;
  spec.hidden = hidden;
  spec.d_ff = m.expert_ffn;
  spec.shard = tp.shard;
  spec.n_shards = std::max<int64_t>(1, tp.n_shards);
  spec.reduce_max = tp.reduce_max;
  spec.expert_parallel = tp.expert_parallel;
  b->d_ff_ = spec.expert_parallel ? m.expert_ffn : m.expert_ffn / spec.n_shards;
  b->shared_ff_ = m.shared_expert_ffn / spec.n_shards;
  auto linear = [&](const std::string& name, int64_t n_in, int64_t n_out, quant::ParallelRole role) {
    LinearSpec ls{name, n_in, n_out, false, role};
    ls.shard = spec.shard;
    ls.n_shards = spec.n_shards;
    if (role == quant::ParallelRole::kRow) ls.reduce_max = spec.reduce_max;
    return method.load_linear(source, ls);
  };

  // Experts first: a wrong expert count is reported as such, not as the router's shape.
  spec.bias = m.expert_bias;
  // gpt-oss, fused as transformers saves it (float or MXFP4).
  if (source.has(spec.prefix + ".gate_up_proj") || source.has(spec.prefix + ".gate_up_proj_blocks") ||
      source.has(spec.prefix + ".down_proj_blocks")) {
    const FusedExpertSource fused(source, names, spec.prefix, m.n_experts, hidden, m.expert_ffn, m.expert_bias);
    b->experts_ = fused.mxfp4() ? Mxfp4ExpertMethod().load_experts(fused, spec, fused.names())
                                : method.load_experts(fused, spec, fused.names());
  } else {
    b->experts_ = method.load_experts(source, spec, names);
  }
  // gpt-oss names its router mlp.router (with a bias), the others mlp.gate.
  const std::string router = base + (has_prefix(names, base + "router.") ? "router" : "gate");
  if (!has_prefix(names, router + "."))
    throw Error("the router of this mixture-of-experts layer is missing", {.file = source.location(), .tensor = router + ".weight"});
  if (m.router_bias && !source.has(router + ".bias"))
    throw Error("the router's bias is missing from the checkpoint", {.file = source.location(), .tensor = router + ".bias"});
  b->router_ = method.load_linear(source, LinearSpec{router, hidden, m.n_experts, m.router_bias, ParallelRole::kReplicated});

  if (m.shared_expert_ffn > 0) {
    const std::string s = base + "shared_expert.";
    b->shared_gate_ = linear(s + "gate_proj", hidden, m.shared_expert_ffn, ParallelRole::kColumn);
    b->shared_up_ = linear(s + "up_proj", hidden, m.shared_expert_ffn, ParallelRole::kColumn);
    b->shared_down_ = linear(s + "down_proj", m.shared_expert_ffn, hidden, ParallelRole::kRow);
    const std::string gname = base + "shared_expert_gate.weight";
    Tensor g = source.get(gname);  // HF [1, hidden]; GGUF ffn_gate_inp_shexp [hidden]
    if (g.numel() != hidden || (g.shape() != Shape{hidden} && g.shape() != Shape{1, hidden}))
      throw Error("shape " + shape_str(g.shape()) + " does not match the model config, which needs " +
                      shape_str({1, hidden}), {.file = source.file_of(gname), .tensor = gname});
    if (g.dtype() != DType::kF32 && g.dtype() != DType::kBF16 && g.dtype() != DType::kF16)
      throw Error("dtype " + std::string(dtype_name(g.dtype())) + " is not a float type",
                  {.file = source.file_of(gname), .tensor = gname});
    Tensor f = g.to_f32();
    b->shared_scale_.assign(f.data<float>(), f.data<float>() + hidden);
  }
  return b;
}

size_t MoeBlock::weight_bytes() const {
  size_t n = router_->weight_bytes() + experts_->weight_bytes();
  for (const auto* k : {shared_gate_.get(), shared_up_.get(), shared_down_.get()})
    if (k) n += k->weight_bytes();
  return n;
}

void MoeBlock::forward(const float* x, int64_t n_tokens, float* y, ThreadPool& pool) const {
  const MoeConfig& m = config_;
  const int64_t n_exp = m.n_experts, k = m.n_experts_used, hidden = hidden_, d_ff = d_ff_;
  const int64_t n_slots = n_tokens * k;
  const auto& kt = kernels::kernels();
  const auto act = activation_ == format::Activation::kSilu ? kt.silu_mul : kt.gelu_tanh_mul;

  std::vector<float> logits(static_cast<size_t>(n_tokens * n_exp));
  router_->forward(x, n_tokens, logits.data(), pool);
  const Routing r = route(m, logits.data(), n_tokens);

  // Slots grouped by expert (counting sort, slots in token order within an expert).
  std::vector<int64_t> start(static_cast<size_t>(n_exp + 1), 0);
  for (int32_t e : r.expert) ++start[static_cast<size_t>(e) + 1];
  for (int64_t e = 0; e < n_exp; ++e) start[static_cast<size_t>(e + 1)] += start[static_cast<size_t>(e)];
  std::vector<int64_t> row_of_slot(static_cast<size_t>(n_slots)), fill(start.begin(), start.end() - 1);
  for (int64_t s = 0; s < n_slots; ++s) row_of_slot[static_cast<size_t>(s)] = fill[static_cast<size_t>(r.expert[static_cast<size_t>(s)])]++;

  // Rows in expert order: the gathered inputs, gate/up, and each slot's expert output.
  std::vector<float> xs(static_cast<size_t>(n_slots * hidden)), gate(static_cast<size_t>(n_slots * d_ff)),
      up(static_cast<size_t>(n_slots * d_ff)), ys(static_cast<size_t>(n_slots * hidden));
  pool.parallel_for(n_slots, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s)
      std::copy_n(x + (s / k) * hidden, hidden, xs.data() + row_of_slot[static_cast<size_t>(s)] * hidden);
  });

  auto run_expert = [&](int64_t e, ThreadPool& p) {
    const int64_t r0 = start[static_cast<size_t>(e)], n = start[static_cast<size_t>(e + 1)] - r0;
    float* g = gate.data() + r0 * d_ff;
    experts_->gate_up(e, xs.data() + r0 * hidden, n, g, up.data() + r0 * d_ff, p);
    if (m.swiglu_limit > 0.0)
      clamped_swiglu(g, up.data() + r0 * d_ff, n * d_ff, static_cast<float>(m.swiglu_alpha), static_cast<float>(m.swiglu_limit));
    else
      act(g, up.data() + r0 * d_ff, g, n * d_ff);
    experts_->down(e, g, n, ys.data() + r0 * hidden, p);
  };
  // Experts with more than a thread's share of rows run one at a time on the whole pool;
  // the others are spread over the pool, one expert per task (nested calls run serially).
  std::vector<int64_t> spread;
  for (int64_t e = 0; e < n_exp; ++e) {
    const int64_t n = start[static_cast<size_t>(e + 1)] - start[static_cast<size_t>(e)];
    if (n == 0 || !experts_->has_expert(e)) continue;  // another rank's expert: its rows stay 0 here
    if (pool.size() > 1 && n * pool.size() > n_slots) run_expert(e, pool);
    else spread.push_back(e);
  }
  pool.parallel_for(static_cast<int64_t>(spread.size()), 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) run_expert(spread[static_cast<size_t>(i)], pool);
  });

  // Each token's weighted sum over its k slots, in choice order.
  pool.parallel_for(n_tokens, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      float* yt = y + t * hidden;
      std::fill(yt, yt + hidden, 0.0f);
      for (int64_t j = 0; j < k; ++j) {
        const int64_t s = t * k + j;
        const float w = r.weight[static_cast<size_t>(s)];
        const float* ye = ys.data() + row_of_slot[static_cast<size_t>(s)] * hidden;
        for (int64_t i = 0; i < hidden; ++i) yt[i] += w * ye[i];
      }
    }
  });

  if (shared_gate_) {
    const int64_t ff = shared_ff_;
    std::vector<float> sg(static_cast<size_t>(n_tokens * ff)), su(static_cast<size_t>(n_tokens * ff)),
        sy(static_cast<size_t>(n_tokens * hidden));
    shared_gate_->forward(x, n_tokens, sg.data(), pool);
    shared_up_->forward(x, n_tokens, su.data(), pool);
    act(sg.data(), su.data(), sg.data(), n_tokens * ff);
    shared_down_->forward(sg.data(), n_tokens, sy.data(), pool);
    for (int64_t t = 0; t < n_tokens; ++t) {
      float dot = 0.0f;
      for (int64_t i = 0; i < hidden; ++i) dot += x[t * hidden + i] * shared_scale_[static_cast<size_t>(i)];
      const float scale = 1.0f / (1.0f + std::exp(-dot));
      for (int64_t i = 0; i < hidden; ++i) y[t * hidden + i] += scale * sy[static_cast<size_t>(t * hidden + i)];
    }
  }
}

}  // namespace quanta::model
