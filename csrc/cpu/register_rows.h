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
#include <limits>
#include <type_traits>
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

// A store that bypasses the caches (x86's movnt), for results far larger
// than the caches: a plain store first reads the line it writes, so a
// result written once moved twice its size. The compiler never emits these
// for ordinary stores, hence the intrinsics. `p` must be aligned to a whole
// vector; the stores are weakly ordered, so a task that issued any ends with
// stream_fence() before other threads may read what it wrote.
template <typename acc_t>
inline void stream_vector(acc_t* p, RowVector<acc_t> v) {
  constexpr bool kFloat = std::is_same_v<acc_t, float>;
  static_assert(kFloat || std::is_same_v<acc_t, double>);
#if (defined(__x86_64__) || defined(_M_X64)) && TORCH_TCONV_CPU_VECTOR_BYTES == 64
  if constexpr (kFloat) _mm512_stream_ps(p, reinterpret_cast<__m512&>(v));
  else _mm512_stream_pd(p, reinterpret_cast<__m512d&>(v));
#elif (defined(__x86_64__) || defined(_M_X64)) && TORCH_TCONV_CPU_VECTOR_BYTES == 32
  if constexpr (kFloat) _mm256_stream_ps(p, reinterpret_cast<__m256&>(v));
  else _mm256_stream_pd(p, reinterpret_cast<__m256d&>(v));
#elif defined(__x86_64__) || defined(_M_X64)
  if constexpr (kFloat) _mm_stream_ps(p, reinterpret_cast<__m128&>(v));
  else _mm_stream_pd(p, reinterpret_cast<__m128d&>(v));
#else
  store_vector(p, v);
#endif
}

// Results from this size up are written with streaming stores: larger than
// the last-level cache of the machines we build on (16-32 MiB), so a plain
// store's line would be evicted before anything reads it again.
constexpr int64_t kStreamingStoreMinBytes = int64_t(16) << 20;

inline void stream_fence() {
#if defined(__x86_64__) || defined(_M_X64)
  _mm_sfence();
#endif
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
  // Where a term may load in any lane of a phase, its range or not:
  // [loads_lo, loads_hi) around the input plane.
  int64_t loads_lo = 0;
  int64_t loads_hi = 0;
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
        for (int64_t t = table.begin.back(); t < int64_t(table.terms.size()); ++t) {
          table.loads_lo = std::min(table.loads_lo, table.terms[t].base);
          table.loads_hi = std::max(table.loads_hi, table.terms[t].base + table.length);
        }
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

// What the rows of one output plane (n, oc) read: its input plane, at
// x_offset in the input, its filter and its bias.
template <typename acc_t>
struct PlaneOperands {
  const acc_t* x;
  int64_t x_offset;
  const acc_t* w;
  acc_t init;
};

template <typename acc_t, typename index_t>
inline PlaneOperands<acc_t> plane_operands(const acc_t* input, const acc_t* weight,
                                           const acc_t* bias, const KernelGeometry<index_t>& g,
                                           int64_t plane) {
  const int64_t n = plane / g.out_channels(), oc = plane % g.out_channels();
  const int64_t ic = oc / g.out_channels_per_group, oc_g = oc % g.out_channels_per_group;
  const int64_t x_offset = (n * g.in_channels() + ic) * g.in_numel();
  return {input + x_offset, x_offset, weight + (ic * g.out_channels_per_group + oc_g) * g.taps(),
          bias ? bias[oc] : acc_t(0)};
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
  const int64_t outer_row = row % outer_rows;
  const PlaneOperands<acc_t> plane = plane_operands(input, weight, bias, g, row / outer_rows);
  const index_t s = g.stride[2];
  for (index_t phase = 0; phase < s; ++phase) {
    const int64_t i = outer_row * s + phase;
    const int64_t first = table.begin[i];
    sum_phase(table.terms.data() + first, table.begin[i + 1] - first, table.span_lo[i],
              table.span_hi[i], plane.x, plane.w, plane.init, table.length,
              acc + phase * table.length);
  }
}

// Stride 2 (most upsampling layers), rows of at least one register per
// phase: the two phases of a row are summed side by side over the same phase
// positions and interleaved in registers, so that each output vector is
// stored once, straight into the output, and two planes are summed at once,
// sharing the row's terms. In `perf` of the path above on the k4 s2 p1
// depthwise forward (bench/NOTES.md, 2026-12-07), its second pass that
// interleaves an accumulator row into the output took about 15% of the
// samples, the divisions that place each row 10%, and the scalar loop over
// the positions some term does not cover 5-10%. Here those edge chunks are
// vector chunks too: a term adds -0.0, the identity of IEEE addition (x +
// -0.0 is x for every x, -0.0 and NaN included), in the lanes it does not
// cover, which keeps every element's bits. Its product there is discarded,
// not multiplied away, so an inf or NaN read beyond its range changes
// nothing.
template <typename acc_t>
struct LaneIndexOf {
  using lane_t = std::conditional_t<sizeof(acc_t) == 4, int32_t, int64_t>;
  typedef lane_t type __attribute__((vector_size(blocked::kVectorBytes)));
};
template <typename acc_t>
using LaneIndex = typename LaneIndexOf<acc_t>::type;

template <typename acc_t, size_t... lane>
inline LaneIndex<acc_t> lane_offsets(std::index_sequence<lane...>) {
  return LaneIndex<acc_t>{static_cast<typename LaneIndexOf<acc_t>::lane_t>(lane)...};
}

// The interleaving of two phase vectors a (even outputs) and b (odd): the
// first output vector takes lanes 0, L, 1, L + 1, ... of (a, b), the second
// the same from lane L / 2 on.
template <typename acc_t, size_t... lane>
inline LaneIndex<acc_t> interleave_lanes(int64_t first, std::index_sequence<lane...>) {
  constexpr int64_t kLanes = kRowLanes<acc_t>;
  return LaneIndex<acc_t>{static_cast<typename LaneIndexOf<acc_t>::lane_t>(
      (int64_t(lane) % 2) * kLanes + first + int64_t(lane) / 2)...};
}

// Phase positions are compared in lanes as wide as acc_t's: 32 bits for
// float32.
template <typename index_t>
bool forward_rows_interleave_in_registers(const ConvGeometry<index_t>& g, int lanes) {
  return g.stride[2] == 2 && g.out_size[2] / 2 >= int64_t(lanes) &&
         int64_t(g.out_size[2]) <= std::numeric_limits<int32_t>::max();
}

// The phase sums of chunk positions [q0[k], q0[k] + L) for both phases of
// the same outer row of P planes, K chunks at once (2PK independent chains
// for the adder; the planes share the terms, and the masks), stored
// interleaved as the outputs [2 q0[k], 2 q0[k] + 2L) of out[plane].
// Masked: the terms' ranges are applied lane by lane (edge chunks); else
// every term covers every lane.
template <int P, int K, bool kMasked, typename acc_t>
inline void sum_interleaved_chunks(const PhaseTerm* const terms[2], const int64_t counts[2],
                                   const PlaneOperands<acc_t>* planes, const int64_t* q0,
                                   bool stream, acc_t* const* out) {
  using Vector = RowVector<acc_t>;
  using Lanes = std::make_index_sequence<kRowLanes<acc_t>>;
  using lane_t = typename LaneIndexOf<acc_t>::lane_t;
  constexpr int kLanes = kRowLanes<acc_t>;
  Vector sums[P][2][K];
  for (int i = 0; i < P; ++i) {
    for (int p = 0; p < 2; ++p) {
      for (int k = 0; k < K; ++k) sums[i][p][k] = broadcast(planes[i].init);
    }
  }
  [[maybe_unused]] LaneIndex<acc_t> positions[K];
  if constexpr (kMasked) {
    for (int k = 0; k < K; ++k) positions[k] = lane_offsets<acc_t>(Lanes{}) + lane_t(q0[k]);
  }
  for (int p = 0; p < 2; ++p) {
    for (int64_t t = 0; t < counts[p]; ++t) {
      const PhaseTerm& term = terms[p][t];
      // In an edge chunk most terms still cover every lane.
      bool whole = true;
      if constexpr (kMasked) {
        for (int k = 0; k < K; ++k) whole = whole && term.lo <= q0[k] && q0[k] + kLanes <= term.hi;
      }
      if (whole) {
        for (int i = 0; i < P; ++i) {
          const Vector weight = broadcast(planes[i].w[term.weight]);
          const acc_t* row = planes[i].x + term.base;
          for (int k = 0; k < K; ++k) sums[i][p][k] += load_vector(row + q0[k]) * weight;
        }
        continue;
      }
      if constexpr (kMasked) {
        LaneIndex<acc_t> covered[K];
        for (int k = 0; k < K; ++k) {
          covered[k] = (positions[k] >= lane_t(term.lo)) & (positions[k] < lane_t(term.hi));
        }
        for (int i = 0; i < P; ++i) {
          const Vector weight = broadcast(planes[i].w[term.weight]);
          const acc_t* row = planes[i].x + term.base;
          for (int k = 0; k < K; ++k) {
            const Vector product = load_vector(row + q0[k]) * weight;
            sums[i][p][k] += covered[k] ? product : broadcast(acc_t(-0.0));
          }
        }
      }
    }
  }
  const LaneIndex<acc_t> low = interleave_lanes<acc_t>(0, Lanes{});
  const LaneIndex<acc_t> high = interleave_lanes<acc_t>(kLanes / 2, Lanes{});
  for (int i = 0; i < P; ++i) {
    for (int k = 0; k < K; ++k) {
      acc_t* dst = out[i] + 2 * q0[k];
      const Vector first = __builtin_shuffle(sums[i][0][k], sums[i][1][k], low);
      const Vector second = __builtin_shuffle(sums[i][0][k], sums[i][1][k], high);
      if (stream && reinterpret_cast<uintptr_t>(dst) % sizeof(Vector) == 0) {
        stream_vector(dst, first);
        stream_vector(dst + kLanes, second);
      } else {
        store_vector(dst, first);
        store_vector(dst + kLanes, second);
      }
    }
  }
}

// Whether the masked chunks of an input plane (x_offset in a tensor of
// input_numel elements) load inside the tensor: every plane but the first
// and last, unless the padding reaches further than a plane.
inline bool masked_loads_in_tensor(const PhaseTermTable& table, int64_t x_offset,
                                   int64_t input_numel) {
  return x_offset + table.loads_lo >= 0 && x_offset + table.loads_hi <= input_numel;
}

// Outer row `outer_row` of P planes of a stride-2 layer that
// forward_rows_fit_registers and forward_rows_interleave_in_registers
// admit, straight into out[plane] (each the row's W_out outputs). A masked
// chunk loads lanes beyond its terms' ranges: with `masked_loads_safe`
// false (see masked_loads_in_tensor), the edge chunks are summed position
// by position instead.
template <int P, typename acc_t, typename index_t>
inline void direct_forward_rows_interleaved(const PlaneOperands<acc_t>* planes,
                                            bool masked_loads_safe,
                                            const KernelGeometry<index_t>& g,
                                            const PhaseTermTable& table, int64_t outer_row,
                                            bool stream, acc_t* const* out) {
  constexpr int kLanes = kRowLanes<acc_t>;
  constexpr int kChunksAtOnce = 2;
  const PhaseTerm* terms[2];
  int64_t counts[2], lo = 0, hi = 0;
  for (int p = 0; p < 2; ++p) {
    const int64_t i = outer_row * 2 + p;
    terms[p] = table.terms.data() + table.begin[i];
    counts[p] = table.begin[i + 1] - table.begin[i];
    lo = std::max(lo, table.span_lo[i]);
    hi = p == 0 ? table.span_hi[i] : std::min(hi, table.span_hi[i]);
  }
  const auto chunk_by_positions = [&](int64_t q) {
    for (int i = 0; i < P; ++i) {
      const PlaneOperands<acc_t>& plane = planes[i];
      for (int64_t j = q; j < q + kLanes; ++j) {
        for (int p = 0; p < 2; ++p) {
          out[i][2 * j + p] =
              sum_phase_position(terms[p], counts[p], plane.x, plane.w, plane.init, j);
        }
      }
    }
  };
  // Positions [0, pairs) of both phases: the whole row but the last output
  // of an odd width, in chunks whose last one is moved back to end at
  // `pairs` (its overlap is computed twice, to the same bits). The chunks
  // every term covers go kChunksAtOnce at a time; the others one by one,
  // masked.
  const int64_t width = g.out_size[2], pairs = width / 2;
  const int64_t chunks = (pairs + kLanes - 1) / kLanes;
  int64_t q0[kChunksAtOnce];
  int held = 0;
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    const int64_t q = std::min<int64_t>(chunk * kLanes, pairs - kLanes);
    if (q >= lo && q + kLanes <= hi) {
      q0[held++] = q;
      if (held == kChunksAtOnce) {
        sum_interleaved_chunks<P, kChunksAtOnce, false>(terms, counts, planes, q0, stream, out);
        held = 0;
      }
    } else if (masked_loads_safe) {
      sum_interleaved_chunks<P, 1, true>(terms, counts, planes, &q, stream, out);
    } else {
      chunk_by_positions(q);
    }
  }
  for (int k = 0; k < held; ++k) {
    sum_interleaved_chunks<P, 1, false>(terms, counts, planes, q0 + k, stream, out);
  }
  if (width % 2) {
    for (int i = 0; i < P; ++i) {
      out[i][width - 1] = sum_phase_position(terms[0], counts[0], planes[i].x, planes[i].w,
                                             planes[i].init, pairs);
    }
  }
}

TORCH_TCONV_ISA_NAMESPACE_END
}  // namespace torch_tconv
