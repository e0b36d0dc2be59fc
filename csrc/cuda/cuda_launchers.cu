// CUDA launchers: thin grid-stride loops around the bodies of
// kernels/element_bodies.h, which the CPU launchers run too. All index
// arithmetic is in those bodies, in 32 bits where the problem allows it
// (dispatch_index_type), else in 64. No atomics: every output element
// is written by one thread (or, for the direct weight gradient, reduced by one
// block in a fixed order), so results are bitwise reproducible.
//
// Only light headers here: <ATen/ATen.h> roughly doubles nvcc's time per file,
// and <ATen/cuda/CUDAContext.h> needs cusparse.h, which the toolkit may lack.
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "../kernels/element_bodies.h"
#include "../launcher_common.h"
#include "cuda_launchers.h"

namespace torch_tconv::cuda {
namespace {

constexpr int kThreads = 256;
// Grid-stride loops cover any size; more blocks than this add no parallelism.
constexpr int64_t kMaxBlocks = int64_t(1) << 20;

int blocks_for(int64_t numel) {
  return static_cast<int>(std::min<int64_t>((numel + kThreads - 1) / kThreads, kMaxBlocks));
}

__device__ __forceinline__ int64_t first_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

// In 64 bits even for 32-bit problems: index + stride may pass 2^31 on the
// last step of a grid-stride loop.
__device__ __forceinline__ int64_t grid_stride() {
  return static_cast<int64_t>(blockDim.x) * gridDim.x;
}

// Calls body(i) for i in [0, numel), i in index_t, over a grid-stride loop.
template <typename index_t, typename Body>
__device__ __forceinline__ void for_each_index(int64_t numel, const Body& body) {
  for (int64_t i = first_index(); i < numel; i += grid_stride()) {
    body(static_cast<index_t>(i));
  }
}

template <typename scalar_t, typename index_t>
__global__ void col2im_kernel(const scalar_t* cols, const scalar_t* bias, scalar_t* out,
                              KernelGeometry<index_t> g, int64_t numel) {
  using acc_t = at::opmath_type<scalar_t>;
  for_each_index<index_t>(numel, [&](index_t i) {
    out[i] = static_cast<scalar_t>(col2im_element<acc_t>(cols, bias, g, i));
  });
}

// out_sum holds op-math values; col_t is the columns' dtype.
template <typename col_t, typename index_t>
__global__ void col2im_window_kernel(const col_t* cols, at::opmath_type<col_t>* out_sum,
                                     KernelGeometry<index_t> g, WindowReach<index_t> reach) {
  for_each_index<index_t>(reach.numel, [&](index_t e) {
    col2im_window_element(cols, out_sum, g, reach, e);
  });
}

template <typename scalar_t, typename index_t>
__global__ void im2col_kernel(const scalar_t* grad_output, scalar_t* cols,
                              KernelGeometry<index_t> g, int64_t numel) {
  for_each_index<index_t>(numel, [&](index_t i) { cols[i] = im2col_element(grad_output, g, i); });
}

template <typename scalar_t, typename index_t>
__global__ void direct_forward_kernel(const scalar_t* input, const scalar_t* weight,
                                      const scalar_t* bias, scalar_t* out,
                                      KernelGeometry<index_t> g, int64_t numel) {
  using acc_t = at::opmath_type<scalar_t>;
  for_each_index<index_t>(numel, [&](index_t i) {
    out[i] = static_cast<scalar_t>(direct_forward_element<acc_t>(input, weight, bias, g, i));
  });
}

template <typename scalar_t, typename index_t>
__global__ void direct_input_grad_kernel(const scalar_t* grad_output, const scalar_t* weight,
                                         scalar_t* grad_input, KernelGeometry<index_t> g,
                                         int64_t numel) {
  using acc_t = at::opmath_type<scalar_t>;
  for_each_index<index_t>(numel, [&](index_t i) {
    grad_input[i] = static_cast<scalar_t>(direct_input_grad_element<acc_t>(grad_output, weight, g, i));
  });
}

// One block per weight element: its threads split the (sample, position) sum
// and a shared-memory tree adds the partial sums in a fixed order.
template <typename scalar_t, typename index_t>
__global__ void direct_weight_grad_kernel(const scalar_t* input, const scalar_t* grad_output,
                                          scalar_t* grad_weight, KernelGeometry<index_t> g,
                                          int64_t numel) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t partial[kThreads];
  const index_t positions = g.batch * g.in_numel();
  for (int64_t w = blockIdx.x; w < numel; w += gridDim.x) {
    partial[threadIdx.x] = direct_weight_grad_partial<acc_t>(
        input, grad_output, g, static_cast<index_t>(w), static_cast<index_t>(threadIdx.x),
        positions, static_cast<index_t>(blockDim.x));
    __syncthreads();
    for (int width = kThreads / 2; width > 0; width /= 2) {
      if (threadIdx.x < width) partial[threadIdx.x] += partial[threadIdx.x + width];
      __syncthreads();
    }
    if (threadIdx.x == 0) grad_weight[w] = static_cast<scalar_t>(partial[0]);
    __syncthreads();
  }
}

}  // namespace

void col2im(const at::Tensor& cols, const std::optional<at::Tensor>& bias,
            const at::Tensor& out, const Geometry& geometry, const Config& config) {
  const int64_t numel = out.numel();
  if (numel == 0) return;
  TORCH_TCONV_DISPATCH(out.scalar_type(), "col2im_cuda", [&] {
    dispatch_index_type(geometry, config, [&](const auto& g) {
      using index_t = index_type<decltype(g)>;
      col2im_kernel<scalar_t, index_t>
          <<<blocks_for(numel), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
              cols.const_data_ptr<scalar_t>(), bias_ptr<scalar_t>(bias),
              out.mutable_data_ptr<scalar_t>(), g, numel);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

void col2im_window(const at::Tensor& cols, const at::Tensor& out_sum, const Geometry& geometry,
                   const Config& config) {
  TORCH_TCONV_DISPATCH(cols.scalar_type(), "col2im_window_cuda", [&] {
    dispatch_index_type(geometry, config, [&](const auto& g) {
      using index_t = index_type<decltype(g)>;
      const auto reach = window_reach(g);
      if (reach.numel == 0) return;
      col2im_window_kernel<scalar_t, index_t>
          <<<blocks_for(reach.numel), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
              cols.const_data_ptr<scalar_t>(),
              out_sum.mutable_data_ptr<at::opmath_type<scalar_t>>(), g, reach);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

void im2col(const at::Tensor& grad_output, const at::Tensor& cols, const Geometry& geometry,
            const Config& config) {
  const int64_t numel = cols.numel();
  if (numel == 0) return;
  TORCH_TCONV_DISPATCH(cols.scalar_type(), "im2col_cuda", [&] {
    dispatch_index_type(geometry, config, [&](const auto& g) {
      using index_t = index_type<decltype(g)>;
      im2col_kernel<scalar_t, index_t>
          <<<blocks_for(numel), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
              grad_output.const_data_ptr<scalar_t>(), cols.mutable_data_ptr<scalar_t>(), g,
              numel);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

void direct_forward(const at::Tensor& input, const at::Tensor& weight,
                    const std::optional<at::Tensor>& bias, const at::Tensor& out,
                    const Geometry& geometry, const Config& config) {
  const int64_t numel = out.numel();
  if (numel == 0) return;
  TORCH_TCONV_DISPATCH(out.scalar_type(), "direct_forward_cuda", [&] {
    dispatch_index_type(geometry, config, [&](const auto& g) {
      using index_t = index_type<decltype(g)>;
      direct_forward_kernel<scalar_t, index_t>
          <<<blocks_for(numel), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
              input.const_data_ptr<scalar_t>(), weight.const_data_ptr<scalar_t>(),
              bias_ptr<scalar_t>(bias), out.mutable_data_ptr<scalar_t>(), g, numel);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

void direct_input_grad(const at::Tensor& grad_output, const at::Tensor& weight,
                       const at::Tensor& grad_input, const Geometry& geometry,
                       const Config& config) {
  const int64_t numel = grad_input.numel();
  if (numel == 0) return;
  TORCH_TCONV_DISPATCH(grad_input.scalar_type(), "direct_input_grad_cuda", [&] {
    dispatch_index_type(geometry, config, [&](const auto& g) {
      using index_t = index_type<decltype(g)>;
      direct_input_grad_kernel<scalar_t, index_t>
          <<<blocks_for(numel), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
              grad_output.const_data_ptr<scalar_t>(), weight.const_data_ptr<scalar_t>(),
              grad_input.mutable_data_ptr<scalar_t>(), g, numel);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

void direct_weight_grad(const at::Tensor& input, const at::Tensor& grad_output,
                        const at::Tensor& grad_weight, const Geometry& geometry,
                        const Config& config) {
  const int64_t numel = grad_weight.numel();
  if (numel == 0) return;
  TORCH_TCONV_DISPATCH(grad_weight.scalar_type(), "direct_weight_grad_cuda", [&] {
    dispatch_index_type(geometry, config, [&](const auto& g) {
      using index_t = index_type<decltype(g)>;
      direct_weight_grad_kernel<scalar_t, index_t>
          <<<static_cast<int>(std::min<int64_t>(numel, kMaxBlocks)), kThreads, 0,
             c10::cuda::getCurrentCUDAStream()>>>(
              input.const_data_ptr<scalar_t>(), grad_output.const_data_ptr<scalar_t>(),
              grad_weight.mutable_data_ptr<scalar_t>(), g, numel);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

}  // namespace torch_tconv::cuda
