// The quantization map of a checkpoint: one row per layer, one column per projection, each
// cell coloured by its scheme and labelled with its bits per weight (`quanta inspect --svg`).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace quanta::report {

// One checkpoint weight tensor as `quanta inspect` reports it.
struct MapTensor {
  std::string tensor;  // GGUF or Hugging Face name
  std::string scheme;  // "Q4_K", "W8A8_DYNAMIC", "FLOAT"; experts whose schemes differ: "A x120 + B x8"
  int64_t params = 0;  // elements
  uint64_t bytes = 0;  // bytes in the checkpoint, side tensors included
};

// Where a tensor goes on the map: layer -1 for tensors outside the layers (embedding,
// lm_head); column "" for tensors that are not projections (norms, biases).
struct MapPlace {
  int64_t layer = -1;
  std::string column;
};
MapPlace map_place(const std::string& tensor);

// The columns in the order the map draws them.
const std::vector<std::string>& map_columns();

// The map as a standalone SVG document (`standalone`) or an <svg> element for HTML.
std::string quant_map_svg(const std::string& title, const std::vector<MapTensor>& tensors, bool standalone = true);
// A page with the map and the per-scheme totals as a table.
std::string quant_map_html(const std::string& title, const std::vector<MapTensor>& tensors);

}  // namespace quanta::report
