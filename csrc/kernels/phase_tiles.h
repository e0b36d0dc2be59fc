// The output phases of the forward: the decomposition behind its implicit
// GEMM (PhaseForwardGemm in implicit_gemm.h), with no column buffer.
//
// Output phase r (per spatial dim, r = o mod stride) receives only the taps
// k with k * dilation = r + padding (mod stride): the first from
// first_tap_landing_on(r), then every tap_step. For the m-th output of the
// phase, o = r + stride * m, tap number t reads input coordinate
//   i = i0 + m - t * in_step,
// a stride-1 correlation. Per phase and group the forward is then the GEMM
//   out[row][oc] = sum over (ic, t) of A[row][(ic, t)] * B[(ic, t)][oc]
// with rows (n, m0, m1, m2), A the input at those coordinates (nothing
// outside the input) and B the weight at the phase's taps. No multiply-adds
// on the zeros a strided scatter would insert, and every output element
// belongs to one phase, so no atomics.
#pragma once

#include "taps.h"

namespace torch_tconv {
TORCH_TCONV_ISA_NAMESPACE_BEGIN

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

// Every phase at once, for strides up to kMaxFusedStride: per dim and
// residue r, the phase's first tap, their count, the input coordinate of
// its first output's first tap and its output count (as in Phase). A row u
// of the fused GEMM (AllPhasesForwardGemm) is an input-aligned coordinate:
// phase r's output m = u - first_in[r] reads input u - t * in_step through
// its tap t, the same input for every phase, so that one GEMM computes all
// phases of a tile and its columns (output channel, residue) hold
// neighbouring outputs.
constexpr int kMaxFusedStride = 8;

template <typename index_t>
struct PhaseTable {
  index_t first_tap[kMaxSpatialDims][kMaxFusedStride];
  index_t tap_count[kMaxSpatialDims][kMaxFusedStride];
  index_t first_in[kMaxSpatialDims][kMaxFusedStride];
  index_t out_count[kMaxSpatialDims][kMaxFusedStride];
  index_t taps[kMaxSpatialDims];     // the most taps of any residue
  index_t u_begin[kMaxSpatialDims];  // the rows' range of u
  index_t u_count[kMaxSpatialDims];

  static bool fits(const ConvGeometry<index_t>& g) {
    for (int j = 0; j < kMaxSpatialDims; ++j) {
      if (g.stride[j] > kMaxFusedStride) return false;
    }
    return true;
  }
};

template <typename index_t>
inline PhaseTable<index_t> phase_table(const KernelGeometry<index_t>& g) {
  PhaseTable<index_t> table{};
  for (int j = 0; j < kMaxSpatialDims; ++j) {
    index_t u_end = 0;
    bool any = false;
    for (index_t r = 0; r < g.stride[j]; ++r) {
      const FirstTap<index_t> first = first_tap_landing_on(g, j, r);
      const index_t taps =
          first.k < g.kernel[j] ? (g.kernel[j] - 1 - first.k) / g.tap_step[j] + 1 : 0;
      const index_t outs =
          r < g.out_size[j] ? (g.out_size[j] - r + g.stride[j] - 1) / g.stride[j] : 0;
      table.first_tap[j][r] = first.k;
      table.tap_count[j][r] = taps;
      table.first_in[j][r] = first.i;
      table.out_count[j][r] = outs;
      table.taps[j] = taps > table.taps[j] ? taps : table.taps[j];
      if (outs == 0) continue;
      if (!any || first.i < table.u_begin[j]) table.u_begin[j] = first.i;
      if (!any || first.i + outs > u_end) u_end = first.i + outs;
      any = true;
    }
    table.u_count[j] = any ? u_end - table.u_begin[j] : 0;
  }
  return table;
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

TORCH_TCONV_ISA_NAMESPACE_END
}  // namespace torch_tconv
