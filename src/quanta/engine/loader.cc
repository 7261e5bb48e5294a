#include "quanta/engine/loader.h"

#include <filesystem>

#include "quanta/core/error.h"
#include "quanta/dist/comm.h"
#include "quanta/format/gguf_model.h"
#include "quanta/format/safetensors.h"
#include "quanta/quant/modelslim.h"

namespace quanta::engine {

bool is_follower() { return dist::world().rank() != 0; }

void relaunch_for_tp(const std::string& path, const LoadOptions& options) {
  namespace fs = std::filesystem;
  if (options.tp_size < 1) throw Error("must be at least 1", {.field = "--tp-size"});
  if (options.tp_size == 1 || dist::launched_by_mpi()) return;
  if (!fs::exists(path)) throw Error("model path does not exist", {.file = path});
  // Refuse a model that does not split here, once, before starting any rank.
  const format::ModelConfig config = fs::is_directory(path) ? format::load_model_config(path)
                                                            : format::gguf_model_config(format::GgufFile(path));
  model::DecoderModel::check_tp_split(config, options.tp_size, options.expert_parallel);
  dist::relaunch_under_mpirun(options.tp_size);
}

LoadedModel load_model(const std::string& path, const model::LoadProgress& progress_in, const LoadOptions& options) {
  namespace fs = std::filesystem;
  if (!fs::exists(path)) throw Error("model path does not exist", {.file = path});
  relaunch_for_tp(path, options);
  dist::Communicator& comm = dist::world();
  if (comm.size() != options.tp_size)
    throw Error("--tp-size " + std::to_string(options.tp_size) + " does not match the MPI world of " +
                    std::to_string(comm.size()) + " ranks this process was started in",
                {.field = "--tp-size"});
  dist::Communicator* tp = options.tp_size > 1 ? &comm : nullptr;
  const model::LoadProgress progress = comm.rank() == 0 ? progress_in : model::LoadProgress{};
  LoadedModel m;
  m.path = path;
  if (!fs::is_directory(path) && !options.quantization.empty() && options.quantization != "gguf")
    throw Error("--quantization " + options.quantization + " contradicts the checkpoint, a GGUF file (method 'gguf')",
                {.file = path, .field = "--quantization"});
  if (!fs::is_directory(path)) {
    if (!format::is_gguf_file(path))
      throw Error("expected a Hugging Face model folder (config.json + *.safetensors) or a GGUF file", {.file = path});
    auto file = std::make_shared<const format::GgufFile>(path);
    m.config = format::gguf_model_config(*file);
    m.generation = format::gguf_generation_defaults(*file);
    m.source = std::make_unique<format::GgufTensorSource>(file, m.config);
    m.method = options.gguf_dequantize ? quant::make_unquantized_method() : quant::make_gguf_method();
    m.model = model::DecoderModel::load(m.config, *m.source, *m.method, progress, tp, options.expert_parallel);
    return m;
  }
  m.config = format::load_model_config(path);
  m.generation = format::load_generation_config(path);
  m.source = format::open_safetensors(path);
  // The resolver decides: quant_model_description.json, config.json's
  // quantization_config, --quantization (checked against both), online methods.
  m.method = quant::make_folder_method(path, options.quantization, options.quantization_ignored_layers,
                                       m.config.layer_is_moe);
  m.model = model::DecoderModel::load(m.config, *m.source, *m.method, progress, tp, options.expert_parallel);
  return m;
}

}  // namespace quanta::engine
