// Deeply nested JSON (issue #16): every reader refuses text that nests arrays and
// objects deeper than kMaxJsonDepth before building a tree, with an error naming
// the file and the limit, instead of overflowing the stack in copies, dump() or
// its own converters. Oracle: the limit documented in core/json.h.
#include "quanta/core/json.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "quanta/format/hf_config.h"
#include "quanta/format/safetensors.h"
#include "quanta/quant/hf_quant_config.h"
#include "quanta/quant/resolver.h"
#include "quanta/tokenizer/chat_template.h"
#include "quanta/tokenizer/tokenizer.h"
#include "test_util.h"

namespace quanta {
namespace {

using nlohmann::ordered_json;
using test::expect_error;
using test::temp_dir;
using test::write_file;

// `depth` levels of open/close around a 1, e.g. deep(2, '[') == "[[1]]".
std::string deep(int depth, char open) {
  std::string s;
  for (int i = 0; i < depth; ++i) s += open == '[' ? "[" : "{\"k\": ";
  s += "1";
  s.append(depth, open == '[' ? ']' : '}');
  return s;
}

constexpr int kHostile = 100000;  // ~200 KB: crashed the Release build before the cap

TEST(JsonDepth, LimitIsExactAndIgnoresStrings) {
  EXPECT_EQ(parse_json(deep(1, '[')), nlohmann::json::parse("[1]"));
  EXPECT_EQ(parse_json(deep(2, '{')), nlohmann::json::parse(R"({"k": {"k": 1}})"));
  EXPECT_NO_THROW(parse_json(deep(kMaxJsonDepth, '[')));
  EXPECT_NO_THROW(parse_json<ordered_json>(deep(kMaxJsonDepth, '{')));
  expect_error([] { parse_json(deep(kMaxJsonDepth + 1, '['), {.file = "f.json"}); },
               {"f.json", "deeper than the limit of 256"});
  expect_error([] { parse_json<ordered_json>(deep(kMaxJsonDepth + 1, '{'), {.field = "x"}); }, {"'x'", "256"});
  // Brackets in strings, escaped quotes included, are not nesting.
  const std::string brackets(5000, '[');
  EXPECT_EQ(parse_json("[\"" + brackets + "\"]")[0], brackets);
  EXPECT_EQ(parse_json(R"(["\"[[[", "\\"])")[1], "\\");
  // Malformed text is still the parser's error, named.
  expect_error([] { parse_json("[1, 2", {.file = "g.json"}); }, {"g.json", "invalid JSON"});
}

TEST(JsonDepth, ConfigJsonAndGenerationConfig) {
  const std::string cfg = "{\"architectures\": [\"LlamaForCausalLM\"], \"x\": " + deep(kHostile, '[') + "}";
  expect_error([&] { format::parse_model_config(cfg, "m/config.json"); }, {"m/config.json", "256"});
  expect_error([&] { format::parse_generation_config("{\"x\": " + deep(kHostile, '{') + "}", "m/generation_config.json"); },
               {"m/generation_config.json", "256"});
  // The other readers of config.json: the quantization method and its config.
  const std::string dir = temp_dir();
  write_file(dir + "/config.json", "{\"quantization_config\": " + deep(kHostile, '{') + "}");
  expect_error([&] { quant::decide_method(dir); }, {"config.json", "256"});
  expect_error([&] { quant::HfQuantConfig::load(dir); }, {"config.json", "256"});
  expect_error([&] { quant::parse_quant_description(deep(kHostile, '['), "quant_model_description.json"); },
               {"quant_model_description.json", "256"});
}

TEST(JsonDepth, SafetensorsHeaderAndIndex) {
  const std::string dir = temp_dir();
  const std::string header = "{\"__metadata__\": " + deep(kHostile, '{') + "}";
  std::string bytes(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(bytes.data(), &n, 8);
  write_file(dir + "/model.safetensors", bytes + header);
  expect_error([&] { format::SafetensorsFile f(dir + "/model.safetensors"); }, {"model.safetensors", "header", "256"});

  const std::string sharded = temp_dir();
  write_file(sharded + "/model.safetensors.index.json", "{\"weight_map\": " + deep(kHostile, '{') + "}");
  expect_error([&] { format::SafetensorsCheckpoint c(sharded); }, {"model.safetensors.index.json", "256"});
}

TEST(JsonDepth, TokenizerJsonAndTokenizerConfig) {
  expect_error([] { tokenizer::Tokenizer::from_json("{\"model\": " + deep(kHostile, '[') + "}", {}, "t/tokenizer.json"); },
               {"t/tokenizer.json", "256"});
  const std::string tj = R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})";
  expect_error([&] { tokenizer::Tokenizer::from_json(tj, "{\"x\": " + deep(kHostile, '{') + "}", "t/tokenizer.json"); },
               {"tokenizer_config.json", "256"});
  // tokenizer_config.json as the chat template reader sees it.
  const std::string dir = temp_dir();
  write_file(dir + "/tokenizer_config.json", "{\"chat_template\": \"x\", \"y\": " + deep(kHostile, '[') + "}");
  expect_error([&] { tokenizer::read_chat_template(dir); }, {"tokenizer_config.json", "256"});
  expect_error([&] { tokenizer::read_special_tokens(dir); }, {"tokenizer_config.json", "256"});
}

// Values built in memory (not from text) reach the template through jinja's from_json,
// which refuses them before recursing.
TEST(JsonDepth, TemplateContextBuiltInMemory) {
  ordered_json v = 1;
  for (int i = 0; i < 200000; ++i) {
    ordered_json outer = ordered_json::array();
    outer.push_back(std::move(v));
    v = std::move(outer);
  }
  tokenizer::ChatTemplate t("{{ x | length }}");
  ordered_json ctx = ordered_json::object();
  ctx["x"] = std::move(v);
  expect_error([&] { t.render(ctx); }, {"nested more than 256"});
}

}  // namespace
}  // namespace quanta
