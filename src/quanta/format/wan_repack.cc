#include "quanta/format/wan_repack.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "quanta/core/error.h"
#include "quanta/core/json.h"
#include "quanta/format/hf_config.h"
#include "quanta/format/safetensors.h"
#include "quanta/format/safetensors_writer.h"

namespace quanta::format {

namespace fs = std::filesystem;

const std::vector<std::pair<std::string, std::string>>& wan_rename_rules() {
  // TRANSFORMER_KEYS_RENAME_DICT of SGLang's wan_repack.py (itself Diffusers'
  // scripts/convert_wan_to_diffusers.py plus the attention, I2V and wrapper rules);
  // the order matters (spec §5.3).
  static const std::vector<std::pair<std::string, std::string>> rules = {
      {"time_embedding.0", "condition_embedder.time_embedder.linear_1"},
      {"time_embedding.2", "condition_embedder.time_embedder.linear_2"},
      {"text_embedding.0", "condition_embedder.text_embedder.linear_1"},
      {"text_embedding.2", "condition_embedder.text_embedder.linear_2"},
      {"time_projection.1", "condition_embedder.time_proj"},
      {"head.modulation", "scale_shift_table"},
      {"head.head", "proj_out"},
      {"modulation", "scale_shift_table"},
      {"ffn.0", "ffn.net.0.proj"},
      {"ffn.2", "ffn.net.2"},
      // Wan orders its block norms norm1, norm3, norm2; Diffusers norm1, norm2, norm3: a swap.
      {"norm2", "norm__placeholder"},
      {"norm3", "norm2"},
      {"norm__placeholder", "norm3"},
      {"img_emb.proj.0", "condition_embedder.image_embedder.norm1"},
      {"img_emb.proj.1", "condition_embedder.image_embedder.ff.net.0.proj"},
      {"img_emb.proj.3", "condition_embedder.image_embedder.ff.net.2"},
      {"img_emb.proj.4", "condition_embedder.image_embedder.norm2"},
      {"img_emb.emb_pos", "condition_embedder.image_embedder.pos_embed"},
      {"self_attn.q", "attn1.to_q"},
      {"self_attn.k", "attn1.to_k"},
      {"self_attn.v", "attn1.to_v"},
      {"self_attn.o", "attn1.to_out.0"},
      {"self_attn.norm_q", "attn1.norm_q"},
      {"self_attn.norm_k", "attn1.norm_k"},
      {"cross_attn.q", "attn2.to_q"},
      {"cross_attn.k", "attn2.to_k"},
      {"cross_attn.v", "attn2.to_v"},
      {"cross_attn.o", "attn2.to_out.0"},
      {"cross_attn.norm_q", "attn2.norm_q"},
      {"cross_attn.norm_k", "attn2.norm_k"},
      {"attn2.to_k_img", "attn2.add_k_proj"},
      {"attn2.to_v_img", "attn2.add_v_proj"},
      {"attn2.norm_k_img", "attn2.norm_added_k"},
      // msModelSlim's wrapped Linear (MXFP4) and its smooth-quant scale `.div.mul_scale`.
      {".linear.", "."},
      {".div.", "."},
  };
  return rules;
}

std::string wan_to_diffusers_name(const std::string& wan_name) {
  std::string name = wan_name;
  for (const auto& [from, to] : wan_rename_rules()) {
    // Python's str.replace: left to right, never rescanning the replacement.
    std::string result;
    size_t pos = 0;
    for (size_t hit; (hit = name.find(from, pos)) != std::string::npos; pos = hit + from.size())
      result.append(name, pos, hit - pos).append(to);
    result.append(name, pos, std::string::npos);
    name = std::move(result);
  }
  return name;
}

namespace {

// One transformer folder, checked and planned, before anything is written.
struct TransformerPlan {
  std::string in_dir, out_name;  // out_name: "transformer" or "transformer_2"
  std::string description_path;
  std::unique_ptr<SafetensorsCheckpoint> checkpoint;
  std::unordered_map<std::string, std::string> renamed;  // wan name -> diffusers name
  nlohmann::ordered_json description;                     // already renamed
  bool sharded = false;
  WanRepackedTransformer report;
};

// Description keys that are no tensor and are left alone: top-level names without a dot
// (model_quant_type, version, group_size, metadata, ...), non-string values, and the
// per-attention `<prefix>.quant_type` / `<prefix>.indexer.quant_type` descriptors
// (wan_repack.py renames only keys that are tensors of the state dict). Any other entry
// names a tensor, which must exist.
bool is_global_entry(const std::string& key, const nlohmann::ordered_json& value) {
  return !value.is_string() || key.find('.') == std::string::npos || key.ends_with(".quant_type");
}

std::string first_description(const fs::path& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.starts_with("quant_model_description") && name.ends_with(".json") && e.is_regular_file(ec))
      found.push_back(e.path().string());
  }
  if (ec) throw Error("cannot list the folder: " + ec.message(), {.file = dir.string()});
  if (found.empty()) throw Error("no quant_model_description*.json in the msModelSlim folder", {.file = dir.string()});
  std::sort(found.begin(), found.end());  // wan_repack.py takes the first by name
  return found.front();
}

TransformerPlan plan_transformer(const fs::path& in_dir, const std::string& out_name) {
  TransformerPlan p;
  p.in_dir = in_dir.string();
  p.out_name = out_name;
  std::error_code ec;
  if (!fs::is_directory(in_dir, ec)) throw Error("msModelSlim transformer folder not found", {.file = p.in_dir});
  p.description_path = first_description(in_dir);
  p.checkpoint = std::make_unique<SafetensorsCheckpoint>(p.in_dir);
  p.sharded = !p.checkpoint->index_path().empty() || p.checkpoint->files().size() > 1;

  std::map<std::string, std::string> taken;  // diffusers name -> the wan name that took it
  for (const auto& file : p.checkpoint->files()) {
    for (const auto& t : file->tensors()) {
      const std::string to = wan_to_diffusers_name(t.name);
      auto [it, fresh] = taken.emplace(to, t.name);
      if (!fresh)
        throw Error("two tensors would be renamed to '" + to + "': '" + it->second + "' and '" + t.name + "'",
                    {.file = file->path(), .tensor = t.name});
      p.renamed.emplace(t.name, to);
      ++p.report.n_tensors;
      if (to != t.name) ++p.report.n_renamed;
      else if (!t.name.starts_with("patch_embedding.")) p.report.untouched.push_back(t.name);
    }
  }

  const auto in_desc = parse_json<nlohmann::ordered_json>(read_text_file(p.description_path), {.file = p.description_path});
  if (!in_desc.is_object()) throw Error("the description is not a JSON object", {.file = p.description_path});
  p.description = nlohmann::ordered_json::object();
  for (const auto& [key, value] : in_desc.items()) {
    std::string to = key;
    if (auto it = p.renamed.find(key); it != p.renamed.end()) {
      to = it->second;
      ++p.report.n_description_entries;
    } else if (!is_global_entry(key, value)) {
      throw Error("the description has an entry for a tensor the safetensors do not hold",
                  {.file = p.description_path, .tensor = key});
    }
    if (p.description.contains(to))
      throw Error("two description entries would be renamed to '" + to + "'", {.file = p.description_path, .tensor = key});
    p.description[to] = value;
  }
  return p;
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  f.flush();
  if (!f) throw Error("cannot write", {.file = path.string()});
}

void write_transformer(TransformerPlan& p, const fs::path& out_dir) {
  fs::create_directories(out_dir);
  p.report.in_dir = p.in_dir;
  p.report.out_dir = out_dir.string();
  const auto& files = p.checkpoint->files();
  const size_t n = files.size();
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  for (size_t i = 0; i < n; ++i) {
    const SafetensorsFile& file = *files[i];
    char shard_name[96];
    std::snprintf(shard_name, sizeof shard_name, "diffusion_pytorch_model-%05zu-of-%05zu.safetensors", i + 1, n);
    const std::string out_name = p.sharded ? shard_name : "diffusion_pytorch_model.safetensors";
    std::vector<PlannedTensor> plan;
    for (const auto& t : file.tensors()) {
      const std::string& to = p.renamed.at(t.name);
      // A view straight into the input mapping: the bytes go out as they are, one tensor at a time.
      const uint8_t* data = file.mapping()->data() + t.offset;
      plan.push_back({to, t.dtype, t.shape, [&file, dtype = t.dtype, shape = t.shape, data] {
                        return Tensor::view(dtype, shape, data, file.mapping());
                      }});
      weight_map[to] = out_name;
      p.report.bytes += t.nbytes;
    }
    write_safetensors((out_dir / out_name).string(), plan, file.metadata());
  }
  p.report.n_files = static_cast<int>(n);
  if (p.sharded) {
    nlohmann::ordered_json index = {{"metadata", {{"total_size", p.report.bytes}}}, {"weight_map", weight_map}};
    write_text(out_dir / "diffusion_pytorch_model.safetensors.index.json", index.dump(2) + "\n");
  }
  write_text(out_dir / "quant_model_description.json", p.description.dump(2) + "\n");
}

bool is_transformer_name(const fs::path& p) {
  const std::string name = p.filename().string();
  return name == "transformer" || name == "transformer_2";
}

// shutil.copytree(base, out, ignore=ignore_patterns("transformer", "transformer_2")):
// the pattern is matched against names in every folder of the tree. Symlinks are followed.
int64_t copy_base_tree(const fs::path& from, const fs::path& to) {
  int64_t copied = 0;
  fs::create_directories(to);
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(from, ec)) {
    if (is_transformer_name(e.path())) continue;
    const fs::path dest = to / e.path().filename();
    std::error_code kind_ec;
    if (e.is_directory(kind_ec)) {
      copied += copy_base_tree(e.path(), dest);
    } else {
      std::error_code copy_ec;
      fs::copy_file(e.path(), dest, copy_ec);
      if (copy_ec) throw Error("cannot copy from the Diffusers base: " + copy_ec.message(), {.file = e.path().string()});
      ++copied;
    }
  }
  if (ec) throw Error("cannot list the folder: " + ec.message(), {.file = from.string()});
  return copied;
}

}  // namespace

WanRepackReport repack_wan(const std::string& in, const std::string& out, const WanRepackOptions& options) {
  std::error_code ec;
  if (!fs::is_directory(in, ec)) throw Error("input msModelSlim folder not found", {.file = in});
  // As wan_repack.py, whose copytree refuses an existing output folder.
  if (fs::exists(out, ec)) throw Error("the output already exists; give a new folder", {.file = out});
  const fs::path base(options.diffusers_base);
  if (!options.diffusers_base.empty() && !fs::is_regular_file(base / "model_index.json", ec))
    throw Error("not a Diffusers pipeline folder (no model_index.json)", {.file = options.diffusers_base});

  const fs::path in_dir(in);
  const bool has_high = fs::is_directory(in_dir / "high_noise_model", ec);
  const bool has_low = fs::is_directory(in_dir / "low_noise_model", ec);
  std::vector<TransformerPlan> plans;
  if (has_high || has_low) {
    if (!has_high || !has_low)
      throw Error(std::string("a Wan2.2-A14B msModelSlim output needs both high_noise_model/ and low_noise_model/; ") +
                      (has_high ? "low_noise_model/" : "high_noise_model/") + " is missing",
                  {.file = in});
    plans.push_back(plan_transformer(in_dir / "high_noise_model", "transformer"));
    plans.push_back(plan_transformer(in_dir / "low_noise_model", "transformer_2"));
  } else {
    plans.push_back(plan_transformer(in_dir, "transformer"));
  }

  WanRepackReport report;
  const fs::path out_dir(out);
  if (!options.diffusers_base.empty()) report.n_base_files = copy_base_tree(base, out_dir);
  for (TransformerPlan& p : plans) {
    write_transformer(p, out_dir / p.out_name);
    const fs::path config = base / p.out_name / "config.json";
    if (!options.diffusers_base.empty() && fs::is_regular_file(config, ec)) {
      fs::copy_file(config, out_dir / p.out_name / "config.json", ec);
      if (ec) throw Error("cannot copy: " + ec.message(), {.file = config.string()});
    }
    report.transformers.push_back(std::move(p.report));
  }
  return report;
}

}  // namespace quanta::format
