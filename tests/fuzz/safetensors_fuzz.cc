// libFuzzer target for the safetensors reader: a file's header, and a folder's index.json.
//
// The first input byte picks the mode:
//   0: the rest is a .safetensors file; if it opens, every tensor is viewed and read;
//   1: the rest is model.safetensors.index.json, beside a fixed valid shard (model-a.safetensors,
//      tensors "a" and "b"), opened as a checkpoint folder; every tensor it serves is read.
// Bad input must end in quanta::Error, never in a crash, a sanitizer report or another exception.
//
// Build and run: tests/fuzz/run.sh (clang++ -fsanitize=fuzzer,address,undefined).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include "quanta/core/error.h"
#include "quanta/format/safetensors.h"

namespace {

const std::string& scratch() {
  static const std::string dir = [] {
    char tmpl[] = "/tmp/quanta-fuzz-st-XXXXXX";
    const char* d = mkdtemp(tmpl);
    if (!d) std::abort();
    return std::string(d);
  }();
  return dir;
}

void write(const std::string& path, const uint8_t* data, size_t size) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
}

// A valid shard: {"a": F32 [2], "b": BF16 [1, 2]} then 12 bytes of data.
void write_shard(const std::string& path) {
  const std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[1,2],"data_offsets":[8,12]}})";
  std::string file(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) file[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  file += header;
  file += std::string(12, '\x3f');
  write(path, reinterpret_cast<const uint8_t*>(file.data()), file.size());
}

size_t read_all(const quanta::format::TensorSource& src) {
  size_t sink = 0;
  for (const auto& name : src.names()) {
    const quanta::Tensor t = src.get(name);
    const auto* p = t.data<uint8_t>();
    const size_t nbytes = t.nbytes();
    for (size_t i = 0; i < nbytes; i += 61) sink += p[i];
    if (nbytes) sink += p[nbytes - 1];
    sink += src.file_of(name).size();
  }
  return sink;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string& dir = scratch();
  size_t sink = 0;
  try {
    if (data[0] % 2 == 0) {
      const std::string path = dir + "/one.safetensors";
      write(path, data + 1, size - 1);
      quanta::format::SafetensorsFile f(path);
      for (const auto& info : f.tensors()) {
        const quanta::Tensor t = f.tensor(info.name);
        const auto* p = t.data<uint8_t>();
        for (size_t i = 0; i < t.nbytes(); i += 61) sink += p[i];
        if (t.nbytes()) sink += p[t.nbytes() - 1];
      }
      for (const auto& [k, v] : f.metadata()) sink += k.size() + v.size();
    } else {
      const std::string folder = dir + "/folder";
      static const bool made = [&] {
        std::system(("mkdir -p " + folder).c_str());
        write_shard(folder + "/model-a.safetensors");
        return true;
      }();
      (void)made;
      write(folder + "/model.safetensors.index.json", data + 1, size - 1);
      quanta::format::SafetensorsCheckpoint c(folder);
      sink += read_all(c);
    }
  } catch (const quanta::Error&) {
    // Bad input, reported as it should be.
  }
  if (sink == 0xFFFFFFFF) return 1;  // keep the reads
  return 0;
}
