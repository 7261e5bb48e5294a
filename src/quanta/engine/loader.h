// Opens a model folder: config, checkpoint, quantization method and model.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "quanta/format/hf_config.h"
#include "quanta/format/tensor_source.h"
#include "quanta/model/decoder.h"
#include "quanta/quant/quant_method.h"

namespace quanta::engine {

struct LoadedModel {
  std::string path;
  format::ModelConfig config;
  format::GenerationDefaults generation;
  std::unique_ptr<format::TensorSource> source;
  std::unique_ptr<quant::QuantMethod> method;
  std::unique_ptr<model::DecoderModel> model;
};

struct LoadOptions {
  // GGUF: dequantize every quantized weight to f32 at load and run the float
  // kernels (what SGLang's GGUF loader does), instead of the native kernels.
  bool gguf_dequantize = false;
  // Hugging Face folders: --quantization (empty: what the checkpoint says; an online
  // method, mxfp8 or w8a8_int8, quantizes a float checkpoint at load) and the
  // --quantization-ignored-layers substrings that keep Linears float under it.
  std::string quantization;
  std::vector<std::string> quantization_ignored_layers;
  // Tensor parallelism over this many ranks (--tp-size). Above 1, a process outside
  // an MPI world re-executes itself under mpirun (dist::relaunch_under_mpirun) after
  // checking that the model splits; inside one, the world must have exactly this size.
  int tp_size = 1;
  // --enable-ep-moe: under tensor parallelism, MoE experts are partitioned over the ranks
  // (expert parallelism) instead of each expert being split over all of them.
  bool expert_parallel = false;
};

// Throws quanta::Error naming the file/tensor/field at the first problem. Under tensor
// parallelism every rank loads its shard; ranks other than 0 then call
// model->follow() instead of running the command (is_follower).
LoadedModel load_model(const std::string& path, const model::LoadProgress& progress = {},
                       const LoadOptions& options = {});

// With options.tp_size > 1 outside an MPI world: checks that the model splits, then
// re-executes the command under mpirun (does not return). Otherwise does nothing.
// load_model calls it; a command may call it earlier, before printing anything.
void relaunch_for_tp(const std::string& path, const LoadOptions& options);

// Whether this process is a rank other than 0 of a tensor-parallel job.
bool is_follower();

}  // namespace quanta::engine
