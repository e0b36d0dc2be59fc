// The three computations of the op as implicit GEMMs: GEMMs whose operands
// are never materialised, each element of A and B read from the op's own
// tensors through index arithmetic (no column buffer), per group:
//
//   forward, all output phases at once (phase_tiles.h)
//     rows (n, u...)  input-aligned coords     cols (oc, residue...)   depth (ic, t...)
//     A = input, B = weight, C = output (+ bias)
//   or, for strides over kMaxFusedStride, per output phase
//     rows (n, m...)  the phase's outputs      cols oc    depth (ic, tap of the phase)
//   input gradient: an ordinary strided convolution of grad_output (gather)
//     rows (n, i...)  input positions          cols ic    depth (oc, tap)
//     A = grad_output, B = weight, C = grad_input
//   weight gradient
//     rows ic                                  cols (oc, tap)   depth (n, i...)
//     A = input, B = grad_output, C = grad_weight
//
// A view describes one of them to the tile engines (the scalar one below and
// the tensor-core one of mma_tiles.h) through one interface:
//   rows() cols() depth()                      the GEMM's sizes per group
//   row(r) col(c) depth_at(k)                  decoded coordinates, computed
//                                              once per tile row / column /
//                                              depth step
//   a_offset(group, Row, Depth)                element of A, or -1 where the
//   b_offset(group, Depth, Col)                operand lies outside the tensor
//   c_offset(group, Row, Col), bias(group, Col)
// An A or B offset of -1 stands for an element outside the image: it
// contributes nothing (the scalar engine skips it; the tensor-core engine
// loads a zero). A C offset of -1: a GEMM element that is no output, not
// stored (AllPhasesForwardGemm).
//
// Every C element is written by one tile, or with split-K by one slice each
// into a workspace that a second pass sums in slice order: no atomics, and
// the result is deterministic.
#pragma once

#include <algorithm>
#include <type_traits>

#include "phase_tiles.h"

namespace torch_tconv {
TORCH_TCONV_ISA_NAMESPACE_BEGIN

// Where element (n, c, position) of an activation tensor (N, C, spatial...)
// lies, position being the row-major linear index over the spatial dims:
// n * sample + c * channel + position * step. Contiguous (NCHW):
// (C * P, P, 1); channels-last (NHWC, NDHWC): (C * P, 1, C). The implicit
// GEMMs read and write both directly, with no layout conversion.
template <typename index_t>
struct ActivationLayout {
  index_t sample;
  index_t channel;
  index_t step;

  C10_HOST_DEVICE index_t offset(index_t n, index_t c, index_t position) const {
    return n * sample + c * channel + position * step;
  }
};

// Element (ic, oc, tap) of a group's part of the weight
// (C_in, C_out/groups, k...), ic and oc counted within the group.
template <typename index_t>
C10_HOST_DEVICE inline index_t weight_offset(const ConvGeometry<index_t>& g, index_t group,
                                             index_t ic, index_t oc, index_t tap) {
  return ((group * g.in_channels_per_group + ic) * g.out_channels_per_group + oc) * g.taps() +
         tap;
}

// ---------------------------------------------------------------- forward

template <typename scalar_t, typename index_t>
struct PhaseForwardGemm {
  const scalar_t* a;  // input (N, C_in, in...)
  const scalar_t* b;  // weight (C_in, C_out/groups, k...)
  const scalar_t* bias_data;
  scalar_t* c;        // output (N, C_out, out...)
  KernelGeometry<index_t> g;
  Phase<index_t> phase;
  ActivationLayout<index_t> a_layout;
  ActivationLayout<index_t> c_layout;

  using index_type = index_t;
  using Row = PhaseRow<index_t>;
  struct Col {
    index_t oc;
  };
  struct Depth {
    index_t ic;
    PhaseTap<index_t> tap;
  };

  C10_HOST_DEVICE index_t rows() const { return phase.rows; }
  C10_HOST_DEVICE index_t cols() const { return g.out_channels_per_group; }
  C10_HOST_DEVICE index_t depth() const { return g.in_channels_per_group * phase.taps; }

  C10_HOST_DEVICE Row row(index_t r) const { return phase_row(phase, r); }
  C10_HOST_DEVICE Col col(index_t oc) const { return {oc}; }
  // Input channel outer, tap inner: the order of the phase path's sums.
  C10_HOST_DEVICE Depth depth_at(index_t k) const {
    return {k / phase.taps, phase_tap(g, phase, k % phase.taps)};
  }

  C10_HOST_DEVICE index_t a_offset(index_t group, const Row& r, const Depth& d) const {
    const index_t position = phase_input_position(g, phase, r, d.tap);
    if (position < 0) return -1;
    return a_layout.offset(r.n, group * g.in_channels_per_group + d.ic, position);
  }
  C10_HOST_DEVICE index_t b_offset(index_t group, const Depth& d, const Col& col) const {
    return weight_offset(g, group, d.ic, col.oc, d.tap.kernel_index);
  }
  C10_HOST_DEVICE index_t c_offset(index_t group, const Row& r, const Col& col) const {
    return c_layout.offset(r.n, group * g.out_channels_per_group + col.oc,
                           phase_output_position(g, phase, r));
  }
  template <typename acc_t>
  C10_HOST_DEVICE acc_t bias(index_t group, const Col& col) const {
    return bias_data ? static_cast<acc_t>(bias_data[group * g.out_channels_per_group + col.oc])
                     : acc_t(0);
  }
};

// The forward for every phase in one GEMM (strides up to kMaxFusedStride):
//   rows (n, u...)  input-aligned coordinates (see PhaseTable)
//   cols (oc, r...) output channel, then residue per dim: a tile's columns
//                   are neighbouring outputs of each channel, and for k = s
//                   the GEMM is a plain GEMM stored pixel-shuffled
//   depth (ic, t...) the t-th tap of each dim, up to the most any residue has
// A residue with fewer taps masks its missing ones in B; a (row, residue)
// pair outside that residue's outputs is not stored (c_offset -1).
template <typename scalar_t, typename index_t>
struct AllPhasesForwardGemm {
  const scalar_t* a;  // input
  const scalar_t* b;  // weight
  const scalar_t* bias_data;
  scalar_t* c;        // output
  KernelGeometry<index_t> g;
  PhaseTable<index_t> phases;
  ActivationLayout<index_t> a_layout;
  ActivationLayout<index_t> c_layout;

  using index_type = index_t;
  struct Row {
    index_t n;
    index_t u[kMaxSpatialDims];
  };
  struct Col {
    index_t oc;
    index_t r[kMaxSpatialDims];
  };
  struct Depth {
    index_t ic;
    index_t t[kMaxSpatialDims];
  };

  C10_HOST_DEVICE index_t residues() const { return g.stride[0] * g.stride[1] * g.stride[2]; }
  C10_HOST_DEVICE index_t taps() const { return phases.taps[0] * phases.taps[1] * phases.taps[2]; }

  C10_HOST_DEVICE index_t rows() const {
    return g.batch * phases.u_count[0] * phases.u_count[1] * phases.u_count[2];
  }
  C10_HOST_DEVICE index_t cols() const { return g.out_channels_per_group * residues(); }
  C10_HOST_DEVICE index_t depth() const { return g.in_channels_per_group * taps(); }

  C10_HOST_DEVICE Row row(index_t r) const {
    Row row{};
    for (int j = kMaxSpatialDims - 1; j >= 0; --j) {
      row.u[j] = phases.u_begin[j] + r % phases.u_count[j];
      r /= phases.u_count[j];
    }
    row.n = r;
    return row;
  }
  C10_HOST_DEVICE Col col(index_t c) const {
    Col col{};
    col.oc = c / residues();
    index_t residue = c % residues();
    for (int j = kMaxSpatialDims - 1; j >= 0; --j) {
      divmod(g.stride_divisor[j], residue, residue, col.r[j]);
    }
    return col;
  }
  C10_HOST_DEVICE Depth depth_at(index_t k) const {
    Depth d{};
    const index_t taps_per_channel = taps();
    d.ic = k / taps_per_channel;
    index_t tap = k % taps_per_channel;
    for (int j = kMaxSpatialDims - 1; j >= 0; --j) {
      d.t[j] = tap % phases.taps[j];
      tap /= phases.taps[j];
    }
    return d;
  }

  C10_HOST_DEVICE index_t a_offset(index_t group, const Row& r, const Depth& d) const {
    index_t position = 0;
    for (int j = 0; j < kMaxSpatialDims; ++j) {
      const index_t i = r.u[j] - d.t[j] * g.in_step[j];
      if (i < 0 || i >= g.in_size[j]) return -1;
      position = position * g.in_size[j] + i;
    }
    return a_layout.offset(r.n, group * g.in_channels_per_group + d.ic, position);
  }
  C10_HOST_DEVICE index_t b_offset(index_t group, const Depth& d, const Col& col) const {
    index_t tap = 0;
    for (int j = 0; j < kMaxSpatialDims; ++j) {
      if (d.t[j] >= phases.tap_count[j][col.r[j]]) return -1;
      tap = tap * g.kernel[j] + phases.first_tap[j][col.r[j]] + d.t[j] * g.tap_step[j];
    }
    return weight_offset(g, group, d.ic, col.oc, tap);
  }
  C10_HOST_DEVICE index_t c_offset(index_t group, const Row& r, const Col& col) const {
    index_t position = 0;
    for (int j = 0; j < kMaxSpatialDims; ++j) {
      const index_t m = r.u[j] - phases.first_in[j][col.r[j]];
      if (m < 0 || m >= phases.out_count[j][col.r[j]]) return -1;
      position = position * g.out_size[j] + col.r[j] + g.stride[j] * m;
    }
    return c_layout.offset(r.n, group * g.out_channels_per_group + col.oc, position);
  }
  template <typename acc_t>
  C10_HOST_DEVICE acc_t bias(index_t group, const Col& col) const {
    return bias_data ? static_cast<acc_t>(bias_data[group * g.out_channels_per_group + col.oc])
                     : acc_t(0);
  }
};

// A linear index over the spatial dims (an input position, a kernel tap)
// with its coordinates, which the offsets need both of.
template <typename index_t>
struct SpatialIndex {
  index_t linear;
  index_t at[kMaxSpatialDims];
};

template <typename index_t>
C10_HOST_DEVICE inline SpatialIndex<index_t> spatial_index(
    index_t linear, const Divisor<index_t> (&sizes)[kMaxSpatialDims]) {
  SpatialIndex<index_t> p{};
  p.linear = linear;
  unravel_spatial(linear, sizes, p.at);
  return p;
}

// ---------------------------------------------------------- input gradient

template <typename scalar_t, typename index_t>
struct InputGradGemm {
  const scalar_t* a;  // grad_output (N, C_out, out...)
  const scalar_t* b;  // weight
  scalar_t* c;        // grad_input (N, C_in, in...)
  KernelGeometry<index_t> g;
  ActivationLayout<index_t> a_layout;
  ActivationLayout<index_t> c_layout;

  using index_type = index_t;
  struct Row {
    index_t n;
    SpatialIndex<index_t> in;
  };
  struct Col {
    index_t ic;
  };
  struct Depth {
    index_t oc;
    SpatialIndex<index_t> tap;
  };

  C10_HOST_DEVICE index_t rows() const { return g.batch * g.in_numel(); }
  C10_HOST_DEVICE index_t cols() const { return g.in_channels_per_group; }
  C10_HOST_DEVICE index_t depth() const { return g.out_channels_per_group * g.taps(); }

  C10_HOST_DEVICE Row row(index_t r) const {
    index_t n, position;
    divmod(g.in_numel_divisor, r, n, position);
    return {n, spatial_index(position, g.in_size_divisor)};
  }
  C10_HOST_DEVICE Col col(index_t ic) const { return {ic}; }
  C10_HOST_DEVICE Depth depth_at(index_t k) const {
    index_t oc, tap;
    divmod(g.taps_divisor, k, oc, tap);
    return {oc, spatial_index(tap, g.kernel_divisor)};
  }

  // The gather: grad_output at the position the row's input scatters to
  // through the tap, if it lies inside the output.
  C10_HOST_DEVICE index_t a_offset(index_t group, const Row& r, const Depth& d) const {
    const index_t o = scatter_target(g, r.in.at, d.tap.at);
    if (o < 0) return -1;
    return a_layout.offset(r.n, group * g.out_channels_per_group + d.oc, o);
  }
  C10_HOST_DEVICE index_t b_offset(index_t group, const Depth& d, const Col& col) const {
    return weight_offset(g, group, col.ic, d.oc, d.tap.linear);
  }
  C10_HOST_DEVICE index_t c_offset(index_t group, const Row& r, const Col& col) const {
    return c_layout.offset(r.n, group * g.in_channels_per_group + col.ic, r.in.linear);
  }
  template <typename acc_t>
  C10_HOST_DEVICE acc_t bias(index_t, const Col&) const {
    return acc_t(0);
  }
};

// --------------------------------------------------------- weight gradient

template <typename scalar_t, typename index_t>
struct WeightGradGemm {
  const scalar_t* a;  // input (N, C_in, in...)
  const scalar_t* b;  // grad_output (N, C_out, out...)
  scalar_t* c;        // grad_weight (C_in, C_out/groups, k...)
  KernelGeometry<index_t> g;
  ActivationLayout<index_t> a_layout;
  ActivationLayout<index_t> b_layout;

  using index_type = index_t;
  struct Row {
    index_t ic;
  };
  struct Col {
    index_t oc;
    SpatialIndex<index_t> tap;
  };
  struct Depth {
    index_t n;
    SpatialIndex<index_t> in;
  };

  C10_HOST_DEVICE index_t rows() const { return g.in_channels_per_group; }
  C10_HOST_DEVICE index_t cols() const { return g.out_channels_per_group * g.taps(); }
  C10_HOST_DEVICE index_t depth() const { return g.batch * g.in_numel(); }

  C10_HOST_DEVICE Row row(index_t ic) const { return {ic}; }
  C10_HOST_DEVICE Col col(index_t c) const {
    index_t oc, tap;
    divmod(g.taps_divisor, c, oc, tap);
    return {oc, spatial_index(tap, g.kernel_divisor)};
  }
  C10_HOST_DEVICE Depth depth_at(index_t k) const {
    index_t n, position;
    divmod(g.in_numel_divisor, k, n, position);
    return {n, spatial_index(position, g.in_size_divisor)};
  }

  C10_HOST_DEVICE index_t a_offset(index_t group, const Row& r, const Depth& d) const {
    return a_layout.offset(d.n, group * g.in_channels_per_group + r.ic, d.in.linear);
  }
  // grad_output where the depth's input position scatters through the
  // column's tap, if inside the output.
  C10_HOST_DEVICE index_t b_offset(index_t group, const Depth& d, const Col& col) const {
    const index_t o = scatter_target(g, d.in.at, col.tap.at);
    if (o < 0) return -1;
    return b_layout.offset(d.n, group * g.out_channels_per_group + col.oc, o);
  }
  C10_HOST_DEVICE index_t c_offset(index_t group, const Row& r, const Col& col) const {
    return weight_offset(g, group, r.ic, col.oc, col.tap.linear);
  }
  template <typename acc_t>
  C10_HOST_DEVICE acc_t bias(index_t, const Col&) const {
    return acc_t(0);
  }
};

// ------------------------------------------------------------------ tiling

// How the depth of a GEMM is cut into slices (split-K): each slice of every
// tile is summed on its own into a float workspace, and a second pass adds
// the slices in order. One slice: no workspace, the tiles write C.
struct SplitK {
  int64_t slices = 1;
  int64_t slice_depth = 0;  // a multiple of the engine's depth step
};

// Enough (tile, slice) pairs to fill a GPU of `parallel_units` twice over,
// for GEMMs whose few tiles each run a long depth (the weight gradient: a
// small weight, a depth of batch x positions). Slices no shorter than
// kMinSliceDepth, and a workspace of at most kMaxSplitWorkspace floats. A
// function of the problem and the tile shape alone, so that a given call
// always sums in the same order.
constexpr int64_t kSplitParallelUnits = 2 * 132;
constexpr int64_t kMinSliceDepth = 512;
constexpr int64_t kMaxSplitWorkspace = int64_t(16) << 20;

inline SplitK split_k_for(int64_t tiles, int64_t outputs, int64_t depth, int64_t depth_step) {
  SplitK split;
  split.slice_depth = depth;
  if (tiles <= 0 || depth <= 0 || outputs <= 0) return split;
  int64_t slices = (kSplitParallelUnits + tiles - 1) / tiles;
  slices = std::min(slices, depth / kMinSliceDepth);
  slices = std::min(slices, kMaxSplitWorkspace / outputs);
  if (slices <= 1) return split;
  int64_t slice_depth = (depth + slices - 1) / slices;
  slice_depth = (slice_depth + depth_step - 1) / depth_step * depth_step;
  split.slices = (depth + slice_depth - 1) / slice_depth;
  split.slice_depth = slice_depth;
  return split;
}

// A tile's place: group, first row and column, and the depth range it sums.
template <typename index_t>
struct TileCoord {
  index_t group;
  index_t row0;
  index_t col0;
  index_t slice;
  index_t k_begin;
  index_t k_end;
};

// Tiles of TM x TN over every group and slice: columns innermost, then
// rows, slices, groups.
template <int TM, int TN, typename View>
C10_HOST_DEVICE inline int64_t tile_count(const View& v, const SplitK& split) {
  const int64_t row_tiles = (int64_t(v.rows()) + TM - 1) / TM;
  const int64_t col_tiles = (int64_t(v.cols()) + TN - 1) / TN;
  return int64_t(v.g.groups) * split.slices * row_tiles * col_tiles;
}

template <int TM, int TN, typename View, typename index_t = typename View::index_type>
C10_HOST_DEVICE inline TileCoord<index_t> tile_coord(const View& v, const SplitK& split,
                                                     int64_t tile) {
  const int64_t col_tiles = (int64_t(v.cols()) + TN - 1) / TN;
  const int64_t row_tiles = (int64_t(v.rows()) + TM - 1) / TM;
  TileCoord<index_t> t{};
  t.col0 = static_cast<index_t>(tile % col_tiles * TN);
  tile /= col_tiles;
  t.row0 = static_cast<index_t>(tile % row_tiles * TM);
  tile /= row_tiles;
  t.slice = static_cast<index_t>(tile % split.slices);
  t.group = static_cast<index_t>(tile / split.slices);
  const int64_t begin = int64_t(t.slice) * split.slice_depth;
  const int64_t end = begin + split.slice_depth;
  t.k_begin = static_cast<index_t>(begin);
  t.k_end = static_cast<index_t>(end < v.depth() ? end : v.depth());
  return t;
}

// Where a tile's sums go. Without split-K: C, with the bias, cast to the
// output dtype. With it: the slice's float partial sums, at
// workspace[((slice * groups + group) * rows + row) * cols + col].
template <typename View, typename acc_t>
struct TileStore {
  const View& view;
  acc_t* workspace;  // null without split-K

  template <typename index_t, typename Row, typename Col>
  C10_HOST_DEVICE void operator()(const TileCoord<index_t>& t, index_t row, const Row& r,
                                  index_t col, const Col& c, acc_t sum) const {
    if (workspace != nullptr) {
      const int64_t slot =
          ((int64_t(t.slice) * view.g.groups + t.group) * view.rows() + row) * view.cols() + col;
      workspace[slot] = sum;
    } else {
      using scalar_t = std::remove_pointer_t<decltype(view.c)>;
      const auto offset = view.c_offset(t.group, r, c);
      if (offset >= 0) {
        view.c[offset] = static_cast<scalar_t>(sum + view.template bias<acc_t>(t.group, c));
      }
    }
  }
};

// The second pass of split-K: C element `e` (rows x cols per group, groups
// outermost) as the sum of its slices' partial sums, in slice order.
template <typename acc_t, typename View>
C10_HOST_DEVICE inline void split_k_reduce_element(const View& v, const acc_t* workspace,
                                                   int64_t slices, int64_t e) {
  using index_t = typename View::index_type;
  const int64_t per_group = int64_t(v.rows()) * v.cols();
  const int64_t outputs = per_group * v.g.groups;
  acc_t sum(0);
  for (int64_t s = 0; s < slices; ++s) sum += workspace[s * outputs + e];
  const auto group = static_cast<index_t>(e / per_group);
  const auto row = static_cast<index_t>(e % per_group / v.cols());
  const auto col = static_cast<index_t>(e % v.cols());
  const auto c = v.col(col);
  using scalar_t = std::remove_pointer_t<decltype(v.c)>;
  const auto offset = v.c_offset(group, v.row(row), c);
  if (offset >= 0) v.c[offset] = static_cast<scalar_t>(sum + v.template bias<acc_t>(group, c));
}

// ----------------------------------------------------- scalar tile engine

// The tile of the scalar engine (the CPU reference and the float32/float64
// CUDA kernel, one thread per tile).
constexpr int kScalarTileRows = 8;
constexpr int kScalarTileCols = 8;

// One tile: acc[row][col] summed over the tile's depth range in increasing
// depth order, skipping elements outside the image, then stored. The
// reference multiply-add: the tensor-core engine runs MMAs over the same
// tiles of the same GEMM.
template <typename acc_t, typename View, typename index_t>
C10_HOST_DEVICE inline void scalar_gemm_tile(const View& v, const TileCoord<index_t>& t,
                                             const TileStore<View, acc_t>& store) {
  constexpr int TM = kScalarTileRows;
  constexpr int TN = kScalarTileCols;
  const index_t rows = v.rows() - t.row0 < TM ? v.rows() - t.row0 : TM;
  const index_t cols = v.cols() - t.col0 < TN ? v.cols() - t.col0 : TN;
  acc_t acc[TM][TN] = {};
  typename View::Row row[TM];
  typename View::Col col[TN];
  for (index_t i = 0; i < rows; ++i) row[i] = v.row(t.row0 + i);
  for (index_t j = 0; j < cols; ++j) col[j] = v.col(t.col0 + j);
  for (index_t k = t.k_begin; k < t.k_end; ++k) {
    const typename View::Depth d = v.depth_at(k);
    acc_t b[TN];
    bool b_inside[TN];
    for (index_t j = 0; j < cols; ++j) {
      const index_t offset = v.b_offset(t.group, d, col[j]);
      b_inside[j] = offset >= 0;
      b[j] = b_inside[j] ? static_cast<acc_t>(v.b[offset]) : acc_t(0);
    }
    for (index_t i = 0; i < rows; ++i) {
      const index_t offset = v.a_offset(t.group, row[i], d);
      if (offset < 0) continue;
      const acc_t a = static_cast<acc_t>(v.a[offset]);
      for (index_t j = 0; j < cols; ++j) {
        if (b_inside[j]) acc[i][j] += a * b[j];
      }
    }
  }
  for (index_t i = 0; i < rows; ++i) {
    for (index_t j = 0; j < cols; ++j) {
      store(t, index_t(t.row0 + i), row[i], index_t(t.col0 + j), col[j], acc[i][j]);
    }
  }
}

TORCH_TCONV_ISA_NAMESPACE_END
}  // namespace torch_tconv
