#include "quanta/format/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "quanta/core/error.h"
#include "quanta/core/json.h"

namespace quanta::format {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kMetadataKey = "__metadata__";

struct ParsedJson {
  json value;
  std::string duplicate_key;  // first key seen twice in one object, "" if none
  int duplicate_depth = 0;    // 1 for a key of the top-level object
};

// Parses JSON text, noting duplicate keys: nlohmann keeps the last silently, but
// a header that names a tensor twice is ambiguous and must be refused.
// Throws json::parse_error on malformed text, Error (at `where`) on too deep nesting.
ParsedJson parse_json(const char* begin, const char* end, const ErrorContext& where) {
  check_json_depth(std::string_view(begin, static_cast<size_t>(end - begin)), where);
  ParsedJson out;
  std::vector<std::set<std::string>> open_objects;
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == json::parse_event_t::key && !open_objects.empty()) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second && out.duplicate_key.empty()) {
        out.duplicate_key = key;
        out.duplicate_depth = depth;
      }
    }
    return true;
  };
  out.value = json::parse(begin, end, callback);
  return out;
}

// Full initialisation: partial designated initialisers trip -Wmissing-field-initializers.
ErrorContext error_at(std::string file, std::string tensor = "", std::string field = "") {
  return ErrorContext{std::move(file), std::move(tensor), std::move(field)};
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// A JSON value that is a non-negative integer; false for negative numbers,
// floats (1.0 included, as the reference reader refuses it) and non-numbers.
bool as_unsigned(const json& v, uint64_t* out) {
  if (!v.is_number_unsigned()) return false;
  *out = v.get<uint64_t>();
  return true;
}

struct TensorSpan {
  uint64_t begin, end;  // relative to the data section
};

}  // namespace

// ---------------------------------------------------------------------------
// SafetensorsFile

SafetensorsFile::SafetensorsFile(const std::string& path) : mapping_(MappedFile::open(path)) {
  const uint64_t file_size = mapping_->size();
  auto fail = [&](const std::string& message, const std::string& tensor = "",
                  const std::string& field = "header") -> Error {
    return Error(message, error_at(path, tensor, field));
  };

  if (file_size < 8) {
    throw fail("file is too short for safetensors: " + std::to_string(file_size) +
               " bytes, the header length alone takes 8");
  }
  const uint64_t header_len = read_u64_le(mapping_->data());
  if (header_len > kMaxHeaderBytes) {
    throw fail("header length " + std::to_string(header_len) + " exceeds the limit of " +
               std::to_string(kMaxHeaderBytes) + " bytes; the file is corrupt");
  }
  if (header_len > file_size - 8) {
    throw fail("header length " + std::to_string(header_len) + " goes past the end of the file (" +
               std::to_string(file_size) + " bytes); the file is truncated or corrupt");
  }
  data_start_ = 8 + header_len;
  const uint64_t data_size = file_size - data_start_;

  const char* header = reinterpret_cast<const char*>(mapping_->data() + 8);
  ParsedJson parsed;
  try {
    parsed = parse_json(header, header + header_len, error_at(path, "", "header"));
  } catch (const json::exception& e) {
    throw fail("header is not valid JSON: " + json_error_text(e));
  }
  if (!parsed.value.is_object()) {
    throw fail(std::string("header is not a JSON object but ") + parsed.value.type_name());
  }
  if (!parsed.duplicate_key.empty()) {
    bool is_tensor = parsed.duplicate_depth == 1;
    throw fail("header has the key '" + parsed.duplicate_key + "' twice",
               is_tensor ? parsed.duplicate_key : "");
  }

  std::vector<TensorSpan> spans;
  for (const auto& [name, entry] : parsed.value.items()) {
    if (name == kMetadataKey) {
      if (!entry.is_object()) throw fail("__metadata__ must be an object of strings", "", kMetadataKey);
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) {
          throw fail("__metadata__ value of '" + key + "' must be a string, got " + value.dump(), "",
                     kMetadataKey);
        }
        metadata_[key] = value.get<std::string>();
      }
      continue;
    }
    if (!entry.is_object()) {
      throw fail("tensor entry must be an object with dtype, shape and data_offsets, got " +
                     entry.dump(), name);
    }

    SafetensorsTensorInfo info;
    info.name = name;

    auto dtype_it = entry.find("dtype");
    if (dtype_it == entry.end()) throw fail("missing dtype", name, "dtype");
    if (!dtype_it->is_string()) throw fail("dtype must be a string, got " + dtype_it->dump(), name, "dtype");
    const auto& dtype_name_str = dtype_it->get_ref<const std::string&>();
    auto dtype = dtype_from_name(dtype_name_str);
    if (!dtype) throw fail("unknown dtype '" + dtype_name_str + "'", name, "dtype");
    info.dtype = *dtype;

    auto shape_it = entry.find("shape");
    if (shape_it == entry.end()) throw fail("missing shape", name, "shape");
    if (!shape_it->is_array()) throw fail("shape must be an array, got " + shape_it->dump(), name, "shape");
    uint64_t numel = 1;
    for (const auto& d : *shape_it) {
      uint64_t dim = 0;
      if (!as_unsigned(d, &dim)) {
        throw fail("shape must hold non-negative integers, got " + shape_it->dump(), name, "shape");
      }
      // Shape holds int64_t, and numel() must fit it too.
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          __builtin_mul_overflow(numel, dim, &numel) ||
          numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        throw fail("element count of shape " + shape_it->dump() + " overflows", name, "shape");
      }
      info.shape.push_back(static_cast<int64_t>(dim));
    }
    // Guard dtype_bytes against overflow in its bit arithmetic.
    uint64_t total_bits = 0;
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_bits(info.dtype)), &total_bits)) {
      throw fail("byte size of shape " + shape_it->dump() + " overflows", name, "shape");
    }

    auto offsets_it = entry.find("data_offsets");
    if (offsets_it == entry.end()) throw fail("missing data_offsets", name, "data_offsets");
    uint64_t begin = 0, end = 0;
    if (!offsets_it->is_array() || offsets_it->size() != 2 || !as_unsigned((*offsets_it)[0], &begin) ||
        !as_unsigned((*offsets_it)[1], &end)) {
      throw fail("data_offsets must be [begin, end] with non-negative integers, got " +
                     offsets_it->dump(), name, "data_offsets");
    }
    if (begin > end) {
      throw fail("data_offsets begin " + std::to_string(begin) + " is after end " + std::to_string(end),
                 name, "data_offsets");
    }
    if (end > data_size) {
      throw fail("data_offsets end " + std::to_string(end) + " is past the end of the data section (" +
                     std::to_string(data_size) + " bytes); the file is truncated or corrupt",
                 name, "data_offsets");
    }
    const uint64_t need = dtype_bytes(info.dtype, static_cast<size_t>(numel));
    if (end - begin != need) {
      throw fail("data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "] hold " +
                     std::to_string(end - begin) + " bytes but dtype " + dtype_name_str + " with shape " +
                     shape_str(info.shape) + " needs " + std::to_string(need),
                 name, "data_offsets");
    }
    info.offset = data_start_ + begin;
    info.nbytes = need;
    tensors_.push_back(std::move(info));
    spans.push_back({begin, end});
  }

  // Two tensors sharing bytes would alias each other's data. Empty tensors
  // occupy nothing and cannot overlap.
  std::vector<size_t> order;
  for (size_t i = 0; i < spans.size(); ++i) {
    if (spans[i].end > spans[i].begin) order.push_back(i);
  }
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return spans[a].begin != spans[b].begin ? spans[a].begin < spans[b].begin : spans[a].end < spans[b].end;
  });
  for (size_t k = 1; k < order.size(); ++k) {
    const TensorSpan& prev = spans[order[k - 1]];
    const TensorSpan& cur = spans[order[k]];
    if (cur.begin < prev.end) {
      throw fail("data_offsets [" + std::to_string(cur.begin) + ", " + std::to_string(cur.end) +
                     "] overlap those of tensor '" + tensors_[order[k - 1]].name + "' [" +
                     std::to_string(prev.begin) + ", " + std::to_string(prev.end) + "]",
                 tensors_[order[k]].name, "data_offsets");
    }
  }

  // items() walks the object in key order, so tensors_ is already sorted by name.
  for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
}

const SafetensorsTensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Tensor SafetensorsFile::tensor(const std::string& name) const {
  const SafetensorsTensorInfo* info = find(name);
  if (!info) throw Error("no tensor of this name in the file", error_at(path(), name));
  const uint8_t* data = mapping_->data() + info->offset;
  // safetensors aligns tensor data to 8 bytes only. A large weight off a 64-byte
  // boundary would make half of the kernels' 32-byte loads straddle two cache
  // lines (W8A8 decode on Qwen3-1.7B shapes: 7.4 -> 7.8 tokens/s aligned), so it
  // is copied once into aligned memory and the file's pages are handed back.
  constexpr size_t kCopyAtLeast = size_t{1} << 20;
  if (info->nbytes >= kCopyAtLeast && reinterpret_cast<uintptr_t>(data) % 64 != 0) {
    std::lock_guard<std::mutex> lock(copies_mutex_);
    std::weak_ptr<const void>& held = copies_[name];
    if (std::shared_ptr<const void> keep = held.lock()) return Tensor::view(info->dtype, info->shape, keep.get(), keep);
    Tensor copy = Tensor::zeros(info->dtype, info->shape);
    std::memcpy(copy.raw_mut(), data, info->nbytes);
    release_pages(data, info->nbytes);
    held = copy.storage();
    return copy;
  }
  return Tensor::view(info->dtype, info->shape, data, mapping_);
}

// ---------------------------------------------------------------------------
// SafetensorsCheckpoint

SafetensorsCheckpoint::SafetensorsCheckpoint(const std::string& path) : location_(path) {
  std::error_code ec;
  auto status = fs::status(path, ec);
  if (!fs::exists(status)) throw Error("checkpoint not found: no such file or folder", error_at(path));

  if (fs::is_regular_file(status)) {
    files_.push_back(std::make_unique<SafetensorsFile>(path));
    add_file_tensors(0);
    return;
  }
  if (!fs::is_directory(status)) throw Error("checkpoint is neither a folder nor a file", error_at(path));

  const fs::path dir(path);
  // The index of transformers' shards, msModelSlim's AscendV1 saver's (quant_model_weights-0000x-of-0000y)
  // or Diffusers' (diffusion_pytorch_model-...): the same weight_map format under three names.
  for (const char* index : {kIndexName, kModelSlimIndexName, kDiffusersIndexName}) {
    if (fs::exists(dir / index, ec)) {
      open_indexed(path, (dir / index).string());
      return;
    }
  }
  if (fs::exists(dir / kSingleName, ec)) {
    files_.push_back(std::make_unique<SafetensorsFile>((dir / kSingleName).string()));
    add_file_tensors(0);
    return;
  }

  std::vector<std::string> found;
  std::error_code list_ec;
  for (const auto& entry : fs::directory_iterator(dir, list_ec)) {
    // is_regular_file follows symlinks, as the Hugging Face cache links its blobs.
    std::error_code file_ec;
    if (entry.path().extension() == ".safetensors" && entry.is_regular_file(file_ec)) {
      found.push_back(entry.path().string());
    }
  }
  if (list_ec) throw Error("cannot list the folder: " + list_ec.message(), error_at(path));
  if (found.empty()) throw Error("no .safetensors files in " + path);
  std::sort(found.begin(), found.end());
  for (const auto& f : found) {
    files_.push_back(std::make_unique<SafetensorsFile>(f));
    add_file_tensors(files_.size() - 1);
  }
}

void SafetensorsCheckpoint::open_indexed(const std::string& dir, const std::string& index_path) {
  index_path_ = index_path;
  auto index_file = MappedFile::open(index_path);
  const char* text = reinterpret_cast<const char*>(index_file->data());
  ParsedJson parsed;
  try {
    parsed = parse_json(text, text + index_file->size(), error_at(index_path));
  } catch (const json::exception& e) {
    throw Error("index is not valid JSON: " + json_error_text(e), error_at(index_path));
  }
  if (!parsed.duplicate_key.empty()) {
    throw Error("index has the key '" + parsed.duplicate_key + "' twice", error_at(index_path));
  }
  const json& root = parsed.value;
  if (!root.is_object()) throw Error("index is not a JSON object", error_at(index_path));
  auto map_it = root.find("weight_map");
  if (map_it == root.end() || !map_it->is_object()) {
    throw Error("index needs a \"weight_map\" object of tensor name -> shard file",
                error_at(index_path, "", "weight_map"));
  }
  if (map_it->empty()) throw Error("weight_map is empty", error_at(index_path, "", "weight_map"));

  // Shard file name -> tensors the index puts there, so each shard opens once.
  std::map<std::string, std::vector<std::string>> by_shard;
  for (const auto& [tensor, shard] : map_it->items()) {
    if (!shard.is_string()) {
      throw Error("weight_map value must be a shard file name, got " + shard.dump(),
                  error_at(index_path, tensor, "weight_map"));
    }
    const auto& shard_name = shard.get_ref<const std::string&>();
    // Shards live inside the checkpoint folder; refuse names that leave it.
    fs::path rel(shard_name);
    bool escapes = shard_name.empty() || rel.is_absolute() ||
                   std::any_of(rel.begin(), rel.end(), [](const fs::path& p) { return p == ".."; });
    if (escapes) {
      throw Error("weight_map shard '" + shard_name + "' is not a file name inside the checkpoint folder",
                  error_at(index_path, tensor, "weight_map"));
    }
    by_shard[shard_name].push_back(tensor);
  }

  for (const auto& [shard_name, mapped] : by_shard) {
    const std::string shard_path = (fs::path(dir) / shard_name).string();
    std::error_code ec;
    if (!fs::exists(shard_path, ec)) {
      throw Error("shard file is missing; " + fs::path(index_path).filename().string() + " maps " +
                      std::to_string(mapped.size()) + " tensor(s) to it",
                  error_at(shard_path, mapped.front()));
    }
    files_.push_back(std::make_unique<SafetensorsFile>(shard_path));
    const SafetensorsFile& file = *files_.back();
    for (const auto& tensor : mapped) {
      if (!file.has(tensor)) {
        throw Error(fs::path(index_path).filename().string() + " maps the tensor to this shard, which does not hold it",
                    error_at(shard_path, tensor));
      }
    }
    add_file_tensors(files_.size() - 1);
  }
}

void SafetensorsCheckpoint::add_file_tensors(size_t i) {
  for (const auto& info : files_[i]->tensors()) {
    auto [it, inserted] = where_.emplace(info.name, i);
    if (!inserted) {
      throw Error("tensor is in two files: " + files_[it->second]->path() + " and " + files_[i]->path(),
                  error_at(files_[i]->path(), info.name));
    }
  }
}

bool SafetensorsCheckpoint::has(const std::string& name) const { return where_.count(name) != 0; }

Tensor SafetensorsCheckpoint::get(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw Error("not found in checkpoint " + location_, error_at("", name));
  return files_[it->second]->tensor(name);
}

std::string SafetensorsCheckpoint::file_of(const std::string& name) const {
  auto it = where_.find(name);
  return it == where_.end() ? std::string() : files_[it->second]->path();
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  out.reserve(where_.size());
  for (const auto& [name, i] : where_) out.push_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

std::unique_ptr<TensorSource> open_safetensors(const std::string& dir) {
  return std::make_unique<SafetensorsCheckpoint>(dir);
}

}  // namespace quanta::format
