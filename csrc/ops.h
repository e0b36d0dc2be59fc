// The five ops on a given backend: each describes its call (problem.h),
// plans it (plan.h) and runs it, with the GEMMs of gemm.h and the backend's
// element-wise passes (backend.h).
//
//   conv_transpose             forward: scatter (GEMM, then col2im)
//   conv_transpose_input_grad  gather: im2col of grad_output, then GEMM
//   conv_transpose_weight_grad im2col of grad_output, then GEMM with input
//   conv_transpose_backward    both gradients over one im2col of grad_output
//   conv_transpose_bias_grad   grad_output summed per channel
//
// They are faces of one trilinear form
//   T(x, w, g) = <conv_transpose(x, w), g>,
// so each one's backward is expressed through the others (see
// torch_tconv/_autograd.py) and gradients of every order work.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

#include "backend.h"

namespace torch_tconv {

at::Tensor conv_transpose(
    const Backend& backend,
    const at::Tensor& input,
    const at::Tensor& weight,
    const std::optional<at::Tensor>& bias,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef output_padding,
    at::IntArrayRef dilation,
    int64_t groups,
    at::OptionalSymIntArrayRef output_size);

at::Tensor conv_transpose_input_grad(
    const Backend& backend,
    const at::Tensor& grad_output,
    const at::Tensor& weight,
    c10::SymIntArrayRef input_size,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups);

at::Tensor conv_transpose_weight_grad(
    const Backend& backend,
    const at::Tensor& input,
    const at::Tensor& grad_output,
    at::IntArrayRef kernel_size,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups);

// The input and weight gradients together: (conv_transpose_input_grad,
// conv_transpose_weight_grad) with the input's size and the weight's kernel
// size, sharing one im2col of grad_output per chunk.
std::tuple<at::Tensor, at::Tensor> conv_transpose_backward(
    const Backend& backend,
    const at::Tensor& grad_output,
    const at::Tensor& input,
    const at::Tensor& weight,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups);

// The bias gradient of a batched grad_output (N, C_out, out...).
at::Tensor conv_transpose_bias_grad(const Backend& backend,
                                    const at::Tensor& grad_output);

// Binds the five ops to one backend, with the signatures that the schema in
// schema.cpp declares. A backend registers them all in its
// TORCH_LIBRARY_IMPL block with BackendOps<my_backend>::register_impls(m).
template <const Backend& (*GetBackend)()>
struct BackendOps {
  static at::Tensor forward(
      const at::Tensor& input, const at::Tensor& weight,
      const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
      at::IntArrayRef padding, at::IntArrayRef output_padding,
      at::IntArrayRef dilation, int64_t groups,
      at::OptionalSymIntArrayRef output_size) {
    return conv_transpose(GetBackend(), input, weight, bias, stride, padding,
                          output_padding, dilation, groups, output_size);
  }
  static at::Tensor input_grad(
      const at::Tensor& grad_output, const at::Tensor& weight,
      c10::SymIntArrayRef input_size, at::IntArrayRef stride,
      at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
    return conv_transpose_input_grad(GetBackend(), grad_output, weight, input_size,
                                     stride, padding, dilation, groups);
  }
  static at::Tensor weight_grad(
      const at::Tensor& input, const at::Tensor& grad_output,
      at::IntArrayRef kernel_size, at::IntArrayRef stride,
      at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
    return conv_transpose_weight_grad(GetBackend(), input, grad_output, kernel_size,
                                      stride, padding, dilation, groups);
  }
  static std::tuple<at::Tensor, at::Tensor> backward(
      const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
      at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
      int64_t groups) {
    return conv_transpose_backward(GetBackend(), grad_output, input, weight, stride, padding,
                                   dilation, groups);
  }
  static at::Tensor bias_grad(const at::Tensor& grad_output) {
    return conv_transpose_bias_grad(GetBackend(), grad_output);
  }

  // Library is torch::Library (a template so that this header, which the
  // CUDA launchers include, need not pull in torch/library.h).
  template <typename Library>
  static void register_impls(Library& m) {
    m.impl("conv_transpose", &forward);
    m.impl("conv_transpose_input_grad", &input_grad);
    m.impl("conv_transpose_weight_grad", &weight_grad);
    m.impl("conv_transpose_backward", &backward);
    m.impl("conv_transpose_bias_grad", &bias_grad);
  }
};

}  // namespace torch_tconv
