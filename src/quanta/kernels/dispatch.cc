#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
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
    case Isa::kAmx: return "amx";
  }
  return "?";
}

namespace {

bool bit(unsigned reg, int b) { return (reg >> b) & 1u; }

// Linux keeps AMX tile data off until a process asks for it (arch/x86 xstate,
// ARCH_REQ_XCOMP_PERM with XFEATURE_XTILEDATA = 18); the first tile instruction
// without the permission dies with SIGILL. The permission covers every thread.
bool request_amx_permission() {
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = bit(c, 27), avx = bit(c, 28);
  f.fma = bit(c, 12);
  f.f16c = bit(c, 29);
  // The OS must save the registers too (XCR0): ymm (bits 1-2), zmm and opmasks (5-7),
  // AMX tile configuration and data (17-18).
  unsigned long long xcr0 = 0;
  if (osxsave) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    xcr0 = (static_cast<unsigned long long>(hi) << 32) | lo;
  }
  const bool os_ymm = avx && (xcr0 & 0x6) == 0x6, os_zmm = os_ymm && (xcr0 & 0xE0) == 0xE0;
  const bool os_tiles = (xcr0 & 0x60000) == 0x60000;
  if (!os_ymm || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    f.fma = f.f16c = false;
    return f;
  }
  f.avx2 = bit(b, 5);
  f.avx512f = os_zmm && bit(b, 16);
  f.avx512dq = os_zmm && bit(b, 17);
  f.avx512bw = os_zmm && bit(b, 30);
  f.avx512vl = os_zmm && bit(b, 31);
  f.avx512_vnni = os_zmm && bit(c, 11);
  f.avx512_fp16 = os_zmm && bit(d, 23);
  f.amx_bf16 = os_tiles && bit(d, 22);
  f.amx_tile = os_tiles && bit(d, 24);
  f.amx_int8 = os_tiles && bit(d, 25);
  const unsigned max_sub = a;
  if (max_sub >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d)) {
    f.avx_vnni = bit(a, 4);
    f.avx512_bf16 = os_zmm && bit(a, 5);
  }
  if (f.amx_tile && (f.amx_int8 || f.amx_bf16)) f.amx_permitted = request_amx_permission();
  return f;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

std::string cpu_features_string() {
  const CpuFeatures& f = cpu_features();
  std::string s;
  auto add = [&](bool has, const char* name) {
    if (!has) return;
    if (!s.empty()) s += ' ';
    s += name;
  };
  add(f.avx2, "avx2");
  add(f.fma, "fma");
  add(f.f16c, "f16c");
  add(f.avx_vnni, "avx_vnni");
  add(f.avx512f, "avx512f");
  add(f.avx512bw, "avx512bw");
  add(f.avx512vl, "avx512vl");
  add(f.avx512dq, "avx512dq");
  add(f.avx512_vnni, "avx512_vnni");
  add(f.avx512_bf16, "avx512_bf16");
  add(f.avx512_fp16, "avx512_fp16");
  add(f.amx_tile, "amx_tile");
  add(f.amx_int8, "amx_int8");
  add(f.amx_bf16, "amx_bf16");
  if (f.amx_tile && !f.amx_permitted) s += " (amx tile data refused by the kernel)";
  return s.empty() ? "none" : s;
}

Isa host_isa() {
  static const Isa host = [] {
    const CpuFeatures& f = cpu_features();
    // The AVX-512 level needs the subsets its kernels use: VNNI (vpdpwssd,
    // vpdpbusd) and BF16 (vcvtne2ps2bf16, vdpbf16ps).
    const bool avx512 = f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512_vnni && f.avx512_bf16 &&
                        f.avx2 && f.fma && f.f16c;
    if (avx512 && f.amx_tile && f.amx_int8 && f.amx_bf16) {
      if (f.amx_permitted) return Isa::kAmx;
      std::fprintf(stderr, "quanta: this CPU has AMX but Linux refused the tile-data permission; using avx512\n");
    }
    if (avx512) return Isa::kAvx512;
    if (f.avx2 && f.fma && f.f16c) return Isa::kAvx2;
    return Isa::kScalar;
  }();
  return host;
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
    else if (want == "amx") forced = Isa::kAmx;
    else throw Error("unknown value '" + want + "' (expected scalar, avx2, avx512 or amx)", {.field = "QUANTA_ISA"});
    if (static_cast<int>(forced) > static_cast<int>(host))
      throw Error(std::string("this CPU cannot run '") + env + "'; the best it runs is '" +
                      isa_name(host) + "'", {.field = "QUANTA_ISA"});
    return forced;
  }();
  return active;
}

const KernelTable& kernels_for(Isa isa) {
  switch (isa) {
    case Isa::kAmx:  // the tile kernels are a family of their own (tile_gemm.h)
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
