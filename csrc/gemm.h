// The GEMMs of the transposed convolution and the layouts of their
// operands: ATen's at::bmm, batched over groups (MKL/oneDNN on the CPU,
// cuBLAS on the GPU), or on the CPU the register-blocked tiles where
// Plan::gemm names them (cpu/blocked_gemm.h). Each function states its GEMM's layout.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include "plan.h"

namespace torch_tconv {

// out (G, M, N) = a (G, M, K) · b (G, K, N): ATen's bmm, or the plan's own
// GEMM (Plan::gemm); bmm of the same, into a new tensor.
void bmm_into(const Plan& plan, at::Tensor out, const at::Tensor& a, const at::Tensor& b);
at::Tensor bmm(const Plan& plan, const at::Tensor& a, const at::Tensor& b);
// out (G, M, N) = [out +] a (G, M, K) · b (G, K, N) in float32 through
// oneDNN's matmul (Config::cpu_gemm "onednn"), per group in blocks whose
// results (new tensors of at most 512 KiB) are copied or added into out; for
// dense operands with a's rows contiguous (runs_blocked sends the others to
// ATen). Available where torch has oneDNN. A Plan::gemm of the CPU.
bool onednn_gemm_available();
void onednn_product(const at::Tensor& a, const at::Tensor& b, const at::Tensor& out,
                    bool accumulate);
// Whether the plan's GEMM runs a · b; out = [out +] a · b through it.
bool runs_blocked(const Plan& plan, const at::Tensor& a, const at::Tensor& b);
void blocked_product(const Plan& plan, const at::Tensor& a, const at::Tensor& b,
                     const at::Tensor& out, bool accumulate);

// The chunk's part of an (N, C, in...) tensor, as (n, C, positions).
at::Tensor input_part(const at::Tensor& t, const Chunk& c);

// The GEMM operand of the chunk's part of an input-shaped (N, C_in, in...)
// tensor: the same data as (groups, C_in/groups, n * positions), in the
// column dtype; within one sample a view (see is_one_sample).
at::Tensor group_major(const at::Tensor& t, const Chunk& c, at::ScalarType dtype);

// The chunk's rows of a channels-last (N, C, in...) tensor, one per
// (sample, input position) with its C channels, as (groups, n * positions,
// C/groups): a view, the position-major GEMMs' activation operand.
at::Tensor position_rows(const at::Tensor& t, const Chunk& c);

// The same rows of a contiguous (N, C, in...) tensor, in `dtype`: within one
// sample a transposed view (the GEMM reads it as it is), else a transposing
// copy.
at::Tensor position_rows_of_contiguous(const at::Tensor& t, const Chunk& c,
                                      at::ScalarType dtype);

// The weight as the forward GEMM's operand, in the column dtype: with
// channel-major columns W_gᵀ (groups, C_out/groups * taps, C_in/groups), a
// transposed view or a contiguous copy where the backend prefers one (see
// Backend::contiguous_forward_weight); with position-major columns W_g
// (groups, C_in/groups, taps * C_out/groups), taps outside channels.
at::Tensor forward_weight(const Backend& backend, const at::Tensor& w, const Geometry& g,
                          const Plan& plan);

// The chunk's columns from its input. GEMM layout, per group g (batched over
// groups by bmm), with channel-major columns:
//   cols_g (C_out/G * taps, n * in_numel) = W_gᵀ (C_out/G * taps, C_in/G)
//                                          · X_g (C_in/G, n * in_numel)
// and with position-major columns (x channels-last, or a contiguous x's
// rows copied out, see Plan::position_major_columns):
//   cols_g (n * in_numel, taps * C_out/G) = X_rows_g (n * in_numel, C_in/G)
//                                          · W_g (C_in/G, taps * C_out/G)
// Each entry is the same dot product over C_in/G either way.
void forward_columns(const at::Tensor& w_op, const at::Tensor& x, const Chunk& c,
                     const Plan& plan, at::Tensor cols);

// The weight as the input gradient's GEMM operand, in the column dtype:
// with channel-major columns W_g (groups, C_in/groups, C_out/groups * taps);
// with position-major ones W_gᵀ (groups, taps * C_out/groups, C_in/groups),
// contiguous.
at::Tensor input_grad_weight(const at::Tensor& w, const Geometry& g, const Plan& plan);

// The chunk's part of the input gradient, from its columns of grad_output.
// GEMM layout, per group g (batched over groups by bmm), with channel-major
// columns:
//   dX_g (C_in/G, n * positions) = W_g (C_in/G, C_out/G * taps)
//                                 · cols_g (C_out/G * taps, n * positions)
// and with position-major ones (grad_input channels-last):
//   dX_rows_g (n * positions, C_in/G) = cols_g (n * positions, taps * C_out/G)
//                                      · W_gᵀ (taps * C_out/G, C_in/G)
// with cols = im2col(grad_output): an ordinary convolution.
void input_grad_of_chunk(const at::Tensor& w_op, const Chunk& c, const Plan& plan,
                         const at::Tensor& cols, const at::Tensor& grad_input);

// The weight gradient, summed over chunks in the op-math dtype: one partial
// sum per lane of the chunk plan, added up in lane order at the end, so the
// result does not depend on how the threads were scheduled. GEMM layout, per
// group g (batched over groups by bmm), for each chunk, with channel-major
// columns:
//   dW_g (C_in/G, C_out/G * taps) += X_g (C_in/G, n * positions)
//                                   · cols_gᵀ (n * positions, C_out/G * taps)
// and with position-major ones (x channels-last):
//   dW_g (C_in/G, taps * C_out/G) += X_rows_gᵀ (C_in/G, n * positions)
//                                   · cols_g (n * positions, taps * C_out/G)
// whose result is reordered to the weight's (C_in, C_out/G, kernel...).
// A problem of one chunk needs no running sum: its GEMM is the gradient. That
// gives the same bits (the GEMM output, rounded once) and saves zeroing the
// sum and, for reduced-precision columns, two more passes: on the GPU, three
// kernel launches of a small layer's backward.
class WeightGradSum {
  // sum += partial, where partial is a narrower dtype (float16/bfloat16
  // columns): ATen's CPU add_ first widens all of its operand into a
  // temporary (a bfloat16 DCGAN 256->128's 2 MiB, the backward's peak), so it
  // is added a few rows at a time.
  static void add_widening(const at::Tensor& sum, const at::Tensor& partial) {
    constexpr int64_t kSliceElements = int64_t(1) << 15;
    const at::Tensor s = sum.flatten(0, 1);
    const at::Tensor p = partial.flatten(0, 1);
    const int64_t rows = std::max<int64_t>(kSliceElements / std::max<int64_t>(s.size(1), 1), 1);
    for (int64_t r = 0; r < s.size(0); r += rows) {
      const int64_t count = std::min(rows, s.size(0) - r);
      s.narrow(0, r, count).add_(p.narrow(0, r, count));
    }
  }

 public:
  WeightGradSum(const Geometry& g, const at::Tensor& x, const Plan& plan)
      : g_(g), x_(x), plan_(plan) {
    const ChunkPlan& chunks = plan.chunks;
    if (chunks.windows || chunks.lanes > 1 || chunks.samples_per_chunk < g.batch) {
      sums_ = at::zeros(
          {chunks.lanes, g.groups, g.in_channels_per_group, g.out_channels_per_group * g.taps()},
          x.options().dtype(at::toOpMathType(x.scalar_type())));
    }
  }

  void add(const Chunk& c, const at::Tensor& cols, int64_t lane) {
    const at::ScalarType col_dtype = plan_.column_dtype;
    const at::Tensor x_op = plan_.position_major()
                                ? position_rows(x_, c).to(col_dtype).transpose(1, 2)
                                : group_major(x_, c, col_dtype);
    const at::Tensor cols_op = plan_.position_major() ? cols : cols.transpose(1, 2);
    if (!sums_.defined()) {
      only_chunk_ = bmm(plan_, x_op, cols_op);
      return;
    }
    at::Tensor sum = sums_.select(0, lane);
    if (runs_blocked(plan_, x_op, cols_op)) {
      blocked_product(plan_, x_op, cols_op, sum, /*accumulate=*/true);
    } else if (col_dtype == sum.scalar_type()) {
      sum.baddbmm_(x_op, cols_op);
    } else {
      add_widening(sum, at::bmm(x_op, cols_op));
    }
  }

  // The gradient, once all chunks are added: the lanes' sums added up,
  // rounded to the input's dtype before the reorder, whose copy is then the
  // narrower one.
  at::Tensor result(at::IntArrayRef shape) const {
    at::Tensor total = only_chunk_;
    if (sums_.defined()) {
      total = sums_.select(0, 0);
      for (int64_t lane = 1; lane < sums_.size(0); ++lane) total = total + sums_.select(0, lane);
    }
    total = total.to(x_.scalar_type());
    if (plan_.position_major()) {
      // (C_in, taps, C_out/G) to the weight's (C_in, C_out/G, taps).
      total = total.view({g_.in_channels(), g_.taps(), g_.out_channels_per_group})
                  .transpose(1, 2)
                  .contiguous();
    }
    return total.view(shape);
  }

 private:
  Geometry g_;
  at::Tensor x_;
  const Plan& plan_;  // outlives the sum: the op's
  at::Tensor sums_;        // (lanes, G, C_in/G, C_out/G * taps), or undefined
  at::Tensor only_chunk_;  // the one chunk's GEMM, when sums_ is undefined
};

}  // namespace torch_tconv
