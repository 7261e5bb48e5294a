#include "quanta/engine/perplexity.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "quanta/core/error.h"
#include "quanta/core/thread_pool.h"
#include "quanta/model/decoder.h"

namespace quanta::engine {

namespace {

constexpr char kMagic[8] = {'_', 'l', 'o', 'g', 'i', 't', 's', '_'};
constexpr uint64_t kHeaderBytes = 8 + 4 + 4 + 4;
// Log-probabilities more than this far below the top are stored as the floor
// and left out of the KL sum (llama-perplexity's window).
constexpr float kWindow = 16.0f;

// Round to nearest int, ties to even (llama-perplexity's nearest_int does the same
// with the 1.5 * 2^23 trick).
int nearest(float v) { return static_cast<int>(std::nearbyint(v)); }

MeanErr mean_err(double sum, double sum2, int64_t n) {
  // llama-perplexity's mean_and_uncertainty: no uncertainty for 10 values or fewer.
  if (n < 1) return {};
  const double mean = sum / static_cast<double>(n);
  const double var = sum2 / static_cast<double>(n) - mean * mean;
  return {mean, var > 0 && n > 10 ? std::sqrt(var / static_cast<double>(n - 1)) : 0.0};
}

double covariance(double sum_a, double sum_b, double sum_ab, int64_t n) {
  if (n < 10) return 0.0;
  const double dn = static_cast<double>(n);
  return (sum_ab / dn - (sum_a / dn) * (sum_b / dn)) / (dn - 1);
}

// Linear interpolation between sorted values at fraction f of the way.
double percentile(const std::vector<float>& sorted, double f) {
  if (sorted.empty()) return 0.0;
  if (f <= 0) return sorted.front();
  if (f >= 1) return sorted.back();
  const double p = f * static_cast<double>(sorted.size() - 1);
  const size_t i = static_cast<size_t>(p);
  const double t = p - static_cast<double>(i);
  return (1 - t) * sorted[i] + t * sorted[std::min(i + 1, sorted.size() - 1)];
}

void read_exact(std::FILE* f, void* dst, size_t n, const std::string& path, const char* field) {
  if (std::fread(dst, 1, n, f) != n) throw Error("file ends early", {.file = path, .field = field});
}

}  // namespace

void run_scored_chunks(const model::DecoderModel& model, std::span<const int32_t> ids, int64_t n_ctx,
                       int64_t n_chunks, std::optional<int32_t> bos, ThreadPool& pool,
                       const RowsCallback& on_rows, int64_t max_rows) {
  QUANTA_ASSERT(n_ctx >= 3 && max_rows >= 1);  // a chunk of 2 scores no row (CLI and base reader refuse it)
  if (static_cast<int64_t>(ids.size()) < n_chunks * n_ctx)
    throw Error(std::to_string(n_chunks) + " chunks of " + std::to_string(n_ctx) + " tokens need " +
                std::to_string(n_chunks * n_ctx) + " tokens, the text has " + std::to_string(ids.size()));
  const int64_t vocab = model.config().vocab_size;
  const int64_t first = ppl_first_scored(n_ctx), scored = ppl_scored_per_chunk(n_ctx);
  const int64_t rows = std::min(max_rows, scored);
  std::vector<float> logits(static_cast<size_t>(rows * vocab));
  for (int64_t c = 0; c < n_chunks; ++c) {
    std::vector<int32_t> chunk(ids.begin() + c * n_ctx, ids.begin() + (c + 1) * n_ctx);
    if (bos) chunk[0] = *bos;
    model::KvCache cache = model.make_cache(n_ctx);
    // The first half is context only (forward leaves the last row's logits, unused).
    model.forward(chunk.data(), first, cache, logits.data(), false, pool);
    // Positions first .. n_ctx - 2 predict first + 1 .. n_ctx - 1; the last id is never fed.
    for (int64_t j0 = 0; j0 < scored; j0 += rows) {
      const int64_t n = std::min(rows, scored - j0);
      model.forward(chunk.data() + first + j0, n, cache, logits.data(), true, pool);
      on_rows(c, j0, n, logits.data(), chunk.data() + first + j0 + 1);
    }
  }
}

RowStats row_stats(const float* logits, int64_t vocab, int32_t target) {
  QUANTA_ASSERT(vocab > 0 && target >= 0 && target < vocab);
  int64_t top = 0;
  for (int64_t i = 1; i < vocab; ++i)
    if (logits[i] > logits[top]) top = i;
  const float mx = logits[top];
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(logits[i] - mx);
  const double log_sum = static_cast<double>(mx) + std::log(sum);
  return {log_sum - static_cast<double>(logits[target]), static_cast<int32_t>(top), log_sum};
}

double PplAccumulator::ppl() const { return count ? std::exp(sum / static_cast<double>(count)) : 0.0; }

double PplAccumulator::ppl_err() const {
  if (count < 2) return 0.0;
  const double mean = sum / static_cast<double>(count);
  const double var = sum2 / static_cast<double>(count) - mean * mean;
  return var > 0 ? ppl() * std::sqrt(var / static_cast<double>(count - 1)) : 0.0;
}

// ---- Base files ------------------------------------------------------------

void encode_log_probs(const float* logits, int64_t vocab, uint16_t* row) {
  float mx = logits[0], mn = logits[0];
  for (int64_t i = 1; i < vocab; ++i) mx = std::max(mx, logits[i]), mn = std::min(mn, logits[i]);
  mn = std::max(mn, mx - kWindow);
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(logits[i] - mx);
  const float log_sum = static_cast<float>(std::log(sum));
  const float min_log_prob = mn - mx - log_sum;
  const float scale = (mx - mn) / 65535.0f;
  std::memcpy(row, &scale, 4);
  std::memcpy(row + 2, &min_log_prob, 4);
  uint16_t* q = row + 4;
  const int64_t padded = kl_row_u16(vocab) - 4;
  std::fill(q, q + padded, uint16_t{0});
  if (scale > 0) {
    const float inv = 1.0f / scale;
    for (int64_t i = 0; i < vocab; ++i)
      if (logits[i] > mn) q[i] = static_cast<uint16_t>(std::clamp(nearest(inv * (logits[i] - mn)), 0, 65535));
  }
}

KlBaseWriter::KlBaseWriter(const std::string& path, const KlBaseHeader& h) : path_(path) {
  QUANTA_ASSERT(h.n_ctx >= 3 && h.n_vocab >= 1 && h.n_chunks >= 1 &&
                static_cast<int64_t>(h.ids.size()) == h.n_chunks * h.n_ctx);
  if (h.n_ctx > UINT32_MAX || h.n_vocab > INT32_MAX || h.n_chunks > INT32_MAX)
    throw Error("too large for the base-file format", {.file = path});
  row_u16_ = kl_row_u16(h.n_vocab);
  rows_expected_ = h.n_chunks * ppl_scored_per_chunk(h.n_ctx);
  f_ = std::fopen(path.c_str(), "wb");
  if (!f_) throw Error(std::string("cannot create the file: ") + std::strerror(errno), {.file = path});
  const uint32_t n_ctx = static_cast<uint32_t>(h.n_ctx);
  const int32_t n_vocab = static_cast<int32_t>(h.n_vocab), n_chunks = static_cast<int32_t>(h.n_chunks);
  bool ok = std::fwrite(kMagic, 1, 8, f_) == 8 && std::fwrite(&n_ctx, 4, 1, f_) == 1 &&
            std::fwrite(&n_vocab, 4, 1, f_) == 1 && std::fwrite(&n_chunks, 4, 1, f_) == 1 &&
            std::fwrite(h.ids.data(), 4, h.ids.size(), f_) == h.ids.size();
  if (!ok) throw Error("cannot write the file", {.file = path});
}

void KlBaseWriter::write_rows(const uint16_t* rows, int64_t n) {
  QUANTA_ASSERT(f_ && rows_written_ + n <= rows_expected_);
  const size_t count = static_cast<size_t>(n * row_u16_);
  if (std::fwrite(rows, 2, count, f_) != count) throw Error("cannot write the file (disk full?)", {.file = path_});
  rows_written_ += n;
}

void KlBaseWriter::finish() {
  QUANTA_ASSERT(f_ && rows_written_ == rows_expected_);
  const bool ok = std::fclose(f_) == 0;
  f_ = nullptr;
  if (!ok) throw Error("cannot write the file (disk full?)", {.file = path_});
}

KlBaseWriter::~KlBaseWriter() {
  if (f_) std::fclose(f_);
}

KlBaseReader::KlBaseReader(const std::string& path) : path_(path) {
  f_ = std::fopen(path.c_str(), "rb");
  if (!f_) throw Error(std::string("cannot open the KL-divergence base file: ") + std::strerror(errno), {.file = path});
  char magic[8];
  if (std::fread(magic, 1, 8, f_) != 8 || std::memcmp(magic, kMagic, 8) != 0)
    throw Error("not a KL-divergence base file (it does not start with \"_logits_\"; write one with "
                "--kl-divergence-base FILE and no --kl-divergence)",
                {.file = path, .field = "magic"});
  uint32_t n_ctx;
  int32_t n_vocab, n_chunks;
  read_exact(f_, &n_ctx, 4, path, "n_ctx");
  read_exact(f_, &n_vocab, 4, path, "n_vocab");
  read_exact(f_, &n_chunks, 4, path, "n_chunks");
  if (n_ctx < 3 || n_ctx > (1u << 24)) throw Error("is " + std::to_string(n_ctx) + ", out of range", {.file = path, .field = "n_ctx"});
  if (n_vocab < 1) throw Error("is " + std::to_string(n_vocab) + ", must be positive", {.file = path, .field = "n_vocab"});
  if (n_chunks < 1) throw Error("is " + std::to_string(n_chunks) + ", must be positive", {.file = path, .field = "n_chunks"});
  header_.n_ctx = n_ctx;
  header_.n_vocab = n_vocab;
  header_.n_chunks = n_chunks;
  row_u16_ = kl_row_u16(n_vocab);
  // The size the header implies, checked before anything is allocated.
  const uint64_t n_ids = static_cast<uint64_t>(n_ctx) * static_cast<uint64_t>(n_chunks);
  const uint64_t n_rows = static_cast<uint64_t>(n_chunks) * static_cast<uint64_t>(ppl_scored_per_chunk(n_ctx));
  const uint64_t expect = kHeaderBytes + 4 * n_ids + 2 * n_rows * static_cast<uint64_t>(row_u16_);
  if (std::fseek(f_, 0, SEEK_END) != 0) throw Error("cannot seek", {.file = path});
  const uint64_t size = static_cast<uint64_t>(std::ftell(f_));
  if (size != expect)
    throw Error("is " + std::to_string(size) + " bytes, but its header (n_ctx " + std::to_string(n_ctx) + ", n_vocab " +
                    std::to_string(n_vocab) + ", n_chunks " + std::to_string(n_chunks) + ") implies " +
                    std::to_string(expect) + (size < expect ? ": truncated" : ": trailing bytes"),
                {.file = path, .field = "size"});
  std::fseek(f_, static_cast<long>(kHeaderBytes), SEEK_SET);
  header_.ids.resize(n_ids);
  read_exact(f_, header_.ids.data(), 4 * n_ids, path, "tokens");
  for (size_t i = 0; i < header_.ids.size(); ++i)
    if (header_.ids[i] < 0 || header_.ids[i] >= n_vocab)
      throw Error("token " + std::to_string(i) + " is " + std::to_string(header_.ids[i]) + ", outside the vocabulary of " +
                      std::to_string(n_vocab),
                  {.file = path, .field = "tokens"});
}

const uint16_t* KlBaseReader::read_rows(int64_t n) {
  buf_.resize(static_cast<size_t>(n * row_u16_));
  read_exact(f_, buf_.data(), buf_.size() * 2, path_, "log-probs");
  return buf_.data();
}

KlBaseReader::~KlBaseReader() {
  if (f_) std::fclose(f_);
}

// ---- KL divergence ---------------------------------------------------------

KlPosition kl_position(const float* logits, int64_t vocab, const uint16_t* base_row, int32_t target) {
  const RowStats s = row_stats(logits, vocab, target);
  float scale, min_log_prob;
  std::memcpy(&scale, base_row, 4);
  std::memcpy(&min_log_prob, base_row + 2, 4);
  const uint16_t* q = base_row + 4;
  KlPosition p{};
  p.nll = s.nll;
  p.nll_base = -(static_cast<double>(scale) * q[target] + min_log_prob);
  double kld = 0;
  int64_t top_base = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    if (q[i] > q[top_base]) top_base = i;
    const float log_p_base = scale * q[i] + min_log_prob;
    if (log_p_base > -kWindow)
      kld += static_cast<double>(std::exp(log_p_base)) * (log_p_base - (logits[i] - s.log_sum));
  }
  p.kld = kld;
  p.same_top = top_base == s.top;
  p.p_diff = std::exp(-p.nll) - std::exp(-p.nll_base);
  return p;
}

void KlAccumulator::add(const KlPosition& p) {
  sum_nll += p.nll;
  sum_nll2 += p.nll * p.nll;
  sum_nll_base += p.nll_base;
  sum_nll_base2 += p.nll_base * p.nll_base;
  sum_nll_nll_base += p.nll * p.nll_base;
  sum_kld += p.kld;
  sum_kld2 += p.kld * p.kld;
  sum_p_diff += p.p_diff;
  sum_p_diff2 += p.p_diff * p.p_diff;
  sum_p_diff4 += p.p_diff * p.p_diff * p.p_diff * p.p_diff;
  same_top += p.same_top;
  ++count;
  kld_values.push_back(static_cast<float>(p.kld));
  p_diff_values.push_back(static_cast<float>(p.p_diff));
}

KlSummary summarize(const KlAccumulator& a) {
  KlSummary s;
  s.count = a.count;
  const MeanErr log_ppl = mean_err(a.sum_nll, a.sum_nll2, a.count);
  const MeanErr log_ppl_base = mean_err(a.sum_nll_base, a.sum_nll_base2, a.count);
  const double ppl = std::exp(log_ppl.mean), ppl_base = std::exp(log_ppl_base.mean);
  s.ppl = {ppl, ppl * log_ppl.err};
  s.ppl_base = {ppl_base, ppl_base * log_ppl_base.err};
  const double cov = covariance(a.sum_nll, a.sum_nll_base, a.sum_nll_nll_base, a.count);
  s.ppl_correlation = log_ppl.err > 0 && log_ppl_base.err > 0 ? cov / (log_ppl.err * log_ppl_base.err) : 0.0;
  const double ratio_err =
      std::sqrt(std::max(0.0, log_ppl.err * log_ppl.err + log_ppl_base.err * log_ppl_base.err - 2.0 * cov));
  s.log_ppl_ratio = {log_ppl.mean - log_ppl_base.mean, ratio_err};
  s.ppl_ratio = {std::exp(s.log_ppl_ratio.mean), std::exp(s.log_ppl_ratio.mean) * ratio_err};
  const double ppl_cov = ppl * ppl_base * cov;
  s.ppl_diff = {ppl - ppl_base,
                std::sqrt(std::max(0.0, s.ppl.err * s.ppl.err + s.ppl_base.err * s.ppl_base.err - 2.0 * ppl_cov))};
  s.kld = mean_err(a.sum_kld, a.sum_kld2, a.count);
  s.p_diff = mean_err(a.sum_p_diff, a.sum_p_diff2, a.count);
  const MeanErr mse = mean_err(a.sum_p_diff2, a.sum_p_diff4, a.count);
  const double rms = std::sqrt(mse.mean);
  s.p_diff_rms = {rms, rms > 0 ? 0.5 / rms * mse.err : 0.0};
  const double top = a.count ? static_cast<double>(a.same_top) / static_cast<double>(a.count) : 0.0;
  s.same_top = {top, a.count > 1 ? std::sqrt(top * (1 - top) / static_cast<double>(a.count - 1)) : 0.0};

  std::vector<float> kld = a.kld_values, pd = a.p_diff_values;
  std::sort(kld.begin(), kld.end());
  std::sort(pd.begin(), pd.end());
  s.kld_percentiles = {{"Maximum", percentile(kld, 1)},   {"99.9%", percentile(kld, 0.999)},
                       {"99.0%", percentile(kld, 0.99)},  {"95.0%", percentile(kld, 0.95)},
                       {"90.0%", percentile(kld, 0.9)},   {"Median", percentile(kld, 0.5)},
                       {"10.0%", percentile(kld, 0.1)},   {"5.0%", percentile(kld, 0.05)},
                       {"1.0%", percentile(kld, 0.01)},   {"0.1%", percentile(kld, 0.001)},
                       {"Minimum", percentile(kld, 0)}};
  s.p_diff_percentiles = {{"Maximum", percentile(pd, 1)},  {"99.9%", percentile(pd, 0.999)},
                          {"99.0%", percentile(pd, 0.99)}, {"95.0%", percentile(pd, 0.95)},
                          {"90.0%", percentile(pd, 0.9)},  {"75.0%", percentile(pd, 0.75)},
                          {"Median", percentile(pd, 0.5)}, {"25.0%", percentile(pd, 0.25)},
                          {"10.0%", percentile(pd, 0.1)},  {"5.0%", percentile(pd, 0.05)},
                          {"1.0%", percentile(pd, 0.01)},  {"0.1%", percentile(pd, 0.001)},
                          {"Minimum", percentile(pd, 0)}};
  return s;
}

}  // namespace quanta::engine
