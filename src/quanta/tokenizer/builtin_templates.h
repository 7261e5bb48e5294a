// Chat templates built into quanta, for checkpoints that carry none (most GGUF
// files of base or older models, the default Gemma 3 270M among them), and the
// choice between those and a model's own, as `serve` and `inspect` make it.
//
// Each built-in is a short Jinja template written for quanta from the family's
// prompt format (the turn markers are the format's facts; see the .cc): gemma,
// llama3, chatml (Qwen and most fine-tunes) and mistral ([INST]). A model
// without a template gets one by its vocabulary's special tokens (the markers it
// was trained with), else by its architecture, else chatml, as llama.cpp falls
// back to chatml.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "quanta/tokenizer/tokenizer.h"

namespace quanta::tokenizer {

// The built-in template of that name, or nullptr.
const std::string* builtin_chat_template(std::string_view name);
// Their names, in a stable order.
std::vector<std::string> builtin_chat_template_names();

// The built-in a model without a template should use: by the special tokens its
// vocabulary holds, then by its architecture (config.json's name, e.g.
// "Gemma3ForCausalLM"), then chatml.
std::string pick_builtin_chat_template(const Tokenizer& tok, std::string_view architecture);

struct ChosenChatTemplate {
  std::string source;  // Jinja text
  std::string origin;  // "the model's own", "built-in NAME (the model has none)", "built-in NAME", or the file
};

// `choice` is --chat-template: empty for the model's own (a folder's
// chat_template.jinja / tokenizer_config.json, a GGUF's tokenizer.chat_template)
// or, if it has none, a built-in picked for it; else a built-in's name, or a
// file. Throws Error naming --chat-template for a file that cannot be read.
ChosenChatTemplate choose_chat_template(const std::string& choice, const std::string& tokenizer_path, const Tokenizer& tok,
                                        std::string_view architecture);

}  // namespace quanta::tokenizer
