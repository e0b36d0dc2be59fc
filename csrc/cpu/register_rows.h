// The depthwise direct forward's output rows summed in vector registers, for
// float32 and float64 on the CPU (GCC's vector extensions: never seen by
// nvcc).
//
// The row body of kernels/row_bodies.h adds each term (an input row times a
// weight) to the whole row of accumulators in memory: every accumulator is
// loaded and stored once per term, 8 times per output row of a k4 s2
// depthwise layer, where that loop was 43% of the body's samples in `perf`
// (bench/NOTES.md). Here each output phase sums its terms over chunks of
// positions held in registers and stores each sum once. With one input
// channel per group, which terms land on an output row, and where, depends
// on the row's place in its plane only: a table made once per launch lists
// them, so that a row costs no tap arithmetic. A plain loop over a chunk's
// positions did not reach registers (GCC 12 left its sums scalar;
// bench/NOTES.md), so the chunks are vector types.
//
// Every element adds the same terms in the same order as the element and row
// bodies, without contraction into FMAs (setup.py): the same bits in every
// CPU variant, which the tests compare.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "../kernels/row_bodies.h"
#include "blocked_phase_forward.h"

namespace torch_tconv {
TORCH_TCONV_ISA_NAMESPACE_BEGIN

// One vector register of the variant being compiled (blocked::kVectorBytes),
// and the same at any address of an acc_t (GCC's idiom for unaligned loads
// and stores). Member typedefs: GCC ignores the attributes on an alias
// template.
template <typename acc_t>
struct RowVectorOf {
  typedef acc_t type __attribute__((vector_size(blocked::kVectorBytes)));
  typedef acc_t unaligned
      __attribute__((vector_size(blocked::kVectorBytes), aligned(sizeof(acc_t)), may_alias));
};
template <typename acc_t>
using RowVector = typename RowVectorOf<acc_t>::type;
template <typename acc_t>
constexpr int kRowLanes = blocked::kVectorBytes / int(sizeof(acc_t));

template <typename acc_t>
inline RowVector<acc_t> load_vector(const acc_t* p) {
  return *reinterpret_cast<const typename RowVectorOf<acc_t>::unaligned*>(p);
}

template <typename acc_t>
inline void store_vector(acc_t* p, RowVector<acc_t> v) {
  *reinterpret_cast<typename RowVectorOf<acc_t>::unaligned*>(p) = v;
}

// Every lane v: an initializer of all lanes, which GCC makes one broadcast
// (stores lane by lane, it built lane by lane).
template <typename acc_t, size_t... lane>
inline RowVector<acc_t> broadcast_lanes(acc_t v, std::index_sequence<lane...>) {
  return RowVector<acc_t>{((void)lane, v)...};
}

template <typename acc_t>
inline RowVector<acc_t> broadcast(acc_t v) {
  return broadcast_lanes(v, std::make_index_sequence<kRowLanes<acc_t>>{});
}

// One term of an output phase: phase position q in [lo, hi) adds
// x[q + base] * w[weight], x and w being the row's input plane and weights.
struct PhaseTerm {
  int64_t base;
  int64_t weight;
  int64_t lo;
  int64_t hi;
};

// The terms of every output row of a plane, by phase, in the row body's
// order: those of phase p of outer row o (the two outer dims) are
// terms[begin[o * stride + p] .. begin[o * stride + p + 1]), and every one
// of them covers the positions [span_lo, span_hi) of the same index.
struct PhaseTermTable {
  int64_t length = 0;  // positions of a phase (phase_length of a whole row)
  std::vector<PhaseTerm> terms;
  std::vector<int64_t> begin;
  std::vector<int64_t> span_lo;
  std::vector<int64_t> span_hi;
};

// Layers whose table this kernel takes: one input channel per group, rows
// not split into parts, and a table of at most kMaxPhaseTerms.
constexpr int64_t kMaxPhaseTerms = int64_t(1) << 16;

template <typename index_t>
bool forward_rows_fit_registers(const ConvGeometry<index_t>& g, int64_t row_parts) {
  return g.in_channels_per_group == 1 && row_parts == 1 &&
         int64_t(g.out_size[0]) * g.out_size[1] * g.taps() <= kMaxPhaseTerms;
}

// `ranges`: the scatter_ranges of a whole output row.
template <typename acc_t, typename index_t>
PhaseTermTable make_phase_term_table(const KernelGeometry<index_t>& g,
                                     const InnerRange<index_t>* ranges) {
  PhaseTermTable table;
  const index_t s = g.stride[2];
  table.length = phase_length(g.out_size[2], s);
  table.begin.push_back(0);
  for (index_t o0 = 0; o0 < g.out_size[0]; ++o0) {
    for (index_t o1 = 0; o1 < g.out_size[1]; ++o1) {
      const index_t out[kMaxSpatialDims] = {o0, o1, 0};
      for (index_t phase = 0; phase < s; ++phase) {
        int64_t lo = 0, hi = table.length;
        for_each_outer_tap_landing_on(g, out, [&](index_t outer_tap, index_t in_row) {
          for (index_t k2 = 0; k2 < g.kernel[2]; ++k2) {
            const InnerRange<index_t>& r = ranges[k2];
            // Empty ranges add nothing and are left out.
            if (r.phase != phase || r.lo >= r.hi) continue;
            // acc[acc_offset + i2] is the phase's position q = i2 + offset.
            const int64_t offset = int64_t(r.acc_offset) - int64_t(phase) * table.length;
            table.terms.push_back({int64_t(in_row) * g.in_size[2] - offset,
                                   int64_t(outer_tap) * g.kernel[2] + k2, r.lo + offset,
                                   r.hi + offset});
            lo = std::max(lo, r.lo + offset);
            hi = std::min(hi, r.hi + offset);
          }
        });
        if (hi - lo < kRowLanes<acc_t>) lo = hi = 0;
        table.begin.push_back(static_cast<int64_t>(table.terms.size()));
        table.span_lo.push_back(lo);
        table.span_hi.push_back(hi);
      }
    }
  }
  return table;
}

// Chunks of kRowLanes positions, beginning at starts[0..K), that every term
// covers: K vector sums at once (independent chains for the adder), each
// stored once into acc.
template <int K, typename acc_t>
inline void sum_phase_chunks(const PhaseTerm* terms, int64_t count, const acc_t* x,
                             const acc_t* w, acc_t init, const int64_t* starts, acc_t* acc) {
  using Vector = RowVector<acc_t>;
  Vector sums[K];
  for (int k = 0; k < K; ++k) sums[k] = broadcast(init);
  for (int64_t t = 0; t < count; ++t) {
    const Vector weight = broadcast(w[terms[t].weight]);
    const acc_t* row = x + terms[t].base;
    for (int k = 0; k < K; ++k) sums[k] += load_vector(row + starts[k]) * weight;
  }
  for (int k = 0; k < K; ++k) store_vector(acc + starts[k], sums[k]);
}

// Position q, which each term may cover or not.
template <typename acc_t>
inline acc_t sum_phase_position(const PhaseTerm* terms, int64_t count, const acc_t* x,
                                const acc_t* w, acc_t init, int64_t q) {
  acc_t sum = init;
  for (int64_t t = 0; t < count; ++t) {
    if (q >= terms[t].lo && q < terms[t].hi) sum += x[q + terms[t].base] * w[terms[t].weight];
  }
  return sum;
}

// One phase's positions [0, length) into acc: [lo, hi), which every term
// covers, in vector chunks (the last one moved back to end at hi, so that it
// overlaps its neighbour instead of leaving positions over; the overlap is
// computed twice, to the same bits), the rest position by position.
template <typename acc_t>
inline void sum_phase(const PhaseTerm* terms, int64_t count, int64_t lo, int64_t hi,
                      const acc_t* x, const acc_t* w, acc_t init, int64_t length, acc_t* acc) {
  constexpr int kLanes = kRowLanes<acc_t>;
  constexpr int kChunksAtOnce = 4;
  for (int64_t q = 0; q < lo; ++q) acc[q] = sum_phase_position(terms, count, x, w, init, q);
  const int64_t span = hi - lo;
  const int64_t chunks = (span + kLanes - 1) / kLanes;
  int64_t starts[kChunksAtOnce];
  int64_t chunk = 0;
  for (; chunk + kChunksAtOnce <= chunks; chunk += kChunksAtOnce) {
    for (int k = 0; k < kChunksAtOnce; ++k) {
      starts[k] = lo + std::min<int64_t>((chunk + k) * kLanes, span - kLanes);
    }
    sum_phase_chunks<kChunksAtOnce>(terms, count, x, w, init, starts, acc);
  }
  for (; chunk < chunks; ++chunk) {
    starts[0] = lo + std::min<int64_t>(chunk * kLanes, span - kLanes);
    sum_phase_chunks<1>(terms, count, x, w, init, starts, acc);
  }
  for (int64_t q = hi; q < length; ++q) acc[q] = sum_phase_position(terms, count, x, w, init, q);
}

// Output row `row` (over N * C_out * out0 * out1) of a layer that
// forward_rows_fit_registers admits into acc, in phase-major order, as
// direct_forward_row (kernels/row_bodies.h) computes it.
template <typename acc_t, typename index_t>
inline void direct_forward_row_in_registers(const acc_t* input, const acc_t* weight,
                                            const acc_t* bias, const KernelGeometry<index_t>& g,
                                            const PhaseTermTable& table, int64_t row,
                                            acc_t* acc) {
  const int64_t outer_rows = int64_t(g.out_size[0]) * g.out_size[1];
  const int64_t plane = row / outer_rows, outer_row = row % outer_rows;
  const int64_t n = plane / g.out_channels(), oc = plane % g.out_channels();
  const int64_t ic = oc / g.out_channels_per_group, oc_g = oc % g.out_channels_per_group;
  const acc_t* x = input + (n * g.in_channels() + ic) * g.in_numel();
  const acc_t* w = weight + (ic * g.out_channels_per_group + oc_g) * g.taps();
  const acc_t init = bias ? bias[oc] : acc_t(0);
  const index_t s = g.stride[2];
  for (index_t phase = 0; phase < s; ++phase) {
    const int64_t i = outer_row * s + phase;
    const int64_t first = table.begin[i];
    sum_phase(table.terms.data() + first, table.begin[i + 1] - first, table.span_lo[i],
              table.span_hi[i], x, w, init, table.length, acc + phase * table.length);
  }
}

TORCH_TCONV_ISA_NAMESPACE_END
}  // namespace torch_tconv
