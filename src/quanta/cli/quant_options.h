// --quantization, --quantization-ignored-layers, --gguf-dequantize and --tp-size, shared by
// the subcommands that load a model (generate, bench, perplexity, serve).
#pragma once

#include <CLI/CLI.hpp>

#include "quanta/engine/loader.h"

namespace quanta::cli {

inline void add_quantization_options(CLI::App* sub, engine::LoadOptions& o) {
  sub->add_option("--quantization", o.quantization,
                  "Quantization method: must match the checkpoint (modelslim is detected from "
                  "quant_model_description.json), or mxfp8 / w8a8_int8 to quantize a float checkpoint at load");
  sub->add_option("--quantization-ignored-layers", o.quantization_ignored_layers,
                  "With an online --quantization: keep Linears whose name contains any of these in float")
      ->delimiter(',');
  sub->add_flag("--gguf-dequantize", o.gguf_dequantize,
                "GGUF: dequantize every weight to f32 at load and run float kernels (SGLang's GGUF behaviour; "
                "3-8x the memory) instead of multiplying the blocks as stored");
  sub->add_option("--tp-size", o.tp_size,
                  "Tensor parallelism over N ranks (MPI): on one host quanta restarts itself under mpirun -np N; "
                  "under mpirun -np N it must equal N. Threads per rank default to cores / N")
      ->capture_default_str();
  sub->add_flag("--enable-ep-moe", o.expert_parallel,
                "With --tp-size N: each rank keeps and runs N-th of every MoE layer's experts whole (expert "
                "parallelism) instead of its N-th of every expert (the default)");
}

}  // namespace quanta::cli
