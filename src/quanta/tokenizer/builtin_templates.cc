#include "quanta/tokenizer/builtin_templates.h"

#include <cctype>
#include <filesystem>
#include <utility>

#include "quanta/core/error.h"
#include "quanta/format/hf_config.h"
#include "quanta/tokenizer/chat_template.h"

namespace quanta::tokenizer {

namespace {

// A message's text: a string, or the text parts of a list of parts (OpenAI's content arrays).
constexpr std::string_view kText = R"({%- macro text(content) -%}
{%- if content is string -%}{{ content }}
{%- elif content is iterable -%}{%- for part in content -%}{%- if part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}{%- endfor -%}
{%- endif -%}
{%- endmacro -%}
)";

// Gemma: <start_of_turn>user|model ... <end_of_turn>, no system role (its text opens the first
// user turn, followed by a blank line), BOS first.
constexpr std::string_view kGemma = R"({{- bos_token -}}
{%- set ns = namespace(system='') -%}
{%- for m in messages -%}
{%- if m['role'] == 'system' -%}{%- set ns.system = ns.system ~ text(m['content']) ~ '\n\n' -%}
{%- else -%}
<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}
{{ ns.system ~ text(m['content']) | trim }}<end_of_turn>
{% set ns.system = '' -%}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}<start_of_turn>model
{% endif -%}
)";

// Llama 3: <|start_header_id|>ROLE<|end_header_id|>, a blank line, the trimmed text, <|eot_id|>.
constexpr std::string_view kLlama3 = R"({{- bos_token -}}
{%- for m in messages -%}
<|start_header_id|>{{ m['role'] }}<|end_header_id|>

{{ text(m['content']) | trim }}<|eot_id|>
{%- endfor -%}
{%- if add_generation_prompt -%}<|start_header_id|>assistant<|end_header_id|>

{% endif -%}
)";

// ChatML: <|im_start|>ROLE, a newline, the text, <|im_end|> and a newline; no BOS.
constexpr std::string_view kChatml = R"({%- for m in messages -%}
<|im_start|>{{ m['role'] }}
{{ text(m['content']) }}<|im_end|>
{% endfor -%}
{%- if add_generation_prompt -%}<|im_start|>assistant
{% endif -%}
)";

// Mistral / Llama 2: BOS, [INST] user [/INST] answer EOS; the system text opens the first user turn.
constexpr std::string_view kMistral = R"({{- bos_token -}}
{%- set ns = namespace(system='') -%}
{%- for m in messages -%}
{%- if m['role'] == 'system' -%}{%- set ns.system = ns.system ~ text(m['content']) ~ '\n\n' -%}
{%- elif m['role'] == 'user' -%}[INST] {{ ns.system ~ text(m['content']) | trim }} [/INST]{%- set ns.system = '' -%}
{%- else -%}{{ ' ' ~ text(m['content']) | trim }}{{ eos_token }}
{%- endif -%}
{%- endfor -%}
)";

const std::vector<std::pair<std::string, std::string>>& table() {
  static const std::vector<std::pair<std::string, std::string>> t = {
      {"chatml", std::string(kText) + std::string(kChatml)},
      {"gemma", std::string(kText) + std::string(kGemma)},
      {"llama3", std::string(kText) + std::string(kLlama3)},
      {"mistral", std::string(kText) + std::string(kMistral)},
  };
  return t;
}

}  // namespace

const std::string* builtin_chat_template(std::string_view name) {
  for (const auto& [n, source] : table())
    if (n == name) return &source;
  return nullptr;
}

std::vector<std::string> builtin_chat_template_names() {
  std::vector<std::string> names;
  for (const auto& entry : table()) names.push_back(entry.first);
  return names;
}

std::string pick_builtin_chat_template(const Tokenizer& tok, std::string_view architecture) {
  // The turn markers a family's vocabulary was trained with.
  const std::pair<const char*, const char*> by_token[] = {
      {"<start_of_turn>", "gemma"},
      {"<|start_header_id|>", "llama3"},
      {"<|im_start|>", "chatml"},
      {"[INST]", "mistral"},
  };
  for (const auto& [piece, name] : by_token)
    if (tok.piece_to_token(piece)) return name;
  // config.json's "Gemma3ForCausalLM" or a GGUF's "gemma3", in lower case.
  std::string arch(architecture);
  for (char& c : arch) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const std::pair<const char*, const char*> by_arch[] = {
      {"gemma", "gemma"}, {"qwen", "chatml"}, {"mistral", "mistral"}, {"mixtral", "mistral"}, {"llama", "llama3"},
  };
  for (const auto& [prefix, name] : by_arch)
    if (arch.starts_with(prefix)) return name;
  return "chatml";
}

ChosenChatTemplate choose_chat_template(const std::string& choice, const std::string& tokenizer_path, const Tokenizer& tok,
                                        std::string_view architecture) {
  if (!choice.empty()) {
    if (const std::string* builtin = builtin_chat_template(choice); builtin && !std::filesystem::exists(choice))
      return {*builtin, "built-in " + choice};
    try {
      return {format::read_text_file(choice), choice};
    } catch (const Error&) {
      std::string names;
      for (const auto& n : builtin_chat_template_names()) names += (names.empty() ? "" : ", ") + n;
      throw Error("'" + choice + "' is neither a readable template file nor a built-in template (" + names + ")",
                  {.field = "--chat-template"});
    }
  }
  std::string own;
  if (std::filesystem::is_directory(tokenizer_path)) {
    try {
      own = read_chat_template(tokenizer_path);
    } catch (const Error& e) {
      // None in the folder: a built-in below. Anything else (a malformed template list) stays an error.
      if (!e.message().starts_with("no chat template")) throw;
    }
  } else {
    own = tok.config().chat_template;
  }
  if (!own.empty()) return {own, "the model's own"};
  const std::string name = pick_builtin_chat_template(tok, architecture);
  return {*builtin_chat_template(name), "built-in " + name + " (the model has none)"};
}

}  // namespace quanta::tokenizer
