// Bad checkpoints given to the real binary: each must end with exactly one error
// line that names the file and the tensor or field, and a non-zero exit code —
// never a crash or a hang.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace quanta {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::edit_st;
using test::expect_one_error;
using test::read_file;
using test::read_st;
using test::Safetensors;
using test::write_file;
using test::write_st;

const char* kFixture = "tests/golden/fixtures/llama-gqa-f32";

// A writable copy of the fixture model.
std::string copy_fixture() {
  std::string dir = test::temp_dir() + "/model";
  fs::copy(test::source_path(kFixture), dir, fs::copy_options::recursive);
  fs::remove(dir + "/reference.safetensors");
  return dir;
}

TEST(BadInput, TruncatedFile) {
  std::string dir = copy_fixture();
  std::string bytes = read_file(dir + "/model.safetensors");
  write_file(dir + "/model.safetensors", bytes.substr(0, bytes.size() / 2));
  expect_one_error(dir, {"model.safetensors"});
}

TEST(BadInput, FileShorterThanHeaderLength) {
  std::string dir = copy_fixture();
  write_file(dir + "/model.safetensors", std::string("\x10\x00\x00", 3));
  expect_one_error(dir, {"model.safetensors"});
}

TEST(BadInput, HeaderLengthPastEndOfFile) {
  std::string dir = copy_fixture();
  Safetensors st = read_st(dir + "/model.safetensors");
  write_st(dir + "/model.safetensors", st, 1ull << 40);
  expect_one_error(dir, {"model.safetensors", "header"});
}

TEST(BadInput, OverlappingOffsets) {
  std::string dir = copy_fixture();
  edit_st(dir, [](Safetensors& st) {
    st.header["model.layers.0.self_attn.k_proj.weight"]["data_offsets"] =
        st.header["model.layers.0.self_attn.v_proj.weight"]["data_offsets"];
  });
  expect_one_error(dir, {"model.safetensors", "model.layers.0.self_attn."});
}

TEST(BadInput, OffsetsOutOfRange) {
  std::string dir = copy_fixture();
  edit_st(dir, [](Safetensors& st) {
    auto& e = st.header["model.norm.weight"]["data_offsets"];
    uint64_t size = e[1].get<uint64_t>() - e[0].get<uint64_t>();
    e = {st.data.size() + 64, st.data.size() + 64 + size};
  });
  expect_one_error(dir, {"model.safetensors", "model.norm.weight"});
}

TEST(BadInput, UnknownDtype) {
  std::string dir = copy_fixture();
  edit_st(dir, [](Safetensors& st) { st.header["model.norm.weight"]["dtype"] = "Q7"; });
  expect_one_error(dir, {"model.safetensors", "model.norm.weight", "Q7"});
}

TEST(BadInput, ShapeDisagreesWithConfig) {
  std::string dir = copy_fixture();
  json cfg = json::parse(read_file(dir + "/config.json"));
  cfg["intermediate_size"] = cfg["intermediate_size"].get<int>() / 2;
  write_file(dir + "/config.json", cfg.dump());
  expect_one_error(dir, {"model.safetensors", "model.layers.0.mlp.gate_proj.weight", "shape"});
}

TEST(BadInput, MissingTensor) {
  std::string dir = copy_fixture();
  edit_st(dir, [](Safetensors& st) { st.header.erase("model.layers.1.self_attn.k_proj.weight"); });
  expect_one_error(dir, {"model.layers.1.self_attn.k_proj.weight"});
}

TEST(BadInput, MissingShard) {
  std::string dir = copy_fixture();
  Safetensors st = read_st(dir + "/model.safetensors");
  json index = {{"metadata", {{"total_size", st.data.size()}}}, {"weight_map", json::object()}};
  for (auto& [name, _] : st.header.items())
    if (name != "__metadata__")
      index["weight_map"][name] = name.find("layers.1.") != std::string::npos ? "model-00002-of-00002.safetensors"
                                                                             : "model.safetensors";
  write_file(dir + "/model.safetensors.index.json", index.dump());
  expect_one_error(dir, {"model-00002-of-00002.safetensors"});
}

TEST(BadInput, UnknownArchitecture) {
  std::string dir = copy_fixture();
  json cfg = json::parse(read_file(dir + "/config.json"));
  cfg["architectures"] = {"FooForCausalLM"};
  write_file(dir + "/config.json", cfg.dump());
  expect_one_error(dir, {"config.json", "architectures", "FooForCausalLM"});
}

TEST(BadInput, InvalidConfigJson) {
  std::string dir = copy_fixture();
  std::string text = read_file(dir + "/config.json");
  write_file(dir + "/config.json", text.substr(0, text.size() / 2));
  expect_one_error(dir, {"config.json", "invalid JSON"});
}

// 100000 nested arrays (issue #16): SIGSEGV in Release before JSON depth was capped.
TEST(BadInput, DeeplyNestedConfigJson) {
  std::string dir = copy_fixture();
  std::string text = read_file(dir + "/config.json");
  text.insert(text.rfind('}'), ", \"x\": " + std::string(100000, '[') + std::string(100000, ']'));
  write_file(dir + "/config.json", text);
  expect_one_error(dir, {"config.json", "deeper than the limit of 256"});
}

TEST(BadInput, InvalidHeaderJson) {
  std::string dir = copy_fixture();
  Safetensors st = read_st(dir + "/model.safetensors");
  std::string h = st.header.dump();
  h.back() = ' ';  // drop the closing brace
  std::string bytes(8, '\0');
  uint64_t n = h.size();
  std::memcpy(bytes.data(), &n, 8);
  write_file(dir + "/model.safetensors", bytes + h + st.data);
  expect_one_error(dir, {"model.safetensors", "JSON"});
}

TEST(BadInput, MissingConfigField) {
  std::string dir = copy_fixture();
  json cfg = json::parse(read_file(dir + "/config.json"));
  cfg.erase("num_attention_heads");
  write_file(dir + "/config.json", cfg.dump());
  expect_one_error(dir, {"config.json", "num_attention_heads"});
}

// Sizes no model has (issue #16: head_dim 2^62 overflowed in the decoder), each refused naming its field.
TEST(BadInput, AbsurdConfigSizes) {
  struct Case {
    std::string key;
    json value;
    std::string needle;
  } cases[] = {
      {"head_dim", uint64_t{1} << 62, "at most 4096"},
      {"num_hidden_layers", 4294967294u, "at most 4096"},
      {"num_attention_heads", uint64_t{1} << 40, "at most 4096"},
      {"hidden_size", uint64_t{1} << 63, "9223372036854775808 is out of range"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.key);
    std::string dir = copy_fixture();
    json cfg = json::parse(read_file(dir + "/config.json"));
    cfg[c.key] = c.value;
    write_file(dir + "/config.json", cfg.dump());
    expect_one_error(dir, {"config.json", "field '" + c.key + "'", c.needle});
  }
}

TEST(BadInput, TokenOutsideVocabulary) {
  auto r = test::run_quanta({"generate", "--model-path", test::source_path(kFixture), "--prompt-ids", "5,999999",
                             "--quiet"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("999999"), std::string::npos) << r.err;
}

TEST(BadInput, ModelPathMissing) {
  auto r = test::run_quanta({"generate", "--model-path", "/nonexistent/model", "--prompt-ids", "1", "--quiet"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("/nonexistent/model"), std::string::npos) << r.err;
}

TEST(Cli, HelpIsCompleteAndSeedIsReproducible) {
  auto help = test::run_quanta({"generate", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  for (const char* flag : {"--model-path", "--prompt-ids", "--max-new-tokens", "--temperature", "--top-k", "--top-p",
                           "--min-p", "--repetition-penalty", "--frequency-penalty", "--presence-penalty", "--seed",
                           "--threads"})
    EXPECT_NE(help.out.find(flag), std::string::npos) << flag;
  std::vector<std::string> args = {"generate", "--model-path", test::source_path(kFixture), "--prompt-ids",
                                   "5,6,7", "--max-new-tokens", "16", "--temperature", "1.5", "--seed", "11",
                                   "--ignore-eos", "--quiet"};
  auto a = test::run_quanta(args), b = test::run_quanta(args);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  args[10] = "12";
  EXPECT_NE(test::run_quanta(args).out, a.out);
}

TEST(Cli, PromptIdsFromStdin) {
  auto r = test::run_quanta({"generate", "--model-path", test::source_path(kFixture), "--prompt-ids", "-",
                             "--max-new-tokens", "3", "--temperature", "0", "--quiet"},
                            "5 6\n7\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto r2 = test::run_quanta({"generate", "--model-path", test::source_path(kFixture), "--prompt-ids", "5,6,7",
                              "--max-new-tokens", "3", "--temperature", "0", "--quiet"});
  EXPECT_EQ(r.out, r2.out);
}

}  // namespace
}  // namespace quanta
