// `quanta perplexity` on the real binary with tiny GGUF fixtures: the output
// llama-perplexity prints, the KL-divergence base file in llama-perplexity's
// layout, KL of a model against itself (~0, same top token everywhere) and
// against another quantization of it (> 0), and one error line for each bad input.
// (Agreement with transformers on the default model: tests/golden/perplexity_test.cc.)
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace quanta {
namespace {

using nlohmann::json;
using test::run_quanta;

const char* kText = "tests/golden/data/persuasion-chapter-1.txt";
constexpr int kCtx = 64;
constexpr int kChunks = 4;
constexpr int kScored = kCtx - 1 - kCtx / 2;  // 31
constexpr int kVocab = 320;                   // every tiny fixture's vocabulary

std::string fixture(const std::string& stem) { return test::source_path("tests/golden/fixtures/gguf/" + stem + ".gguf"); }

std::vector<std::string> ppl_args(const std::string& stem, std::vector<std::string> extra = {}) {
  std::vector<std::string> a = {"perplexity", "-m", fixture(stem), "-f", test::source_path(kText), "-c",
                                std::to_string(kCtx), "--chunks", std::to_string(kChunks), "-t", "2"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

json run_json(const std::vector<std::string>& args) {
  std::vector<std::string> a = args;
  a.push_back("--json");
  test::RunResult r = run_quanta(a);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.exit_code == 0 ? json::parse(r.out) : json();
}

template <typename T>
T read_at(const std::string& bytes, size_t off) {
  T v;
  std::memcpy(&v, bytes.data() + off, sizeof v);
  return v;
}

TEST(PerplexityCli, PrintsRunningAndFinalPerplexityAsLlamaPerplexity) {
  test::RunResult r = run_quanta(ppl_args("gemma3-q8_0"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex(R"(^\[1\][0-9.]+,\[2\][0-9.]+,\[3\][0-9.]+,\[4\]([0-9.]+),\n)")))
      << r.out;
  const double last = std::stod(m[1]);
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex(R"(Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)\n)"))) << r.out;
  EXPECT_EQ(std::stod(m[1]), last);
  // The JSON form reports the same run.
  json j = run_json(ppl_args("gemma3-q8_0"));
  EXPECT_NEAR(j.at("ppl").get<double>(), last, 1e-4);
  EXPECT_NEAR(j.at("ppl_err").get<double>(), std::stod(m[2]), 1e-5);
  EXPECT_EQ(j.at("n_scored").get<int>(), kChunks * kScored);
  // Chunks start with the file's BOS (tokenizer.ggml.bos_token_id, as inspect reports it).
  test::RunResult ins = run_quanta({"inspect", fixture("gemma3-q8_0"), "--json"});
  ASSERT_EQ(ins.exit_code, 0) << ins.err;
  EXPECT_EQ(j.at("bos"), json::parse(ins.out).at("tokenizer").at("bos").at("id"));
  // Random tiny models are close to uniform over 320 tokens: PPL well above 1, below ~2x the vocabulary.
  EXPECT_GT(last, 50.0);
  EXPECT_LT(last, 2.0 * kVocab);
}

// The base file, read here byte by byte: llama-perplexity's layout, the text's ids,
// rows that are log-probabilities (their probabilities sum to ~1), and the NLL of
// the true tokens they hold gives back the printed perplexity.
TEST(PerplexityCli, BaseFileHasLlamaPerplexityLayout) {
  const std::string base = test::temp_dir() + "/base.kld";
  json j = run_json(ppl_args("gemma3-q8_0", {"--kl-divergence-base", base}));
  const std::string bytes = test::read_file(base);
  const int nv = 2 * ((kVocab + 1) / 2) + 4;
  ASSERT_EQ(bytes.size(), 20u + 4u * kChunks * kCtx + 2u * kChunks * kScored * nv);
  EXPECT_EQ(bytes.substr(0, 8), "_logits_");
  EXPECT_EQ(read_at<uint32_t>(bytes, 8), static_cast<uint32_t>(kCtx));
  EXPECT_EQ(read_at<int32_t>(bytes, 12), kVocab);
  EXPECT_EQ(read_at<int32_t>(bytes, 16), kChunks);

  test::RunResult tok = run_quanta({"tokenize", "--model-path", fixture("gemma3-q8_0"), "-"},
                                   test::read_file(test::source_path(kText)));
  ASSERT_EQ(tok.exit_code, 0) << tok.err;
  std::istringstream in(tok.out);
  std::vector<int32_t> ids;
  for (int32_t id; in >> id;) ids.push_back(id);
  ASSERT_GE(ids.size(), static_cast<size_t>(kChunks * kCtx));
  for (int i = 0; i < kChunks * kCtx; ++i) ASSERT_EQ(read_at<int32_t>(bytes, 20 + 4 * i), ids[i]) << "token " << i;

  double nll = 0;
  size_t off = 20 + 4 * kChunks * kCtx;
  for (int c = 0; c < kChunks; ++c) {
    for (int j = 0; j < kScored; ++j, off += 2 * nv) {
      const float scale = read_at<float>(bytes, off), min_log_prob = read_at<float>(bytes, off + 4);
      ASSERT_GT(scale, 0.0f);
      double sum = 0;
      for (int v = 0; v < kVocab; ++v) sum += std::exp(scale * read_at<uint16_t>(bytes, off + 8 + 2 * v) + min_log_prob);
      EXPECT_NEAR(sum, 1.0, 1e-3) << "chunk " << c << " row " << j;
      const int32_t target = ids[c * kCtx + kCtx / 2 + j + 1];
      nll -= scale * read_at<uint16_t>(bytes, off + 8 + 2 * target) + min_log_prob;
    }
  }
  EXPECT_NEAR(std::exp(nll / (kChunks * kScored)) / j.at("ppl").get<double>(), 1.0, 2e-4);
}

TEST(PerplexityCli, KlDivergenceOfAModelAgainstItselfIsZero) {
  const std::string base = test::temp_dir() + "/base.kld";
  json p = run_json(ppl_args("gemma3-q8_0", {"--kl-divergence-base", base}));
  json k = run_json(ppl_args("gemma3-q8_0", {"--kl-divergence-base", base, "--kl-divergence"}));
  EXPECT_EQ(k.at("n_scored").get<int>(), kChunks * kScored);
  // Stored log-probabilities are rounded to 16 nats / 65535: each KL term is off by at most half a step.
  const double step = 16.0 / 65535;
  EXPECT_LT(std::fabs(k.at("kld").at("mean").get<double>()), step / 2);
  EXPECT_LT(k.at("kld_percentiles").at("Maximum").get<double>(), step / 2);
  EXPECT_GT(k.at("kld_percentiles").at("Minimum").get<double>(), -step / 2);
  EXPECT_EQ(k.at("same_top").at("mean").get<double>(), 1.0);
  EXPECT_LT(std::fabs(k.at("p_diff").at("mean").get<double>()), 1e-4);
  EXPECT_DOUBLE_EQ(k.at("ppl").at("mean").get<double>(), p.at("ppl").get<double>());
  EXPECT_NEAR(k.at("ppl_base").at("mean").get<double>() / p.at("ppl").get<double>(), 1.0, 2e-4);
  // The text given again is checked against the file's ids, and accepted.
  test::RunResult r = run_quanta(ppl_args("gemma3-q8_0", {"--kl-divergence-base", base, "--kl-divergence"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Mean    KLD:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Same top p: 100.000 ± 0.000 %"), std::string::npos) << r.out;
}

TEST(PerplexityCli, KlDivergenceOfAnotherQuantizationIsPositive) {
  const std::string base = test::temp_dir() + "/base.kld";
  json p8 = run_json(ppl_args("gemma3-q8_0", {"--kl-divergence-base", base}));
  json p4 = run_json(ppl_args("gemma3-q4_0"));
  // Without -f: the ids come from the base file.
  json k = run_json({"perplexity", "-m", fixture("gemma3-q4_0"), "--kl-divergence-base", base, "--kl-divergence"});
  EXPECT_GT(k.at("kld").at("mean").get<double>(), 0.01);
  EXPECT_GT(k.at("kld").at("mean").get<double>(), 5 * k.at("kld").at("err").get<double>());
  EXPECT_GT(k.at("kld_percentiles").at("Minimum").get<double>(), 0.0);
  EXPECT_LT(k.at("same_top").at("mean").get<double>(), 1.0);
  EXPECT_GT(k.at("p_diff_rms").at("mean").get<double>(), 0.0);
  // Each model's own perplexity, on both sides.
  EXPECT_NEAR(k.at("ppl").at("mean").get<double>() / p4.at("ppl").get<double>(), 1.0, 1e-6);
  EXPECT_NEAR(k.at("ppl_base").at("mean").get<double>() / p8.at("ppl").get<double>(), 1.0, 2e-4);
  EXPECT_NEAR(k.at("log_ppl_ratio").at("mean").get<double>(),
              std::log(p4.at("ppl").get<double>() / p8.at("ppl").get<double>()), 2e-4);
}

// One "quanta: error:" line naming the culprit, exit code 1.
void expect_error(const std::vector<std::string>& args, const std::vector<std::string>& needles) {
  test::RunResult r = run_quanta(args);
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_EQ(r.err.rfind("quanta: error: ", 0), 0u) << r.err;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "expected one line: " << r.err;
  for (const std::string& n : needles) EXPECT_NE(r.err.find(n), std::string::npos) << "no '" << n << "' in: " << r.err;
}

TEST(PerplexityCli, BadInputIsOneErrorLine) {
  const std::string dir = test::temp_dir();
  const std::string base = dir + "/base.kld";
  run_json(ppl_args("gemma3-q8_0", {"--kl-divergence-base", base}));
  const std::string bytes = test::read_file(base);
  auto kl = [&](const std::string& file, std::vector<std::string> extra = {}) {
    std::vector<std::string> a = {"perplexity", "-m", fixture("gemma3-q8_0"), "--kl-divergence-base", file,
                                  "--kl-divergence"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };

  // Base files that do not match or are damaged.
  test::write_file(dir + "/other.txt", test::read_file(test::source_path(kText)).substr(200));
  expect_error(kl(base, {"-f", dir + "/other.txt"}), {dir + "/other.txt", "base file", "not the text"});
  expect_error(kl(base, {"-c", "128"}), {"--ctx-size", "context of 64"});
  test::write_file(dir + "/truncated.kld", bytes.substr(0, bytes.size() - 100));
  expect_error(kl(dir + "/truncated.kld"), {dir + "/truncated.kld", "truncated"});
  test::write_file(dir + "/long.kld", bytes + "xx");
  expect_error(kl(dir + "/long.kld"), {dir + "/long.kld", "trailing bytes"});
  test::write_file(dir + "/notbase.kld", "GGUF and then some bytes");
  expect_error(kl(dir + "/notbase.kld"), {dir + "/notbase.kld", "not a KL-divergence base file"});
  expect_error(kl(dir + "/missing.kld"), {dir + "/missing.kld", "cannot open"});
  {
    std::string b = bytes;
    const uint32_t two = 2;
    std::memcpy(b.data() + 8, &two, 4);
    test::write_file(dir + "/ctx2.kld", b);
    expect_error(kl(dir + "/ctx2.kld"), {dir + "/ctx2.kld", "n_ctx", "out of range"});
  }
  // A consistent file for a vocabulary of 321: the header is fine, the model is not the one.
  {
    const int vocab = 321, nv = 2 * ((vocab + 1) / 2) + 4;
    std::string b = bytes.substr(0, 20 + 4 * kChunks * kCtx);
    const int32_t v = vocab;
    std::memcpy(b.data() + 12, &v, 4);
    b += std::string(2ull * kChunks * kScored * nv, '\0');
    test::write_file(dir + "/vocab.kld", b);
    expect_error(kl(dir + "/vocab.kld"), {dir + "/vocab.kld", "n_vocab", "321"});
  }
  // A token id past the vocabulary.
  {
    std::string b = bytes;
    const int32_t bad = 5000;
    std::memcpy(b.data() + 20 + 4 * 7, &bad, 4);
    test::write_file(dir + "/badtoken.kld", b);
    expect_error(kl(dir + "/badtoken.kld"), {dir + "/badtoken.kld", "token 7", "5000"});
  }
  expect_error({"perplexity", "-m", fixture("gemma3-q8_0"), "--kl-divergence"}, {"--kl-divergence-base"});

  // Plain runs.
  expect_error({"perplexity", "-m", fixture("gemma3-q8_0")}, {"--file"});
  expect_error({"perplexity", "-m", fixture("gemma3-q8_0"), "-f", dir + "/none.txt"}, {dir + "/none.txt"});
  test::write_file(dir + "/short.txt", "Too short to score.");
  expect_error({"perplexity", "-m", fixture("gemma3-q8_0"), "-f", dir + "/short.txt", "-c", "64"},
               {dir + "/short.txt", "at least 128"});
  expect_error({"perplexity", "-m", fixture("gemma3-q8_0"), "-f", test::source_path(kText), "-c", "1"}, {"--ctx-size"});
  // A context of 2 scores no token; on a short text it was a SIGSEGV (issue #16).
  test::write_file(dir + "/six.txt", "One two three four five six.");
  expect_error({"perplexity", "-m", fixture("gemma3-q8_0"), "-f", dir + "/six.txt", "-c", "2"}, {"--ctx-size", "at least 3"});
  expect_error({"perplexity", "-m", fixture("gemma3-q8_0"), "-f", test::source_path(kText), "-c", "2"}, {"--ctx-size", "at least 3"});
  expect_error({"perplexity", "-m", dir + "/nomodel.gguf", "-f", test::source_path(kText)}, {dir + "/nomodel.gguf"});
  expect_error(ppl_args("gemma3-q8_0", {"--kl-divergence-base", dir + "/no/such/dir/base.kld"}),
               {dir + "/no/such/dir/base.kld", "cannot create"});
}

}  // namespace
}  // namespace quanta
