// The Wan2.x diffusion transformer (Diffusers' WanTransformer3DModel), forward pass in f32.
//
// Loaded from a Diffusers `transformer/` folder (config.json + safetensors, f32/bf16/f16), by the
// Diffusers tensor names. Every Linear of the blocks (attn1/attn2 to_q, to_k, to_v, to_out.0;
// ffn.net.0.proj, ffn.net.2) goes through a quant::QuantMethod, so quantized schemes plug in
// there; the patch embedding, condition embedder, proj_out, norms and modulation tables are
// always float. Follows diffusers 0.42 transformer_wan.py; text-to-video only (no image
// embedder / added_kv_proj_dim yet).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "quanta/core/tensor.h"
#include "quanta/format/tensor_source.h"
#include "quanta/quant/quant_method.h"

namespace quanta {
class ThreadPool;
}

namespace quanta::model {

// config.json of a WanTransformer3DModel (the fields the forward pass uses).
struct WanConfig {
  std::array<int64_t, 3> patch_size = {1, 2, 2};  // frames, height, width
  int64_t n_heads = 40;
  int64_t d_head = 128;
  int64_t in_channels = 16;
  int64_t out_channels = 16;
  int64_t text_dim = 4096;
  int64_t freq_dim = 256;
  int64_t ffn_dim = 13824;
  int64_t n_layers = 40;
  bool cross_attn_norm = true;
  float eps = 1e-6f;
  int64_t rope_max_seq_len = 1024;
  int64_t dim() const { return n_heads * d_head; }
};

// Parses config.json text; throws Error naming the file and field for a missing or bad value,
// and for features not supported yet (image_dim / added_kv_proj_dim: image-to-video).
WanConfig parse_wan_config(const std::string& json_text, const std::string& file);

struct WanLoadOptions {
  // The method for the blocks' Linears; null: the unquantized one (float weights as stored).
  const quant::QuantMethod* method = nullptr;
};

class WanTransformer {
 public:
  // `dir` is a Diffusers transformer folder (config.json and *.safetensors).
  static std::unique_ptr<WanTransformer> load(const std::string& dir, const WanLoadOptions& options = {});
  // From a parsed config and any tensor source; keeps `source` alive through `keep`.
  static std::unique_ptr<WanTransformer> load(const WanConfig& config, std::shared_ptr<const format::TensorSource> source,
                                              const quant::QuantMethod& method);
  ~WanTransformer();

  const WanConfig& config() const { return config_; }

  // The noise (flow) prediction, f32 [B, out_channels, F, H, W], for
  //   latents   f32 [B, in_channels, F, H, W], F/H/W divisible by the patch size;
  //   timestep  f32 [B] (one per sample) or [B, seq_len] (one per token, seq_len =
  //             F/pt * H/ph * W/pw; Wan2.2 TI2V's expand_timesteps);
  //   text      f32 [B, L, text_dim] (the text encoder's hidden states).
  // Throws Error naming the parameter when a shape does not fit.
  Tensor forward(const Tensor& latents, const Tensor& timestep, const Tensor& text, ThreadPool& pool) const;

  size_t weight_bytes() const;

 private:
  struct Block;
  WanTransformer();

  WanConfig config_;
  std::shared_ptr<const format::TensorSource> source_;  // the mapped weights the kernels view
  std::unique_ptr<quant::LinearKernel> patch_embedding_;  // Conv3d as a Linear [dim, C * pt * ph * pw]
  std::unique_ptr<quant::LinearKernel> time_linear_1_, time_linear_2_, time_proj_;  // condition_embedder
  std::unique_ptr<quant::LinearKernel> text_linear_1_, text_linear_2_;
  std::vector<std::unique_ptr<Block>> blocks_;
  Tensor out_modulation_;  // scale_shift_table [2, dim] f32: shift, scale of norm_out
  std::unique_ptr<quant::LinearKernel> proj_out_;  // [out_channels * pt * ph * pw, dim]
};

}  // namespace quanta::model
