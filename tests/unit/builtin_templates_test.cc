// Built-in chat templates against the real templates of their families, rendered by jinja2
// (the golden fixtures of chat_template_test.cc, tools/make_chat_template_fixtures.py): the
// built-in must give the same prompt on the conversations that template renders plainly.
#include "quanta/tokenizer/builtin_templates.h"

#include <gtest/gtest.h>

#include <map>
#include <stdexcept>

#include "quanta/core/error.h"

#include "quanta/tokenizer/chat_template.h"
#include "test_util.h"

namespace quanta::tokenizer {
namespace {

using nlohmann::ordered_json;

std::string fixtures() { return test::source_path("tests/unit/data/chat_templates"); }

std::map<std::string, ordered_json> contexts() {
  std::map<std::string, ordered_json> out;
  for (const auto& c : ordered_json::parse(test::read_file(fixtures() + "/contexts.json"))) out[c["name"]] = c;
  return out;
}

std::string render_builtin(const std::string& name, const ordered_json& c) {
  const std::string* source = builtin_chat_template(name);
  if (!source) throw std::runtime_error("no built-in " + name);
  ChatInputs in;
  in.messages = c["messages"];
  in.add_generation_prompt = c["add_generation_prompt"];
  in.variables = c["kwargs"];
  return ChatTemplate(*source, name).render(make_chat_context(in));
}

std::string real_output(const std::string& fixture, const std::string& case_name) {
  const ordered_json f = ordered_json::parse(test::read_file(fixtures() + "/" + fixture + ".json"));
  return f["cases"][case_name]["output"];
}

struct Pair {
  const char* builtin;
  const char* fixture;
  std::vector<const char*> cases;
  bool after_first_turn;  // compare past the first <|eot_id|> (Llama 3.1 writes a date into the system turn)
};

TEST(BuiltinChatTemplates, RenderAsTheirFamiliesRealTemplates) {
  const auto ctx = contexts();
  const Pair pairs[] = {
      {"gemma", "google-gemma-2-2b-it", {"user_only", "multi_turn_closed", "user_only+flip_gen", "multi_turn_closed+flip_gen"}, false},
      {"chatml", "Qwen-Qwen2.5-7B-Instruct",
       {"system_user", "multi_turn", "unicode", "special_chars", "empty_content", "multi_turn+flip_gen", "unicode+flip_gen"},
       false},
      {"llama3", "meta-llama-Llama-3.1-8B-Instruct", {"system_user", "multi_turn", "unicode", "multi_turn+flip_gen"}, true},
  };
  for (const auto& p : pairs)
    for (const char* c : p.cases) {
      std::string want = real_output(p.fixture, c), got = render_builtin(p.builtin, ctx.at(c));
      if (p.after_first_turn) {
        want = want.substr(want.find("<|eot_id|>"));
        got = got.substr(got.find("<|eot_id|>"));
      }
      EXPECT_EQ(got, want) << p.builtin << " against " << p.fixture << ", case " << c;
    }
}

TEST(BuiltinChatTemplates, SystemTextOpensTheFirstUserTurnWhereTheFormatHasNoSystemRole) {
  const auto ctx = contexts();
  // Gemma 3's own template does this (gemma-2's refuses a system message); Mistral's [INST] form too.
  EXPECT_EQ(render_builtin("gemma", ctx.at("system_user")),
            "<s><start_of_turn>user\nYou are a helpful assistant.\n\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n");
  EXPECT_EQ(render_builtin("mistral", ctx.at("multi_turn")),
            "<s>[INST] You are terse.\n\nHi [/INST] Hello. How can I help?</s>[INST] Tell me a joke. [/INST]");
}

TEST(BuiltinChatTemplates, ContentPartsAreTheirTextParts) {
  ordered_json c = {{"messages", {{{"role", "user"}, {"content", {{{"type", "text"}, {"text", "Hello "}},
                                                                  {{"type", "image"}},
                                                                  {{"type", "text"}, {"text", "there"}}}}}}},
                    {"add_generation_prompt", true},
                    {"kwargs", ordered_json::object()}};
  EXPECT_EQ(render_builtin("chatml", c), "<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n");
}

TEST(BuiltinChatTemplates, EveryNameResolvesAndUnknownNamesDoNot) {
  for (const auto& n : builtin_chat_template_names()) EXPECT_NE(builtin_chat_template(n), nullptr) << n;
  EXPECT_EQ(builtin_chat_template("vicuna"), nullptr);
}

// A BPE vocabulary of two letters plus the given special tokens.
Tokenizer vocab_with(const std::vector<std::string>& specials) {
  std::string added = "[";
  for (size_t i = 0; i < specials.size(); ++i)
    added += (i ? ", " : "") + std::string(R"({"id": )") + std::to_string(2 + i) + R"(, "content": ")" + specials[i] +
             R"(", "special": true})";
  added += "]";
  return Tokenizer::from_json(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []}, "added_tokens": )" +
                              added + "}");
}

TEST(BuiltinChatTemplates, AModelWithoutATemplateGetsItsFamilysOne) {
  // By the turn markers the vocabulary was trained with, whatever the architecture says...
  EXPECT_EQ(pick_builtin_chat_template(vocab_with({"<start_of_turn>", "<end_of_turn>"}), "gemma3"), "gemma");
  EXPECT_EQ(pick_builtin_chat_template(vocab_with({"<|im_start|>", "<|im_end|>"}), "LlamaForCausalLM"), "chatml");
  EXPECT_EQ(pick_builtin_chat_template(vocab_with({"<|start_header_id|>", "<|eot_id|>"}), "llama"), "llama3");
  EXPECT_EQ(pick_builtin_chat_template(vocab_with({"[INST]", "[/INST]"}), "llama"), "mistral");
  // ...else by the architecture (config.json's or GGUF's spelling), else ChatML.
  EXPECT_EQ(pick_builtin_chat_template(vocab_with({}), "Gemma3ForCausalLM"), "gemma");
  EXPECT_EQ(pick_builtin_chat_template(vocab_with({}), "qwen3"), "chatml");
  EXPECT_EQ(pick_builtin_chat_template(vocab_with({}), "MixtralForCausalLM"), "mistral");
  EXPECT_EQ(pick_builtin_chat_template(vocab_with({}), "SomethingElse"), "chatml");
}

TEST(BuiltinChatTemplates, ChoiceIsAFileABuiltinOrTheModelsOwn) {
  const Tokenizer tok = vocab_with({"<start_of_turn>"});
  const std::string dir = test::temp_dir();
  // A folder without a template: the built-in for its vocabulary, and saying so.
  ChosenChatTemplate c = choose_chat_template("", dir, tok, "");
  EXPECT_EQ(c.origin, "built-in gemma (the model has none)");
  EXPECT_EQ(c.source, *builtin_chat_template("gemma"));
  EXPECT_EQ(choose_chat_template("llama3", dir, tok, "").origin, "built-in llama3");
  // The model's own when it has one.
  test::write_file(dir + "/chat_template.jinja", "{{ messages[0]['content'] }}");
  c = choose_chat_template("", dir, tok, "");
  EXPECT_EQ(c.origin, "the model's own");
  EXPECT_EQ(c.source, "{{ messages[0]['content'] }}");
  // A file named on the command line.
  test::write_file(dir + "/mine.jinja", "X");
  EXPECT_EQ(choose_chat_template(dir + "/mine.jinja", dir, tok, "").source, "X");
  try {
    choose_chat_template(dir + "/missing.jinja", dir, tok, "");
    ADD_FAILURE() << "a missing template file was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--chat-template"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("gemma"), std::string::npos) << e.what();  // lists the built-ins
  }
}

}  // namespace
}  // namespace quanta::tokenizer
