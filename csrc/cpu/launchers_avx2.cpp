// The CPU launchers for processors with AVX2 and FMA. See cpu_isa.h.
#define TORCH_TCONV_CPU_ISA cpu_avx2
#include "launcher_includes.h"

// From here on, this variant's instructions: only the bodies and launchers
// (see launcher_includes.h).
#if defined(__x86_64__) || defined(_M_X64)
#pragma GCC target("avx2,fma")
#define TORCH_TCONV_CPU_ISA_COMPILED 1
// The pragma does not define __AVX2__ and the like: the register-blocked
// tiles (blocked_phase_forward.h) learn their vectors from these.
#define TORCH_TCONV_CPU_VECTOR_BYTES 32
#define TORCH_TCONV_CPU_VECTOR_REGISTERS 16
#endif
#include "launchers.h"

#pragma GCC reset_options
#include "cpu_isa.h"

namespace torch_tconv {

const Backend& cpu_launchers_avx2() {
#ifdef TORCH_TCONV_CPU_ISA_COMPILED
  return cpu_avx2::launchers_backend();
#else
  // Not an x86-64 build: no such variant (cpu_isa_supported says so).
  return cpu_launchers_base();
#endif
}

}  // namespace torch_tconv
