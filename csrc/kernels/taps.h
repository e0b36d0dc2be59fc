// Which kernel taps land on an output position, and where a tap scatters an
// input position to. Notation, per spatial dim j:
//   o_j = i_j * stride_j - padding_j + k_j * dilation_j
// maps input position i_j and kernel tap k_j to the output position o_j it
// lands on. The forward pass scatters along this map; the input gradient
// gathers along it (an ordinary convolution).
#pragma once

#include "geometry.h"

namespace torch_tconv {
TORCH_TCONV_ISA_NAMESPACE_BEGIN

// The first kernel tap of spatial dim j whose scatter lands on output
// coordinate `out`, and the input coordinate it comes from: the smallest k
// with t = out + padding - k * dilation a multiple of the stride, and
// i = t / stride. Later taps that land there follow every tap_step taps, their
// input coordinate in_step lower each time. k = kernel[j] when no tap lands.
template <typename index_t>
struct FirstTap {
  index_t k;
  index_t i;
};

template <typename index_t>
C10_HOST_DEVICE inline FirstTap<index_t> first_tap_landing_on(
    const KernelGeometry<index_t>& g, int j, index_t out) {
  const index_t t = out + g.padding[j];
  // t only decreases with k: no tap lands once it is negative.
  if (t < 0) return {g.kernel[j], 0};
  index_t i, remainder;
  divmod(g.stride_divisor[j], t, i, remainder);
  // Only the first tap_step taps can be the first to divide. Each step lowers
  // t by one dilation; i and the remainder follow without a division.
  const index_t limit = g.tap_step[j] < g.kernel[j] ? g.tap_step[j] : g.kernel[j];
  index_t k = 0;
  while (remainder != 0) {
    if (++k >= limit) return {g.kernel[j], 0};
    i -= g.dilation_quotient[j];
    remainder -= g.dilation_remainder[j];
    if (remainder < 0) {
      remainder += g.stride[j];
      --i;
    }
  }
  return {k, i};
}

// Calls visit(k, i) for every tap k of spatial dim j, from `first` on, whose
// input coordinate i lies inside the input.
template <typename index_t, typename Visit>
C10_HOST_DEVICE inline void for_each_dim_tap_from_first(
    const KernelGeometry<index_t>& g, int j, FirstTap<index_t> first, Visit&& visit) {
  index_t i = first.i;
  for (index_t k = first.k; k < g.kernel[j] && i >= 0; k += g.tap_step[j], i -= g.in_step[j]) {
    if (i < g.in_size[j]) visit(k, i);
  }
}

// Calls visit(k0 * kernel[1] + k1, input row i0 * in_size[1] + i1) for the
// taps of the two outer dims that land on output row (out0, out1).
template <typename index_t, typename Visit>
C10_HOST_DEVICE inline void for_each_outer_tap_landing_on(
    const KernelGeometry<index_t>& g, const index_t (&out)[kMaxSpatialDims], Visit&& visit) {
  const FirstTap<index_t> first1 = first_tap_landing_on(g, 1, out[1]);
  for_each_dim_tap_from_first(g, 0, first_tap_landing_on(g, 0, out[0]), [&](index_t k0, index_t i0) {
    for_each_dim_tap_from_first(g, 1, first1, [&](index_t k1, index_t i1) {
      visit(k0 * g.kernel[1] + k1, i0 * g.in_size[1] + i1);
    });
  });
}

// Calls visit(tap, input_position) for every kernel tap whose scatter lands
// on output position `out` (spatial coordinates), together with the input
// position it comes from: the gather view of the forward pass. Taps come in
// increasing order.
template <typename index_t, typename Visit>
C10_HOST_DEVICE inline void for_each_tap_landing_on(
    const KernelGeometry<index_t>& g,
    const index_t (&out)[kMaxSpatialDims],
    Visit&& visit) {
  const FirstTap<index_t> first2 = first_tap_landing_on(g, 2, out[2]);
  for_each_outer_tap_landing_on(g, out, [&](index_t outer_tap, index_t in_row) {
    for_each_dim_tap_from_first(g, 2, first2, [&](index_t k2, index_t i2) {
      visit(outer_tap * g.kernel[2] + k2, in_row * g.in_size[2] + i2);
    });
  });
}

// Splits a weight index over (ic, oc_g, taps) into the input channel, the
// output channel (in the input channel's group) and the kernel tap.
template <typename index_t>
C10_HOST_DEVICE inline void unravel_weight(
    const KernelGeometry<index_t>& g, index_t weight_index, index_t& ic, index_t& oc,
    index_t (&k)[kMaxSpatialDims]) {
  index_t ic_oc, tap, oc_g;
  divmod(g.taps_divisor, weight_index, ic_oc, tap);
  divmod(g.out_channels_per_group_divisor, ic_oc, ic, oc_g);
  oc = g.in_channels_per_group_divisor.div(ic) * g.out_channels_per_group + oc_g;
  unravel_spatial(tap, g.kernel_divisor, k);
}

// The output coordinate o of spatial dim j that input coordinate i reaches
// through kernel tap k (the scatter: o = i * stride - padding + k * dilation),
// and whether it lies inside the output (padding crops the rest).
template <typename index_t>
C10_HOST_DEVICE inline bool scatter_coordinate(
    const ConvGeometry<index_t>& g, int j, index_t i, index_t k, index_t& o) {
  o = i * g.stride[j] - g.padding[j] + k * g.dilation[j];
  return o >= 0 && o < g.out_size[j];
}

// Output position that input position `in` reaches through kernel tap `k`,
// or -1 when it falls outside the output (cropped by padding).
template <typename index_t>
C10_HOST_DEVICE inline index_t scatter_target(
    const ConvGeometry<index_t>& g,
    const index_t (&in)[kMaxSpatialDims],
    const index_t (&k)[kMaxSpatialDims]) {
  index_t out[kMaxSpatialDims];
  for (int j = 0; j < kMaxSpatialDims; ++j) {
    if (!scatter_coordinate(g, j, in[j], k[j], out[j])) return -1;
  }
  return ravel_spatial(out, g.out_size);
}

// Calls visit(k0 * kernel[1] + k1, output row o0 * out_size[1] + o1) for the
// taps of the two outer dims through which input row (in0, in1) scatters
// inside the output.
template <typename index_t, typename Visit>
C10_HOST_DEVICE inline void for_each_outer_tap_from(
    const ConvGeometry<index_t>& g, index_t in0, index_t in1, Visit&& visit) {
  for (index_t k0 = 0; k0 < g.kernel[0]; ++k0) {
    index_t o0, o1;
    if (!scatter_coordinate(g, 0, in0, k0, o0)) continue;
    for (index_t k1 = 0; k1 < g.kernel[1]; ++k1) {
      if (!scatter_coordinate(g, 1, in1, k1, o1)) continue;
      visit(k0 * g.kernel[1] + k1, o0 * g.out_size[1] + o1);
    }
  }
}

// Calls visit(tap, output_position) for every kernel tap through which input
// position `in` scatters into the output, taps in increasing order.
template <typename index_t, typename Visit>
C10_HOST_DEVICE inline void for_each_tap_from(
    const ConvGeometry<index_t>& g,
    const index_t (&in)[kMaxSpatialDims],
    Visit&& visit) {
  for_each_outer_tap_from(g, in[0], in[1], [&](index_t outer_tap, index_t out_row) {
    for (index_t k2 = 0; k2 < g.kernel[2]; ++k2) {
      index_t o2;
      if (!scatter_coordinate(g, 2, in[2], k2, o2)) continue;
      visit(outer_tap * g.kernel[2] + k2, out_row * g.out_size[2] + o2);
    }
  });
}

TORCH_TCONV_ISA_NAMESPACE_END
}  // namespace torch_tconv
