// CUDA launchers of the implicit GEMMs (algorithm "phase"): the tensor-core
// engine of kernels/mma_tiles.h for float16/bfloat16, one block per tile, and
// the scalar engine of kernels/implicit_gemm.h for the other dtypes (or when
// forced), one thread per tile. Split-K slices sum into a float workspace
// that a second kernel reduces in slice order. The tiling, loads, fragment
// coordinates and epilogue are the host/device code the CPU suite runs; only
// the mma.sync instruction is GPU-only.
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <atomic>
#include <type_traits>

#include "../kernels/mma_tiles.h"
#include "../launcher_common.h"
#include "cuda_launchers.h"

namespace torch_tconv::cuda {
namespace {

constexpr int kScalarThreads = 128;
constexpr int kReduceThreads = 256;
constexpr int64_t kMaxGridBlocks = int64_t(1) << 30;

// D += A x B for one m16n8k16 MMA with float32 accumulators (the
// instruction's register layout: mma_a_pair, mma_b_pair, mma_c_element).
template <typename scalar_t>
__device__ __forceinline__ void mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4],
                                             const uint32_t (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (std::is_same_v<scalar_t, c10::Half>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
#else
  // mma.sync with bfloat16 needs sm80; an older device never reaches here
  // (variant_for takes the scalar tiles there).
  __trap();
#endif
}

// One block per tile (blockIdx.x numbers tiles as tile_coord does): the
// steps of MmaBlock with barriers between them.
template <typename Shape, typename scalar_t, typename View>
__global__ void __launch_bounds__(Shape::kThreads)
    mma_gemm_kernel(View v, SplitK split, float* workspace) {
  using Block = MmaBlock<Shape, scalar_t, View>;
  __shared__ typename Block::Shared shared;
  const auto t = tile_coord<Shape::BM, Shape::BN>(v, split, blockIdx.x);
  const int thread = threadIdx.x;
  const int warp = thread / kWarpSize;
  const int lane = thread % kWarpSize;
  typename Block::Thread s;
  Block::start(v, t, thread, s);
  Block::reset_flags(shared, thread);
  for (auto k0 = t.k_begin; k0 < t.k_end; k0 += Shape::BK) {
    Block::decode_depth(v, shared, t, k0, thread);
    __syncthreads();
    Block::load(v, shared, t, s, thread);
    __syncthreads();
#pragma unroll
    for (int ks = 0; ks < Shape::BK; ks += kMmaK) {
      uint32_t a[Shape::MI][4];
      uint32_t b[Shape::NI][2];
      Block::fragments(shared, warp, lane, ks, a, b);
#pragma unroll
      for (int mi = 0; mi < Shape::MI; ++mi) {
#pragma unroll
        for (int ni = 0; ni < Shape::NI; ++ni) mma_m16n8k16<scalar_t>(s.acc[mi][ni], a[mi], b[ni]);
      }
    }
    __syncthreads();
  }
  Block::report_flags(shared, s);
  __syncthreads();
  if (Block::sums_need_redoing(shared)) Block::exact_sums(v, t, s, warp, lane);
  Block::store(v, TileStore<View, float>{v, workspace}, t, s, warp, lane);
}

// One thread per tile of the scalar engine.
template <typename acc_t, typename View>
__global__ void scalar_gemm_kernel(View v, SplitK split, acc_t* workspace, int64_t tiles) {
  const int64_t tile = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (tile >= tiles) return;
  scalar_gemm_tile<acc_t>(v, tile_coord<kScalarTileRows, kScalarTileCols>(v, split, tile),
                          TileStore<View, acc_t>{v, workspace});
}

template <typename acc_t, typename View>
__global__ void split_k_reduce_kernel(View v, const acc_t* workspace, int64_t slices,
                                      int64_t outputs) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e < outputs) split_k_reduce_element(v, workspace, slices, e);
}

int blocks_of(int64_t count, int threads) {
  const int64_t blocks = (count + threads - 1) / threads;
  TORCH_CHECK(blocks <= kMaxGridBlocks, "torch_tconv: too many tiles for one launch (", count,
              ")");
  return static_cast<int>(blocks);
}

// Runs tiles of TM x TN with split-K as split_k_for decides; launch(split,
// workspace, tiles) starts the tiles' kernel, then the slices are reduced.
template <int TM, int TN, typename acc_t, typename View, typename Launch>
void run_tiles(const View& v, int64_t depth_step, const Launch& launch) {
  const int64_t outputs = int64_t(v.rows()) * v.cols() * v.g.groups;
  const SplitK split = split_k_for(tile_count<TM, TN>(v, SplitK{}), outputs, v.depth(), depth_step);
  const int64_t tiles = tile_count<TM, TN>(v, split);
  if (tiles == 0) return;
  c10::DataPtr workspace;
  acc_t* partial = nullptr;
  if (split.slices > 1) {
    // The caching allocator reuses the block only after this stream's work.
    workspace = c10::cuda::CUDACachingAllocator::get()->allocate(split.slices * outputs *
                                                                  sizeof(acc_t));
    partial = static_cast<acc_t*>(workspace.get());
  }
  launch(split, partial, tiles);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (partial == nullptr) return;
  split_k_reduce_kernel<acc_t><<<blocks_of(outputs, kReduceThreads), kReduceThreads, 0,
                                 c10::cuda::getCurrentCUDAStream()>>>(v, partial, split.slices,
                                                                      outputs);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Per device, asked once: 0 unknown, 1 yes, 2 no.
constexpr int kMaxDevices = 64;
std::atomic<int8_t> g_has_mma_sync[kMaxDevices];

bool device_has_mma_sync() {
  const int device = c10::cuda::current_device();
  if (device < kMaxDevices && g_has_mma_sync[device].load() != 0) {
    return g_has_mma_sync[device].load() == 1;
  }
  int major = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  if (device < kMaxDevices) g_has_mma_sync[device].store(major >= 8 ? 1 : 2);
  return major >= 8;
}

// The variant a GEMM runs with (see TileVariant): tensor cores for 16-bit
// dtypes on sm80 and later, unless the scalar tiles are forced.
template <typename scalar_t, typename View>
TileVariant variant_for(const View& v, const Config& config) {
  if constexpr (!std::is_same_v<scalar_t, c10::Half> && !std::is_same_v<scalar_t, c10::BFloat16>) {
    return TileVariant::kScalar;
  } else {
    if (!device_has_mma_sync()) return TileVariant::kScalar;
    if (config.tile_variant != TileVariant::kAuto) return config.tile_variant;
    return default_mma_variant(v.rows(), v.cols(), v.g.groups);
  }
}

template <typename scalar_t, typename View>
void implicit_gemm_cuda(const View& v, const Config& config) {
  const auto stream = c10::cuda::getCurrentCUDAStream();
  if constexpr (std::is_same_v<scalar_t, c10::Half> || std::is_same_v<scalar_t, c10::BFloat16>) {
    const bool mma = with_mma_shape(variant_for<scalar_t>(v, config), [&](auto shape) {
      using Shape = decltype(shape);
      run_tiles<Shape::BM, Shape::BN, float>(
          v, Shape::BK, [&](const SplitK& split, float* workspace, int64_t tiles) {
            mma_gemm_kernel<Shape, scalar_t>
                <<<blocks_of(tiles, 1), Shape::kThreads, 0, stream>>>(v, split, workspace);
          });
    });
    if (mma) return;
  }
  using acc_t = at::opmath_type<scalar_t>;
  run_tiles<kScalarTileRows, kScalarTileCols, acc_t>(
      v, 1, [&](const SplitK& split, acc_t* workspace, int64_t tiles) {
        scalar_gemm_kernel<acc_t><<<blocks_of(tiles, kScalarThreads), kScalarThreads, 0, stream>>>(
            v, split, workspace, tiles);
      });
}

}  // namespace

void phase_forward(const at::Tensor& input, const at::Tensor& weight,
                   const std::optional<at::Tensor>& bias, const at::Tensor& out,
                   const Geometry& geometry, const Config& config) {
  if (out.numel() == 0) return;
  dispatch_launch(out.scalar_type(), geometry, config, [&](auto tag, const auto& g) {
    using scalar_t = decltype(tag);
    for_each_forward_gemm<scalar_t>(input, weight, bias, out, g, [&](const auto& view) {
      implicit_gemm_cuda<scalar_t>(view, config);
    });
  });
}

void implicit_input_grad(const at::Tensor& grad_output, const at::Tensor& weight,
                         const at::Tensor& grad_input, const Geometry& geometry,
                         const Config& config) {
  if (grad_input.numel() == 0) return;
  dispatch_launch(grad_input.scalar_type(), geometry, config, [&](auto tag, const auto& g) {
    using scalar_t = decltype(tag);
    implicit_gemm_cuda<scalar_t>(input_grad_gemm<scalar_t>(grad_output, weight, grad_input, g),
                                 config);
  });
}

void implicit_weight_grad(const at::Tensor& input, const at::Tensor& grad_output,
                          const at::Tensor& grad_weight, const Geometry& geometry,
                          const Config& config) {
  if (grad_weight.numel() == 0) return;
  dispatch_launch(grad_weight.scalar_type(), geometry, config, [&](auto tag, const auto& g) {
    using scalar_t = decltype(tag);
    implicit_gemm_cuda<scalar_t>(weight_grad_gemm<scalar_t>(input, grad_output, grad_weight, g),
                                 config);
  });
}

}  // namespace torch_tconv::cuda
