// Tests of the GGUF reader and the ggml reference dequantizers.
//
// Golden data comes from gguf-py (tools/make_gguf_fixtures.py): per ggml type a
// GGUF written by gguf-py's GGUFWriter holding blocks (quantized by gguf-py, or
// random, or hand-picked) next to gguf-py's dequantize() of them; quanta must
// match those f32 values bit for bit. Bad input is built byte by byte here.
#include "quanta/format/gguf.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "quanta/core/error.h"
#include "quanta/format/gguf_model.h"
#include "test_util.h"

namespace quanta::format {
namespace {

namespace fs = std::filesystem;
using quanta::test::read_file;
using quanta::test::shared_data_path;
using quanta::test::source_path;
using quanta::test::temp_dir;
using quanta::test::write_file;

std::string fixture(const std::string& relative) { return source_path("tests/unit/data/gguf/" + relative); }

// ---------------------------------------------------------------------------
// Checking errors (as in safetensors_test.cc)

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

void expect_mentions(const Error& e, std::initializer_list<std::string> parts) {
  std::string what = e.what();
  for (const auto& part : parts) {
    EXPECT_NE(what.find(part), std::string::npos) << "'" << part << "' missing from: " << what;
  }
}

template <typename T>
std::vector<T> values_of(const Tensor& t) {
  std::vector<T> out(static_cast<size_t>(t.numel()));
  if (!out.empty()) std::memcpy(out.data(), t.raw(), out.size() * sizeof(T));
  return out;
}

// ---------------------------------------------------------------------------
// Golden dequantization against gguf-py

uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

// Bit-identical, except that any NaN matches any NaN (payload and quiet bit are
// not part of the contract).
void expect_same_bits(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t mismatches = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(got[i]) && std::isnan(want[i])) continue;
    if (bits_of(got[i]) != bits_of(want[i])) {
      if (++mismatches <= 5) {
        ADD_FAILURE() << what << " element " << i << ": got " << got[i] << " (0x" << std::hex << bits_of(got[i])
                      << "), gguf-py " << want[i] << " (0x" << bits_of(want[i]) << std::dec << ")";
      }
    }
  }
  EXPECT_EQ(mismatches, 0u) << what;
}

class GoldenDequant : public ::testing::TestWithParam<const char*> {};

TEST_P(GoldenDequant, MatchesGgufPyBitForBit) {
  const std::string type = GetParam();
  const std::string path = fixture("dequant/" + type + ".gguf");
  GgufFile file(path);
  EXPECT_EQ(file.metadata().get_string("fixture.type"), type);
  const std::string oracle = file.metadata().get_string("fixture.oracle");
  EXPECT_TRUE(oracle.find("gguf-py") != std::string::npos || oracle.find("numpy") != std::string::npos ||
              oracle.find("ggml") != std::string::npos)
      << oracle;

  int cases = 0;
  for (const GgufTensorInfo& t : file.tensors()) {
    if (t.name.ends_with(".expected")) continue;
    SCOPED_TRACE(type + " case '" + t.name + "'");
    EXPECT_EQ(ggml_type_name(t.type), type);
    const GgufTensorInfo& want_info = file.tensor_info(t.name + ".expected");
    EXPECT_EQ(want_info.type, GgmlType::kF32);
    EXPECT_EQ(want_info.shape, t.shape);

    Tensor got = file.dequantize(t.name);
    EXPECT_EQ(got.dtype(), DType::kF32);
    EXPECT_EQ(got.shape(), t.shape);
    expect_same_bits(values_of<float>(got), values_of<float>(file.view(t.name + ".expected")),
                     type + "/" + t.name + " vs " + oracle);

    // Row by row through the free function as well (what kernels will call).
    const int64_t ne0 = t.ne[0];
    std::vector<float> row(static_cast<size_t>(ne0));
    const size_t row_bytes = ggml_row_bytes(t.type, ne0);
    EXPECT_EQ(row_bytes * static_cast<size_t>(t.numel / ne0), t.nbytes);
    const std::vector<float> all = values_of<float>(got);
    for (int64_t r = 0; r < t.numel / ne0; ++r) {
      dequantize_row(t.type, file.data(t) + r * row_bytes, row.data(), ne0);
      for (int64_t j = 0; j < ne0; ++j) {
        const float a = row[j], b = all[r * ne0 + j];
        ASSERT_TRUE(bits_of(a) == bits_of(b) || (std::isnan(a) && std::isnan(b))) << "row " << r << " col " << j;
      }
    }
    ++cases;
  }
  EXPECT_GE(cases, 1);
}

// Every type with a gguf-py dequantizer; Q1_0 and Q2_0, newer than the pinned
// gguf-py, against ggml's own to_float; the plain integer and f64 types against
// numpy. Q8_1 and Q8_K (activation types nothing dequantizes) are checked by hand below.
constexpr const char* kGoldenTypes[] = {
    "F32", "F16", "BF16", "F64", "I8", "I16", "I32", "I64",
    "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q1_0", "Q2_0",
    "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
    "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M", "IQ4_NL", "IQ4_XS",
    "TQ1_0", "TQ2_0", "MXFP4", "NVFP4"};

INSTANTIATE_TEST_SUITE_P(Types, GoldenDequant, ::testing::ValuesIn(kGoldenTypes),
                         [](const auto& info) { return std::string(info.param); });

TEST(GoldenDequant, EveryFixtureIsChecked) {
  // A fixture added without a test parameter (or the reverse) is caught here.
  std::set<std::string> files, params(std::begin(kGoldenTypes), std::end(kGoldenTypes));
  for (const auto& e : fs::directory_iterator(fixture("dequant"))) files.insert(e.path().stem().string());
  EXPECT_EQ(files, params);
  // Every type with a reference dequantizer is held to an oracle, save the two
  // activation types checked by hand below.
  for (uint32_t id = 0; id < kGgmlTypeCount; ++id) {
    const GgmlTypeInfo& info = *ggml_type_info(id);
    if (!info.has_reference || info.type == GgmlType::kQ8_1 || info.type == GgmlType::kQ8_K) continue;
    EXPECT_EQ(params.count(std::string(info.name)), 1u) << info.name;
  }
}

// Q8_0's activation siblings: gguf-py cannot dequantize them, so these check the
// layout by hand (ggml-quants.c dequantize_row_q8_1 has no counterpart; q8_K:
// y = d * qs, with d an f32).
TEST(Dequant, Q8_1AndQ8_KByHand) {
  uint8_t q81[36] = {};
  const uint16_t d = 0x3800;  // 0.5
  std::memcpy(q81, &d, 2);
  const uint16_t s = 0x7C00;  // the sum field is ignored (Inf here on purpose)
  std::memcpy(q81 + 2, &s, 2);
  for (int j = 0; j < 32; ++j) q81[4 + j] = static_cast<uint8_t>(static_cast<int8_t>(j - 16));
  float y[256];
  dequantize_row(GgmlType::kQ8_1, q81, y, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], 0.5f * static_cast<float>(j - 16)) << j;

  uint8_t q8k[292] = {};
  const float dk = -0.25f;
  std::memcpy(q8k, &dk, 4);
  for (int j = 0; j < 256; ++j) q8k[4 + j] = static_cast<uint8_t>(j);  // as int8: 0..127, -128..-1
  dequantize_row(GgmlType::kQ8_K, q8k, y, 256);
  for (int j = 0; j < 256; ++j) EXPECT_EQ(y[j], dk * static_cast<float>(static_cast<int8_t>(j))) << j;
}

// ---------------------------------------------------------------------------
// The type table

TEST(GgmlTypes, TableCoversEveryIdWithGgmlSizes) {
  for (uint32_t id = 0; id < kGgmlTypeCount; ++id) {
    const GgmlTypeInfo* info = ggml_type_info(id);
    ASSERT_NE(info, nullptr) << id;
    EXPECT_EQ(static_cast<uint32_t>(info->type), id);
    EXPECT_FALSE(info->name.empty());
  }
  EXPECT_EQ(ggml_type_info(kGgmlTypeCount), nullptr);
  EXPECT_EQ(ggml_type_name(77), "unknown type 77");
  // Spot checks against ggml-common.h / gguf-py GGML_QUANT_SIZES.
  auto size = [](GgmlType t) { return std::pair(ggml_type_info(t).block_size, ggml_type_info(t).type_size); };
  EXPECT_EQ(size(GgmlType::kQ4_K), std::pair(int64_t{256}, size_t{144}));
  EXPECT_EQ(size(GgmlType::kQ8_1), std::pair(int64_t{32}, size_t{36}));
  EXPECT_EQ(size(GgmlType::kIQ1_M), std::pair(int64_t{256}, size_t{56}));
  EXPECT_EQ(size(GgmlType::kMXFP4), std::pair(int64_t{32}, size_t{17}));
  EXPECT_EQ(size(GgmlType::kNVFP4), std::pair(int64_t{64}, size_t{36}));
  EXPECT_EQ(size(GgmlType::kQ1_0), std::pair(int64_t{128}, size_t{18}));
  EXPECT_EQ(size(GgmlType::kQ2_0), std::pair(int64_t{64}, size_t{18}));
  EXPECT_TRUE(ggml_type_info(GgmlType::kQ4_0_4_4).removed);
  EXPECT_TRUE(ggml_type_info(GgmlType::kIQ1_M).has_reference);
}

TEST(GgmlTypes, DequantizeRowRefusesWhatItCannotRead) {
  uint8_t block[64] = {};
  float y[256];
  expect_mentions(error_of([&] { dequantize_row(static_cast<GgmlType>(43), block, y, 1); }), {"unknown type 43"});
  expect_mentions(error_of([&] { dequantize_row(GgmlType::kQ4_2, block, y, 16); }), {"Q4_2", "removed"});
  expect_mentions(error_of([&] { dequantize_row(GgmlType::kQ4_K, block, y, 100); }),
                  {"100", "Q4_K", "block size 256"});
}

// ---------------------------------------------------------------------------
// Metadata of every value type (fixture written by gguf-py's GGUFWriter)

TEST(GgufFile, ReadsEveryMetadataValueType) {
  const std::string path = fixture("metadata.gguf");
  GgufFile f(path);
  const GgufMetadata& md = f.metadata();
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(md.get_string("general.architecture"), "quanta-test");

  auto type_of = [&](const char* key) { return md.get(key).type(); };
  EXPECT_EQ(type_of("test.u8"), GgufValueType::kU8);
  EXPECT_EQ(type_of("test.i8"), GgufValueType::kI8);
  EXPECT_EQ(type_of("test.u16"), GgufValueType::kU16);
  EXPECT_EQ(type_of("test.i16"), GgufValueType::kI16);
  EXPECT_EQ(type_of("test.u32"), GgufValueType::kU32);
  EXPECT_EQ(type_of("test.i32"), GgufValueType::kI32);
  EXPECT_EQ(type_of("test.f32"), GgufValueType::kF32);
  EXPECT_EQ(type_of("test.bool_true"), GgufValueType::kBool);
  EXPECT_EQ(type_of("test.string"), GgufValueType::kString);
  EXPECT_EQ(type_of("test.u64"), GgufValueType::kU64);
  EXPECT_EQ(type_of("test.i64"), GgufValueType::kI64);
  EXPECT_EQ(type_of("test.f64"), GgufValueType::kF64);
  EXPECT_EQ(type_of("test.array.u8"), GgufValueType::kArray);

  EXPECT_EQ(md.get_u32("test.u8"), 200u);
  EXPECT_EQ(md.get_i64("test.i8"), -100);
  EXPECT_EQ(md.get_u32("test.u16"), 60000u);
  EXPECT_EQ(md.get_i64("test.i16"), -30000);
  EXPECT_EQ(md.get_u32("test.u32"), 4000000000u);
  EXPECT_EQ(md.get("test.i32").as_i32(), -2000000000);
  EXPECT_EQ(md.get_f32("test.f32"), 0.1f);
  EXPECT_TRUE(md.get_bool("test.bool_true"));
  EXPECT_FALSE(md.get_bool("test.bool_false"));
  EXPECT_EQ(md.get_string("test.string"), "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93");
  EXPECT_EQ(md.get_string("test.string_empty"), "");
  EXPECT_EQ(md.get_u64("test.u64"), (uint64_t{1} << 63) + 5);
  EXPECT_EQ(md.get_i64("test.i64"), -(int64_t{1} << 62) - 7);
  EXPECT_EQ(md.get("test.f64").as_f64(), 0.1);

  auto ints = [&](const char* key) { return md.get(key).as_i64_array(md.context(key)); };
  EXPECT_EQ(ints("test.array.u8"), (std::vector<int64_t>{0, 1, 255}));
  EXPECT_EQ(ints("test.array.i8"), (std::vector<int64_t>{-128, 0, 127}));
  EXPECT_EQ(ints("test.array.u16"), (std::vector<int64_t>{0, 65535}));
  EXPECT_EQ(ints("test.array.i16"), (std::vector<int64_t>{-32768, 32767}));
  EXPECT_EQ(ints("test.array.u32"), (std::vector<int64_t>{1, 4294967295}));
  EXPECT_EQ(ints("test.array.i32"), (std::vector<int64_t>{-2147483648LL, 2147483647, 5}));
  EXPECT_EQ(ints("test.array.i64"), (std::vector<int64_t>{INT64_MIN, INT64_MAX}));
  EXPECT_EQ(md.get("test.array.f32").as_f32_array(), (std::vector<float>{0.5f, -2.25f, 1e30f}));
  const GgufArray& u64s = md.get("test.array.u64").as_array();
  EXPECT_EQ(u64s.element_type(), GgufValueType::kU64);
  EXPECT_EQ(u64s.at(1).as_u64(), UINT64_MAX);
  const GgufArray& f64s = md.get("test.array.f64").as_array();
  EXPECT_EQ(f64s.at(0).as_f64(), 0.1);
  EXPECT_EQ(f64s.at(1).as_f64(), -1e300);
  const GgufArray& bools = md.get("test.array.bool").as_array();
  EXPECT_EQ(bools.element_type(), GgufValueType::kBool);
  ASSERT_EQ(bools.size(), 3u);
  EXPECT_TRUE(bools.at(0).as_bool());
  EXPECT_FALSE(bools.at(1).as_bool());
  EXPECT_EQ(md.get("test.array.string").as_string_array(),
            (std::vector<std::string>{"a", "", "\xc3\xbcn\xc3\xaf" "code", "tab\tnew\nline"}));

  const GgufArray& nested = md.get("test.array.nested").as_array();
  EXPECT_EQ(nested.element_type(), GgufValueType::kArray);
  ASSERT_EQ(nested.size(), 3u);
  EXPECT_EQ(nested.array_at(0).element_type(), GgufValueType::kI32);  // gguf-py types python ints as i32
  EXPECT_EQ(nested.at(0).as_i64_array(), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(nested.at(1).as_i64_array(), (std::vector<int64_t>{3}));
  EXPECT_EQ(nested.at(2).as_i64_array(), (std::vector<int64_t>{4, 5, 6}));
  const GgufArray& nested_strings = md.get("test.array.nested_strings").as_array();
  EXPECT_EQ(nested_strings.at(0).as_string_array(), (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(nested_strings.array_at(1).string_at(0), "z");
  const GgufArray& nested3 = md.get("test.array.nested3").as_array();
  EXPECT_EQ(nested3.array_at(1).array_at(0).at(1).as_i64(), 9);

  EXPECT_EQ(md.get("test.array.i32").to_string(), "[-2147483648, 2147483647, 5]");
  EXPECT_EQ(md.get("test.array.nested").to_string(2), "[[1, 2], [3], ... (3 items)]");
  EXPECT_EQ(md.get("test.bool_true").to_string(), "true");

  // Entries keep file order: general.architecture first, as gguf-py writes it.
  EXPECT_EQ(md.entries().front().first, "general.architecture");
  EXPECT_EQ(md.size(), 31u);
}

TEST(GgufFile, TypedGettersNameTheFileAndKey) {
  const std::string path = fixture("metadata.gguf");
  GgufFile f(path);
  const GgufMetadata& md = f.metadata();
  auto check = [&](const Error& e, const std::string& key, std::initializer_list<std::string> parts) {
    EXPECT_EQ(e.context().file, path);
    EXPECT_EQ(e.context().field, key);
    expect_mentions(e, {"file '" + path + "'", "field '" + key + "'"});
    expect_mentions(e, parts);
  };
  check(error_of([&] { md.get_u32("test.string"); }), "test.string", {"string", "unsigned integer"});
  check(error_of([&] { md.get_u32("test.i32"); }), "test.i32", {"non-negative"});
  check(error_of([&] { md.get_u32("test.u64"); }), "test.u64", {"fits u32"});
  check(error_of([&] { md.get_i64("test.u64"); }), "test.u64", {"fits i64"});
  check(error_of([&] { md.get_string("test.u8"); }), "test.u8", {"u8 200", "expected string"});
  check(error_of([&] { md.get_f32("test.bool_true"); }), "test.bool_true", {"bool", "float"});
  check(error_of([&] { md.get_bool("test.u8"); }), "test.u8", {"expected bool"});
  check(error_of([&] { md.get("no.such.key"); }), "no.such.key", {"missing"});
  check(error_of([&] { md.get("test.array.f32").as_string_array(md.context("test.array.f32")); }),
        "test.array.f32", {"array of strings"});
  check(error_of([&] { md.get("test.array.string").as_i64_array(md.context("test.array.string")); }),
        "test.array.string", {"array of integers"});
  EXPECT_EQ(md.get_u32_or("no.such.key", 7), 7u);
  EXPECT_EQ(md.get_string_or("no.such.key", "x"), "x");
  EXPECT_TRUE(md.get_bool_or("no.such.key", true));
  EXPECT_EQ(md.get_f32_or("test.f32", 2.0f), 0.1f);
  check(error_of([&] { md.get_u32_or("test.string", 7); }), "test.string", {"unsigned integer"});
}

TEST(GgufFile, ReadsTensorInfosAlignmentAndDimensionOrder) {
  GgufFile f(fixture("metadata.gguf"));
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.data_start() % 64, 0u);
  ASSERT_EQ(f.tensors().size(), 5u);
  std::vector<std::string> names;
  for (const auto& t : f.tensors()) {
    names.push_back(t.name);
    EXPECT_EQ(t.offset % 64, 0u) << t.name;
    EXPECT_EQ(t.file_offset, f.data_start() + t.offset);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"t.f32", "t.f16", "t.q8_0", "t.i32", "t.4d"}));  // file order

  const GgufTensorInfo& f32 = f.tensor_info("t.f32");
  EXPECT_EQ(f32.ne, (std::vector<int64_t>{5, 3}));
  EXPECT_EQ(f32.shape, (Shape{3, 5}));
  Tensor v = f.view("t.f32");
  EXPECT_EQ(v.dtype(), DType::kF32);
  EXPECT_EQ(v.shape(), (Shape{3, 5}));
  std::vector<float> want(15);
  for (int i = 0; i < 15; ++i) want[i] = static_cast<float>(i);
  EXPECT_EQ(values_of<float>(v), want);
  EXPECT_TRUE(f.mapping()->contains(v.raw(), v.nbytes()));

  const GgufTensorInfo& f16 = f.tensor_info("t.f16");
  EXPECT_EQ(f16.ne, (std::vector<int64_t>{4, 3, 2}));
  EXPECT_EQ(f16.shape, (Shape{2, 3, 4}));
  EXPECT_EQ(f16.nbytes, 48u);
  std::vector<float> got16 = values_of<float>(f.dequantize("t.f16"));
  for (int i = 0; i < 24; ++i) EXPECT_EQ(got16[i], static_cast<float>(i) / 4) << i;

  const GgufTensorInfo& q8 = f.tensor_info("t.q8_0");
  EXPECT_EQ(q8.type, GgmlType::kQ8_0);
  EXPECT_EQ(q8.ne, (std::vector<int64_t>{64, 2}));
  EXPECT_EQ(q8.shape, (Shape{2, 64}));
  EXPECT_EQ(q8.nbytes, 2u * 2u * 34u);
  std::vector<float> q = values_of<float>(f.dequantize("t.q8_0"));
  for (int i = 0; i < 128; ++i) {
    const float x = -1.0f + 2.0f * static_cast<float>(i) / 127.0f;  // np.linspace(-1, 1, 128)
    EXPECT_NEAR(q[i], x, 1.0 / 127) << i;
  }
  Error e = error_of([&] { f.view("t.q8_0"); });
  EXPECT_EQ(e.context().tensor, "t.q8_0");
  expect_mentions(e, {"Q8_0", "dequantize"});

  EXPECT_EQ(values_of<int32_t>(f.view("t.i32")), (std::vector<int32_t>{-3, -2, -1, 0, 1, 2, 3}));
  EXPECT_EQ(f.tensor_info("t.4d").ne, (std::vector<int64_t>{5, 4, 3, 2}));
  EXPECT_EQ(f.view("t.4d").shape(), (Shape{2, 3, 4, 5}));
  EXPECT_EQ(values_of<float>(f.view("t.4d"))[119], 119.0f);

  Error missing = error_of([&] { f.tensor_info("nope"); });
  EXPECT_EQ(missing.context().tensor, "nope");
  EXPECT_EQ(f.find("nope"), nullptr);
}

TEST(GgufFile, ViewsKeepTheMappingAlive) {
  Tensor t;
  {
    GgufFile f(fixture("metadata.gguf"));
    t = f.view("t.f32");
  }
  EXPECT_EQ(values_of<float>(t)[14], 14.0f);
}

TEST(GgufFile, ParsesFromMemory) {
  const std::string bytes = read_file(fixture("metadata.gguf"));
  auto owner = std::make_shared<std::string>(bytes);
  GgufFile f("in-memory.gguf", owner->data(), owner->size(), owner);
  EXPECT_EQ(f.path(), "in-memory.gguf");
  EXPECT_EQ(f.mapping(), nullptr);
  EXPECT_EQ(f.metadata().get_u32("test.u8"), 200u);
  EXPECT_EQ(values_of<float>(f.view("t.f32"))[3], 3.0f);
}

// ---------------------------------------------------------------------------
// Building files byte by byte

std::string le32(uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }
std::string le64(uint64_t v) { return std::string(reinterpret_cast<const char*>(&v), 8); }
std::string gstr(const std::string& s) { return le64(s.size()) + s; }

class Builder {
 public:
  uint32_t magic = GgufFile::kMagic;
  uint32_t version = 3;
  std::optional<uint64_t> n_tensors, n_kv;  // override the real counts
  uint64_t alignment = 32;                  // for laying out data (write the key separately)
  std::string tail;                         // bytes appended at the very end

  // A metadata entry with its value bytes as given.
  Builder& kv(const std::string& key, uint32_t type, const std::string& value) {
    kvs_ += gstr(key) + le32(type) + value;
    ++kv_count_;
    return *this;
  }
  Builder& kv_u32(const std::string& key, uint32_t v) { return kv(key, 4, le32(v)); }
  Builder& kv_string(const std::string& key, const std::string& v) { return kv(key, 8, gstr(v)); }

  // A tensor info with an explicit offset, and no data.
  Builder& info(const std::string& name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset) {
    infos_ += gstr(name) + le32(static_cast<uint32_t>(ne.size()));
    for (uint64_t n : ne) infos_ += le64(n);
    infos_ += le32(type) + le64(offset);
    ++tensor_count_;
    return *this;
  }
  // A tensor info and its data, placed at the next aligned offset.
  Builder& tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, const std::string& bytes) {
    while (data_.size() % alignment) data_ += '\0';
    info(name, std::move(ne), type, data_.size());
    data_ += bytes;
    return *this;
  }
  Builder& f32(const std::string& name, std::vector<uint64_t> ne, const std::vector<float>& v) {
    return tensor(name, std::move(ne), 0, std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4));
  }

  std::string bytes() const {
    std::string out = le32(magic) + le32(version) + le64(n_tensors.value_or(tensor_count_)) +
                      le64(n_kv.value_or(kv_count_)) + kvs_ + infos_;
    if (tensor_count_ > 0) {
      while (out.size() % alignment) out += '\0';
      out += data_;
    }
    return out + tail;
  }

 private:
  std::string kvs_, infos_, data_;
  uint64_t kv_count_ = 0, tensor_count_ = 0;
};

// A small valid file: two metadata entries and two tensors.
Builder valid_builder() {
  Builder b;
  b.kv_string("general.architecture", "llama").kv_u32("llama.block_count", 2);
  b.f32("a", {3, 2}, {1, 2, 3, 4, 5, 6});
  b.tensor("b", {32}, 8, std::string(34, '\x01'));  // one Q8_0 block
  return b;
}

// Opens bytes from a file (and from memory) and returns the error; it must name
// the file, and the tensor and field if given.
Error open_error(const std::string& bytes, const std::string& tensor, const std::string& field) {
  const std::string path = (fs::path(temp_dir()) / "bad.gguf").string();
  write_file(path, bytes);
  Error e = error_of([&] { GgufFile f(path); });
  EXPECT_EQ(e.context().file, path);
  expect_mentions(e, {"file '" + path + "'"});
  EXPECT_EQ(e.context().tensor, tensor);
  EXPECT_EQ(e.context().field, field);
  if (!tensor.empty()) expect_mentions(e, {"tensor '" + tensor + "'"});
  if (!field.empty()) expect_mentions(e, {"field '" + field + "'"});
  // The in-memory path gives the same error.
  Error m = error_of([&] { GgufFile f("mem.gguf", bytes.data(), bytes.size()); });
  EXPECT_EQ(m.message(), e.message());
  return e;
}

TEST(GgufFile, BuilderMakesAValidFile) {
  const std::string bytes = valid_builder().bytes();
  GgufFile f("mem.gguf", bytes.data(), bytes.size());
  EXPECT_EQ(f.metadata().get_string("general.architecture"), "llama");
  ASSERT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.tensor_info("a").shape, (Shape{2, 3}));
  EXPECT_EQ(f.tensor_info("b").offset, 32u);
  EXPECT_EQ(values_of<float>(f.view("a")), (std::vector<float>{1, 2, 3, 4, 5, 6}));
}

// ---------------------------------------------------------------------------
// Bad input: each a clear error naming the file and the tensor / key / field

TEST(GgufBadInput, WrongMagic) {
  Builder b = valid_builder();
  b.magic = 0x46554746;  // "FGUF"
  expect_mentions(open_error(b.bytes(), "", "header.magic"), {"not a GGUF file", "46 47 55 46"});
  expect_mentions(open_error("GG", "", "header.magic"), {"too short"});
  expect_mentions(open_error("", "", "header.magic"), {"too short", "0 bytes"});
}

TEST(GgufBadInput, UnsupportedVersion) {
  for (uint32_t v : {0u, 4u, 77u}) {
    Builder b = valid_builder();
    b.version = v;
    expect_mentions(open_error(b.bytes(), "", "header.version"),
                    {"unsupported GGUF version " + std::to_string(v), "2 and 3"});
  }
  Builder v1 = valid_builder();
  v1.version = 1;
  expect_mentions(open_error(v1.bytes(), "", "header.version"), {"version 1"});
  Builder big = valid_builder();
  big.version = 0x03000000;  // version 3 written big-endian
  expect_mentions(open_error(big.bytes(), "", "header.version"), {"big-endian"});
  // Version 2 has the same layout and is read.
  Builder v2 = valid_builder();
  v2.version = 2;
  const std::string bytes = v2.bytes();
  EXPECT_EQ(GgufFile("v2.gguf", bytes.data(), bytes.size()).version(), 2u);
}

TEST(GgufBadInput, TruncatedAnywhere) {
  const std::string bytes = valid_builder().bytes();
  const std::string path = (fs::path(temp_dir()) / "cut.gguf").string();
  for (size_t n = 0; n < bytes.size(); ++n) {
    write_file(path, bytes.substr(0, n));
    Error e = error_of([&] { GgufFile f(path); });
    EXPECT_EQ(e.context().file, path) << "cut at " << n;
    EXPECT_FALSE(e.message().empty()) << "cut at " << n;
  }
  // Cut inside the data, a key and a tensor name: the message says where.
  expect_mentions(open_error(bytes.substr(0, bytes.size() - 1), "b", "offset"),
                  {"past the end of the data section", "truncated"});
  Builder one_kv;
  one_kv.kv_string("general.architecture", "llama");
  expect_mentions(open_error(one_kv.bytes().substr(0, 24 + 8 + 10), "", "metadata entry #0"),
                  {"the length of the key of metadata entry #0 is 20 bytes", "past the end"});
  Builder one_tensor;
  one_tensor.f32("token_embd.weight", {1}, {1.0f});
  expect_mentions(open_error(one_tensor.bytes().substr(0, 24 + 8 + 17 + 4 + 4), "token_embd.weight", "ne"),
                  {"the file ends while reading ne[0]"});
  // Counts that the cut file can no longer hold are refused as such.
  expect_mentions(open_error(bytes.substr(0, 30), "", "header.metadata_kv_count"), {"claims 2 metadata entries"});
  expect_mentions(open_error(bytes.substr(0, 22), "", "header.metadata_kv_count"),
                  {"the file ends while reading the metadata count", "22 bytes"});
}

TEST(GgufBadInput, TensorDataPastEnd) {
  Builder b = valid_builder();
  b.info("c", {4}, 0, 4096);
  expect_mentions(open_error(b.bytes(), "c", "offset"),
                  {"offset 4096", "16 bytes of F32 [4]", "past the end of the data section"});
  Builder huge;
  huge.info("h", {8}, 0, UINT64_MAX - 31);  // aligned, and offset + size overflows
  expect_mentions(open_error(huge.bytes() + std::string(64, '\0'), "h", "offset"), {"past the end"});
}

TEST(GgufBadInput, MisalignedOffset) {
  Builder b = valid_builder();
  b.info("c", {1}, 0, 48);  // inside the file, but 48 % 32 != 0
  b.tail = std::string(64, '\0');
  expect_mentions(open_error(b.bytes(), "c", "offset"), {"offset 48", "alignment 32"});
  // With general.alignment = 16 the same offset is fine.
  Builder ok;
  ok.alignment = 16;
  ok.kv_u32("general.alignment", 16);
  ok.f32("x", {1}, {1.0f}).info("c", {1}, 0, 48);
  ok.tail = std::string(64, '\0');
  const std::string bytes = ok.bytes();
  GgufFile f("ok.gguf", bytes.data(), bytes.size());
  EXPECT_EQ(f.alignment(), 16u);
  EXPECT_EQ(f.tensor_info("c").offset, 48u);
}

TEST(GgufBadInput, ShapeAndTypeSizeMismatch) {
  // ne[0] is not a whole number of blocks.
  Builder b;
  b.tensor("q", {33, 2}, 2, std::string(36, '\0'));
  expect_mentions(open_error(b.bytes(), "q", "ne"), {"ne[0] = 33", "Q4_0 block size 32"});
  // A shape bigger than the bytes before the next tensor: the data overlap.
  Builder o;
  o.info("first", {64}, 0, 0).info("second", {8}, 0, 128);
  o.tail = std::string(512, '\0');
  expect_mentions(open_error(o.bytes(), "second", "offset"), {"overlaps", "'first' [0, 256)"});
  // Element count overflow.
  Builder big;
  big.info("big", {uint64_t{1} << 32, uint64_t{1} << 32}, 0, 0);
  expect_mentions(open_error(big.bytes(), "big", "ne"), {"overflows"});
  // A zero dimension first makes the count 0, but the other dimensions' product overflows
  // (a fuzz finding: the reversed shape's product overflowed in Tensor::numel).
  Builder zero_first;
  zero_first.info("z", {0, uint64_t{1} << 50, uint64_t{1} << 50}, 0, 0);
  expect_mentions(open_error(zero_first.bytes(), "z", "ne"), {"overflows"});
  Builder neg;
  neg.info("neg", {uint64_t{1} << 63}, 0, 0);
  expect_mentions(open_error(neg.bytes(), "neg", "ne"), {"out of range"});
  Builder bytes_overflow;
  bytes_overflow.info("bo", {uint64_t{1} << 62}, 0, 0);  // 2^62 f32 = 2^64 bytes
  expect_mentions(open_error(bytes_overflow.bytes(), "bo", "ne"), {"byte size", "overflows"});
  Builder dims;
  dims.info("d5", {1, 1, 1, 1, 1}, 0, 0);
  expect_mentions(open_error(dims.bytes(), "d5", "n_dims"), {"n_dims is 5", "at most 4"});
}

TEST(GgufBadInput, DuplicateTensorNames) {
  Builder b = valid_builder();
  b.f32("a", {1}, {7.0f});
  expect_mentions(open_error(b.bytes(), "a", ""), {"appears twice", "#0 and #2"});
}

TEST(GgufBadInput, DuplicateAndEmptyKeys) {
  Builder b = valid_builder();
  b.kv_u32("llama.block_count", 3);
  expect_mentions(open_error(b.bytes(), "", "llama.block_count"), {"appears twice", "#1 and #2"});
  Builder e;
  e.kv_u32("", 3);
  expect_mentions(open_error(e.bytes(), "", "metadata entry #0"), {"empty key"});
  Builder t;
  t.f32("", {1}, {1.0f});
  expect_mentions(open_error(t.bytes(), "", "tensor info #0"), {"empty name"});
}

TEST(GgufBadInput, UnknownTypeIds) {
  Builder b;
  b.tensor("w", {4}, 99, std::string(16, '\0'));
  expect_mentions(open_error(b.bytes(), "w", "type"), {"unknown ggml type id 99"});
  Builder gap;
  gap.tensor("w", {32}, 31, std::string(18, '\0'));
  expect_mentions(open_error(gap.bytes(), "w", "type"), {"Q4_0_4_4", "removed"});
  Builder vt;
  vt.kv("k", 13, "x");
  expect_mentions(open_error(vt.bytes(), "", "k"), {"13", "not a GGUF value type"});
  Builder at;
  at.kv("k", 9, le32(77) + le64(1));
  expect_mentions(open_error(at.bytes(), "", "k"), {"element type is 77"});
}

TEST(GgufBadInput, EveryTypeIdIsReadOrRefusedByName) {
  // A tensor of each ggml type id: it dequantizes, or the file is refused at load
  // naming the tensor and its type; nothing is read wrongly.
  for (uint32_t id = 0; id <= kGgmlTypeCount; ++id) {
    const GgmlTypeInfo* info = ggml_type_info(id);
    const int64_t block = info ? info->block_size : 1;
    const size_t bytes = info ? info->type_size : 4;
    Builder b;
    b.tensor("blk.0.ffn_up.weight", {static_cast<uint64_t>(block)}, id, std::string(bytes, '\0'));
    const std::string file = b.bytes();
    if (!info || info->removed) {
      expect_mentions(open_error(file, "blk.0.ffn_up.weight", "type"), {info ? "removed" : "unknown ggml type id"});
      continue;
    }
    SCOPED_TRACE(std::string(info->name));
    ASSERT_TRUE(info->has_reference);
    GgufFile f("t.gguf", file.data(), file.size());
    EXPECT_EQ(f.dequantize("blk.0.ffn_up.weight").numel(), block);
  }
}

TEST(GgufBadInput, AbsurdCounts) {
  Builder kv = valid_builder();
  kv.n_kv = uint64_t{1} << 40;
  expect_mentions(open_error(kv.bytes(), "", "header.metadata_kv_count"), {"1099511627776 metadata entries"});
  Builder t = valid_builder();
  t.n_tensors = uint64_t{1} << 62;
  expect_mentions(open_error(t.bytes(), "", "header.tensor_count"), {"tensors", "at most"});
  Builder t2 = valid_builder();
  t2.n_tensors = UINT64_MAX;
  t2.n_kv = UINT64_MAX;
  open_error(t2.bytes(), "", "header.metadata_kv_count");
  // Array and string lengths beyond the file.
  Builder arr;
  arr.kv("tokens", 9, le32(8) + le64(uint64_t{1} << 60));
  expect_mentions(open_error(arr.bytes(), "", "tokens"), {"array of 1152921504606846976 string elements", "cannot fit"});
  Builder str;
  str.kv("name", 8, le64(1000) + "abc");
  expect_mentions(open_error(str.bytes(), "", "name"), {"1000 bytes", "past the end"});
  std::string raw = le32(GgufFile::kMagic) + le32(3) + le64(0) + le64(1) + le64(UINT64_MAX) + "abcdefghijklmnop";
  expect_mentions(open_error(raw, "", "metadata entry #0"), {"the key of metadata entry #0", "past the end"});
}

TEST(GgufBadInput, BadValues) {
  Builder b;
  b.kv("flag", 7, "\x02");
  expect_mentions(open_error(b.bytes(), "", "flag"), {"bool value is 2"});
  Builder ba;
  ba.kv("flags", 9, le32(7) + le64(2) + "\x01\x05");
  expect_mentions(open_error(ba.bytes(), "", "flags"), {"bool value is 5"});
  Builder al;
  al.kv_u32("general.alignment", 48);
  expect_mentions(open_error(al.bytes(), "", "general.alignment"), {"48", "power of two"});
  Builder al0;
  al0.kv_u32("general.alignment", 0);
  open_error(al0.bytes(), "", "general.alignment");
  Builder als;
  als.kv_string("general.alignment", "32");
  expect_mentions(open_error(als.bytes(), "", "general.alignment"), {"string", "unsigned integer"});
  // Nesting deeper than the limit.
  std::string nested = le32(4) + le64(0);  // innermost: empty u32 array
  for (int i = 0; i < GgufFile::kMaxArrayDepth; ++i) nested = le32(9) + le64(1) + nested;
  Builder deep;
  deep.kv("deep", 9, nested);
  expect_mentions(open_error(deep.bytes(), "", "deep"), {"nested more than 8 levels"});
}

TEST(GgufFile, AcceptsEmptyArraysAndShallowNesting) {
  std::string nested = le32(4) + le64(0);
  for (int i = 0; i < GgufFile::kMaxArrayDepth - 1; ++i) nested = le32(9) + le64(1) + nested;
  Builder b;
  b.kv("empty", 9, le32(8) + le64(0)).kv("nested", 9, nested);
  const std::string bytes = b.bytes();
  GgufFile f("ok.gguf", bytes.data(), bytes.size());
  EXPECT_TRUE(f.metadata().get("empty").as_array().empty());
  EXPECT_TRUE(f.metadata().get("empty").as_string_array().empty());
  const GgufArray* a = &f.metadata().get("nested").as_array();
  for (int i = 0; i < GgufFile::kMaxArrayDepth - 1; ++i) a = &a->array_at(0);
  EXPECT_EQ(a->element_type(), GgufValueType::kU32);
  EXPECT_TRUE(a->empty());
}

TEST(GgufBadInput, DataSectionPastEnd) {
  // One empty tensor, and the file stops right after the tensor infos, before the
  // padding that would start the data section.
  const std::string raw = le32(GgufFile::kMagic) + le32(3) + le64(1) + le64(0) + gstr("t") + le32(1) + le64(0) +
                          le32(0) + le64(0);
  expect_mentions(open_error(raw, "", "data section"), {"past the end of the file"});
}

// ---------------------------------------------------------------------------
// Real files: llama.cpp's vocab-only GGUFs

TEST(GgufFile, ReadsLlamaCppVocabGpt2) {
  const std::string shared = shared_data_path();
  if (shared.empty()) GTEST_SKIP() << "shared data folder (../shared/data) is absent";
  const std::string path = shared + "/vocab/ggml-vocab-gpt-2.gguf";
  if (!fs::exists(path)) GTEST_SKIP() << path << " is absent";
  GgufFile f(path);
  const GgufMetadata& md = f.metadata();
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_EQ(md.get_string("general.architecture"), "gpt2");
  EXPECT_EQ(md.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(md.get_u32("gpt2.block_count"), 12u);
  EXPECT_EQ(md.get_f32("gpt2.attention.layer_norm_epsilon"), 1e-5f);
  const std::vector<std::string> tokens = md.get("tokenizer.ggml.tokens").as_string_array();
  ASSERT_EQ(tokens.size(), 50257u);
  EXPECT_EQ(tokens[0], "!");
  EXPECT_EQ(tokens[256], "\xc4\xa0t");  // "Ġt"
  EXPECT_EQ(tokens[50256], "<|endoftext|>");
  const std::vector<int64_t> types = md.get("tokenizer.ggml.token_type").as_i64_array();
  ASSERT_EQ(types.size(), 50257u);
  EXPECT_EQ(types[0], 1);
  EXPECT_EQ(types[50256], 3);
  const GgufArray& merges = md.get("tokenizer.ggml.merges").as_array();
  ASSERT_EQ(merges.size(), 50000u);
  EXPECT_EQ(merges.string_at(0), "\xc4\xa0 t");
  EXPECT_EQ(md.get_u32("tokenizer.ggml.bos_token_id"), 50256u);
}

TEST(GgufFile, ReadsEveryLlamaCppVocab) {
  const std::string shared = shared_data_path();
  if (shared.empty()) GTEST_SKIP() << "shared data folder (../shared/data) is absent";
  int n = 0;
  for (const auto& e : fs::directory_iterator(shared + "/vocab")) {
    if (e.path().extension() != ".gguf") continue;
    SCOPED_TRACE(e.path().string());
    GgufFile f(e.path().string());
    const GgufArray& tokens = f.metadata().get("tokenizer.ggml.tokens").as_array();
    EXPECT_EQ(tokens.element_type(), GgufValueType::kString);
    EXPECT_GT(tokens.size(), 1000u);
    EXPECT_FALSE(f.metadata().get_string("tokenizer.ggml.model").empty());
    ++n;
  }
  EXPECT_GT(n, 0);
}

}  // namespace
}  // namespace quanta::format

namespace quanta::format {
namespace {

// 3-D expert tensors are served one expert at a time under Hugging Face names, as zero-copy row
// ranges: ffn_gate_exps [E, ffn, hidden] gives experts.E.gate_proj, the fused ffn_gate_up_exps its
// first ffn rows as gate_proj and the next as up_proj. An empty expert tensor serves nothing.
TEST(GgufTensorSource, ServesEachExpertOfA3DTensor) {
  std::vector<float> v(24), w(48);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);
  for (size_t i = 0; i < w.size(); ++i) w[i] = 100.0f + static_cast<float>(i);
  Builder b;
  b.kv_string("general.architecture", "qwen3moe");
  b.f32("blk.0.ffn_down_exps.weight", {4, 3, 2}, v);     // 2 experts of [3, 4]
  b.f32("blk.1.ffn_gate_up_exps.weight", {4, 6, 2}, w);  // 2 experts of [2 x 3, 4]
  b.tensor("blk.2.ffn_up_exps.weight", {4, 0, 2}, 0, "");
  const std::string bytes = b.bytes();
  auto file = std::make_shared<GgufFile>("mem.gguf", bytes.data(), bytes.size());
  GgufTensorSource src(file, ModelConfig{});
  const Tensor e1 = src.get("model.layers.0.mlp.experts.1.down_proj.weight");
  EXPECT_EQ(e1.shape(), (Shape{3, 4}));
  EXPECT_EQ(e1.data<float>()[0], 12.0f);
  EXPECT_EQ(e1.data<float>()[11], 23.0f);
  EXPECT_EQ(e1.data<float>(), reinterpret_cast<const float*>(file->data(file->tensor_info("blk.0.ffn_down_exps.weight"))) + 12);
  const Tensor up1 = src.get("model.layers.1.mlp.experts.1.up_proj.weight");
  EXPECT_EQ(up1.shape(), (Shape{3, 4}));
  EXPECT_EQ(up1.data<float>()[0], 100.0f + 24 + 12);  // expert 1 starts at row 6, its up rows at 9
  EXPECT_EQ(src.get("model.layers.1.mlp.experts.0.gate_proj.weight").data<float>()[0], 100.0f);
  EXPECT_EQ(src.gguf_tensor("model.layers.1.mlp.experts.1.gate_proj.weight")->nbytes, 3u * 4 * 4);
  EXPECT_FALSE(src.has("model.layers.0.mlp.experts.2.down_proj.weight"));
  EXPECT_FALSE(src.has("model.layers.2.mlp.experts.0.up_proj.weight"));
}


// Sizes in the metadata are checked, each naming its key, before the config divides by or
// allocates from them (issue #16: head_count 0 was a SIGFPE; block_count 4294967294 took
// 0.5 GB; key_length 2^62 overflowed in the decoder).
TEST(GgufModelConfig, RefusesBadSizesNamingTheKey) {
  struct Case {
    std::vector<std::pair<std::string, uint64_t>> kvs;  // over the valid ones below
    std::string key;                                    // the field named; "" for a valid file
  } cases[] = {
      {{}, ""},
      {{{"attention.head_count", 0}}, "llama.attention.head_count"},
      {{{"attention.head_count_kv", 0}}, "llama.attention.head_count_kv"},
      {{{"attention.head_count", 4}, {"attention.head_count_kv", 3}}, "llama.attention.head_count_kv"},
      {{{"attention.head_count", 1ull << 40}}, "llama.attention.head_count"},
      {{{"block_count", 4294967294ull}}, "llama.block_count"},
      {{{"block_count", 0}}, "llama.block_count"},
      {{{"embedding_length", 0}}, "llama.embedding_length"},
      {{{"feed_forward_length", 1ull << 63}}, "llama.feed_forward_length"},
      {{{"attention.key_length", 1ull << 62}}, "llama.attention.key_length"},
      {{{"attention.key_length", 3}}, "llama.attention.key_length"},
      {{{"embedding_length", 2}, {"attention.head_count", 4}, {"attention.head_count_kv", 4}}, "llama.attention.key_length"},
  };
  for (const Case& c : cases) {
    std::map<std::string, uint64_t> kvs = {{"embedding_length", 8}, {"feed_forward_length", 16}, {"block_count", 1},
                                           {"attention.head_count", 2}, {"attention.head_count_kv", 1}};
    for (const auto& [k, v] : c.kvs) kvs[k] = v;
    Builder b;
    b.kv_string("general.architecture", "llama");
    for (const auto& [k, v] : kvs) b.kv("llama." + k, 10, le64(v));  // u64
    b.f32("token_embd.weight", {8, 2}, std::vector<float>(16, 0.5f));
    const std::string bytes = b.bytes();
    const GgufFile f("mem.gguf", bytes.data(), bytes.size());
    SCOPED_TRACE(c.key);
    if (c.key.empty()) {
      const ModelConfig config = gguf_model_config(f);
      EXPECT_EQ(config.n_heads, 2);
      EXPECT_EQ(config.n_kv_heads, 1);
      EXPECT_EQ(config.d_head, 4);
      continue;
    }
    const Error e = error_of([&] { gguf_model_config(f); });
    EXPECT_EQ(e.context().field, c.key) << e.what();
    expect_mentions(e, {"mem.gguf"});
  }
}

}  // namespace
}  // namespace quanta::format
