// Registers the CUDA backend: the shared algorithm of ops.cpp
// with the CUDA launchers. GEMM operands keep the input dtype (cuBLAS
// accumulates float16/bfloat16 products in float32).
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <torch/library.h>

#include "../ops.h"
#include "cuda_launchers.h"

namespace torch_tconv {
namespace {

// cuBLAS accumulates float16/bfloat16 products in float32.
at::ScalarType column_dtype_cuda(at::ScalarType dtype, const Config&) {
  return dtype;
}

void synchronize_cuda() {
  c10::cuda::device_synchronize();
}

bool capturing_cuda() {
  return c10::cuda::currentStreamCaptureStatusMayInitCtx() != c10::cuda::CaptureStatus::None;
}

const Backend& cuda_backend() {
  static const Backend backend{
      cuda::col2im,
      cuda::col2im_window,
      cuda::im2col,
      // No channels-last column passes yet: such tensors are made contiguous.
      /*col2im_channels_last=*/nullptr,
      /*col2im_window_channels_last=*/nullptr,
      /*im2col_channels_last=*/nullptr,
      /*col2im_position_major_rows=*/nullptr,
      cuda::direct_forward,
      cuda::direct_input_grad,
      cuda::direct_weight_grad,
      /*direct_backward=*/nullptr,
      cuda::phase_forward,
      cuda::implicit_input_grad,
      cuda::implicit_weight_grad,
      /*prefers_phase_forward=*/nullptr,
      /*phase_backward=*/nullptr,
      /*prefers_phase_gradients=*/nullptr,
      /*blocked_gemm=*/nullptr,
      /*prefers_blocked_gemm=*/nullptr,
      /*prefers_blocked_gradient_gemm=*/nullptr,
      /*prefers_onednn_gradient_gemm=*/nullptr,
      /*bias_grad=*/nullptr,
      column_dtype_cuda,
      /*column_chunk_bytes=*/kDefaultColumnBudgetBytes,
      /*forward_chunk_positions=*/0,
      /*parallel_chunks=*/false,
      synchronize_cuda,
      capturing_cuda,
      /*contiguous_forward_weight=*/false,
      /*name=*/"cuda",
  };
  return backend;
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_tconv, CUDA, m) {
  BackendOps<cuda_backend>::register_impls(m);
}

}  // namespace torch_tconv
