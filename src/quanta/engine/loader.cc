#include "quanta/engine/loader.h"

#include <filesystem>

#include "quanta/core/error.h"
#include "quanta/format/safetensors.h"

namespace quanta::engine {

LoadedModel load_model(const std::string& path, const model::LoadProgress& progress) {
  namespace fs = std::filesystem;
  if (!fs::exists(path)) throw Error("model path does not exist", {.file = path});
  if (!fs::is_directory(path))
    throw Error("expected a Hugging Face model folder (config.json + *.safetensors)", {.file = path});
  LoadedModel m;
  m.path = path;
  m.config = format::load_model_config(path);
  m.generation = format::load_generation_config(path);
  m.source = format::open_safetensors(path);
  m.method = quant::make_unquantized_method();
  m.model = model::DecoderModel::load(m.config, *m.source, *m.method, progress);
  return m;
}

}  // namespace quanta::engine
