// The settings a call runs with. The process holds one current Config
// (torch_tconv.backends sets it from Python); each op takes one snapshot of
// it when it starts and hands that snapshot to everything it runs, so a call
// in flight keeps its settings when another thread changes them, and no
// launcher reads a global.
#pragma once

#include <cstdint>

namespace torch_tconv {

// kAuto picks per problem (the direct kernels for one input channel per
// group, else GEMM + col2im); the others force a path, so that tests can run
// every path on every configuration. kPhase runs the implicit GEMMs of
// kernels/implicit_gemm.h, with no column buffer: the forward as one GEMM per
// output phase, the input gradient as a strided convolution, the weight
// gradient split along its depth.
enum class Algorithm { kAuto = 0, kGemm = 1, kDirect = 2, kPhase = 3 };

// The engine of the implicit GEMMs. kAuto: on the GPU the tensor-core tiles
// for float16/bfloat16 (a variant chosen from the shape) and the scalar
// tiles for the other dtypes; on the CPU the register-blocked tiles for
// float32/float64 (cpu/blocked_phase_forward.h, cpu/blocked_gradients.h)
// and the scalar tiles otherwise. kScalar forces the scalar tiles; the kMma* force a tensor-core
// tile shape for float16/bfloat16 (the other dtypes run the scalar tiles),
// which the CPU runs through its emulation of the kernel
// (kernels/mma_tiles.h); kBlocked is kAuto on the CPU and the scalar tiles
// on the GPU.
enum class TileVariant {
  kAuto = 0,
  kScalar = 1,
  kMma128x64 = 2,
  kMma64x64 = 3,
  kMma64x32 = 4,
  kMma32x16 = 5,
  kBlocked = 6,
};

// Whether the CPU runs float16/bfloat16 GEMMs, and so writes its column
// buffers, in the input dtype: kAuto does where the processor has AMX for
// that dtype (see MachineFacts), kAlways and kNever force it.
enum class ReducedPrecisionGemm { kAuto = 0, kAlways = 1, kNever = 2 };

// Which GEMM the GEMM path's float32/float64 products run on the CPU:
// ATen's (MKL or oneDNN), the register-blocked tiles (cpu/blocked_gemm.h),
// or, for float32, oneDNN's matmul (gemm.h: onednn_product). kAuto takes the
// tiles or oneDNN where the processor is AMD's with AVX-512, on which MKL
// runs its AVX2 kernels (see Backend::prefers_blocked_gemm).
enum class CpuGemm { kAuto = 0, kAten = 1, kBlocked = 2, kOneDnn = 3 };

// Which compiled variant of the CPU launchers runs (cpu/cpu_isa.h): kAuto
// the one the environment variable TORCH_TCONV_CPU_ISA names, else AVX2
// where the processor has it; the others force a variant, which must be
// supported (tests run each against kBase).
enum class CpuIsa { kAuto = 0, kBase = 1, kAvx2 = 2, kAvx512 = 3 };

// Default upper bound of one chunk's column workspace.
constexpr int64_t kDefaultColumnBudgetBytes = int64_t(128) << 20;

struct Config;
// Whether the tile variant lets the CPU's register-blocked tiles run.
bool blocked_tiles_allowed(const Config& config);

struct Config {
  Algorithm algorithm = Algorithm::kAuto;
  // Upper bound on the column workspace of one chunk, over every backend's
  // own preference; a sample over it runs in windows of its input rows
  // where the backend can, else alone.
  int64_t column_budget_bytes = kDefaultColumnBudgetBytes;
  // Launchers index in 32 bits when every tensor has fewer than 2^31
  // elements (cheaper division on the GPU); false forces 64 bits.
  bool int32_indices = true;
  // CPU launchers run the row bodies (true) or the element bodies that the
  // CUDA launchers run (false); tests compare the two.
  bool cpu_row_kernels = true;
  ReducedPrecisionGemm cpu_reduced_precision_gemm = ReducedPrecisionGemm::kAuto;
  TileVariant tile_variant = TileVariant::kAuto;
  // Time the candidates at the first call of each shape key and keep the
  // fastest (autotune.h), where the algorithm is kAuto.
  bool benchmark = false;
  CpuIsa cpu_isa = CpuIsa::kAuto;
  CpuGemm cpu_gemm = CpuGemm::kAuto;
  // Advise transparent huge pages for CPU results of 32 MiB and more, which
  // are freshly mapped on every call (result_memory.h).
  bool cpu_huge_pages = true;
};

// A copy of the current configuration, taken atomically with respect to
// set_config: never half of one setting and half of another.
Config config_snapshot();
void set_config(const Config& config);

// Facts about the machine that kAuto decides by, set once when torch_tconv
// is imported (from torch's CPU capability report); until then false.
struct MachineFacts {
  bool bfloat16_gemm_fast = false;  // AMX or AVX512-BF16
  bool float16_gemm_fast = false;   // AMX with float16
};
MachineFacts machine_facts();
void set_machine_facts(const MachineFacts& facts);

// Bytes of the column workspace that this thread's last GEMM-path call
// allocated, whether its columns were position-major, and whether a product
// ran through the blocked tiles, or oneDNN's matmul, since that call began
// (any thread's count:
// for tests of the budget, of the channels-last passes and of
// Config::cpu_gemm, run one call at a time).
int64_t last_column_workspace_bytes();
bool last_columns_position_major();
bool last_gemm_blocked();
void record_blocked_product();
bool last_gemm_onednn();
void record_onednn_product();
void record_column_workspace(int64_t bytes, bool position_major);

}  // namespace torch_tconv
