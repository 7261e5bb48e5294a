// Tests of the safetensors reader: files built byte by byte here (valid and
// corrupted), and golden fixtures written by the official safetensors package
// (tools/make_safetensors_fixture.py).
#include "quanta/format/safetensors.h"
#include "quanta/format/safetensors_writer.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "quanta/core/error.h"
#include "test_util.h"

namespace quanta::format {
namespace {

namespace fs = std::filesystem;
using quanta::test::temp_dir;
using quanta::test::write_file;

// ---------------------------------------------------------------------------
// Building files

std::string u64_le(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
  return s;
}

// A whole file: length prefix, header text as given (valid or not), data bytes.
std::string st_file(const std::string& header, const std::string& data = "") {
  return u64_le(header.size()) + header + data;
}

// One header entry; `shape` and `offsets` are raw JSON so tests can corrupt them.
std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape +
         ",\"data_offsets\":" + offsets + "}";
}

std::string offsets(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + "," + std::to_string(end) + "]";
}

// Packs typed values back to back, as a writer would, and makes the header.
class FileBuilder {
 public:
  template <typename T>
  FileBuilder& add(const std::string& name, const std::string& dtype, const std::string& shape,
                   const std::vector<T>& values) {
    size_t begin = data_.size();
    data_.append(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
    return add_entry(entry(name, dtype, shape, offsets(begin, data_.size())));
  }
  FileBuilder& add_entry(const std::string& e) {
    entries_ += (entries_.empty() ? "" : ",") + e;
    return *this;
  }
  FileBuilder& metadata(const std::string& json_object) { return add_entry("\"__metadata__\":" + json_object); }
  std::string header() const { return "{" + entries_ + "}"; }
  std::string bytes() const { return st_file(header(), data_); }
  const std::string& data() const { return data_; }

 private:
  std::string entries_;
  std::string data_;
};

std::string write_in(const std::string& dir, const std::string& name, const std::string& bytes) {
  std::string path = (fs::path(dir) / name).string();
  write_file(path, bytes);
  return path;
}

// A file with one f32 tensor "w" of shape [2, 2].
std::string small_file(float base = 0.0f) {
  return FileBuilder().add<float>("w", "F32", "[2,2]", {base, base + 1, base + 2, base + 3}).bytes();
}

// ---------------------------------------------------------------------------
// Checking errors

// Runs f and returns the quanta::Error it throws (a failure if it throws none).
template <typename F>
Error error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw a non-quanta exception: " << e.what();
    return Error("");
  }
  ADD_FAILURE() << "no error was thrown";
  return Error("");
}

// The message names every part (file, tensor, field, key words).
void expect_mentions(const Error& e, std::initializer_list<std::string> parts) {
  std::string what = e.what();
  for (const auto& part : parts) {
    EXPECT_NE(what.find(part), std::string::npos) << "'" << part << "' missing from: " << what;
  }
}

// Opens a file with the given bytes and returns the error; the message must
// name the file, and the tensor and field if given.
Error open_error(const std::string& bytes, const std::string& tensor = "",
                 const std::string& field = "") {
  std::string path = write_in(temp_dir(), "bad.safetensors", bytes);
  Error e = error_of([&] { SafetensorsFile f(path); });
  expect_mentions(e, {"file '" + path + "'"});
  EXPECT_EQ(e.context().file, path);
  if (!tensor.empty()) {
    expect_mentions(e, {"tensor '" + tensor + "'"});
    EXPECT_EQ(e.context().tensor, tensor);
  }
  if (!field.empty()) {
    expect_mentions(e, {"field '" + field + "'"});
    EXPECT_EQ(e.context().field, field);
  }
  return e;
}

template <typename T>
std::vector<T> values_of(const Tensor& t) {
  std::vector<T> out(static_cast<size_t>(t.numel()));
  if (!out.empty()) std::memcpy(out.data(), t.raw(), out.size() * sizeof(T));  // views need not be aligned
  return out;
}

// ---------------------------------------------------------------------------
// Valid files

TEST(SafetensorsFile, ReadsTensorsOfEachDtype) {
  FileBuilder b;
  b.metadata(R"({"format":"pt","note":"hi"})")
      .add<float>("f32", "F32", "[2,3]", {1.5f, -2.0f, 0.0f, 3.25f, 1e-7f, -1e7f})
      .add<uint16_t>("bf16", "BF16", "[3]", {0x3F80, 0xC000, 0x7F80})  // 1, -2, +inf
      .add<uint16_t>("f16", "F16", "[2,2]", {0x3C00, 0xC000, 0x7BFF, 0x0001})
      .add<int8_t>("i8", "I8", "[5]", {-128, -1, 0, 1, 127})
      .add<uint8_t>("u8", "U8", "[2,2]", {0, 1, 200, 255});
  std::string path = write_in(temp_dir(), "ok.safetensors", b.bytes());
  SafetensorsFile file(path);

  EXPECT_EQ(file.path(), path);
  ASSERT_EQ(file.tensors().size(), 5u);
  std::vector<std::string> names;
  for (const auto& t : file.tensors()) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"bf16", "f16", "f32", "i8", "u8"}));  // sorted
  EXPECT_EQ(file.metadata().at("format"), "pt");
  EXPECT_EQ(file.metadata().at("note"), "hi");
  EXPECT_EQ(file.data_start(), 8 + b.header().size());

  Tensor f32 = file.tensor("f32");
  EXPECT_EQ(f32.dtype(), DType::kF32);
  EXPECT_EQ(f32.shape(), (Shape{2, 3}));
  EXPECT_EQ(values_of<float>(f32), (std::vector<float>{1.5f, -2.0f, 0.0f, 3.25f, 1e-7f, -1e7f}));

  Tensor bf16 = file.tensor("bf16");
  EXPECT_EQ(bf16.dtype(), DType::kBF16);
  EXPECT_EQ(bf16.shape(), (Shape{3}));
  EXPECT_EQ(values_of<uint16_t>(bf16), (std::vector<uint16_t>{0x3F80, 0xC000, 0x7F80}));

  Tensor f16 = file.tensor("f16");
  EXPECT_EQ(f16.dtype(), DType::kF16);
  EXPECT_EQ(f16.shape(), (Shape{2, 2}));
  EXPECT_EQ(values_of<uint16_t>(f16), (std::vector<uint16_t>{0x3C00, 0xC000, 0x7BFF, 0x0001}));

  Tensor i8 = file.tensor("i8");
  EXPECT_EQ(i8.dtype(), DType::kI8);
  EXPECT_EQ(values_of<int8_t>(i8), (std::vector<int8_t>{-128, -1, 0, 1, 127}));

  Tensor u8 = file.tensor("u8");
  EXPECT_EQ(u8.dtype(), DType::kU8);
  EXPECT_EQ(u8.shape(), (Shape{2, 2}));
  EXPECT_EQ(values_of<uint8_t>(u8), (std::vector<uint8_t>{0, 1, 200, 255}));

  const SafetensorsTensorInfo* info = file.find("i8");
  ASSERT_NE(info, nullptr);
  EXPECT_EQ(info->dtype, DType::kI8);
  EXPECT_EQ(info->nbytes, 5u);
  EXPECT_EQ(info->offset, file.data_start() + 24 + 6 + 8);  // after f32, bf16, f16
  EXPECT_EQ(file.find("nope"), nullptr);
}

TEST(SafetensorsFile, ViewsPointIntoTheMappingAndKeepItAlive) {
  std::string path = write_in(temp_dir(), "m.safetensors", small_file(10.0f));
  Tensor t;
  const void* expected = nullptr;
  {
    SafetensorsFile file(path);
    t = file.tensor("w");
    const MappedFile& map = *file.mapping();
    EXPECT_TRUE(map.contains(t.raw(), t.nbytes()));
    expected = map.data() + file.find("w")->offset;
    EXPECT_EQ(t.raw(), expected);
    EXPECT_EQ(file.mapping().use_count(), 2);  // the file and the view
  }
  // The file object is gone; the view still reads the mapping it holds.
  EXPECT_EQ(t.raw(), expected);
  EXPECT_EQ(values_of<float>(t), (std::vector<float>{10, 11, 12, 13}));
}

TEST(SafetensorsFile, LargeMisalignedTensorIsCopiedToAlignedMemory) {
  // Header "{...}" padded so the data starts 8 bytes past a 64-byte boundary, as
  // the official writer may leave it; "big" (1 MiB + 8) is then misaligned.
  std::vector<uint8_t> big((size_t{1} << 20) + 8);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 7 + 3);
  FileBuilder b;
  b.add<uint8_t>("small", "U8", "[64]", std::vector<uint8_t>(64, 5))
      .add<uint8_t>("big", "U8", "[" + std::to_string(big.size()) + "]", big);
  std::string header = b.header();
  header.append((64 - (8 + header.size()) % 64) % 64 + 8, ' ');
  std::string path = write_in(temp_dir(), "a.safetensors", st_file(header, b.data()));
  SafetensorsFile file(path);
  Tensor t = file.tensor("big");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw()) % 64, 0u);
  EXPECT_FALSE(file.mapping()->contains(t.raw(), t.nbytes()));
  EXPECT_EQ(values_of<uint8_t>(t), big);
  EXPECT_EQ(file.tensor("big").raw(), t.raw());  // a second reader (tied weights) shares the copy
  // Small tensors stay views of the mapping.
  Tensor small = file.tensor("small");
  EXPECT_TRUE(file.mapping()->contains(small.raw(), small.nbytes()));
  // The released pages read back from the file.
  const uint8_t* mapped = file.mapping()->data() + file.find("big")->offset;
  EXPECT_EQ(std::memcmp(mapped, big.data(), big.size()), 0);
}

TEST(SafetensorsWriter, DataIsCacheLineAlignedForWholeLineTensors) {
  std::vector<PlannedTensor> plan;
  auto u8 = [](int64_t n, uint8_t v) {
    return [n, v] {
      Tensor t = Tensor::zeros(DType::kU8, {n});
      std::memset(t.raw_mut(), v, static_cast<size_t>(n));
      return t;
    };
  };
  plan.push_back({"odd", DType::kU8, {3}, u8(3, 1)});
  plan.push_back({"line", DType::kU8, {128}, u8(128, 2)});
  plan.push_back({"odd2", DType::kU8, {5}, u8(5, 3)});
  plan.push_back({"line2", DType::kU8, {64}, u8(64, 4)});
  std::string path = (fs::path(temp_dir()) / "w.safetensors").string();
  write_safetensors(path, plan, {{"format", "pt"}});
  SafetensorsFile file(path);
  EXPECT_EQ(file.data_start() % 64, 0u);
  EXPECT_EQ(file.find("line")->offset % 64, 0u);
  EXPECT_EQ(file.find("line2")->offset % 64, 0u);
  EXPECT_EQ(values_of<uint8_t>(file.tensor("odd")), std::vector<uint8_t>(3, 1));
  EXPECT_EQ(values_of<uint8_t>(file.tensor("line")), std::vector<uint8_t>(128, 2));
  EXPECT_EQ(values_of<uint8_t>(file.tensor("odd2")), std::vector<uint8_t>(5, 3));
  EXPECT_EQ(values_of<uint8_t>(file.tensor("line2")), std::vector<uint8_t>(64, 4));
}

TEST(SafetensorsFile, ScalarEmptyAndPaddedHeader) {
  FileBuilder b;
  b.add<float>("scalar", "F32", "[]", {4.5f})
      .add<float>("empty", "F32", "[0,7]", {})
      .add<float>("also_empty", "F32", "[3,0]", {});
  // The official writer pads the header with spaces to a multiple of 8.
  std::string header = b.header() + "     ";
  std::string path = write_in(temp_dir(), "s.safetensors", st_file(header, b.data()));
  SafetensorsFile file(path);
  Tensor s = file.tensor("scalar");
  EXPECT_EQ(s.rank(), 0u);
  EXPECT_EQ(s.numel(), 1);
  EXPECT_EQ(values_of<float>(s), std::vector<float>{4.5f});
  Tensor e = file.tensor("empty");
  EXPECT_EQ(e.shape(), (Shape{0, 7}));
  EXPECT_EQ(e.nbytes(), 0u);
  EXPECT_FALSE(e.empty());  // a view of zero bytes still has a location
}

TEST(SafetensorsFile, GapsBetweenTensorsAndExtraTrailingDataAreAllowed) {
  std::string data(64, '\0');
  std::string header = "{" + entry("a", "U8", "[4]", offsets(0, 4)) + "," +
                       entry("b", "U8", "[4]", offsets(16, 20)) + "}";
  std::string path = write_in(temp_dir(), "g.safetensors", st_file(header, data));
  SafetensorsFile file(path);
  EXPECT_EQ(file.tensors().size(), 2u);
}

TEST(SafetensorsFile, MissingTensorNamesFileAndTensor) {
  std::string path = write_in(temp_dir(), "m.safetensors", small_file());
  SafetensorsFile file(path);
  Error e = error_of([&] { file.tensor("nope"); });
  expect_mentions(e, {path, "tensor 'nope'"});
}

// ---------------------------------------------------------------------------
// Corrupt files

TEST(SafetensorsFileErrors, ShorterThanEightBytes) {
  Error e = open_error(std::string("\x05\0\0\0\0", 5), "", "header");
  expect_mentions(e, {"too short", "5 bytes"});
  Error empty = open_error("", "", "header");
  expect_mentions(empty, {"too short", "0 bytes"});
}

TEST(SafetensorsFileErrors, HeaderLengthPastEndOfFile) {
  Error e = open_error(u64_le(1000) + "{}", "", "header");
  expect_mentions(e, {"header length 1000", "past the end of the file", "10 bytes"});
}

TEST(SafetensorsFileErrors, AbsurdHeaderLength) {
  Error e = open_error(u64_le(uint64_t{1} << 63) + "{}", "", "header");
  expect_mentions(e, {"9223372036854775808", "limit"});
}

TEST(SafetensorsFileErrors, InvalidJson) {
  Error e = open_error(st_file("{\"w\": {\"dtype\": "), "", "header");
  expect_mentions(e, {"not valid JSON"});
  Error bad_utf8 = open_error(st_file("{\"\xff\":1}"), "", "header");
  expect_mentions(bad_utf8, {"not valid JSON"});
}

TEST(SafetensorsFileErrors, HeaderNotAnObject) {
  Error e = open_error(st_file("[1, 2]"), "", "header");
  expect_mentions(e, {"not a JSON object", "array"});
}

TEST(SafetensorsFileErrors, TensorEntryNotAnObject) {
  Error e = open_error(st_file("{\"w\": [1, 2]}"), "w");
  expect_mentions(e, {"must be an object"});
}

TEST(SafetensorsFileErrors, DuplicateTensorName) {
  std::string header = "{" + entry("w", "U8", "[1]", offsets(0, 1)) + "," +
                       entry("w", "U8", "[1]", offsets(1, 2)) + "}";
  Error e = open_error(st_file(header, "ab"), "w", "header");
  expect_mentions(e, {"twice"});
}

TEST(SafetensorsFileErrors, DataSectionShorterThanOffsetsNeed) {
  // A valid file cut short: the last tensor's bytes are gone.
  std::string whole = FileBuilder()
                          .add<float>("first", "F32", "[2]", {1, 2})
                          .add<float>("last", "F32", "[4]", {1, 2, 3, 4})
                          .bytes();
  Error e = open_error(whole.substr(0, whole.size() - 5), "last", "data_offsets");
  expect_mentions(e, {"past the end of the data section", "truncated"});
}

TEST(SafetensorsFileErrors, OffsetsOutOfRange) {
  std::string header = "{" + entry("w", "F32", "[4]", offsets(100, 116)) + "}";
  Error e = open_error(st_file(header, std::string(16, '\0')), "w", "data_offsets");
  expect_mentions(e, {"end 116", "16 bytes"});
}

TEST(SafetensorsFileErrors, BeginAfterEnd) {
  std::string header = "{" + entry("w", "U8", "[0]", offsets(8, 4)) + "}";
  Error e = open_error(st_file(header, std::string(16, '\0')), "w", "data_offsets");
  expect_mentions(e, {"begin 8 is after end 4"});
}

TEST(SafetensorsFileErrors, MalformedOffsets) {
  for (const char* bad : {"[0]", "[0,1,2]", "[-1,3]", "[0,1.5]", "\"0,4\"", "{}"}) {
    std::string header = "{" + entry("w", "U8", "[4]", bad) + "}";
    Error e = open_error(st_file(header, std::string(4, '\0')), "w", "data_offsets");
    expect_mentions(e, {"[begin, end]"});
  }
  Error missing = open_error(st_file(R"({"w":{"dtype":"U8","shape":[1]}})", "x"), "w", "data_offsets");
  expect_mentions(missing, {"missing data_offsets"});
}

TEST(SafetensorsFileErrors, OverlappingTensors) {
  std::string header = "{" + entry("a", "F32", "[4]", offsets(0, 16)) + "," +
                       entry("b", "F32", "[4]", offsets(8, 24)) + "}";
  Error e = open_error(st_file(header, std::string(24, '\0')), "b", "data_offsets");
  expect_mentions(e, {"overlap", "tensor 'a' [0, 16]", "[8, 24]"});
}

TEST(SafetensorsFileErrors, OneTensorInsideAnother) {
  std::string header = "{" + entry("big", "U8", "[32]", offsets(0, 32)) + "," +
                       entry("small", "U8", "[4]", offsets(4, 8)) + "}";
  Error e = open_error(st_file(header, std::string(32, '\0')), "small", "data_offsets");
  expect_mentions(e, {"overlap", "'big'"});
}

TEST(SafetensorsFileErrors, SizeDoesNotMatchDtypeAndShape) {
  std::string header = "{" + entry("w", "F32", "[2,2]", offsets(0, 12)) + "}";
  Error e = open_error(st_file(header, std::string(12, '\0')), "w", "data_offsets");
  expect_mentions(e, {"hold 12 bytes", "F32", "[2, 2]", "needs 16"});
  // The same bytes read as bf16 need only 8.
  std::string header2 = "{" + entry("w", "BF16", "[2,2]", offsets(0, 16)) + "}";
  Error e2 = open_error(st_file(header2, std::string(16, '\0')), "w", "data_offsets");
  expect_mentions(e2, {"needs 8"});
}

TEST(SafetensorsFileErrors, UnknownDtype) {
  std::string header = "{" + entry("w", "F17", "[1]", offsets(0, 4)) + "}";
  Error e = open_error(st_file(header, std::string(4, '\0')), "w", "dtype");
  expect_mentions(e, {"unknown dtype 'F17'"});
  EXPECT_EQ(e.message(), "unknown dtype 'F17'");
  Error not_string = open_error(st_file(R"({"w":{"dtype":32,"shape":[1],"data_offsets":[0,4]}})",
                                        std::string(4, '\0')), "w", "dtype");
  expect_mentions(not_string, {"must be a string"});
  Error missing = open_error(st_file(R"({"w":{"shape":[1],"data_offsets":[0,4]}})",
                                     std::string(4, '\0')), "w", "dtype");
  expect_mentions(missing, {"missing dtype"});
}

TEST(SafetensorsFileErrors, BadShapes) {
  for (const char* bad : {"[-1,4]", "[2.5]", "[2.0]", "[\"4\"]", "[[2]]", "[null]"}) {
    std::string header = "{" + entry("w", "U8", bad, offsets(0, 4)) + "}";
    Error e = open_error(st_file(header, std::string(4, '\0')), "w", "shape");
    expect_mentions(e, {"non-negative integers", bad});
  }
  std::string not_array = "{" + entry("w", "U8", "4", offsets(0, 4)) + "}";
  Error e = open_error(st_file(not_array, std::string(4, '\0')), "w", "shape");
  expect_mentions(e, {"must be an array"});
}

TEST(SafetensorsFileErrors, ShapeElementCountOverflow) {
  for (const char* bad : {"[4294967296,4294967296]", "[18446744073709551615]",
                          "[9223372036854775807,2]", "[1152921504606846976,16]"}) {
    std::string header = "{" + entry("w", "F32", bad, offsets(0, 4)) + "}";
    Error e = open_error(st_file(header, std::string(4, '\0')), "w", "shape");
    expect_mentions(e, {"overflows"});
  }
  // Fits int64 elements but not bits: 2^60 f64 values are 2^66 bits.
  std::string header = "{" + entry("w", "F64", "[1152921504606846976]", offsets(0, 4)) + "}";
  Error e = open_error(st_file(header, std::string(4, '\0')), "w", "shape");
  expect_mentions(e, {"overflows"});
}

TEST(SafetensorsFileErrors, BadMetadata) {
  Error e = open_error(st_file(R"({"__metadata__":{"format":1}})"), "", "__metadata__");
  expect_mentions(e, {"'format'", "must be a string"});
  Error e2 = open_error(st_file(R"({"__metadata__":"pt"})"), "", "__metadata__");
  expect_mentions(e2, {"object of strings"});
}

TEST(MappedFile, ErrorsNameTheFile) {
  std::string dir = temp_dir();
  Error missing = error_of([&] { MappedFile::open(dir + "/absent.bin"); });
  expect_mentions(missing, {"absent.bin", "cannot open"});
  Error folder = error_of([&] { MappedFile::open(dir); });
  expect_mentions(folder, {dir, "not a regular file"});
  auto empty = MappedFile::open(write_in(dir, "empty.bin", ""));
  EXPECT_EQ(empty->size(), 0u);
  EXPECT_EQ(empty->data(), nullptr);
  auto three = MappedFile::open(write_in(dir, "three.bin", "abc"));
  ASSERT_EQ(three->size(), 3u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(three->data()), 3), "abc");
}

// ---------------------------------------------------------------------------
// Checkpoint folders

// An index as transformers writes it.
std::string index_json(const std::vector<std::pair<std::string, std::string>>& weight_map) {
  nlohmann::json j;
  j["metadata"] = {{"total_size", 0}};
  j["weight_map"] = nlohmann::json::object();
  for (const auto& [tensor, shard] : weight_map) j["weight_map"][tensor] = shard;
  return j.dump(2) + "\n";
}

std::string two_tensor_file(const std::string& a, const std::string& b) {
  return FileBuilder().add<float>(a, "F32", "[2]", {1, 2}).add<float>(b, "F32", "[1]", {3}).bytes();
}

TEST(SafetensorsCheckpoint, SingleModelFile) {
  std::string dir = temp_dir();
  write_in(dir, "model.safetensors", small_file(5.0f));
  write_in(dir, "other.safetensors", "garbage that must not be opened");
  SafetensorsCheckpoint ckpt(dir);
  EXPECT_EQ(ckpt.location(), dir);
  EXPECT_EQ(ckpt.names(), std::vector<std::string>{"w"});
  EXPECT_TRUE(ckpt.has("w"));
  EXPECT_FALSE(ckpt.has("x"));
  EXPECT_EQ(ckpt.file_of("w"), dir + "/model.safetensors");
  EXPECT_EQ(ckpt.file_of("x"), "");
  EXPECT_EQ(values_of<float>(ckpt.get("w")), (std::vector<float>{5, 6, 7, 8}));
  EXPECT_EQ(ckpt.index_path(), "");
}

TEST(SafetensorsCheckpoint, AllFilesInFolderWhenNoIndexOrModelFile) {
  std::string dir = temp_dir();
  write_in(dir, "b.safetensors", two_tensor_file("b1", "b2"));
  write_in(dir, "a.safetensors", two_tensor_file("a1", "a2"));
  write_in(dir, "notes.txt", "not a tensor file");
  std::unique_ptr<TensorSource> src = open_safetensors(dir);
  EXPECT_EQ(src->names(), (std::vector<std::string>{"a1", "a2", "b1", "b2"}));
  EXPECT_EQ(src->file_of("b2"), dir + "/b.safetensors");
  EXPECT_EQ(values_of<float>(src->get("a2")), std::vector<float>{3});
  auto* ckpt = dynamic_cast<SafetensorsCheckpoint*>(src.get());
  ASSERT_NE(ckpt, nullptr);
  ASSERT_EQ(ckpt->files().size(), 2u);
  EXPECT_EQ(ckpt->files()[0]->path(), dir + "/a.safetensors");  // sorted
}

TEST(SafetensorsCheckpoint, SingleFilePath) {
  std::string path = write_in(temp_dir(), "lone.safetensors", small_file());
  SafetensorsCheckpoint ckpt(path);
  EXPECT_EQ(ckpt.location(), path);
  EXPECT_EQ(ckpt.names(), std::vector<std::string>{"w"});
}

TEST(SafetensorsCheckpoint, ShardedWithIndex) {
  std::string dir = temp_dir();
  write_in(dir, "model-00001-of-00002.safetensors", two_tensor_file("a", "b"));
  write_in(dir, "model-00002-of-00002.safetensors", two_tensor_file("c", "d"));
  write_in(dir, "stray.safetensors", "not opened: the index does not name it");
  write_in(dir, "model.safetensors.index.json",
           index_json({{"a", "model-00001-of-00002.safetensors"},
                       {"b", "model-00001-of-00002.safetensors"},
                       {"c", "model-00002-of-00002.safetensors"},
                       {"d", "model-00002-of-00002.safetensors"}}));
  SafetensorsCheckpoint ckpt(dir);
  EXPECT_EQ(ckpt.index_path(), dir + "/model.safetensors.index.json");
  EXPECT_EQ(ckpt.files().size(), 2u);
  EXPECT_EQ(ckpt.names(), (std::vector<std::string>{"a", "b", "c", "d"}));
  EXPECT_EQ(ckpt.file_of("c"), dir + "/model-00002-of-00002.safetensors");
  EXPECT_EQ(values_of<float>(ckpt.get("d")), std::vector<float>{3});
}

TEST(SafetensorsCheckpointErrors, MissingShard) {
  std::string dir = temp_dir();
  write_in(dir, "model-00001-of-00002.safetensors", two_tensor_file("a", "b"));
  write_in(dir, "model.safetensors.index.json",
           index_json({{"a", "model-00001-of-00002.safetensors"},
                       {"b", "model-00001-of-00002.safetensors"},
                       {"z.weight", "model-00002-of-00002.safetensors"}}));
  Error e = error_of([&] { SafetensorsCheckpoint c(dir); });
  expect_mentions(e, {"file '" + dir + "/model-00002-of-00002.safetensors'", "tensor 'z.weight'",
                      "missing"});
}

TEST(SafetensorsCheckpointErrors, IndexNamesTensorAbsentFromShard) {
  std::string dir = temp_dir();
  write_in(dir, "s1.safetensors", two_tensor_file("a", "b"));
  write_in(dir, "model.safetensors.index.json",
           index_json({{"a", "s1.safetensors"}, {"ghost", "s1.safetensors"}}));
  Error e = error_of([&] { SafetensorsCheckpoint c(dir); });
  expect_mentions(e, {"file '" + dir + "/s1.safetensors'", "tensor 'ghost'", "does not hold it"});
}

TEST(SafetensorsCheckpointErrors, TensorInTwoShards) {
  std::string dir = temp_dir();
  write_in(dir, "s1.safetensors", two_tensor_file("a", "dup"));
  write_in(dir, "s2.safetensors", two_tensor_file("c", "dup"));
  write_in(dir, "model.safetensors.index.json",
           index_json({{"a", "s1.safetensors"}, {"dup", "s1.safetensors"}, {"c", "s2.safetensors"}}));
  Error e = error_of([&] { SafetensorsCheckpoint c(dir); });
  expect_mentions(e, {"tensor 'dup'", "two files", dir + "/s1.safetensors", dir + "/s2.safetensors"});
}

TEST(SafetensorsCheckpointErrors, TensorInTwoFilesWithoutIndex) {
  std::string dir = temp_dir();
  write_in(dir, "x.safetensors", two_tensor_file("a", "dup"));
  write_in(dir, "y.safetensors", two_tensor_file("dup", "b"));
  Error e = error_of([&] { SafetensorsCheckpoint c(dir); });
  expect_mentions(e, {"tensor 'dup'", dir + "/x.safetensors", dir + "/y.safetensors"});
}

TEST(SafetensorsCheckpointErrors, BadIndex) {
  std::string dir = temp_dir();
  write_in(dir, "s1.safetensors", small_file());
  std::string index = dir + "/model.safetensors.index.json";
  auto index_error = [&](const std::string& text) {
    write_file(index, text);
    Error e = error_of([&] { SafetensorsCheckpoint c(dir); });
    expect_mentions(e, {index});
    return e;
  };
  expect_mentions(index_error("{\"weight_map\": {"), {"not valid JSON"});
  expect_mentions(index_error("[]"), {"not a JSON object"});
  expect_mentions(index_error("{\"metadata\": {}}"), {"weight_map"});
  expect_mentions(index_error("{\"weight_map\": {}}"), {"weight_map is empty"});
  expect_mentions(index_error("{\"weight_map\": {\"w\": 3}}"), {"tensor 'w'", "shard file name"});
  expect_mentions(index_error("{\"weight_map\": {\"w\": \"../s1.safetensors\"}}"),
                  {"tensor 'w'", "inside the checkpoint folder"});
  expect_mentions(index_error("{\"weight_map\": {\"w\": \"/etc/passwd\"}}"), {"tensor 'w'"});
  expect_mentions(index_error(R"({"weight_map": {"w": "s1.safetensors", "w": "s1.safetensors"}})"),
                  {"'w' twice"});
}

TEST(SafetensorsCheckpointErrors, CorruptShardNamesTheShard) {
  std::string dir = temp_dir();
  write_in(dir, "s1.safetensors", "\x01\x02");
  write_in(dir, "model.safetensors.index.json", index_json({{"w", "s1.safetensors"}}));
  Error e = error_of([&] { SafetensorsCheckpoint c(dir); });
  expect_mentions(e, {"file '" + dir + "/s1.safetensors'", "too short"});
}

TEST(SafetensorsCheckpointErrors, NoSafetensorsFiles) {
  std::string dir = temp_dir();
  write_in(dir, "config.json", "{}");
  Error e = error_of([&] { SafetensorsCheckpoint c(dir); });
  EXPECT_EQ(std::string(e.what()), "no .safetensors files in " + dir);
  Error absent = error_of([&] { SafetensorsCheckpoint c(dir + "/nowhere"); });
  expect_mentions(absent, {dir + "/nowhere", "not found"});
}

TEST(SafetensorsCheckpointErrors, MissingTensorLookup) {
  std::string dir = temp_dir();
  write_in(dir, "model.safetensors", small_file());
  std::unique_ptr<TensorSource> src = open_safetensors(dir);
  Error e = error_of([&] { src->get("model.layers.9.mlp.up_proj.weight"); });
  expect_mentions(e, {"tensor 'model.layers.9.mlp.up_proj.weight'", dir});
  EXPECT_EQ(e.context().tensor, "model.layers.9.mlp.up_proj.weight");
}

// ---------------------------------------------------------------------------
// Golden fixtures from the official safetensors package

std::string fixture_dir() { return quanta::test::source_path("tests/unit/data/safetensors"); }

nlohmann::json expected_fixture() {
  return nlohmann::json::parse(quanta::test::read_file(fixture_dir() + "/expected.json"));
}

std::string hex_of(const Tensor& t) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  const auto* p = static_cast<const uint8_t*>(t.raw());
  for (size_t i = 0; i < t.nbytes(); ++i) {
    out += kDigits[p[i] >> 4];
    out += kDigits[p[i] & 15];
  }
  return out;
}

// Compares a tensor with its expected.json entry: dtype name, shape, bytes and,
// for the dtypes numpy computed values for, the values.
void expect_matches(const std::string& name, const Tensor& t, const nlohmann::json& want) {
  SCOPED_TRACE(name);
  EXPECT_EQ(dtype_name(t.dtype()), want["dtype"].get<std::string>());
  EXPECT_EQ(t.shape(), want["shape"].get<Shape>());
  EXPECT_EQ(hex_of(t), want["hex"].get<std::string>());
  if (want["values"].is_null()) return;
  const auto& values = want["values"];
  ASSERT_EQ(values.size(), static_cast<size_t>(t.numel()));
  auto check = [&](auto decoded) {
    for (size_t i = 0; i < decoded.size(); ++i) {
      EXPECT_EQ(static_cast<double>(decoded[i]), values[i].get<double>()) << "element " << i;
    }
  };
  switch (t.dtype()) {
    case DType::kF32: check(values_of<float>(t)); break;
    case DType::kF64: check(values_of<double>(t)); break;
    case DType::kI8: check(values_of<int8_t>(t)); break;
    case DType::kU8: case DType::kBool: check(values_of<uint8_t>(t)); break;
    case DType::kI32: check(values_of<int32_t>(t)); break;
    case DType::kI64: {
      auto v = values_of<int64_t>(t);
      for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(v[i], values[i].get<int64_t>()) << i;
      break;
    }
    case DType::kBF16: {
      std::vector<float> f;
      for (uint16_t b : values_of<uint16_t>(t)) {
        uint32_t bits = static_cast<uint32_t>(b) << 16;
        float x;
        std::memcpy(&x, &bits, 4);
        f.push_back(x);
      }
      check(f);
      break;
    }
    case DType::kF16: {  // through dtype.cc's conversion, against numpy's f16 values
      Tensor f = t.to_f32();
      check(std::vector<float>(f.data<float>(), f.data<float>() + f.numel()));
      break;
    }
    default: break;  // the narrow formats: the bytes above are the check
  }
}

TEST(SafetensorsGolden, DtypesFileMatchesOfficialWriter) {
  nlohmann::json expected = expected_fixture();
  SafetensorsFile file(fixture_dir() + "/dtypes.safetensors");
  size_t checked = 0;
  for (const auto& [name, want] : expected["tensors"].items()) {
    if (want["file"] != "dtypes.safetensors") continue;
    ASSERT_TRUE(file.has(name)) << name;
    expect_matches(name, file.tensor(name), want);
    ++checked;
  }
  EXPECT_EQ(checked, file.tensors().size());
  EXPECT_GE(checked, 10u);
  EXPECT_EQ(file.metadata(),
            (expected["metadata"]["dtypes.safetensors"].get<std::map<std::string, std::string>>()));
}

TEST(SafetensorsGolden, ShardedCheckpointMatchesOfficialWriter) {
  nlohmann::json expected = expected_fixture();
  std::string dir = fixture_dir() + "/sharded";
  nlohmann::json index = nlohmann::json::parse(quanta::test::read_file(dir + "/model.safetensors.index.json"));
  std::unique_ptr<TensorSource> src = open_safetensors(dir);

  std::vector<std::string> mapped;
  for (const auto& [name, shard] : index["weight_map"].items()) {
    mapped.push_back(name);
    EXPECT_EQ(src->file_of(name), dir + "/" + shard.get<std::string>());
  }
  EXPECT_EQ(src->names(), mapped);  // items() is sorted, as names() is
  for (const auto& name : mapped) {
    const auto& want = expected["tensors"][name];
    ASSERT_FALSE(want.is_null()) << name;
    Tensor t = src->get(name);
    expect_matches(name, t, want);
  }
}

}  // namespace
}  // namespace quanta::format
