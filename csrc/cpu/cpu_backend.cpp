// Registers the CPU backend: the shared algorithm of ops.cpp with the CPU
// launchers, in the variant each call's configuration selects (cpu_isa.h).
#include <torch/library.h>

#include <cstdlib>

#include "../ops.h"
#include "cpu_isa.h"

namespace torch_tconv {
namespace {

// TORCH_TCONV_CPU_ISA's variant, or AVX2 where supported (see
// resolve_cpu_isa).
// The variable's value, or null where it is unset or empty.
const char* cpu_isa_from_environment() {
  const char* requested = std::getenv("TORCH_TCONV_CPU_ISA");
  return requested != nullptr && *requested != '\0' ? requested : nullptr;
}

CpuIsa automatic_cpu_isa() {
  const char* requested = cpu_isa_from_environment();
  if (requested == nullptr) {
    return cpu_isa_supported(CpuIsa::kAvx2) ? CpuIsa::kAvx2 : CpuIsa::kBase;
  }
  const std::string name(requested);
  for (const auto& [known, isa] : kCpuIsaNames) {
    if (name != known || isa == CpuIsa::kAuto) continue;
    check_cpu_isa_supported(isa, "TORCH_TCONV_CPU_ISA='" + name + "'");
    return isa;
  }
  TORCH_CHECK_VALUE(false, "TORCH_TCONV_CPU_ISA must be one of 'base', 'avx2', 'avx512', got '",
                    name, "'");
}

const Backend& cpu_backend() {
  return cpu_backend_for(config_snapshot());
}

}  // namespace

bool cpu_isa_supported(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAuto:
    case CpuIsa::kBase:
      return true;
#if defined(__x86_64__) || defined(_M_X64)
    case CpuIsa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case CpuIsa::kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#endif
    default:
      return false;
  }
}

std::vector<std::string> supported_cpu_isa_names() {
  std::vector<std::string> names;
  for (const auto& [name, isa] : kCpuIsaNames) {
    if (isa != CpuIsa::kAuto && cpu_isa_supported(isa)) names.push_back(name);
  }
  return names;
}

void check_cpu_isa_supported(CpuIsa isa, const std::string& what) {
  if (cpu_isa_supported(isa)) return;
  std::string supported;
  for (const std::string& name : supported_cpu_isa_names()) supported += " '" + name + "'";
  TORCH_CHECK_VALUE(false, what, " is not supported by this processor; it supports", supported);
}

CpuIsa resolve_cpu_isa(CpuIsa isa) {
  if (isa != CpuIsa::kAuto) return isa;
  // A function-local static: read once, by the first call; an invalid
  // variable leaves it unset, so every call raises the same error.
  static const CpuIsa automatic = automatic_cpu_isa();
  return automatic;
}

namespace {

// The automatic AVX2 variant on a processor with AVX-512 too: AVX2's
// passes, which measured faster than AVX-512's (bench/NOTES.md), with the
// AVX-512 forward of the register-blocked tiles, which have twice the
// width and registers there (cpu/blocked_phase_forward.h).
const Backend& avx2_with_avx512_tiles() {
  static const Backend backend = [] {
    Backend mixed = cpu_launchers_avx2();
    mixed.phase_forward = cpu_launchers_avx512().phase_forward;
    mixed.prefers_phase_forward = cpu_launchers_avx512().prefers_phase_forward;
    mixed.blocked_gemm = cpu_launchers_avx512().blocked_gemm;
    mixed.prefers_blocked_gemm = cpu_launchers_avx512().prefers_blocked_gemm;
    mixed.prefers_blocked_gradient_gemm = cpu_launchers_avx512().prefers_blocked_gradient_gemm;
    mixed.prefers_onednn_gradient_gemm = cpu_launchers_avx512().prefers_onednn_gradient_gemm;
    mixed.name = "cpu_avx2_with_avx512_tiles";
    return mixed;
  }();
  return backend;
}

// Whether the call asks for a reference path, which only the baseline
// variant compiles (kReferencePaths in cpu/launchers.h).
bool asks_for_reference_path(const Config& config) {
  switch (config.tile_variant) {
    case TileVariant::kMma128x64:
    case TileVariant::kMma64x64:
    case TileVariant::kMma64x32:
    case TileVariant::kMma32x16:
      return true;
    default:
      return !config.cpu_row_kernels;
  }
}

}  // namespace

const Backend& cpu_backend_for(const Config& config) {
  const CpuIsa isa = resolve_cpu_isa(config.cpu_isa);
  if (asks_for_reference_path(config)) return cpu_launchers_base();
  static const bool named_by_environment = cpu_isa_from_environment() != nullptr;
  if (config.cpu_isa == CpuIsa::kAuto && !named_by_environment && isa == CpuIsa::kAvx2 &&
      cpu_isa_supported(CpuIsa::kAvx512)) {
    return avx2_with_avx512_tiles();
  }
  switch (isa) {
    case CpuIsa::kAvx512:
      return cpu_launchers_avx512();
    case CpuIsa::kAvx2:
      return cpu_launchers_avx2();
    default:
      return cpu_launchers_base();
  }
}

}  // namespace torch_tconv

TORCH_LIBRARY_IMPL(torch_tconv, CPU, m) {
  torch_tconv::BackendOps<torch_tconv::cpu_backend>::register_impls(m);
}
