// The grammar tests' brute-force check, shared by the unit tests (small vocabularies) and the
// golden test (the default model's vocabulary).
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <vector>

#include "quanta/grammar/matcher.h"

namespace quanta::test {

// Walks `steps` random allowed tokens, `walks` times, comparing the mask at each step with every
// token tried alone. Stops a walk when the grammar finishes or allows nothing.
inline void check_grammar_masks(const std::shared_ptr<const grammar::CompiledGrammar>& g, int walks, int steps,
                                uint32_t seed) {
  std::mt19937 rng(seed);
  const grammar::TokenVocab& v = g->vocab();
  for (int w = 0; w < walks; ++w) {
    grammar::Matcher m(g);
    for (int s = 0; s < steps && !m.finished(); ++s) {
      auto mask = m.mask();
      std::vector<int32_t> allowed;
      for (int32_t id = 0; id < v.size(); ++id) {
        const bool bit = ((*mask)[static_cast<size_t>(id) >> 6] >> (id & 63)) & 1;
        ASSERT_EQ(bit, m.accepts(id)) << "token " << id << " '" << v.bytes(id) << "' at step " << s;
        if (bit) allowed.push_back(id);
      }
      if (allowed.empty()) break;
      const int32_t pick = allowed[std::uniform_int_distribution<size_t>(0, allowed.size() - 1)(rng)];
      if (v.is_end(pick)) break;
      m.advance(pick);
    }
  }
}

}  // namespace quanta::test
