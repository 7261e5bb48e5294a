// `quanta ... --tp-size N` as a user runs it: quanta restarts itself under mpirun, the
// output equals one process's, and what cannot be split is refused with one clear error
// naming it; a rank that dies ends the job in bounded time with a message naming it.
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "test_util.h"

namespace quanta {
namespace {

std::string fixture(const std::string& rel) { return test::source_path("tests/golden/fixtures/" + rel); }
std::string default_model() { return test::source_path("models/gemma-3-270m-q4_k_m.gguf"); }

test::RunResult generate(const std::string& model, int tp, int n_new = 12) {
  return test::run_quanta({"generate", "--model-path", model, "--prompt-ids", "2 5 9 3 7 11", "--max-new-tokens",
                           std::to_string(n_new), "--temperature", "0", "--quiet", "--tp-size", std::to_string(tp)});
}

// A file's bytes, or "" when it cannot be read (another user's /proc entry, a process gone).
std::string read_or_empty(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return f ? std::string(std::istreambuf_iterator<char>(f), {}) : std::string();
}

int count(const std::string& s, const std::string& what) {
  int n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

TEST(TensorParallelCli, GenerateTp2EqualsTp1DefaultModel) {
  ASSERT_TRUE(std::filesystem::exists(default_model()));
  const auto one = generate(default_model(), 1), two = generate(default_model(), 2);
  ASSERT_EQ(one.exit_code, 0) << one.err;
  ASSERT_EQ(two.exit_code, 0) << two.err;
  EXPECT_FALSE(one.out.empty());
  EXPECT_EQ(two.out, one.out);
}

TEST(TensorParallelCli, GenerateTp2EqualsTp1HfFloat) {
  const auto one = generate(fixture("llama-gqa-f32"), 1), two = generate(fixture("llama-gqa-f32"), 2);
  ASSERT_EQ(one.exit_code, 0) << one.err;
  ASSERT_EQ(two.exit_code, 0) << two.err;
  EXPECT_EQ(two.out, one.out);
}

// SGLang's quantized TP examples are msModelSlim folders at --tp-size 2: the mixed one, end to end.
TEST(TensorParallelCli, GenerateTp2EqualsTp1ModelSlimMixed) {
  const auto one = generate(fixture("modelslim-int"), 1), two = generate(fixture("modelslim-int"), 2);
  ASSERT_EQ(one.exit_code, 0) << one.err;
  ASSERT_EQ(two.exit_code, 0) << two.err;
  EXPECT_FALSE(one.out.empty());
  EXPECT_EQ(two.out, one.out);
}

TEST(TensorParallelCli, ExpertParallelFlagEqualsTp1) {
  const auto one = generate(fixture("qwen3moe-f32"), 1);
  const auto ep = test::run_quanta({"generate", "--model-path", fixture("qwen3moe-f32"), "--prompt-ids", "2 5 9 3 7 11",
                                    "--max-new-tokens", "12", "--temperature", "0", "--quiet", "--tp-size", "2",
                                    "--enable-ep-moe"});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  ASSERT_EQ(ep.exit_code, 0) << ep.err;
  EXPECT_EQ(ep.out, one.out);
}

TEST(TensorParallelCli, RefusesHeadsThatDoNotDivide) {
  const auto r = generate(fixture("llama-gqa-f32"), 3);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("num_attention_heads (4) is not a multiple of 3"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--tp-size"), std::string::npos) << r.err;
  EXPECT_EQ(count(r.err, "error:"), 1) << r.err;  // refused before any rank starts
}

TEST(TensorParallelCli, GenerateTp2EqualsTp1MixtureOfExperts) {
  const auto one = generate(fixture("qwen3moe-f32"), 1), two = generate(fixture("qwen3moe-f32"), 2);
  ASSERT_EQ(one.exit_code, 0) << one.err;
  ASSERT_EQ(two.exit_code, 0) << two.err;
  EXPECT_FALSE(one.out.empty());
  EXPECT_EQ(two.out, one.out);
}

TEST(TensorParallelCli, RefusesBlocksThatDoNotDivide) {
  // q_dim 256 over 2 ranks: o_proj's input halves are 128, not whole Q4_K blocks of 256.
  const auto r = generate(fixture("gguf/llama-k-q4_k_m.gguf"), 2);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("parts of whole Q4_K blocks of 256"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("o_proj"), std::string::npos) << r.err;
}

TEST(TensorParallelCli, RefusesActOrderAcrossAnInputSplit) {
  const auto r = generate(fixture("hf-quant/gm-actorder-llama"), 2);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("act-order (g_idx) weights cannot be split"), std::string::npos) << r.err;
}

// Runs a shell command line, returns its exit status and combined output.
std::pair<int, std::string> shell(const std::string& cmd) {
  const std::string out = test::temp_dir() + "/out.txt";
  const int rc = std::system((cmd + " > " + out + " 2>&1").c_str());
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, test::read_file(out)};
}

const char* kMpiEnv = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ";

TEST(TensorParallelCli, RefusesTpSizeOtherThanTheMpiWorld) {
  const auto [rc, out] = shell(std::string(kMpiEnv) + "mpirun -np 2 --oversubscribe " + QUANTA_BINARY +
                               " generate --quiet --max-new-tokens 1 --prompt-ids 2,5 --tp-size 3 --model-path " +
                               fixture("llama-gqa-f32"));
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("--tp-size 3 does not match the MPI world of 2 ranks"), std::string::npos) << out;
}

TEST(TensorParallelCli, RefusesRanksWithDifferentModels) {
  // Same shapes, other weight types: the plan checksum differs on rank 1.
  const std::string args = " generate --quiet --max-new-tokens 2 --prompt-ids 2,5 --tp-size 2 --model-path ";
  const auto [rc, out] = shell(std::string(kMpiEnv) + "mpirun --oversubscribe -np 1 " + QUANTA_BINARY + args +
                               fixture("gguf/llama-gqa-q8_0.gguf") + " : -np 1 " + QUANTA_BINARY + args +
                               fixture("gguf/llama-gqa-q4_0.gguf"));
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("rank 1 loaded a model whose plan (shapes and formats) differs from rank 0's"), std::string::npos)
      << out;
}

TEST(TensorParallelCli, KilledRankEndsTheJob) {
  // A long generation; rank 1 is found by its MPI rank and a marker in its environment.
  const std::string dir = test::temp_dir(), mark = "QUANTA_TP_TEST_MARK=" + std::to_string(getpid());
  const std::string cmd = "(" + mark + " " + QUANTA_BINARY + " generate --quiet --ignore-eos --max-new-tokens 100000 " +
                          "--prompt-ids 2,5,9 --threads 1 --tp-size 2 --model-path " + fixture("llama-gqa-f32") + " > " + dir +
                          "/out.txt 2>&1; echo $? > " + dir + "/rc) &";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  auto find_rank1 = [&]() -> int {
    for (const auto& e : std::filesystem::directory_iterator("/proc")) {
      const std::string env = read_or_empty(e.path().string() + "/environ");
      if (env.find(mark) != std::string::npos && env.find(std::string("OMPI_COMM_WORLD_RANK=1") + '\0') != std::string::npos)
        return std::atoi(e.path().filename().c_str());
    }
    return 0;
  };
  int pid = 0;
  for (int i = 0; i < 300 && !pid; ++i, std::this_thread::sleep_for(std::chrono::milliseconds(100))) pid = find_rank1();
  ASSERT_GT(pid, 0) << "rank 1 never started: " << read_or_empty(dir + "/out.txt");
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // mid-generation
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  const auto t0 = std::chrono::steady_clock::now();
  while (!std::filesystem::exists(dir + "/rc") && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60))
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(std::filesystem::exists(dir + "/rc")) << "the job did not end within 60 s of rank 1's death";
  EXPECT_NE(std::atoi(test::read_file(dir + "/rc").c_str()), 0);
  const std::string out = test::read_file(dir + "/out.txt");
  EXPECT_NE(out.find("rank 1"), std::string::npos) << out;
  EXPECT_LT(secs, 30) << out;
  std::fprintf(stderr, "job ended %.2f s after rank 1 was killed\n", secs);
}

}  // namespace
}  // namespace quanta
