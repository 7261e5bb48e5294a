#include "quanta/tokenizer/chat_template.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "quanta/core/json.h"
#include "quanta/tokenizer/jinja_interp.h"

namespace quanta::tokenizer {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

namespace {
std::string describe(const std::string& kind, const std::string& detail, int line, int column) {
  std::string where = "line " + std::to_string(line) + ", column " + std::to_string(column) + ": ";
  if (kind == "TemplateError") return where + "the template raised an error: " + detail;
  return where + kind + ": " + detail;
}

[[noreturn]] void rethrow(const jinja::PositionedError& e, const jinja::Program& prog) {
  auto [line, col] = prog.position(e.offset);
  throw TemplateError(e.error.type, e.error.message, prog.name, line, col);
}
}  // namespace

TemplateError::TemplateError(std::string kind, std::string detail, const std::string& template_name, int line,
                             int column)
    : Error(describe(kind, detail, line, column), {.file = template_name}),
      kind_(std::move(kind)),
      detail_(std::move(detail)),
      line_(line),
      column_(column) {}

ChatTemplate::ChatTemplate(std::string_view source, std::string name) {
  try {
    program_ = jinja::parse_program(source, name);
  } catch (const jinja::PositionedError& e) {
    jinja::Program tmp;
    tmp.name = name;
    tmp.source = std::string(source);
    rethrow(e, tmp);
  }
}

ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;

const std::string& ChatTemplate::name() const { return program_->name; }

std::string ChatTemplate::render(const ordered_json& context, const RenderOptions& options) const {
  jinja::Limits limits;
  limits.max_steps = options.max_steps;
  limits.max_loop_iterations = options.max_loop_iterations;
  limits.max_call_depth = options.max_call_depth;
  limits.max_output_bytes = options.max_output_bytes;
  try {
    if (!context.is_object() && !context.is_null()) throw jinja::PositionedError(jinja::PyError("TypeError", "the context must be a JSON object"), 0);
    jinja::Value ctx;
    try {
      ctx = context.is_null() ? jinja::Value::dict({}) : jinja::from_json(context);  // no copy of context
    } catch (jinja::PyError& e) {
      throw jinja::PositionedError(std::move(e), 0);
    }
    jinja::Interpreter interpreter(*program_, limits, options.now);
    return interpreter.render(ctx);
  } catch (const jinja::PositionedError& e) {
    rethrow(e, *program_);
  }
}

// transformers' render_jinja_template: reasoning is aliased so that templates reading any of the
// names find it; tools and documents are always passed (None when absent), so `tools is defined`
// is true in every template and `tools is not none` is the test that matters.
ordered_json make_chat_context(const ChatInputs& in) {
  ordered_json messages = ordered_json::array();
  for (const auto& m : in.messages) {
    if (!m.is_object()) {
      messages.push_back(m);
      continue;
    }
    const ordered_json* reasoning = nullptr;
    for (const char* key : {"reasoning_content", "thinking", "reasoning"})
      if (m.contains(key) && !m[key].is_null()) {
        reasoning = &m[key];
        break;
      }
    if (!reasoning) {
      messages.push_back(m);
      continue;
    }
    // {"thinking": r, **message, "reasoning_content": r}: keys keep their first position.
    // assign_keys, not operator[]: ordered_json searches keys linearly (core/json.h).
    ordered_json aliased = {{"thinking", *reasoning}};
    assign_keys(aliased, m);
    assign_keys(aliased, {{"reasoning_content", *reasoning}});
    messages.push_back(std::move(aliased));
  }
  ordered_json ctx = ordered_json::object();
  ctx["messages"] = std::move(messages);
  ctx["tools"] = in.tools;
  ctx["documents"] = in.documents;
  ctx["add_generation_prompt"] = in.add_generation_prompt;
  if (in.variables.is_object()) assign_keys(ctx, in.variables);
  return ctx;
}

namespace {
std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw Error("cannot read the file", {.file = p.string()});
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

ordered_json read_json(const fs::path& p) { return parse_json<ordered_json>(slurp(p), {.file = p.string()}); }
}  // namespace

// transformers' loading order (tokenization_utils_base.py from_pretrained): separate .jinja files
// take priority over tokenizer_config.json; several templates are chosen by name (get_chat_template).
std::string read_chat_template(const std::string& model_dir, const std::string& name, bool have_tools) {
  fs::path dir(model_dir);
  std::vector<std::pair<std::string, std::string>> templates;  // name -> source
  if (fs::exists(dir / "chat_template.jinja")) templates.emplace_back("default", slurp(dir / "chat_template.jinja"));
  if (fs::is_directory(dir / "additional_chat_templates"))
    for (const auto& e : fs::directory_iterator(dir / "additional_chat_templates"))
      if (e.path().extension() == ".jinja") templates.emplace_back(e.path().stem().string(), slurp(e.path()));
  fs::path config = dir / "tokenizer_config.json";
  if (templates.empty() && fs::exists(config)) {
    ordered_json cfg = read_json(config);
    if (cfg.contains("chat_template")) {
      const ordered_json& t = cfg["chat_template"];
      if (t.is_string()) {
        templates.emplace_back("default", t.get<std::string>());
      } else if (t.is_array()) {
        for (const auto& e : t) {
          if (!e.is_object() || !e.contains("name") || !e.contains("template") || !e["name"].is_string() ||
              !e["template"].is_string())
            throw Error("expected a list of {\"name\", \"template\"} objects", {.file = config.string(), .field = "chat_template"});
          templates.emplace_back(e["name"].get<std::string>(), e["template"].get<std::string>());
        }
      } else if (!t.is_null()) {
        throw Error("expected a string or a list of {\"name\", \"template\"}", {.file = config.string(), .field = "chat_template"});
      }
    }
  }
  if (templates.empty())
    throw Error("no chat template: neither chat_template.jinja nor a chat_template in tokenizer_config.json",
                {.file = model_dir});
  auto find = [&](const std::string& n) -> const std::string* {
    for (const auto& [k, v] : templates)
      if (k == n) return &v;
    return nullptr;
  };
  std::string wanted = name;
  if (wanted.empty()) {
    if (templates.size() == 1 && templates[0].first == "default") return templates[0].second;
    wanted = have_tools && find("tool_use") ? "tool_use" : "default";
  }
  if (const std::string* t = find(wanted)) return *t;
  std::string names;
  for (const auto& [k, v] : templates) names += (names.empty() ? "" : ", ") + k;
  throw Error("no chat template named '" + wanted + "' (the model has: " + names + ")", {.file = model_dir});
}

ordered_json read_special_tokens(const std::string& model_dir) {
  ordered_json out = ordered_json::object();
  fs::path dir(model_dir);
  ordered_json sources[2];
  if (fs::exists(dir / "tokenizer_config.json")) sources[0] = read_json(dir / "tokenizer_config.json");
  if (fs::exists(dir / "special_tokens_map.json")) sources[1] = read_json(dir / "special_tokens_map.json");
  for (const char* key : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"}) {
    for (const ordered_json& src : sources) {
      if (!src.is_object() || !src.contains(key)) continue;
      const ordered_json& v = src[key];
      if (v.is_string()) out[key] = v;
      else if (v.is_object() && v.contains("content") && v["content"].is_string()) out[key] = v["content"];
      else continue;
      break;
    }
  }
  return out;
}

}  // namespace quanta::tokenizer
