// The five ops of the torch_tconv library, as the dispatcher knows them.
// Their implementations: ops.h (the algorithm), cpu/ and cuda/ (the
// backends), autocast.cpp, and torch_tconv/_autograd.py,
// _fake.py and _vmap.py (autograd, fake kernels, batching rules).
#include <torch/library.h>

TORCH_LIBRARY(torch_tconv, m) {
  // The forward: scatter (GEMM, then col2im). output_size (spatial) implies
  // output_padding when given.
  m.def(
      "conv_transpose(Tensor input, Tensor weight, Tensor? bias, int[] stride, "
      "int[] padding, int[] output_padding, int[] dilation, int groups, "
      "SymInt[]? output_size=None) -> Tensor");
  // Gradient to the input: gather (im2col of grad_output, then GEMM).
  m.def(
      "conv_transpose_input_grad(Tensor grad_output, Tensor weight, "
      "SymInt[] input_size, int[] stride, int[] padding, int[] dilation, "
      "int groups) -> Tensor");
  // Gradient to the weight: im2col of grad_output, then GEMM with the input.
  m.def(
      "conv_transpose_weight_grad(Tensor input, Tensor grad_output, "
      "int[] kernel_size, int[] stride, int[] padding, int[] dilation, "
      "int groups) -> Tensor");
  // Both gradients over one im2col of grad_output.
  m.def(
      "conv_transpose_backward(Tensor grad_output, Tensor input, Tensor weight, "
      "int[] stride, int[] padding, int[] dilation, int groups) -> (Tensor, Tensor)");
  // grad_output summed per channel.
  m.def("conv_transpose_bias_grad(Tensor grad_output) -> Tensor");
}
