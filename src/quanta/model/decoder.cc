#include "quanta/model/decoder.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "quanta/core/error.h"
#include "quanta/core/thread_pool.h"
#include "quanta/dist/comm.h"
#include "quanta/kernels/ops.h"
#include "quanta/model/moe.h"

namespace quanta::model {

using format::ModelConfig;
using quant::LinearKernel;
using quant::LinearSpec;
using quant::ParallelRole;

struct DecoderModel::Layer {
  Tensor input_norm;      // [hidden] f32
  Tensor post_attn_norm;  // [hidden] f32 (Gemma: after o_proj; others: before the MLP)
  Tensor pre_mlp_norm;    // [hidden] f32, Gemma only
  // Additive biases of the two pre-block norms, [hidden] f32 or empty: msModelSlim's
  // anti-outlier smoothing writes <norm>.bias (SGLang then patches RMSNorm to
  // y = RMSNorm(x) * w + b, checkpoint-formats-1.md sec. 1.3).
  Tensor input_norm_bias, mlp_norm_bias;
  Tensor post_mlp_norm;   // [hidden] f32, Gemma only
  Tensor q_norm, k_norm;  // [d_head] f32, when config.qk_norm
  Tensor sinks;           // [n_heads] f32, when config.attention_sinks
  std::unique_ptr<LinearKernel> q, k, v, o;  // q: [n_heads*d_head, hidden], k/v: [n_kv_heads*d_head, hidden]
  std::unique_ptr<LinearKernel> gate, up, down;  // gate/up: [d_ff, hidden], down: [hidden, d_ff]; null when sparse
  std::unique_ptr<MoeBlock> moe;                 // a sparse layer's experts, else null
  bool sliding = false;

  size_t weight_bytes() const {
    size_t n = moe ? moe->weight_bytes() : 0;
    for (const auto* lin : {q.get(), k.get(), v.get(), o.get(), gate.get(), up.get(), down.get()})
      if (lin) n += lin->weight_bytes();
    return n;
  }
};

namespace {

// Reads a norm weight as f32 and checks its shape.
Tensor load_vector(const format::TensorSource& source, const std::string& name, int64_t n) {
  Tensor t = source.get(name);
  if (t.shape() != Shape{n})
    throw Error("shape " + shape_str(t.shape()) + " does not match the model config, which needs " +
                    shape_str({n}),
                {.file = source.file_of(name), .tensor = name});
  if (t.dtype() != DType::kF32 && t.dtype() != DType::kBF16 && t.dtype() != DType::kF16)
    throw Error("dtype " + std::string(dtype_name(t.dtype())) + " is not a float type",
                {.file = source.file_of(name), .tensor = name});
  return t.to_f32();
}

// y[t, :] += b for every row t (nothing when b is empty).
void add_rows(float* y, const Tensor& b, int64_t n_rows, int64_t n) {
  if (b.empty()) return;
  const float* bv = b.data<float>();
  for (int64_t t = 0; t < n_rows; ++t)
    for (int64_t i = 0; i < n; ++i) y[t * n + i] += bv[i];
}

// A step as rank 0 sends it to the other ranks: the pool's geometry, then per sequence
// its new tokens, first position, all_logits and block table (already reserved).
// Sent as its length, then the numbers: a length of 0 ends follow().
void broadcast_step(dist::Communicator& comm, const std::vector<SequenceStep>& steps, const KvPool& kv_pool) {
  std::vector<int64_t> msg = {static_cast<int64_t>(steps.size()), kv_pool.n_blocks(), kv_pool.block_size()};
  for (const SequenceStep& st : steps) {
    msg.insert(msg.end(), {st.n_tokens, st.kv->n_tokens, st.all_logits ? 1 : 0, static_cast<int64_t>(st.kv->blocks.size())});
    msg.insert(msg.end(), st.tokens, st.tokens + st.n_tokens);
    msg.insert(msg.end(), st.kv->blocks.begin(), st.kv->blocks.end());
  }
  int64_t len = static_cast<int64_t>(msg.size());
  comm.broadcast_idle(&len, sizeof(len));
  comm.broadcast(msg.data(), msg.size() * sizeof(int64_t));
}

}  // namespace

// Every rank must have loaded the same model: rank 0's checksum of the plan (shapes, the
// formats and bytes of every Linear) against each rank's own. A rank with another file
// stops here with an error naming it (and mpirun ends the job).
void DecoderModel::check_same_plan(dist::Communicator& comm, const DecoderModel& m) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  auto mix = [&](const std::string& s) {
    for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  };
  const ModelConfig& c = m.config_;
  for (int64_t v : {c.n_layers, c.hidden_size, c.intermediate_size, c.n_heads, c.n_kv_heads, c.d_head, c.vocab_size})
    mix(std::to_string(v) + ",");
  for (const auto& l : m.layers_)
    for (const auto* lin : {l->q.get(), l->k.get(), l->v.get(), l->o.get(), l->gate.get(), l->up.get(), l->down.get()})
      if (lin) mix(lin->format() + ":" + std::to_string(lin->n_in()) + "x" + std::to_string(lin->n_out()) + ";");
  mix(m.embedding_->format());
  uint64_t root = h;
  comm.broadcast(&root, sizeof(root));
  if (root != h)
    throw Error("rank " + std::to_string(comm.rank()) + " loaded a model whose plan (shapes and formats) differs from "
                    "rank 0's: every rank must load the same model file",
                {.field = "--model-path"});
}

void DecoderModel::follow(ThreadPool& pool) const {
  if (!tp() || comm_->rank() == 0) return;
  std::unique_ptr<KvPool> kv;
  std::vector<int64_t> msg;
  while (true) {
    int64_t len = 0;
    comm_->broadcast_idle(&len, sizeof(len));
    if (len == 0) return;
    msg.resize(static_cast<size_t>(len));
    comm_->broadcast(msg.data(), msg.size() * sizeof(int64_t));
    const int64_t n_steps = msg[0], n_blocks = msg[1], block_size = msg[2];
    // Rank 0's pool, mirrored: same block ids, so shared prefix blocks hold the same keys.
    if (!kv || kv->n_blocks() != n_blocks || kv->block_size() != block_size)
      kv = std::make_unique<KvPool>(make_pool(n_blocks, block_size));
    std::vector<KvSequence> seqs(static_cast<size_t>(n_steps));
    std::vector<std::vector<int32_t>> tokens(static_cast<size_t>(n_steps));
    std::vector<SequenceStep> steps;
    size_t at = 3;
    for (int64_t i = 0; i < n_steps; ++i) {
      const int64_t n_tokens = msg[at], start = msg[at + 1], n_table = msg[at + 3];
      const bool all_logits = msg[at + 2] != 0;
      at += 4;
      auto& toks = tokens[static_cast<size_t>(i)];
      auto& seq = seqs[static_cast<size_t>(i)];
      toks.assign(msg.begin() + static_cast<std::ptrdiff_t>(at), msg.begin() + static_cast<std::ptrdiff_t>(at + n_tokens));
      at += static_cast<size_t>(n_tokens);
      seq.blocks.assign(msg.begin() + static_cast<std::ptrdiff_t>(at), msg.begin() + static_cast<std::ptrdiff_t>(at + n_table));
      at += static_cast<size_t>(n_table);
      seq.n_tokens = start;
      steps.push_back({&seq, toks.data(), n_tokens, all_logits});
    }
    forward(steps, *kv, nullptr, pool);
  }
}

bool DecoderModel::tp() const { return comm_ && comm_->size() > 1; }

DecoderModel::~DecoderModel() {
  if (tp() && comm_->rank() == 0) {
    int64_t stop = 0;  // a message of length 0
    comm_->broadcast_idle(&stop, sizeof(stop));
  }
}

void DecoderModel::check_tp_split(const ModelConfig& c, int n, bool expert_parallel) {
  if (n < 1) throw Error("must be at least 1", {.field = "--tp-size"});
  if (n == 1) return;
  auto refuse = [&](const std::string& what) {
    throw Error(what + ", so the model cannot be split over --tp-size " + std::to_string(n) + " ranks",
                {.field = "--tp-size"});
  };
  bool moe = false;
  for (bool m : c.layer_is_moe) moe |= m;
  if (moe && expert_parallel && c.moe.n_experts % n != 0)
    refuse("num_experts (" + std::to_string(c.moe.n_experts) + ") is not a multiple of " + std::to_string(n) +
           " (--enable-ep-moe)");
  if (moe && !expert_parallel && c.moe.expert_ffn % n != 0)
    refuse("moe_intermediate_size (" + std::to_string(c.moe.expert_ffn) + ") is not a multiple of " + std::to_string(n));
  if (moe && c.moe.shared_expert_ffn % n != 0)
    refuse("shared_expert_intermediate_size (" + std::to_string(c.moe.shared_expert_ffn) + ") is not a multiple of " +
           std::to_string(n));
  if (c.n_heads % n != 0)
    refuse("num_attention_heads (" + std::to_string(c.n_heads) + ") is not a multiple of " + std::to_string(n));
  if (c.n_kv_heads >= n ? c.n_kv_heads % n != 0 : n % c.n_kv_heads != 0)
    refuse("num_key_value_heads (" + std::to_string(c.n_kv_heads) + ") neither divides into " + std::to_string(n) +
           " parts nor divides " + std::to_string(n) + " (for replicated KV heads)");
  if (c.intermediate_size % n != 0)
    refuse("intermediate_size (" + std::to_string(c.intermediate_size) + ") is not a multiple of " + std::to_string(n));
}

std::unique_ptr<DecoderModel> DecoderModel::load(const ModelConfig& config,
                                                 const format::TensorSource& source,
                                                 const quant::QuantMethod& method,
                                                 const LoadProgress& progress, dist::Communicator* comm,
                                                 bool expert_parallel) {
  std::unique_ptr<DecoderModel> m(new DecoderModel());
  m->config_ = config;
  const ModelConfig& c = m->config_;
  const int64_t n_ranks = comm ? comm->size() : 1, rank = comm ? comm->rank() : 0;
  check_tp_split(c, static_cast<int>(n_ranks), expert_parallel);
  m->comm_ = comm;
  m->n_heads_ = c.n_heads / n_ranks;
  m->n_kv_heads_ = std::max<int64_t>(1, c.n_kv_heads / n_ranks);
  m->d_ff_ = c.intermediate_size / n_ranks;
  // KV heads fewer than ranks: each is kept by n_ranks / n_kv_heads consecutive ranks.
  const int64_t kv_shards = std::min(n_ranks, c.n_kv_heads);
  const int64_t kv_shard = rank / (n_ranks / kv_shards);
  const int64_t hidden = c.hidden_size, d_ff = c.intermediate_size;
  const int64_t q_dim = c.n_heads * c.d_head, kv_dim = c.n_kv_heads * c.d_head;

  // Total bytes, for the progress line. Methods make the weights they keep
  // resident while loading, so progress follows what has really been read.
  size_t total = 0;
  for (const auto& name : source.names()) total += source.stored_bytes(name);
  size_t done = 0;
  auto report = [&](size_t bytes) {
    done += bytes;
    if (progress) progress(std::min(done, total), total);
  };
  std::vector<std::string> names;  // the source's names, listed once if a layer is sparse
  auto linear = [&](const std::string& prefix, int64_t n_in, int64_t n_out, bool bias, ParallelRole role,
                    int64_t shard = -1, int64_t n_shards = -1) {
    LinearSpec spec{prefix, n_in, n_out, bias, role};
    if (role != ParallelRole::kReplicated) {
      spec.shard = shard >= 0 ? shard : rank;
      spec.n_shards = n_shards > 0 ? n_shards : n_ranks;
    }
    if (role == ParallelRole::kRow && spec.n_shards > 1)
      spec.reduce_max = [comm](float* values, int64_t n) { comm->all_reduce_max(values, n); };
    return method.load_linear(source, spec);
  };

  // The embedding table is looked up row by row through the same kernel
  // interface as a Linear, so it may be stored in any format a method reads.
  // Under tensor parallelism with a vocabulary that splits, lm_head is its own kernel
  // (below) and each rank looks up only its slice of the table: it maps just those rows.
  m->vocab_split_ = n_ranks > 1 && c.vocab_size % n_ranks == 0;
  {
    LinearSpec spec{"model.embed_tokens", hidden, c.vocab_size, false, ParallelRole::kReplicated};
    spec.lookup_only = m->vocab_split_;
    m->embedding_ = method.load_linear(source, spec);
  }
  report(m->embedding_->weight_bytes());

  for (int64_t i = 0; i < c.n_layers; ++i) {
    auto layer = std::make_unique<Layer>();
    const std::string p = "model.layers." + std::to_string(i) + ".";
    layer->sliding = c.layer_is_sliding[static_cast<size_t>(i)];
    layer->input_norm = load_vector(source, p + "input_layernorm.weight", hidden);
    layer->post_attn_norm = load_vector(source, p + "post_attention_layernorm.weight", hidden);
    if (source.has(p + "input_layernorm.bias"))
      layer->input_norm_bias = load_vector(source, p + "input_layernorm.bias", hidden);
    const std::string mlp_norm = p + (c.gemma_norms ? "pre_feedforward_layernorm" : "post_attention_layernorm");
    if (source.has(mlp_norm + ".bias")) layer->mlp_norm_bias = load_vector(source, mlp_norm + ".bias", hidden);
    if (c.gemma_norms) {
      layer->pre_mlp_norm = load_vector(source, p + "pre_feedforward_layernorm.weight", hidden);
      layer->post_mlp_norm = load_vector(source, p + "post_feedforward_layernorm.weight", hidden);
    }
    if (c.qk_norm) {
      layer->q_norm = load_vector(source, p + "self_attn.q_norm.weight", c.d_head);
      layer->k_norm = load_vector(source, p + "self_attn.k_norm.weight", c.d_head);
    }
    if (c.attention_sinks) {
      // One logit per head: this rank keeps its heads' (q is split by whole heads).
      const Tensor all = load_vector(source, p + "self_attn.sinks", c.n_heads);
      layer->sinks = Tensor::zeros(DType::kF32, {m->n_heads_});
      std::copy_n(all.data<float>() + rank * m->n_heads_, m->n_heads_, layer->sinks.data_mut<float>());
    }
    layer->q = linear(p + "self_attn.q_proj", hidden, q_dim, c.attention_bias, ParallelRole::kColumn);
    layer->k = linear(p + "self_attn.k_proj", hidden, kv_dim, c.attention_bias, ParallelRole::kColumn, kv_shard, kv_shards);
    layer->v = linear(p + "self_attn.v_proj", hidden, kv_dim, c.attention_bias, ParallelRole::kColumn, kv_shard, kv_shards);
    layer->o = linear(p + "self_attn.o_proj", q_dim, hidden, c.o_proj_bias, ParallelRole::kRow);
    if (c.layer_is_moe[static_cast<size_t>(i)]) {
      if (names.empty()) names = source.names();
      quant::MoeSpec tp;
      tp.shard = rank;
      tp.n_shards = n_ranks;
      tp.expert_parallel = expert_parallel;
      if (n_ranks > 1) tp.reduce_max = [comm](float* values, int64_t n) { comm->all_reduce_max(values, n); };
      layer->moe = MoeBlock::load(c, source, names, method, p, tp);
    } else {
      layer->gate = linear(p + "mlp.gate_proj", hidden, d_ff, c.mlp_bias, ParallelRole::kColumn);
      layer->up = linear(p + "mlp.up_proj", hidden, d_ff, c.mlp_bias, ParallelRole::kColumn);
      layer->down = linear(p + "mlp.down_proj", d_ff, hidden, c.mlp_bias, ParallelRole::kRow);
    }
    const size_t bytes = layer->weight_bytes();
    m->layers_.push_back(std::move(layer));
    report(bytes);
  }

  m->final_norm_ = load_vector(source, "model.norm.weight", hidden);
  // Vocab-parallel lm_head when the vocabulary splits: each rank computes its slice of
  // the logits, gathered on rank 0 (a tied one is a row range of the embedding's weights,
  // a view of the same memory where the format allows). Otherwise rank 0 computes all.
  if (m->vocab_split_) {
    m->lm_head_ = linear(c.tie_word_embeddings ? "model.embed_tokens" : "lm_head", hidden, c.vocab_size, false,
                         ParallelRole::kColumn);
    if (!c.tie_word_embeddings) report(m->lm_head_->weight_bytes());
  } else if (c.tie_word_embeddings) {
    // One kernel (one copy of the table) serves both.
    m->lm_head_ = m->embedding_;
  } else if (rank == 0) {
    // Whole on rank 0, which alone computes logits; the other ranks never load it.
    m->lm_head_ = linear("lm_head", hidden, c.vocab_size, false, ParallelRole::kReplicated);
    report(m->lm_head_->weight_bytes());
  }
  if (n_ranks > 1) check_same_plan(*comm, *m);
  m->rope_full_ = compute_rope(c.rope_full, c.d_head);
  m->rope_sliding_ = compute_rope(c.rope_sliding, c.d_head);
  if (progress) progress(total, total);
  return m;
}

KvPool DecoderModel::make_pool(int64_t n_blocks, int64_t block_size) const {
  return KvPool(config_.n_layers, n_kv_heads_, config_.d_head, block_size, n_blocks);
}

KvCache DecoderModel::make_cache(int64_t capacity) const {
  const int64_t bs = kDefaultBlockSize;
  return KvCache{make_pool((capacity + bs - 1) / bs, bs), {}};
}

size_t DecoderModel::weight_bytes() const {
  size_t n = embedding_->weight_bytes();
  if (!config_.tie_word_embeddings && lm_head_) n += lm_head_->weight_bytes();
  for (const auto& l : layers_) n += l->weight_bytes();
  return n;
}

void DecoderModel::forward(const int32_t* tokens, int64_t n_tokens, KvCache& cache, float* logits,
                           bool all_logits, ThreadPool& pool) const {
  forward({SequenceStep{&cache.seq, tokens, n_tokens, all_logits}}, cache.pool, logits, pool);
}

void DecoderModel::forward(const std::vector<SequenceStep>& steps, KvPool& kv_pool, float* logits,
                           ThreadPool& pool) const {
  const ModelConfig& c = config_;
  // This rank's heads and intermediate features (all of them in one process).
  const int64_t hidden = c.hidden_size, d_ff = d_ff_, d_head = c.d_head;
  const int64_t n_heads = n_heads_, n_kv_heads = n_kv_heads_;
  const int64_t q_dim = n_heads * d_head, kv_dim = n_kv_heads * d_head;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const bool gemma = c.gemma_norms;

  // Validate everything before touching any cache.
  int64_t n_tokens = 0, n_free_needed = 0;
  for (const SequenceStep& st : steps) {
    for (int64_t t = 0; t < st.n_tokens; ++t)
      if (st.tokens[t] < 0 || st.tokens[t] >= c.vocab_size)
        throw Error("token id " + std::to_string(st.tokens[t]) + " is outside the vocabulary [0, " +
                        std::to_string(c.vocab_size) + ")", {.field = "token_ids"});
    const int64_t bs = kv_pool.block_size();
    n_free_needed += std::max<int64_t>(0, (st.kv->n_tokens + st.n_tokens + bs - 1) / bs -
                                              static_cast<int64_t>(st.kv->blocks.size()));
    n_tokens += st.n_tokens;
  }
  if (n_tokens == 0) return;
  if (n_free_needed > kv_pool.n_free())
    throw Error("the KV cache is full: " + std::to_string(n_free_needed) + " more blocks of " +
                    std::to_string(kv_pool.block_size()) + " tokens needed, " + std::to_string(kv_pool.n_free()) +
                    " free", {.field = "context_length"});
  for (const SequenceStep& st : steps) kv_reserve(kv_pool, *st.kv, st.n_tokens);
  if (tp() && comm_->rank() == 0) broadcast_step(*comm_, steps, kv_pool);

  // Row r of the batch: its position, and where it lands in the cache.
  std::vector<int64_t> positions(static_cast<size_t>(n_tokens));
  std::vector<int32_t> batch_tokens(static_cast<size_t>(n_tokens));
  {
    int64_t r = 0;
    for (const SequenceStep& st : steps)
      for (int64_t t = 0; t < st.n_tokens; ++t, ++r) {
        positions[static_cast<size_t>(r)] = st.kv->n_tokens + t;
        batch_tokens[static_cast<size_t>(r)] = st.tokens[t];
      }
  }

  auto buffer = [](int64_t n) { return std::vector<float>(static_cast<size_t>(n)); };
  std::vector<float> x = buffer(n_tokens * hidden), h = buffer(n_tokens * hidden);
  std::vector<float> q = buffer(n_tokens * q_dim), k = buffer(n_tokens * kv_dim), v = buffer(n_tokens * kv_dim);
  std::vector<float> attn = buffer(n_tokens * q_dim), proj = buffer(n_tokens * hidden);
  std::vector<float> gate = buffer(n_tokens * d_ff), up = buffer(n_tokens * d_ff);

  // Embedding lookup, scaled for Gemma. With the vocabulary split, each rank looks up
  // only the ids of its slice (so it maps only that slice's rows of the table) and
  // one all-reduce adds the rows to the zeros of the other ranks: exact.
  const int64_t v_part = vocab_split_ ? c.vocab_size / comm_->size() : c.vocab_size;
  const int64_t v_begin = vocab_split_ ? comm_->rank() * v_part : 0;
  for (int64_t t = 0; t < n_tokens; ++t) {
    float* xr = x.data() + t * hidden;
    const int32_t id = batch_tokens[static_cast<size_t>(t)];
    if (id < 0 || id >= c.vocab_size)
      throw Error("token id " + std::to_string(id) + " is outside the vocabulary (0.." + std::to_string(c.vocab_size - 1) + ")");
    if (id < v_begin || id >= v_begin + v_part) continue;  // x starts as zeros
    embedding_->dequantize_row(id, xr);
    if (c.embedding_scale != 1.0f)
      for (int64_t i = 0; i < hidden; ++i) xr[i] *= c.embedding_scale;
  }
  if (vocab_split_) comm_->all_reduce_sum(x.data(), n_tokens * hidden);

  // Attention of each sequence reads its rows of q and writes its rows of attn.
  std::vector<kernels::AttentionSeq> attn_seqs;
  {
    int64_t r = 0;
    for (const SequenceStep& st : steps) {
      attn_seqs.push_back({q.data() + r * q_dim, attn.data() + r * q_dim, st.n_tokens, positions.data() + r,
                           st.kv->blocks.data(), st.kv->n_tokens + st.n_tokens});
      r += st.n_tokens;
    }
  }

  const auto& kt = kernels::kernels();
  const int64_t bs = kv_pool.block_size();
  for (size_t li = 0; li < layers_.size(); ++li) {
    const Layer& L = *layers_[li];
    kernels::rms_norm(x.data(), L.input_norm.data<float>(), h.data(), n_tokens, hidden, eps, gemma);
    add_rows(h.data(), L.input_norm_bias, n_tokens, hidden);
    L.q->forward(h.data(), n_tokens, q.data(), pool);
    L.k->forward(h.data(), n_tokens, k.data(), pool);
    L.v->forward(h.data(), n_tokens, v.data(), pool);
    if (c.qk_norm) {
      kernels::rms_norm(q.data(), L.q_norm.data<float>(), q.data(), n_tokens * n_heads, d_head, eps, gemma);
      kernels::rms_norm(k.data(), L.k_norm.data<float>(), k.data(), n_tokens * n_kv_heads, d_head, eps, gemma);
    }
    const RopeTable& rope = L.sliding ? rope_sliding_ : rope_full_;
    kernels::rope(q.data(), n_tokens, q_dim, static_cast<int>(n_heads), static_cast<int>(d_head), rope.d_rot,
                  positions.data(), rope.inv_freq.data(), rope.attention_factor, c.rope_interleaved);
    kernels::rope(k.data(), n_tokens, kv_dim, static_cast<int>(n_kv_heads), static_cast<int>(d_head), rope.d_rot,
                  positions.data(), rope.inv_freq.data(), rope.attention_factor, c.rope_interleaved);
    // Append keys and values to each sequence's blocks: [n_blocks, n_kv_heads, block_size, d_head].
    float* kc = kv_pool.k(static_cast<int64_t>(li));
    float* vc = kv_pool.v(static_cast<int64_t>(li));
    {
      int64_t r = 0;
      for (const SequenceStep& st : steps)
        for (int64_t t = 0; t < st.n_tokens; ++t, ++r) {
          const int64_t pos = positions[static_cast<size_t>(r)];
          const int64_t block = st.kv->blocks[static_cast<size_t>(pos / bs)];
          for (int64_t hh = 0; hh < n_kv_heads; ++hh) {
            const int64_t dst = ((block * n_kv_heads + hh) * bs + pos % bs) * d_head;
            std::memcpy(kc + dst, k.data() + r * kv_dim + hh * d_head, static_cast<size_t>(d_head) * sizeof(float));
            std::memcpy(vc + dst, v.data() + r * kv_dim + hh * d_head, static_cast<size_t>(d_head) * sizeof(float));
          }
        }
    }
    kernels::AttentionShape shape{static_cast<int>(n_heads), static_cast<int>(n_kv_heads),
                                  static_cast<int>(d_head), c.attention_scale, c.attn_logit_softcap,
                                  L.sliding ? static_cast<int>(c.sliding_window) : 0, /*causal=*/true,
                                  L.sinks.empty() ? nullptr : L.sinks.data<float>()};
    kernels::attention(kt, shape, {kc, vc, bs, q_dim, q_dim}, attn_seqs.data(), attn_seqs.size(), &pool);
    L.o->forward(attn.data(), n_tokens, proj.data(), pool);
    if (tp()) comm_->all_reduce_sum(proj.data(), n_tokens * hidden);
    if (gemma)
      kernels::rms_norm(proj.data(), L.post_attn_norm.data<float>(), proj.data(), n_tokens, hidden, eps, true);
    for (size_t i = 0; i < x.size(); ++i) x[i] += proj[i];

    kernels::rms_norm(x.data(), (gemma ? L.pre_mlp_norm : L.post_attn_norm).data<float>(), h.data(), n_tokens,
                      hidden, eps, gemma);
    add_rows(h.data(), L.mlp_norm_bias, n_tokens, hidden);
    if (L.moe) {
      L.moe->forward(h.data(), n_tokens, proj.data(), pool);
      if (tp()) comm_->all_reduce_sum(proj.data(), n_tokens * hidden);
    } else {
      L.gate->forward(h.data(), n_tokens, gate.data(), pool);
      L.up->forward(h.data(), n_tokens, up.data(), pool);
      const auto act = c.activation == format::Activation::kSilu ? kt.silu_mul : kt.gelu_tanh_mul;
      pool.parallel_for(static_cast<int64_t>(gate.size()), 4096, [&](int64_t i0, int64_t i1) {
        act(gate.data() + i0, up.data() + i0, gate.data() + i0, i1 - i0);
      });
      L.down->forward(gate.data(), n_tokens, proj.data(), pool);
      if (tp()) comm_->all_reduce_sum(proj.data(), n_tokens * hidden);
    }
    if (gemma)
      kernels::rms_norm(proj.data(), L.post_mlp_norm.data<float>(), proj.data(), n_tokens, hidden, eps, true);
    for (size_t i = 0; i < x.size(); ++i) x[i] += proj[i];
  }
  for (const SequenceStep& st : steps) st.kv->n_tokens += st.n_tokens;
  if (!logits && !vocab_split_) return;  // a follower rank without a share of the logits

  // Final norm and lm_head on the rows that want logits: gathered, then one matmul.
  std::vector<int64_t> rows;
  {
    int64_t r = 0;
    for (const SequenceStep& st : steps) {
      for (int64_t t = st.all_logits ? 0 : st.n_tokens - 1; t < st.n_tokens; ++t) rows.push_back(r + t);
      r += st.n_tokens;
    }
  }
  const int64_t n_rows = static_cast<int64_t>(rows.size());
  for (int64_t i = 0; i < n_rows; ++i)
    kernels::rms_norm(x.data() + rows[static_cast<size_t>(i)] * hidden, final_norm_.data<float>(),
                      h.data() + i * hidden, 1, hidden, eps, gemma);
  if (vocab_split_) {
    // This rank's vocabulary slice of every row, then rank 0 interleaves the slices.
    const int64_t n_ranks = comm_->size(), v_part = c.vocab_size / n_ranks;
    std::vector<float> part = buffer(n_rows * v_part);
    lm_head_->forward(h.data(), n_rows, part.data(), pool);
    std::vector<float> all = buffer(comm_->rank() == 0 ? n_ranks * n_rows * v_part : 0);
    comm_->gather(part.data(), n_rows * v_part, all.data());
    if (comm_->rank() != 0) return;
    for (int64_t r = 0; r < n_ranks; ++r)
      for (int64_t i = 0; i < n_rows; ++i)
        std::memcpy(logits + i * c.vocab_size + r * v_part, all.data() + (r * n_rows + i) * v_part,
                    static_cast<size_t>(v_part) * sizeof(float));
  } else {
    lm_head_->forward(h.data(), n_rows, logits, pool);
  }
  if (c.final_logit_softcap > 0.0f) {
    const float cap = c.final_logit_softcap;
    for (int64_t i = 0; i < n_rows * c.vocab_size; ++i) logits[i] = cap * std::tanh(logits[i] / cap);
  }
}

}  // namespace quanta::model
