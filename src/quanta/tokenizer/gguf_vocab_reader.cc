// read_gguf_vocab: the tokenizer metadata of a GGUF file, through format::GgufFile.
#include "quanta/format/gguf.h"
#include "quanta/tokenizer/gguf_vocab.h"

namespace quanta::tokenizer {

GgufVocab read_gguf_vocab(const std::string& path) {
  format::GgufFile file(path);
  const format::GgufMetadata& m = file.metadata();
  GgufVocab v;
  v.source = path;
  v.architecture = m.get_string_or("general.architecture", "");
  if (!m.has("tokenizer.ggml.model"))
    throw Error("missing: this GGUF file carries no tokenizer", {.file = path, .field = "tokenizer.ggml.model"});
  v.model = m.get_string("tokenizer.ggml.model");
  v.pre = m.get_string_or("tokenizer.ggml.pre", "");
  auto ctx = [&](const char* key) { return m.context(key); };
  if (const format::GgufValue* t = m.find("tokenizer.ggml.tokens")) v.tokens = t->as_string_array(ctx("tokenizer.ggml.tokens"));
  if (const format::GgufValue* s = m.find("tokenizer.ggml.scores")) v.scores = s->as_f32_array(ctx("tokenizer.ggml.scores"));
  if (const format::GgufValue* t = m.find("tokenizer.ggml.token_type")) {
    std::vector<int64_t> types = t->as_i64_array(ctx("tokenizer.ggml.token_type"));
    v.token_types.assign(types.begin(), types.end());
  }
  if (const format::GgufValue* mm = m.find("tokenizer.ggml.merges")) v.merges = mm->as_string_array(ctx("tokenizer.ggml.merges"));
  auto id = [&](const char* key, std::optional<int64_t>& out) {
    if (const format::GgufValue* x = m.find(key)) out = x->as_i64(ctx(key));
  };
  id("tokenizer.ggml.bos_token_id", v.bos_id);
  id("tokenizer.ggml.eos_token_id", v.eos_id);
  id("tokenizer.ggml.eot_token_id", v.eot_id);
  id("tokenizer.ggml.unknown_token_id", v.unk_id);
  id("tokenizer.ggml.padding_token_id", v.pad_id);
  auto flag = [&](const char* key, std::optional<bool>& out) {
    if (m.has(key)) out = m.get_bool(key);
  };
  flag("tokenizer.ggml.add_bos_token", v.add_bos);
  flag("tokenizer.ggml.add_eos_token", v.add_eos);
  flag("tokenizer.ggml.add_space_prefix", v.add_space_prefix);
  v.chat_template = m.get_string_or("tokenizer.chat_template", "");
  return v;
}

}  // namespace quanta::tokenizer
