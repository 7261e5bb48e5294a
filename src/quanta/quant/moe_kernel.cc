// The default MoeKernel: one LinearKernel per expert projection, from load_linear.
#include <algorithm>
#include <set>

#include "quanta/core/error.h"
#include "quanta/quant/quant_method.h"

namespace quanta::quant {

namespace {

class ExpertLinears : public MoeKernel {
 public:
  struct Expert {
    std::unique_ptr<LinearKernel> gate, up, down;
  };
  explicit ExpertLinears(std::vector<Expert> experts) : experts_(std::move(experts)) {}

  void gate_up(int64_t e, const float* x, int64_t n, float* gate, float* up, ThreadPool& pool) const override {
    const Expert& ex = experts_[static_cast<size_t>(e)];
    ex.gate->forward(x, n, gate, pool);
    ex.up->forward(x, n, up, pool);
  }
  void down(int64_t e, const float* h, int64_t n, float* y, ThreadPool& pool) const override {
    experts_[static_cast<size_t>(e)].down->forward(h, n, y, pool);
  }
  int64_t n_experts() const override { return static_cast<int64_t>(experts_.size()); }
  bool has_expert(int64_t e) const override { return experts_[static_cast<size_t>(e)].gate != nullptr; }
  std::string w13_format() const override {
    return formats([](const Expert& e) { return e.gate->format() + (e.up->format() == e.gate->format() ? "" : "+" + e.up->format()); });
  }
  std::string w2_format() const override {
    return formats([](const Expert& e) { return e.down->format(); });
  }
  size_t weight_bytes() const override {
    size_t n = 0;
    for (const Expert& e : experts_)
      if (e.gate) n += e.gate->weight_bytes() + e.up->weight_bytes() + e.down->weight_bytes();
    return n;
  }

 private:
  // The distinct formats over the experts, joined by '/' in order of first appearance.
  template <typename F>
  std::string formats(F of) const {
    std::vector<std::string> seen;
    for (const Expert& e : experts_) {
      if (!e.gate) continue;
      std::string f = of(e);
      if (std::find(seen.begin(), seen.end(), f) == seen.end()) seen.push_back(std::move(f));
    }
    std::string out;
    for (const auto& f : seen) out += (out.empty() ? "" : "/") + f;
    return out;
  }

  std::vector<Expert> experts_;
};

}  // namespace

std::unique_ptr<MoeKernel> QuantMethod::load_experts(const format::TensorSource& source, const MoeSpec& spec,
                                                     const std::vector<std::string>& names) const {
  // The expert indices the checkpoint holds under the prefix: exactly 0..n_experts-1.
  const std::string head = spec.prefix + ".";
  std::set<int64_t> present;
  for (auto it = std::lower_bound(names.begin(), names.end(), head); it != names.end() && it->rfind(head, 0) == 0; ++it) {
    const size_t end = it->find('.', head.size());
    const std::string idx = it->substr(head.size(), end - head.size());
    if (idx.empty() || idx.size() > 9 || idx.find_first_not_of("0123456789") != std::string::npos)
      throw Error("unexpected tensor among the experts of " + spec.prefix, {.file = source.file_of(*it), .tensor = *it});
    present.insert(std::stoll(idx));
  }
  for (int64_t e = 0; e < spec.n_experts; ++e)
    if (!present.count(e))
      throw Error("expert " + std::to_string(e) + " of " + spec.prefix + " is missing from the checkpoint (the config has " +
                      std::to_string(spec.n_experts) + " experts)",
                  {.file = source.location(), .tensor = head + std::to_string(e) + "." + spec.gate + ".weight"});
  if (!present.empty() && *present.rbegin() >= spec.n_experts)
    throw Error("the checkpoint holds expert " + std::to_string(*present.rbegin()) + " of " + spec.prefix +
                    " but the config has only " + std::to_string(spec.n_experts) + " experts",
                {.file = source.location(), .tensor = head + std::to_string(*present.rbegin())});

  std::vector<ExpertLinears::Expert> experts(static_cast<size_t>(spec.n_experts));
  for (int64_t e = 0; e < spec.n_experts; ++e) {
    if (!spec.keeps_expert(e)) continue;
    const std::string p = head + std::to_string(e) + ".";
    ExpertLinears::Expert& ex = experts[static_cast<size_t>(e)];
    auto linear = [&](const std::string& name, int64_t n_in, int64_t n_out, ParallelRole role) {
      LinearSpec ls{p + name, n_in, n_out, spec.bias, role};
      if (!spec.expert_parallel) {  // each expert split over the ranks, else whole here
        ls.shard = spec.shard;
        ls.n_shards = spec.n_shards;
      }
      if (role == ParallelRole::kRow) ls.reduce_max = spec.reduce_max;
      return load_linear(source, ls);
    };
    ex.gate = linear(spec.gate, spec.hidden, spec.d_ff, ParallelRole::kColumn);
    ex.up = linear(spec.up, spec.hidden, spec.d_ff, ParallelRole::kColumn);
    ex.down = linear(spec.down, spec.d_ff, spec.hidden, ParallelRole::kRow);
    if (!separate_gate_up() && ex.gate->format() != ex.up->format())
      throw Error("expert " + std::to_string(e) + " of " + spec.prefix + ": gate is " + ex.gate->format() + " but up is " +
                      ex.up->format() + " (gate and up of an expert are one fused w13 and must share a scheme)",
                  {.file = source.file_of(p + spec.up + ".weight"), .tensor = p + spec.up});
  }
  return std::make_unique<ExpertLinears>(std::move(experts));
}

}  // namespace quanta::quant
