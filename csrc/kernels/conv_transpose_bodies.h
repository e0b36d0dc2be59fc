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

#include <cstdint>

namespace torch_tconv {

constexpr int kMaxSpatialDims = 3;

// Shape of one transposed convolution (for a chunk of `batch` samples), with
// the spatial dims right-aligned in kMaxSpatialDims slots; unused leading
// slots hold in = out = kernel = stride = dilation = 1 and padding = 0.
struct ConvGeometry {
  int64_t batch;
  int64_t groups;
  int64_t in_channels_per_group;
  int64_t out_channels_per_group;
  int64_t in_size[kMaxSpatialDims];
  int64_t out_size[kMaxSpatialDims];
  int64_t kernel[kMaxSpatialDims];
  int64_t stride[kMaxSpatialDims];
  int64_t padding[kMaxSpatialDims];
  int64_t dilation[kMaxSpatialDims];

  C10_HOST_DEVICE int64_t in_channels() const {
    return groups * in_channels_per_group;
  }
  C10_HOST_DEVICE int64_t out_channels() const {
    return groups * out_channels_per_group;
  }
  C10_HOST_DEVICE int64_t in_numel() const {
    return in_size[0] * in_size[1] * in_size[2];
  }
  C10_HOST_DEVICE int64_t out_numel() const {
    return out_size[0] * out_size[1] * out_size[2];
  }
  C10_HOST_DEVICE int64_t taps() const {
    return kernel[0] * kernel[1] * kernel[2];
  }
  // Columns of the column buffer: every (sample, input position) pair.
  C10_HOST_DEVICE int64_t col_width() const {
    return batch * in_numel();
  }
  // Total size of the column buffer.
  C10_HOST_DEVICE int64_t col_numel() const {
    return out_channels() * taps() * col_width();
  }
};

// Splits a linear row-major position into its kMaxSpatialDims coordinates.
C10_HOST_DEVICE inline void unravel_spatial(
    int64_t linear,
    const int64_t (&size)[kMaxSpatialDims],
    int64_t (&coord)[kMaxSpatialDims]) {
  coord[2] = linear % size[2];
  linear /= size[2];
  coord[1] = linear % size[1];
  coord[0] = linear / size[1];
}

C10_HOST_DEVICE inline int64_t ravel_spatial(
    const int64_t (&coord)[kMaxSpatialDims],
    const int64_t (&size)[kMaxSpatialDims]) {
  return (coord[0] * size[1] + coord[1]) * size[2] + coord[2];
}

// Calls visit(tap, input_position) for every kernel tap whose scatter lands
// on output position `out` (spatial coordinates), together with the input
// position it comes from. This is the gather view of the forward pass:
// i_j = (o_j + padding_j - k_j * dilation_j) / stride_j, when that divides
// exactly and lies inside the input.
template <typename Visit>
C10_HOST_DEVICE inline void for_each_tap_landing_on(
    const ConvGeometry& g,
    const int64_t (&out)[kMaxSpatialDims],
    Visit&& visit) {
  for (int64_t k0 = 0; k0 < g.kernel[0]; ++k0) {
    const int64_t t0 = out[0] + g.padding[0] - k0 * g.dilation[0];
    if (t0 < 0) break;  // t0 only decreases with k0
    if (t0 % g.stride[0] != 0) continue;
    const int64_t i0 = t0 / g.stride[0];
    if (i0 >= g.in_size[0]) continue;
    for (int64_t k1 = 0; k1 < g.kernel[1]; ++k1) {
      const int64_t t1 = out[1] + g.padding[1] - k1 * g.dilation[1];
      if (t1 < 0) break;
      if (t1 % g.stride[1] != 0) continue;
      const int64_t i1 = t1 / g.stride[1];
      if (i1 >= g.in_size[1]) continue;
      for (int64_t k2 = 0; k2 < g.kernel[2]; ++k2) {
        const int64_t t2 = out[2] + g.padding[2] - k2 * g.dilation[2];
        if (t2 < 0) break;
        if (t2 % g.stride[2] != 0) continue;
        const int64_t i2 = t2 / g.stride[2];
        if (i2 >= g.in_size[2]) continue;
        visit((k0 * g.kernel[1] + k1) * g.kernel[2] + k2,
              (i0 * g.in_size[1] + i1) * g.in_size[2] + i2);
      }
    }
  }
}

// Output position that input position `in` reaches through kernel tap `k`,
// or -1 when it falls outside the output (cropped by padding).
C10_HOST_DEVICE inline int64_t scatter_target(
    const ConvGeometry& g,
    const int64_t (&in)[kMaxSpatialDims],
    const int64_t (&k)[kMaxSpatialDims]) {
  int64_t out[kMaxSpatialDims];
  for (int j = 0; j < kMaxSpatialDims; ++j) {
    out[j] = in[j] * g.stride[j] - g.padding[j] + k[j] * g.dilation[j];
    if (out[j] < 0 || out[j] >= g.out_size[j]) return -1;
  }
  return ravel_spatial(out, g.out_size);
}

// Calls visit(tap, output_position) for every kernel tap through which input
// position `in` scatters into the output.
template <typename Visit>
C10_HOST_DEVICE inline void for_each_tap_from(
    const ConvGeometry& g,
    const int64_t (&in)[kMaxSpatialDims],
    Visit&& visit) {
  const int64_t taps = g.taps();
  for (int64_t tap = 0; tap < taps; ++tap) {
    int64_t k[kMaxSpatialDims];
    unravel_spatial(tap, g.kernel, k);
    const int64_t out = scatter_target(g, in, k);
    if (out >= 0) visit(tap, out);
  }
}

// ---------------------------------------------------------------------------
// GEMM path: col2im (forward) and im2col (input and weight gradients).
// ---------------------------------------------------------------------------

// One output element of the forward pass, `index` running over
// (n, oc, out spatial) of the chunk's output. Gathers the column entries that
// land on it, so col2im needs no atomics and is deterministic; the bias is
// fused in. `bias` may be null.
template <typename acc_t, typename col_t, typename scalar_t>
C10_HOST_DEVICE inline acc_t col2im_element(
    const col_t* cols,
    const scalar_t* bias,
    const ConvGeometry& g,
    int64_t index) {
  const int64_t out_numel = g.out_numel();
  int64_t out[kMaxSpatialDims];
  unravel_spatial(index % out_numel, g.out_size, out);
  const int64_t nc = index / out_numel;
  const int64_t oc = nc % g.out_channels();
  const int64_t n = nc / g.out_channels();

  const int64_t width = g.col_width();
  // Row oc * taps of the buffer: group-major order makes (g * C_out_g + oc_g)
  // equal to oc.
  const col_t* base = cols + oc * g.taps() * width + n * g.in_numel();
  acc_t acc = bias ? static_cast<acc_t>(bias[oc]) : acc_t(0);
  for_each_tap_landing_on(g, out, [&](int64_t tap, int64_t in) {
    acc += static_cast<acc_t>(base[tap * width + in]);
  });
  return acc;
}

// One column-buffer element built from grad_output, `index` running over the
// buffer in its layout. Zero where the tap falls outside the output.
template <typename scalar_t>
C10_HOST_DEVICE inline scalar_t im2col_element(
    const scalar_t* grad_output,
    const ConvGeometry& g,
    int64_t index) {
  const int64_t width = g.col_width();
  const int64_t row = index / width;
  const int64_t col = index % width;
  const int64_t taps = g.taps();
  const int64_t oc = row / taps;
  const int64_t n = col / g.in_numel();
  int64_t k[kMaxSpatialDims];
  int64_t in[kMaxSpatialDims];
  unravel_spatial(row % taps, g.kernel, k);
  unravel_spatial(col % g.in_numel(), g.in_size, in);
  const int64_t out = scatter_target(g, in, k);
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
template <typename acc_t, typename scalar_t>
C10_HOST_DEVICE inline acc_t direct_forward_element(
    const scalar_t* input,
    const scalar_t* weight,
    const scalar_t* bias,
    const ConvGeometry& g,
    int64_t index) {
  const int64_t out_numel = g.out_numel();
  int64_t out[kMaxSpatialDims];
  unravel_spatial(index % out_numel, g.out_size, out);
  const int64_t nc = index / out_numel;
  const int64_t oc = nc % g.out_channels();
  const int64_t n = nc / g.out_channels();
  const int64_t group = oc / g.out_channels_per_group;
  const int64_t oc_g = oc % g.out_channels_per_group;
  const int64_t taps = g.taps();
  const int64_t in_numel = g.in_numel();

  acc_t acc = bias ? static_cast<acc_t>(bias[oc]) : acc_t(0);
  for (int64_t ic_g = 0; ic_g < g.in_channels_per_group; ++ic_g) {
    const int64_t ic = group * g.in_channels_per_group + ic_g;
    const scalar_t* x = input + (n * g.in_channels() + ic) * in_numel;
    const scalar_t* w = weight + (ic * g.out_channels_per_group + oc_g) * taps;
    for_each_tap_landing_on(g, out, [&](int64_t tap, int64_t in) {
      acc += static_cast<acc_t>(x[in]) * static_cast<acc_t>(w[tap]);
    });
  }
  return acc;
}

// One input-gradient element (n, ic, in spatial): gathers grad_output over
// the window the input position scattered into.
template <typename acc_t, typename scalar_t>
C10_HOST_DEVICE inline acc_t direct_input_grad_element(
    const scalar_t* grad_output,
    const scalar_t* weight,
    const ConvGeometry& g,
    int64_t index) {
  const int64_t in_numel = g.in_numel();
  int64_t in[kMaxSpatialDims];
  unravel_spatial(index % in_numel, g.in_size, in);
  const int64_t nc = index / in_numel;
  const int64_t ic = nc % g.in_channels();
  const int64_t n = nc / g.in_channels();
  const int64_t group = ic / g.in_channels_per_group;
  const int64_t taps = g.taps();
  const int64_t out_numel = g.out_numel();

  acc_t acc(0);
  for (int64_t oc_g = 0; oc_g < g.out_channels_per_group; ++oc_g) {
    const int64_t oc = group * g.out_channels_per_group + oc_g;
    const scalar_t* gy = grad_output + (n * g.out_channels() + oc) * out_numel;
    const scalar_t* w = weight + (ic * g.out_channels_per_group + oc_g) * taps;
    for_each_tap_from(g, in, [&](int64_t tap, int64_t out) {
      acc += static_cast<acc_t>(gy[out]) * static_cast<acc_t>(w[tap]);
    });
  }
  return acc;
}

// Partial sum of one weight-gradient element, weight_index running over
// (ic, oc_g, tap): the sum over (n, in position) = p for p in
// [begin, end) stepping by `step`. A CPU launcher takes the whole range in one
// call; a CUDA block splits it across threads and reduces in a fixed order.
template <typename acc_t, typename scalar_t>
C10_HOST_DEVICE inline acc_t direct_weight_grad_partial(
    const scalar_t* input,
    const scalar_t* grad_output,
    const ConvGeometry& g,
    int64_t weight_index,
    int64_t begin,
    int64_t end,
    int64_t step) {
  const int64_t taps = g.taps();
  const int64_t tap = weight_index % taps;
  const int64_t ic_oc = weight_index / taps;
  const int64_t oc_g = ic_oc % g.out_channels_per_group;
  const int64_t ic = ic_oc / g.out_channels_per_group;
  const int64_t oc = (ic / g.in_channels_per_group) * g.out_channels_per_group + oc_g;
  const int64_t in_numel = g.in_numel();
  const int64_t out_numel = g.out_numel();
  int64_t k[kMaxSpatialDims];
  unravel_spatial(tap, g.kernel, k);

  acc_t acc(0);
  for (int64_t p = begin; p < end; p += step) {
    const int64_t n = p / in_numel;
    int64_t in[kMaxSpatialDims];
    unravel_spatial(p % in_numel, g.in_size, in);
    const int64_t out = scatter_target(g, in, k);
    if (out < 0) continue;
    acc += static_cast<acc_t>(input[(n * g.in_channels() + ic) * in_numel + p % in_numel]) *
        static_cast<acc_t>(grad_output[(n * g.out_channels() + oc) * out_numel + out]);
  }
  return acc;
}

}  // namespace torch_tconv
