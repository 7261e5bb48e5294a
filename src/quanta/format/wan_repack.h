// `quanta repack-wan`: msModelSlim saves a quantized Wan2.x transformer under the
// original Wan key names; Diffusers (and SGLang-Diffusion) load
// `WanTransformer3DModel` names. This renames every tensor and every description
// entry by the ordered substring table of SGLang's
// python/sglang/multimodal_gen/tools/wan_repack.py (spec checkpoint-formats-1 §5.3),
// copying tensor bytes unchanged, one tensor at a time.
//
// Layout (as wan_repack.py, which picks it from --model-type; here from the folders):
//   IN/high_noise_model/ + IN/low_noise_model/  (Wan2.2-A14B experts)
//        -> OUT/transformer/ + OUT/transformer_2/
//   IN itself holding quant_model_description*.json  (Wan2.2-TI2V-5B, one transformer)
//        -> OUT/transformer/
// Each transformer folder reads its safetensors as SafetensorsCheckpoint does (msModelSlim's
// index, or every *.safetensors) and takes the first quant_model_description*.json by name.
// Each input file becomes one output file: `diffusion_pytorch_model.safetensors` for a
// single unindexed file, else `diffusion_pytorch_model-0000i-of-0000n.safetensors` with
// `diffusion_pytorch_model.safetensors.index.json` (wan_repack.py merges all into one file;
// keeping the shards keeps each output file no larger than its input). The description is
// written as `quant_model_description.json`.
// With a Diffusers base folder, OUT also gets everything of it except files and folders
// named `transformer` / `transformer_2` at any depth (shutil.ignore_patterns, as the tool),
// and each OUT/transformer*/config.json from the base's.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace quanta::format {

// Rules in order; each applies to the result of the one before, all occurrences.
const std::vector<std::pair<std::string, std::string>>& wan_rename_rules();
std::string wan_to_diffusers_name(const std::string& wan_name);

struct WanRepackOptions {
  std::string diffusers_base;  // "" : write only OUT/transformer*
};

struct WanRepackedTransformer {
  std::string in_dir, out_dir;
  int64_t n_tensors = 0;
  int64_t n_renamed = 0;
  int64_t n_description_entries = 0;  // per-tensor entries renamed (global keys excluded)
  int n_files = 0;
  uint64_t bytes = 0;
  // Tensors no rule renamed, other than patch_embedding.* (the same name in Diffusers).
  std::vector<std::string> untouched;
};

struct WanRepackReport {
  std::vector<WanRepackedTransformer> transformers;
  int64_t n_base_files = 0;  // files copied from the Diffusers base
};

// Checks every input and every renamed name before OUT is created, so a refused
// repack writes nothing. Throws Error naming the file / tensor / entry that is wrong:
// OUT exists, IN or a transformer folder missing or unreadable, two tensors renamed to
// one name, a per-tensor description entry naming no tensor of the safetensors.
WanRepackReport repack_wan(const std::string& in, const std::string& out, const WanRepackOptions& options = {});

}  // namespace quanta::format
