// quanta chat-template: render a model's chat template for a conversation, as the prompt text.
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "quanta/cli/commands.h"
#include "quanta/core/error.h"
#include "quanta/core/json.h"
#include "quanta/tokenizer/chat_template.h"

namespace quanta::cli {

namespace {

using nlohmann::ordered_json;

struct ChatTemplateOptions {
  std::string model_path;
  std::string template_file;
  std::string template_name;
  std::string messages_file;
  std::string tools_file;
  bool add_generation_prompt = false;
  std::vector<std::string> vars;
  std::string now;
};

std::string read_text(const std::string& path, const std::string& option) {
  if (path == "-") return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("cannot read the file", {.file = path, .field = option});
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}


int run_chat_template(const ChatTemplateOptions& o) {
  if (o.model_path.empty() == o.template_file.empty())
    throw Error("give exactly one of --model-path and --template", {.field = "--model-path"});
  if (!o.model_path.empty() && o.model_path.size() > 5 && o.model_path.compare(o.model_path.size() - 5, 5, ".gguf") == 0)
    throw Error("chat templates from GGUF metadata (tokenizer.chat_template) are not supported yet; pass the template "
                "with --template",
                {.file = o.model_path});

  tokenizer::ChatInputs in;
  ordered_json request = parse_json<ordered_json>(read_text(o.messages_file, "--messages"), {.file = o.messages_file, .field = "--messages"});
  // Either a list of messages, or a request object with messages (and tools, documents).
  if (request.is_array()) {
    in.messages = request;
  } else if (request.is_object() && request.contains("messages") && request["messages"].is_array()) {
    in.messages = request["messages"];
    if (request.contains("tools")) in.tools = request["tools"];
    if (request.contains("documents")) in.documents = request["documents"];
  } else {
    throw Error("expected a list of messages or an object with a \"messages\" list", {.file = o.messages_file, .field = "--messages"});
  }
  if (!o.tools_file.empty()) in.tools = parse_json<ordered_json>(read_text(o.tools_file, "--tools"), {.file = o.tools_file, .field = "--tools"});
  in.add_generation_prompt = o.add_generation_prompt;

  std::string source, name;
  if (!o.model_path.empty()) {
    source = tokenizer::read_chat_template(o.model_path, o.template_name, !in.tools.is_null());
    name = o.model_path;
    in.variables = tokenizer::read_special_tokens(o.model_path);
  } else {
    source = read_text(o.template_file, "--template");
    name = o.template_file;
  }
  for (const std::string& var : o.vars) {
    size_t eq = var.find('=');
    if (eq == std::string::npos || eq == 0) throw Error("expected NAME=JSON, got '" + var + "'", {.field = "--var"});
    std::string key = var.substr(0, eq), value = var.substr(eq + 1);
    check_json_depth(value, {.field = "--var " + key});
    try {
      in.variables[key] = parse_ordered_json(value, {});  // linear in the number of keys (core/json.h)
    } catch (const Error&) {
      throw Error("the value of " + key + " is not JSON (a string needs quotes: " + key + "='\"text\"')", {.field = "--var"});
    }
  }

  tokenizer::RenderOptions ro;
  if (!o.now.empty()) {
    std::tm tm{};
    std::istringstream ss(o.now);
    ss >> std::get_time(&tm, o.now.find('T') != std::string::npos ? "%Y-%m-%dT%H:%M:%S" : "%Y-%m-%d");
    if (ss.fail()) throw Error("expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS, got '" + o.now + "'", {.field = "--now"});
    std::tm copy = tm;
    timegm(&copy);  // fills in the weekday and day of the year
    tm.tm_wday = copy.tm_wday;
    tm.tm_yday = copy.tm_yday;
    ro.now = tm;
  }
  tokenizer::ChatTemplate tmpl(source, name);
  std::string prompt = tmpl.render(tokenizer::make_chat_context(in), ro);
  std::fwrite(prompt.data(), 1, prompt.size(), stdout);
  return 0;
}

}  // namespace

Command add_chat_template(CLI::App& app) {
  auto o = std::make_shared<ChatTemplateOptions>();
  CLI::App* sub = app.add_subcommand("chat-template", "Render a chat template for a conversation.");
  sub->footer(
      "Output: the prompt exactly as transformers' apply_chat_template (tokenize=False) renders it, with no\n"
      "newline added. --messages takes a JSON list of messages, or an object with \"messages\" and optionally\n"
      "\"tools\" and \"documents\" (an OpenAI-style request). With --model-path, the special tokens (bos_token,\n"
      "eos_token, ...) come from tokenizer_config.json; --var sets or overrides template variables, e.g.\n"
      "--var enable_thinking=false --var bos_token='\"<s>\"'.");
  sub->add_option("--model-path", o->model_path,
                  "Hugging Face model folder (chat_template.jinja or tokenizer_config.json)");
  sub->add_option("--template", o->template_file, "Jinja chat template file");
  sub->add_option("--template-name", o->template_name, "Which of a model's named templates (default: tool_use with tools, else default)");
  sub->add_option("--messages", o->messages_file, "JSON file with the conversation; '-' reads stdin")->required();
  sub->add_option("--tools", o->tools_file, "JSON file with a list of tool schemas");
  sub->add_flag("--add-generation-prompt", o->add_generation_prompt, "End with the start of an assistant turn");
  sub->add_option("--var", o->vars, "Template variable NAME=JSON (repeatable)");
  sub->add_option("--now", o->now, "The date strftime_now sees, YYYY-MM-DD[THH:MM:SS] (default: now, local time)");
  return [o] { return run_chat_template(*o); };
}

}  // namespace quanta::cli
