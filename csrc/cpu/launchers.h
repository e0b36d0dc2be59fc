// CPU launchers: at::parallel_for over disjoint output elements, each one
// computed by a body from kernels/ (the row bodies, or the element bodies
// that CUDA runs). Every element is written by exactly one iteration, so
// results do not depend on the thread count or schedule.
//
// Not a header to include anywhere else: each cpu/launchers_<isa>.cpp
// includes it once, with TORCH_TCONV_CPU_ISA naming its variant, after
// launcher_includes.h and its switch to its own instructions (see
// cpu_isa.h), and gets launchers_backend() in the namespace of that name.
#ifndef TORCH_TCONV_CPU_ISA
#error "cpu/launchers.h is included by cpu/launchers_<isa>.cpp only, which name their variant"
#endif

#include "launcher_includes.h"

#define TORCH_TCONV_STRINGIFY_NAME(name) #name
#define TORCH_TCONV_STRINGIFY(name) TORCH_TCONV_STRINGIFY_NAME(name)

#include "../kernels/implicit_gemm.h"
#include "../kernels/pixel_bodies.h"
#include "../kernels/row_bodies.h"
#include "../launcher_common.h"
#include "blocked_gemm.h"
#include "blocked_gradients.h"
#include "blocked_phase_forward.h"
#include "mma_emulation.h"
#include "register_rows.h"
#include "staged_gradients.h"

namespace torch_tconv {
TORCH_TCONV_ISA_NAMESPACE_BEGIN
namespace {

// Inner-loop steps worth one parallel task.
constexpr int64_t kStepsPerTask = 32768;

// The reference paths: the element bodies that the CUDA launchers run
// (Config::cpu_row_kernels false) and the emulated tensor-core tiles (an
// MMA tile variant). They run the GPU's index arithmetic on the CPU for the
// tests, not for speed, so only the baseline variant compiles them, and
// cpu_backend_for hands every call that asks for them to it. They were
// nearly half of a wider variant's code and 60% of its compile time
// (bench/NOTES.md).
#ifdef TORCH_TCONV_CPU_REFERENCE_PATHS
constexpr bool kReferencePaths = true;
#else
constexpr bool kReferencePaths = false;
#endif

// Whether the call asks for the element bodies; never in a wider variant.
bool element_bodies_requested(const Config& config) {
  TORCH_INTERNAL_ASSERT(kReferencePaths || config.cpu_row_kernels,
                        "the element bodies run in the baseline variant only");
  return !config.cpu_row_kernels;
}

// Column buffer per chunk: about a core's L2, so that col2im and the
// gradient GEMMs read what the forward GEMM or im2col just wrote from cache.
// Measured on a 2-core Xeon with 2 MiB L2 per core (bench/NOTES.md).
constexpr int64_t kColumnChunkBytes = int64_t(4) << 20;
// Measured on the same machine: a 4x budget sped up the forwards of VAE and
// DCGAN layers with 256 positions or fewer per sample by 5-10%, and slowed
// a k3 s2 decoder layer with 1024 by 15% (bench/NOTES.md).
constexpr int64_t kForwardChunkPositions = 1024;

// Runs write(index) for index in [0, numel), in parallel, with the index in
// the geometry's index type. `cost` is a rough count of inner-loop steps per
// element, to size the parallel grain.
template <typename index_t, typename Write>
void for_each_element(int64_t numel, int64_t cost, const Write& write) {
  const int64_t grain = std::max<int64_t>(1, kStepsPerTask / std::max<int64_t>(cost, 1));
  at::parallel_for(0, numel, grain, [&](int64_t begin, int64_t end) {
    for (int64_t index = begin; index < end; ++index) write(static_cast<index_t>(index));
  });
}

// Rows up to this many positions stay whole; longer ones run in parts of
// about this many (see RowPart): 16 KiB of float accumulators, in L1 with
// the input they read. A one-channel signal of 2^22 inputs (k4 s2, Zen 3,
// 2 cores): forward 40-48 ms as one row on one thread, 5.7-8.0 ms in parts
// (bench/NOTES.md).
constexpr int64_t kRowPartPositions = 4096;

// How positions [first, end) of a row split into `count` parts of `size`
// positions (the last part shorter), each beginning at a multiple of
// `align` (the stride, for output rows; `first` is one too).
struct RowParts {
  int64_t first;
  int64_t end;
  int64_t count;
  int64_t size;

  RowParts(int64_t first_position, int64_t end_position, int64_t align)
      : first(first_position), end(end_position) {
    const int64_t length = end - first;
    const int64_t wanted =
        std::max<int64_t>(1, (length + kRowPartPositions - 1) / kRowPartPositions);
    size = (length + wanted - 1) / wanted;
    size = std::max<int64_t>(align, (size + align - 1) / align * align);
    count = std::max<int64_t>(1, (length + size - 1) / size);
  }

  template <typename index_t>
  RowPart<index_t> part(int64_t p) const {
    const int64_t begin = first + p * size;
    return {static_cast<index_t>(begin), static_cast<index_t>(std::min(size, end - begin))};
  }
};

// Which inner ranges a launcher's row bodies take (see scatter_range).
enum class RangeKind { kScatter, kGather };

// A launcher task's inner ranges, remade only when the part changes: once
// per task where rows are whole, once per part of a long row.
template <typename index_t>
class PartRanges {
 public:
  PartRanges(const ConvGeometry<index_t>& g, RangeKind kind)
      : g_(g), kind_(kind), ranges_(static_cast<size_t>(g.kernel[2])) {}

  const InnerRange<index_t>* of(RowPart<index_t> part) {
    if (!made_ || part.begin != part_.begin || part.size != part_.size) {
      if (kind_ == RangeKind::kScatter) {
        scatter_ranges(g_, part, ranges_.data());
      } else {
        gather_ranges(g_, part, ranges_.data());
      }
      part_ = part;
      made_ = true;
    }
    return ranges_.data();
  }

 private:
  const ConvGeometry<index_t>& g_;
  RangeKind kind_;
  std::vector<InnerRange<index_t>> ranges_;
  RowPart<index_t> part_{0, 0};
  bool made_ = false;
};

// Runs row(r, part, ranges, acc) for every part of every innermost-dim row r
// of an output-like tensor (`rows` whole rows, split as `parts`), each into a
// buffer of accumulators, then store(part, acc, where the part begins in
// out). One buffer per parallel task; a long row's parts spread over tasks.
template <typename index_t, typename acc_t, typename scalar_t, typename Row, typename Store>
void for_each_row_part(scalar_t* out, int64_t rows, const RowParts& parts,
                       const ConvGeometry<index_t>& g, RangeKind kind, int64_t cost,
                       const Row& row, const Store& store) {
  const int64_t grain =
      std::max<int64_t>(1, kStepsPerTask / std::max<int64_t>(cost * parts.size, 1));
  at::parallel_for(0, rows * parts.count, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(parts.size);
    PartRanges<index_t> ranges(g, kind);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t r = item / parts.count;
      const RowPart<index_t> part = parts.part<index_t>(item % parts.count);
      row(static_cast<index_t>(r), part, ranges.of(part), acc.data());
      store(part, acc.data(), out + r * parts.end + part.begin);
    }
  });
}

// for_each_row_part over the output of a scattering row body (the direct
// forward), whose accumulators are phase-major (see phase_length).
template <typename index_t, typename acc_t, typename scalar_t, typename Row>
void for_each_scattered_row_part(scalar_t* out, int64_t numel, const ConvGeometry<index_t>& g,
                                 int64_t cost, const Row& row) {
  const RowParts parts(0, g.out_size[2], g.stride[2]);
  for_each_row_part<index_t, acc_t>(
      out, numel / parts.end, parts, g, RangeKind::kScatter, cost, row,
      [&](RowPart<index_t> part, const acc_t* acc, scalar_t* dst) {
        store_phase_major_row(g.stride[2], part.size, acc, dst);
      });
}

// The scatter ranges of whole output rows, for one launch.
template <typename index_t>
std::vector<InnerRange<index_t>> whole_row_ranges(const ConvGeometry<index_t>& g) {
  std::vector<InnerRange<index_t>> ranges(static_cast<size_t>(g.kernel[2]));
  scatter_ranges(g, RowPart<index_t>{0, g.out_size[2]}, ranges.data());
  return ranges;
}

// dispatch_launch for passes over a column buffer, which holds scalar_t or
// scalar_t's op-math type (see column_dtype_cpu): f(scalar_t(), cols, g)
// with cols the buffer's data, typed accordingly.
template <typename F>
void dispatch_launch_with_columns(at::ScalarType dtype, const at::Tensor& cols,
                                  const Geometry& geometry, const Config& config, const F& f) {
  dispatch_launch(dtype, geometry, config, [&](auto tag, const auto& g) {
    using scalar_t = decltype(tag);
    if (cols.scalar_type() == c10::CppTypeToScalarType<scalar_t>::value) {
      f(tag, cols.data_ptr<scalar_t>(), g);
    } else {
      f(tag, cols.data_ptr<at::opmath_type<scalar_t>>(), g);
    }
  });
}

// Parallel over output planes (n, oc, o0) and parts of their rows: each
// item is one part of a run of out1 rows.
template <typename acc_t, typename col_t, typename scalar_t, typename index_t>
void col2im_rows(const col_t* c, const scalar_t* b, scalar_t* y, int64_t numel,
                 const KernelGeometry<index_t>& g) {
  const int64_t rows = g.out_size[1];
  const RowParts parts(0, g.out_size[2], g.stride[2]);
  const int64_t grain =
      std::max<int64_t>(1, kStepsPerTask / (int64_t(g.taps()) * rows * parts.size));
  const int64_t planes = numel / (rows * parts.end);
  at::parallel_for(0, planes * parts.count, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(parts.size);
    PartRanges<index_t> ranges(g, RangeKind::kScatter);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t plane = item / parts.count;
      const RowPart<index_t> part = parts.part<index_t>(item % parts.count);
      const index_t o0 = static_cast<index_t>(plane % g.out_size[0]);
      const int64_t nc = plane / g.out_size[0];
      const index_t oc = static_cast<index_t>(nc % g.out_channels());
      const index_t n = static_cast<index_t>(nc / g.out_channels());
      for (index_t o1 = 0; o1 < rows; ++o1) {
        col2im_row(c, b, g, ranges.of(part), part, n, oc, o0, o1, acc.data());
        store_phase_major_row(g.stride[2], part.size, acc.data(),
                              y + (plane * rows + o1) * parts.end + part.begin);
      }
    }
  });
}

void col2im_cpu(const at::Tensor& cols, const std::optional<at::Tensor>& bias,
                const at::Tensor& out, const Geometry& geometry, const Config& config) {
  dispatch_launch_with_columns(out.scalar_type(), cols, geometry, config,
                               [&](auto tag, const auto* c, const auto& g) {
    using scalar_t = decltype(tag);
    using opmath_t = at::opmath_type<scalar_t>;
    using index_t = index_type<decltype(g)>;
    const scalar_t* b = bias_ptr<scalar_t>(bias);
    scalar_t* y = out.mutable_data_ptr<scalar_t>();
    if (element_bodies_requested(config)) {
      if constexpr (kReferencePaths) {
        for_each_element<index_t>(out.numel(), g.taps(), [&](index_t i) {
          y[i] = static_cast<scalar_t>(col2im_element<opmath_t>(c, b, g, i));
        });
        return;
      }
    }
    col2im_rows<opmath_t>(c, b, y, out.numel(), g);
  });
}

// Parallel over the (oc, outer row) rows the window reaches and parts of
// their reached columns (from the multiple of the stride at or below the
// first), each part loaded, added to and stored back.
template <typename acc_t, typename col_t, typename index_t>
void col2im_window_rows(const col_t* c, acc_t* y, int64_t channels,
                        const KernelGeometry<index_t>& g, const WindowReach<index_t>& reach) {
  const int64_t span = reach.span;
  const int64_t outer = int64_t(g.out_size[0]) * g.out_size[1];
  const int64_t length = g.out_size[2];
  const index_t s = g.stride[2];
  const RowParts parts(reach.column / s * s, reach.column + reach.columns, s);
  const int64_t grain = std::max<int64_t>(1, kStepsPerTask / (int64_t(g.taps()) * parts.size));
  at::parallel_for(0, channels * span * parts.count, grain, [&](int64_t b, int64_t e) {
    std::vector<acc_t> acc(parts.size);
    PartRanges<index_t> ranges(g, RangeKind::kScatter);
    for (int64_t i = b; i < e; ++i) {
      const int64_t row = i / parts.count;
      const RowPart<index_t> part = parts.part<index_t>(i % parts.count);
      const int64_t oc = row / span;
      const int64_t outer_row = reach.begin + row % span;
      acc_t* dst = y + (oc * outer + outer_row) * length + part.begin;
      load_phase_major_row(s, part.size, dst, acc.data());
      col2im_row_add(c, g, ranges.of(part), index_t(0), static_cast<index_t>(oc),
                     static_cast<index_t>(outer_row / g.out_size[1]),
                     static_cast<index_t>(outer_row % g.out_size[1]), acc.data());
      store_phase_major_row(s, part.size, acc.data(), dst);
    }
  });
}

// out holds op-math values: dispatch on the columns' dtype.
void col2im_window_cpu(const at::Tensor& cols, const at::Tensor& out, const Geometry& geometry,
                       const Config& config) {
  dispatch_launch(cols.scalar_type(), geometry, config, [&](auto tag, const auto& g) {
    using scalar_t = decltype(tag);
    using opmath_t = at::opmath_type<scalar_t>;
    using index_t = index_type<decltype(g)>;
    const scalar_t* c = cols.const_data_ptr<scalar_t>();
    opmath_t* y = out.mutable_data_ptr<opmath_t>();
    const auto reach = window_reach(g);
    if (element_bodies_requested(config)) {
      if constexpr (kReferencePaths) {
        for_each_element<index_t>(reach.numel, g.taps(), [&](index_t e) {
          col2im_window_element(c, y, g, reach, e);
        });
        return;
      }
    }
    if (reach.numel > 0) col2im_window_rows(c, y, out.size(0) * g.out_channels(), g, reach);
  });
}

void im2col_cpu(const at::Tensor& grad_output, const at::Tensor& cols, const Geometry& geometry,
                const Config& config) {
  dispatch_launch_with_columns(grad_output.scalar_type(), cols, geometry, config,
                               [&](auto tag, auto* c, const auto& g) {
    using scalar_t = decltype(tag);
    using col_t = std::remove_pointer_t<decltype(c)>;
    using index_t = index_type<decltype(g)>;
    const scalar_t* gy = grad_output.const_data_ptr<scalar_t>();
    if (element_bodies_requested(config)) {
      if constexpr (kReferencePaths) {
        for_each_element<index_t>(cols.numel(), 1, [&](index_t i) {
          c[i] = static_cast<col_t>(im2col_element(gy, g, i));
        });
        return;
      }
    }
    const int64_t length = g.in_size[2];
    const int64_t grain = std::max<int64_t>(1, kStepsPerTask / length);
    const auto ranges = whole_row_ranges(g);
    at::parallel_for(0, cols.numel() / length, grain, [&](int64_t begin, int64_t end) {
      im2col_rows(gy, g, ranges.data(), static_cast<index_t>(begin), static_cast<index_t>(end),
                  c + begin * length);
    });
  });
}

// Channels-last col2im (kernels/pixel_bodies.h): parallel over output
// pixels, each summed in an accumulator of all its channels and stored as
// one run.
void col2im_channels_last_cpu(const at::Tensor& cols, const std::optional<at::Tensor>& bias,
                              const at::Tensor& out, const Geometry& geometry,
                              const Config& config) {
  dispatch_launch_with_columns(out.scalar_type(), cols, geometry, config,
                               [&](auto tag, const auto* c, const auto& g) {
    using scalar_t = decltype(tag);
    using opmath_t = at::opmath_type<scalar_t>;
    using index_t = index_type<decltype(g)>;
    const scalar_t* b = bias_ptr<scalar_t>(bias);
    scalar_t* y = out.mutable_data_ptr<scalar_t>();
    const index_t channels = g.out_channels();
    const int64_t grain = std::max<int64_t>(1, kStepsPerTask / (int64_t(g.taps()) * channels));
    at::parallel_for(0, out.numel() / channels, grain, [&](int64_t begin, int64_t end) {
      std::vector<opmath_t> acc(channels);
      for (int64_t p = begin; p < end; ++p) {
        index_t n, position, o[kMaxSpatialDims];
        divmod(g.out_numel_divisor, static_cast<index_t>(p), n, position);
        unravel_spatial(position, g.out_size_divisor, o);
        col2im_pixel_with_bias(c, b, g, n, o, index_t(0), channels, acc.data());
        copy_row(y + p * channels, acc.data(), channels, index_t(1));
      }
    });
  });
}

// col2im from position-major columns into a contiguous output: parallel over
// output rows (n, o0, o1) of every channel, each summed pixel by pixel in
// an accumulator of (pixels, channels), then stored channel by channel.
void col2im_position_major_rows_cpu(const at::Tensor& cols, const std::optional<at::Tensor>& bias,
                                    const at::Tensor& out, const Geometry& geometry,
                                    const Config& config) {
  dispatch_launch_with_columns(out.scalar_type(), cols, geometry, config,
                               [&](auto tag, const auto* c, const auto& g) {
    using scalar_t = decltype(tag);
    using opmath_t = at::opmath_type<scalar_t>;
    using index_t = index_type<decltype(g)>;
    const scalar_t* b = bias_ptr<scalar_t>(bias);
    scalar_t* y = out.mutable_data_ptr<scalar_t>();
    const index_t channels = g.out_channels();
    const index_t length = g.out_size[2];
    const int64_t outer = int64_t(g.out_size[0]) * g.out_size[1];
    const int64_t plane = outer * length;
    const int64_t grain =
        std::max<int64_t>(1, kStepsPerTask / (int64_t(g.taps()) * channels * length));
    at::parallel_for(0, int64_t(g.batch) * outer, grain, [&](int64_t begin, int64_t end) {
      std::vector<opmath_t> acc(int64_t(length) * channels);
      for (int64_t row = begin; row < end; ++row) {
        const index_t n = static_cast<index_t>(row / outer);
        const int64_t outer_row = row % outer;
        index_t o[kMaxSpatialDims] = {static_cast<index_t>(outer_row / g.out_size[1]),
                                      static_cast<index_t>(outer_row % g.out_size[1]), 0};
        for (o[2] = 0; o[2] < length; ++o[2]) {
          col2im_pixel_with_bias(c, b, g, n, o, index_t(0), channels,
                                 acc.data() + int64_t(o[2]) * channels);
        }
        scalar_t* dst = y + int64_t(n) * channels * plane + outer_row * length;
        for (index_t oc = 0; oc < channels; ++oc) {
          copy_row(dst + oc * plane, acc.data() + oc, length, channels);
        }
      }
    });
  });
}

// Channels-last col2im_window: the pixels of the window's reach, each added
// to in place (out holds the op-math sums).
void col2im_window_channels_last_cpu(const at::Tensor& cols, const at::Tensor& out,
                                     const Geometry& geometry, const Config& config) {
  dispatch_launch(cols.scalar_type(), geometry, config, [&](auto tag, const auto& g) {
    using scalar_t = decltype(tag);
    using opmath_t = at::opmath_type<scalar_t>;
    using index_t = index_type<decltype(g)>;
    const scalar_t* c = cols.const_data_ptr<scalar_t>();
    opmath_t* y = out.mutable_data_ptr<opmath_t>();
    const auto reach = window_reach(g);
    const index_t channels = g.out_channels();
    const int64_t grain = std::max<int64_t>(1, kStepsPerTask / (int64_t(g.taps()) * channels));
    at::parallel_for(0, reach.numel / channels, grain, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        index_t row, column, o[kMaxSpatialDims];
        divmod(reach.columns_divisor, static_cast<index_t>(p), row, column);
        const index_t position = (reach.begin + row) * g.out_size[2] + reach.column + column;
        unravel_spatial(position, g.out_size_divisor, o);
        col2im_pixel(c, g, index_t(0), o, index_t(0), channels, y + int64_t(position) * channels);
      }
    });
  });
}

// Channels-last im2col: parallel over input positions, each writing its
// column row tap by tap.
void im2col_channels_last_cpu(const at::Tensor& grad_output, const at::Tensor& cols,
                              const Geometry& geometry, const Config& config) {
  dispatch_launch_with_columns(grad_output.scalar_type(), cols, geometry, config,
                               [&](auto tag, auto* c, const auto& g) {
    using scalar_t = decltype(tag);
    using index_t = index_type<decltype(g)>;
    const scalar_t* gy = grad_output.const_data_ptr<scalar_t>();
    const index_t channels = g.out_channels();
    const int64_t grain = std::max<int64_t>(1, kStepsPerTask / (int64_t(g.taps()) * channels));
    at::parallel_for(0, g.col_width(), grain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        index_t n, position, in[kMaxSpatialDims];
        divmod(g.in_numel_divisor, static_cast<index_t>(r), n, position);
        unravel_spatial(position, g.in_size_divisor, in);
        for (index_t tap = 0; tap < g.taps(); ++tap) {
          index_t k[kMaxSpatialDims];
          unravel_spatial(tap, g.kernel_divisor, k);
          im2col_pixel_tap(gy, g, n, position, in, tap, k, index_t(0), channels, c);
        }
      }
    });
  });
}

// The stride-2 register rows (register_rows.h), two planes at a time: items
// are (pair of planes, outer row), so that a pair's rows share their terms.
template <typename acc_t, typename index_t>
void direct_forward_interleaved_cpu(const acc_t* x, const acc_t* w, const acc_t* b,
                                    const KernelGeometry<index_t>& g, const PhaseTermTable& table,
                                    int64_t input_numel, acc_t* y, int64_t numel) {
  constexpr int kPlanesAtOnce = 2;
  const int64_t width = g.out_size[2];
  const int64_t outer_rows = int64_t(g.out_size[0]) * g.out_size[1];
  const int64_t planes = numel / (outer_rows * width);
  const int64_t plane_pairs = (planes + kPlanesAtOnce - 1) / kPlanesAtOnce;
  const int64_t cost = int64_t(g.taps()) * g.in_channels_per_group;
  const int64_t grain =
      std::max<int64_t>(1, kStepsPerTask / (cost * width * kPlanesAtOnce));
  const bool stream = int64_t(sizeof(acc_t)) * numel >= kStreamingStoreMinBytes;
  at::parallel_for(0, plane_pairs * outer_rows, grain, [&](int64_t begin, int64_t end) {
    PlaneOperands<acc_t> operands[kPlanesAtOnce];
    bool safe[kPlanesAtOnce];
    int64_t pair = -1;
    int count = 0;
    for (int64_t item = begin; item < end; ++item) {
      if (item / outer_rows != pair) {
        pair = item / outer_rows;
        count = static_cast<int>(std::min<int64_t>(kPlanesAtOnce, planes - pair * kPlanesAtOnce));
        for (int i = 0; i < count; ++i) {
          operands[i] = plane_operands(x, w, b, g, pair * kPlanesAtOnce + i);
          safe[i] = masked_loads_in_tensor(table, operands[i].x_offset, input_numel);
        }
      }
      const int64_t outer_row = item % outer_rows;
      acc_t* rows[kPlanesAtOnce];
      for (int i = 0; i < count; ++i) {
        rows[i] = y + ((pair * kPlanesAtOnce + i) * outer_rows + outer_row) * width;
      }
      if (count == kPlanesAtOnce && safe[0] && safe[1]) {
        direct_forward_rows_interleaved<kPlanesAtOnce>(operands, true, g, table, outer_row,
                                                       stream, rows);
        continue;
      }
      for (int i = 0; i < count; ++i) {
        direct_forward_rows_interleaved<1>(operands + i, safe[i], g, table, outer_row, stream,
                                           rows + i);
      }
    }
    if (stream) stream_fence();
  });
}

void direct_forward_cpu(const at::Tensor& input, const at::Tensor& weight,
                        const std::optional<at::Tensor>& bias, const at::Tensor& out,
                        const Geometry& geometry, const Config& config) {
  dispatch_launch(out.scalar_type(), geometry, config, [&](auto tag, const auto& g) {
    using scalar_t = decltype(tag);
    using opmath_t = at::opmath_type<scalar_t>;
    using index_t = index_type<decltype(g)>;
    const scalar_t* x = input.const_data_ptr<scalar_t>();
    const scalar_t* w = weight.const_data_ptr<scalar_t>();
    const scalar_t* b = bias_ptr<scalar_t>(bias);
    scalar_t* y = out.mutable_data_ptr<scalar_t>();
    const int64_t cost = g.taps() * g.in_channels_per_group;
    if (element_bodies_requested(config)) {
      if constexpr (kReferencePaths) {
        for_each_element<index_t>(out.numel(), cost, [&](index_t i) {
          y[i] = static_cast<scalar_t>(direct_forward_element<opmath_t>(x, w, b, g, i));
        });
        return;
      }
    }
    if constexpr (std::is_same_v<scalar_t, opmath_t>) {
      if (forward_rows_fit_registers(g, RowParts(0, g.out_size[2], g.stride[2]).count)) {
        const PhaseTermTable table =
            make_phase_term_table<opmath_t>(g, whole_row_ranges(g).data());
        if (forward_rows_interleave_in_registers(g, kRowLanes<opmath_t>)) {
          direct_forward_interleaved_cpu(x, w, b, g, table, input.numel(), y, out.numel());
          return;
        }
        for_each_scattered_row_part<index_t, opmath_t>(
            y, out.numel(), g, cost,
            [&](index_t r, RowPart<index_t>, const InnerRange<index_t>*, opmath_t* acc) {
              direct_forward_row_in_registers(x, w, b, g, table, r, acc);
            });
        return;
      }
    }
    for_each_scattered_row_part<index_t, opmath_t>(
        y, out.numel(), g, cost,
        [&](index_t r, RowPart<index_t> part, const InnerRange<index_t>* ranges, opmath_t* acc) {
          direct_forward_row(x, w, b, g, ranges, part, r, acc);
        });
  });
}

void direct_input_grad_cpu(const at::Tensor& grad_output, const at::Tensor& weight,
                           const at::Tensor& grad_input, const Geometry& geometry,
                           const Config& config) {
  dispatch_launch(grad_input.scalar_type(), geometry, config, [&](auto tag, const auto& g) {
    using scalar_t = decltype(tag);
    using opmath_t = at::opmath_type<scalar_t>;
    using index_t = index_type<decltype(g)>;
    const scalar_t* gy = grad_output.const_data_ptr<scalar_t>();
    const scalar_t* w = weight.const_data_ptr<scalar_t>();
    scalar_t* gx = grad_input.mutable_data_ptr<scalar_t>();
    const int64_t cost = g.taps() * g.out_channels_per_group;
    if (element_bodies_requested(config)) {
      if constexpr (kReferencePaths) {
        for_each_element<index_t>(grad_input.numel(), cost, [&](index_t i) {
          gx[i] = static_cast<scalar_t>(direct_input_grad_element<opmath_t>(gy, w, g, i));
        });
        return;
      }
    }
    if constexpr (std::is_same_v<scalar_t, opmath_t>) {
      if (input_grad_fits_lanes(g)) {
        direct_input_grad_in_lanes(gy, w, g, gx);
        return;
      }
    }
    const RowParts parts(0, g.in_size[2], 1);
    for_each_row_part<index_t, opmath_t>(
        gx, grad_input.numel() / parts.end, parts, g, RangeKind::kGather, cost,
        [&](index_t r, RowPart<index_t> part, const InnerRange<index_t>* ranges, opmath_t* acc) {
          direct_input_grad_row(gy, w, g, ranges, part, r, acc);
        },
        [&](RowPart<index_t> part, const opmath_t* acc, scalar_t* dst) {
          copy_row(dst, acc, part.size, index_t(1));
        });
  });
}

void direct_weight_grad_cpu(const at::Tensor& input, const at::Tensor& grad_output,
                            const at::Tensor& grad_weight, const Geometry& geometry,
                            const Config& config) {
  dispatch_launch(grad_weight.scalar_type(), geometry, config, [&](auto tag, const auto& g) {
    using scalar_t = decltype(tag);
    using opmath_t = at::opmath_type<scalar_t>;
    using index_t = index_type<decltype(g)>;
    const scalar_t* x = input.const_data_ptr<scalar_t>();
    const scalar_t* gy = grad_output.const_data_ptr<scalar_t>();
    scalar_t* gw = grad_weight.mutable_data_ptr<scalar_t>();
    const index_t positions = g.batch * g.in_numel();
    if (element_bodies_requested(config)) {
      if constexpr (kReferencePaths) {
        for_each_element<index_t>(grad_weight.numel(), positions, [&](index_t i) {
          gw[i] = static_cast<scalar_t>(direct_weight_grad_partial<opmath_t, kWeightGradLanes>(
              x, gy, g, i, index_t(0), positions, index_t(1)));
        });
        return;
      }
    }
    if constexpr (std::is_same_v<scalar_t, opmath_t>) {
      if (weight_grad_fits_lanes(g)) {
        direct_weight_grad_in_lanes(x, gy, g, gw);
        return;
      }
    }
    for_each_element<index_t>(grad_weight.numel(), positions, [&](index_t i) {
      gw[i] = static_cast<scalar_t>(direct_weight_grad_by_rows<opmath_t>(x, gy, g, i));
    });
  });
}

// Both gradients: depthwise float32 and float64 layers from one staging of
// each grad_output plane (staged_gradients.h), the others one after the
// other.
void direct_backward_cpu(const at::Tensor& grad_output, const at::Tensor& input,
                         const at::Tensor& weight, const at::Tensor& grad_input,
                         const at::Tensor& grad_weight, const Geometry& geometry,
                         const Config& config) {
  bool done = false;
  if (!element_bodies_requested(config)) {
    dispatch_launch(grad_input.scalar_type(), geometry, config, [&](auto tag, const auto& g) {
      using scalar_t = decltype(tag);
      if constexpr (std::is_same_v<scalar_t, at::opmath_type<scalar_t>>) {
        if (backward_fits_lanes(g)) {
          direct_backward_in_lanes(input.const_data_ptr<scalar_t>(),
                                   grad_output.const_data_ptr<scalar_t>(),
                                   weight.const_data_ptr<scalar_t>(), g,
                                   grad_input.mutable_data_ptr<scalar_t>(),
                                   grad_weight.mutable_data_ptr<scalar_t>());
          done = true;
        }
      }
    });
  }
  if (done) return;
  direct_input_grad_cpu(grad_output, weight, grad_input, geometry, config);
  direct_weight_grad_cpu(input, grad_output, grad_weight, geometry, config);
}

// The implicit GEMMs (algorithm "phase"): the scalar tiles, in parallel
// over tiles and split-K slices, or a forced tensor-core variant through the
// emulation of its CUDA kernel. Split-K follows the same rule as on the GPU,
// so the CPU suite runs the slices and their reduction too.
template <int TM, int TN, typename acc_t, typename View, typename Tile>
void run_gemm_tiles(const View& v, int64_t depth_step, int64_t steps_per_depth, const Tile& tile) {
  const int64_t outputs = int64_t(v.rows()) * v.cols() * v.g.groups;
  const SplitK split =
      split_k_for(tile_count<TM, TN>(v, SplitK{}), outputs, v.depth(), depth_step);
  at::Tensor workspace;
  acc_t* partial = nullptr;
  if (split.slices > 1) {
    workspace = at::empty({split.slices * outputs},
                          at::TensorOptions().dtype(c10::CppTypeToScalarType<acc_t>::value));
    partial = workspace.mutable_data_ptr<acc_t>();
  }
  const TileStore<View, acc_t> store{v, partial};
  const int64_t cost = int64_t(TM) * TN * std::max<int64_t>(split.slice_depth, 1) * steps_per_depth;
  at::parallel_for(0, tile_count<TM, TN>(v, split), std::max<int64_t>(1, kStepsPerTask / cost),
                   [&](int64_t begin, int64_t end) {
                     for (int64_t i = begin; i < end; ++i) {
                       tile(tile_coord<TM, TN>(v, split, i), store);
                     }
                   });
  if (partial == nullptr) return;
  at::parallel_for(0, outputs, std::max<int64_t>(1, kStepsPerTask / split.slices),
                   [&](int64_t begin, int64_t end) {
                     for (int64_t e = begin; e < end; ++e) {
                       split_k_reduce_element(v, partial, split.slices, e);
                     }
                   });
}

template <typename scalar_t, typename View>
void implicit_gemm_cpu(const View& v, const Config& config) {
  if constexpr (kReferencePaths &&
                (std::is_same_v<scalar_t, c10::Half> || std::is_same_v<scalar_t, c10::BFloat16>)) {
    // The emulation steps through every thread of a block: many times the
    // scalar tile's work per product.
    constexpr int64_t kEmulationSteps = 16;
    const bool emulated = with_mma_shape(config.tile_variant, [&](auto shape) {
      using Shape = decltype(shape);
      run_gemm_tiles<Shape::BM, Shape::BN, float>(
          v, Shape::BK, kEmulationSteps, [&](const auto& t, const auto& store) {
            mma_gemm_tile_emulated<Shape, scalar_t>(v, t, store);
          });
    });
    if (emulated) return;
  }
  using acc_t = at::opmath_type<scalar_t>;
  run_gemm_tiles<kScalarTileRows, kScalarTileCols, acc_t>(
      v, 1, 1, [&](const auto& t, const auto& store) { scalar_gemm_tile<acc_t>(v, t, store); });
}

void phase_forward_cpu(const at::Tensor& input, const at::Tensor& weight,
                       const std::optional<at::Tensor>& bias, const at::Tensor& out,
                       const Geometry& geometry, const Config& config) {
  dispatch_launch(out.scalar_type(), geometry, config, [&](auto tag, const auto& g) {
    using scalar_t = decltype(tag);
    if constexpr (std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, double>) {
      if (blocked_tiles_allowed(config)) {
        // The tiles read the input channels-last: a view where it is, else
        // a copy (N, in..., C_in).
        const at::Tensor x = input.movedim(1, -1).contiguous();
        const auto y = layout_of<int64_t>(out);
        if (blocked::forward(x.const_data_ptr<scalar_t>(), weight.const_data_ptr<scalar_t>(),
                             bias_ptr<scalar_t>(bias), out.mutable_data_ptr<scalar_t>(),
                             y.channel, y.step, g)) {
          return;
        }
      }
    }
    for_each_forward_gemm<scalar_t>(input, weight, bias, out, g, [&](const auto& view) {
      implicit_gemm_cpu<scalar_t>(view, config);
    });
  });
}

// Whether torch's BLAS runs its AVX2 kernels whatever the processor has:
// MKL on an AMD processor (Zen 3 has no wider ones; on Zen 5, with AVX-512,
// float32 torch.mm ran at 106-190 GFLOP/s, AVX2's rate; bench/NOTES.md).
bool blas_runs_avx2_kernels() {
#if defined(__x86_64__) || defined(_M_X64)
  static const bool amd = __builtin_cpu_is("amd");
  return amd;
#else
  return false;
#endif
}

// Whether this variant's blocked tiles outrun torch's BLAS: AVX-512's tiles
// where the BLAS runs AVX2 (Zen 5, 2 cores: the tiles about 300 GFLOP/s).
// Intel's processors keep MKL, which measured faster than the tiles there
// (sgemm 431 GFLOP/s against about 345 on a Xeon with AVX-512).
bool tiles_outrun_blas() {
  return blocked::kVectorBytes >= 64 && blas_runs_avx2_kernels();
}

// Whether this variant's tiles run at the BLAS's rate: AVX2's tiles where
// the BLAS runs AVX2 (Zen 3, 2 cores, GFLOP/s tiles against MKL: float32
// 1024^3 176 / 182, 2048^3 169 / 185; float64 77 / 70, 81 / 80).
bool tiles_match_blas() {
  return blocked::kVectorBytes == 32 && blas_runs_avx2_kernels();
}

// The rule of algorithm "auto" for the blocked tiles, from the forwards of
// the benchmark's layers on a 2-core Xeon with AVX-512 (bench/NOTES.md),
// ms, tiles against GEMM + col2im:
// - channels-last layers, whose inputs the tiles read in place and whose
//   outputs they store whole pixels of: U-Net 256->128 44 against 46 in
//   float32, 80 against 95 in float64; decoder 9.1 against 10.0;
// - strides of 4 or more, whose many phases each take few taps while
//   col2im adds overlapping windows: the k16 s8 vocoder 530 against 905,
//   FCN k16 s8 2.1 against 2.2;
// - contiguous layers of short output lines (32 or fewer), where col2im
//   adds a few values per tap and row, with at most 128 input channels:
//   DCGAN 128->64 16.0 against 19.4;
// - but not other contiguous layers, which the tiles copy channels-last
//   and store through a transposition (decoder 10.3 against 8.8, U-Net
//   256->128 51 against 47, DCGAN 512->256 20 against 16, DCGAN 256->128
//   13.7 against 13.5, FCN k4 s2 with 21 channels 0.57 against 0.50), nor output
//   channels that fill less than 60% of the tiles' panels (grouped 128->128
//   in 8 groups, 16 of 32 columns: 22 against 18; 3 channels: 5x slower);
// - nor the baseline variant, without FMA and with 4-wide vectors.
// Where MKL is the slower (tiles_outrun_blas: an AMD Zen 5 with AVX-512,
// where the GEMM path runs the blocked GEMM), contiguous layers whose taps
// overlap take the tiles up to 64-wide output lines, at any channel count:
// forward ms, tiles against blocked GEMM + col2im, DCGAN 512->256 16.0
// against 22.2, DCGAN 256->128 12.4 against 16.2, VAE 512->256 27.0 against
// 36.4, decoder 11.0 against 13.6; but not 128-wide lines (U-Net 256->128
// 72.8 against 60.8, VAE 128->64 11.2 against 10.4) nor k = s, whose
// col2im adds nothing (3-D U-Net 118 against 107).
// Where the tiles match the BLAS (tiles_match_blas: AVX2's tiles on an AMD
// Zen 3), the same overlapping layers take them up to 32-wide lines in
// float32 and 64-wide ones in float64, at any channel count: forward ms,
// tiles against MKL + col2im (Zen 3, three alternating runs), float32
// DCGAN 512->256 31.2, 31.5, 31.2 against 33.7, 31.6, 34.0, VAE 512->256
// 54.2, 58.4, 58.3 against 62.7, 61.4, 61.0; but 64-wide lines, decoder
// 22.1, 19.6, 19.2 against 20.0, 18.4, 17.2; float64 decoder 34.3, 33.7,
// 35.8 against 41.0, 52.6, 37.4, VAE 256->128 117.9, 127.3 against 141.0,
// 152.1, DCGAN 256->128 53.3, 51.8, 55.2 against 59.1, 56.9, 63.3; but
// 128-wide lines, VAE 128->64 46.7 against 38.6.
// There, layers of at most 32 input channels per group and 64 taps (the
// blocked gradients' rule) take the tiles at any line width: their GEMMs
// are only as deep as the channels, and their columns (taps x C_out per
// input position) a large workspace against the input. Forward ms, GEMM +
// col2im against tiles, alternating with PyTorch's calls as the benchmark
// does: the grouped 128->128 layer in 8 groups at batch 2 4.77, 4.93
// against 4.07, 4.18; batch 8 18.0 against 14.0; batch 16 32.3 against
// 26.0; FCN k4 s2 (21 channels) 2.10 against 1.29; float64 grouped batch 2
// 8.26 against 7.87, FCN 1.56 against 1.70. Alternating with each other
// alone, with the columns' pages kept warm from call to call, they draw:
// grouped batch 2 2.68 against 2.35, batch 8 10.7 against 11.6, FCN 1.20
// against 1.26, 32->16 k4 s2 3.08 against 3.11, 32->32 k3 s1 6.90 against
// 4.77. The grouped layer's forward+backward peak at batch 2 falls from
// 12.1 MB (the forward's 8 MiB of columns) to 7.2.
// Whether `columns` output channels fill 60% of the tiles' panels of
// `dtype` (float32 or float64): the tiles compute whole panels.
bool fills_panels(int64_t columns, at::ScalarType dtype) {
  const int64_t panel =
      dtype == at::kFloat ? blocked::kTileCols<float> : blocked::kTileCols<double>;
  const int64_t panels = (columns + panel - 1) / panel;
  return 10 * columns >= 6 * panels * panel;
}

bool prefers_phase_forward_cpu(const Geometry& g, at::ScalarType dtype, bool channels_last) {
  if (dtype != at::kFloat && dtype != at::kDouble) return false;
  if (blocked::kVectorBytes < 32) return false;
  const int64_t cin = g.in_channels_per_group;
  const int64_t cout = g.out_channels_per_group;
  if (channels_last) return cin >= 32 && cout >= 32;
  const int64_t stride = *std::max_element(g.stride, g.stride + kMaxSpatialDims);
  if (stride >= 4) return cin >= 16 && cout >= 16;
  if (!fills_panels(cout, dtype)) return false;
  if (tiles_match_blas() && cin <= 32 && g.taps() <= 64) return true;
  const int64_t line = g.out_size[kMaxSpatialDims - 1];
  bool overlapping = false;
  for (int j = 0; j < kMaxSpatialDims; ++j) {
    overlapping = overlapping || g.dilation[j] * (g.kernel[j] - 1) + 1 > g.stride[j];
  }
  if (tiles_outrun_blas()) return line <= 64 && overlapping;
  if (tiles_match_blas()) return overlapping && line <= (dtype == at::kDouble ? 64 : 32);
  return line <= 32 && cin <= 128;
}

// The rule of algorithm "auto" for the blocked gradients: layers of 2 to 32
// input channels per group (one is the direct path's), where im2col + GEMM
// runs GEMMs of so few rows that the column buffer and the GEMM's packing
// cost more than the products, with output channels that fill 60% of the
// tiles' panels. Zen 3, 2 cores, backward op ms, blocked against im2col +
// GEMMs (medians of 80 calls, one process): float32 grouped 128->128 in 8
// groups at batch 2 2.42 / 3.66, batch 8 10.9 / 14.9, batch 16 21.1 / 30.7,
// channels-last batch 2 3.6 / 4.4; 2 groups of 32 at batch 16 21.7 / 26.1;
// 4 groups of 16, k3 s1, 3.5 / 6.5; FCN k4 s2 (21 channels) 1.49 / 1.66;
// float64 grouped batch 2 6.5 / 9.4, FCN 2.4 / 3.3; 64 taps (k8 s4, 21
// channels) 1.78 / 1.91, 36 taps (k6, 32 channels) 4.3 / 6.9. But not
// deeper layers, whose GEMMs run at the BLAS's full rate: DCGAN 256->128
// 73.7 / 58.8, VAE 256->128 137 / 130, U-Net 256->128 232 / 158; nor 3
// output channels (a fifth of a panel) 26.1 / 13.1; nor FCN k16 s8 (256
// taps: the input gradient's depth blocks of one channel each move every
// tile's pointers, the weight gradient's calls sum 16 inputs each) 10.0 /
// 8.6.
bool prefers_phase_gradients_cpu(const Geometry& g, at::ScalarType dtype, bool) {
  if (dtype != at::kFloat && dtype != at::kDouble) return false;
  if (blocked::kVectorBytes < 32) return false;
  const int64_t cin = g.in_channels_per_group;
  const int64_t cout = g.out_channels_per_group;
  if (cin < 2 || cin > 32 || g.taps() > 64) return false;
  return fills_panels(cout, dtype);
}

// c = [c +] a · b through the blocked tiles (cpu/blocked_gemm.h), whose
// output columns must be contiguous: where c's rows are instead, it
// computes cᵀ = bᵀ · aᵀ, and otherwise sums into a contiguous copy.
void blocked_gemm_cpu(const at::Tensor& a, const at::Tensor& b, const at::Tensor& c,
                      bool accumulate) {
  TORCH_INTERNAL_ASSERT(a.dim() == 3 && b.dim() == 3 && c.dim() == 3);
  if (c.stride(2) != 1 && c.size(2) > 1) {
    if (c.stride(1) == 1 || c.size(1) == 1) {
      blocked_gemm_cpu(b.transpose(1, 2), a.transpose(1, 2), c.transpose(1, 2), accumulate);
      return;
    }
    const at::Tensor sums = accumulate ? c.contiguous() : at::empty(c.sizes(), c.options());
    blocked_gemm_cpu(a, b, sums, accumulate);
    c.copy_(sums);
    return;
  }
  AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), "blocked_gemm_cpu", [&] {
    using M = blocked::StridedMatrices<const scalar_t>;
    const M a_view{a.const_data_ptr<scalar_t>(), a.stride(0), a.stride(1), a.stride(2)};
    const M b_view{b.const_data_ptr<scalar_t>(), b.stride(0), b.stride(1), b.stride(2)};
    const blocked::StridedMatrices<scalar_t> c_view{c.mutable_data_ptr<scalar_t>(), c.stride(0),
                                                    c.stride(1), 1};
    blocked::gemm<scalar_t>(c.size(0), c.size(1), c.size(2), a.size(2), a_view, b_view, c_view,
                            accumulate);
  });
}

// Whether cpu_gemm "auto" takes the blocked GEMM: where the tiles outrun
// the BLAS, for products of 48 or more rows and columns. Zen 5, 2 cores,
// float32, ms blocked against MKL (bench/NOTES.md): 1024^3 6.8 against
// 11.4, the VAE 512->256 forward GEMM 29.0 against 44.7, DCGAN 256->128's
// input and weight gradients 16.0 against 25.0 and 19.9 against 24.0; but
// 16 rows (grouped 128->128 in 8 groups: each group's input and weight
// gradient) 18.1 against 16.8 and 16.3 against 10.5, the tiles' 12 rows
// leaving a third of the second tile idle.
bool prefers_blocked_gemm_cpu(int64_t m, int64_t n, int64_t) {
  return tiles_outrun_blas() && m >= 48 && n >= 48;
}

// AMD's processor families from 26 (Zen 5) execute AVX-512 in full-width
// units; family 25 (Zen 4) splits each 512-bit operation into two 256-bit
// halves, the width of MKL's AVX2 kernels.
bool avx512_full_width() {
#if defined(__x86_64__) || defined(_M_X64)
  static const bool full = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
    const unsigned base = (eax >> 8) & 0xf;
    const unsigned family = base == 0xf ? base + ((eax >> 20) & 0xff) : base;
    return family >= 26;
  }();
  return full;
#else
  return false;
#endif
}

// The gradients' products where the tiles outrun the BLAS and AVX-512 runs
// at full width. On a Zen 4 (family 25) MKL's AVX2 kernels were the faster
// in the backward: forward+backward ms, blocked GEMM against MKL, medians of
// 12 alternating calls, decoder 63.3 / 50.4, VAE 256->128 197.6 / 161.1,
// DCGAN 256->128 78.6 / 73.8, grouped batch 8 27.6 / 26.3, while the
// forward's products were as fast or faster blocked (VAE 256->128 50.3 /
// 59.2, decoder 16.4 / 17.6; bench/NOTES.md). On a Zen 5 the blocked GEMM
// won in both.
bool prefers_blocked_gradient_gemm_cpu(int64_t m, int64_t n, int64_t k) {
  return prefers_blocked_gemm_cpu(m, n, k) && avx512_full_width();
}

// Where AVX-512 runs in halves (Zen 4), the gradients' float32 products
// take oneDNN's matmul, which reached 93-95% of the processor's peak
// (bench/roofline.py: 215-217 GFLOP/s on 2 cores) against 66-79% for
// MKL's AVX2 kernels and 55-72% for the tiles: the backward of the VAE and
// decoder layers 10-20% faster (bench/NOTES.md).
bool prefers_onednn_gradient_gemm_cpu(int64_t m, int64_t n, int64_t k) {
  return prefers_blocked_gemm_cpu(m, n, k) && !avx512_full_width();
}

// grad_output (N, C_out, out...), contiguous or channels-last, as the
// blocked gradients read it: (N, out..., groups, padded) with each group's
// channels zero-padded to `padded` (whole column panels of the tiles), in
// `workspace` (allocated at the first call that needs it, `elements` long),
// or a view where grad_output is channels-last already and needs no
// padding.
template <typename T>
at::Tensor padded_pixels(const at::Tensor& grad_output, int64_t groups, int64_t padded,
                         at::Tensor& workspace, int64_t elements) {
  const int64_t batch = grad_output.size(0);
  const int64_t channels = grad_output.size(1);
  const int64_t per_group = channels / groups;
  const int64_t positions = grad_output.numel() / std::max<int64_t>(batch * channels, 1);
  if (!grad_output.is_contiguous() && padded == per_group) {
    return grad_output.movedim(1, -1).contiguous().view({batch, positions, groups, per_group});
  }
  if (!workspace.defined()) workspace = at::empty({elements}, grad_output.options());
  const at::Tensor pixels = workspace.narrow(0, 0, batch * positions * groups * padded)
                                .view({batch, positions, groups, padded});
  if (!grad_output.is_contiguous()) {
    pixels.narrow(3, per_group, padded - per_group).zero_();
    pixels.narrow(3, 0, per_group).copy_(
        grad_output.movedim(1, -1).reshape({batch, positions, groups, per_group}));
    return pixels;
  }
  // A contiguous grad_output, transposed in blocks of vectors (ATen's copy
  // of the permuted view took 21% of a grouped layer's input gradient, more
  // than the tiles: `perf`, 128 channels, 64x64; scalar stores, 11%).
  constexpr int64_t kPositionsPerTask = 64;
  const int64_t blocks = (positions + kPositionsPerTask - 1) / kPositionsPerTask;
  const T* src = grad_output.const_data_ptr<T>();
  T* dst = pixels.mutable_data_ptr<T>();
  at::parallel_for(0, batch * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / blocks;
      const int64_t p0 = item % blocks * kPositionsPerTask;
      blocked::transpose_to_pixels(src + n * channels * positions, positions, groups, per_group,
                                   padded, p0, std::min(p0 + kPositionsPerTask, positions),
                                   dst + n * positions * groups * padded);
    }
  });
  return pixels;
}

// Whether a call of this dtype runs the blocked gradients.
template <typename scalar_t>
constexpr bool has_blocked_tiles() {
  return std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, double>;
}

// The gradients asked for (either may be undefined) through the blocked
// tiles, in chunks of samples whose padded grad_output fits one column
// chunk (and half of grad_output), all in one buffer: a fresh copy of a
// whole large grad_output paid its page faults on every call (the grouped
// layer at batch 16, 32 MiB: each gradient alone 28-33 ms, against 19
// through im2col and GEMMs).
// False, with nothing written, where the input gradient is asked for and
// the weight is not finite (see blocked::input_gradient).
template <typename scalar_t, typename G>
bool blocked_backward(const at::Tensor& grad_output, const at::Tensor& input,
                      const at::Tensor& weight, const at::Tensor& grad_input,
                      const at::Tensor& grad_weight, const G& g) {
  constexpr int64_t NR = blocked::kTileCols<scalar_t>;
  const int64_t padded = (g.out_channels_per_group + NR - 1) / NR * NR;
  blocked::PackedWeight<scalar_t> packed;
  if (grad_input.defined()) {
    packed = blocked::pack_input_grad_weight(weight.const_data_ptr<scalar_t>(), g);
    if (!packed.finite) return false;
  }
  const int64_t per_sample = int64_t(g.out_numel()) * g.groups * padded;
  // A chunk's copy also holds at most half of grad_output's elements, which
  // halves the workspace of small layers (FCN k4 s2 at batch 4: 2 MiB of
  // padded pixels to 1) and runs the grouped layer at batch 2 one sample
  // per chunk. The backward op alone, ms, whole batch against halves (one
  // process, alternating): FCN 1.53 / 1.59, 1.82 / 1.99, 2.31 / 2.34; the
  // grouped layer at batch 2 3.22 / 2.79.
  const int64_t chunk_elements =
      std::min<int64_t>(kColumnChunkBytes / int64_t(sizeof(scalar_t)),
                        int64_t(g.batch) * g.out_numel() * g.groups * g.out_channels_per_group / 2);
  const int64_t step = std::clamp<int64_t>(chunk_elements / std::max<int64_t>(per_sample, 1), 1,
                                           std::max<int64_t>(g.batch, 1));
  const at::Tensor x = !grad_weight.defined() || input.is_contiguous()
                           ? input
                           : input.contiguous(input.suggest_memory_format());
  at::Tensor workspace;
  for (int64_t n0 = 0; n0 < g.batch; n0 += step) {
    G chunk = g;
    chunk.batch = std::min<int64_t>(step, g.batch - n0);
    const at::Tensor pixels = padded_pixels<scalar_t>(grad_output.narrow(0, n0, chunk.batch),
                                                      g.groups, padded, workspace,
                                                      step * per_sample);
    const scalar_t* gy = pixels.const_data_ptr<scalar_t>();
    if (grad_input.defined()) {
      const at::Tensor gx = grad_input.narrow(0, n0, chunk.batch);
      const auto layout = layout_of<int64_t>(gx);
      blocked::input_gradient(gy, g.groups * padded, padded, packed,
                              gx.mutable_data_ptr<scalar_t>(), layout.channel, layout.step, chunk);
    }
    if (grad_weight.defined()) {
      const at::Tensor xn = x.narrow(0, n0, chunk.batch);
      const auto layout = layout_of<int64_t>(xn);
      blocked::weight_gradient(xn.const_data_ptr<scalar_t>(), layout.channel, layout.step, gy,
                               g.groups * padded, padded,
                               grad_weight.mutable_data_ptr<scalar_t>(), n0 > 0, chunk);
    }
  }
  return true;
}

// Both gradients of the phase path (either may be undefined: not asked
// for): through the blocked tiles for float32 and float64 where the tile
// variant allows them, else the scalar tiles.
void phase_backward_cpu(const at::Tensor& grad_output, const at::Tensor& input,
                        const at::Tensor& weight, const at::Tensor& grad_input,
                        const at::Tensor& grad_weight, const Geometry& geometry,
                        const Config& config) {
  dispatch_launch(grad_output.scalar_type(), geometry, config, [&](auto tag, const auto& g) {
    using scalar_t = decltype(tag);
    if constexpr (has_blocked_tiles<scalar_t>()) {
      if (blocked_tiles_allowed(config) &&
          blocked_backward<scalar_t>(grad_output, input, weight, grad_input, grad_weight, g)) {
        return;
      }
    }
    if (grad_input.defined()) {
      implicit_gemm_cpu<scalar_t>(input_grad_gemm<scalar_t>(grad_output, weight, grad_input, g),
                                  config);
    }
    if (grad_weight.defined()) {
      implicit_gemm_cpu<scalar_t>(weight_grad_gemm<scalar_t>(input, grad_output, grad_weight, g),
                                  config);
    }
  });
}

void implicit_input_grad_cpu(const at::Tensor& grad_output, const at::Tensor& weight,
                             const at::Tensor& grad_input, const Geometry& geometry,
                             const Config& config) {
  phase_backward_cpu(grad_output, at::Tensor(), weight, grad_input, at::Tensor(), geometry,
                     config);
}

void implicit_weight_grad_cpu(const at::Tensor& input, const at::Tensor& grad_output,
                              const at::Tensor& grad_weight, const Geometry& geometry,
                              const Config& config) {
  phase_backward_cpu(grad_output, input, at::Tensor(), at::Tensor(), grad_weight, geometry,
                     config);
}

// Sums n values in the op-math dtype in a fixed order: eight interleaved
// partial sums (which the compiler can keep in vector registers), then
// their total. ATen's own bfloat16 sum took 16x its float32 time on the
// depthwise benchmark layer's output (bench/NOTES.md).
template <typename acc_t, typename scalar_t>
acc_t sum_of(const scalar_t* __restrict__ x, int64_t n) {
  constexpr int kLanes = 8;
  acc_t partial[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) partial[j] += static_cast<acc_t>(x[i + j]);
  }
  for (int j = 0; i < n; ++i, ++j) partial[j] += static_cast<acc_t>(x[i]);
  acc_t total(0);
  for (int j = 0; j < kLanes; ++j) total += partial[j];
  return total;
}

// Channels-last grad_output, (N, positions, channels) in memory: the same
// sums in the same order as sum_of over each channel's plane, so the same
// bits as a contiguous grad_output, but reading whole runs of channels. A
// task takes one sample and a block of channels, with the eight interleaved
// partial sums as eight rows of accumulators; the samples' sums are added
// in sample order.
template <typename opmath_t, typename scalar_t>
void bias_grad_channels_last(const scalar_t* gy, int64_t batch, int64_t positions,
                             int64_t channels, scalar_t* b) {
  constexpr int kLanes = 8;
  constexpr int64_t kChannelBlock = 64;
  const int64_t blocks = (channels + kChannelBlock - 1) / kChannelBlock;
  std::vector<opmath_t> per_sample(batch * channels);
  const int64_t grain = std::max<int64_t>(1, kStepsPerTask / std::max<int64_t>(positions * kChannelBlock, 1));
  at::parallel_for(0, batch * blocks, grain, [&](int64_t begin, int64_t end) {
    std::vector<opmath_t> partial(kLanes * kChannelBlock);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks;
      const int64_t c0 = task % blocks * kChannelBlock;
      const int64_t count = std::min(kChannelBlock, channels - c0);
      std::fill(partial.begin(), partial.end(), opmath_t(0));
      const scalar_t* sample = gy + n * positions * channels + c0;
      for (int64_t i = 0; i < positions; ++i) {
        add_row(partial.data() + (i % kLanes) * kChannelBlock, sample + i * channels, count);
      }
      for (int64_t c = 0; c < count; ++c) {
        opmath_t total(0);
        for (int j = 0; j < kLanes; ++j) total += partial[j * kChannelBlock + c];
        per_sample[n * channels + c0 + c] = total;
      }
    }
  });
  for (int64_t c = 0; c < channels; ++c) {
    opmath_t total(0);
    for (int64_t n = 0; n < batch; ++n) total += per_sample[n * channels + c];
    b[c] = static_cast<scalar_t>(total);
  }
}

// Parallel over channels; each channel's sum runs in one fixed order.
void bias_grad_cpu(const at::Tensor& grad_output, const at::Tensor& out) {
  TORCH_TCONV_DISPATCH(grad_output.scalar_type(), "bias_grad_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const scalar_t* gy = grad_output.const_data_ptr<scalar_t>();
    scalar_t* b = out.mutable_data_ptr<scalar_t>();
    const int64_t batch = grad_output.size(0);
    const int64_t channels = grad_output.size(1);
    const int64_t plane = batch * channels == 0 ? 0 : grad_output.numel() / (batch * channels);
    if (!grad_output.is_contiguous()) {
      bias_grad_channels_last<opmath_t>(gy, batch, plane, channels, b);
      return;
    }
    const int64_t grain = std::max<int64_t>(1, kStepsPerTask / std::max<int64_t>(batch * plane, 1));
    at::parallel_for(0, channels, grain, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        opmath_t total(0);
        for (int64_t n = 0; n < batch; ++n) {
          total += sum_of<opmath_t>(gy + (n * channels + c) * plane, plane);
        }
        b[c] = static_cast<scalar_t>(total);
      }
    });
  });
}

// float16/bfloat16 GEMMs in their own dtype where oneDNN's GEMMs for that
// dtype outrun float32 ones: AMX, or for bfloat16 AVX512-BF16
// (torch_tconv/backends.py, bench/NOTES.md has the figures); elsewhere they run at float32's speed or far slower. A rule
// of the machine, not a timing, so that the numerics of a call never depend
// on a measurement.
at::ScalarType column_dtype_cpu(at::ScalarType dtype, const Config& config) {
  if (!at::isReducedFloatingType(dtype)) return dtype;
  switch (config.cpu_reduced_precision_gemm) {
    case ReducedPrecisionGemm::kAlways:
      return dtype;
    case ReducedPrecisionGemm::kNever:
      return at::kFloat;
    case ReducedPrecisionGemm::kAuto:
      break;
  }
  const MachineFacts facts = machine_facts();
  return (dtype == at::kBFloat16 ? facts.bfloat16_gemm_fast : facts.float16_gemm_fast)
             ? dtype
             : at::kFloat;
}

}  // namespace

// The variant's Backend. column_dtype_cpu is the same rule in every variant.
const Backend& launchers_backend() {
  static const Backend backend{
      col2im_cpu,
      col2im_window_cpu,
      im2col_cpu,
      col2im_channels_last_cpu,
      col2im_window_channels_last_cpu,
      im2col_channels_last_cpu,
      col2im_position_major_rows_cpu,
      direct_forward_cpu,
      direct_input_grad_cpu,
      direct_weight_grad_cpu,
      direct_backward_cpu,
      phase_forward_cpu,
      implicit_input_grad_cpu,
      implicit_weight_grad_cpu,
      prefers_phase_forward_cpu,
      phase_backward_cpu,
      prefers_phase_gradients_cpu,
      blocked_gemm_cpu,
      prefers_blocked_gemm_cpu,
      prefers_blocked_gradient_gemm_cpu,
      prefers_onednn_gradient_gemm_cpu,
      bias_grad_cpu,
      column_dtype_cpu,
      /*column_chunk_bytes=*/kColumnChunkBytes,
      /*forward_chunk_positions=*/kForwardChunkPositions,
      /*parallel_chunks=*/true,
      /*synchronize=*/nullptr,
      /*capturing=*/nullptr,
      /*contiguous_forward_weight=*/true,
      /*name=*/TORCH_TCONV_STRINGIFY(TORCH_TCONV_CPU_ISA),
  };
  return backend;
}

TORCH_TCONV_ISA_NAMESPACE_END
}  // namespace torch_tconv
