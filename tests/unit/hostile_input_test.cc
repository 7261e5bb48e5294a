// Inputs that made quanta slow to the point of hanging (issue #16, second round): each is
// built here and must finish within a small multiple of the time a linear pass takes, or be
// refused with an Error. The time bounds are generous (tests may share a loaded machine);
// the old quadratic paths took 30 s to minutes on the same inputs.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "quanta/core/error.h"
#include "quanta/core/json.h"
#include "quanta/tokenizer/chat_template.h"
#include "quanta/tokenizer/tokenizer.h"
#include "test_util.h"
#include "test_util.h"

namespace quanta {
namespace {

using nlohmann::ordered_json;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// ----- GGUF vocabulary ------------------------------------------------------------------------

// A minimal GGUF v3 writer: metadata only, no tensors (as llama.cpp's vocab-only files).
struct GgufBytes {
  std::string out;
  uint64_t n_kv = 0;
  template <class T>
  void pod(T v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); }
  void str(const std::string& s) {
    pod<uint64_t>(s.size());
    out += s;
  }
  void key(const std::string& k, uint32_t type) {
    ++n_kv;
    str(k);
    pod<uint32_t>(type);
  }
  void kv_string(const std::string& k, const std::string& v) {
    key(k, 8);
    str(v);
  }
  void kv_strings(const std::string& k, const std::vector<std::string>& v) {
    key(k, 9);
    pod<uint32_t>(8);
    pod<uint64_t>(v.size());
    for (const auto& s : v) str(s);
  }
  template <class T>
  void kv_array(const std::string& k, uint32_t elem_type, const std::vector<T>& v) {
    key(k, 9);
    pod<uint32_t>(elem_type);
    pod<uint64_t>(v.size());
    for (T x : v) pod<T>(x);
  }
  std::string file() const {
    GgufBytes h;
    h.out = "GGUF";
    h.pod<uint32_t>(3);
    h.pod<uint64_t>(0);
    h.pod<uint64_t>(n_kv);
    return h.out + out;
  }
};

std::string spm_vocab(const std::vector<std::string>& tokens) {
  GgufBytes g;
  g.kv_string("general.architecture", "llama");
  g.kv_string("tokenizer.ggml.model", "llama");
  g.kv_strings("tokenizer.ggml.tokens", tokens);
  std::vector<float> scores;
  std::vector<int32_t> types;
  for (size_t i = 0; i < tokens.size(); ++i) {
    scores.push_back(-static_cast<float>(i));
    types.push_back(i == 0 ? 2 : i < 3 ? 3 : 1);  // unknown, control, normal
  }
  g.kv_array<float>("tokenizer.ggml.scores", 6, scores);
  g.kv_array<int32_t>("tokenizer.ggml.token_type", 5, types);
  g.key("tokenizer.ggml.bos_token_id", 4);
  g.pod<uint32_t>(1);
  g.key("tokenizer.ggml.eos_token_id", 4);
  g.pod<uint32_t>(2);
  return g.file();
}

TEST(HostileInput, GgufVocabularyWithOneHugeToken) {
  // 29 s before: every byte of the token was a cut, each hashing both halves.
  const std::string path = test::temp_dir() + "/huge-token.gguf";
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b", "ab", "ba", "\xE2\x96\x81" "ab"};
  for (int i = 0; i < 100; ++i) tokens.push_back("x" + std::to_string(i));  // past libstdc++'s small-map linear scan
  std::string huge;
  for (int i = 0; i < 200000; ++i) huge += "ab";
  tokens.push_back(huge);
  test::write_file(path, spm_vocab(tokens));
  auto t0 = std::chrono::steady_clock::now();
  tokenizer::Tokenizer tok = tokenizer::Tokenizer::load(path);
  EXPECT_LT(seconds_since(t0), 3.0 * test::kTimeScale);
  // The merges still work: "abab" is a, b, ab, ... merged by score into known pieces.
  EXPECT_EQ(tok.encode("ab", false), (std::vector<int32_t>{8}));  // "▁ab"
}

// ----- JSON objects with many keys ------------------------------------------------------------

std::string many_keys(int n) {
  std::string s = "{";
  for (int i = 0; i < n; ++i) s += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":" + std::to_string(i);
  return s + "}";
}

TEST(HostileInput, OrderedJsonWithManyKeysParsesInLinearTime) {
  const std::string text = many_keys(200000);  // over a minute before (ordered_map's linear key search)
  auto t0 = std::chrono::steady_clock::now();
  ordered_json j = parse_json<ordered_json>(text);
  EXPECT_LT(seconds_since(t0), 3.0 * test::kTimeScale);
  ASSERT_EQ(j.size(), 200000u);
  EXPECT_EQ(j.begin().key(), "k0");
  EXPECT_EQ(j["k199999"], 199999);
}

TEST(HostileInput, OrderedJsonKeepsNlohmannsSemantics) {
  const std::string text = R"({"b": 1, "a": [1, {"y": null, "x": true}, "s", 2.5, -3], "b": {"c": 18446744073709551615}})";
  EXPECT_EQ(parse_json<ordered_json>(text).dump(), ordered_json::parse(text).dump());  // repeated key: first place, last value
  for (std::string bad : {"{\"a\":", "[1,]", "", "{} x"})
    test::expect_error([&] { parse_json<ordered_json>(bad, {.field = "f"}); }, {"invalid JSON", "f"});
}

TEST(HostileInput, ChatContextWithManyKeysIsLinear) {
  tokenizer::ChatInputs in;
  in.messages = ordered_json::array();
  in.messages.push_back(parse_json<ordered_json>(many_keys(200000)));
  in.messages[0]["reasoning_content"] = "r";  // aliased: every key copied into a new object
  in.variables = parse_json<ordered_json>(many_keys(200000));
  auto t0 = std::chrono::steady_clock::now();
  ordered_json ctx = tokenizer::make_chat_context(in);
  EXPECT_LT(seconds_since(t0), 3.0 * test::kTimeScale);
  EXPECT_EQ(ctx.size(), 4u + 200000u);
  const ordered_json& m = ctx["messages"][0];
  ASSERT_EQ(m.size(), 200002u);
  EXPECT_EQ(m.begin().key(), "thinking");
  EXPECT_EQ(m.back(), "r");
  ordered_json merged = {{"a", 1}, {"b", 2}};
  assign_keys(merged, {{"b", 3}, {"c", 4}});
  EXPECT_EQ(merged.dump(), R"({"a":1,"b":3,"c":4})");
}

// ----- chat templates -------------------------------------------------------------------------

std::string template_kind(const tokenizer::ChatTemplate& t, const ordered_json& ctx) {
  try {
    t.render(ctx);
    return "";
  } catch (const tokenizer::TemplateError& e) {
    return e.kind();
  }
}

TEST(HostileInput, RealTemplateWithARoleOfManyKeysEnds) {
  // A chat request as the server receives it: the role of one message a dict of 200000 keys.
  // Before, parsing it as ordered JSON ran for minutes before the template (and its step
  // limit) started.
  const std::string shared = test::shared_data_path();
  if (shared.empty()) GTEST_SKIP() << "../shared/data is absent";
  const std::string source = test::read_file(shared + "/chat-templates/CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja");
  tokenizer::ChatTemplate tmpl(source, "command-r7b");
  const std::string body = R"([{"role": "system", "content": "s"}, {"role": )" + many_keys(200000) +
                           R"(, "content": "hi"}, {"role": "user", "content": "hello"}])";
  auto t0 = std::chrono::steady_clock::now();
  tokenizer::ChatInputs in;
  in.messages = parse_json<ordered_json>(body, {.field = "messages"});
  in.add_generation_prompt = true;
  std::string kind = template_kind(tmpl, tokenizer::make_chat_context(in));
  EXPECT_LT(seconds_since(t0), 5.0 * test::kTimeScale);
  EXPECT_TRUE(kind == "" || kind == "LimitError") << kind;
}

TEST(HostileInput, WorkOnHugeStringsCountsAsSteps) {
  // Comparing, searching, printing and dumping a 1 MB string once per iteration was charged one
  // step each: a render ran far past the limit's intent (minutes for 8 MB request bodies).
  ordered_json ctx = {{"s", std::string(1 << 20, 'x')}, {"d", {{"k", std::string(1 << 20, 'x')}}}};
  for (const char* body : {"{% if s == s ~ '' %}{% endif %}",  // == on equal-length strings
                           "{% if 'y' in s %}{% endif %}",     // substring search
                           "{% if s < s ~ 'y' %}{% endif %}",  // ordering
                           "{{ (d|string)|length }}",          // str() of a dict
                           "{{ (d|tojson)|length }}"}) {       // json.dumps of a string
    tokenizer::ChatTemplate tmpl(std::string("{% for i in range(20000) %}") + body + "{% endfor %}");
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(template_kind(tmpl, ctx), "LimitError") << body;
    EXPECT_LT(seconds_since(t0), 2.0 * test::kTimeScale) << body;
  }
}

}  // namespace
}  // namespace quanta
