// Geometry of one transposed convolution as the kernel bodies see it, and the
// index arithmetic shared by all of them (divisors, ravel/unravel).
//
// Every function under kernels/ is C10_HOST_DEVICE: the CPU launchers (cpu/)
// and the CUDA launchers (cuda/) call the very same code, so the CPU test
// suite proves the index arithmetic that runs on the GPU. No index arithmetic
// may live only in a .cu file.
//
// All ranks share these bodies: a 1-D or 2-D problem is a 3-D one whose
// leading spatial dims have size 1 (see ConvGeometry).
#pragma once

#include <c10/macros/Macros.h>
// ATen's multiply-shift divider: plain C++ on the host, __umulhi on the GPU.
#include <ATen/cuda/detail/IntegerDivider.cuh>

#include <cstdint>

// The CPU launchers are compiled once per instruction set (cpu/cpu_isa.h),
// each translation unit defining TORCH_TCONV_CPU_ISA to its variant's name.
// The bodies' functions then live in a namespace of that name: the same
// template with the same arguments would otherwise get the same symbol in
// every variant, and the linker, keeping one copy, could hand the AVX-512
// one to the baseline launchers. The types here, which the rest of the
// library shares, stay outside; elsewhere (CUDA, the library's other files)
// the namespace is empty.
#ifdef TORCH_TCONV_CPU_ISA
#define TORCH_TCONV_ISA_NAMESPACE_BEGIN inline namespace TORCH_TCONV_CPU_ISA {
#define TORCH_TCONV_ISA_NAMESPACE_END }
#else
#define TORCH_TCONV_ISA_NAMESPACE_BEGIN
#define TORCH_TCONV_ISA_NAMESPACE_END
#endif

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

}  // namespace torch_tconv
