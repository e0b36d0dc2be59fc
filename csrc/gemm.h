// The GEMMs of the transposed convolution and the layouts of their
// operands: ATen's at::bmm, batched over groups (MKL/oneDNN on the CPU,
// cuBLAS on the GPU). Each function states its GEMM's layout.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include "plan.h"

namespace torch_tconv {

// The chunk's part of an (N, C, in...) tensor, as (n, C, positions).
at::Tensor input_part(const at::Tensor& t, const Chunk& c);

// The GEMM operand of the chunk's part of an input-shaped (N, C_in, in...)
// tensor: the same data as (groups, C_in/groups, n * positions), in the
// column dtype.
at::Tensor group_major(const at::Tensor& t, const Chunk& c, at::ScalarType dtype);

// The weight as the forward GEMM's operand W_gᵀ (groups, C_out/groups * taps,
// C_in/groups) in the column dtype: a transposed view, or a contiguous copy
// where the backend prefers one (see Backend::contiguous_forward_weight).
at::Tensor forward_weight(const Backend& backend, const at::Tensor& w, const Geometry& g,
                          at::ScalarType dtype);

// The chunk's columns from its input. GEMM layout, per group g (batched over
// groups by bmm):
//   cols_g (C_out/G * taps, n * in_numel) = W_gᵀ (C_out/G * taps, C_in/G)
//                                          · X_g (C_in/G, n * in_numel)
void forward_columns(const at::Tensor& w_t, const at::Tensor& x, const Chunk& c,
                     at::Tensor cols);

// The weight as the gradients' GEMM operand: (groups, C_in/groups,
// C_out/groups * taps) in the column dtype.
at::Tensor weight_by_group(const at::Tensor& w, const Geometry& g, at::ScalarType dtype);

// The chunk's part of the input gradient, from its columns of grad_output.
// GEMM layout, per group g (batched over groups by bmm):
//   dX_g (C_in/G, n * positions) = W_g (C_in/G, C_out/G * taps)
//                                 · cols_g (C_out/G * taps, n * positions)
// with cols = im2col(grad_output): an ordinary convolution.
void input_grad_of_chunk(const at::Tensor& w_g, const Chunk& c, const at::Tensor& cols,
                         const at::Tensor& grad_input);

// The weight gradient, summed over chunks in the op-math dtype: one partial
// sum per lane of the chunk plan, added up in lane order at the end, so the
// result does not depend on how the threads were scheduled. GEMM layout, per
// group g (batched over groups by bmm), for each chunk:
//   dW_g (C_in/G, C_out/G * taps) += X_g (C_in/G, n * positions)
//                                   · cols_gᵀ (n * positions, C_out/G * taps)
// A problem of one chunk needs no running sum: its GEMM is the gradient. That
// gives the same bits (the GEMM output, rounded once) and saves zeroing the
// sum and, for reduced-precision columns, two more passes: on the GPU, three
// kernel launches of a small layer's backward.
class WeightGradSum {
 public:
  WeightGradSum(const Geometry& g, const at::Tensor& x, const Plan& plan)
      : x_(x), col_dtype_(plan.column_dtype) {
    const ChunkPlan& chunks = plan.chunks;
    if (chunks.windows || chunks.lanes > 1 || chunks.samples_per_chunk < g.batch) {
      sums_ = at::zeros(
          {chunks.lanes, g.groups, g.in_channels_per_group, g.out_channels_per_group * g.taps()},
          x.options().dtype(at::toOpMathType(x.scalar_type())));
    }
  }

  void add(const Chunk& c, const at::Tensor& cols, int64_t lane) {
    const at::Tensor cols_t = cols.transpose(1, 2);
    const at::Tensor x_g = group_major(x_, c, col_dtype_);
    if (!sums_.defined()) {
      only_chunk_ = at::bmm(x_g, cols_t);
      return;
    }
    at::Tensor sum = sums_.select(0, lane);
    if (col_dtype_ == sum.scalar_type()) {
      sum.baddbmm_(x_g, cols_t);
    } else {
      sum.add_(at::bmm(x_g, cols_t));
    }
  }

  at::Tensor result(at::IntArrayRef shape) const {
    at::Tensor total = only_chunk_;
    if (sums_.defined()) {
      total = sums_.select(0, 0);
      for (int64_t lane = 1; lane < sums_.size(0); ++lane) total = total + sums_.select(0, lane);
    }
    return total.view(shape).to(x_.scalar_type());
  }

 private:
  at::Tensor x_;
  at::ScalarType col_dtype_;
  at::Tensor sums_;        // (lanes, G, C_in/G, C_out/G * taps), or undefined
  at::Tensor only_chunk_;  // the one chunk's GEMM, when sums_ is undefined
};

}  // namespace torch_tconv
