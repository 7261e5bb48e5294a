// Broken AWQ / GPTQ / AutoRound / compressed-tensors folders given to the real
// binary (copies of the real tools' fixtures, each with one thing wrong): one
// error line naming the layer's tensor or the config field, never a crash or a
// silent wrong answer.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
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
using test::Safetensors;
using test::write_file;

// A writable copy of tests/golden/fixtures/hf-quant/NAME.
std::string copy_fixture(const std::string& name) {
  const std::string dir = test::temp_dir() + "/" + name;
  fs::copy(test::source_path("tests/golden/fixtures/hf-quant/" + name), dir, fs::copy_options::recursive);
  fs::remove(dir + "/reference.safetensors");
  return dir;
}

// Edits quantization_config in config.json (and the AutoRound side file, which says the same).
void edit_qc(const std::string& dir, const std::function<void(json&)>& edit) {
  for (const char* f : {"config.json", "quantization_config.json"}) {
    const std::string path = dir + "/" + f;
    if (!fs::exists(path)) continue;
    json j = json::parse(read_file(path));
    edit(std::string(f) == "config.json" ? j["quantization_config"] : j);
    write_file(path, j.dump(2));
  }
}

// Reshapes a tensor in the header (same element count, so the file stays consistent).
void reshape(const std::string& dir, const std::string& tensor, const json& shape) {
  edit_st(dir, [&](Safetensors& st) { st.header[tensor]["shape"] = shape; });
}

void remove_tensor(const std::string& dir, const std::string& tensor) {
  edit_st(dir, [&](Safetensors& st) { st.header.erase(tensor); });
}

const std::string kQ = "model.layers.0.self_attn.q_proj";  // K = N = 64

// The fixtures' models have 128 output rows, their tokenizers 99 tokens, as real
// checkpoints pad theirs: generation samples only ids the tokenizer can decode
// (greedy here picked id 118 and stopped with "outside the vocabulary" before).
TEST(HfQuantCli, GeneratesWhenTheModelVocabularyIsPaddedPastTheTokenizer) {
  const std::string dir = test::source_path("tests/golden/fixtures/hf-quant/gptq-autoround-llama");
  for (const char* temperature : {"0", "1.5"}) {
    test::RunResult r = test::run_quanta({"generate", "--model-path", dir, "--prompt", "The quick", "--max-new-tokens",
                                          "24", "--temperature", temperature, "--seed", "3", "--ignore-eos"});
    EXPECT_EQ(r.exit_code, 0) << "temperature " << temperature << ": " << r.err;
  }
}

TEST(HfQuantBadInput, ConfigQuantizesALayerWhoseTensorsAreMissing) {
  const std::string dir = copy_fixture("gptq-autoround-llama");
  remove_tensor(dir, kQ + ".qweight");
  expect_one_error(dir, {kQ + ".qweight", "no"});
}

TEST(HfQuantBadInput, MissingScales) {
  const std::string dir = copy_fixture("ar-gptq-sym-llama");
  remove_tensor(dir, kQ + ".scales");
  expect_one_error(dir, {kQ + ".scales"});
}

TEST(HfQuantBadInput, WrongQweightShape) {
  const std::string dir = copy_fixture("gptq-autoround-llama");
  reshape(dir, kQ + ".qweight", {16, 32});  // [K*4/32, N] = [8, 64] expected
  expect_one_error(dir, {kQ + ".qweight", "[8, 64]"});
}

TEST(HfQuantBadInput, WrongQzerosShape) {
  const std::string dir = copy_fixture("awq-autoround-qwen3");
  reshape(dir, kQ + ".qzeros", {1, 16});  // [K/32, N/8] = [2, 8] expected
  expect_one_error(dir, {kQ + ".qzeros", "[2, 8]"});
}

TEST(HfQuantBadInput, WrongScalesShape) {
  const std::string dir = copy_fixture("ct-autoround-llama");
  reshape(dir, kQ + ".weight_scale", {2, 64});  // [N, K/32] = [64, 2] expected
  expect_one_error(dir, {kQ + ".weight_scale", "[64, 2]"});
}

TEST(HfQuantBadInput, WrongGIdxShape) {
  const std::string dir = copy_fixture("gptq-autoround-llama");
  reshape(dir, kQ + ".g_idx", {2, 32});
  expect_one_error(dir, {kQ + ".g_idx", "[64]"});
}

TEST(HfQuantBadInput, GIdxThatIsNotAPermutationOfGroups) {
  const std::string dir = copy_fixture("gptq-autoround-llama");
  edit_st(dir, [&](Safetensors& st) {
    const json& t = st.header[kQ + ".g_idx"];
    const size_t begin = t["data_offsets"][0];
    std::memset(st.data.data() + begin, 0, 64 * 4);  // every column in group 0
  });
  expect_one_error(dir, {kQ + ".g_idx", "not a permutation of groups"});
}

TEST(HfQuantBadInput, BitsTheFormatDoesNotAllow) {
  const std::string dir = copy_fixture("gptq-autoround-llama");
  edit_qc(dir, [](json& qc) { qc["bits"] = 5; });
  expect_one_error(dir, {"config.json", "bits", "5 bits"});
  const std::string awq = copy_fixture("awq-autoround-qwen3");
  edit_qc(awq, [](json& qc) { qc["bits"] = 8; });
  expect_one_error(awq, {"config.json", "bits", "AWQ"});
}

TEST(HfQuantBadInput, GroupSizeThatDoesNotDivideTheInput) {
  const std::string dir = copy_fixture("ar-gptq-sym-llama");
  edit_qc(dir, [](json& qc) { qc["group_size"] = 48; });
  expect_one_error(dir, {"group_size", "48", "does not divide"});
}

TEST(HfQuantBadInput, UnknownPackingFormat) {
  const std::string dir = copy_fixture("ar-awq-asym-qwen3");
  edit_qc(dir, [](json& qc) { qc["packing_format"] = "auto_round:qbits"; });
  expect_one_error(dir, {"packing_format", "auto_round:qbits"});
}

TEST(HfQuantBadInput, UnknownCompressedTensorsFormat) {
  const std::string dir = copy_fixture("ct-autoround-llama");
  edit_qc(dir, [](json& qc) {
    qc["format"] = "marlin-24";
    for (auto& [name, g] : qc["config_groups"].items()) g.erase("format");
  });
  expect_one_error(dir, {"format", "marlin-24"});
}

TEST(HfQuantBadInput, UnsupportedSchemes) {
  const std::string gemv = copy_fixture("awq-autoround-qwen3");
  edit_qc(gemv, [](json& qc) { qc["version"] = "gemv_fast"; });
  expect_one_error(gemv, {"version", "gemv_fast"});
  const std::string sparse = copy_fixture("ct-autoround-llama");
  edit_qc(sparse, [](json& qc) { qc["sparsity_config"] = {{"format", "sparse-24-bitmask"}}; });
  expect_one_error(sparse, {"sparsity_config"});
  const std::string kv = copy_fixture("ct-autoround-llama");
  edit_qc(kv, [](json& qc) { qc["kv_cache_scheme"] = {{"num_bits", 8}, {"type", "float"}}; });
  expect_one_error(kv, {"kv_cache_scheme"});
}

TEST(HfQuantBadInput, ConfigSaysFloatButTheLayerIsPacked) {
  // GPTQ's dynamic "-:" marks layer 1's v_proj unquantized; claim the same for q_proj of layer 0.
  const std::string dir = copy_fixture("gptq-autoround-llama");
  edit_qc(dir, [](json& qc) { qc["dynamic"]["-:.*layers\\.0\\.self_attn\\.q_proj"] = json::object(); });
  expect_one_error(dir, {kQ + ".qweight", "unquantized"});
}

}  // namespace
}  // namespace quanta
