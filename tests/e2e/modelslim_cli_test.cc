// The quanta binary on msModelSlim folders: inspect, generate, quantize, and
// --quantization checked against the checkpoint.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace quanta {
namespace {

std::string fixture(const std::string& name) { return test::source_path("tests/golden/fixtures/" + name); }

TEST(ModelSlimCli, InspectShowsTheSchemePerLayer) {
  test::RunResult r = test::run_quanta({"inspect", "--json", fixture("modelslim-int")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["method"], "modelslim");
  std::map<std::string, nlohmann::json> by;
  for (const auto& l : j["layers"]) by[l["tensor"]] = l;
  EXPECT_EQ(by["model.layers.0.self_attn.v_proj.weight"]["scheme"], "W8A8");
  EXPECT_EQ(by["model.layers.0.self_attn.o_proj.weight"]["scheme"], "W8A8_DYNAMIC");
  EXPECT_EQ(by["model.layers.0.mlp.up_proj.weight"]["scheme"], "W4A4_DYNAMIC");
  EXPECT_EQ(by["model.layers.0.mlp.up_proj.weight"]["act_bits"], 4);
  EXPECT_EQ(by["model.layers.0.mlp.down_proj.weight"]["scheme"], "FLOAT");
  EXPECT_EQ(by.count("model.layers.0.mlp.up_proj.weight_scale"), 0u);  // a side tensor, not a row
}

TEST(ModelSlimCli, GeneratesFromMsModelSlimFolders) {
  for (const char* name : {"modelslim-int", "modelslim-mx"}) {
    test::RunResult r = test::run_quanta({"generate", "--model-path", fixture(name), "--prompt", "Hello there",
                                          "--max-new-tokens", "6", "--temperature", "0"});
    EXPECT_EQ(r.exit_code, 0) << name << ": " << r.err;
  }
}

TEST(ModelSlimCli, QuantizationThatContradictsTheCheckpointIsRefused) {
  test::RunResult r = test::run_quanta({"generate", "--model-path", fixture("modelslim-int"), "--prompt", "x",
                                        "--quantization", "mxfp8"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--quantization"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("already 'modelslim'"), std::string::npos) << r.err;
  test::RunResult r2 = test::run_quanta({"generate", "--model-path", fixture("llama-gqa-f32"), "--prompt-ids", "5,6",
                                         "--quantization", "modelslim"});
  EXPECT_NE(r2.exit_code, 0);
  EXPECT_NE(r2.err.find("contradicts the checkpoint"), std::string::npos) << r2.err;
}

TEST(ModelSlimCli, QuantizeWritesAFolderQuantaRuns) {
  const std::string out = test::temp_dir() + "/mx4";
  test::RunResult q = test::run_quanta({"quantize", "--method", "mxfp4", fixture("llama-gqa-f32"), out});
  ASSERT_EQ(q.exit_code, 0) << q.err;
  test::RunResult i = test::run_quanta({"inspect", "--json", out});
  ASSERT_EQ(i.exit_code, 0) << i.err;
  auto j = nlohmann::json::parse(i.out);
  EXPECT_EQ(j["method"], "modelslim");
  int mx = 0;
  for (const auto& l : j["layers"]) mx += l["scheme"] == "W4A4_MXFP4";
  EXPECT_EQ(mx, 14);  // 2 layers x 7 Linears
  test::RunResult g = test::run_quanta({"generate", "--model-path", out, "--prompt-ids", "5,6,7", "--max-new-tokens", "4",
                                        "--temperature", "0"});
  EXPECT_EQ(g.exit_code, 0) << g.err;
}

}  // namespace
}  // namespace quanta
