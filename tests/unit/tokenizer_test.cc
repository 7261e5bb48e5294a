// Tokenizer tests: golden cases against Hugging Face tokenizers/transformers
// (tests/unit/data/tokenizers/, made by tools/make_tokenizer_fixtures.py),
// llama.cpp's GGUF vocabulary tests (../shared/data/vocab/), streaming
// detokenization, invalid input, and small hand-written tokenizers that pin
// the semantics of individual pipeline steps.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "quanta/core/error.h"
#include "quanta/tokenizer/tokenizer.h"
#include "quanta/tokenizer/unicode.h"
#include "test_util.h"

namespace quanta::tokenizer {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string fixture(const std::string& name) { return test::source_path("tests/unit/data/tokenizers/" + name); }

// Loading the 150k-entry fixtures takes a second; tests share one instance each.
const Tokenizer& cached(const std::string& path) {
  static std::map<std::string, Tokenizer> cache;
  auto it = cache.find(path);
  if (it == cache.end()) it = cache.emplace(path, Tokenizer::load(path)).first;
  return it->second;
}

std::string ids_str(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? " " : "") + std::to_string(ids[i]);
  return s;
}

// Compares encode (with and without special tokens) and decode on every case
// of a cases.json; reports the first mismatches and the pass rate.
void check_cases(const Tokenizer& tok, const std::string& cases_path, size_t min_cases = 2000) {
  json doc = json::parse(test::read_file(cases_path));
  const json& cases = doc.at("cases");
  ASSERT_GE(cases.size(), min_cases);
  size_t failed = 0, shown = 0;
  for (const json& c : cases) {
    std::string text = c.at("text").get<std::string>();
    auto expect_ids = c.at("ids").get<std::vector<int32_t>>();
    auto expect_special = c.at("ids_special").get<std::vector<int32_t>>();
    std::vector<int32_t> ids, special;
    std::string decoded, decoded_skip, err;
    try {
      ids = tok.encode(text, /*add_special=*/false);
      special = tok.encode(text, /*add_special=*/true);
      decoded = tok.decode(expect_special, false);
      decoded_skip = tok.decode(expect_special, true);
    } catch (const std::exception& e) {
      err = e.what();
    }
    std::string expect_decoded = c.at("decoded").get<std::string>();
    std::string expect_skip = c.contains("decoded_skip") ? c["decoded_skip"].get<std::string>() : expect_decoded;
    bool ok = err.empty() && ids == expect_ids && special == expect_special && decoded == expect_decoded &&
              decoded_skip == expect_skip;
    if (!ok) {
      ++failed;
      if (shown++ < 8)
        ADD_FAILURE() << "text " << json(text).dump() << (err.empty() ? "" : "\n  error: " + err)
                      << "\n  ids      " << ids_str(ids) << "\n  expected " << ids_str(expect_ids)
                      << "\n  special  " << ids_str(special) << "\n  expected " << ids_str(expect_special)
                      << "\n  decoded  " << json(decoded).dump() << "\n  expected " << json(expect_decoded).dump()
                      << "\n  skip     " << json(decoded_skip).dump() << "\n  expected " << json(expect_skip).dump();
    }
  }
  EXPECT_EQ(failed, 0u) << failed << " of " << cases.size() << " cases differ from " << doc.value("reference", "");
  std::printf("[ golden ] %s: %zu/%zu cases identical\n", cases_path.c_str(), cases.size() - failed, cases.size());
}

// --- golden: Hugging Face tokenizer.json ------------------------------------

TEST(TokenizerGolden, Qwen2TokenizerJson) {
  const Tokenizer& tok = cached(fixture("qwen2"));
  EXPECT_EQ(tok.vocab_size(), 151665);
  EXPECT_EQ(tok.special_ids().eos, 151645);  // <|im_end|>
  EXPECT_EQ(tok.special_ids().eot, 151645);
  EXPECT_EQ(tok.special_ids().bos, -1);
  EXPECT_FALSE(tok.config().chat_template.empty());
  check_cases(tok, fixture("qwen2/cases.json"));
}

// --- golden: GGUF vocabularies against transformers' GGUF conversion --------

TEST(TokenizerGolden, Gemma3Gguf) {
  const Tokenizer& tok = cached(fixture("gemma3/vocab.gguf"));
  EXPECT_EQ(tok.vocab_size(), 262144);
  EXPECT_EQ(tok.special_ids().bos, 2);
  EXPECT_EQ(tok.special_ids().eos, 1);
  EXPECT_EQ(tok.special_ids().eot, 106);  // <end_of_turn>
  check_cases(tok, fixture("gemma3/cases.json"));
}

std::string shared_vocab(const std::string& name) {
  std::string shared = test::shared_data_path();
  return shared.empty() ? std::string() : shared + "/vocab/" + name;
}

TEST(TokenizerGolden, Gpt2SharedGguf) {
  std::string path = shared_vocab("ggml-vocab-gpt-2.gguf");
  if (path.empty()) GTEST_SKIP() << "../shared/data is absent";
  check_cases(Tokenizer::load(path), fixture("gpt2/cases.json"));
}

TEST(TokenizerGolden, LlamaSpmSharedGguf) {
  std::string path = shared_vocab("ggml-vocab-llama-spm.gguf");
  if (path.empty()) GTEST_SKIP() << "../shared/data is absent";
  check_cases(Tokenizer::load(path), fixture("llama-spm/cases.json"));
}

// --- llama.cpp's vocabulary tests (.inp/.out pairs) -------------------------

// Runs one of llama.cpp's .inp/.out pairs (`base` + ".inp"/".out") through `tok`.
void check_vocab_pairs(const Tokenizer& tok, const std::string& base, const std::string& name) {
  std::string inp = test::read_file(base + ".inp");
  std::string out = test::read_file(base + ".out");
  // Texts are separated by a line holding only __ggml_vocab_test__, which also ends the file.
  std::vector<std::string> texts;
  const std::string sep = "\n__ggml_vocab_test__\n";
  for (size_t pos = 0; pos < inp.size();) {
    size_t hit = inp.find(sep, pos);
    if (hit == std::string::npos) break;
    texts.push_back(inp.substr(pos, hit - pos));
    pos = hit + sep.size();
  }
  std::vector<std::string> lines;
  std::istringstream ls(out);
  for (std::string line; std::getline(ls, line);) lines.push_back(line);
  ASSERT_EQ(texts.size(), lines.size()) << name;
  size_t ok = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    std::string expect = lines[i];
    while (!expect.empty() && expect.front() == ' ') expect.erase(0, 1);
    std::string got = ids_str(tok.encode(texts[i], /*add_special=*/false));
    if (got == expect) ++ok;
    else ADD_FAILURE() << name << " case " << i << " " << json(texts[i]).dump() << "\n  got      " << got
                       << "\n  expected " << expect;
  }
  EXPECT_GE(texts.size(), 30u);
  std::printf("[ vocab  ] %s: %zu/%zu\n", name.c_str(), ok, texts.size());
}

// The GGUF vocabularies of the shared folder whose tokenizer quanta supports;
// the others are listed in tests/unit/data/tokenizers/README.md with the reason.
TEST(TokenizerGguf, SharedVocabularies) {
  std::string shared = test::shared_data_path();
  if (shared.empty()) GTEST_SKIP() << "../shared/data is absent";
  for (const char* name : {"gpt-2", "deepseek-coder", "deepseek-llm", "falcon", "mpt", "refact", "starcoder",
                           "llama-spm", "phi-3"}) {
    SCOPED_TRACE(name);
    std::string base = shared + "/vocab/ggml-vocab-" + name + ".gguf";
    check_vocab_pairs(Tokenizer::load(base), base, name);
  }
}

// Families whose pairs come without their GGUF: the fixture tokenizers stand in.
TEST(TokenizerGguf, SharedPairsWithFixtureTokenizers) {
  std::string shared = test::shared_data_path();
  if (shared.empty()) GTEST_SKIP() << "../shared/data is absent";
  check_vocab_pairs(cached(fixture("qwen2")), shared + "/vocab/ggml-vocab-qwen2.gguf", "qwen2 (fixture)");
  if (fs::exists(fixture("llama3/tokenizer.json")))
    check_vocab_pairs(cached(fixture("llama3")), shared + "/vocab/ggml-vocab-llama-bpe.gguf", "llama-bpe (fixture)");
}

TEST(TokenizerGguf, OtherSharedFilesLoad) {
  std::string shared = test::shared_data_path();
  if (shared.empty()) GTEST_SKIP() << "../shared/data is absent";
  // No .inp/.out pairs for these: they must load and round-trip plain text.
  for (const char* name : {"baichuan", "gpt-neox"}) {
    Tokenizer tok = Tokenizer::load(shared + "/vocab/ggml-vocab-" + name + ".gguf");
    std::vector<int32_t> ids = tok.encode("Hello world", false);
    EXPECT_FALSE(ids.empty()) << name;
    EXPECT_EQ(tok.decode(ids), "Hello world") << name;
  }
}

TEST(TokenizerGguf, UnsupportedModelsAreClearErrors) {
  std::string path = shared_vocab("ggml-vocab-bert-bge.gguf");
  if (path.empty()) GTEST_SKIP() << "../shared/data is absent";
  try {
    Tokenizer::load(path);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.ggml.model"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("bert"), std::string::npos) << e.what();
  }
}

// --- invalid input -----------------------------------------------------------

TEST(Tokenizer, InvalidUtf8IsAClearError) {
  const Tokenizer& tok = cached(fixture("qwen2"));
  const std::string bad[] = {"\xff", "abc\x80", "\xc3", "\xe4\xb8", "\xed\xa0\x80", "\xc0\xaf",
                             "\xf4\x90\x80\x80", "ok \xe2\x82 then", std::string("nul\0\xfe", 5)};
  for (const std::string& s : bad) {
    try {
      tok.encode(s);
      ADD_FAILURE() << "no error for " << json::binary({s.begin(), s.end()}).dump();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("not valid UTF-8"), std::string::npos) << e.what();
    }
  }
  // NUL and other control characters are valid UTF-8.
  EXPECT_FALSE(tok.encode(std::string("a\0b", 3)).empty());
}

TEST(Tokenizer, DecodeRejectsUnknownIds) {
  const Tokenizer& tok = cached(fixture("qwen2"));
  std::vector<int32_t> ids = {1, tok.vocab_size()};
  EXPECT_THROW(tok.decode(ids), Error);
  ids = {-1};
  EXPECT_THROW(tok.decode(ids), Error);
}

TEST(Tokenizer, ParseSpecialOff) {
  const Tokenizer& tok = cached(fixture("qwen2"));
  auto with = tok.encode("<|im_start|>user", false, true);
  auto without = tok.encode("<|im_start|>user", false, false);
  EXPECT_EQ(with.front(), 151644);
  EXPECT_GT(without.size(), with.size());
  EXPECT_EQ(tok.decode(without), "<|im_start|>user");
}

// --- streaming ---------------------------------------------------------------

void check_stream(const Tokenizer& tok, const std::string& text, bool add_special) {
  std::vector<int32_t> ids = tok.encode(text, add_special);
  StreamDecoder stream(tok);
  std::string streamed;
  for (int32_t id : ids) {
    std::string piece = stream.step(id);
    EXPECT_EQ(utf8_validate(piece), std::string::npos) << "broken UTF-8 emitted for " << json(text).dump();
    streamed += piece;
  }
  streamed += stream.flush();
  EXPECT_EQ(streamed, tok.decode(ids)) << json(text).dump();
}

TEST(StreamDecoder, MatchesWholeDecode) {
  const char* texts[] = {"Hello world", " leading space", "  two leading", "你好，世界！🦙👨‍👩‍👧‍👦",
                         "naïve café", "\n\ntabs\tand\nnewlines", "नमस्ते दुनिया", "emoji👍inside", "a  b   c"};
  const Tokenizer& qwen = cached(fixture("qwen2"));
  const Tokenizer& gemma = cached(fixture("gemma3/vocab.gguf"));
  for (const char* t : texts) {
    check_stream(qwen, t, false);
    check_stream(gemma, t, true);
    check_stream(gemma, t, false);
  }
  std::string shared = shared_vocab("ggml-vocab-llama-spm.gguf");
  if (!shared.empty()) {
    Tokenizer spm = Tokenizer::load(shared);
    for (const char* t : texts) check_stream(spm, t, true);
  }
}

TEST(StreamDecoder, HoldsIncompleteCharacters) {
  const Tokenizer& qwen = cached(fixture("qwen2"));
  // A rare character is split over several byte-level tokens; nothing is
  // emitted until it is whole.
  std::string rare;
  std::vector<int32_t> ids;
  for (const char* c : {"\U0001202D", "\U0001F9EC", "\u4DC0", "\U0002A6B2", "\u0F3A\u0F3B"}) {
    ids = qwen.encode(c);
    if (ids.size() > 1) {
      rare = c;
      break;
    }
  }
  ASSERT_GT(ids.size(), 1u);
  StreamDecoder stream(qwen);
  std::string out;
  for (size_t i = 0; i + 1 < ids.size(); ++i) EXPECT_EQ(stream.step(ids[i]), "");
  out = stream.step(ids.back());
  EXPECT_EQ(out, rare);
  EXPECT_EQ(stream.flush(), "");
  // An incomplete character at the end comes out of flush as U+FFFD.
  StreamDecoder cut(qwen);
  EXPECT_EQ(cut.step(ids[0]), "");
  EXPECT_EQ(cut.flush(), "\xEF\xBF\xBD");
}

// --- hand-written tokenizers pinning single steps ----------------------------

// A SentencePiece-style BPE in tokenizer.json form (Llama 2 shape).
const char* kSpmJson = R"({
  "added_tokens": [
    {"id": 0, "content": "<unk>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 13, "content": "<tool>", "single_word": false, "lstrip": true, "rstrip": true, "normalized": false, "special": false}
  ],
  "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
  "pre_tokenizer": null,
  "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                     "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
  "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
  "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": true,
            "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "▁": 3, "h": 4, "i": 5, "▁h": 6, "▁hi": 7, "<0xC3>": 8, "<0xA9>": 9, "!": 10, "hi": 11, "<0x21>": 12, "<tool>": 13},
            "merges": ["▁ h", "▁h i", "h i"]}
})";

TEST(TokenizerJson, SentencePieceShape) {
  Tokenizer tok = Tokenizer::from_json(kSpmJson);
  EXPECT_EQ(tok.encode("hi hi"), (std::vector<int32_t>{1, 7, 7}));
  EXPECT_EQ(tok.encode("hi", false), (std::vector<int32_t>{7}));
  // é is not in the vocabulary: byte fallback to <0xC3> <0xA9>.
  EXPECT_EQ(tok.encode("é", false), (std::vector<int32_t>{3, 8, 9}));
  // Prepend applies to every text piece between added tokens; <tool> strips spaces on both sides.
  EXPECT_EQ(tok.encode("hi <tool> hi", false), (std::vector<int32_t>{7, 13, 7}));
  EXPECT_EQ(tok.decode(std::vector<int32_t>{1, 7, 7, 8, 9}, true), "hi hié");
  EXPECT_EQ(tok.decode(std::vector<int32_t>{7, 8}), "hi\xEF\xBF\xBD");  // a lone byte token is U+FFFD
  EXPECT_EQ(tok.special_ids().unk, 0);
}

// Every short id sequence streams to its whole decode, also where Strip cuts more
// than one leading space (issue #16 fuzz finding: with start 2, a window that began
// after the first token lost a second leading space) and with a Metaspace decoder.
TEST(StreamDecoder, EveryShortSequenceMatchesWholeDecode) {
  const std::string base = kSpmJson;
  const std::string strip1 = R"({"type": "Strip", "content": " ", "start": 1, "stop": 0})";
  std::vector<std::string> variants;
  for (const char* strip : {R"({"type": "Strip", "content": " ", "start": 2, "stop": 0})",
                            R"({"type": "Strip", "content": " ", "start": 3, "stop": 1})"}) {
    std::string v = base;
    v.replace(v.find(strip1), strip1.size(), strip);
    variants.push_back(v);
  }
  std::string meta = base;
  const size_t from = meta.find("\"decoder\""), to = meta.find("\"model\"");
  meta.replace(from, to - from, R"("decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always"},
  )");
  variants.push_back(meta);
  const int32_t pool[] = {3, 4, 5, 6, 7, 8, 9, 10, 13};
  for (const std::string& json_text : variants) {
    Tokenizer tok = Tokenizer::from_json(json_text);
    size_t checked = 0;
    for (int n = 1; n <= 4; ++n) {
      std::vector<size_t> pick(static_cast<size_t>(n), 0);
      while (true) {
        std::vector<int32_t> ids;
        for (size_t k : pick) ids.push_back(pool[k]);
        const std::string whole = tok.decode(ids);
        if (whole.find("\xEF\xBF\xBD") == std::string::npos) {
          StreamDecoder stream(tok);
          std::string streamed;
          for (int32_t id : ids) streamed += stream.step(id);
          streamed += stream.flush();
          ASSERT_EQ(streamed, whole) << "ids " << json(ids).dump();
          ++checked;
        }
        size_t i = 0;
        while (i < pick.size() && ++pick[i] == std::size(pool)) pick[i++] = 0;
        if (i == pick.size()) break;
      }
    }
    EXPECT_GT(checked, 1000u);
  }
}

TEST(TokenizerJson, UnsupportedPartsAreNamed) {
  std::string wordpiece = R"({"model": {"type": "WordPiece", "vocab": {}}})";
  try {
    Tokenizer::from_json(wordpiece, {}, "x/tokenizer.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("WordPiece"), std::string::npos) << e.what();
    EXPECT_EQ(e.context().file, "x/tokenizer.json");
  }
  EXPECT_THROW(Tokenizer::from_json("{not json"), Error);
  EXPECT_THROW(Tokenizer::from_json(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}})"), Error);
  EXPECT_THROW(Tokenizer::from_json(R"({"model": {"type": "BPE", "vocab": {}}, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(("}}})"), Error);
}

// Ids index dense tables (issue #16: an id of 10^8 among three entries made a 3 GB table and was
// accepted; 2^31 - 1 overflowed the table size; an added token's 2^32 + 1 was truncated to 1).
TEST(TokenizerJson, IdsFarPastTheEntryCountAreRefused) {
  auto bpe = [](const std::string& vocab, const std::string& added = "[]") {
    return R"({"model": {"type": "BPE", "vocab": )" + vocab + R"(, "merges": []}, "added_tokens": )" + added + "}";
  };
  auto added = [](const std::string& id) { return R"([{"id": )" + id + R"(, "content": "<x>"}])"; };
  EXPECT_EQ(Tokenizer::from_json(bpe(R"({"a": 0, "b": 900})")).vocab_size(), 901);  // holes are fine
  EXPECT_EQ(Tokenizer::from_json(bpe(R"({"a": 0})", added("1000"))).vocab_size(), 1001);
  for (const char* id : {"100000000", "2147483647", "4294967297", "18446744073709551615"}) {
    SCOPED_TRACE(id);
    const std::string vocab = R"({"a": 0, "b": 1, "c": )" + std::string(id) + "}";
    test::expect_error([&] { Tokenizer::from_json(bpe(vocab), {}, "t/tokenizer.json"); },
                       {"t/tokenizer.json", "model.vocab", "out of range"});
    test::expect_error([&] { Tokenizer::from_json(bpe(R"({"a": 0})", added(id)), {}, "t/tokenizer.json"); },
                       {"t/tokenizer.json", "added_tokens[0].id", "out of range"});
  }
}

TEST(TokenizerConfig, ChatTemplateForms) {
  std::string tj = R"({"model": {"type": "BPE", "vocab": {"a": 0, "<s>": 1, "</s>": 2}, "merges": []}})";
  Tokenizer one = Tokenizer::from_json(tj, R"({"chat_template": "{{ x }}", "bos_token": "<s>",
      "eos_token": {"content": "</s>", "lstrip": false}, "add_bos_token": true})");
  EXPECT_EQ(one.config().chat_template, "{{ x }}");
  EXPECT_EQ(one.special_ids().bos, 1);
  EXPECT_EQ(one.special_ids().eos, 2);
  EXPECT_EQ(one.encode("a"), (std::vector<int32_t>{1, 0}));  // add_bos_token rebuilds the template
  Tokenizer list = Tokenizer::from_json(tj, R"({"chat_template": [{"name": "default", "template": "D"},
      {"name": "tool_use", "template": "T"}], "add_eos_token": true, "eos_token": "</s>"})");
  EXPECT_EQ(list.config().chat_template, "D");
  EXPECT_EQ(list.config().chat_templates.at("tool_use"), "T");
  EXPECT_EQ(list.encode("a"), (std::vector<int32_t>{0, 2}));
  EXPECT_THROW(Tokenizer::from_json(tj, R"({"chat_template": 3})"), Error);
}

TEST(Unicode, LossyMatchesRust) {
  // String::from_utf8_lossy: maximal invalid subparts.
  EXPECT_EQ(utf8_lossy("a\xF0\x9F\x98"), "a\xEF\xBF\xBD");
  EXPECT_EQ(utf8_lossy("\xE4\xB8" "a"), "\xEF\xBF\xBD" "a");
  EXPECT_EQ(utf8_lossy("\xFF\xFE"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(utf8_lossy("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(normalize("e\xCC\x81", NormalForm::kNfc), "\xC3\xA9");
  EXPECT_EQ(normalize("\xEF\xAC\x81", NormalForm::kNfkc), "fi");
}

}  // namespace
}  // namespace quanta::tokenizer
