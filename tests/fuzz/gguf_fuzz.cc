// libFuzzer target for the GGUF reader and the ggml reference dequantizers.
//
// Any input must either parse or throw quanta::Error: a crash, a sanitizer
// report, an out-of-bounds read, another exception type or a runaway
// allocation is a bug. When a file parses, every metadata value is read back
// and every tensor is dequantized (or viewed), so what the reader validated is
// what the dequantizers rely on.
//
// Build and run: tests/fuzz/run.sh (clang++ -fsanitize=fuzzer,address,undefined).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "quanta/core/error.h"
#include "quanta/format/gguf.h"

namespace {

using quanta::format::GgufArray;
using quanta::format::GgufFile;
using quanta::format::GgufValue;
using quanta::format::GgufValueType;

// Tensors bigger than this are dequantized in part: the input is small, but a
// shape can ask for many zero-byte elements.
constexpr int64_t kMaxElements = int64_t{1} << 20;

size_t touch(const GgufValue& v, int depth) {
  size_t n = v.to_string(4).size();
  if (v.is_integer()) {
    try { n += v.as_i64(); } catch (const quanta::Error&) {}
    try { n += v.as_u32(); } catch (const quanta::Error&) {}
  }
  if (v.is_array()) {
    const GgufArray& a = v.as_array();
    for (size_t i = 0; i < a.size() && i < 64; ++i) n += touch(a.at(i), depth + 1);
    try { n += v.as_string_array().size(); } catch (const quanta::Error&) {}
    try { n += v.as_i64_array().size(); } catch (const quanta::Error&) {}
    try { n += v.as_f32_array().size(); } catch (const quanta::Error&) {}
  }
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    GgufFile f("fuzz.gguf", data, size);
    size_t sink = 0;
    for (const auto& [key, value] : f.metadata().entries()) sink += key.size() + touch(value, 0);
    sink += f.metadata().get_u32_or("general.alignment", 32);
    for (const auto& t : f.tensors()) {
      // Every byte the reader promises is inside the input.
      const uint8_t* p = f.data(t);
      for (uint64_t i = 0; i < t.nbytes; i += 97) sink += p[i];
      if (t.nbytes) sink += p[t.nbytes - 1];
      const auto& info = quanta::format::ggml_type_info(t.type);
      if (quanta::format::ggml_type_dtype(t.type)) sink += f.view(t.name).numel();
      if (!info.has_reference) {
        try { f.dequantize(t.name); } catch (const quanta::Error&) { continue; }
        __builtin_trap();  // must have been refused
      }
      if (t.numel <= kMaxElements) {
        sink += static_cast<size_t>(f.dequantize(t.name).numel());
      } else {
        const int64_t ne0 = t.ne.empty() ? 1 : t.ne[0];
        if (ne0 <= kMaxElements) {
          std::vector<float> row(static_cast<size_t>(ne0));
          quanta::format::dequantize_row(t.type, p, row.data(), ne0);
        }
      }
    }
    if (sink == 0xFFFFFFFF) return 1;  // keep the reads
  } catch (const quanta::Error&) {
    // Bad input, reported as it should be.
  }
  return 0;
}
