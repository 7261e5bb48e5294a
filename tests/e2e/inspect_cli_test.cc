// `quanta inspect` on the real binary: one row per checkpoint tensor with the
// right scheme, bits and bytes, for a GGUF fixture and a Hugging Face folder,
// JSON that parses, and one error line for a bad path.
//
// Oracles: for GGUF, the per-type tensor counts that gguf-py's reader recorded
// when the fixture was made (the `quanta_fixture` metadata of its reference
// file) and ggml's block sizes (ggml-common.h: Q2_K 84 bytes per 256, Q3_K 110,
// Q6_K 210, Q4_K 144, Q8_0 34 per 32, Q5_0 22 per 32); for folders, the
// safetensors JSON header read here directly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>
#include <vector>
#include <string>

#include <nlohmann/json.hpp>

#include "quanta/format/ggml_types.h"
#include "quanta/kernels/quant_dot.h"
#include "test_util.h"

namespace quanta {
namespace {

using nlohmann::json;
using test::run_quanta;

// The `quanta_fixture` metadata of a fixture's reference safetensors file.
json fixture_metadata(const std::string& reference) {
  std::string bytes = test::read_file(test::source_path(reference));
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  json header = json::parse(bytes.substr(8, n));
  return json::parse(header.at("__metadata__").at("quanta_fixture").get<std::string>());
}

json inspect_json(const std::string& model) {
  test::RunResult r = run_quanta({"inspect", test::source_path(model), "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return json::parse(r.out);
}

// Bits per weight of the ggml types the fixtures hold: 8 * block bytes / block elements.
const std::map<std::string, double> kBitsPerWeight = {
    {"F32", 32.0}, {"Q8_0", 8.5}, {"Q5_0", 5.5}, {"Q4_0", 4.5}, {"Q2_K", 2.625},
    {"Q3_K", 3.4375}, {"Q4_K", 4.5}, {"Q5_K", 5.5}, {"Q6_K", 6.5625},
};
const std::map<std::string, int64_t> kGroup = {
    {"F32", 0}, {"Q8_0", 32}, {"Q5_0", 32}, {"Q4_0", 32}, {"Q2_K", 256},
    {"Q3_K", 256}, {"Q4_K", 256}, {"Q5_K", 256}, {"Q6_K", 256},
};

void check_gguf_fixture(const std::string& stem) {
  SCOPED_TRACE(stem);
  const std::string dir = "tests/golden/fixtures/gguf/";
  json meta = fixture_metadata(dir + stem + ".reference.safetensors");
  json out = inspect_json(dir + stem + ".gguf");
  EXPECT_EQ(out.at("method"), "gguf");
  EXPECT_EQ(out.at("format"), "gguf");
  EXPECT_EQ(out.at("hyperparameters").at("architecture"), meta.at("architecture"));
  std::map<std::string, int> counts;
  for (const json& layer : out.at("layers")) {
    const std::string scheme = layer.at("scheme");
    const std::string name = layer.at("tensor");
    ++counts[scheme];
    ASSERT_TRUE(kBitsPerWeight.count(scheme)) << name << ": unexpected scheme " << scheme;
    int64_t n = 1;
    for (const json& d : layer.at("shape")) n *= d.get<int64_t>();
    EXPECT_DOUBLE_EQ(layer.at("bytes").get<double>() * 8.0 / static_cast<double>(n), kBitsPerWeight.at(scheme)) << name;
    EXPECT_DOUBLE_EQ(layer.at("bits_per_weight").get<double>(), kBitsPerWeight.at(scheme)) << name;
    EXPECT_EQ(layer.at("group_size").get<int64_t>(), kGroup.at(scheme)) << name;
    const int wbits = scheme == "F32" ? 32 : scheme[1] - '0';
    EXPECT_EQ(layer.at("weight_bits").get<int>(), wbits) << name;
    // Quantized types meet 16-bit activations where this CPU has a dot kernel, f32 otherwise.
    uint32_t id = 0;
    while (id < format::kGgmlTypeCount && format::ggml_type_name(id) != scheme) ++id;
    ASSERT_LT(id, format::kGgmlTypeCount) << scheme;
    const int abits = scheme == "F32" || !kernels::quant_dot(id).fn ? 32 : 16;
    EXPECT_EQ(layer.at("act_bits").get<int>(), abits) << name;
    // GGUF names, not Hugging Face ones.
    EXPECT_TRUE(name.rfind("blk.", 0) == 0 || name.rfind("token_embd", 0) == 0 || name.rfind("output", 0) == 0)
        << name;
  }
  std::map<std::string, int> expected;
  for (auto it = meta.at("tensor_types").begin(); it != meta.at("tensor_types").end(); ++it)
    expected[it.key()] = it.value().get<int>();
  EXPECT_EQ(counts, expected);
}

TEST(InspectCli, GgufFixturesListEveryTensorWithItsType) {
  check_gguf_fixture("qwen3-k-q2_k");     // Q2_K, Q3_K, Q6_K, F32
  check_gguf_fixture("gemma3-q4_k_m");    // Q4_K, Q5_0, Q8_0, F32
  check_gguf_fixture("qwen2-k-q5_k_m");   // Q5_K, Q6_K, F32
}

TEST(InspectCli, GgufTextTableAndTokenizer) {
  test::RunResult r = run_quanta({"inspect", test::source_path("tests/golden/fixtures/gguf/llama-k-q4_k_m.gguf")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("method:  gguf"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("LlamaForCausalLM"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("SentencePiece BPE"), std::string::npos) << r.out;
  // blk.0.attn_q.weight: Q4_K [256, 256] = 256 blocks of 144 bytes.
  size_t at = r.out.find("\nblk.0.attn_q.weight ");
  ASSERT_NE(at, std::string::npos) << r.out;
  std::istringstream line(r.out.substr(at + 1, r.out.find('\n', at + 1) - at - 1));
  std::vector<std::string> cols;
  for (std::string w; line >> w;) cols.push_back(w);
  const std::string abits = kernels::quant_dot(static_cast<uint32_t>(format::GgmlType::kQ4_K)).fn ? "16" : "32";
  EXPECT_EQ(cols, (std::vector<std::string>{"blk.0.attn_q.weight", "Q4_K", "4", abits, "256", "[256,", "256]", "36864",
                                            "4.500"}));
}

TEST(InspectCli, HfFolderListsEveryTensorAsFloat) {
  for (const std::string fixture : {"gemma3-bf16", "llama-f16", "llama-gqa-f32"}) {
    SCOPED_TRACE(fixture);
    const std::string dir = "tests/golden/fixtures/" + fixture;
    std::string bytes = test::read_file(test::source_path(dir + "/model.safetensors"));
    uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    json header = json::parse(bytes.substr(8, n));
    header.erase("__metadata__");

    json out = inspect_json(dir);
    EXPECT_EQ(out.at("method"), "unquantized");
    EXPECT_EQ(out.at("format"), "safetensors");
    ASSERT_EQ(out.at("layers").size(), header.size());
    for (const json& layer : out.at("layers")) {
      const std::string name = layer.at("tensor");
      ASSERT_TRUE(header.contains(name)) << name;
      const json& h = header.at(name);
      const int bits = h.at("dtype") == "BF16" || h.at("dtype") == "F16" ? 16 : h.at("dtype") == "F32" ? 32 : -1;
      EXPECT_EQ(layer.at("scheme"), "FLOAT") << name;
      EXPECT_EQ(layer.at("weight_bits").get<int>(), bits) << name;
      EXPECT_EQ(layer.at("act_bits").get<int>(), bits) << name;
      EXPECT_EQ(layer.at("group_size").get<int>(), 0) << name;
      EXPECT_EQ(layer.at("shape"), h.at("shape")) << name;
      EXPECT_EQ(layer.at("bytes").get<uint64_t>(),
                h.at("data_offsets")[1].get<uint64_t>() - h.at("data_offsets")[0].get<uint64_t>())
          << name;
    }
    EXPECT_TRUE(out.at("tokenizer").is_null());  // the tiny fixtures carry none
  }
}

TEST(InspectCli, BadPathIsOneErrorLine) {
  const std::string dir = test::temp_dir();
  test::write_file(dir + "/not-a-model.bin", "hello");
  std::filesystem::create_directories(dir + "/empty");
  // 100000 nested arrays in config.json: SIGSEGV in Release before JSON depth was capped (issue #16).
  std::filesystem::create_directories(dir + "/deep");
  test::write_file(dir + "/deep/config.json", "{\"x\": " + std::string(100000, '[') + std::string(100000, ']') + "}");
  struct Case {
    std::string path, needle;
  } cases[] = {
      {dir + "/missing", "does not exist"},
      {dir + "/not-a-model.bin", "expected a Hugging Face model folder"},
      {dir + "/empty", "config.json"},
      {dir + "/deep", "deeper than the limit of 256"},
  };
  for (const Case& c : cases) {
    for (bool as_json : {false, true}) {
      std::vector<std::string> args = {"inspect", c.path};
      if (as_json) args.push_back("--json");
      test::RunResult r = run_quanta(args);
      EXPECT_EQ(r.exit_code, 1) << c.path;
      EXPECT_TRUE(r.out.empty()) << r.out;
      EXPECT_EQ(r.err.rfind("quanta: error: ", 0), 0u) << r.err;
      EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "expected one line: " << r.err;
      EXPECT_NE(r.err.find(c.needle), std::string::npos) << r.err;
      EXPECT_NE(r.err.find(c.path), std::string::npos) << r.err;
    }
  }
}

}  // namespace
// A mixture-of-experts GGUF (qwen3moe, written by gguf-py: tools/make_moe_gguf_fixture.py):
// inspect lists its 3-D expert tensors as stored and the MoE hyper-parameters quanta runs it with;
// generate runs it.
TEST(InspectCli, MoeGgufIsListedAndGenerates) {
  const std::string path = "tests/e2e/fixtures/gguf/qwen3moe-tiny.gguf";
  const json out = inspect_json(path);
  EXPECT_EQ(out.at("method"), "gguf");
  EXPECT_EQ(out.at("hyperparameters").at("architecture"), "Qwen3MoeForCausalLM");
  EXPECT_EQ(out.at("hyperparameters").at("moe").at("experts"), 4);
  EXPECT_EQ(out.at("hyperparameters").at("moe").at("experts_per_token"), 2);
  std::map<std::string, json> layers;
  for (const json& layer : out.at("layers")) layers[layer.at("tensor").get<std::string>()] = layer;
  EXPECT_EQ(layers.size(), 14u);
  for (const char* name : {"blk.0.ffn_gate_exps.weight", "blk.0.ffn_up_exps.weight"}) {
    ASSERT_TRUE(layers.count(name)) << name;
    EXPECT_EQ(layers[name].at("scheme"), "Q8_0");
    EXPECT_EQ(layers[name].at("shape"), json::parse("[4, 32, 64]"));
    EXPECT_EQ(layers[name].at("bytes").get<int64_t>(), 4 * 32 * 64 / 32 * 34);
  }
  EXPECT_EQ(layers["blk.0.ffn_down_exps.weight"].at("shape"), json::parse("[4, 64, 32]"));
  ASSERT_EQ(out.at("experts").size(), 1u);
  EXPECT_EQ(out.at("experts")[0].at("w13"), "Q8_0");

  test::RunResult r = run_quanta({"generate", "--model-path", test::source_path(path), "--prompt-ids", "1,5,7",
                                  "--max-new-tokens", "4", "--ids", "--temperature", "0"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), ' '), 3) << r.out;
}

}  // namespace quanta

namespace quanta {
namespace {

// A folder's per-expert tensors show as one row per projection (shape [experts, out, in], bytes
// summed from the safetensors header), and each MoE layer's w13 and w2 schemes are listed, marked
// where they differ (the GGUF whose layer 1 has Q6_K down experts and Q4_K gate/up).
TEST(InspectCli, ExpertsGroupedPerProjectionAndW13W2Compared) {
  const std::string dir = test::source_path("tests/golden/fixtures/qwen3moe-f32");
  auto r = run_quanta({"inspect", dir, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  const test::Safetensors st = test::read_st(dir + "/model.safetensors");
  int64_t expert_bytes = 0, rows = 0;
  for (int e = 0; e < 8; ++e) {
    const json& t = st.header.at("model.layers.1.mlp.experts." + std::to_string(e) + ".gate_proj.weight");
    expert_bytes += t["data_offsets"][1].get<int64_t>() - t["data_offsets"][0].get<int64_t>();
  }
  for (const json& l : j["layers"]) {
    EXPECT_EQ(l["tensor"].get<std::string>().find(".experts.0."), std::string::npos) << l["tensor"];
    if (l["tensor"] != "model.layers.1.mlp.experts.*.gate_proj.weight") continue;
    ++rows;
    EXPECT_EQ(l["shape"], json({8, 32, 64}));
    EXPECT_EQ(l["bytes"].get<int64_t>(), expert_bytes);
    EXPECT_EQ(l["scheme"], "FLOAT");
  }
  EXPECT_EQ(rows, 1);
  ASSERT_EQ(j["experts"].size(), 2u);
  EXPECT_EQ(j["experts"][1]["prefix"], "model.layers.1.mlp.experts");
  EXPECT_EQ(j["experts"][1]["differ"], false);
  EXPECT_EQ(j["hyperparameters"]["moe"]["experts"], 8);
  EXPECT_EQ(j["hyperparameters"]["moe"]["experts_per_token"], 2);

  auto g = run_quanta({"inspect", test::source_path("tests/golden/fixtures/gguf/qwen3moe-k-q4_k_m.gguf")});
  ASSERT_EQ(g.exit_code, 0) << g.err;
  EXPECT_NE(g.out.find("blk.0                       w13 Q4_K       w2 Q4_K\n"), std::string::npos) << g.out;
  EXPECT_NE(g.out.find("w13 Q4_K       w2 Q6_K  <- differ"), std::string::npos) << g.out;
}

}  // namespace
}  // namespace quanta
