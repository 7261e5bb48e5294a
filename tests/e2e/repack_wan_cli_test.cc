// `quanta repack-wan` as a user runs it: the summary, the list of tensors no rule renamed,
// and one error line for an output that exists.
#include <gtest/gtest.h>

#include <filesystem>

#include "test_util.h"

namespace quanta {
namespace {

std::string fixture(const std::string& rel) { return test::source_path("tests/golden/fixtures/wan-repack/" + rel); }

TEST(RepackWanCli, RepacksAPipelineAndListsUntouchedTensors) {
  const std::string out = test::temp_dir() + "/out";
  test::RunResult r = test::run_quanta({"repack-wan", fixture("msmodelslim"), out, "--diffusers-base", fixture("diffusers-base")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("111 tensors (108 renamed) in 2 file(s)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("no rename rule matched"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("    blocks.0.extra_gate.weight\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("2 file(s) copied from the Diffusers base"), std::string::npos) << r.out;
  EXPECT_TRUE(std::filesystem::exists(out + "/model_index.json"));
  EXPECT_TRUE(std::filesystem::exists(out + "/transformer_2/quant_model_description.json"));

  test::RunResult again = test::run_quanta({"repack-wan", fixture("msmodelslim"), out});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_EQ(again.err.rfind("quanta: error: ", 0), 0u) << again.err;
  EXPECT_EQ(again.err.find('\n'), again.err.size() - 1) << again.err;
  EXPECT_NE(again.err.find("already exists"), std::string::npos) << again.err;
}

TEST(RepackWanCli, HelpNamesTheLayouts) {
  test::RunResult r = test::run_quanta({"repack-wan", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("high_noise_model"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--diffusers-base"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace quanta
