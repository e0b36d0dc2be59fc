// CUDA launchers of the element-wise passes (cuda_launchers.cu) and of the
// implicit GEMMs (implicit_gemm_launchers.cu), registered for the CUDA
// dispatch key in cuda_backend.cpp.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "../backend.h"

namespace torch_tconv::cuda {

void col2im(const at::Tensor& cols, const std::optional<at::Tensor>& bias,
            const at::Tensor& out, const Geometry& g, const Config& config);
// out_sum (1, C_out, out...) in the op-math dtype += col2im of a window of
// one sample's input rows (see Backend::col2im_window).
void col2im_window(const at::Tensor& cols, const at::Tensor& out_sum, const Geometry& g,
                   const Config& config);
void im2col(const at::Tensor& grad_output, const at::Tensor& cols, const Geometry& g,
            const Config& config);
void direct_forward(const at::Tensor& input, const at::Tensor& weight,
                    const std::optional<at::Tensor>& bias, const at::Tensor& out,
                    const Geometry& g, const Config& config);
void direct_input_grad(const at::Tensor& grad_output, const at::Tensor& weight,
                       const at::Tensor& grad_input, const Geometry& g, const Config& config);
void direct_weight_grad(const at::Tensor& input, const at::Tensor& grad_output,
                        const at::Tensor& grad_weight, const Geometry& g, const Config& config);
void phase_forward(const at::Tensor& input, const at::Tensor& weight,
                   const std::optional<at::Tensor>& bias, const at::Tensor& out,
                   const Geometry& g, const Config& config);
void implicit_input_grad(const at::Tensor& grad_output, const at::Tensor& weight,
                         const at::Tensor& grad_input, const Geometry& g, const Config& config);
void implicit_weight_grad(const at::Tensor& input, const at::Tensor& grad_output,
                          const at::Tensor& grad_weight, const Geometry& g, const Config& config);

}  // namespace torch_tconv::cuda
