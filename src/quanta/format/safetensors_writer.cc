#include "quanta/format/safetensors_writer.h"

#include <algorithm>
#include <fstream>

#include <nlohmann/json.hpp>

#include "quanta/core/error.h"

namespace quanta::format {

void write_safetensors(const std::string& path, const std::vector<PlannedTensor>& planned,
                       const std::map<std::string, std::string>& metadata) {
  // Data starts on a 64-byte boundary (the header is padded with spaces) and the
  // tensors whose size is a multiple of 64 come first, so every large weight is
  // cache-line aligned in the file and the reader maps it without a copy. The
  // format wants tensors back to back, so this order is the only lever.
  constexpr uint64_t kAlign = 64;
  auto size_of = [](const PlannedTensor& t) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    return dtype_bytes(t.dtype, static_cast<size_t>(n));
  };
  std::vector<PlannedTensor> tensors = planned;
  std::stable_partition(tensors.begin(), tensors.end(), [&](const PlannedTensor& t) { return size_of(t) % kAlign == 0; });
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    const uint64_t bytes = size_of(t);
    header[t.name] = {{"dtype", std::string(dtype_name(t.dtype))}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((kAlign - (8 + text.size()) % kAlign) % kAlign, ' ');
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
