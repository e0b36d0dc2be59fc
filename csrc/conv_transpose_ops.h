// The five registered ops and their backend-independent algorithm.
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
//
// This file orchestrates: validation, chunking of the batch to bound the
// column workspace, and the GEMMs (ATen's at::bmm: MKL/oneDNN on the CPU,
// cuBLAS on the GPU). The element-wise passes are the backend's
// (ElementwiseKernels), all of them built on kernels/conv_transpose_bodies.h.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "config.h"
#include "kernels/conv_transpose_bodies.h"

namespace torch_tconv {

using Geometry = ConvGeometry<int64_t>;

// A backend's element-wise passes. Tensors are contiguous; `out`-style
// arguments are written in full. Column buffers have the layout documented in
// conv_transpose_bodies.h, in the dtype given by column_dtype. `config` is
// the calling op's snapshot (index width, CPU row or element bodies).
struct ElementwiseKernels {
  // out (N, C_out, out...) = col2im(cols) + bias.
  void (*col2im)(const at::Tensor& cols, const std::optional<at::Tensor>& bias,
                 const at::Tensor& out, const Geometry& g, const Config& config);
  // Adds col2im(cols) of a window of one sample's input rows (g is the
  // window's geometry, see for_each_chunk) to out (1, C_out, out...), in the
  // op-math dtype, visiting only the output rows the window reaches (see
  // window_reach). Null where the backend does not split samples (then one
  // sample is the smallest chunk).
  void (*col2im_window)(const at::Tensor& cols, const at::Tensor& out, const Geometry& g,
                        const Config& config);
  // cols = im2col(grad_output (N, C_out, out...)).
  void (*im2col)(const at::Tensor& grad_output, const at::Tensor& cols,
                 const Geometry& g, const Config& config);
  // Direct path (no GEMM, no column buffer).
  void (*direct_forward)(const at::Tensor& input, const at::Tensor& weight,
                         const std::optional<at::Tensor>& bias,
                         const at::Tensor& out, const Geometry& g, const Config& config);
  void (*direct_input_grad)(const at::Tensor& grad_output, const at::Tensor& weight,
                            const at::Tensor& grad_input, const Geometry& g,
                            const Config& config);
  void (*direct_weight_grad)(const at::Tensor& input, const at::Tensor& grad_output,
                             const at::Tensor& grad_weight, const Geometry& g,
                             const Config& config);
  // out (C_out,) = grad_output (N, C_out, ...) summed per channel in the
  // op-math dtype. Null: ATen's sum does it.
  void (*bias_grad)(const at::Tensor& grad_output, const at::Tensor& out);
  // The dtype of the GEMM operands and column buffers for inputs of `dtype`:
  // the input dtype, whose GEMMs accumulate in float32 (cuBLAS, oneDNN), or
  // for float16/bfloat16 on a CPU without fast kernels for them, float32.
  at::ScalarType (*column_dtype)(at::ScalarType dtype, const Config& config);
  // Preferred size of one chunk's column buffer: small enough on the CPU for
  // the GEMM's output to be read back from cache, large on the GPU where
  // bigger GEMMs and fewer launches win. Capped by Config::column_budget_bytes.
  int64_t column_chunk_bytes;
  // Whether chunks that write disjoint outputs may run in parallel, one per
  // thread with serial GEMMs (the CPU), rather than one after another with
  // parallel GEMMs and element passes (the GPU).
  bool parallel_chunks;
  // Whether the forward GEMM wants the transposed weight copied contiguous:
  // oneDNN's bfloat16 GEMM runs 4x slower on a transposed view, while cuBLAS
  // takes the transpose as a flag, and the copy would cost a kernel launch.
  bool contiguous_forward_weight;
};

// Calls f(geometry) with the geometry as a KernelGeometry in 32-bit indices
// where the config allows them and every tensor fits, else 64-bit, its
// divisors computed for this launch.
template <typename F>
void dispatch_index_type(const Geometry& g, const Config& config, const F& f) {
  if (config.int32_indices && g.fits_int32()) {
    f(KernelGeometry<int32_t>(g.template as<int32_t>()));
  } else {
    f(KernelGeometry<int64_t>(g));
  }
}

at::Tensor conv_transpose(
    const ElementwiseKernels& kernels,
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
    const ElementwiseKernels& kernels,
    const at::Tensor& grad_output,
    const at::Tensor& weight,
    c10::SymIntArrayRef input_size,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups);

at::Tensor conv_transpose_weight_grad(
    const ElementwiseKernels& kernels,
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
    const ElementwiseKernels& kernels,
    const at::Tensor& grad_output,
    const at::Tensor& input,
    const at::Tensor& weight,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups);

// The bias gradient of a batched grad_output (N, C_out, out...).
at::Tensor conv_transpose_bias_grad(const ElementwiseKernels& kernels,
                                    const at::Tensor& grad_output);

// Binds the five ops to one backend's kernels, with the signatures that the
// schema in conv_transpose_ops.cpp declares. A backend registers them all in
// its TORCH_LIBRARY_IMPL block with BackendOps<my_kernels>::register_impls(m).
template <const ElementwiseKernels& (*Kernels)()>
struct BackendOps {
  static at::Tensor forward(
      const at::Tensor& input, const at::Tensor& weight,
      const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
      at::IntArrayRef padding, at::IntArrayRef output_padding,
      at::IntArrayRef dilation, int64_t groups,
      at::OptionalSymIntArrayRef output_size) {
    return conv_transpose(Kernels(), input, weight, bias, stride, padding,
                          output_padding, dilation, groups, output_size);
  }
  static at::Tensor input_grad(
      const at::Tensor& grad_output, const at::Tensor& weight,
      c10::SymIntArrayRef input_size, at::IntArrayRef stride,
      at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
    return conv_transpose_input_grad(Kernels(), grad_output, weight, input_size,
                                     stride, padding, dilation, groups);
  }
  static at::Tensor weight_grad(
      const at::Tensor& input, const at::Tensor& grad_output,
      at::IntArrayRef kernel_size, at::IntArrayRef stride,
      at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
    return conv_transpose_weight_grad(Kernels(), input, grad_output, kernel_size,
                                      stride, padding, dilation, groups);
  }
  static std::tuple<at::Tensor, at::Tensor> backward(
      const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
      at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
      int64_t groups) {
    return conv_transpose_backward(Kernels(), grad_output, input, weight, stride, padding,
                                   dilation, groups);
  }
  static at::Tensor bias_grad(const at::Tensor& grad_output) {
    return conv_transpose_bias_grad(Kernels(), grad_output);
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
