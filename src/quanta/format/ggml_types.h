// ggml tensor types: the block layouts GGUF files store, and reference dequantizers.
//
// Every ggml type id (ggml/include/ggml.h, enum ggml_type) has one row in a single
// table: name, elements per block, bytes per block, and whether quanta has a
// reference dequantizer for it. Ids that ggml retired (Q4_2, Q4_0_4_4, ...) keep a
// row marked removed so errors can name them; a GGUF file that uses one is refused.
//
// The dequantizers are the truth the fast kernels are tested against: plain scalar
// code that follows ggml-quants.c / gguf-py's quants.py operation by operation, so
// the f32 results are bit-identical to gguf-py's dequantize(). tests/unit/gguf_test.cc
// holds every type to an oracle: gguf-py's output (which ggml's own to_float matches
// bit for bit on the same blocks), ggml's to_float for Q1_0 and Q2_0 (newer than the
// pinned gguf-py), and hand-made blocks for the activation types Q8_1 and Q8_K,
// which neither dequantizes. Blocks run along ne[0], the innermost dimension, so a
// row of n elements is n / block_size blocks back to back.
//
// Invariant: all multi-byte fields are little-endian (GGUF v3 big-endian files are
// refused by the reader), read with memcpy, so blocks need no alignment.
// Non-goals: quantization (that is the tools' job), speed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "quanta/core/dtype.h"

namespace quanta::format {

// ggml type ids as GGUF stores them (u32). Values are ggml's; gaps are retired ids.
enum class GgmlType : uint32_t {
  kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3,
  kQ4_2 = 4, kQ4_3 = 5,  // removed
  kQ5_0 = 6, kQ5_1 = 7, kQ8_0 = 8, kQ8_1 = 9,
  kQ2_K = 10, kQ3_K = 11, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14, kQ8_K = 15,
  kIQ2_XXS = 16, kIQ2_XS = 17, kIQ3_XXS = 18, kIQ1_S = 19, kIQ4_NL = 20, kIQ3_S = 21,
  kIQ2_S = 22, kIQ4_XS = 23,
  kI8 = 24, kI16 = 25, kI32 = 26, kI64 = 27, kF64 = 28,
  kIQ1_M = 29, kBF16 = 30,
  kQ4_0_4_4 = 31, kQ4_0_4_8 = 32, kQ4_0_8_8 = 33,  // removed
  kTQ1_0 = 34, kTQ2_0 = 35,
  kIQ4_NL_4_4 = 36, kIQ4_NL_4_8 = 37, kIQ4_NL_8_8 = 38,  // removed
  kMXFP4 = 39, kNVFP4 = 40, kQ1_0 = 41, kQ2_0 = 42,
};

// One past the largest id ggml assigns (GGML_TYPE_COUNT).
constexpr uint32_t kGgmlTypeCount = 43;

struct GgmlTypeInfo {
  GgmlType type;
  std::string_view name;  // as ggml and gguf-py spell it: "Q4_K", "IQ2_XXS", "BF16"
  int64_t block_size;     // elements per block (1 for plain types)
  size_t type_size;       // bytes per block
  bool removed;           // retired id: files using it cannot be read
  bool has_reference;     // dequantize_row() handles it
};

// The table row of a type id; nullptr for ids ggml never assigned (>= kGgmlTypeCount).
const GgmlTypeInfo* ggml_type_info(uint32_t id);
inline const GgmlTypeInfo& ggml_type_info(GgmlType t) { return *ggml_type_info(static_cast<uint32_t>(t)); }
// "Q4_K", or "unknown type 77" for an id outside the table.
std::string ggml_type_name(uint32_t id);
inline std::string ggml_type_name(GgmlType t) { return ggml_type_name(static_cast<uint32_t>(t)); }

// The quanta DType a plain (block size 1) type maps to, for zero-copy views:
// F32, F16, BF16, F64, I8, I16, I32, I64. nullopt for block types.
std::optional<DType> ggml_type_dtype(GgmlType t);

// Bytes of n elements of type t; n must be a multiple of the block size.
size_t ggml_row_bytes(GgmlType t, int64_t n);

// Dequantizes n elements (n / block_size blocks at src) to f32 at dst.
// Throws Error naming the type if it has no reference dequantizer, or if n is not
// a multiple of its block size.
void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n);

}  // namespace quanta::format
