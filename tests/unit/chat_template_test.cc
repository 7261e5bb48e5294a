// Chat-template engine: golden renders of real templates against jinja2 (fixtures made by
// tools/make_chat_template_fixtures.py), plus unit tests of the Jinja and Python semantics that
// byte-exact prompts depend on, of errors, and of the limits that stop hostile templates.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "quanta/tokenizer/chat_template.h"
#include "test_util.h"

namespace quanta::tokenizer {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

// The instant the fixtures pin strftime_now to (tools/make_chat_template_fixtures.py PINNED_NOW).
RenderOptions pinned() {
  RenderOptions o;
  std::tm tm{};
  tm.tm_year = 2025 - 1900;
  tm.tm_mon = 2;
  tm.tm_mday = 14;
  tm.tm_hour = 9;
  tm.tm_min = 26;
  tm.tm_sec = 53;
  tm.tm_wday = 5;
  tm.tm_yday = 72;
  o.now = tm;
  return o;
}

std::string render(const std::string& source, const ordered_json& ctx = ordered_json::object(),
                   const RenderOptions& o = pinned()) {
  return ChatTemplate(source, "test").render(ctx, o);
}

// The error a render raises, as "Kind: detail"; "" if it renders.
std::string render_error(const std::string& source, const ordered_json& ctx = ordered_json::object(),
                         const RenderOptions& o = pinned()) {
  try {
    render(source, ctx, o);
  } catch (const TemplateError& e) {
    return e.kind() + ": " + e.detail();
  }
  return "";
}

// ----- golden renders -----------------------------------------------------------------------------------

std::string fixture_dir() { return test::source_path("tests/unit/data/chat_templates"); }

std::vector<std::string> fixture_names() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fixture_dir(), ec))
    if (e.path().extension() == ".json" && e.path().stem() != "contexts" && e.path().stem() != "snippets" &&
        e.path().stem() != "random")
      names.push_back(e.path().stem().string());
  std::sort(names.begin(), names.end());
  return names;
}

// Templates the engine cannot render like jinja2 yet, with the reason. (Empty: all pass.)
const std::map<std::string, std::string> kKnownFailures = {};

class ChatTemplateGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(ChatTemplateGolden, MatchesJinja2) {
  const std::string name = GetParam();
  if (auto it = kKnownFailures.find(name); it != kKnownFailures.end()) {
    GTEST_SKIP() << it->second;
  }
  std::string shared = test::shared_data_path();
  if (shared.empty()) {
    GTEST_SKIP() << "../shared/data is absent: the chat templates live there";
  }
  ordered_json fixture = ordered_json::parse(test::read_file(fixture_dir() + "/" + name + ".json"));
  ordered_json contexts = ordered_json::parse(test::read_file(fixture_dir() + "/contexts.json"));
  std::string path = shared + "/chat-templates/" + fixture["template"].get<std::string>();
  if (!fs::exists(path)) GTEST_SKIP() << path << " is absent";
  ChatTemplate tmpl(test::read_file(path), fixture["template"].get<std::string>());

  int passed = 0, total = 0;
  for (const auto& c : contexts) {
    const std::string case_name = c["name"];
    const ordered_json& want = fixture["cases"][case_name];
    ChatInputs in;
    in.messages = c["messages"];
    in.tools = c["tools"].is_null() && !fixture["tools_if_none"].is_null() ? fixture["tools_if_none"] : c["tools"];
    in.documents = c.contains("documents") ? c["documents"] : ordered_json();
    in.add_generation_prompt = c["add_generation_prompt"];
    in.variables = c["kwargs"];
    for (auto it = fixture["extra_kwargs"].begin(); it != fixture["extra_kwargs"].end(); ++it)
      in.variables[it.key()] = it.value();
    ++total;
    std::string got, got_error;
    try {
      got = tmpl.render(make_chat_context(in), pinned());
    } catch (const TemplateError& e) {
      got_error = e.kind() + ": " + e.detail();
    }
    if (want.contains("output")) {
      const std::string expected = want["output"];
      if (!got_error.empty()) {
        ADD_FAILURE() << name << " / " << case_name << ": raised " << got_error;
        continue;
      }
      if (got != expected) {
        size_t at = 0;
        while (at < got.size() && at < expected.size() && got[at] == expected[at]) ++at;
        ADD_FAILURE() << name << " / " << case_name << ": output differs at byte " << at << "\n--- expected: "
                      << ordered_json(expected.substr(at > 40 ? at - 40 : 0, 120)).dump() << "\n--- got:      "
                      << ordered_json(got.substr(at > 40 ? at - 40 : 0, 120)).dump();
        continue;
      }
    } else {
      std::string expected = want["error_type"].get<std::string>() + ": " + want["error"].get<std::string>();
      if (got_error != expected) {
        ADD_FAILURE() << name << " / " << case_name << ": expected error " << expected << "\n  got: "
                      << (got_error.empty() ? "no error" : got_error);
        continue;
      }
    }
    ++passed;
  }
  std::printf("[ chat-template ] %s: %d/%d cases match jinja2\n", name.c_str(), passed, total);
  EXPECT_GE(total, 20);
}

INSTANTIATE_TEST_SUITE_P(Templates, ChatTemplateGolden, ::testing::ValuesIn(fixture_names()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string s;
                           for (char c : info.param) s += isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return s;
                         });

TEST(ChatTemplateGoldenSet, CoversTheSharedTemplates) {
  std::string shared = test::shared_data_path();
  if (shared.empty()) GTEST_SKIP() << "../shared/data is absent";
  std::vector<std::string> names = fixture_names();
  for (const auto& e : fs::directory_iterator(shared + "/chat-templates")) {
    if (e.path().extension() != ".jinja") continue;
    EXPECT_TRUE(std::count(names.begin(), names.end(), e.path().stem().string()))
        << e.path().filename() << " has no fixture: rerun tools/make_chat_template_fixtures.py";
  }
}

// Small templates probing Python and jinja2 semantics (snippets.json, from
// tools/chat_template_snippets.py) and 2,000 random expression templates (random.json), each
// rendered by jinja2; the output or the error must match exactly.
void expect_cases_match(const std::string& file, size_t min_cases) {
  ordered_json data = ordered_json::parse(test::read_file(fixture_dir() + "/" + file));
  size_t compared = 0, failed = 0;
  for (const auto& c : data["cases"]) {
    const std::string src = c["template"];
    const ordered_json& want = c["result"];
    std::string got, got_error;
    try {
      got = ChatTemplate(src, file).render(data["context"], pinned());
    } catch (const TemplateError& e) {
      got_error = e.kind() + ": " + e.detail();
    }
    std::string expected = want.contains("output")
                               ? want["output"].get<std::string>()
                               : want["error_type"].get<std::string>() + ": " + want["error"].get<std::string>();
    std::string actual = want.contains("output") && got_error.empty() ? got : got_error;
    if (actual != expected && ++failed <= 20)
      ADD_FAILURE() << src << "\n  expected: " << expected << "\n  got:      " << actual;
    ++compared;
  }
  EXPECT_EQ(failed, 0u) << "of " << compared << " templates in " << file;
  EXPECT_GE(compared, min_cases);
}

TEST(ChatTemplate, SnippetsMatchJinja2) { expect_cases_match("snippets.json", 120); }
TEST(ChatTemplate, RandomExpressionsMatchJinja2) { expect_cases_match("random.json", 1900); }

// ----- whitespace control -------------------------------------------------------------------------------

TEST(ChatTemplate, TrimBlocksAndLstripBlocks) {
  // trim_blocks drops the newline after a block tag; lstrip_blocks the indentation before it.
  EXPECT_EQ(render("{% if true %}\nA\n{% endif %}\nB"), "A\nB");
  EXPECT_EQ(render("  {% if true %}\n  x\n  {%- endif %}\n\n"), "  x");
  EXPECT_EQ(render("a  {% if true %}b{% endif %}"), "a  b");  // not at line start: kept
  EXPECT_EQ(render("  {{ 1 }}\n"), "  1");                    // variables are not lstripped
  EXPECT_EQ(render("x  {%+ if true %}y{% endif %}"), "x  y");
  EXPECT_EQ(render("{% if true +%}\nA{% endif %}"), "\nA");  // + keeps the newline
  EXPECT_EQ(render("a\n  {#- c -#}  \n b"), "ab");
  EXPECT_EQ(render("a  {# c #}\nb"), "a  b");
  EXPECT_EQ(render("{{- 'x' -}}  \n  {{ 'y' }}"), "xy");
  EXPECT_EQ(render("line\r\nnext\rlast\n"), "line\nnext\nlast");  // newlines normalised, one trailing dropped
  EXPECT_EQ(render("{% raw %}{{ not evaluated }}{% endraw %}"), "{{ not evaluated }}");
}

// ----- expressions and Python semantics -----------------------------------------------------------------

TEST(ChatTemplate, PythonStringsOfValues) {
  EXPECT_EQ(render("{{ 1.0 }} {{ 1e20 }} {{ 1e16 }} {{ 1.5e-5 }} {{ 0.0001 }} {{ 0.1 + 0.2 }} {{ 7 / 2 }} {{ 7 // 2 }}"),
            "1.0 1e+20 1e+16 1.5e-05 0.0001 0.30000000000000004 3.5 3");
  EXPECT_EQ(render("{{ [1.0, 'a', \"b'\", none, true, (1,), {'k': (1, 2)}] }}"),
            "[1.0, 'a', \"b'\", None, True, (1,), {'k': (1, 2)}]");
  EXPECT_EQ(render("{{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 'ab' * 3 }} {{ [1] + [2] }}"), "-4 2 1024 ababab [1, 2]");
  EXPECT_EQ(render("{{ x }}|{{ x.items() }}", {{"x", {{"b", 1}, {"a", "é\n"}}}}),
            "{'b': 1, 'a': 'é\\n'}|dict_items([('b', 1), ('a', 'é\\n')])");
  EXPECT_EQ(render("{{ 'Ünïcödé'|length }} {{ 'héllo'[1] }} {{ 'héllo'[::-1] }} {{ [1,2,3,4][1:3] }}"),
            "7 é olléh [2, 3]");
}

TEST(ChatTemplate, TojsonMatchesPythonJsonDumps) {
  ordered_json ctx = {{"x", ordered_json::parse(R"({"b": [1, 2.5, "é\"\n", null, true], "a": {}, "c": []})")}};
  EXPECT_EQ(render("{{ x|tojson }}", ctx), R"({"b": [1, 2.5, "é\"\n", null, true], "a": {}, "c": []})");
  EXPECT_EQ(render("{{ x|tojson(indent=2) }}", ctx),
            "{\n  \"b\": [\n    1,\n    2.5,\n    \"é\\\"\\n\",\n    null,\n    true\n  ],\n  \"a\": {},\n  \"c\": []\n}");
  EXPECT_EQ(render("{{ x|tojson(separators=(',', ':'), sort_keys=true) }}", ctx),
            R"({"a":{},"b":[1,2.5,"é\"\n",null,true],"c":[]})");
  EXPECT_EQ(render("{{ 'é😀'|tojson(ensure_ascii=true) }}"), R"("\u00e9\ud83d\ude00")");
  EXPECT_EQ(render_error("{{ [1]|map('string')|tojson }}"), "TypeError: Object of type generator is not JSON serializable");
}

TEST(ChatTemplate, FiltersAndTests) {
  ordered_json ctx = ordered_json::parse(R"({"users": [{"name": "b", "age": 3}, {"name": "A", "age": 1},
                                             {"name": "c"}], "d": {"b": 1, "A": 2}})");
  EXPECT_EQ(render("{{ users|map(attribute='name')|join(', ') }}", ctx), "b, A, c");
  EXPECT_EQ(render("{{ users|selectattr('age', 'defined')|map(attribute='age')|list }}", ctx), "[3, 1]");
  EXPECT_EQ(render("{{ users|rejectattr('age')|list|length }}", ctx), "1");
  EXPECT_EQ(render("{{ users|sort(attribute='name')|map(attribute='name')|join }}", ctx), "Abc");
  EXPECT_EQ(render("{% for k, v in d|dictsort %}{{ k }}={{ v }};{% endfor %}", ctx), "A=2;b=1;");
  EXPECT_EQ(render("{{ ['a', 'B', 'a']|unique|list }} {{ [3, 1, 2]|max }} {{ []|first is defined }}"), "['a', 'B'] 3 False");
  EXPECT_EQ(render("{{ '  x  '|trim }}|{{ 'a-b'|replace('-', '+') }}|{{ 'hello world'|title }}|{{ x|default('d') }}"),
            "x|a+b|Hello World|d");
  EXPECT_EQ(render("{{ 'a\nb\n\nc'|indent(2) }}|{{ 'x'|indent(2, first=true) }}"), "a\n  b\n\n  c|  x");
  EXPECT_EQ(render("{{ '42.7'|int }} {{ 'x'|int(5) }} {{ '3.5'|float }} {{ 2.5|round }} {{ 3.14159|round(2) }}"),
            "42 5 3.5 2.0 3.14");
  EXPECT_EQ(render("{{ x is mapping }} {{ x is sequence }} {{ 'a' is string }} {{ 1 is number }} {{ true is boolean }}"
                   " {{ none is none }} {{ y is defined }} {{ 3 is odd }} {{ 'a' in 'abc' }} {{ 2 not in [1] }}",
                   {{"x", {{"a", 1}}}}),
            "True True True True True True False True True True");
}

TEST(ChatTemplate, StringAndDictMethods) {
  ordered_json ctx = {{"m", {{"content", "<think>\nhm\n</think>\n\nAnswer"}, {"role", "assistant"}}}};
  EXPECT_EQ(render("{{ m.content.split('</think>')[-1].lstrip('\\n') }}|{{ m.get('x', 'none') }}|{{ m.get('role') }}",
                   ctx),
            "Answer|none|assistant");
  EXPECT_EQ(render("{{ ' a  b '.split() }} {{ 'a,b,c'.rsplit(',', 1) }} {{ 'Ab'.upper() }} {{ 'x'.startswith(('y', 'x')) }}"),
            "['a', 'b'] ['a,b', 'c'] AB True");
  EXPECT_EQ(render("{% for k, v in m.items() %}{{ k }};{% endfor %}{{ m.keys()|list }}", ctx), "content;role;['content', 'role']");
  // x.items is the dict method, not the key "items"; x['items'] is the key.
  EXPECT_EQ(render("{{ x['items'] }} {{ x.items is callable }}", {{"x", {{"items", 5}}}}), "5 True");
  EXPECT_EQ(render("{{ 'a {} {x}'.format(1, x=2) }}"), "a 1 2");
}

TEST(ChatTemplate, MarkupConcatenationEscapes) {
  // functionary-style: "..."|safe + plain string escapes the plain side, as markupsafe does.
  EXPECT_EQ(render("{{ \"Use '\"|safe + x + \"'\"|safe }}", {{"x", "a<b> & 'c'"}}), "Use 'a&lt;b&gt; &amp; &#39;c&#39;'");
}

// ----- statements and scoping ---------------------------------------------------------------------------

TEST(ChatTemplate, LoopsAndScoping) {
  EXPECT_EQ(render("{% for x in [1, 2, 3] %}{{ loop.index }}{{ loop.first }}{{ loop.last }}{{ loop.length }},{% endfor %}"),
            "1TrueFalse3,2FalseFalse3,3FalseTrue3,");
  EXPECT_EQ(render("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(render("{% for x in range(10) if x is odd %}{{ x }}{% if x > 4 %}{% break %}{% endif %}{% endfor %}"), "135");
  EXPECT_EQ(render("{% for x in [1, 2, 3] %}{% if x == 2 %}{% continue %}{% endif %}{{ x }}{% endfor %}"), "13");
  // A set inside a loop lasts one iteration and does not leak out; each iteration starts afresh.
  EXPECT_EQ(render("{% set x = 1 %}{% for i in [1, 2, 3] %}{{ x }}{% set x = x + 1 %}{% endfor %}{{ x }}"), "1111");
  // Namespaces carry state out of loops.
  EXPECT_EQ(render("{% set ns = namespace(n=0) %}{% for i in [1, 2, 3] %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}"
                   "{{ ns }}"),
            "6<Namespace {'n': 6}>");
  EXPECT_EQ(render("{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %}"), "37");
  EXPECT_EQ(render("{% for m in ms %}{{ loop.previtem is defined }}{{ loop.nextitem }}{% endfor %}", {{"ms", {1, 2}}}),
            "False2True");
}

TEST(ChatTemplate, MacrosAndCallBlocks) {
  EXPECT_EQ(render("{% macro m(a, b='B') %}[{{ a }}{{ b }}{{ z }}]{% endmacro %}{% set z = 5 %}{{ m(1) }}{{ m(1, b=2) }}"),
            "[1B5][125]");
  EXPECT_EQ(render("{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(3) }}"), "321");
  EXPECT_EQ(render("{% macro w() %}<{{ caller() }}>{% endmacro %}{% call w() %}in{% endcall %}"), "<in>");
  EXPECT_EQ(render("{% set s %}  block {{ 1 }}  {% endset %}[{{ s }}]{% filter upper %}up{% endfilter %}"),
            "[  block 1  ]UP");
  EXPECT_EQ(render("{% macro v() %}{{ varargs|length }}{{ kwargs }}{% endmacro %}{{ v(1, 2, k=3) }}"), "2{'k': 3}");
}

// ----- errors -------------------------------------------------------------------------------------------

TEST(ChatTemplate, ErrorsNameKindLineAndColumn) {
  try {
    render("line one\n{{ raise_exception('Only user and assistant roles are supported!') }}");
    FAIL() << "no error";
  } catch (const TemplateError& e) {
    EXPECT_EQ(e.kind(), "TemplateError");
    EXPECT_EQ(e.detail(), "Only user and assistant roles are supported!");
    EXPECT_EQ(e.line(), 2);
    EXPECT_EQ(e.column(), 4);
    EXPECT_NE(std::string(e.what()).find("file 'test'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("line 2, column 4"), std::string::npos) << e.what();
  }
  EXPECT_EQ(render_error("{{ 'a' + 1 }}"), "TypeError: can only concatenate str (not \"int\") to str");
  EXPECT_EQ(render_error("{{ m.content + 'x' }}", {{"m", ordered_json::object()}}),
            "UndefinedError: 'dict object' has no attribute 'content'");
  EXPECT_EQ(render_error("{{ ms[3].role }}", {{"ms", ordered_json::array()}}), "UndefinedError: list object has no element 3");
  EXPECT_EQ(render_error("{{ x.append(1) }}", {{"x", ordered_json::array()}}),
            "SecurityError: access to attribute 'append' of 'list' object is unsafe.");
  EXPECT_EQ(render_error("{% for x in none %}{% endfor %}"), "TypeError: 'NoneType' object is not iterable");
  EXPECT_EQ(render_error("{% if false %}{{ x|from_json }}{% endif %}"), "");  // unknown filters fail only when run
  EXPECT_EQ(render_error("{% if true %}{{ x|from_json }}{% endif %}"), "TemplateRuntimeError: No filter named 'from_json' found.");
  EXPECT_EQ(render_error("{% set ns = namespace() %}{% set ns._x = 1 %}").rfind("SecurityError: Chat templates cannot", 0), 0u);
  auto syntax = [](const std::string& src) {
    try {
      ChatTemplate t(src, "bad");
    } catch (const TemplateError& e) {
      return e.kind() + "@" + std::to_string(e.line()) + ": " + e.detail();
    }
    return std::string("parsed");
  };
  EXPECT_EQ(syntax("a\n{{ x|from_json }}"), "TemplateAssertionError@2: No filter named 'from_json'.");
  EXPECT_EQ(syntax("{% if x %}"), "TemplateSyntaxError@1: Unexpected end of template. Jinja was looking for the following "
                                  "tags: 'elif' or 'else' or 'endif'. The innermost block that needs to be closed is 'if'.");
  EXPECT_EQ(syntax("{% include 'x.jinja' %}").substr(0, 22), "TemplateSyntaxError@1:");
  EXPECT_EQ(syntax("{% frobnicate %}"), "TemplateSyntaxError@1: Encountered unknown tag 'frobnicate'.");
  EXPECT_EQ(syntax("{{ x "), "TemplateSyntaxError@1: unexpected end of template, expected '}}'");
  EXPECT_EQ(syntax("{{ " + std::string(500, '(') + "1" + std::string(500, ')') + " }}").substr(0, 21), "TemplateSyntaxError@1");
}

// ----- limits: hostile templates end in an error, not a hang ----------------------------------------------

TEST(ChatTemplate, LimitsStopRunawayTemplates) {
  RenderOptions o = pinned();
  o.max_loop_iterations = 10000;
  EXPECT_EQ(render_error("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", {}, o)
                .rfind("LimitError", 0),
            0u);
  EXPECT_EQ(render_error("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", {}, o).rfind("LimitError", 0), 0u);
  EXPECT_EQ(render_error("{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}", {}, o).rfind("LimitError", 0), 0u);
  // Deep expressions inside deep recursion: bounded before the C++ stack is.
  std::string deep = "{% macro f() %}{% if true %}{% for i in [1] %}{{ " + std::string(30, '[') + "f()" +
                     std::string(30, ']') + " }}{% endfor %}{% endif %}{% endmacro %}{{ f() }}";
  EXPECT_EQ(render_error(deep).rfind("LimitError", 0), 0u);
  // A loop object that outlives its loop stays valid.
  EXPECT_EQ(render("{% set ns = namespace() %}{% for x in [1, 2] %}{% set ns.l = loop %}{% endfor %}{{ ns.l.length }}"),
            "2");
  o.max_output_bytes = 1000;
  EXPECT_EQ(render_error("{% for i in range(1000) %}xxxxxxxxxx{% endfor %}", {}, o).rfind("LimitError", 0), 0u);
  EXPECT_EQ(render_error("{% set ns = namespace(s='xx') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
                         {}, o)
                .rfind("LimitError", 0),
            0u);
  EXPECT_EQ(render_error("{{ 'x' * 100000000000 }}", {}, o).rfind("LimitError", 0), 0u);
  EXPECT_EQ(render_error("{{ range(1000000)|length }}", {}, o),
            "OverflowError: Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
  EXPECT_EQ(render_error("{% set ns = namespace(l=[]) %}{% for i in range(1000) %}{% set ns.l = [ns.l] %}{% endfor %}", {}, o)
                .rfind("ValueError: value nested", 0),
            0u);
  // A namespace that holds itself can be printed neither by Python nor here, but it must not crash.
  EXPECT_NE(render_error("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}", {}, o), "");
}

// ----- context building and model folders ----------------------------------------------------------------

TEST(ChatTemplate, MakeChatContextAliasesReasoningLikeTransformers) {
  ChatInputs in;
  in.messages = ordered_json::parse(R"([{"role": "assistant", "content": "x", "reasoning": "r"}, {"role": "user", "content": "u"}])");
  in.add_generation_prompt = true;
  in.variables = {{"bos_token", "<s>"}};
  ordered_json ctx = make_chat_context(in);
  EXPECT_EQ(ctx.dump(), R"({"messages":[{"thinking":"r","role":"assistant","content":"x","reasoning":"r","reasoning_content":"r"},)"
                        R"({"role":"user","content":"u"}],"tools":null,"documents":null,"add_generation_prompt":true,"bos_token":"<s>"})");
}

TEST(ChatTemplate, ReadsTemplatesFromModelFolders) {
  std::string dir = test::temp_dir();
  test::write_file(dir + "/tokenizer_config.json",
                   R"({"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>",
                       "chat_template": [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}]})");
  EXPECT_EQ(read_chat_template(dir), "D");
  EXPECT_EQ(read_chat_template(dir, "", true), "T");
  EXPECT_THROW(read_chat_template(dir, "rag"), Error);
  EXPECT_EQ(read_special_tokens(dir).dump(), R"({"bos_token":"<s>","eos_token":"</s>"})");
  test::write_file(dir + "/chat_template.jinja", "J");  // the separate file wins, as in transformers
  EXPECT_EQ(read_chat_template(dir), "J");
  EXPECT_THROW(read_chat_template(test::temp_dir()), Error);
}

}  // namespace
}  // namespace quanta::tokenizer
