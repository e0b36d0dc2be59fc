// The forward as one GEMM per output phase, with no column buffer: the tile
// iteration that a tensor-core kernel runs, and that the CPU runs too with a
// scalar multiply-add in place of the MMA (issue: CUDA performance).
//
// Output phase r (per spatial dim, r = o mod stride) receives only the taps
// k with k * dilation = r + padding (mod stride): the first from
// first_tap_landing_on(r), then every tap_step. For the m-th output of the
// phase, o = r + stride * m, tap number t reads input coordinate
//   i = i0 + m - t * in_step,
// a stride-1 correlation. Per phase and group the forward is then the GEMM
//   out[row][oc] = sum over (ic, t) of A[row][(ic, t)] * B[(ic, t)][oc]
// with rows (n, m0, m1, m2), A the input at those coordinates (zero outside
// the input) and B the weight at the phase's taps. The products accumulate
// in registers and are never stored; every output element is written by one
// tile, once, so the result needs no atomics and is deterministic.
#pragma once

#include "taps.h"

namespace torch_tconv {

// One output phase of a problem: its outputs and taps per spatial dim.
template <typename index_t>
struct Phase {
  index_t residue[kMaxSpatialDims];    // r: the phase's outputs are r + stride * m
  index_t out_count[kMaxSpatialDims];  // how many there are
  index_t first_tap[kMaxSpatialDims];
  index_t tap_count[kMaxSpatialDims];
  index_t first_in[kMaxSpatialDims];   // i0: input coordinate of (m = 0, first tap)
  index_t rows;                        // GEMM rows: batch * outputs of the phase
  index_t taps;                        // taps of the phase, all dims

  // Number of output phases of g: one per combination of residues.
  static C10_HOST_DEVICE index_t count(const ConvGeometry<index_t>& g) {
    return g.stride[0] * g.stride[1] * g.stride[2];
  }
};

// Phase number p of g, p in [0, Phase::count(g)), residues row-major.
template <typename index_t>
C10_HOST_DEVICE inline Phase<index_t> phase_of(const KernelGeometry<index_t>& g, index_t p) {
  Phase<index_t> phase{};
  phase.rows = g.batch;
  phase.taps = 1;
  for (int j = kMaxSpatialDims - 1; j >= 0; --j) {
    const index_t r = p % g.stride[j];
    p /= g.stride[j];
    phase.residue[j] = r;
    phase.out_count[j] = r < g.out_size[j] ? (g.out_size[j] - r + g.stride[j] - 1) / g.stride[j] : 0;
    const FirstTap<index_t> first = first_tap_landing_on(g, j, r);
    phase.first_tap[j] = first.k;
    phase.first_in[j] = first.i;
    phase.tap_count[j] =
        first.k < g.kernel[j] ? (g.kernel[j] - 1 - first.k) / g.tap_step[j] + 1 : 0;
    phase.rows *= phase.out_count[j];
    phase.taps *= phase.tap_count[j];
  }
  return phase;
}

// A GEMM row of the phase: sample n and the output's index m per dim.
template <typename index_t>
struct PhaseRow {
  index_t n;
  index_t m[kMaxSpatialDims];
};

template <typename index_t>
C10_HOST_DEVICE inline PhaseRow<index_t> phase_row(const Phase<index_t>& phase, index_t row) {
  PhaseRow<index_t> r{};
  for (int j = kMaxSpatialDims - 1; j >= 0; --j) {
    r.m[j] = row % phase.out_count[j];
    row /= phase.out_count[j];
  }
  r.n = row;
  return r;
}

// Linear spatial index of the row's output.
template <typename index_t>
C10_HOST_DEVICE inline index_t phase_output_position(
    const ConvGeometry<index_t>& g, const Phase<index_t>& phase, const PhaseRow<index_t>& r) {
  index_t position = 0;
  for (int j = 0; j < kMaxSpatialDims; ++j) {
    position = position * g.out_size[j] + phase.residue[j] + g.stride[j] * r.m[j];
  }
  return position;
}

// The phase's tap number `tap` (row-major over the dims' taps): its linear
// kernel index, and per dim how far its input coordinate lies before the
// first tap's (t * in_step).
template <typename index_t>
struct PhaseTap {
  index_t kernel_index;
  index_t in_offset[kMaxSpatialDims];
};

template <typename index_t>
C10_HOST_DEVICE inline PhaseTap<index_t> phase_tap(
    const KernelGeometry<index_t>& g, const Phase<index_t>& phase, index_t tap) {
  index_t t[kMaxSpatialDims];
  for (int j = kMaxSpatialDims - 1; j >= 0; --j) {
    t[j] = tap % phase.tap_count[j];
    tap /= phase.tap_count[j];
  }
  PhaseTap<index_t> result{};
  for (int j = 0; j < kMaxSpatialDims; ++j) {
    result.kernel_index =
        result.kernel_index * g.kernel[j] + phase.first_tap[j] + t[j] * g.tap_step[j];
    result.in_offset[j] = t[j] * g.in_step[j];
  }
  return result;
}

// The linear input position that the row reads through the tap, or -1 where
// it lies outside the input. Outside positions must contribute nothing, not
// a zero: a zero-filled operand times an infinite weight would make a NaN
// that the scatter (and PyTorch) never produces.
template <typename index_t>
C10_HOST_DEVICE inline index_t phase_input_position(
    const ConvGeometry<index_t>& g, const Phase<index_t>& phase, const PhaseRow<index_t>& r,
    const PhaseTap<index_t>& tap) {
  index_t position = 0;
  for (int j = 0; j < kMaxSpatialDims; ++j) {
    const index_t i = phase.first_in[j] + r.m[j] - tap.in_offset[j];
    if (i < 0 || i >= g.in_size[j]) return -1;
    position = position * g.in_size[j] + i;
  }
  return position;
}

// The tile shape of the scalar reference: rows of the phase GEMM by output
// channels. A tensor-core kernel iterates the same (row, oc, ic, tap) space.
constexpr int kPhaseTileRows = 8;
constexpr int kPhaseTileChannels = 8;

// One tile of one phase and group: acc[row][oc] over rows [row0, row0 + TM)
// and output channels [oc0, oc0 + TN) of the group, summed over the group's
// input channels and the phase's taps in a fixed order (input channel, then
// tap), then written with the bias. The reference multiply-add: a GPU kernel
// replaces the inner loop by MMAs over the same K order.
template <typename acc_t, typename scalar_t, typename index_t>
C10_HOST_DEVICE inline void phase_forward_tile(
    const scalar_t* __restrict__ input, const scalar_t* __restrict__ weight,
    const scalar_t* __restrict__ bias, scalar_t* __restrict__ out,
    const KernelGeometry<index_t>& g, const Phase<index_t>& phase, index_t group,
    index_t row0, index_t oc0) {
  constexpr int TM = kPhaseTileRows;
  constexpr int TN = kPhaseTileChannels;
  const index_t rows = phase.rows - row0 < TM ? phase.rows - row0 : TM;
  const index_t channels =
      g.out_channels_per_group - oc0 < TN ? g.out_channels_per_group - oc0 : TN;
  acc_t acc[TM][TN] = {};
  PhaseRow<index_t> coords[TM];
  for (index_t a = 0; a < rows; ++a) coords[a] = phase_row(phase, row0 + a);
  const index_t taps = g.taps();
  for (index_t ic = 0; ic < g.in_channels_per_group; ++ic) {
    const index_t c = group * g.in_channels_per_group + ic;
    const scalar_t* x_c = input + c * g.in_numel();
    for (index_t t = 0; t < phase.taps; ++t) {
      const PhaseTap<index_t> tap = phase_tap(g, phase, t);
      acc_t b[TN];
      for (index_t o = 0; o < channels; ++o) {
        b[o] = static_cast<acc_t>(
            weight[(c * g.out_channels_per_group + oc0 + o) * taps + tap.kernel_index]);
      }
      for (index_t a = 0; a < rows; ++a) {
        const index_t position = phase_input_position(g, phase, coords[a], tap);
        if (position < 0) continue;
        const acc_t x =
            static_cast<acc_t>(x_c[coords[a].n * g.in_channels() * g.in_numel() + position]);
        for (index_t o = 0; o < channels; ++o) acc[a][o] += x * b[o];
      }
    }
  }
  for (index_t a = 0; a < rows; ++a) {
    const index_t position = phase_output_position(g, phase, coords[a]);
    for (index_t o = 0; o < channels; ++o) {
      const index_t oc = group * g.out_channels_per_group + oc0 + o;
      const acc_t value = acc[a][o] + (bias ? static_cast<acc_t>(bias[oc]) : acc_t(0));
      out[(coords[a].n * g.out_channels() + oc) * g.out_numel() + position] =
          static_cast<scalar_t>(value);
    }
  }
}

// The tiles of one phase: every group, row tile and channel tile.
template <typename index_t>
C10_HOST_DEVICE inline int64_t phase_tile_count(const ConvGeometry<index_t>& g,
                                                const Phase<index_t>& phase) {
  const int64_t row_tiles = (int64_t(phase.rows) + kPhaseTileRows - 1) / kPhaseTileRows;
  const int64_t channel_tiles =
      (int64_t(g.out_channels_per_group) + kPhaseTileChannels - 1) / kPhaseTileChannels;
  return int64_t(g.groups) * row_tiles * channel_tiles;
}

// Tile number `tile` of the phase, in [0, phase_tile_count): channel tiles
// innermost, then row tiles, then groups.
template <typename acc_t, typename scalar_t, typename index_t>
C10_HOST_DEVICE inline void phase_forward_tile_number(
    const scalar_t* __restrict__ input, const scalar_t* __restrict__ weight,
    const scalar_t* __restrict__ bias, scalar_t* __restrict__ out,
    const KernelGeometry<index_t>& g, const Phase<index_t>& phase, int64_t tile) {
  const int64_t channel_tiles =
      (int64_t(g.out_channels_per_group) + kPhaseTileChannels - 1) / kPhaseTileChannels;
  const int64_t row_tiles = (int64_t(phase.rows) + kPhaseTileRows - 1) / kPhaseTileRows;
  const auto oc_tile = static_cast<index_t>(tile % channel_tiles);
  const auto row_tile = static_cast<index_t>(tile / channel_tiles % row_tiles);
  const auto group = static_cast<index_t>(tile / channel_tiles / row_tiles);
  phase_forward_tile<acc_t>(input, weight, bias, out, g, phase, group, row_tile * kPhaseTileRows,
                            oc_tile * kPhaseTileChannels);
}

}  // namespace torch_tconv
