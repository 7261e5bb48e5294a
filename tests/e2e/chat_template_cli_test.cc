// `quanta chat-template` on the real binary: the prompt on stdout exactly (no newline added),
// templates from a model folder or a file, variables, and one error line for bad input.
#include <gtest/gtest.h>

#include <string>

#include "test_util.h"

namespace quanta {
namespace {

using test::run_quanta;
using test::write_file;

// Skips when the binary predates the subcommand.
bool have_subcommand() {
  test::RunResult r = run_quanta({"chat-template", "--help"});
  return r.exit_code == 0 && r.out.find("--messages") != std::string::npos;
}

TEST(ChatTemplateCli, RendersFromAModelFolderAndFromAFile) {
  if (!have_subcommand()) GTEST_SKIP() << "this quanta binary has no chat-template subcommand";
  std::string dir = test::temp_dir();
  write_file(dir + "/tokenizer_config.json", R"({"bos_token": {"content": "<s>"}, "eos_token": "</s>",
    "chat_template": "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"})");
  write_file(dir + "/messages.json", R"([{"role": "user", "content": "Hi ünï"}])");
  test::RunResult r = run_quanta({"chat-template", "--model-path", dir, "--messages", dir + "/messages.json",
                                  "--add-generation-prompt"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "<s>[user] Hi ünï</s>\n[assistant]");

  write_file(dir + "/t.jinja", "{{ messages|length }} {{ tools[0].name }} {{ flag }} {{ strftime_now('%Y-%m-%d') }}");
  write_file(dir + "/request.json", R"({"messages": [{"role": "user", "content": "x"}], "tools": [{"name": "f"}]})");
  r = run_quanta({"chat-template", "--template", dir + "/t.jinja", "--messages", dir + "/request.json", "--var",
                  "flag=[1, \"a\"]", "--now", "2025-03-14"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "1 f [1, 'a'] 2025-03-14");
}

TEST(ChatTemplateCli, BadInputIsOneErrorLine) {
  if (!have_subcommand()) GTEST_SKIP() << "this quanta binary has no chat-template subcommand";
  std::string dir = test::temp_dir();
  write_file(dir + "/messages.json", R"([{"role": "system", "content": "s"}])");
  write_file(dir + "/raise.jinja", "line\n{{ raise_exception('System role not supported') }}");
  write_file(dir + "/loop.jinja", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}");
  // 60000 nested arrays (120 KB, under the 128 KB limit of one argument): a --var this deep was a
  // SIGSEGV in Release (issue #16).
  const std::string deep = std::string(60000, '[') + std::string(60000, ']');
  write_file(dir + "/deep.json", "[{\"role\": \"user\", \"content\": " + deep + "}]");
  struct Case {
    std::vector<std::string> args;
    std::string needle;
  } cases[] = {
      {{"--template", dir + "/raise.jinja"}, "line 2, column 4: the template raised an error: System role not supported"},
      {{"--template", dir + "/loop.jinja"}, "LimitError"},
      {{"--template", dir + "/missing.jinja"}, "cannot read the file"},
      {{"--model-path", dir}, "no chat template"},
      {{"--template", dir + "/raise.jinja", "--var", "x=not json"}, "is not JSON"},
      {{"--template", dir + "/raise.jinja", "--var", "x=" + deep}, "field '--var x': JSON nests arrays and objects deeper than the limit of 256"},
      {{"--template", dir + "/raise.jinja", "--tools", dir + "/deep.json"}, "deep.json', field '--tools': JSON nests"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = {"chat-template", "--messages", dir + "/messages.json"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    test::RunResult r = run_quanta(args);
    EXPECT_EQ(r.exit_code, 1) << c.needle;
    EXPECT_EQ(r.out, "");
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

}  // namespace
}  // namespace quanta
