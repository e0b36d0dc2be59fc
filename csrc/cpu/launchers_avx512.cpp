// The CPU launchers for processors with AVX-512 (F, BW, VL, DQ), with
// 512-bit vectors. See cpu_isa.h.
#define TORCH_TCONV_CPU_ISA cpu_avx512
#include "launcher_includes.h"

// From here on, this variant's instructions: only the bodies and launchers
// (see launcher_includes.h).
#if defined(__x86_64__) || defined(_M_X64)
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")
#define TORCH_TCONV_CPU_ISA_COMPILED 1
// The pragma does not define __AVX2__ and the like: the register-blocked
// tiles (blocked_phase_forward.h) learn their vectors from these.
#define TORCH_TCONV_CPU_VECTOR_BYTES 64
#define TORCH_TCONV_CPU_VECTOR_REGISTERS 32
#endif
#include "launchers.h"

#pragma GCC reset_options
#include "cpu_isa.h"

namespace torch_tconv {

const Backend& cpu_launchers_avx512() {
#ifdef TORCH_TCONV_CPU_ISA_COMPILED
  return cpu_avx512::launchers_backend();
#else
  // Not an x86-64 build: no such variant (cpu_isa_supported says so).
  return cpu_launchers_base();
#endif
}

}  // namespace torch_tconv
