// AVX-512 level. No machine with AVX-512 is available to test on yet, so this
// level reuses the AVX2 kernels (which every AVX-512 CPU runs) instead of
// shipping untested code; dedicated AVX-512 (VNNI/BF16) kernels replace entries
// here once they can be verified.
#include "quanta/kernels/kernels.h"

namespace quanta::kernels {

const KernelTable& avx512_table() {
  static const KernelTable table = [] {
    KernelTable t = avx2_table();
    t.isa = Isa::kAvx512;
    return t;
  }();
  return table;
}

}  // namespace quanta::kernels
