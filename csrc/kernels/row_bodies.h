// Row bodies, which only the CPU launchers run.
#pragma once

#include "element_bodies.h"

namespace torch_tconv {
TORCH_TCONV_ISA_NAMESPACE_BEGIN

// ---------------------------------------------------------------------------
// Row bodies: the same sums as the element bodies, a whole innermost-dim row
// at a time. The divisions that locate kernel taps happen once per row, and
// the inner loop is a strided walk along the row. For every output element
// the taps are added in the same order as in the element bodies, so both give
// bitwise-identical results (tests compare them). The CPU launchers use these;
// the element bodies stay what the CUDA launchers run.
// ---------------------------------------------------------------------------

// Launchers split innermost-dim rows longer than a few thousand positions
// into parts, positions [begin, begin + size), so that a part's accumulators
// stay in cache and one long row (a one-channel signal) spreads over the
// threads. A part of an output row begins at a multiple of the stride. Rows
// that are not split are one part, {0, length}. An output element's taps are
// added in the same order whichever part holds it.
template <typename index_t>
struct RowPart {
  index_t begin;
  index_t size;
};

// Scattering rows (col2im, the direct forward) accumulate a part of an
// output row in phase-major order: output position part.begin + j lives at
//   acc[(j % stride) * phase_length + j / stride],
// so that the positions one tap reaches (every stride-th) are contiguous and
// the inner loop vectorises. A part takes stride * phase_length accumulators.
template <typename index_t>
C10_HOST_DEVICE inline index_t phase_length(index_t size, index_t stride) {
  return (size + stride - 1) / stride;
}

// Loads `size` output values (in order) into a phase-major accumulator part.
template <typename acc_t, typename scalar_t, typename index_t>
C10_HOST_DEVICE inline void load_phase_major_row(index_t s, index_t size, const scalar_t* out,
                                                 acc_t* acc) {
  const index_t length = phase_length(size, s);
  if (s == 2) {
    // As in store_phase_major_row: a loop the compiler vectorises.
    acc_t* __restrict__ even = acc;
    acc_t* __restrict__ odd = acc + length;
    const int64_t pairs = size / 2;
    for (int64_t q = 0; q < pairs; ++q) {
      even[q] = static_cast<acc_t>(out[2 * q]);
      odd[q] = static_cast<acc_t>(out[2 * q + 1]);
    }
    if (size % 2) even[pairs] = static_cast<acc_t>(out[size - 1]);
    return;
  }
  for (index_t phase = 0; phase < s; ++phase) {
    acc_t* dst = acc + phase * length;
    for (index_t q = 0, o2 = phase; o2 < size; ++q, o2 += s) {
      dst[q] = static_cast<acc_t>(out[o2]);
    }
  }
}

// Stores a phase-major accumulator part as `size` output values (in
// order). Stride 1 and 2 (most layers) get loops the compiler vectorises
// (64-bit counters: see copy_row); the general case is a strided copy per
// phase.
template <typename acc_t, typename scalar_t, typename index_t>
C10_HOST_DEVICE inline void store_phase_major_row(index_t s, index_t size,
                                                  const acc_t* __restrict__ acc,
                                                  scalar_t* __restrict__ out) {
  const index_t length = phase_length(size, s);
  if (s == 1) {
    for (int64_t o2 = 0; o2 < size; ++o2) out[o2] = static_cast<scalar_t>(acc[o2]);
    return;
  }
  if (s == 2) {
    const acc_t* __restrict__ even = acc;
    const acc_t* __restrict__ odd = acc + length;
    const int64_t pairs = size / 2;
    for (int64_t q = 0; q < pairs; ++q) {
      out[2 * q] = static_cast<scalar_t>(even[q]);
      out[2 * q + 1] = static_cast<scalar_t>(odd[q]);
    }
    if (size % 2) out[size - 1] = static_cast<scalar_t>(even[pairs]);
    return;
  }
  for (index_t phase = 0; phase < s; ++phase) {
    const acc_t* src = acc + phase * length;
    for (index_t q = 0, o2 = phase; o2 < size; ++q, o2 += s) {
      out[o2] = static_cast<scalar_t>(src[q]);
    }
  }
}

// Range [lo, hi) of input positions along the innermost dim whose scatter
// through one tap k2 lands at o2 = i2 * stride + shift, inside a part of an
// output row (scatter_range) or, for the gathering input gradient, inside
// the output row with i2 inside a part of an input row (gather_range). The
// term of input position i2 goes to acc[acc_offset + i2] of the part's
// accumulators.
template <typename index_t>
struct InnerRange {
  index_t shift;
  index_t lo;
  index_t hi;
  index_t acc_offset;
  // Of a scatter: the output phase its terms land on (shift mod stride).
  index_t phase;
};

template <typename index_t>
C10_HOST_DEVICE inline InnerRange<index_t> scatter_range(const ConvGeometry<index_t>& g,
                                                        index_t k2, RowPart<index_t> part) {
  const index_t s = g.stride[2];
  InnerRange<index_t> r;
  r.shift = k2 * g.dilation[2] - g.padding[2];
  const index_t first = part.begin - r.shift;  // smallest i2 * s allowed
  r.lo = first <= 0 ? 0 : (first + s - 1) / s;
  const index_t last = part.begin + part.size - 1 - r.shift;  // largest i2 * s allowed
  r.hi = last < 0 ? 0 : last / s + 1;
  if (r.hi > g.in_size[2]) r.hi = g.in_size[2];
  if (r.lo > r.hi) r.lo = r.hi;
  // o2 = (i2 + q0) * s + phase with phase = shift mod s (in [0, s)); the
  // part begins at a multiple of s, so its phases are the row's.
  r.phase = ((r.shift % s) + s) % s;
  const index_t q0 = (r.shift - r.phase) / s;
  r.acc_offset = r.phase * phase_length(part.size, s) + q0 - part.begin / s;
  return r;
}

template <typename index_t>
C10_HOST_DEVICE inline InnerRange<index_t> gather_range(const ConvGeometry<index_t>& g,
                                                       index_t k2, RowPart<index_t> part) {
  InnerRange<index_t> r = scatter_range(g, k2, RowPart<index_t>{0, g.out_size[2]});
  if (r.lo < part.begin) r.lo = part.begin;
  if (r.hi > part.begin + part.size) r.hi = part.begin + part.size;
  if (r.lo > r.hi) r.lo = r.hi;
  r.acc_offset = -part.begin;
  return r;
}

// The row bodies below take `ranges`, the kernel[2] entries of k2 = 0, 1,
// ..., computed once per part and launcher task: per row they would cost more
// divisions than a short row has additions.
template <typename index_t>
C10_HOST_DEVICE inline void scatter_ranges(const ConvGeometry<index_t>& g, RowPart<index_t> part,
                                           InnerRange<index_t>* ranges) {
  for (index_t k2 = 0; k2 < g.kernel[2]; ++k2) ranges[k2] = scatter_range(g, k2, part);
}

template <typename index_t>
C10_HOST_DEVICE inline void gather_ranges(const ConvGeometry<index_t>& g, RowPart<index_t> part,
                                          InnerRange<index_t>* ranges) {
  for (index_t k2 = 0; k2 < g.kernel[2]; ++k2) ranges[k2] = gather_range(g, k2, part);
}

// Inner loops of the row bodies. The restrict qualifiers promise that the
// destination row and the source do not overlap, which the compiler cannot
// prove (both are often float arrays) and without which it does not
// vectorise. Element i of the destination takes source element i * stride.
template <typename acc_t, typename src_t, typename index_t>
C10_HOST_DEVICE inline void add_row(acc_t* __restrict__ acc, const src_t* __restrict__ src,
                                    index_t n) {
  for (index_t i = 0; i < n; ++i) acc[i] += static_cast<acc_t>(src[i]);
}

// Strides 1 and 2 as in copy_row below.
template <typename acc_t, typename src_t, typename index_t>
C10_HOST_DEVICE inline void add_scaled_row(acc_t* __restrict__ acc, const src_t* __restrict__ src,
                                           acc_t scale, index_t n, index_t stride) {
  if (stride == 1) {
    for (int64_t i = 0; i < n; ++i) acc[i] += static_cast<acc_t>(src[i]) * scale;
  } else if (stride == 2) {
    for (int64_t i = 0; i < n; ++i) acc[i] += static_cast<acc_t>(src[2 * i]) * scale;
  } else {
    for (index_t i = 0; i < n; ++i) acc[i] += static_cast<acc_t>(src[i * stride]) * scale;
  }
}

// Strides 1 and 2 (most layers) get loops with a constant stride, which the
// compiler vectorises (for 2: two loads and permutes per vector, where a
// runtime stride left im2col's k4 s2 gather scalar: 17% of a grouped
// layer's forward+backward in `perf`, 10% after).
template <typename dst_t, typename src_t, typename index_t>
C10_HOST_DEVICE inline void copy_row(dst_t* __restrict__ dst, const src_t* __restrict__ src,
                                     index_t n, index_t stride) {
  // 64-bit counters: with a 32-bit one the compiler sign-extends each index
  // and emulates a gather, one scalar load per element.
  if (stride == 1) {
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<dst_t>(src[i]);
  } else if (stride == 2) {
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<dst_t>(src[2 * i]);
  } else {
    for (index_t i = 0; i < n; ++i) dst[i] = static_cast<dst_t>(src[i * stride]);
  }
}

// Splits a row index over (n, c, d0, d1) of a (N, C, size0, size1, size2)
// tensor into its sample, channel and the two outer spatial coordinates.
template <typename index_t>
C10_HOST_DEVICE inline void unravel_row(
    index_t row, index_t channels, const index_t (&size)[kMaxSpatialDims],
    index_t& n, index_t& c, index_t (&coord)[kMaxSpatialDims]) {
  coord[1] = row % size[1];
  row /= size[1];
  coord[0] = row % size[0];
  row /= size[0];
  coord[2] = 0;
  c = row % channels;
  n = row / channels;
}

// Adds the column entries that land on output row (n, oc, o0, o1), in the
// part that `ranges` were made for, to acc, the part's phase-major
// accumulators (see phase_length).
template <typename acc_t, typename col_t, typename index_t>
C10_HOST_DEVICE inline void col2im_row_add(
    const col_t* cols, const KernelGeometry<index_t>& g, const InnerRange<index_t>* ranges,
    index_t n, index_t oc, index_t o0, index_t o1, acc_t* acc) {
  const index_t width = g.col_width();
  const col_t* base = cols + oc * g.taps() * width + n * g.in_numel();
  const index_t out[kMaxSpatialDims] = {o0, o1, 0};
  for_each_outer_tap_landing_on(g, out, [&](index_t outer_tap, index_t in_row) {
    for (index_t k2 = 0; k2 < g.kernel[2]; ++k2) {
      const InnerRange<index_t> r = ranges[k2];
      const col_t* src = base + (outer_tap * g.kernel[2] + k2) * width + in_row * g.in_size[2];
      add_row(acc + (r.acc_offset + r.lo), src + r.lo, r.hi - r.lo);
    }
  });
}

// One part of output row (n, oc, o0, o1) of col2im, the bias included, into
// acc (phase-major); `ranges` are the part's scatter_ranges.
template <typename acc_t, typename col_t, typename scalar_t, typename index_t>
C10_HOST_DEVICE inline void col2im_row(
    const col_t* cols, const scalar_t* bias, const KernelGeometry<index_t>& g,
    const InnerRange<index_t>* ranges, RowPart<index_t> part, index_t n,
    index_t oc, index_t o0, index_t o1, acc_t* acc) {
  const acc_t init = bias ? static_cast<acc_t>(bias[oc]) : acc_t(0);
  const index_t acc_length = g.stride[2] * phase_length(part.size, g.stride[2]);
  for (index_t j = 0; j < acc_length; ++j) acc[j] = init;
  col2im_row_add(cols, g, ranges, n, oc, o0, o1, acc);
}

// Rows [begin, end) of the column buffer, written to cols_rows (which points
// at row `begin`): each row holds, for buffer row (oc * taps + tap) and one
// (sample, input row) pair, the in_size[2] entries im2col_element would give.
// Rows run over (C_out * taps) * (N * in0 * in1), so row r starts at
// cols + r * in_size[2]. The row coordinates are decoded once and then
// stepped, so a short row costs no divisions.
template <typename scalar_t, typename col_t, typename index_t>
C10_HOST_DEVICE inline void im2col_rows(
    const scalar_t* grad_output, const KernelGeometry<index_t>& g,
    const InnerRange<index_t>* ranges, index_t begin, index_t end, col_t* cols_rows) {
  const index_t in_rows = g.batch * g.in_size[0] * g.in_size[1];
  const index_t length = g.in_size[2];
  const index_t s = g.stride[2];
  index_t row = begin;
  while (row < end) {
    // One (oc, tap) segment: the tap and its inner range are fixed.
    const index_t channel_tap = row / in_rows;
    index_t oc, tap, k[kMaxSpatialDims];
    divmod(g.taps_divisor, channel_tap, oc, tap);
    unravel_spatial(tap, g.kernel_divisor, k);
    const InnerRange<index_t> r = ranges[k[2]];
    const index_t segment_end = end < (channel_tap + 1) * in_rows ? end : (channel_tap + 1) * in_rows;
    index_t sample_row = row % in_rows;
    index_t i1 = sample_row % g.in_size[1];
    sample_row /= g.in_size[1];
    index_t i0 = sample_row % g.in_size[0];
    index_t n = sample_row / g.in_size[0];
    for (; row < segment_end; ++row) {
      col_t* dst = cols_rows + (row - begin) * length;
      index_t o0, o1, lo = 0, hi = 0;
      const scalar_t* src = nullptr;
      if (scatter_coordinate(g, 0, i0, k[0], o0) && scatter_coordinate(g, 1, i1, k[1], o1)) {
        lo = r.lo;
        hi = r.hi;
        src = grad_output +
            (((n * g.out_channels() + oc) * g.out_size[0] + o0) * g.out_size[1] + o1) *
                g.out_size[2];
      }
      for (index_t i2 = 0; i2 < lo; ++i2) dst[i2] = col_t(0);
      if (lo < hi) copy_row(dst + lo, src + (lo * s + r.shift), hi - lo, s);
      for (index_t i2 = hi; i2 < length; ++i2) dst[i2] = col_t(0);
      if (++i1 == g.in_size[1]) {
        i1 = 0;
        if (++i0 == g.in_size[0]) {
          i0 = 0;
          ++n;
        }
      }
    }
  }
}

// One part of an output row of the direct forward into acc, in phase-major
// order; `ranges` are the part's scatter_ranges.
template <typename acc_t, typename scalar_t, typename index_t>
C10_HOST_DEVICE inline void direct_forward_row(
    const scalar_t* input, const scalar_t* weight, const scalar_t* bias,
    const KernelGeometry<index_t>& g, const InnerRange<index_t>* ranges, RowPart<index_t> part,
    index_t row, acc_t* acc) {
  index_t n, oc, out[kMaxSpatialDims];
  unravel_row(row, g.out_channels(), g.out_size, n, oc, out);
  const index_t group = oc / g.out_channels_per_group;
  const index_t oc_g = oc % g.out_channels_per_group;
  const acc_t init = bias ? static_cast<acc_t>(bias[oc]) : acc_t(0);
  const index_t acc_length = g.stride[2] * phase_length(part.size, g.stride[2]);
  for (index_t j = 0; j < acc_length; ++j) acc[j] = init;
  for (index_t ic_g = 0; ic_g < g.in_channels_per_group; ++ic_g) {
    const index_t ic = group * g.in_channels_per_group + ic_g;
    const scalar_t* x = input + (n * g.in_channels() + ic) * g.in_numel();
    const scalar_t* w = weight + (ic * g.out_channels_per_group + oc_g) * g.taps();
    for_each_outer_tap_landing_on(g, out, [&](index_t outer_tap, index_t in_row) {
      for (index_t k2 = 0; k2 < g.kernel[2]; ++k2) {
        const InnerRange<index_t> r = ranges[k2];
        const acc_t wk = static_cast<acc_t>(w[outer_tap * g.kernel[2] + k2]);
        const scalar_t* src = x + in_row * g.in_size[2];
        add_scaled_row(acc + (r.acc_offset + r.lo), src + r.lo, wk, r.hi - r.lo, index_t(1));
      }
    });
  }
}

// One part of input-gradient row (n, ic, in0, in1) of the direct path into
// acc (part.size values); `row` runs over N * C_in * in0 * in1 and `ranges`
// are the part's gather_ranges.
template <typename acc_t, typename scalar_t, typename index_t>
C10_HOST_DEVICE inline void direct_input_grad_row(
    const scalar_t* grad_output, const scalar_t* weight, const KernelGeometry<index_t>& g,
    const InnerRange<index_t>* ranges, RowPart<index_t> part, index_t row, acc_t* acc) {
  index_t n, ic, in[kMaxSpatialDims];
  unravel_row(row, g.in_channels(), g.in_size, n, ic, in);
  const index_t group = ic / g.in_channels_per_group;
  for (index_t j = 0; j < part.size; ++j) acc[j] = acc_t(0);
  const index_t s = g.stride[2];
  for (index_t oc_g = 0; oc_g < g.out_channels_per_group; ++oc_g) {
    const index_t oc = group * g.out_channels_per_group + oc_g;
    const scalar_t* gy = grad_output + (n * g.out_channels() + oc) * g.out_numel();
    const scalar_t* w = weight + (ic * g.out_channels_per_group + oc_g) * g.taps();
    for_each_outer_tap_from(g, in[0], in[1], [&](index_t outer_tap, index_t out_row) {
      for (index_t k2 = 0; k2 < g.kernel[2]; ++k2) {
        const InnerRange<index_t> r = ranges[k2];
        const acc_t wk = static_cast<acc_t>(w[outer_tap * g.kernel[2] + k2]);
        const scalar_t* src = gy + out_row * g.out_size[2];
        if (r.lo < r.hi) {
          add_scaled_row(acc + (r.acc_offset + r.lo), src + (r.lo * s + r.shift), wk,
                         r.hi - r.lo, s);
        }
      }
    });
  }
}

// The CPU's lanes of a weight-gradient sum (see direct_weight_grad_partial):
// one AVX2 vector of float sums, two of double. In one lane the depthwise
// layer's weight gradient was a chain of dependent additions, 3-4 cycles each.
constexpr int kWeightGradLanes = 8;

// lanes[(first + t) % Lanes] += x[t] * gy[t * stride] for t in [0, count):
// whole runs of Lanes terms as a fixed-length loop the compiler vectorises,
// with constant strides 1 and 2 as in copy_row.
template <int Lanes, typename acc_t, typename scalar_t, typename index_t>
C10_HOST_DEVICE inline void add_products_in_lanes(acc_t (&lanes)[Lanes], index_t first,
                                                  const scalar_t* __restrict__ x,
                                                  const scalar_t* __restrict__ gy,
                                                  index_t count, index_t stride) {
  int64_t t = 0;
  for (; t < count && (first + t) % Lanes != 0; ++t) {
    lanes[(first + t) % Lanes] += static_cast<acc_t>(x[t]) * static_cast<acc_t>(gy[t * stride]);
  }
  const int64_t whole_end = t + (count - t) / Lanes * Lanes;
  if (stride == 1) {
    for (; t < whole_end; t += Lanes) {
      for (int j = 0; j < Lanes; ++j) {
        lanes[j] += static_cast<acc_t>(x[t + j]) * static_cast<acc_t>(gy[t + j]);
      }
    }
  } else if (stride == 2) {
    for (; t < whole_end; t += Lanes) {
      for (int j = 0; j < Lanes; ++j) {
        lanes[j] += static_cast<acc_t>(x[t + j]) * static_cast<acc_t>(gy[2 * (t + j)]);
      }
    }
  } else {
    for (; t < whole_end; t += Lanes) {
      for (int j = 0; j < Lanes; ++j) {
        lanes[j] += static_cast<acc_t>(x[t + j]) * static_cast<acc_t>(gy[(t + j) * stride]);
      }
    }
  }
  for (; t < count; ++t) {
    lanes[(first + t) % Lanes] += static_cast<acc_t>(x[t]) * static_cast<acc_t>(gy[t * stride]);
  }
}

// One weight-gradient element (ic, oc_g, tap) of the direct path: the sum
// over every sample and input position, row by row, in the lanes and order
// of direct_weight_grad_partial<acc_t, kWeightGradLanes> over the whole
// range.
template <typename acc_t, typename scalar_t, typename index_t>
C10_HOST_DEVICE inline acc_t direct_weight_grad_by_rows(
    const scalar_t* input, const scalar_t* grad_output, const KernelGeometry<index_t>& g,
    index_t weight_index) {
  index_t ic, oc, k[kMaxSpatialDims];
  unravel_weight(g, weight_index, ic, oc, k);
  const InnerRange<index_t> r = scatter_range(g, k[2], RowPart<index_t>{0, g.out_size[2]});
  const index_t s = g.stride[2];
  acc_t lanes[kWeightGradLanes];
  for (int lane = 0; lane < kWeightGradLanes; ++lane) lanes[lane] = acc_t(0);
  for (index_t n = 0; n < g.batch; ++n) {
    const scalar_t* x = input + (n * g.in_channels() + ic) * g.in_numel();
    const scalar_t* gy = grad_output + (n * g.out_channels() + oc) * g.out_numel();
    for (index_t i0 = 0; i0 < g.in_size[0]; ++i0) {
      index_t o0, o1;
      if (!scatter_coordinate(g, 0, i0, k[0], o0)) continue;
      for (index_t i1 = 0; i1 < g.in_size[1]; ++i1) {
        if (!scatter_coordinate(g, 1, i1, k[1], o1)) continue;
        const scalar_t* x_row = x + (i0 * g.in_size[1] + i1) * g.in_size[2];
        const scalar_t* gy_row = gy + (o0 * g.out_size[1] + o1) * g.out_size[2];
        if (r.lo < r.hi) {
          add_products_in_lanes(lanes, r.lo, x_row + r.lo, gy_row + (r.lo * s + r.shift),
                                r.hi - r.lo, s);
        }
      }
    }
  }
  acc_t acc = lanes[0];
  for (int lane = 1; lane < kWeightGradLanes; ++lane) acc += lanes[lane];
  return acc;
}

TORCH_TCONV_ISA_NAMESPACE_END
}  // namespace torch_tconv
