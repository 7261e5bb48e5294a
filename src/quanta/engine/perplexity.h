// Perplexity and KL divergence the way llama.cpp's llama-perplexity computes
// them (tools/perplexity/perplexity.cpp, functions perplexity() and
// kl_divergence()), so numbers from the two tools can be compared directly.
//
// Method. The text is tokenized once, with the tokenizer's BOS when it adds one
// and special tokens read as plain text. The ids are cut into
// n_chunks = n_tokens / n_ctx non-overlapping chunks of n_ctx ids (the tail is
// dropped; at least 2 * n_ctx ids are required). Each chunk runs from an empty
// context; its first id is replaced by BOS when the tokenizer adds BOS. With
// first = n_ctx / 2, the logits at positions first .. n_ctx - 2 are scored
// against the ids at first + 1 .. n_ctx - 1: n_ctx - 1 - first per chunk, so
// every scored token has seen at least half a context. PPL = exp(mean NLL); its
// uncertainty is PPL * sqrt(var(NLL) / (count - 1)).
//
// KL divergence. A base run saves, for every scored position, the full
// log-probability row. The file is llama-perplexity's `--kl-divergence-base`
// format, so either tool reads the other's files:
//   "_logits_"  u32 n_ctx  i32 n_vocab  i32 n_chunks  i32 ids[n_chunks * n_ctx]
//   then per chunk, n_ctx - 1 - n_ctx/2 rows of nv = 2 * ((n_vocab + 1) / 2) + 4
//   u16: f32 scale, f32 min_log_prob, then n_vocab u16 q (and a pad to even),
//   log p[i] ~= scale * q[i] + min_log_prob, over a range of at most 16 nats
//   below the top log-probability (lower ones are stored as 0 = the floor).
// All little-endian. The ids are the tokenized text as it was (the BOS
// replacement happens at run time). A later run of another model reads the
// rows back and computes, per position, KL(base || model) over the tokens whose
// stored log-probability is above -16, the model's and the base's NLL, the
// change in the probability of the true token (Δp = p_model - p_base), and
// whether both put the same token on top.
//
// Non-goals: llama-perplexity's strided mode (--ppl-stride), multiple-choice
// and HellaSwag/Winogrande scoring.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace quanta {
class ThreadPool;
}
namespace quanta::model {
class DecoderModel;
}

namespace quanta::engine {

// Positions first = n_ctx / 2 .. n_ctx - 2 of each chunk are scored.
inline int64_t ppl_first_scored(int64_t n_ctx) { return n_ctx / 2; }
inline int64_t ppl_scored_per_chunk(int64_t n_ctx) { return n_ctx - 1 - n_ctx / 2; }

// Runs `model` over chunks 0 .. n_chunks-1 of `ids` (chunk c = ids[c*n_ctx, (c+1)*n_ctx),
// its first id replaced by `bos` if given): the first half as context, then the
// scored positions in slices of at most `max_rows` tokens, so the logits buffer
// stays bounded (max_rows * vocab floats). For each slice it calls
// on_rows(c, j0, n, logits, targets): logits [n, vocab] f32 for positions
// first + j0 .. first + j0 + n - 1 of chunk c, and the n ids they predict.
// Throws Error if ids holds fewer than n_chunks * n_ctx ids.
using RowsCallback =
    std::function<void(int64_t chunk, int64_t j0, int64_t n, const float* logits, const int32_t* targets)>;
void run_scored_chunks(const model::DecoderModel& model, std::span<const int32_t> ids, int64_t n_ctx,
                       int64_t n_chunks, std::optional<int32_t> bos, ThreadPool& pool,
                       const RowsCallback& on_rows, int64_t max_rows = 128);

// Softmax facts of one logits row, computed in double.
struct RowStats {
  double nll;        // -log p(target)
  int32_t top;       // argmax (the first of equal maxima)
  double log_sum;    // max + log(sum exp(x - max)): log p(i) = x[i] - log_sum
};
RowStats row_stats(const float* logits, int64_t vocab, int32_t target);

// Mean and the standard error of the mean, as llama-perplexity reports them:
// sqrt((E[x^2] - E[x]^2) / (n - 1)).
struct MeanErr {
  double mean = 0, err = 0;
};

// Running NLL sums of a perplexity run.
struct PplAccumulator {
  double sum = 0, sum2 = 0;
  int64_t count = 0;
  void add(double nll) { sum += nll, sum2 += nll * nll, ++count; }
  double ppl() const;
  double ppl_err() const;  // ppl * standard error of the mean NLL
};

// --- KL-divergence base files (llama-perplexity format, see above) ---------

struct KlBaseHeader {
  int64_t n_ctx = 0;
  int64_t n_vocab = 0;
  int64_t n_chunks = 0;
  std::vector<int32_t> ids;  // n_chunks * n_ctx
};

// Row length in u16 units: 4 for the two f32 and n_vocab rounded up to even.
inline int64_t kl_row_u16(int64_t n_vocab) { return 2 * ((n_vocab + 1) / 2) + 4; }

// Encodes the log-softmax of one logits row as llama-perplexity does (16-nat
// window below the top, 65535 steps). `row` must hold kl_row_u16(vocab) u16.
void encode_log_probs(const float* logits, int64_t vocab, uint16_t* row);

class KlBaseWriter {
 public:
  // Creates the file and writes the header; Error naming the file if it cannot.
  KlBaseWriter(const std::string& path, const KlBaseHeader& header);
  // The next n encoded rows (n * kl_row_u16(n_vocab) u16), in position order.
  void write_rows(const uint16_t* rows, int64_t n);
  // Flushes and checks that every row was written; Error otherwise.
  void finish();
  ~KlBaseWriter();

 private:
  std::string path_;
  int64_t row_u16_ = 0, rows_expected_ = 0, rows_written_ = 0;
  std::FILE* f_ = nullptr;
};

class KlBaseReader {
 public:
  // Reads and validates the header and the file size (n_ctx >= 2, n_vocab >= 1,
  // n_chunks >= 1, ids inside the vocabulary, exactly the bytes the header
  // implies); Error naming the file and the field otherwise.
  explicit KlBaseReader(const std::string& path);
  const KlBaseHeader& header() const { return header_; }
  // The next n rows, in position order (valid until the next call).
  const uint16_t* read_rows(int64_t n);
  ~KlBaseReader();

 private:
  std::string path_;
  KlBaseHeader header_;
  int64_t row_u16_ = 0;
  std::FILE* f_ = nullptr;
  std::vector<uint16_t> buf_;
};

// One position compared with its stored base row.
struct KlPosition {
  double kld;       // sum over base tokens with log p_base > -16 of p_base * (log p_base - log p)
  double nll;       // this model's -log p(target)
  double nll_base;  // the base's -log p(target), from the stored row
  double p_diff;    // p(target) - p_base(target)
  bool same_top;    // argmax of this model == argmax of the stored row
};
KlPosition kl_position(const float* logits, int64_t vocab, const uint16_t* base_row, int32_t target);

// Sums over positions, and the per-position values for percentiles.
struct KlAccumulator {
  double sum_nll = 0, sum_nll2 = 0, sum_nll_base = 0, sum_nll_base2 = 0, sum_nll_nll_base = 0;
  double sum_kld = 0, sum_kld2 = 0, sum_p_diff = 0, sum_p_diff2 = 0, sum_p_diff4 = 0;
  int64_t same_top = 0, count = 0;
  std::vector<float> kld_values, p_diff_values;
  void add(const KlPosition& p);
};

// The summary llama-perplexity prints at the end of a KL run.
struct KlSummary {
  int64_t count = 0;
  MeanErr ppl, ppl_base;         // exp(mean NLL) and its uncertainty
  double ppl_correlation = 0;    // of the per-position NLLs
  MeanErr log_ppl_ratio;         // mean ln(PPL/PPL_base)
  MeanErr ppl_ratio, ppl_diff;
  MeanErr kld;                   // mean KL divergence
  MeanErr p_diff;                // mean Δp
  MeanErr p_diff_rms;
  MeanErr same_top;              // fraction of positions with the same top token
  // (label, value) from the maximum down to the minimum, at llama-perplexity's
  // fractions; linear interpolation between sorted values.
  std::vector<std::pair<std::string, double>> kld_percentiles, p_diff_percentiles;
};
KlSummary summarize(const KlAccumulator& acc);

}  // namespace quanta::engine
