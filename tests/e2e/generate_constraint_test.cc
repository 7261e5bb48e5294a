// `quanta generate` with --regex, --json-schema and --grammar on the default model: the output
// matches (std::regex, nlohmann), at temperature 1, for several seeds; a bad constraint is one
// error naming the option, before the model loads.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "test_util.h"

namespace quanta {
namespace {

std::vector<std::string> args(std::vector<std::string> extra, const char* max_new_tokens = "60") {
  std::vector<std::string> a = {"generate", "--model-path", test::source_path("models/gemma-3-270m-q4_k_m.gguf"),
                                "--prompt", "Answer:", "--temperature", "1", "--max-new-tokens", max_new_tokens, "--quiet"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

std::string output(const test::RunResult& r) {
  std::string s = r.out;
  if (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

TEST(GenerateConstraint, RegexAndSchemaAndGrammarHold) {
  const std::string pattern = "(yes|no), [0-9]{1,3} [a-z]{2,8}";
  for (const char* seed : {"1", "2", "3"}) {
    auto r = test::run_quanta(args({"--seed", seed, "--regex", pattern}));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(std::regex_match(output(r), std::regex(pattern))) << output(r);
  }
  auto j = test::run_quanta(args({"--seed", "4", "--json-schema",
                                  R"({"type":"object","properties":{"ok":{"type":"boolean"},"n":{"enum":[1,2,3]}},"required":["ok","n"]})"},
                                 "120"));
  ASSERT_EQ(j.exit_code, 0) << j.err;
  const auto parsed = nlohmann::json::parse(output(j));
  EXPECT_TRUE(parsed["ok"].is_boolean());
  EXPECT_TRUE(parsed["n"] == 1 || parsed["n"] == 2 || parsed["n"] == 3) << parsed;
  auto g = test::run_quanta(args({"--seed", "5", "--grammar", "root ::= \"A\" [0-9] (\"-\" [0-9])*\n"}));
  ASSERT_EQ(g.exit_code, 0) << g.err;
  EXPECT_TRUE(std::regex_match(output(g), std::regex("A[0-9](-[0-9])*"))) << output(g);
}

TEST(GenerateConstraint, BadConstraintsNameTheOption) {
  auto r = test::run_quanta(args({"--regex", "(a"}));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--regex"), std::string::npos) << r.err;
  r = test::run_quanta(args({"--json-schema", R"({"type":"object","not":{}})"}));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--json-schema"), std::string::npos) << r.err;
  r = test::run_quanta(args({"--grammar", "root ::= x"}));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("'x' is used but not defined"), std::string::npos) << r.err;
  r = test::run_quanta(args({"--regex", "a", "--grammar", "root ::= \"a\""}));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("give one of"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace quanta
