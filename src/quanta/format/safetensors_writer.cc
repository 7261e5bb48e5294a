#include "quanta/format/safetensors_writer.h"

#include <fstream>

#include <nlohmann/json.hpp>

#include "quanta/core/error.h"

namespace quanta::format {

void write_safetensors(const std::string& path, const std::vector<PlannedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    const uint64_t bytes = dtype_bytes(t.dtype, static_cast<size_t>(n));
    header[t.name] = {{"dtype", std::string(dtype_name(t.dtype))}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw Error("cannot open for writing", {.file = path});
  const uint64_t len = text.size();
  unsigned char le[8];
  for (int i = 0; i < 8; ++i) le[i] = static_cast<unsigned char>(len >> (8 * i));
  out.write(reinterpret_cast<const char*>(le), 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const auto& t : tensors) {
    Tensor v = t.produce();
    if (v.dtype() != t.dtype || v.shape() != t.shape)
      throw Error("produced " + std::string(dtype_name(v.dtype())) + " " + shape_str(v.shape()) + ", planned " +
                      std::string(dtype_name(t.dtype)) + " " + shape_str(t.shape), {.file = path, .tensor = t.name});
    out.write(static_cast<const char*>(v.raw()), static_cast<std::streamsize>(v.nbytes()));
  }
  out.flush();
  if (!out) throw Error("write failed", {.file = path});
}

}  // namespace quanta::format
