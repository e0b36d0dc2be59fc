// A call, described once: its arguments validated (validation.h,
// the one place for validation and shape arithmetic), and what the rest of
// the call needs to know about it, in one Problem. Each op describes its
// call first, then plans it (plan.h), then runs it (ops.cpp).
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <vector>

#include "backend.h"
#include "validation.h"

namespace torch_tconv {

// Which op a Problem describes.
enum class OpKind { kForward = 0, kInputGrad = 1, kWeightGrad = 2, kBackward = 3 };

struct Problem {
  OpKind op;
  ConvTransposeParams params;
  int64_t spatial_dims;
  // The tensors came without the batch dim (C, spatial...): the problem is
  // run as a batch of one, and its results lose that dim again.
  bool unbatched;
  // Of the batched problem.
  Geometry geometry;
  // The memory format of the activation-shaped result (the forward's output,
  // the input gradient): channels-last where the batched activation it comes
  // from (input, grad_output) is channels-last and not also contiguous, as
  // torch's convolutions do. The fake kernels apply the same rule (_fake.py).
  at::MemoryFormat result_format = at::MemoryFormat::Contiguous;

  // Shapes of the batched problem's tensors.
  std::vector<int64_t> input_shape() const;   // (N, C_in, in...)
  std::vector<int64_t> output_shape() const;  // (N, C_out, out...)
  std::vector<int64_t> weight_shape() const;  // (C_in, C_out/groups, kernel...)

  // t with the batch dim, dense in its own memory format: channels-last
  // where t is, else contiguous. The implicit GEMMs read both directly; the
  // other paths make it contiguous.
  at::Tensor batched(const at::Tensor& t) const;
  // A result of the batched problem as the caller's tensors were: without
  // the batch dim for an unbatched problem.
  at::Tensor as_given(const at::Tensor& t) const;
};

Problem describe_forward(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef output_padding,
    at::IntArrayRef dilation, int64_t groups, at::OptionalSymIntArrayRef output_size);

Problem describe_input_grad(
    const at::Tensor& grad_output, const at::Tensor& weight, c10::SymIntArrayRef input_size,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups);

Problem describe_weight_grad(
    const at::Tensor& input, const at::Tensor& grad_output, at::IntArrayRef kernel_size,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups);

// Both gradients' checks, once.
Problem describe_backward(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups);

}  // namespace torch_tconv
