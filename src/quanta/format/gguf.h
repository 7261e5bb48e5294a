// Reader for GGUF files (llama.cpp's single-file checkpoint format).
//
// A GGUF file is (all little-endian; ggml docs/gguf.md, ggml src/gguf.cpp, and
// shared/specs/checkpoint-formats-2.md §4):
//   u32 magic "GGUF", u32 version (2 or 3: same layout), u64 tensor_count,
//   u64 metadata_kv_count;
//   metadata: {string key, u32 value_type, value} x metadata_kv_count;
//   tensor infos: {string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type,
//                  u64 offset} x tensor_count;
//   zero padding up to `alignment` (general.alignment, default 32);
//   the data section: each tensor at data_start + offset.
// Strings are a u64 byte length and the bytes, without a terminator.
//
// GgufFile maps the file once and validates all of it when it is opened: magic,
// version, counts that the file could hold, every string and array inside the
// file, value types, unique non-empty keys and tensor names, general.alignment a
// power of two, ggml type ids, dims (at most 4, element counts that do not
// overflow, ne[0] a multiple of the type's block size), and each tensor's data
// aligned, inside the file and not overlapping another tensor's. The first
// problem throws one Error naming the file, the tensor or key, and the field.
//
// Dimension order. GGUF lists ne[0] first, and ne[0] is the innermost
// (contiguous) dimension, the one quantization blocks run along. quanta's Shape
// is row-major, outermost first. GgufTensorInfo keeps both: `ne` as stored and
// `shape` = ne reversed. An HF Linear weight [out, in] is stored with
// ne = [in, out] and has shape [out, in] here, with the same bytes.
//
// Non-goals: writing GGUF, big-endian files (refused), the split-file layout
// (each split opens as a file of its own), mapping GGUF names to HF names (the
// model wiring does that).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "quanta/core/error.h"
#include "quanta/core/mapped_file.h"
#include "quanta/core/tensor.h"
#include "quanta/format/ggml_types.h"

namespace quanta::format {

// Metadata value types (gguf.h enum gguf_type); values are the ids in the file.
enum class GgufValueType : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};

// "u8", "i32", "f32", "bool", "string", "array", ...
std::string_view gguf_value_type_name(GgufValueType t);

class GgufArray;

// One metadata value. The typed getters convert only where no information is
// lost; otherwise they throw an Error carrying `where` (GgufMetadata passes the
// file and the key, so messages name them).
class GgufValue {
 public:
  // Alternative i holds GgufValueType i, so index() is the type id.
  using Storage = std::variant<uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, float, bool,
                               std::string, std::shared_ptr<const GgufArray>, uint64_t, int64_t, double>;

  GgufValue() = default;
  explicit GgufValue(Storage s) : storage_(std::move(s)) {}

  GgufValueType type() const { return static_cast<GgufValueType>(storage_.index()); }
  bool is_integer() const;  // u8 ... i64 (not bool)
  bool is_array() const { return type() == GgufValueType::kArray; }
  const Storage& storage() const { return storage_; }

  // Any integer type whose value fits the result (writers differ: most counts
  // are u32, some i32 or u64).
  uint64_t as_u64(const ErrorContext& where = {}) const;
  int64_t as_i64(const ErrorContext& where = {}) const;
  uint32_t as_u32(const ErrorContext& where = {}) const;
  int32_t as_i32(const ErrorContext& where = {}) const;
  // f32 or f64 (an f64 is rounded to f32).
  float as_f32(const ErrorContext& where = {}) const;
  double as_f64(const ErrorContext& where = {}) const;
  bool as_bool(const ErrorContext& where = {}) const;
  const std::string& as_string(const ErrorContext& where = {}) const;
  const GgufArray& as_array(const ErrorContext& where = {}) const;
  // Whole arrays: of strings; of any integer type (as i64); of f32 or f64.
  std::vector<std::string> as_string_array(const ErrorContext& where = {}) const;
  std::vector<int64_t> as_i64_array(const ErrorContext& where = {}) const;
  std::vector<float> as_f32_array(const ErrorContext& where = {}) const;

  // Short display form: 42, 1.5, true, "text", [1, 2, 3, ... (50257 items)].
  std::string to_string(size_t max_items = 8) const;

 private:
  [[noreturn]] void wrong_type(std::string_view expected, const ErrorContext& where) const;
  Storage storage_;
};

// An array value: element type, count, and the elements. Fixed-size elements
// are kept as the file's little-endian bytes (a 150k-entry token-type array
// costs what it does on disk); strings and nested arrays are decoded.
class GgufArray {
 public:
  GgufValueType element_type() const { return type_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Element i as a value; throws Error if i >= size().
  GgufValue at(size_t i) const;
  // Direct access for string and nested-array elements (must be of that type).
  const std::string& string_at(size_t i) const;
  const GgufArray& array_at(size_t i) const;

 private:
  friend class GgufParser;
  GgufValueType type_ = GgufValueType::kU8;
  size_t size_ = 0;
  std::vector<uint8_t> raw_;                             // fixed-size elements
  std::vector<std::string> strings_;                     // kString elements
  std::vector<std::shared_ptr<const GgufArray>> arrays_; // kArray elements
};

// All metadata of one file, in file order, looked up by key.
class GgufMetadata {
 public:
  size_t size() const { return entries_.size(); }
  const std::vector<std::pair<std::string, GgufValue>>& entries() const { return entries_; }
  const GgufValue* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }
  // Throws Error naming the file and the key if absent.
  const GgufValue& get(std::string_view key) const;

  // get(key).as_*(), with the file and key in any error.
  const std::string& get_string(std::string_view key) const;
  uint32_t get_u32(std::string_view key) const;
  uint64_t get_u64(std::string_view key) const;
  int64_t get_i64(std::string_view key) const;
  float get_f32(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  // The fallback when the key is absent; a present key of a wrong type still throws.
  std::string get_string_or(std::string_view key, std::string_view fallback) const;
  uint32_t get_u32_or(std::string_view key, uint32_t fallback) const;
  uint64_t get_u64_or(std::string_view key, uint64_t fallback) const;
  float get_f32_or(std::string_view key, float fallback) const;
  bool get_bool_or(std::string_view key, bool fallback) const;

  // {file, "", key}: for errors about a key's value raised by callers.
  ErrorContext context(std::string_view key) const;

 private:
  friend class GgufParser;
  std::string file_;
  std::vector<std::pair<std::string, GgufValue>> entries_;
  std::map<std::string, size_t, std::less<>> index_;  // key -> position in entries_
};

struct GgufTensorInfo {
  std::string name;
  GgmlType type = GgmlType::kF32;
  std::vector<int64_t> ne;  // as stored: ne[0] is the innermost (contiguous) dimension
  Shape shape;              // row-major: ne reversed, so shape.back() == ne[0]
  int64_t numel = 1;
  uint64_t offset = 0;       // relative to the data section, as stored
  uint64_t file_offset = 0;  // absolute: data_start + offset
  uint64_t nbytes = 0;       // numel / block_size * type_size
};

class GgufFile {
 public:
  static constexpr uint32_t kMagic = 0x46554747;  // bytes "GGUF" read as a little-endian u32
  static constexpr uint32_t kDefaultAlignment = 32;  // GGUF_DEFAULT_ALIGNMENT
  static constexpr uint32_t kMaxDims = 4;            // GGML_MAX_DIMS
  // Nested arrays deeper than this are refused (llama.cpp refuses any nesting;
  // the spec and gguf-py's writer allow it).
  static constexpr int kMaxArrayDepth = 8;

  // Maps and validates the file; throws Error at the first problem.
  explicit GgufFile(const std::string& path);
  // Parses bytes already in memory; `name` stands for the file in errors. The
  // bytes must outlive this object and every view of it; `owner`, if given, is
  // held as the keepalive.
  GgufFile(std::string name, const void* data, size_t size, std::shared_ptr<const void> owner = nullptr);

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  // Absolute byte offset of the data section.
  uint64_t data_start() const { return data_start_; }
  size_t file_size() const { return size_; }

  const GgufMetadata& metadata() const { return metadata_; }
  // All tensors, in file order.
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  // nullptr if the file has no tensor of this name.
  const GgufTensorInfo* find(const std::string& name) const;
  bool has(const std::string& name) const { return find(name) != nullptr; }
  // Throws Error naming the file and the tensor if absent.
  const GgufTensorInfo& tensor_info(const std::string& name) const;

  // The tensor's bytes: info.nbytes of them, inside the mapping.
  const uint8_t* data(const GgufTensorInfo& info) const { return data_ + info.file_offset; }

  // A zero-copy view (row-major shape) of a tensor of a plain type (F32, F16,
  // BF16, F64, I8..I64). Throws Error naming the tensor for block types.
  Tensor view(const std::string& name) const;
  // The same for a tensor described by `info` (a tensor of this file, or a row range of one).
  Tensor view(const GgufTensorInfo& info) const;
  // The tensor dequantized to an owned f32 tensor of row-major shape. Throws
  // Error naming the tensor and its type if quanta has no reference dequantizer
  // for the type: such a tensor is refused, never read wrongly.
  Tensor dequantize(const std::string& name) const;
  Tensor dequantize(const GgufTensorInfo& info) const;

  // Keeps the bytes alive (the mapping, or the in-memory owner); may be null
  // for in-memory files without an owner.
  const std::shared_ptr<const void>& keepalive() const { return keepalive_; }
  // The mapped file; null for in-memory files.
  const std::shared_ptr<const MappedFile>& mapping() const { return mapping_; }

 private:
  friend class GgufParser;
  void parse();

  std::string path_;
  std::shared_ptr<const MappedFile> mapping_;
  std::shared_ptr<const void> keepalive_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;

  uint32_t version_ = 0;
  uint32_t alignment_ = kDefaultAlignment;
  uint64_t data_start_ = 0;
  GgufMetadata metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::unordered_map<std::string, size_t> index_;  // name -> position in tensors_
};

}  // namespace quanta::format
