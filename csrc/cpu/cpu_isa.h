// The CPU launchers are compiled once per instruction set, as ATen compiles
// its CPU kernels once per CPU_CAPABILITY: cpu/launchers_<isa>.cpp each
// include the library headers for the baseline (launcher_includes.h), then
// cpu/launchers.h under their own target instructions and in their own
// namespace (see TORCH_TCONV_ISA_NAMESPACE_BEGIN in kernels/geometry.h).
// The bodies are the same source in every variant; only the compiler's
// vector width differs, and with floating-point contraction off (setup.py)
// every variant computes the same bits. Each call runs the variant its
// Config::cpu_isa names.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "../backend.h"

namespace torch_tconv {

// The variants' Backends (cpu/launchers_<isa>.cpp).
const Backend& cpu_launchers_base();
const Backend& cpu_launchers_avx2();  // AVX2 and FMA
const Backend& cpu_launchers_avx512();  // AVX-512 F, BW, VL and DQ

// The names of the setting's values: "auto", then the variants narrowest
// first.
constexpr std::pair<const char*, CpuIsa> kCpuIsaNames[4] = {
    {"auto", CpuIsa::kAuto}, {"base", CpuIsa::kBase}, {"avx2", CpuIsa::kAvx2},
    {"avx512", CpuIsa::kAvx512}};

// Whether this processor runs the variant's instructions (kAuto: yes).
bool cpu_isa_supported(CpuIsa isa);

// The names of the variants this processor runs, narrowest first.
std::vector<std::string> supported_cpu_isa_names();

// A ValueError, "<what> is not supported by this processor; it supports
// ...", unless the processor runs the variant.
void check_cpu_isa_supported(CpuIsa isa, const std::string& what);

// The variant a call with this setting runs: kAuto is the one the
// environment variable TORCH_TCONV_CPU_ISA names (read once; an unknown or
// unsupported name raises at every call), else AVX2 where the processor
// has it: the AVX-512 variant measured slower on this library's passes
// (bench/NOTES.md), so it runs only when asked for.
CpuIsa resolve_cpu_isa(CpuIsa isa);

// The Backend of the variant a call with this configuration runs.
const Backend& cpu_backend_for(const Config& config);

}  // namespace torch_tconv
