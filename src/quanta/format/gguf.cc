#include "quanta/format/gguf.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <type_traits>

namespace quanta::format {

namespace {

constexpr uint32_t kValueTypeCount = 13;
constexpr const char* kAlignmentKey = "general.alignment";

// Full initialisation: partial designated initialisers trip -Wmissing-field-initializers.
ErrorContext error_at(std::string file, std::string tensor = "", std::string field = "") {
  return ErrorContext{std::move(file), std::move(tensor), std::move(field)};
}

// Bytes one element of a fixed-size value type takes; 0 for string and array.
size_t fixed_size(GgufValueType t) {
  switch (t) {
    case GgufValueType::kU8: case GgufValueType::kI8: case GgufValueType::kBool: return 1;
    case GgufValueType::kU16: case GgufValueType::kI16: return 2;
    case GgufValueType::kU32: case GgufValueType::kI32: case GgufValueType::kF32: return 4;
    case GgufValueType::kU64: case GgufValueType::kI64: case GgufValueType::kF64: return 8;
    case GgufValueType::kString: case GgufValueType::kArray: return 0;
  }
  return 0;
}

// The fewest bytes an element can take in the file: a string is at least its
// u64 length, an array its u32 type and u64 count. Bounds array counts before
// anything is allocated for them.
size_t min_size(GgufValueType t) {
  if (t == GgufValueType::kString) return 8;
  if (t == GgufValueType::kArray) return 12;
  return fixed_size(t);
}

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

std::string hex_bytes(const uint8_t* p, size_t n) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    if (i) out += ' ';
    out += kDigits[p[i] >> 4];
    out += kDigits[p[i] & 15];
  }
  return out;
}

std::string ne_str(const std::vector<int64_t>& ne) { return shape_str(ne); }

}  // namespace

std::string_view gguf_value_type_name(GgufValueType t) {
  static constexpr std::string_view kNames[kValueTypeCount] = {
      "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
  const auto i = static_cast<uint32_t>(t);
  return i < kValueTypeCount ? kNames[i] : "unknown";
}

// ---------------------------------------------------------------------------
// GgufValue

bool GgufValue::is_integer() const {
  switch (type()) {
    case GgufValueType::kU8: case GgufValueType::kI8: case GgufValueType::kU16: case GgufValueType::kI16:
    case GgufValueType::kU32: case GgufValueType::kI32: case GgufValueType::kU64: case GgufValueType::kI64:
      return true;
    default:
      return false;
  }
}

void GgufValue::wrong_type(std::string_view expected, const ErrorContext& where) const {
  throw Error("metadata value is " + std::string(gguf_value_type_name(type())) + " " + to_string(4) +
                  ", expected " + std::string(expected),
              where);
}

uint64_t GgufValue::as_u64(const ErrorContext& where) const {
  if (!is_integer()) wrong_type("an unsigned integer", where);
  return std::visit(
      [&](const auto& v) -> uint64_t {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
          if constexpr (std::is_signed_v<T>) {
            if (v < 0) wrong_type("a non-negative integer", where);
          }
          return static_cast<uint64_t>(v);
        } else {
          wrong_type("an unsigned integer", where);
        }
      },
      storage_);
}

int64_t GgufValue::as_i64(const ErrorContext& where) const {
  if (!is_integer()) wrong_type("an integer", where);
  if (type() == GgufValueType::kU64) {
    const uint64_t v = std::get<uint64_t>(storage_);
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) wrong_type("an integer that fits i64", where);
    return static_cast<int64_t>(v);
  }
  return std::visit(
      [&](const auto& v) -> int64_t {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
          return static_cast<int64_t>(v);
        } else {
          wrong_type("an integer", where);
        }
      },
      storage_);
}

uint32_t GgufValue::as_u32(const ErrorContext& where) const {
  const uint64_t v = as_u64(where);
  if (v > std::numeric_limits<uint32_t>::max()) wrong_type("an integer that fits u32", where);
  return static_cast<uint32_t>(v);
}

int32_t GgufValue::as_i32(const ErrorContext& where) const {
  const int64_t v = as_i64(where);
  if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) {
    wrong_type("an integer that fits i32", where);
  }
  return static_cast<int32_t>(v);
}

float GgufValue::as_f32(const ErrorContext& where) const {
  if (type() == GgufValueType::kF32) return std::get<float>(storage_);
  if (type() == GgufValueType::kF64) return static_cast<float>(std::get<double>(storage_));
  wrong_type("a float (f32 or f64)", where);
}

double GgufValue::as_f64(const ErrorContext& where) const {
  if (type() == GgufValueType::kF64) return std::get<double>(storage_);
  if (type() == GgufValueType::kF32) return std::get<float>(storage_);
  wrong_type("a float (f32 or f64)", where);
}

bool GgufValue::as_bool(const ErrorContext& where) const {
  if (type() != GgufValueType::kBool) wrong_type("bool", where);
  return std::get<bool>(storage_);
}

const std::string& GgufValue::as_string(const ErrorContext& where) const {
  if (type() != GgufValueType::kString) wrong_type("string", where);
  return std::get<std::string>(storage_);
}

const GgufArray& GgufValue::as_array(const ErrorContext& where) const {
  if (type() != GgufValueType::kArray) wrong_type("array", where);
  return *std::get<std::shared_ptr<const GgufArray>>(storage_);
}

std::vector<std::string> GgufValue::as_string_array(const ErrorContext& where) const {
  const GgufArray& a = as_array(where);
  if (a.element_type() != GgufValueType::kString && !a.empty()) wrong_type("an array of strings", where);
  std::vector<std::string> out;
  out.reserve(a.size());
  for (size_t i = 0; i < a.size(); ++i) out.push_back(a.string_at(i));
  return out;
}

std::vector<int64_t> GgufValue::as_i64_array(const ErrorContext& where) const {
  const GgufArray& a = as_array(where);
  std::vector<int64_t> out;
  out.reserve(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    GgufValue v = a.at(i);
    if (!v.is_integer()) wrong_type("an array of integers", where);
    out.push_back(v.as_i64(where));
  }
  return out;
}

std::vector<float> GgufValue::as_f32_array(const ErrorContext& where) const {
  const GgufArray& a = as_array(where);
  const GgufValueType t = a.element_type();
  if (!a.empty() && t != GgufValueType::kF32 && t != GgufValueType::kF64) wrong_type("an array of floats", where);
  std::vector<float> out;
  out.reserve(a.size());
  for (size_t i = 0; i < a.size(); ++i) out.push_back(a.at(i).as_f32(where));
  return out;
}

std::string GgufValue::to_string(size_t max_items) const {
  return std::visit(
      [&](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, bool>) {
          return v ? "true" : "false";
        } else if constexpr (std::is_same_v<T, std::string>) {
          constexpr size_t kMaxChars = 64;
          return "\"" + (v.size() > kMaxChars ? v.substr(0, kMaxChars) + "..." : v) + "\"";
        } else if constexpr (std::is_same_v<T, std::shared_ptr<const GgufArray>>) {
          std::string out = "[";
          const size_t shown = std::min(v->size(), max_items);
          for (size_t i = 0; i < shown; ++i) {
            if (i) out += ", ";
            out += v->at(i).to_string(max_items);
          }
          if (shown < v->size()) out += ", ... (" + std::to_string(v->size()) + " items)";
          return out + "]";
        } else if constexpr (std::is_floating_point_v<T>) {
          char buf[32];
          std::snprintf(buf, sizeof(buf), "%.9g", static_cast<double>(v));
          return buf;
        } else {
          return std::to_string(v);  // integers (int8_t/uint8_t promote, so they print as numbers)
        }
      },
      storage_);
}

// ---------------------------------------------------------------------------
// GgufArray

GgufValue GgufArray::at(size_t i) const {
  if (i >= size_) {
    throw Error("array index " + std::to_string(i) + " is out of range (size " + std::to_string(size_) + ")");
  }
  const uint8_t* p = raw_.data() + i * fixed_size(type_);
  switch (type_) {
    case GgufValueType::kU8: return GgufValue(GgufValue::Storage(std::in_place_index<0>, load<uint8_t>(p)));
    case GgufValueType::kI8: return GgufValue(GgufValue::Storage(std::in_place_index<1>, load<int8_t>(p)));
    case GgufValueType::kU16: return GgufValue(GgufValue::Storage(std::in_place_index<2>, load<uint16_t>(p)));
    case GgufValueType::kI16: return GgufValue(GgufValue::Storage(std::in_place_index<3>, load<int16_t>(p)));
    case GgufValueType::kU32: return GgufValue(GgufValue::Storage(std::in_place_index<4>, load<uint32_t>(p)));
    case GgufValueType::kI32: return GgufValue(GgufValue::Storage(std::in_place_index<5>, load<int32_t>(p)));
    case GgufValueType::kF32: return GgufValue(GgufValue::Storage(std::in_place_index<6>, load<float>(p)));
    case GgufValueType::kBool: return GgufValue(GgufValue::Storage(std::in_place_index<7>, *p != 0));
    case GgufValueType::kString: return GgufValue(GgufValue::Storage(std::in_place_index<8>, strings_[i]));
    case GgufValueType::kArray: return GgufValue(GgufValue::Storage(std::in_place_index<9>, arrays_[i]));
    case GgufValueType::kU64: return GgufValue(GgufValue::Storage(std::in_place_index<10>, load<uint64_t>(p)));
    case GgufValueType::kI64: return GgufValue(GgufValue::Storage(std::in_place_index<11>, load<int64_t>(p)));
    case GgufValueType::kF64: return GgufValue(GgufValue::Storage(std::in_place_index<12>, load<double>(p)));
  }
  QUANTA_ASSERT(false);
}

const std::string& GgufArray::string_at(size_t i) const {
  if (type_ != GgufValueType::kString) {
    throw Error("array holds " + std::string(gguf_value_type_name(type_)) + " elements, not strings");
  }
  if (i >= size_) throw Error("array index " + std::to_string(i) + " is out of range (size " + std::to_string(size_) + ")");
  return strings_[i];
}

const GgufArray& GgufArray::array_at(size_t i) const {
  if (type_ != GgufValueType::kArray) {
    throw Error("array holds " + std::string(gguf_value_type_name(type_)) + " elements, not arrays");
  }
  if (i >= size_) throw Error("array index " + std::to_string(i) + " is out of range (size " + std::to_string(size_) + ")");
  return *arrays_[i];
}

// ---------------------------------------------------------------------------
// GgufMetadata

const GgufValue* GgufMetadata::find(std::string_view key) const {
  auto it = index_.find(key);
  return it == index_.end() ? nullptr : &entries_[it->second].second;
}

ErrorContext GgufMetadata::context(std::string_view key) const { return error_at(file_, "", std::string(key)); }

const GgufValue& GgufMetadata::get(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) throw Error("metadata key is missing", context(key));
  return *v;
}

const std::string& GgufMetadata::get_string(std::string_view key) const { return get(key).as_string(context(key)); }
uint32_t GgufMetadata::get_u32(std::string_view key) const { return get(key).as_u32(context(key)); }
uint64_t GgufMetadata::get_u64(std::string_view key) const { return get(key).as_u64(context(key)); }
int64_t GgufMetadata::get_i64(std::string_view key) const { return get(key).as_i64(context(key)); }
float GgufMetadata::get_f32(std::string_view key) const { return get(key).as_f32(context(key)); }
bool GgufMetadata::get_bool(std::string_view key) const { return get(key).as_bool(context(key)); }

std::string GgufMetadata::get_string_or(std::string_view key, std::string_view fallback) const {
  const GgufValue* v = find(key);
  return v ? v->as_string(context(key)) : std::string(fallback);
}
uint32_t GgufMetadata::get_u32_or(std::string_view key, uint32_t fallback) const {
  const GgufValue* v = find(key);
  return v ? v->as_u32(context(key)) : fallback;
}
uint64_t GgufMetadata::get_u64_or(std::string_view key, uint64_t fallback) const {
  const GgufValue* v = find(key);
  return v ? v->as_u64(context(key)) : fallback;
}
float GgufMetadata::get_f32_or(std::string_view key, float fallback) const {
  const GgufValue* v = find(key);
  return v ? v->as_f32(context(key)) : fallback;
}
bool GgufMetadata::get_bool_or(std::string_view key, bool fallback) const {
  const GgufValue* v = find(key);
  return v ? v->as_bool(context(key)) : fallback;
}

// ---------------------------------------------------------------------------
// Parsing

// Reads the file front to back. Every read is bounds-checked against the end of
// the file before it happens; counts are checked against the bytes left before
// anything is allocated for them.
class GgufParser {
 public:
  explicit GgufParser(GgufFile& f) : f_(f), data_(f.data_), size_(f.size_) {}

  void parse() {
    const std::string& file = f_.path_;
    if (size_ < 4) {
      throw Error("file is too short for GGUF: " + std::to_string(size_) + " bytes", error_at(file, "", "header.magic"));
    }
    if (load<uint32_t>(data_) != GgufFile::kMagic) {
      throw Error("not a GGUF file: it starts with bytes " + hex_bytes(data_, 4) + ", GGUF files with 47 47 55 46 (\"GGUF\")",
                  error_at(file, "", "header.magic"));
    }
    pos_ = 4;
    parse_version();
    const uint64_t n_tensors = u64(error_at(file, "", "header.tensor_count"), "the tensor count");
    const uint64_t n_kv = u64(error_at(file, "", "header.metadata_kv_count"), "the metadata count");
    check_counts(n_tensors, n_kv);

    f_.metadata_.file_ = file;
    for (uint64_t i = 0; i < n_kv; ++i) parse_kv(i);
    parse_alignment();

    f_.tensors_.reserve(static_cast<size_t>(n_tensors));
    for (uint64_t i = 0; i < n_tensors; ++i) parse_tensor_info(i);

    // The data section starts at the next multiple of the alignment.
    const uint64_t align = f_.alignment_;
    f_.data_start_ = (pos_ + align - 1) / align * align;
    check_tensor_data();
  }

 private:
  [[noreturn]] void truncated(const ErrorContext& where, std::string_view what, size_t need) const {
    throw Error("the file ends while reading " + std::string(what) + ": " + std::to_string(need) +
                    " bytes needed at offset " + std::to_string(pos_) + ", the file has " + std::to_string(size_) +
                    " bytes; it is truncated or corrupt",
                where);
  }

  const uint8_t* take(size_t n, const ErrorContext& where, std::string_view what) {
    if (n > size_ - pos_) truncated(where, what, n);
    const uint8_t* p = data_ + pos_;
    pos_ += n;
    return p;
  }

  uint32_t u32(const ErrorContext& where, std::string_view what) { return load<uint32_t>(take(4, where, what)); }
  uint64_t u64(const ErrorContext& where, std::string_view what) { return load<uint64_t>(take(8, where, what)); }

  // Called for every token of a vocabulary: the error text is built only on failure.
  std::string string(const ErrorContext& where, std::string_view what) {
    if (8 > size_ - pos_) truncated(where, "the length of " + std::string(what), 8);
    const uint64_t len = u64(where, what);
    if (len > size_ - pos_) {
      throw Error("the length of " + std::string(what) + " is " + std::to_string(len) + " bytes, past the end of the file (" +
                      std::to_string(size_ - pos_) + " bytes left at offset " + std::to_string(pos_) +
                      "); the file is truncated or corrupt",
                  where);
    }
    const uint8_t* p = take(static_cast<size_t>(len), where, what);
    return std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(len));
  }

  void parse_version() {
    const ErrorContext where = error_at(f_.path_, "", "header.version");
    const uint32_t v = u32(where, "the version");
    f_.version_ = v;
    if (v == 2 || v == 3) return;
    if (v == 1) {
      throw Error("GGUF version 1 is not supported: it is the 2023 draft layout with 32-bit counts; "
                  "re-convert the model with a current llama.cpp",
                  where);
    }
    // A big-endian file's version 3 reads as 0x03000000 here (llama.cpp's check).
    if (v != 0 && (v & 0xFFFF) == 0) {
      throw Error("the version field reads " + std::to_string(v) +
                      ": this is a big-endian GGUF file, which quanta does not read",
                  where);
    }
    throw Error("unsupported GGUF version " + std::to_string(v) + " (quanta reads versions 2 and 3)", where);
  }

  // Each metadata entry takes at least 14 bytes (u64 key length, a 1-byte key, u32
  // type, a 1-byte value) and each tensor info at least 25 (u64 name length, a
  // 1-byte name, u32 n_dims, u32 type, u64 offset): counts beyond what the rest of
  // the file could hold are corrupt, and are refused before anything is reserved.
  void check_counts(uint64_t n_tensors, uint64_t n_kv) {
    constexpr uint64_t kMinKvBytes = 14, kMinTensorInfoBytes = 25;
    const uint64_t left = size_ - pos_;
    if (n_kv > left / kMinKvBytes) {
      throw Error("the header claims " + std::to_string(n_kv) + " metadata entries, but the " + std::to_string(left) +
                      " bytes after the header can hold at most " + std::to_string(left / kMinKvBytes),
                  error_at(f_.path_, "", "header.metadata_kv_count"));
    }
    const uint64_t left_for_tensors = left - n_kv * kMinKvBytes;
    if (n_tensors > left_for_tensors / kMinTensorInfoBytes) {
      throw Error("the header claims " + std::to_string(n_tensors) + " tensors, but the " +
                      std::to_string(left_for_tensors) + " bytes left after " + std::to_string(n_kv) +
                      " metadata entries can hold at most " + std::to_string(left_for_tensors / kMinTensorInfoBytes) +
                      " tensor infos",
                  error_at(f_.path_, "", "header.tensor_count"));
    }
  }

  GgufValueType value_type(uint32_t id, const ErrorContext& where, std::string_view what) {
    if (id >= kValueTypeCount) {
      throw Error(std::string(what) + " is " + std::to_string(id) + ", not a GGUF value type (0..12)", where);
    }
    return static_cast<GgufValueType>(id);
  }

  void parse_kv(uint64_t i) {
    GgufMetadata& md = f_.metadata_;
    const std::string entry = "metadata entry #" + std::to_string(i);
    ErrorContext where = error_at(f_.path_, "", entry);
    std::string key = string(where, "the key of " + entry);
    if (key.empty()) throw Error(entry + " has an empty key", where);
    where.field = key;
    if (auto it = md.index_.find(key); it != md.index_.end()) {
      throw Error("metadata key appears twice (entries #" + std::to_string(it->second) + " and #" + std::to_string(i) + ")",
                  where);
    }
    const GgufValueType type = value_type(u32(where, "the value type"), where, "the value type");
    GgufValue value = parse_value(type, where, 0);
    md.index_.emplace(key, md.entries_.size());
    md.entries_.emplace_back(std::move(key), std::move(value));
  }

  GgufValue parse_value(GgufValueType type, const ErrorContext& where, int depth) {
    using S = GgufValue::Storage;
    switch (type) {
      case GgufValueType::kU8: return GgufValue(S(std::in_place_index<0>, load<uint8_t>(take(1, where, "a u8 value"))));
      case GgufValueType::kI8: return GgufValue(S(std::in_place_index<1>, load<int8_t>(take(1, where, "an i8 value"))));
      case GgufValueType::kU16: return GgufValue(S(std::in_place_index<2>, load<uint16_t>(take(2, where, "a u16 value"))));
      case GgufValueType::kI16: return GgufValue(S(std::in_place_index<3>, load<int16_t>(take(2, where, "an i16 value"))));
      case GgufValueType::kU32: return GgufValue(S(std::in_place_index<4>, load<uint32_t>(take(4, where, "a u32 value"))));
      case GgufValueType::kI32: return GgufValue(S(std::in_place_index<5>, load<int32_t>(take(4, where, "an i32 value"))));
      case GgufValueType::kF32: return GgufValue(S(std::in_place_index<6>, load<float>(take(4, where, "an f32 value"))));
      case GgufValueType::kBool: {
        const uint8_t b = *take(1, where, "a bool value");
        check_bool(b, where);
        return GgufValue(S(std::in_place_index<7>, b != 0));
      }
      case GgufValueType::kString: return GgufValue(S(std::in_place_index<8>, string(where, "a string value")));
      case GgufValueType::kArray: return GgufValue(S(std::in_place_index<9>, parse_array(where, depth + 1)));
      case GgufValueType::kU64: return GgufValue(S(std::in_place_index<10>, load<uint64_t>(take(8, where, "a u64 value"))));
      case GgufValueType::kI64: return GgufValue(S(std::in_place_index<11>, load<int64_t>(take(8, where, "an i64 value"))));
      case GgufValueType::kF64: return GgufValue(S(std::in_place_index<12>, load<double>(take(8, where, "an f64 value"))));
    }
    QUANTA_ASSERT(false);
  }

  // The spec allows only 0 and 1; llama.cpp reads any non-zero byte as true, but
  // no writer produces one, so another byte means the file is corrupt.
  void check_bool(uint8_t b, const ErrorContext& where) {
    if (b > 1) throw Error("bool value is " + std::to_string(b) + ", must be 0 or 1", where);
  }

  std::shared_ptr<const GgufArray> parse_array(const ErrorContext& where, int depth) {
    if (depth > GgufFile::kMaxArrayDepth) {
      throw Error("arrays are nested more than " + std::to_string(GgufFile::kMaxArrayDepth) + " levels deep", where);
    }
    auto array = std::make_shared<GgufArray>();
    array->type_ = value_type(u32(where, "an array's element type"), where, "an array's element type");
    const uint64_t count = u64(where, "an array's element count");
    const size_t each = min_size(array->type_);
    if (count > (size_ - pos_) / each) {
      throw Error("array of " + std::to_string(count) + " " + std::string(gguf_value_type_name(array->type_)) +
                      " elements cannot fit in the " + std::to_string(size_ - pos_) + " bytes left at offset " +
                      std::to_string(pos_) + "; the file is truncated or corrupt",
                  where);
    }
    array->size_ = static_cast<size_t>(count);
    if (array->type_ == GgufValueType::kString) {
      array->strings_.reserve(array->size_);
      for (size_t i = 0; i < array->size_; ++i) array->strings_.push_back(string(where, "a string in an array"));
    } else if (array->type_ == GgufValueType::kArray) {
      array->arrays_.reserve(array->size_);
      for (size_t i = 0; i < array->size_; ++i) array->arrays_.push_back(parse_array(where, depth + 1));
    } else {
      const size_t n = array->size_ * each;  // fits: checked against the bytes left
      const uint8_t* p = take(n, where, "array elements");
      if (array->type_ == GgufValueType::kBool) {
        for (size_t i = 0; i < n; ++i) check_bool(p[i], where);
      }
      array->raw_.assign(p, p + n);
    }
    return array;
  }

  void parse_alignment() {
    const GgufValue* v = f_.metadata_.find(kAlignmentKey);
    if (!v) return;
    const ErrorContext where = error_at(f_.path_, "", kAlignmentKey);
    // GGUF writes it as u32 (llama.cpp insists on that type); any integer type
    // holding a valid value is read the same.
    const uint64_t a = v->as_u64(where);
    if (a == 0 || (a & (a - 1)) != 0 || a > (uint64_t{1} << 31)) {
      throw Error("alignment " + std::to_string(a) + " is not a power of two that fits u32", where);
    }
    f_.alignment_ = static_cast<uint32_t>(a);
  }

  void parse_tensor_info(uint64_t i) {
    const std::string entry = "tensor info #" + std::to_string(i);
    ErrorContext where = error_at(f_.path_, "", entry);
    GgufTensorInfo t;
    t.name = string(where, "the name of " + entry);
    if (t.name.empty()) throw Error(entry + " has an empty name", where);
    where = error_at(f_.path_, t.name, "");
    if (auto it = f_.index_.find(t.name); it != f_.index_.end()) {
      throw Error("tensor name appears twice (tensor infos #" + std::to_string(it->second) + " and #" +
                      std::to_string(i) + ")",
                  where);
    }

    where.field = "n_dims";
    const uint32_t n_dims = u32(where, "n_dims");
    if (n_dims > GgufFile::kMaxDims) {
      throw Error("n_dims is " + std::to_string(n_dims) + "; ggml tensors have at most " +
                      std::to_string(GgufFile::kMaxDims) + " dimensions",
                  where);
    }
    where.field = "ne";
    // The product of the nonzero dimensions must fit as well: with a zero among them the
    // element count is 0, but a product taken in another order (the reversed shape) would
    // overflow before reaching it.
    uint64_t numel = 1, extent = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t n = u64(where, "ne[" + std::to_string(d) + "]");
      if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        throw Error("ne[" + std::to_string(d) + "] = " + std::to_string(n) + " is out of range", where);
      }
      t.ne.push_back(static_cast<int64_t>(n));
      if (n != 0 && (__builtin_mul_overflow(extent, n, &extent) ||
                     extent > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))) {
        throw Error("the element count of ne " + ne_str(t.ne) + "... overflows", where);
      }
      numel *= n;  // at most extent, or 0
    }
    t.numel = static_cast<int64_t>(numel);
    t.shape.assign(t.ne.rbegin(), t.ne.rend());

    where.field = "type";
    const uint32_t type_id = u32(where, "the ggml type");
    const GgmlTypeInfo* info = ggml_type_info(type_id);
    if (!info) {
      throw Error("unknown ggml type id " + std::to_string(type_id) + " (ggml's ids run 0.." +
                      std::to_string(kGgmlTypeCount - 1) + ")",
                  where);
    }
    if (info->removed) {
      throw Error("ggml type " + std::string(info->name) + " (id " + std::to_string(type_id) +
                      ") was removed from ggml; re-convert the model with a current llama.cpp",
                  where);
    }
    t.type = info->type;
    const int64_t ne0 = t.ne.empty() ? 1 : t.ne[0];
    if (ne0 % info->block_size != 0) {
      where.field = "ne";
      throw Error("ne[0] = " + std::to_string(ne0) + " is not a multiple of the " + std::string(info->name) +
                      " block size " + std::to_string(info->block_size) + " (ne " + ne_str(t.ne) + ")",
                  where);
    }
    if (__builtin_mul_overflow(numel / static_cast<uint64_t>(info->block_size), info->type_size, &t.nbytes)) {
      where.field = "ne";
      throw Error("the byte size of ne " + ne_str(t.ne) + " in " + std::string(info->name) + " overflows", where);
    }

    where.field = "offset";
    t.offset = u64(where, "the data offset");
    f_.index_.emplace(t.name, f_.tensors_.size());
    f_.tensors_.push_back(std::move(t));
  }

  void check_tensor_data() {
    if (f_.tensors_.empty()) return;
    if (f_.data_start_ > size_) {
      throw Error("the data section would start at byte " + std::to_string(f_.data_start_) +
                      ", past the end of the file (" + std::to_string(size_) + " bytes); the file is truncated",
                  error_at(f_.path_, "", "data section"));
    }
    const uint64_t data_size = size_ - f_.data_start_;
    for (GgufTensorInfo& t : f_.tensors_) {
      const ErrorContext where = error_at(f_.path_, t.name, "offset");
      if (t.offset % f_.alignment_ != 0) {
        throw Error("offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                        std::to_string(f_.alignment_),
                    where);
      }
      if (t.offset > data_size || t.nbytes > data_size - t.offset) {
        throw Error("data at offset " + std::to_string(t.offset) + " (" + std::to_string(t.nbytes) + " bytes of " +
                        std::string(ggml_type_info(t.type).name) + " " + ne_str(t.ne) +
                        ") goes past the end of the data section (" + std::to_string(data_size) +
                        " bytes); the file is truncated or corrupt",
                    where);
      }
      t.file_offset = f_.data_start_ + t.offset;
    }

    // Two tensors sharing bytes would alias each other's data (llama.cpp goes
    // further and wants them packed in order; any non-overlapping layout is safe).
    std::vector<const GgufTensorInfo*> order;
    for (const auto& t : f_.tensors_) {
      if (t.nbytes > 0) order.push_back(&t);
    }
    std::sort(order.begin(), order.end(),
              [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->offset < b->offset; });
    for (size_t k = 1; k < order.size(); ++k) {
      const GgufTensorInfo& prev = *order[k - 1];
      const GgufTensorInfo& cur = *order[k];
      if (cur.offset < prev.offset + prev.nbytes) {
        throw Error("data [" + std::to_string(cur.offset) + ", " + std::to_string(cur.offset + cur.nbytes) +
                        ") overlaps that of tensor '" + prev.name + "' [" + std::to_string(prev.offset) + ", " +
                        std::to_string(prev.offset + prev.nbytes) + ")",
                    error_at(f_.path_, cur.name, "offset"));
      }
    }
  }

  GgufFile& f_;
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// ---------------------------------------------------------------------------
// GgufFile

GgufFile::GgufFile(const std::string& path) : path_(path), mapping_(MappedFile::open(path)) {
  keepalive_ = mapping_;
  data_ = mapping_->data();
  size_ = mapping_->size();
  parse();
}

GgufFile::GgufFile(std::string name, const void* data, size_t size, std::shared_ptr<const void> owner)
    : path_(std::move(name)), keepalive_(std::move(owner)), data_(static_cast<const uint8_t*>(data)), size_(size) {
  parse();
}

void GgufFile::parse() { GgufParser(*this).parse(); }

const GgufTensorInfo* GgufFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensorInfo& GgufFile::tensor_info(const std::string& name) const {
  const GgufTensorInfo* t = find(name);
  if (!t) throw Error("no tensor of this name in the file", error_at(path_, name));
  return *t;
}

Tensor GgufFile::view(const std::string& name) const { return view(tensor_info(name)); }

Tensor GgufFile::view(const GgufTensorInfo& t) const {
  const std::string& name = t.name;
  const auto dtype = ggml_type_dtype(t.type);
  if (!dtype) {
    throw Error("tensor is " + ggml_type_name(t.type) + ", a block-quantized type with no plain-array view; dequantize it",
                error_at(path_, name, "type"));
  }
  return Tensor::view(*dtype, t.shape, data(t), keepalive_);
}

Tensor GgufFile::dequantize(const std::string& name) const { return dequantize(tensor_info(name)); }

Tensor GgufFile::dequantize(const GgufTensorInfo& t) const {
  const std::string& name = t.name;
  const GgmlTypeInfo& info = ggml_type_info(t.type);
  if (!info.has_reference) {
    throw Error("tensor type " + std::string(info.name) + " (ggml id " + std::to_string(static_cast<uint32_t>(t.type)) +
                    ") is not supported: quanta has no reference dequantizer for it",
                error_at(path_, name, "type"));
  }
  Tensor out = Tensor::zeros(DType::kF32, t.shape);
  // Rows are contiguous, and ne[0] is a multiple of the block size, so the whole
  // tensor is numel / block_size blocks back to back.
  dequantize_row(t.type, data(t), out.data_mut<float>(), t.numel);
  return out;
}

}  // namespace quanta::format
