// Argument validation and output-shape arithmetic for the transposed
// convolution: the one place where they live. The C++ ops call these before
// any kernel runs; the Python fake kernels and the nn.Module call the same
// functions through the extension module, with symbolic sizes when tracing.
//
// Every error names the offending argument and its value. Errors are
// RuntimeErrors, the type torch raises for the same mistakes, so code written
// to catch torch's errors catches ours; an output_size the forward cannot
// produce is a ValueError, as in nn.ConvTranspose2d.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/SymInt.h>

#include <optional>
#include <string>
#include <vector>

namespace torch_tconv {

// Hyper-parameters shared by all five ops. One entry per spatial dim.
//
// Padding crops the full output (in - 1) * stride + dilation * (kernel - 1) + 1
// by `padding` at the start and `padding_end` at the end of each dim. The ops
// take either one value per dim (both ends, as torch's padding) or two
// (start values of every dim, then end values): the asymmetric crops of
// TensorFlow's 'SAME' and of per-side padding.
struct ConvTransposeParams {
  std::vector<int64_t> stride;
  std::vector<int64_t> padding;      // at the start of each dim
  std::vector<int64_t> padding_end;  // at the end
  std::vector<int64_t> output_padding;
  std::vector<int64_t> dilation;
  int64_t groups;
  // The ops' padding argument as given (one or two values per dim).
  std::vector<int64_t> padding_given;
};

// Parameters of the forward.
ConvTransposeParams forward_params(
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef output_padding,
    at::IntArrayRef dilation, int64_t groups);

// Parameters of the gradient ops, which take no output padding: the sizes
// they are given imply it (its entries here are zeros, never read).
ConvTransposeParams gradient_params(
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups);

// Number of spatial dims a weight describes: weight.dim() - 2, in 1..3.
int64_t spatial_dims_of(const at::Tensor& weight);

// "conv_transpose2d" for 2 spatial dims: the prefix of every error message.
std::string op_name(int64_t spatial_dims);

// Shape of conv_transpose(input, weight, bias): (N, C_out, out...) or, for
// unbatched input, (C_out, out...). With output_size (spatial sizes), the
// output padding is implied by it and `params.output_padding` is ignored.
std::vector<c10::SymInt> forward_output_shape(
    const at::Tensor& input,
    const at::Tensor& weight,
    const std::optional<at::Tensor>& bias,
    const ConvTransposeParams& params,
    at::OptionalSymIntArrayRef output_size);

// Shape of the input gradient, i.e. of the forward's input: (N, C_in,
// input_size...). Checks that grad_output has a size the forward can produce
// from input_size.
std::vector<c10::SymInt> input_grad_shape(
    const at::Tensor& grad_output,
    const at::Tensor& weight,
    c10::SymIntArrayRef input_size,
    const ConvTransposeParams& params);

// Shape of the weight gradient: (C_in, C_out/groups, kernel_size...).
std::vector<c10::SymInt> weight_grad_shape(
    const at::Tensor& input,
    const at::Tensor& grad_output,
    at::IntArrayRef kernel_size,
    const ConvTransposeParams& params);

// Shapes of the input and weight gradients computed together from
// grad_output, the forward's input and its weight: (input's shape, weight's
// shape), after the checks of input_grad_shape and weight_grad_shape and a
// check that input and weight agree.
std::pair<std::vector<c10::SymInt>, std::vector<c10::SymInt>> backward_shapes(
    const at::Tensor& grad_output,
    const at::Tensor& input,
    const at::Tensor& weight,
    const ConvTransposeParams& params);

// Shape of the bias gradient, (C_out,), of a batched grad_output
// (N, C_out, out...): the sum over every dim but the channels.
std::vector<c10::SymInt> bias_grad_shape(const at::Tensor& grad_output);

// The output padding that makes the forward produce `output_size` (spatial
// sizes) from an input of spatial size `input_size`. Valid sizes run from the
// minimum (output padding 0) to minimum + max(stride, dilation) - 1.
std::vector<c10::SymInt> output_padding_for_size(
    c10::SymIntArrayRef input_size,
    c10::SymIntArrayRef output_size,
    at::IntArrayRef kernel_size,
    const ConvTransposeParams& params);

// The ops' padding (the starts of every dim, then the ends) and output
// padding that give TensorFlow's conv_transpose padding modes ("same":
// output = input * stride; "valid": output = input * stride +
// max(kernel_extent - stride, 0)), kernel_extent = dilation * (kernel - 1) + 1.
// 'same' crops max(kernel_extent - stride, 0) from the full output, the
// smaller half at the start as TensorFlow does; where the kernel extent is
// below the stride, both modes add stride - kernel_extent zeros (bias only)
// at the end. `op` prefixes the messages.
std::pair<std::vector<int64_t>, std::vector<int64_t>> padding_for_mode(
    const std::string& op, const std::string& mode, at::IntArrayRef kernel_size,
    at::IntArrayRef stride, at::IntArrayRef dilation);

}  // namespace torch_tconv
