// GGUF checkpoints as the model sees them: a ModelConfig from the metadata and
// a TensorSource that serves tensors under their Hugging Face names.
//
// The naming and conventions follow llama.cpp's converter (see
// shared/specs/checkpoint-formats-2.md §4): blk.N.attn_q <-> model.layers.N.self_attn.q_proj,
// row-major shapes are GGUF's ne reversed, 3-D expert tensors are served one
// expert at a time as mlp.experts.E.*_proj (zero-copy row ranges), Gemma norms are stored as (1 + w) and
// served as w, llama-arch q/k rows are permuted for llama.cpp's interleaved
// ("NORM") rope, which the config asks for instead of un-permuting them.
//
// get() serves quantized tensors dequantized to f32 (SGLang's GGUF behaviour,
// quanta's `--gguf-dequantize`); the gguf quantization method reads the blocks
// as stored through gguf_tensor() instead.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>

#include "quanta/format/gguf.h"
#include "quanta/format/hf_config.h"
#include "quanta/format/tensor_source.h"

namespace quanta::format {

// Throws Error naming the file and metadata key for a missing or unsupported field.
ModelConfig gguf_model_config(const GgufFile& file);
GenerationDefaults gguf_generation_defaults(const GgufFile& file);

class GgufTensorSource : public TensorSource {
 public:
  GgufTensorSource(std::shared_ptr<const GgufFile> file, const ModelConfig& config);

  bool has(const std::string& name) const override;
  Tensor get(const std::string& name) const override;
  std::string file_of(const std::string& name) const override { return file_->path(); }
  std::vector<std::string> names() const override;
  std::string location() const override { return file_->path(); }
  size_t stored_bytes(const std::string& name) const override;

  // The GGUF tensor served under a Hugging Face name, or nullptr: how a
  // quantization method reads blocks as stored instead of dequantized.
  const GgufTensorInfo* gguf_tensor(const std::string& name) const;
  const GgufFile& file() const { return *file_; }

 private:
  std::shared_ptr<const GgufFile> file_;
  bool gemma_norms_;
  // Serves each expert of a 3-D expert tensor (and Mixtral's older per-expert tensors)
  // as mlp.experts.E.{gate,up,down}_proj.weight.
  void add_expert_slices(const GgufTensorInfo& t);

  std::unordered_map<std::string, std::string> hf_to_gguf_;
  std::unordered_map<std::string, GgufTensorInfo> slices_;  // HF name -> one expert's rows of a 3-D tensor
};

// Whether `path` is a GGUF file (by its magic bytes).
bool is_gguf_file(const std::string& path);

}  // namespace quanta::format
