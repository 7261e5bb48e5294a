// quanta tokenize / quanta detokenize: the tokenizer of a model on the command line.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "quanta/cli/commands.h"
#include "quanta/core/error.h"
#include "quanta/core/parse.h"
#include "quanta/tokenizer/tokenizer.h"

namespace quanta::cli {

namespace {

struct TokenizeOptions {
  std::string model_path;
  std::string text;
  bool no_special = false;
  bool pieces = false;
};

// A piece as it can be read on one line: control bytes and backslashes escaped.
std::string printable(const std::string& s) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else if (c == '\\') out += "\\\\";
    else if (c < 0x20 || c == 0x7f) out += std::string("\\x") + hex[c >> 4] + hex[c & 15];
    else out += ch;
  }
  return out;
}

int run_tokenize(const TokenizeOptions& o) {
  std::string text = o.text;
  if (text == "-") text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  tokenizer::Tokenizer tok = tokenizer::Tokenizer::load(o.model_path);
  // --no-special: no BOS/EOS from the post-processor, and special tokens written
  // in the text are plain text.
  std::vector<int32_t> ids = tok.encode(text, !o.no_special, !o.no_special);
  if (o.pieces) {
    for (int32_t id : ids) std::printf("%d\t%s\n", id, printable(tok.token_to_piece(id)).c_str());
    return 0;
  }
  for (size_t i = 0; i < ids.size(); ++i) std::printf(i ? " %d" : "%d", ids[i]);
  std::printf("\n");
  return 0;
}

struct DetokenizeOptions {
  std::string model_path;
  std::vector<std::string> ids;
  bool skip_special = false;
};

int run_detokenize(const DetokenizeOptions& o) {
  std::vector<int32_t> ids;
  for (const std::string& arg : o.ids) {
    // Each argument may itself hold several ids separated by commas or spaces.
    std::string cur;
    auto flush = [&] {
      if (cur.empty()) return;
      const std::optional<int64_t> v = parse_non_negative(cur, INT32_MAX);
      if (!v)
        throw Error("'" + cur + "' is not a token id (expected non-negative integers)", {.field = "IDS"});
      ids.push_back(static_cast<int32_t>(*v));
      cur.clear();
    };
    for (char ch : arg) {
      if (ch == ',' || ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r') flush();
      else cur += ch;
    }
    flush();
  }
  tokenizer::Tokenizer tok = tokenizer::Tokenizer::load(o.model_path);
  std::string text = tok.decode(ids, o.skip_special);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::printf("\n");
  return 0;
}

}  // namespace

Command add_tokenize(CLI::App& app) {
  auto o = std::make_shared<TokenizeOptions>();
  CLI::App* sub = app.add_subcommand("tokenize", "Print the token ids of a text.");
  sub->footer(
      "Output: the ids, space-separated, with the model's BOS/EOS as its tokenizer adds them;\n"
      "with --pieces, one 'id<TAB>piece' line per token (the vocabulary entry, control bytes escaped).\n"
      "The text must be valid UTF-8.");
  sub->add_option("--model-path", o->model_path, "Hugging Face folder (tokenizer.json) or GGUF file")->required();
  sub->add_flag("--no-special", o->no_special, "No BOS/EOS, and special tokens in the text are plain text");
  sub->add_flag("--pieces", o->pieces, "Print each id with its piece, one per line");
  sub->add_option("text", o->text, "Text to tokenize; '-' reads it from stdin")->required();
  return [o] { return run_tokenize(*o); };
}

Command add_detokenize(CLI::App& app) {
  auto o = std::make_shared<DetokenizeOptions>();
  CLI::App* sub = app.add_subcommand("detokenize", "Print the text of token ids.");
  sub->add_option("--model-path", o->model_path, "Hugging Face folder (tokenizer.json) or GGUF file")->required();
  sub->add_flag("--skip-special", o->skip_special, "Leave special tokens out of the text");
  sub->add_option("ids", o->ids, "Token ids (separate arguments, or comma/space separated)")->required();
  return [o] { return run_detokenize(*o); };
}

}  // namespace quanta::cli
