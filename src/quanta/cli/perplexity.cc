// quanta perplexity: perplexity of a model over a text file, and KL divergence
// against a reference model's saved log-probabilities, computed as llama.cpp's
// llama-perplexity does (method in quanta/engine/perplexity.h and in --help).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "quanta/cli/commands.h"
#include "quanta/cli/quant_options.h"
#include "quanta/dist/comm.h"
#include "quanta/core/error.h"
#include "quanta/core/thread_pool.h"
#include "quanta/engine/loader.h"
#include "quanta/engine/perplexity.h"
#include "quanta/format/hf_config.h"
#include "quanta/report/svg.h"
#include "quanta/tokenizer/tokenizer.h"

namespace quanta::cli {

namespace {

using nlohmann::ordered_json;

struct PerplexityOptions {
  std::string model_path;
  engine::LoadOptions load;
  std::string text_file;
  int64_t n_ctx = 512;
  bool n_ctx_given = false;
  int64_t max_chunks = -1;
  int threads = 0;
  std::string kl_base;
  bool kl = false;
  bool json = false;
  std::string per_token;  // --per-token FILE
};

// The text's ids and the BOS each chunk starts with (none when the tokenizer adds no BOS).
struct Tokenized {
  std::vector<int32_t> ids;
  std::optional<int32_t> bos;
};

// BOS when the tokenizer adds one (each chunk then starts with it).
std::optional<int32_t> chunk_bos(const tokenizer::Tokenizer& tok) {
  const int32_t bos = tok.special_ids().bos;
  const std::vector<int32_t> probe = tok.encode("a", true, false);
  if (bos >= 0 && !probe.empty() && probe.front() == bos) return bos;
  return std::nullopt;
}

Tokenized tokenize_file(const tokenizer::Tokenizer& tok, const std::string& file) {
  const std::string text = format::read_text_file(file);
  // As llama-perplexity: the tokenizer's special tokens (BOS) added, special-token
  // text in the file read as plain text.
  return {tok.encode(text, true, false), chunk_bos(tok)};
}

void check_vocab(const engine::LoadedModel& lm, const std::vector<int32_t>& ids, const std::string& where) {
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= lm.config.vocab_size)
      throw Error("token " + std::to_string(i) + " is id " + std::to_string(ids[i]) + ", outside the model's vocabulary of " +
                      std::to_string(lm.config.vocab_size),
                  {.file = where});
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void log_eta(const char* what, double per_chunk, int64_t n_chunks) {
  std::fprintf(stderr, "%s: %.2f seconds per chunk - ETA %.2f minutes\n", what, per_chunk,
               per_chunk * static_cast<double>(n_chunks) / 60.0);
}

// Perplexity, and with --kl-divergence-base FILE the base file for later KL runs.
int run_ppl(const PerplexityOptions& o, ThreadPool& pool) {
  if (o.text_file.empty()) throw Error("is required (the text to score)", {.field = "--file"});
  // A chunk of 2 scores nothing (its first token is context, its last is never fed) and left
  // the logits buffer empty: the context pass then wrote through a null pointer.
  if (o.n_ctx < 3) throw Error("must be at least 3 (a chunk of 2 tokens scores none)", {.field = "--ctx-size"});
  Tokenized t = tokenize_file(tokenizer::Tokenizer::load(o.model_path), o.text_file);
  const int64_t n_tokens = static_cast<int64_t>(t.ids.size());
  if (n_tokens < 2 * o.n_ctx)
    throw Error("tokenizes to " + std::to_string(n_tokens) + " tokens; a context of " + std::to_string(o.n_ctx) +
                    " needs at least " + std::to_string(2 * o.n_ctx) + " (two chunks)",
                {.file = o.text_file});
  int64_t n_chunks = n_tokens / o.n_ctx;
  if (o.max_chunks > 0) n_chunks = std::min(n_chunks, o.max_chunks);

  engine::LoadedModel lm = engine::load_model(o.model_path, {}, o.load);

  if (engine::is_follower()) return lm.model->follow(pool), 0;  // tensor parallelism: rank 0 runs the command
  check_vocab(lm, t.ids, o.text_file);
  const int64_t vocab = lm.config.vocab_size;

  std::unique_ptr<engine::KlBaseWriter> writer;
  if (!o.kl_base.empty()) {
    engine::KlBaseHeader h{o.n_ctx, vocab, n_chunks,
                           std::vector<int32_t>(t.ids.begin(), t.ids.begin() + n_chunks * o.n_ctx)};
    writer = std::make_unique<engine::KlBaseWriter>(o.kl_base, h);
  }
  std::fprintf(stderr, "perplexity: %lld tokens, %lld chunks of %lld, %lld scored per chunk, BOS %s, %d threads\n",
               static_cast<long long>(n_tokens), static_cast<long long>(n_chunks), static_cast<long long>(o.n_ctx),
               static_cast<long long>(engine::ppl_scored_per_chunk(o.n_ctx)), t.bos ? "at each chunk start" : "none",
               pool.size());
  if (writer) std::fprintf(stderr, "perplexity: saving the log-probabilities of every scored position to %s\n", o.kl_base.c_str());
  const int64_t row_u16 = engine::kl_row_u16(vocab);
  std::vector<uint16_t> encoded;
  std::vector<double> nll;
  std::vector<double> running;
  ordered_json per_token = ordered_json::array();  // --per-token: each chunk's ids and scored log-probs
  std::vector<double> chunk_logprobs;
  engine::PplAccumulator acc;
  auto t0 = std::chrono::steady_clock::now();
  engine::run_scored_chunks(
      *lm.model, t.ids, o.n_ctx, n_chunks, t.bos, pool,
      [&](int64_t c, int64_t j0, int64_t n, const float* logits, const int32_t* targets) {
        nll.assign(static_cast<size_t>(n), 0.0);
        if (writer) encoded.resize(static_cast<size_t>(n * row_u16));
        pool.parallel_for(n, 1, [&](int64_t b, int64_t e) {
          for (int64_t j = b; j < e; ++j) {
            const float* row = logits + j * vocab;
            nll[static_cast<size_t>(j)] = engine::row_stats(row, vocab, targets[j]).nll;
            if (writer) engine::encode_log_probs(row, vocab, encoded.data() + j * row_u16);
          }
        });
        for (double v : nll) acc.add(v);
        if (!o.per_token.empty())
          for (double v : nll) chunk_logprobs.push_back(-v);
        if (writer) writer->write_rows(encoded.data(), n);
        if (j0 + n < engine::ppl_scored_per_chunk(o.n_ctx)) return;
        // End of chunk c.
        if (!o.per_token.empty()) {
          std::vector<int32_t> ids(t.ids.begin() + c * o.n_ctx, t.ids.begin() + (c + 1) * o.n_ctx);
          if (t.bos) ids[0] = *t.bos;  // as the chunk ran
          per_token.push_back({{"ids", ids}, {"first_scored", engine::ppl_first_scored(o.n_ctx) + 1},
                               {"logprobs", chunk_logprobs}});
          chunk_logprobs.clear();
        }
        if (c == 0) log_eta("perplexity", seconds_since(t0), n_chunks);
        running.push_back(acc.ppl());
        if (!o.json) {
          std::printf("[%lld]%.4f,", static_cast<long long>(c + 1), acc.ppl());
          std::fflush(stdout);
        }
      });
  if (writer) writer->finish();
  if (!o.per_token.empty()) {
    report::write_report(o.per_token, ordered_json{{"n_ctx", o.n_ctx}, {"chunks", per_token}}.dump() + "\n",
                         "--per-token");
  }
  const double secs = seconds_since(t0);
  if (o.json) {
    ordered_json out = {{"model", o.model_path}, {"file", o.text_file},  {"n_ctx", o.n_ctx},
                        {"n_chunks", n_chunks},  {"n_tokens", n_tokens}, {"n_scored", acc.count},
                        {"bos", t.bos ? ordered_json(*t.bos) : ordered_json(nullptr)},
                        {"ppl", acc.ppl()},      {"ppl_err", acc.ppl_err()}, {"chunk_ppl", running},
                        {"seconds", secs}};
    if (!o.kl_base.empty()) out["kl_divergence_base"] = o.kl_base;
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::printf("\nFinal estimate: PPL = %.4f +/- %.5f\n", acc.ppl(), acc.ppl_err());
  }
  std::fprintf(stderr, "perplexity: %lld positions scored in %.2f s\n", static_cast<long long>(acc.count), secs);
  return 0;
}

// KL divergence of this model against the base file's log-probabilities.
int run_kl(const PerplexityOptions& o, ThreadPool& pool) {
  if (o.kl_base.empty())
    throw Error("needs --kl-divergence-base FILE: the log-probabilities saved by a run of the reference model",
                {.field = "--kl-divergence"});
  engine::KlBaseReader reader(o.kl_base);
  const engine::KlBaseHeader& h = reader.header();
  if (o.n_ctx_given && o.n_ctx != h.n_ctx)
    throw Error("is " + std::to_string(o.n_ctx) + ", but " + o.kl_base + " was computed with a context of " +
                    std::to_string(h.n_ctx) + " (leave --ctx-size out to use the file's)",
                {.field = "--ctx-size"});
  // The chunks' BOS; and the base file's ids must be the text's, when the text is given.
  const tokenizer::Tokenizer tok = tokenizer::Tokenizer::load(o.model_path);
  if (!o.text_file.empty()) {
    const Tokenized t = tokenize_file(tok, o.text_file);
    const size_t n = h.ids.size();
    if (t.ids.size() < n)
      throw Error("tokenizes to " + std::to_string(t.ids.size()) + " tokens, but the base file " + o.kl_base +
                      " holds " + std::to_string(n) + ": not the text it was made from",
                  {.file = o.text_file});
    for (size_t i = 0; i < n; ++i)
      if (t.ids[i] != h.ids[i])
        throw Error("token " + std::to_string(i) + " is " + std::to_string(t.ids[i]) + " here but " +
                        std::to_string(h.ids[i]) + " in the base file " + o.kl_base +
                        ": not the text (or tokenizer) it was made from",
                    {.file = o.text_file});
  }
  const std::optional<int32_t> bos = chunk_bos(tok);
  engine::LoadedModel lm = engine::load_model(o.model_path, {}, o.load);
  if (engine::is_follower()) return lm.model->follow(pool), 0;  // tensor parallelism: rank 0 runs the command
  const int64_t vocab = lm.config.vocab_size;
  if (vocab != h.n_vocab)
    throw Error("has a vocabulary of " + std::to_string(h.n_vocab) + ", the model " + o.model_path + " one of " +
                    std::to_string(vocab) + ": the base file is for another model family",
                {.file = o.kl_base, .field = "n_vocab"});
  int64_t n_chunks = h.n_chunks;
  if (o.max_chunks > 0) n_chunks = std::min(n_chunks, o.max_chunks);
  const int64_t n_ctx = h.n_ctx, scored = engine::ppl_scored_per_chunk(n_ctx);
  std::fprintf(stderr, "kl-divergence: %lld chunks of %lld from %s, %lld scored per chunk, %d threads\n",
               static_cast<long long>(n_chunks), static_cast<long long>(n_ctx), o.kl_base.c_str(),
               static_cast<long long>(scored), pool.size());

  const int64_t row_u16 = engine::kl_row_u16(vocab);
  engine::KlAccumulator acc;
  std::vector<engine::KlPosition> pos;
  std::vector<ordered_json> chunk_rows;
  if (!o.json)
    std::printf("chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              "
                "Δp RMS            Same top p\n");
  auto t0 = std::chrono::steady_clock::now();
  engine::run_scored_chunks(
      *lm.model, h.ids, n_ctx, n_chunks, bos, pool,
      [&](int64_t c, int64_t j0, int64_t n, const float* logits, const int32_t* targets) {
        const uint16_t* base = reader.read_rows(n);
        pos.assign(static_cast<size_t>(n), {});
        pool.parallel_for(n, 1, [&](int64_t b, int64_t e) {
          for (int64_t j = b; j < e; ++j)
            pos[static_cast<size_t>(j)] = engine::kl_position(logits + j * vocab, vocab, base + j * row_u16, targets[j]);
        });
        for (const auto& p : pos) acc.add(p);
        if (j0 + n < scored) return;
        if (c == 0) log_eta("kl-divergence", seconds_since(t0), n_chunks);
        const engine::KlSummary s = engine::summarize(acc);
        if (o.json) {
          chunk_rows.push_back({{"chunk", c + 1}, {"ppl", s.ppl.mean}, {"kld", s.kld.mean}, {"same_top", s.same_top.mean}});
        } else {
          std::printf("%4lld    %9.4f ± %9.4f    %10.5f ± %10.5f    %10.5f ± %10.5f    %6.3f ± %6.3f %%    %6.3f ± %6.3f %%\n",
                      static_cast<long long>(c + 1), s.ppl.mean, s.ppl.err, s.log_ppl_ratio.mean, s.log_ppl_ratio.err,
                      s.kld.mean, s.kld.err, 100 * s.p_diff_rms.mean, 100 * s.p_diff_rms.err, 100 * s.same_top.mean,
                      100 * s.same_top.err);
          std::fflush(stdout);
        }
      });
  const double secs = seconds_since(t0);
  const engine::KlSummary s = engine::summarize(acc);
  if (o.json) {
    auto me = [](const engine::MeanErr& m) { return ordered_json{{"mean", m.mean}, {"err", m.err}}; };
    auto pct = [](const std::vector<std::pair<std::string, double>>& v) {
      ordered_json j = ordered_json::object();
      for (const auto& [k, x] : v) j[k] = x;
      return j;
    };
    ordered_json out = {{"model", o.model_path},       {"kl_divergence_base", o.kl_base},
                        {"n_ctx", n_ctx},              {"n_chunks", n_chunks},
                        {"n_scored", s.count},         {"ppl", me(s.ppl)},
                        {"ppl_base", me(s.ppl_base)},  {"ppl_correlation", s.ppl_correlation},
                        {"log_ppl_ratio", me(s.log_ppl_ratio)}, {"ppl_ratio", me(s.ppl_ratio)},
                        {"ppl_diff", me(s.ppl_diff)},  {"kld", me(s.kld)},
                        {"kld_percentiles", pct(s.kld_percentiles)},
                        {"p_diff", me(s.p_diff)},      {"p_diff_percentiles", pct(s.p_diff_percentiles)},
                        {"p_diff_rms", me(s.p_diff_rms)}, {"same_top", me(s.same_top)},
                        {"chunks", chunk_rows},        {"seconds", secs}};
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::printf("\n====== Perplexity statistics ======\n");
  std::printf("Mean PPL(Q)                   : %10.6f ± %10.6f\n", s.ppl.mean, s.ppl.err);
  std::printf("Mean PPL(base)                : %10.6f ± %10.6f\n", s.ppl_base.mean, s.ppl_base.err);
  std::printf("Cor(ln(PPL(Q)), ln(PPL(base))): %6.2f%%\n", 100 * s.ppl_correlation);
  std::printf("Mean ln(PPL(Q)/PPL(base))     : %10.6f ± %10.6f\n", s.log_ppl_ratio.mean, s.log_ppl_ratio.err);
  std::printf("Mean PPL(Q)/PPL(base)         : %10.6f ± %10.6f\n", s.ppl_ratio.mean, s.ppl_ratio.err);
  std::printf("Mean PPL(Q)-PPL(base)         : %10.6f ± %10.6f\n", s.ppl_diff.mean, s.ppl_diff.err);
  std::printf("\n====== KL divergence statistics ======\n");
  std::printf("Mean    KLD: %10.6f ± %10.6f\n", s.kld.mean, s.kld.err);
  for (const auto& [label, v] : s.kld_percentiles) std::printf("%-7s KLD: %10.6f\n", label.c_str(), v);
  std::printf("\n====== Token probability statistics ======\n");
  std::printf("Mean    Δp: %6.3f ± %5.3f %%\n", 100 * s.p_diff.mean, 100 * s.p_diff.err);
  for (const auto& [label, v] : s.p_diff_percentiles) std::printf("%-7s Δp: %6.3f%%\n", label.c_str(), 100 * v);
  std::printf("RMS Δp    : %6.3f ± %5.3f %%\n", 100 * s.p_diff_rms.mean, 100 * s.p_diff_rms.err);
  std::printf("Same top p: %6.3f ± %5.3f %%\n", 100 * s.same_top.mean, 100 * s.same_top.err);
  std::fprintf(stderr, "kl-divergence: %lld positions in %.2f s\n", static_cast<long long>(s.count), secs);
  return 0;
}

int run_perplexity(const PerplexityOptions& o) {
  if (o.threads < 0) throw Error("must be at least 1", {.field = "--threads"});
  if (o.max_chunks == 0 || o.max_chunks < -1) throw Error("must be at least 1", {.field = "--chunks"});
  ThreadPool pool(o.threads > 0 ? o.threads : dist::default_threads());
  if (o.kl && !o.per_token.empty())
    throw Error("is for a plain run; --kl-divergence reads the base file's positions", {.field = "--per-token"});
  return o.kl ? run_kl(o, pool) : run_ppl(o, pool);
}

}  // namespace

Command add_perplexity(CLI::App& app) {
  auto o = std::make_shared<PerplexityOptions>();
  CLI::App* sub = app.add_subcommand("perplexity", "Perplexity over a text file, and KL divergence to a reference model "
                                                   "(as llama-perplexity).");
  add_quantization_options(sub, o->load);
  sub->footer(
      "Method (llama.cpp's llama-perplexity): the file is tokenized once, with the tokenizer's BOS and special-token\n"
      "text read as plain text, and cut into N = tokens / CTX non-overlapping chunks of CTX tokens (the tail is\n"
      "dropped; at least 2 * CTX tokens are needed). Each chunk runs from an empty context, its first token replaced\n"
      "by BOS when the tokenizer adds one. Only the second half is scored: the logits at positions CTX/2 .. CTX-2\n"
      "against the tokens at CTX/2+1 .. CTX-1, so every scored token sees at least CTX/2 tokens of context.\n"
      "Output: the running PPL after each chunk ([1]x,[2]y,...), then 'Final estimate: PPL = P +/- E', with\n"
      "P = exp(mean NLL) and E = P * sqrt(var(NLL) / (count - 1)).\n"
      "\n"
      "KL divergence, in two runs:\n"
      "  quanta perplexity -m REFERENCE -f TEXT -c CTX --kl-divergence-base BASE   (PPL, and saves BASE)\n"
      "  quanta perplexity -m MODEL --kl-divergence-base BASE --kl-divergence [-f TEXT]\n"
      "BASE holds the token ids, CTX, the vocabulary size, and for every scored position the reference's\n"
      "log-probabilities, each row as uint16 over the 16 nats below its top (llama-perplexity's file format: either\n"
      "tool reads the other's; about 2 bytes per vocabulary entry per scored position). The second run scores the\n"
      "same ids (checked against TEXT when given; CTX and the vocabulary must match) and reports PPL of both models,\n"
      "mean KL(reference || model) +- its standard error, percentiles of KL and of dp = p_model(true token) -\n"
      "p_reference(true token), RMS dp, and how often both models put the same token on top.");
  sub->add_option("-m,--model-path", o->model_path, "GGUF file or Hugging Face folder")->required();
  sub->add_option("-f,--file", o->text_file, "Text file to score (UTF-8)");
  sub->add_option("-c,--ctx-size", o->n_ctx, "Tokens per chunk")->capture_default_str();
  sub->add_option("--chunks", o->max_chunks, "Score at most this many chunks (default: all)");
  sub->add_option("-t,--threads", o->threads, "Threads (default: physical cores)");
  sub->add_option("--kl-divergence-base", o->kl_base, "Reference log-probabilities: written by a plain run, read by --kl-divergence");
  sub->add_flag("--kl-divergence", o->kl, "Compare this model with --kl-divergence-base FILE");
  sub->add_flag("--json", o->json, "Print the results as one JSON object");
  sub->add_option("--per-token", o->per_token,
                  "Write each chunk's token ids (as run) and the log-probability of each scored token (ids[first_scored..]) as JSON");
  return [o, sub] {
    o->n_ctx_given = sub->count("--ctx-size") > 0;
    return run_perplexity(*o);
  };
}

}  // namespace quanta::cli
