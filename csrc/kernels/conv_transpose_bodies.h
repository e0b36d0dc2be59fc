// Element-wise kernel bodies of the transposed convolution.
//
// Every function here is C10_HOST_DEVICE: the CPU launchers (cpu/) and the
// CUDA launchers (cuda/) call the very same code, so the CPU test suite
// proves the index arithmetic that runs on the GPU. No index arithmetic may
// live only in a .cu file.
//
// All ranks share these bodies: a 1-D or 2-D problem is a 3-D one whose
// leading spatial dims have size 1 (see ConvGeometry).
//
// Notation, per spatial dim j:
//   o_j = i_j * stride_j - padding_j + k_j * dilation_j
// maps input position i_j and kernel tap k_j to the output position o_j it
// lands on. The forward pass scatters along this map; the input gradient
// gathers along it (an ordinary convolution).
//
// Column buffer layout, shared by col2im and im2col:
//   cols[group][oc_g * taps + tap][n * in_numel + i]
// a (groups, C_out/groups * taps, batch * in_numel) row-major tensor. The
// forward GEMM writes it, col2im reads it; im2col writes it from grad_output,
// and the input- and weight-gradient GEMMs read it.
#pragma once

#include <c10/macros/Macros.h>
// ATen's multiply-shift divider: plain C++ on the host, __umulhi on the GPU.
#include <ATen/cuda/detail/IntegerDivider.cuh>

#include <cstdint>

namespace torch_tconv {

constexpr int kMaxSpatialDims = 3;

// Shape of one transposed convolution (for a chunk of `batch` samples), with
// the spatial dims right-aligned in kMaxSpatialDims slots; unused leading
// slots hold in = out = kernel = stride = dilation = tap_step = 1 and
// padding = 0.
//
// index_t is the type of all index arithmetic: int64_t always works; a
// launcher may pick int32_t when every tensor involved has fewer than 2^31
// elements (fits_int32), which makes GPU division and modulo much cheaper.
template <typename index_t>
struct ConvGeometry {
  index_t batch;
  index_t groups;
  index_t in_channels_per_group;
  index_t out_channels_per_group;
  index_t in_size[kMaxSpatialDims];
  index_t out_size[kMaxSpatialDims];
  index_t kernel[kMaxSpatialDims];
  index_t stride[kMaxSpatialDims];
  index_t padding[kMaxSpatialDims];
  index_t dilation[kMaxSpatialDims];
  // Distance between consecutive kernel taps that land on the same output
  // position: stride / gcd(stride, dilation).
  index_t tap_step[kMaxSpatialDims];

  C10_HOST_DEVICE index_t in_channels() const {
    return groups * in_channels_per_group;
  }
  C10_HOST_DEVICE index_t out_channels() const {
    return groups * out_channels_per_group;
  }
  C10_HOST_DEVICE index_t in_numel() const {
    return in_size[0] * in_size[1] * in_size[2];
  }
  C10_HOST_DEVICE index_t out_numel() const {
    return out_size[0] * out_size[1] * out_size[2];
  }
  C10_HOST_DEVICE index_t taps() const {
    return kernel[0] * kernel[1] * kernel[2];
  }
  // Columns of the column buffer: every (sample, input position) pair.
  C10_HOST_DEVICE index_t col_width() const {
    return batch * in_numel();
  }
  // Total size of the column buffer.
  C10_HOST_DEVICE index_t col_numel() const {
    return out_channels() * taps() * col_width();
  }

  // The same geometry with another index type (the caller checks the range).
  template <typename other_t>
  ConvGeometry<other_t> as() const {
    ConvGeometry<other_t> g;
    g.batch = static_cast<other_t>(batch);
    g.groups = static_cast<other_t>(groups);
    g.in_channels_per_group = static_cast<other_t>(in_channels_per_group);
    g.out_channels_per_group = static_cast<other_t>(out_channels_per_group);
    for (int j = 0; j < kMaxSpatialDims; ++j) {
      g.in_size[j] = static_cast<other_t>(in_size[j]);
      g.out_size[j] = static_cast<other_t>(out_size[j]);
      g.kernel[j] = static_cast<other_t>(kernel[j]);
      g.stride[j] = static_cast<other_t>(stride[j]);
      g.padding[j] = static_cast<other_t>(padding[j]);
      g.dilation[j] = static_cast<other_t>(dilation[j]);
      g.tap_step[j] = static_cast<other_t>(tap_step[j]);
    }
    return g;
  }

  // Whether 32-bit indices cover the input, output, weight and column
  // buffer, with room for the intermediate out + padding - k * dilation.
  // Call it on a 64-bit geometry.
  bool fits_int32() const {
    int64_t margin = 0;
    for (int j = 0; j < kMaxSpatialDims; ++j) {
      // Windows of a sample (see for_each_chunk) shift the padding below 0.
      const int64_t pad = padding[j] < 0 ? -int64_t(padding[j]) : int64_t(padding[j]);
      margin += pad + int64_t(kernel[j]) * dilation[j] + stride[j];
    }
    const int64_t sizes[] = {
        int64_t(batch) * in_channels() * in_numel(),
        int64_t(batch) * out_channels() * out_numel(),
        int64_t(in_channels()) * out_channels_per_group * taps(),
        int64_t(out_channels()) * taps() * batch * in_numel(),
    };
    for (int64_t size : sizes) {
      if (size + margin >= (int64_t(1) << 31)) return false;
    }
    return true;
  }
};

// Division by a size fixed for a launch. Integer division by a runtime value
// takes about 20 instructions on the GPU, and an element of col2im needed
// dozens of them, so the 32-bit one divides by a multiply and a shift (ATen's
// IntDivider, whose host code does the same arithmetic, so the CPU tests
// cover it). The 64-bit one divides. Dividends must be non-negative.
template <typename index_t>
struct Divisor {
  Divisor() = default;
  explicit Divisor(index_t d) : value(d) {}
  C10_HOST_DEVICE index_t div(index_t n) const {
    return n / value;
  }
  index_t value;
};

template <>
struct Divisor<int32_t> {
  Divisor() = default;
  // IntDivider needs d >= 1. A size of 0 is never divided by: the launchers
  // return early on empty tensors.
  explicit Divisor(int32_t d)
      : value(d), divider(static_cast<uint32_t>(d > 0 ? d : 1)) {}
  C10_HOST_DEVICE int32_t div(int32_t n) const {
    return static_cast<int32_t>(divider.div(static_cast<uint32_t>(n)));
  }
  int32_t value;
  at::cuda::detail::IntDivider<uint32_t> divider;
};

// n = quotient * d.value + remainder.
template <typename index_t>
C10_HOST_DEVICE inline void divmod(const Divisor<index_t>& d, index_t n, index_t& quotient,
                                   index_t& remainder) {
  quotient = d.div(n);
  remainder = n - quotient * d.value;
}

// What every body receives: the geometry in the launch's index type, with
// the divisors and tap steps of its index arithmetic computed once, on the
// host, when the launch starts (dispatch_index_type).
template <typename index_t>
struct KernelGeometry : ConvGeometry<index_t> {
  KernelGeometry() = default;
  explicit KernelGeometry(const ConvGeometry<index_t>& g) : ConvGeometry<index_t>(g) {
    for (int j = 0; j < kMaxSpatialDims; ++j) {
      in_size_divisor[j] = Divisor<index_t>(g.in_size[j]);
      out_size_divisor[j] = Divisor<index_t>(g.out_size[j]);
      kernel_divisor[j] = Divisor<index_t>(g.kernel[j]);
      stride_divisor[j] = Divisor<index_t>(g.stride[j]);
      dilation_quotient[j] = g.dilation[j] / g.stride[j];
      dilation_remainder[j] = g.dilation[j] % g.stride[j];
      in_step[j] = g.tap_step[j] * g.dilation[j] / g.stride[j];
    }
    in_numel_divisor = Divisor<index_t>(g.in_numel());
    out_numel_divisor = Divisor<index_t>(g.out_numel());
    taps_divisor = Divisor<index_t>(g.taps());
    col_width_divisor = Divisor<index_t>(g.col_width());
    in_channels_divisor = Divisor<index_t>(g.in_channels());
    out_channels_divisor = Divisor<index_t>(g.out_channels());
    in_channels_per_group_divisor = Divisor<index_t>(g.in_channels_per_group);
    out_channels_per_group_divisor = Divisor<index_t>(g.out_channels_per_group);
  }

  Divisor<index_t> in_size_divisor[kMaxSpatialDims];
  Divisor<index_t> out_size_divisor[kMaxSpatialDims];
  Divisor<index_t> kernel_divisor[kMaxSpatialDims];
  Divisor<index_t> stride_divisor[kMaxSpatialDims];
  Divisor<index_t> in_numel_divisor;
  Divisor<index_t> out_numel_divisor;
  Divisor<index_t> taps_divisor;
  Divisor<index_t> col_width_divisor;
  Divisor<index_t> in_channels_divisor;
  Divisor<index_t> out_channels_divisor;
  Divisor<index_t> in_channels_per_group_divisor;
  Divisor<index_t> out_channels_per_group_divisor;
  // dilation = stride * dilation_quotient + dilation_remainder, so that the
  // tap search below can step t = out + padding - k * dilation down by one
  // dilation at a time while keeping t's quotient and remainder by the stride.
  index_t dilation_quotient[kMaxSpatialDims];
  index_t dilation_remainder[kMaxSpatialDims];
  // How far the input coordinate moves back between consecutive taps that
  // land on the same output: tap_step * dilation / stride, exactly.
  index_t in_step[kMaxSpatialDims];
};

// Splits a linear row-major position into its kMaxSpatialDims coordinates,
// `size` being the dims' divisors.
template <typename index_t>
C10_HOST_DEVICE inline void unravel_spatial(
    index_t linear,
    const Divisor<index_t> (&size)[kMaxSpatialDims],
    index_t (&coord)[kMaxSpatialDims]) {
  divmod(size[2], linear, linear, coord[2]);
  divmod(size[1], linear, coord[0], coord[1]);
}

template <typename index_t>
C10_HOST_DEVICE inline index_t ravel_spatial(
    const index_t (&coord)[kMaxSpatialDims],
    const index_t (&size)[kMaxSpatialDims]) {
  return (coord[0] * size[1] + coord[1]) * size[2] + coord[2];
}

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

// The outer output rows (flattened over the two outer spatial dims) that the
// inputs of geometry g reach: [begin, end), empty when begin >= end. For a
// window of a sample's input rows, these are the rows its col2im visits.
template <typename index_t>
C10_HOST_DEVICE inline void reached_outer_rows(const ConvGeometry<index_t>& g, index_t& begin,
                                               index_t& end) {
  index_t lo[2], hi[2];
  for (int j = 0; j < 2; ++j) {
    lo[j] = g.padding[j] > 0 ? 0 : -g.padding[j];
    hi[j] = (g.in_size[j] - 1) * g.stride[j] - g.padding[j] + (g.kernel[j] - 1) * g.dilation[j];
    if (hi[j] > g.out_size[j] - 1) hi[j] = g.out_size[j] - 1;
  }
  begin = end = 0;
  if (lo[0] > hi[0] || lo[1] > hi[1]) return;
  begin = lo[0] * g.out_size[1] + lo[1];
  end = hi[0] * g.out_size[1] + hi[1] + 1;
}

// Where a window's col2im writes (a window of one sample's input rows, g
// being its geometry): the `span` outer output rows from `begin` that the
// window reaches (see reached_outer_rows), in every output channel. Element e
// of that reach, over (oc, outer row, innermost coordinate), is output
// position begin * out_size[2] + e mod span_numel of channel oc.
template <typename index_t>
struct WindowReach {
  index_t begin;
  index_t span;                  // 0 when the window reaches no output
  Divisor<index_t> span_numel;   // span * out_size[2]
  int64_t numel;                 // elements of the reach
};

template <typename index_t>
inline WindowReach<index_t> window_reach(const KernelGeometry<index_t>& g) {
  index_t begin, end;
  reached_outer_rows(g, begin, end);
  if (begin >= end) return {0, 0, Divisor<index_t>(1), 0};
  const index_t span_numel = (end - begin) * g.out_size[2];
  return {begin, end - begin, Divisor<index_t>(span_numel),
          int64_t(g.out_channels()) * span_numel};
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
  index_t oc, offset, out[kMaxSpatialDims];
  divmod(reach.span_numel, e, oc, offset);
  const index_t position = reach.begin * g.out_size[2] + offset;
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
// Row bodies: the same sums as the element bodies, a whole innermost-dim row
// at a time. The divisions that locate kernel taps happen once per row, and
// the inner loop is a strided walk along the row. For every output element
// the taps are added in the same order as in the element bodies, so both give
// bitwise-identical results (tests compare them). The CPU launchers use these;
// the element bodies stay what the CUDA launchers run.
// ---------------------------------------------------------------------------

// Scattering rows (col2im, the direct forward) accumulate an output row in
// phase-major order: output position o2 lives at
//   acc[(o2 % stride) * phase_length + o2 / stride],
// so that the positions one tap reaches (every stride-th) are contiguous and
// the inner loop vectorises. The row takes stride * phase_length accumulators.
template <typename index_t>
C10_HOST_DEVICE inline index_t phase_length(const ConvGeometry<index_t>& g) {
  return (g.out_size[2] + g.stride[2] - 1) / g.stride[2];
}

// Loads output row `out` (out_size[2] values, in order) into a phase-major
// accumulator row.
template <typename acc_t, typename scalar_t, typename index_t>
C10_HOST_DEVICE inline void load_phase_major_row(
    const ConvGeometry<index_t>& g, const scalar_t* out, acc_t* acc) {
  const index_t s = g.stride[2];
  const index_t length = phase_length(g);
  for (index_t phase = 0; phase < s; ++phase) {
    acc_t* dst = acc + phase * length;
    for (index_t q = 0, o2 = phase; o2 < g.out_size[2]; ++q, o2 += s) {
      dst[q] = static_cast<acc_t>(out[o2]);
    }
  }
}

// Stores a phase-major accumulator row as output row `out` (out_size[2]
// values, in order). Stride 1 and 2 (most layers) get loops the compiler
// vectorises; the general case is a strided copy per phase.
template <typename acc_t, typename scalar_t, typename index_t>
C10_HOST_DEVICE inline void store_phase_major_row(
    const ConvGeometry<index_t>& g, const acc_t* __restrict__ acc, scalar_t* __restrict__ out) {
  const index_t s = g.stride[2];
  const index_t length = phase_length(g);
  const index_t size = g.out_size[2];
  if (s == 1) {
    for (index_t o2 = 0; o2 < size; ++o2) out[o2] = static_cast<scalar_t>(acc[o2]);
    return;
  }
  if (s == 2) {
    const acc_t* __restrict__ even = acc;
    const acc_t* __restrict__ odd = acc + length;
    const index_t pairs = size / 2;
    for (index_t q = 0; q < pairs; ++q) {
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
// through one tap k2 lands inside the output, at o2 = i2 * stride + shift;
// in a phase-major accumulator row, i2 lands at acc[acc_offset + i2].
template <typename index_t>
struct InnerRange {
  index_t shift;
  index_t lo;
  index_t hi;
  index_t acc_offset;
};

template <typename index_t>
C10_HOST_DEVICE inline InnerRange<index_t> inner_range(const ConvGeometry<index_t>& g,
                                                      index_t k2) {
  const index_t s = g.stride[2];
  InnerRange<index_t> r;
  r.shift = k2 * g.dilation[2] - g.padding[2];
  r.lo = r.shift >= 0 ? 0 : (-r.shift + s - 1) / s;
  const index_t last = g.out_size[2] - 1 - r.shift;  // largest i2 * s allowed
  r.hi = last < 0 ? 0 : last / s + 1;
  if (r.hi > g.in_size[2]) r.hi = g.in_size[2];
  if (r.lo > r.hi) r.lo = r.hi;
  // o2 = (i2 + q0) * s + phase with phase = shift mod s (in [0, s)).
  const index_t phase = ((r.shift % s) + s) % s;
  const index_t q0 = (r.shift - phase) / s;
  r.acc_offset = phase * phase_length(g) + q0;
  return r;
}

// The row bodies below take `ranges`, the kernel[2] entries
// inner_range(g, 0), ..., inner_range(g, kernel[2] - 1), computed once per
// launch: per row they would cost more divisions than the row has additions.
template <typename index_t>
C10_HOST_DEVICE inline void inner_ranges(const ConvGeometry<index_t>& g,
                                         InnerRange<index_t>* ranges) {
  for (index_t k2 = 0; k2 < g.kernel[2]; ++k2) ranges[k2] = inner_range(g, k2);
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

template <typename acc_t, typename src_t, typename index_t>
C10_HOST_DEVICE inline void add_scaled_row(acc_t* __restrict__ acc, const src_t* __restrict__ src,
                                           acc_t scale, index_t n, index_t stride) {
  for (index_t i = 0; i < n; ++i) acc[i] += static_cast<acc_t>(src[i * stride]) * scale;
}

template <typename dst_t, typename src_t, typename index_t>
C10_HOST_DEVICE inline void copy_row(dst_t* __restrict__ dst, const src_t* __restrict__ src,
                                     index_t n, index_t stride) {
  for (index_t i = 0; i < n; ++i) dst[i] = static_cast<dst_t>(src[i * stride]);
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

// Adds the column entries that land on output row (n, oc, o0, o1, all out2)
// to acc, a phase-major accumulator row (see phase_length).
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
      add_row(acc + r.acc_offset + r.lo, src + r.lo, r.hi - r.lo);
    }
  });
}

// One output row (n, oc, o0, o1, all out2) of col2im, the bias included,
// into acc (phase-major).
template <typename acc_t, typename col_t, typename scalar_t, typename index_t>
C10_HOST_DEVICE inline void col2im_row(
    const col_t* cols, const scalar_t* bias, const KernelGeometry<index_t>& g,
    const InnerRange<index_t>* ranges, index_t n,
    index_t oc, index_t o0, index_t o1, acc_t* acc) {
  const acc_t init = bias ? static_cast<acc_t>(bias[oc]) : acc_t(0);
  const index_t acc_length = g.stride[2] * phase_length(g);
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

// One output row of the direct forward into acc, in phase-major order.
template <typename acc_t, typename scalar_t, typename index_t>
C10_HOST_DEVICE inline void direct_forward_row(
    const scalar_t* input, const scalar_t* weight, const scalar_t* bias,
    const KernelGeometry<index_t>& g, const InnerRange<index_t>* ranges, index_t row, acc_t* acc) {
  index_t n, oc, out[kMaxSpatialDims];
  unravel_row(row, g.out_channels(), g.out_size, n, oc, out);
  const index_t group = oc / g.out_channels_per_group;
  const index_t oc_g = oc % g.out_channels_per_group;
  const acc_t init = bias ? static_cast<acc_t>(bias[oc]) : acc_t(0);
  const index_t acc_length = g.stride[2] * phase_length(g);
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
        add_scaled_row(acc + r.acc_offset + r.lo, src + r.lo, wk, r.hi - r.lo, index_t(1));
      }
    });
  }
}

// One input-gradient row (n, ic, in0, in1, all in2) of the direct path into
// acc (in_size[2] values); `row` runs over N * C_in * in0 * in1.
template <typename acc_t, typename scalar_t, typename index_t>
C10_HOST_DEVICE inline void direct_input_grad_row(
    const scalar_t* grad_output, const scalar_t* weight, const KernelGeometry<index_t>& g,
    const InnerRange<index_t>* ranges, index_t row, acc_t* acc) {
  index_t n, ic, in[kMaxSpatialDims];
  unravel_row(row, g.in_channels(), g.in_size, n, ic, in);
  const index_t group = ic / g.in_channels_per_group;
  for (index_t i2 = 0; i2 < g.in_size[2]; ++i2) acc[i2] = acc_t(0);
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
        if (r.lo < r.hi) add_scaled_row(acc + r.lo, src + (r.lo * s + r.shift), wk, r.hi - r.lo, s);
      }
    });
  }
}

// One weight-gradient element (ic, oc_g, tap) of the direct path: the sum
// over every sample and input position, row by row, in the order of
// direct_weight_grad_partial over the whole range.
template <typename acc_t, typename scalar_t, typename index_t>
C10_HOST_DEVICE inline acc_t direct_weight_grad_by_rows(
    const scalar_t* input, const scalar_t* grad_output, const KernelGeometry<index_t>& g,
    index_t weight_index) {
  index_t ic, oc, k[kMaxSpatialDims];
  unravel_weight(g, weight_index, ic, oc, k);
  const InnerRange<index_t> r = inner_range(g, k[2]);
  const index_t s = g.stride[2];
  acc_t acc(0);
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
        for (index_t i2 = r.lo; i2 < r.hi; ++i2) {
          acc += static_cast<acc_t>(x_row[i2]) * static_cast<acc_t>(gy_row[i2 * s + r.shift]);
        }
      }
    }
  }
  return acc;
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
template <typename acc_t, typename scalar_t, typename index_t>
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

  acc_t acc(0);
  for (index_t p = begin; p < end; p += step) {
    index_t n, position, in[kMaxSpatialDims];
    divmod(g.in_numel_divisor, p, n, position);
    unravel_spatial(position, g.in_size_divisor, in);
    const index_t out = scatter_target(g, in, k);
    if (out < 0) continue;
    acc += static_cast<acc_t>(input[(n * g.in_channels() + ic) * in_numel + position]) *
        static_cast<acc_t>(grad_output[(n * g.out_channels() + oc) * out_numel + out]);
  }
  return acc;
}

}  // namespace torch_tconv
