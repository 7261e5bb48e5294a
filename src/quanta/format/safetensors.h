// Reader for safetensors files and checkpoint folders of them.
//
// A safetensors file is: u64 little-endian header length N, N bytes of JSON
// header, then the data section. The header maps each tensor name to
// {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the data
// section) and may hold "__metadata__", an object of strings.
//
// SafetensorsFile validates the whole header when it is opened, so every tensor
// it hands out has a known dtype, a shape whose byte size matches its offsets,
// and data inside the file that no other tensor shares. Tensors are zero-copy
// views into the read-only mapping. The format does not align tensor data, so a
// view's pointer is only as aligned as the writer made it (the official writer
// pads the header to 8 bytes and packs tensors back to back).
//
// SafetensorsCheckpoint is the TensorSource over a model folder: sharded through
// an index file, a single model.safetensors, or all *.safetensors in it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "quanta/core/mapped_file.h"
#include "quanta/core/tensor.h"
#include "quanta/format/tensor_source.h"

namespace quanta::format {

struct SafetensorsTensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  uint64_t offset = 0;  // absolute byte offset of the data in the file
  uint64_t nbytes = 0;
};

class SafetensorsFile {
 public:
  // Header length above this is refused as corrupt (the same limit as the
  // reference Rust implementation).
  static constexpr uint64_t kMaxHeaderBytes = 100'000'000;

  // Maps and validates the file; throws Error naming the file, the tensor and
  // the field at the first problem.
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return mapping_->path(); }
  // All tensors, sorted by name.
  const std::vector<SafetensorsTensorInfo>& tensors() const { return tensors_; }
  // nullptr if the file has no tensor of this name.
  const SafetensorsTensorInfo* find(const std::string& name) const;
  bool has(const std::string& name) const { return find(name) != nullptr; }
  // A view into the mapping (or, for a large tensor off a 64-byte boundary, an
  // aligned copy shared by every caller while one holds it); throws Error naming
  // the tensor and file if absent.
  Tensor tensor(const std::string& name) const;

  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::shared_ptr<const MappedFile>& mapping() const { return mapping_; }
  // Byte offset of the data section in the file (8 + header length).
  uint64_t data_start() const { return data_start_; }

 private:
  std::shared_ptr<const MappedFile> mapping_;
  uint64_t data_start_ = 0;
  std::vector<SafetensorsTensorInfo> tensors_;
  std::unordered_map<std::string, size_t> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
  // Aligned copies handed out, so a tied embedding / lm_head is copied once.
  mutable std::mutex copies_mutex_;
  mutable std::unordered_map<std::string, std::weak_ptr<const void>> copies_;
};

class SafetensorsCheckpoint : public TensorSource {
 public:
  // File name of the shard index transformers writes next to its shards.
  static constexpr const char* kIndexName = "model.safetensors.index.json";
  static constexpr const char* kSingleName = "model.safetensors";
  static constexpr const char* kModelSlimIndexName = "quant_model_weights.safetensors.index.json";
  static constexpr const char* kDiffusersIndexName = "diffusion_pytorch_model.safetensors.index.json";

  // `path` is a model folder, or a single .safetensors file. In a folder:
  //  1. model.safetensors.index.json (or msModelSlim's
  //     quant_model_weights.safetensors.index.json, or Diffusers'
  //     diffusion_pytorch_model.safetensors.index.json): the shards its weight_map names, each
  //     checked to hold the tensors mapped to it (tensors a shard holds beyond
  //     those are served too, as transformers loads whole shards);
  //  2. otherwise model.safetensors;
  //  3. otherwise every *.safetensors in the folder.
  // A tensor found in two files is an error.
  explicit SafetensorsCheckpoint(const std::string& path);

  bool has(const std::string& name) const override;
  Tensor get(const std::string& name) const override;
  std::string file_of(const std::string& name) const override;
  std::vector<std::string> names() const override;
  std::string location() const override { return location_; }

  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  // The index file used, "" if the checkpoint has none.
  const std::string& index_path() const { return index_path_; }

 private:
  void open_indexed(const std::string& dir, const std::string& index_path);
  // Adds every tensor of files_[i] to where_, refusing names already there.
  void add_file_tensors(size_t i);

  std::string location_;
  std::string index_path_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::unordered_map<std::string, size_t> where_;  // tensor name -> files_ index
};

std::unique_ptr<TensorSource> open_safetensors(const std::string& dir);

}  // namespace quanta::format
