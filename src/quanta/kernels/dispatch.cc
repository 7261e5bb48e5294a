#include <cstdlib>
#include <string>

#include "quanta/core/error.h"
#include "quanta/kernels/kernels.h"

namespace quanta::kernels {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
  }
  return "?";
}

Isa host_isa() {
  __builtin_cpu_init();
  // AVX-512 level needs the subsets its kernels use; VNNI/BF16 are checked by the
  // kernels that need them.
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bf16"))
    return Isa::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c"))
    return Isa::kAvx2;
  return Isa::kScalar;
}

Isa active_isa() {
  static const Isa active = [] {
    Isa host = host_isa();
    const char* env = std::getenv("QUANTA_ISA");
    if (!env || !*env) return host;
    std::string want(env);
    Isa forced;
    if (want == "scalar") forced = Isa::kScalar;
    else if (want == "avx2") forced = Isa::kAvx2;
    else if (want == "avx512") forced = Isa::kAvx512;
    else throw Error("unknown value '" + want + "' (expected scalar, avx2 or avx512)", {.field = "QUANTA_ISA"});
    if (static_cast<int>(forced) > static_cast<int>(host))
      throw Error(std::string("this CPU cannot run '") + env + "'; the best it runs is '" +
                      isa_name(host) + "'", {.field = "QUANTA_ISA"});
    return forced;
  }();
  return active;
}

const KernelTable& kernels_for(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return avx512_table();
    case Isa::kAvx2: return avx2_table();
    case Isa::kScalar: break;
  }
  return reference_table();
}

const KernelTable& kernels() {
  static const KernelTable& table = kernels_for(active_isa());
  return table;
}

}  // namespace quanta::kernels
