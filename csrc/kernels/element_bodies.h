// Element bodies: one output element each, as the CUDA launchers run them
// (and the CPU's element path, which the tests compare with the row bodies).
//
// Column buffer layout, shared by col2im and im2col:
//   cols[group][oc_g * taps + tap][n * in_numel + i]
// a (groups, C_out/groups * taps, batch * in_numel) row-major tensor. The
// forward GEMM writes it, col2im reads it; im2col writes it from grad_output,
// and the input- and weight-gradient GEMMs read it.
#pragma once

#include "taps.h"

namespace torch_tconv {
TORCH_TCONV_ISA_NAMESPACE_BEGIN

// ---------------------------------------------------------------------------
// GEMM path: col2im (forward) and im2col (input and weight gradients).
// ---------------------------------------------------------------------------

// Adds to `acc`, in increasing tap order, the column entries that land on
// output element `index` of the chunk's output, which runs over
// (n, oc, out spatial). Gathering them makes col2im free of atomics and
// deterministic.
template <typename acc_t, typename col_t, typename index_t>
C10_HOST_DEVICE inline acc_t col2im_gather(
    const col_t* cols,
    const KernelGeometry<index_t>& g,
    index_t n,
    index_t oc,
    const index_t (&out)[kMaxSpatialDims],
    acc_t acc) {
  const index_t width = g.col_width();
  // Row oc * taps of the buffer: group-major order makes (g * C_out_g + oc_g)
  // equal to oc.
  const col_t* base = cols + oc * g.taps() * width + n * g.in_numel();
  for_each_tap_landing_on(g, out, [&](index_t tap, index_t in) {
    acc += static_cast<acc_t>(base[tap * width + in]);
  });
  return acc;
}

// The sample, output channel and spatial coordinates of output element
// `index` of an (N, C_out, out...) tensor.
template <typename index_t>
C10_HOST_DEVICE inline void unravel_output(
    const KernelGeometry<index_t>& g, index_t index, index_t& n, index_t& oc,
    index_t (&out)[kMaxSpatialDims]) {
  index_t nc, position;
  divmod(g.out_numel_divisor, index, nc, position);
  unravel_spatial(position, g.out_size_divisor, out);
  divmod(g.out_channels_divisor, nc, n, oc);
}

// One output element of the forward pass: its bias (`bias` may be null) plus
// the column entries that land on it.
template <typename acc_t, typename col_t, typename scalar_t, typename index_t>
C10_HOST_DEVICE inline acc_t col2im_element(
    const col_t* cols,
    const scalar_t* bias,
    const KernelGeometry<index_t>& g,
    index_t index) {
  index_t n, oc, out[kMaxSpatialDims];
  unravel_output(g, index, n, oc, out);
  const acc_t init = bias ? static_cast<acc_t>(bias[oc]) : acc_t(0);
  return col2im_gather(cols, g, n, oc, out, init);
}

// The output coordinates of spatial dim j that the inputs of geometry g
// reach: [begin, end), empty when begin >= end.
template <typename index_t>
C10_HOST_DEVICE inline void reached_coordinates(const ConvGeometry<index_t>& g, int j,
                                                index_t& begin, index_t& end) {
  begin = g.padding[j] > 0 ? 0 : -g.padding[j];
  end = (g.in_size[j] - 1) * g.stride[j] - g.padding[j] + (g.kernel[j] - 1) * g.dilation[j] + 1;
  if (end > g.out_size[j]) end = g.out_size[j];
}

// Where a window's col2im writes (a window of one sample's input, g being
// its geometry, see for_each_window): the `span` outer output rows (over the
// two outer spatial dims) from `begin`, and in each the `columns` innermost
// coordinates from `column`, that the window reaches, in every output
// channel. Element e of the reach runs over (oc, row, column).
template <typename index_t>
struct WindowReach {
  index_t begin;
  index_t span;                  // 0 when the window reaches no output
  index_t column;
  index_t columns;
  Divisor<index_t> span_numel;   // span * columns
  Divisor<index_t> columns_divisor;
  int64_t numel;                 // elements of the reach
};

template <typename index_t>
inline WindowReach<index_t> window_reach(const KernelGeometry<index_t>& g) {
  index_t lo[kMaxSpatialDims], hi[kMaxSpatialDims];
  for (int j = 0; j < kMaxSpatialDims; ++j) {
    reached_coordinates(g, j, lo[j], hi[j]);
    if (lo[j] >= hi[j]) return {0, 0, 0, 0, Divisor<index_t>(1), Divisor<index_t>(1), 0};
  }
  const index_t begin = lo[0] * g.out_size[1] + lo[1];
  const index_t span = (hi[0] - 1) * g.out_size[1] + hi[1] - begin;
  const index_t columns = hi[2] - lo[2];
  return {begin, span, lo[2], columns, Divisor<index_t>(span * columns),
          Divisor<index_t>(columns), int64_t(g.out_channels()) * span * columns};
}

// Element e of a window's reach after the window's col2im: out_sum, the
// op-math sum of the bias and the windows after this one, plus the window's
// column entries that land there. Windows added last first give each output
// its taps in col2im_element's order, so the same bits. A window is part of
// one sample, so n = 0.
template <typename acc_t, typename col_t, typename index_t>
C10_HOST_DEVICE inline void col2im_window_element(
    const col_t* cols,
    acc_t* out_sum,
    const KernelGeometry<index_t>& g,
    const WindowReach<index_t>& reach,
    index_t e) {
  index_t oc, offset, row, column, out[kMaxSpatialDims];
  divmod(reach.span_numel, e, oc, offset);
  divmod(reach.columns_divisor, offset, row, column);
  const index_t position = (reach.begin + row) * g.out_size[2] + reach.column + column;
  unravel_spatial(position, g.out_size_divisor, out);
  const index_t index = oc * g.out_numel() + position;
  out_sum[index] = col2im_gather(cols, g, index_t(0), oc, out, out_sum[index]);
}

// One column-buffer element built from grad_output, `index` running over the
// buffer in its layout. Zero where the tap falls outside the output.
template <typename scalar_t, typename index_t>
C10_HOST_DEVICE inline scalar_t im2col_element(
    const scalar_t* grad_output,
    const KernelGeometry<index_t>& g,
    index_t index) {
  index_t row, col, oc, tap, n, position;
  divmod(g.col_width_divisor, index, row, col);
  divmod(g.taps_divisor, row, oc, tap);
  divmod(g.in_numel_divisor, col, n, position);
  index_t k[kMaxSpatialDims];
  index_t in[kMaxSpatialDims];
  unravel_spatial(tap, g.kernel_divisor, k);
  unravel_spatial(position, g.in_size_divisor, in);
  const index_t out = scatter_target(g, in, k);
  if (out < 0) return scalar_t(0);
  return grad_output[(n * g.out_channels() + oc) * g.out_numel() + out];
}

// ---------------------------------------------------------------------------
// Direct path: no GEMM and no column buffer. Used for depthwise layers
// (one input channel per group), where a GEMM would have an inner dimension
// of 1 and the column buffer would dominate the cost.
// Weight layout: (C_in, C_out/groups, taps).
// ---------------------------------------------------------------------------

// One output element (n, oc, out spatial) of the forward pass.
template <typename acc_t, typename scalar_t, typename index_t>
C10_HOST_DEVICE inline acc_t direct_forward_element(
    const scalar_t* input,
    const scalar_t* weight,
    const scalar_t* bias,
    const KernelGeometry<index_t>& g,
    index_t index) {
  index_t n, oc, group, oc_g, out[kMaxSpatialDims];
  unravel_output(g, index, n, oc, out);
  divmod(g.out_channels_per_group_divisor, oc, group, oc_g);
  const index_t taps = g.taps();
  const index_t in_numel = g.in_numel();

  acc_t acc = bias ? static_cast<acc_t>(bias[oc]) : acc_t(0);
  for (index_t ic_g = 0; ic_g < g.in_channels_per_group; ++ic_g) {
    const index_t ic = group * g.in_channels_per_group + ic_g;
    const scalar_t* x = input + (n * g.in_channels() + ic) * in_numel;
    const scalar_t* w = weight + (ic * g.out_channels_per_group + oc_g) * taps;
    for_each_tap_landing_on(g, out, [&](index_t tap, index_t in) {
      acc += static_cast<acc_t>(x[in]) * static_cast<acc_t>(w[tap]);
    });
  }
  return acc;
}

// One input-gradient element (n, ic, in spatial): gathers grad_output over
// the window the input position scattered into.
template <typename acc_t, typename scalar_t, typename index_t>
C10_HOST_DEVICE inline acc_t direct_input_grad_element(
    const scalar_t* grad_output,
    const scalar_t* weight,
    const KernelGeometry<index_t>& g,
    index_t index) {
  index_t nc, position, n, ic, in[kMaxSpatialDims];
  divmod(g.in_numel_divisor, index, nc, position);
  unravel_spatial(position, g.in_size_divisor, in);
  divmod(g.in_channels_divisor, nc, n, ic);
  const index_t group = g.in_channels_per_group_divisor.div(ic);
  const index_t taps = g.taps();
  const index_t out_numel = g.out_numel();

  acc_t acc(0);
  for (index_t oc_g = 0; oc_g < g.out_channels_per_group; ++oc_g) {
    const index_t oc = group * g.out_channels_per_group + oc_g;
    const scalar_t* gy = grad_output + (n * g.out_channels() + oc) * out_numel;
    const scalar_t* w = weight + (ic * g.out_channels_per_group + oc_g) * taps;
    for_each_tap_from(g, in, [&](index_t tap, index_t out) {
      acc += static_cast<acc_t>(gy[out]) * static_cast<acc_t>(w[tap]);
    });
  }
  return acc;
}

// Partial sum of one weight-gradient element, weight_index running over
// (ic, oc_g, tap): the sum over (n, in position) = p for p in
// [begin, end) stepping by `step`. A CPU launcher takes the whole range in one
// call; a CUDA block splits it across threads and reduces in a fixed order.
// Term p goes to lane in2 % Lanes (in2: its innermost input coordinate),
// and the lanes are added in order at the end. The CPU takes
// kWeightGradLanes, so that its row version (direct_weight_grad_by_rows)
// runs as vectors instead of one chain of dependent additions; a CUDA
// thread's share is already one of many partial sums and keeps one lane.
template <typename acc_t, int Lanes = 1, typename scalar_t, typename index_t>
C10_HOST_DEVICE inline acc_t direct_weight_grad_partial(
    const scalar_t* input,
    const scalar_t* grad_output,
    const KernelGeometry<index_t>& g,
    index_t weight_index,
    index_t begin,
    index_t end,
    index_t step) {
  index_t ic, oc, k[kMaxSpatialDims];
  unravel_weight(g, weight_index, ic, oc, k);
  const index_t in_numel = g.in_numel();
  const index_t out_numel = g.out_numel();

  acc_t lanes[Lanes];
  for (int lane = 0; lane < Lanes; ++lane) lanes[lane] = acc_t(0);
  for (index_t p = begin; p < end; p += step) {
    index_t n, position, in[kMaxSpatialDims];
    divmod(g.in_numel_divisor, p, n, position);
    unravel_spatial(position, g.in_size_divisor, in);
    const index_t out = scatter_target(g, in, k);
    if (out < 0) continue;
    lanes[in[2] % Lanes] +=
        static_cast<acc_t>(input[(n * g.in_channels() + ic) * in_numel + position]) *
        static_cast<acc_t>(grad_output[(n * g.out_channels() + oc) * out_numel + out]);
  }
  acc_t acc = lanes[0];
  for (int lane = 1; lane < Lanes; ++lane) acc += lanes[lane];
  return acc;
}

TORCH_TCONV_ISA_NAMESPACE_END
}  // namespace torch_tconv
