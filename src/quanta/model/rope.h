// Rotary-embedding frequencies for the scaling types of transformers'
// modeling_rope_utils (default, linear, llama3, yarn), computed in f32 as it does.
#pragma once

#include <vector>

#include "quanta/format/hf_config.h"

namespace quanta::model {

struct RopeTable {
  std::vector<float> inv_freq;  // d_rot / 2 entries
  float attention_factor = 1.0f;  // multiplies cos and sin (yarn)
  int d_rot = 0;
};

// Throws Error naming the field for inconsistent parameters.
RopeTable compute_rope(const format::RopeConfig& rope, int64_t d_head);

}  // namespace quanta::model
