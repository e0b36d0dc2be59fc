// Pixel bodies: the GEMM path's col2im and im2col for channels-last
// activations (N, spatial..., C in memory), one pixel (all the channels of
// one spatial position) at a time.
//
// Position-major column buffer, shared by both:
//   cols[group][n * in_numel + i][tap * C_out/groups + oc_g]
// a (groups, batch * in_numel, taps * C_out/groups) row-major tensor. Its
// rows are the rows of the channels-last input, so the forward GEMM reads
// the input as it is and the input-gradient GEMM writes its result in place
// (gemm.h); and the channels of one tap are contiguous, as in the
// channels-last output, so col2im and im2col move whole runs of channels.
//
// The sums are the element bodies': bias first, then the taps in increasing
// order, so a channels-last forward gives the bits of a contiguous one.
#pragma once

#include "row_bodies.h"

namespace torch_tconv {
TORCH_TCONV_ISA_NAMESPACE_BEGIN

// Calls run(group, first channel in the group, offset of that channel from
// channel_begin, count) for the runs of channels [channel_begin,
// channel_end) of a layer with `per_group` channels per group, each run
// within one group.
template <typename index_t, typename Run>
C10_HOST_DEVICE inline void for_each_group_run(index_t channel_begin, index_t channel_end,
                                               index_t per_group, const Run& run) {
  for (index_t c = channel_begin; c < channel_end;) {
    const index_t group = c / per_group;
    const index_t first = c - group * per_group;
    const index_t count = (per_group - first < channel_end - c) ? per_group - first : channel_end - c;
    run(group, first, c - channel_begin, count);
    c += count;
  }
}

// Where column row `row` (sample n, input position i: n * in_numel + i) of
// `group` holds tap `tap`'s output channel `oc_g`, in the layout above.
template <typename index_t>
C10_HOST_DEVICE inline index_t position_major_offset(const KernelGeometry<index_t>& g,
                                                     index_t group, index_t row, index_t tap,
                                                     index_t oc_g) {
  const index_t per_group = g.out_channels_per_group;
  return (group * g.col_width() + row) * g.taps() * per_group + tap * per_group + oc_g;
}

// Adds to acc[0 .. channel_end - channel_begin) the column entries of output
// channels [channel_begin, channel_end) that land on output pixel `out` of
// sample n, taps in increasing order. A CPU thread takes every channel of
// the pixel; a GPU thread may take one.
template <typename acc_t, typename col_t, typename index_t>
C10_HOST_DEVICE inline void col2im_pixel(
    const col_t* cols,
    const KernelGeometry<index_t>& g,
    index_t n,
    const index_t (&out)[kMaxSpatialDims],
    index_t channel_begin,
    index_t channel_end,
    acc_t* acc) {
  for_each_tap_landing_on(g, out, [&](index_t tap, index_t in) {
    const index_t row = n * g.in_numel() + in;
    for_each_group_run(channel_begin, channel_end, g.out_channels_per_group,
                       [&](index_t group, index_t first, index_t offset, index_t count) {
      add_row(acc + offset, cols + position_major_offset(g, group, row, tap, first), count);
    });
  });
}

// The same channels of the pixel from the start: the bias (`bias` may be
// null), then the column entries, as col2im_element sums them.
template <typename acc_t, typename col_t, typename scalar_t, typename index_t>
C10_HOST_DEVICE inline void col2im_pixel_with_bias(
    const col_t* cols,
    const scalar_t* bias,
    const KernelGeometry<index_t>& g,
    index_t n,
    const index_t (&out)[kMaxSpatialDims],
    index_t channel_begin,
    index_t channel_end,
    acc_t* acc) {
  for (index_t c = channel_begin; c < channel_end; ++c) {
    acc[c - channel_begin] = bias ? static_cast<acc_t>(bias[c]) : acc_t(0);
  }
  col2im_pixel(cols, g, n, out, channel_begin, channel_end, acc);
}

// Writes the position-major column row of input position `in` of sample n
// for one kernel tap (k: its coordinates), channels [channel_begin,
// channel_end): grad_output's channels at the output pixel the tap reaches,
// or zeros where it falls outside the output. grad_output is channels-last.
template <typename col_t, typename scalar_t, typename index_t>
C10_HOST_DEVICE inline void im2col_pixel_tap(
    const scalar_t* grad_output,
    const KernelGeometry<index_t>& g,
    index_t n,
    index_t in_position,
    const index_t (&in)[kMaxSpatialDims],
    index_t tap,
    const index_t (&k)[kMaxSpatialDims],
    index_t channel_begin,
    index_t channel_end,
    col_t* cols) {
  const index_t row = n * g.in_numel() + in_position;
  const index_t out = scatter_target(g, in, k);
  const scalar_t* pixel =
      out < 0 ? nullptr : grad_output + (n * g.out_numel() + out) * g.out_channels();
  for_each_group_run(channel_begin, channel_end, g.out_channels_per_group,
                     [&](index_t group, index_t first, index_t offset, index_t count) {
    col_t* dst = cols + position_major_offset(g, group, row, tap, first);
    if (pixel == nullptr) {
      for (index_t i = 0; i < count; ++i) dst[i] = col_t(0);
    } else {
      copy_row(dst, pixel + channel_begin + offset, count, index_t(1));
    }
  });
}

TORCH_TCONV_ISA_NAMESPACE_END
}  // namespace torch_tconv
