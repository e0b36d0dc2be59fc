// The CPU launchers for any processor: the compiler's baseline instructions
// (SSE2 on x86-64). See cpu_isa.h.
#define TORCH_TCONV_CPU_ISA cpu_base
// The variant that also compiles the reference paths (see cpu/launchers.h).
#define TORCH_TCONV_CPU_REFERENCE_PATHS 1
#include "launcher_includes.h"
#include "launchers.h"
#include "cpu_isa.h"

namespace torch_tconv {

const Backend& cpu_launchers_base() {
  return cpu_base::launchers_backend();
}

}  // namespace torch_tconv
