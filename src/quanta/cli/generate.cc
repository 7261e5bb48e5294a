// quanta generate: load a model, run one prompt, print the generated tokens.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "quanta/cli/commands.h"
#include "quanta/cli/quant_options.h"
#include "quanta/dist/comm.h"
#include "quanta/core/error.h"
#include "quanta/core/parse.h"
#include "quanta/core/thread_pool.h"
#include "quanta/engine/loader.h"
#include "quanta/engine/sampler.h"
#include "quanta/grammar/grammar.h"
#include "quanta/grammar/matcher.h"
#include "quanta/kernels/kernels.h"
#include "quanta/tokenizer/tokenizer.h"

namespace quanta::cli {

namespace {

struct GenerateOptions {
  std::string model_path;
  engine::LoadOptions load;
  std::string prompt;
  std::string prompt_ids;
  int64_t max_new_tokens = 32;
  std::optional<double> temperature, top_p, min_p, repetition_penalty;
  std::optional<int64_t> top_k;
  double frequency_penalty = 0.0, presence_penalty = 0.0;
  std::optional<uint64_t> seed;
  int threads = 0;
  bool ignore_eos = false;
  bool print_ids = false;
  bool quiet = false;
  // Constrained decoding (at most one): EBNF text, a file of it, a JSON Schema, a regex.
  std::string grammar, grammar_file, json_schema, regex;
};

// The EBNF the constraint options give ("" for none); errors name the option.
std::string constraint_ebnf(const GenerateOptions& o) {
  int given = !o.grammar.empty() + !o.grammar_file.empty() + !o.json_schema.empty() + !o.regex.empty();
  if (given > 1) throw Error("give one of --grammar, --grammar-file, --json-schema and --regex", {.field = "--grammar"});
  auto named = [](const char* flag, auto make) {
    try {
      return make();
    } catch (const Error& e) {
      throw Error(e.message(), {.field = flag});
    }
  };
  if (!o.json_schema.empty()) return named("--json-schema", [&] { return grammar::json_schema_to_ebnf(o.json_schema); });
  if (!o.regex.empty()) return named("--regex", [&] { return grammar::regex_to_ebnf(o.regex); });
  if (!o.grammar_file.empty()) {
    std::ifstream f(o.grammar_file, std::ios::binary);
    if (!f) throw Error("cannot read the file", {.file = o.grammar_file, .field = "--grammar-file"});
    return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }
  return o.grammar;
}

// The model's tokenizer: a GGUF's vocabulary, or tokenizer.json in a folder; none otherwise.
std::optional<tokenizer::Tokenizer> load_tokenizer(const std::string& path) {
  namespace fs = std::filesystem;
  if (fs::is_directory(path) && !fs::exists(fs::path(path) / "tokenizer.json")) return std::nullopt;
  return tokenizer::Tokenizer::load(path);
}

std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::string cur;
  auto flush = [&] {
    if (cur.empty()) return;
    const std::optional<int64_t> v = parse_non_negative(cur, INT32_MAX);
    if (!v)
      throw Error("'" + cur + "' is not a token id (expected non-negative integers separated by commas or spaces)",
                  {.field = "--prompt-ids"});
    ids.push_back(static_cast<int32_t>(*v));
    cur.clear();
  };
  for (char ch : text) {
    if (ch == ',' || ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r') flush();
    else cur += ch;
  }
  flush();
  if (ids.empty()) throw Error("no token ids given", {.field = "--prompt-ids"});
  return ids;
}

int run_generate(const GenerateOptions& o) {
  if (o.prompt.empty() == o.prompt_ids.empty())
    throw Error("give the prompt as text with --prompt (or --prompt - for stdin), or as token ids with --prompt-ids",
                {.field = "--prompt"});
  if (o.max_new_tokens < 0) throw Error("must not be negative", {.field = "--max-new-tokens"});
  // The constraint is compiled before the model loads, so a bad one fails at once.
  const std::string ebnf = constraint_ebnf(o);
  std::shared_ptr<const grammar::Grammar> constraint;
  if (!ebnf.empty()) {
    const char* flag = !o.json_schema.empty() ? "--json-schema" : !o.regex.empty() ? "--regex" : "--grammar";
    try {
      constraint = grammar::compile_ebnf(ebnf, flag);
    } catch (const Error& e) {
      throw Error(e.message(), {.file = o.grammar_file, .field = flag});
    }
  }
  std::optional<tokenizer::Tokenizer> tok = load_tokenizer(o.model_path);
  if (constraint && !tok) throw Error("constrained decoding needs the model's tokenizer (tokenizer.json)", {.file = o.model_path});
  std::vector<int32_t> prompt;
  if (!o.prompt.empty()) {
    if (!tok) throw Error("this model folder has no tokenizer.json; pass token ids with --prompt-ids", {.file = o.model_path});
    std::string text = o.prompt;
    if (text == "-") text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    prompt = tok->encode(text, /*add_special=*/true);
  } else {
    std::string ids_text = o.prompt_ids;
    if (ids_text == "-") ids_text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    prompt = parse_ids(ids_text);
  }
  const bool print_text = tok && !o.print_ids;

  kernels::active_isa();  // validates QUANTA_ISA before any work
  ThreadPool pool(o.threads > 0 ? o.threads : dist::default_threads());

  // Ends the progress line even when loading fails, so an error stays on a line of its own.
  struct StatusLine {
    bool open = false;
    ~StatusLine() { if (open) std::fputc('\n', stderr); }
  } status;
  auto t0 = std::chrono::steady_clock::now();
  const bool tty = isatty(fileno(stderr));
  auto progress = [&](size_t done, size_t total) {
    if (o.quiet || (!tty && done < total)) return;  // a log file gets only the final line
    status.open = true;
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "\rloading weights: %.1f / %.1f MB (%.1f MB/s)", done / 1e6, total / 1e6,
                 secs > 0 ? done / 1e6 / secs : 0.0);
    std::fflush(stderr);
  };
  engine::LoadedModel lm = engine::load_model(o.model_path, progress, o.load);
  if (engine::is_follower()) return lm.model->follow(pool), 0;  // tensor parallelism: rank 0 runs the command
  if (status.open) std::fputc('\n', stderr), status.open = false;
  const auto& cfg = lm.config;
  const auto& gen = lm.generation;

  // Sampling: command line, else generation_config.json, else SGLang's defaults.
  engine::SamplingParams sp;
  if (gen.do_sample && !*gen.do_sample) sp.temperature = 0.0;
  else if (gen.temperature) sp.temperature = *gen.temperature;
  if (gen.top_k) sp.top_k = *gen.top_k;
  if (gen.top_p) sp.top_p = *gen.top_p;
  if (gen.min_p) sp.min_p = *gen.min_p;
  if (gen.repetition_penalty) sp.repetition_penalty = *gen.repetition_penalty;
  if (o.temperature) sp.temperature = *o.temperature;
  if (o.top_k) sp.top_k = *o.top_k;
  if (o.top_p) sp.top_p = *o.top_p;
  if (o.min_p) sp.min_p = *o.min_p;
  if (o.repetition_penalty) sp.repetition_penalty = *o.repetition_penalty;
  sp.frequency_penalty = o.frequency_penalty;
  sp.presence_penalty = o.presence_penalty;
  sp.seed = o.seed ? *o.seed : std::random_device{}();
  engine::Sampler sampler(sp, prompt);

  std::vector<int64_t> eos = gen.eos_token_ids.empty() ? cfg.eos_token_ids : gen.eos_token_ids;
  if (tok)
    for (int32_t id : tok->stop_ids()) eos.push_back(id);
  std::optional<tokenizer::StreamDecoder> detok;
  if (print_text) detok.emplace(*tok, /*skip_special=*/true);
  int64_t capacity = static_cast<int64_t>(prompt.size()) + o.max_new_tokens;
  model::KvCache cache = lm.model->make_cache(capacity);
  std::vector<float> logits(static_cast<size_t>(cfg.vocab_size));
  std::optional<grammar::Matcher> matcher;
  if (constraint) {
    std::vector<int32_t> ends;
    if (!o.ignore_eos)
      for (int64_t e : eos) ends.push_back(static_cast<int32_t>(e));
    matcher.emplace(std::make_shared<grammar::CompiledGrammar>(
        constraint, std::make_shared<grammar::TokenVocab>(tok->vocab_bytes(), std::move(ends))));
  }
  // Rows padded past the tokenizer's vocabulary are never sampled (SchedulerOptions::sample_vocab).
  const int64_t sample_vocab = tok ? std::min<int64_t>(cfg.vocab_size, tok->vocab_size()) : cfg.vocab_size;

  auto t_prompt = std::chrono::steady_clock::now();
  lm.model->forward(prompt.data(), static_cast<int64_t>(prompt.size()), cache, logits.data(), false, pool);
  auto t_gen = std::chrono::steady_clock::now();
  std::vector<int32_t> out;
  for (int64_t i = 0; i < o.max_new_tokens; ++i) {
    int32_t tok = sampler.sample(logits.data(), sample_vocab, matcher ? &*matcher : nullptr);
    if (tok < 0) break;  // the grammar is complete (or allows no token of the vocabulary)
    if (matcher) matcher->advance(tok);
    out.push_back(tok);
    bool is_eos = false;
    for (int64_t e : eos) is_eos |= e == tok;
    if (detok) {
      if (!is_eos) std::fputs(detok->step(tok).c_str(), stdout);
    } else {
      std::printf(i ? " %d" : "%d", tok);
    }
    std::fflush(stdout);
    if ((is_eos && !o.ignore_eos) || i + 1 == o.max_new_tokens) break;
    lm.model->forward(&tok, 1, cache, logits.data(), false, pool);
  }
  if (detok) std::fputs(detok->flush().c_str(), stdout);
  std::printf("\n");
  std::fflush(stdout);
  auto t_end = std::chrono::steady_clock::now();
  if (!o.quiet) {
    double pp = std::chrono::duration<double>(t_gen - t_prompt).count();
    double tg = std::chrono::duration<double>(t_end - t_gen).count();
    // Generation speed counts the forward passes after the prompt (one per token but the last).
    size_t n_steps = out.empty() ? 0 : out.size() - 1;
    std::fprintf(stderr, "prompt: %zu tokens, %.2f tokens/s | generation: %zu tokens, %.2f tokens/s | %d threads, %s\n",
                 prompt.size(), pp > 0 ? prompt.size() / pp : 0.0, out.size(),
                 tg > 0 && n_steps ? n_steps / tg : 0.0, pool.size(), kernels::isa_name(kernels::active_isa()));
  }
  return 0;
}

}  // namespace

Command add_generate(CLI::App& app) {
  auto o = std::make_shared<GenerateOptions>();
  CLI::App* sub = app.add_subcommand("generate", "Generate tokens for one prompt.");
  sub->footer(
      "Output: the generated text on stdout (token ids, space-separated, with --ids or when the model has no\n"
      "tokenizer); progress and speed on stderr. --model-path takes a Hugging Face folder or a GGUF file.\n"
      "Sampling defaults come from the model's generation_config.json (do_sample=false means greedy),\n"
      "otherwise SGLang's: temperature 1, top-p 1, top-k off, min-p 0, no penalties. Temperature 0 is greedy.");
  sub->add_option("--model-path", o->model_path, "Hugging Face model folder (config.json + *.safetensors) or GGUF file")->required();
  sub->add_option("--prompt", o->prompt, "Prompt text; '-' reads it from stdin");
  sub->add_option("--prompt-ids", o->prompt_ids, "Prompt token ids, comma- or space-separated; '-' reads them from stdin");
  sub->add_option("--max-new-tokens", o->max_new_tokens, "Tokens to generate at most")->capture_default_str();
  sub->add_option("--temperature", o->temperature, "Sampling temperature; 0 = greedy");
  sub->add_option("--top-k", o->top_k, "Keep the k most likely tokens (<= 0: off)");
  sub->add_option("--top-p", o->top_p, "Nucleus sampling: keep the smallest set of tokens with this much mass");
  sub->add_option("--min-p", o->min_p, "Drop tokens less likely than min-p times the most likely one");
  sub->add_option("--repetition-penalty", o->repetition_penalty, "Penalise tokens seen in prompt or output (1 = off)");
  sub->add_option("--frequency-penalty", o->frequency_penalty, "Subtract this times the token's output count")->capture_default_str();
  sub->add_option("--presence-penalty", o->presence_penalty, "Subtract this from tokens already in the output")->capture_default_str();
  sub->add_option("--seed", o->seed, "Random seed; the same seed gives the same tokens (default: random)");
  sub->add_option("--threads", o->threads, "Threads (default: the number of physical cores)");
  add_quantization_options(sub, o->load);
  sub->add_option("--grammar", o->grammar, "Constrain the output to this EBNF grammar (GBNF syntax, a 'root' rule)");
  sub->add_option("--grammar-file", o->grammar_file, "Constrain the output to the EBNF grammar in this file");
  sub->add_option("--json-schema", o->json_schema, "Constrain the output to JSON valid for this JSON Schema");
  sub->add_option("--regex", o->regex, "Constrain the output to text that matches this regular expression");
  sub->add_flag("--ignore-eos", o->ignore_eos, "Keep generating past end-of-sequence tokens");
  sub->add_flag("--ids", o->print_ids, "Print the generated token ids instead of text");
  sub->add_flag("--quiet", o->quiet, "No progress or speed lines on stderr");
  return [o] { return run_generate(*o); };
}

}  // namespace quanta::cli
