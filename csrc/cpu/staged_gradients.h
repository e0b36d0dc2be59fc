// The direct path's gradients for float32 and float64 on the CPU, from
// copies of grad_output planes laid out for whole-vector loads, summed in
// vector registers (GCC's vector extensions: never seen by nvcc).
//
// The row bodies (kernels/row_bodies.h) read grad_output through stride-s
// loads, which become shuffles in every term, and walk the planes again for
// each tap: direct_weight_grad_by_rows computes one weight element at a time
// (each of a k4 layer's 16 taps reads the channel's planes again), and
// direct_input_grad_row adds tap by tap into a row of accumulators in memory.
// Those two were most of the depthwise benchmark layer's forward+backward in
// `perf` (bench/NOTES.md). Here a task copies a grad_output plane once, its
// rows split into their stride phases, so that a tap's terms are a
// contiguous run; then the weight gradient adds every tap's terms of a
// channel pair from it, and the input gradient sums each chunk of an input
// row over its taps.
//
// Weight gradient, same bits as the row and element bodies: each tap keeps
// their kWeightGradLanes partial sums (term of input column i2 in lane i2
// mod kWeightGradLanes), one lane per vector element, adds its terms in
// their order (sample, input row, input column), and adds the lanes in lane
// order at the end; setup.py turns off contraction into FMAs. The positions
// of a vector chunk that a tap does not reach add +0.0, which changes no
// partial sum: the sums start at +0.0, and a sum of two values is -0.0 only
// where both are, so no partial sum is ever -0.0.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../kernels/row_bodies.h"
#include "blocked_phase_forward.h"

namespace torch_tconv {
TORCH_TCONV_ISA_NAMESPACE_BEGIN

// A chunk of kWeightGradLanes values (the partial sums of one tap, or
// positions of an input row) is held as kParts vectors of the variant's
// width, or of the chunk's where that is narrower (AVX-512 float32): a
// single vector type of the chunk's 64 bytes of float64 was split by GCC
// through the stack in the AVX2 variant, at three times the row bodies'
// time.
template <typename acc_t>
struct ChunkParts {
  static constexpr int kPartBytes =
      std::min<int>(blocked::kVectorBytes, kWeightGradLanes * int(sizeof(acc_t)));
  static constexpr int kLanes = kPartBytes / int(sizeof(acc_t));
  static constexpr int kParts = kWeightGradLanes / kLanes;
  using lane_int = std::conditional_t<sizeof(acc_t) == 8, int64_t, int32_t>;
  typedef acc_t Part __attribute__((vector_size(kPartBytes)));
  typedef lane_int Mask __attribute__((vector_size(kPartBytes)));
};

// Whole-vector copies to and from any address of an acc_t, through memcpy,
// which GCC makes one unaligned move; no vector is passed by value.
template <typename acc_t, typename Part>
inline void load_part(const acc_t* p, Part& v) {
  std::memcpy(&v, p, sizeof(Part));
}

template <typename acc_t, typename Part>
inline void store_part(acc_t* p, const Part& v) {
  std::memcpy(p, &v, sizeof(Part));
}

// The lane numbers 0, 1, ... of a part.
template <typename acc_t>
inline void part_lane_numbers(typename ChunkParts<acc_t>::Mask& lanes) {
  lanes = typename ChunkParts<acc_t>::Mask{};
  for (int j = 0; j < ChunkParts<acc_t>::kLanes; ++j) lanes[j] = j;
}

// A part's term with its lanes whose columns (lanes + first) lie outside
// [lo, hi) set to +0.0.
template <typename acc_t>
inline void mask_columns(typename ChunkParts<acc_t>::Part& term,
                         const typename ChunkParts<acc_t>::Mask& lanes, int64_t first, int64_t lo,
                         int64_t hi) {
  using P = ChunkParts<acc_t>;
  using lane_int = typename P::lane_int;
  const typename P::Mask column = lanes + static_cast<lane_int>(first);
  const typename P::Mask inside =
      (column >= static_cast<lane_int>(lo)) & (column < static_cast<lane_int>(hi));
  term = (typename P::Part)((typename P::Mask)term & inside);
}

// Where a task's copies of one sample's planes put each value. Input rows are
// padded to whole chunks of kWeightGradLanes columns, or, where they are
// whole chunks already, read where they are. Output row o's stride
// phase p (its columns p, p + s, p + 2s, ...) is a run of phase_row values
// whose position pad_lo + q holds column q * s + p: tap k2's terms of input
// columns [8m, 8m + 8) are then the run's positions from
// pad_lo + q0(k2) + 8m on, inside the run for every chunk m and tap.
struct StagedPlanes {
  int64_t chunks;     // of kWeightGradLanes columns per input row
  int64_t x_row;      // chunks * kWeightGradLanes
  bool x_in_place;    // x_row is the input's row: no copy
  int64_t pad_lo;     // -(smallest q0), or 0
  int64_t phase_row;  // pad_lo + x_row + (largest q0, or 0)
  int64_t gy_row;     // stride * phase_row
  int64_t in_rows;    // outer input rows (over the two outer dims)
  int64_t out_rows;
  int64_t elements() const {
    return (x_in_place ? 0 : in_rows * x_row) + out_rows * gy_row;
  }
};

// One tap k2's terms in an output row: input columns [lo, hi), whose output
// columns are phase `phase` at q = i2 + q0.
struct TapColumns {
  int64_t lo;
  int64_t hi;
  int64_t phase;
  int64_t q0;
};

template <typename index_t>
std::vector<TapColumns> tap_columns(const KernelGeometry<index_t>& g) {
  std::vector<TapColumns> taps;
  const int64_t s = g.stride[2];
  for (index_t k2 = 0; k2 < g.kernel[2]; ++k2) {
    const InnerRange<index_t> r = scatter_range(g, k2, RowPart<index_t>{0, g.out_size[2]});
    taps.push_back({r.lo, r.hi, r.phase, (int64_t(r.shift) - r.phase) / s});
  }
  return taps;
}

template <typename index_t>
StagedPlanes staged_planes_layout(const KernelGeometry<index_t>& g,
                                  const std::vector<TapColumns>& taps) {
  StagedPlanes st{};
  st.chunks = (int64_t(g.in_size[2]) + kWeightGradLanes - 1) / kWeightGradLanes;
  st.x_row = st.chunks * kWeightGradLanes;
  st.x_in_place = st.x_row == g.in_size[2];
  int64_t q0_min = 0, q0_max = 0;
  for (const auto& t : taps) {
    q0_min = std::min(q0_min, t.q0);
    q0_max = std::max(q0_max, t.q0);
  }
  st.pad_lo = -q0_min;
  st.phase_row = st.pad_lo + st.x_row + q0_max;
  st.gy_row = int64_t(g.stride[2]) * st.phase_row;
  st.in_rows = int64_t(g.in_size[0]) * g.in_size[1];
  st.out_rows = int64_t(g.out_size[0]) * g.out_size[1];
  return st;
}

// Layers whose two staged planes stay within this many elements per task
// (2 MiB of float32); larger ones take the row body.
constexpr int64_t kMaxStagedElements = int64_t(1) << 19;

template <typename index_t>
bool staging_fits(const KernelGeometry<index_t>& g) {
  return staged_planes_layout(g, tap_columns(g)).elements() <= kMaxStagedElements;
}

// A task per channel pair: layers with fewer pairs than threads (a
// one-channel 1-D layer) keep the row body, which splits its work by weight
// element (the 1-D layer of 32768 samples: 0.62-0.78 ms backward with the
// row bodies, 0.92-1.11 with these).
template <typename index_t>
bool weight_grad_fits_lanes(const KernelGeometry<index_t>& g) {
  return int64_t(g.in_channels()) * g.out_channels_per_group >= at::get_num_threads() &&
         staging_fits(g);
}

// Columns [0, count0) and [0, count1) of phases 0 and 1 of a stride-2 row,
// in one pass over it, which reads the row from memory once: a first loop
// per phase took about as long as all the weight gradient's sums, its time
// in the load.
template <typename acc_t>
void split_stride2_row(const acc_t* __restrict__ src, int64_t count0, int64_t count1,
                       acc_t* __restrict__ phase0, acc_t* __restrict__ phase1) {
  int64_t q = 0;
  for (; q < count1; ++q) {
    phase0[q] = src[2 * q];
    phase1[q] = src[2 * q + 1];
  }
  for (; q < count0; ++q) phase0[q] = src[2 * q];
}

// Copies one grad_output plane into gy_stage (StagedPlanes's layout).
// Padding positions keep what they hold: every term read from them is
// masked off.
template <typename acc_t, typename index_t>
void stage_grad_output_plane(const acc_t* gy, const KernelGeometry<index_t>& g,
                             const StagedPlanes& st, acc_t* gy_stage) {
  const int64_t out_w = g.out_size[2], s = g.stride[2];
  const int64_t room = st.phase_row - st.pad_lo;
  // Columns [0, phase_count(p)) of phase p are staged: those that exist, up
  // to what the runs hold.
  auto phase_count = [&](int64_t p) {
    return p < out_w ? std::min((out_w - p + s - 1) / s, room) : int64_t(0);
  };
  for (int64_t row = 0; row < st.out_rows; ++row) {
    const acc_t* src = gy + row * out_w;
    acc_t* dst = gy_stage + row * st.gy_row + st.pad_lo;
    if (s == 1) {
      std::copy(src, src + phase_count(0), dst);
    } else if (s == 2) {
      split_stride2_row(src, phase_count(0), phase_count(1), dst, dst + st.phase_row);
    } else {
      for (int64_t p = 0; p < s; ++p) {
        acc_t* phase = dst + p * st.phase_row;
        for (int64_t q = 0, count = phase_count(p); q < count; ++q) phase[q] = src[q * s + p];
      }
    }
  }
}

// Copies sample n's grad_output plane of channel oc into gy_stage, and
// unless the input rows are read in place its input plane of channel ic into
// x_stage.
template <typename acc_t, typename index_t>
void stage_weight_grad_planes(const acc_t* x, const acc_t* gy, const KernelGeometry<index_t>& g,
                              const StagedPlanes& st, acc_t* x_stage, acc_t* gy_stage) {
  const int64_t in_w = g.in_size[2];
  if (!st.x_in_place) {
    for (int64_t row = 0; row < st.in_rows; ++row) {
      std::copy(x + row * in_w, x + (row + 1) * in_w, x_stage + row * st.x_row);
    }
  }
  stage_grad_output_plane(gy, g, st, gy_stage);
}

// Up to this many taps of one outer tap are summed at once: independent
// chains for the adder (a tap's lanes are one chain, in its terms' order),
// with their sums, the input chunk and a product in registers (AVX2 has 16:
// four float64 taps take eight).
constexpr int kWeightGradTapsAtOnce = 4;
static_assert(kWeightGradTapsAtOnce == 4, "add_staged_weight_grad_terms' switch takes 1 to 4");

// Adds sample n's terms of the taps (k0, k1, columns[t]) for t < G to their
// lanes tap_sums[t][0, kWeightGradLanes), from its staged planes, input row by
// input row and chunk by chunk, each tap's terms in their order. The chunks
// [0, full_lo) and [full_hi, chunks) hold positions some tap of the group
// does not reach, and mask them; the others need no mask.
template <int G, typename acc_t, typename index_t>
void add_tap_group_terms(const KernelGeometry<index_t>& g, const StagedPlanes& st,
                         const TapColumns* columns, index_t k0, index_t k1,
                         const acc_t* x_stage, const acc_t* gy_stage, acc_t* const* tap_sums) {
  using P = ChunkParts<acc_t>;
  constexpr int64_t L = kWeightGradLanes;
  typename P::Mask lanes;
  part_lane_numbers<acc_t>(lanes);
  int64_t full_lo = 0, full_hi = st.chunks, run[G];
  typename P::Part sum[G][P::kParts];
  for (int t = 0; t < G; ++t) {
    full_lo = std::max(full_lo, (columns[t].lo + L - 1) / L);
    full_hi = std::min(full_hi, columns[t].hi / L);
    run[t] = st.pad_lo + columns[t].phase * st.phase_row + columns[t].q0;
    for (int i = 0; i < P::kParts; ++i) load_part(tap_sums[t] + i * P::kLanes, sum[t][i]);
  }
  full_hi = std::max(full_hi, full_lo);
  auto add_chunk = [&](const acc_t* x_row, const acc_t* gy_row, int64_t m, bool masked) {
    for (int i = 0; i < P::kParts; ++i) {
      const int64_t first = m * L + i * P::kLanes;
      typename P::Part x;
      load_part(x_row + first, x);
      for (int t = 0; t < G; ++t) {
        typename P::Part gy;
        load_part(gy_row + run[t] + first, gy);
        typename P::Part term = x * gy;
        if (masked) mask_columns<acc_t>(term, lanes, first, columns[t].lo, columns[t].hi);
        sum[t][i] += term;
      }
    }
  };
  for (int64_t row = 0; row < st.in_rows; ++row) {
    index_t o0, o1;
    if (!scatter_coordinate(g, 0, index_t(row / g.in_size[1]), k0, o0) ||
        !scatter_coordinate(g, 1, index_t(row % g.in_size[1]), k1, o1)) {
      continue;
    }
    const acc_t* x_row = x_stage + row * st.x_row;
    const acc_t* gy_row = gy_stage + (int64_t(o0) * g.out_size[1] + o1) * st.gy_row;
    for (int64_t m = 0; m < full_lo; ++m) add_chunk(x_row, gy_row, m, true);
    for (int64_t m = full_lo; m < full_hi; ++m) add_chunk(x_row, gy_row, m, false);
    for (int64_t m = full_hi; m < st.chunks; ++m) add_chunk(x_row, gy_row, m, true);
  }
  for (int t = 0; t < G; ++t) {
    for (int i = 0; i < P::kParts; ++i) store_part(tap_sums[t] + i * P::kLanes, sum[t][i]);
  }
}

// Adds sample n's terms of every tap of one channel pair to the lanes
// sums[tap * kWeightGradLanes + lane], up to kWeightGradTapsAtOnce taps of
// one outer tap at a time. Taps that reach no input column (heavy padding)
// are left at +0.0.
template <typename acc_t, typename index_t>
void add_staged_weight_grad_terms(const KernelGeometry<index_t>& g, const StagedPlanes& st,
                                  const std::vector<TapColumns>& taps,
                                  const acc_t* x_stage, const acc_t* gy_stage, acc_t* sums) {
  const int64_t k2_count = g.kernel[2];
  for (int64_t tap = 0; tap < g.taps();) {
    const int64_t outer_tap = tap / k2_count, k2 = tap % k2_count;
    const int64_t count = std::min<int64_t>(kWeightGradTapsAtOnce, k2_count - k2);
    const index_t k0 = index_t(outer_tap / g.kernel[1]), k1 = index_t(outer_tap % g.kernel[1]);
    // The group's taps that reach some column, and their lanes.
    TapColumns columns[kWeightGradTapsAtOnce];
    acc_t* tap_sums[kWeightGradTapsAtOnce];
    int reaching = 0;
    for (int64_t t = 0; t < count; ++t) {
      if (taps[k2 + t].lo >= taps[k2 + t].hi) continue;
      columns[reaching] = taps[k2 + t];
      tap_sums[reaching] = sums + (tap + t) * kWeightGradLanes;
      ++reaching;
    }
    switch (reaching) {
      case 4: add_tap_group_terms<4>(g, st, columns, k0, k1, x_stage, gy_stage, tap_sums); break;
      case 3: add_tap_group_terms<3>(g, st, columns, k0, k1, x_stage, gy_stage, tap_sums); break;
      case 2: add_tap_group_terms<2>(g, st, columns, k0, k1, x_stage, gy_stage, tap_sums); break;
      case 1: add_tap_group_terms<1>(g, st, columns, k0, k1, x_stage, gy_stage, tap_sums); break;
      default: break;
    }
    tap += count;
  }
}

// A channel pair's weight gradient, tap_count elements: each tap's lanes
// added in lane order.
template <typename acc_t>
void store_weight_grad_totals(const acc_t* sums, int64_t tap_count, acc_t* grad_weight) {
  for (int64_t tap = 0; tap < tap_count; ++tap) {
    const acc_t* lanes = sums + tap * kWeightGradLanes;
    acc_t total = lanes[0];
    for (int lane = 1; lane < kWeightGradLanes; ++lane) total += lanes[lane];
    grad_weight[tap] = total;
  }
}

// grad_weight of the direct path, as direct_weight_grad_by_rows computes
// each element; a task takes a channel pair (ic, oc_g) and all its taps.
template <typename acc_t, typename index_t>
void direct_weight_grad_in_lanes(const acc_t* input, const acc_t* grad_output,
                                 const KernelGeometry<index_t>& g, acc_t* grad_weight) {
  const std::vector<TapColumns> taps = tap_columns(g);
  const StagedPlanes st = staged_planes_layout(g, taps);
  const int64_t tap_count = g.taps();
  const int64_t pairs = int64_t(g.in_channels()) * g.out_channels_per_group;
  at::parallel_for(0, pairs, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> x_stage(st.x_in_place ? 0 : st.in_rows * st.x_row, acc_t(0));
    std::vector<acc_t> gy_stage(st.out_rows * st.gy_row, acc_t(0));
    std::vector<acc_t> sums(tap_count * kWeightGradLanes);
    for (int64_t pair = begin; pair < end; ++pair) {
      const int64_t ic = pair / g.out_channels_per_group;
      const int64_t oc = ic / g.in_channels_per_group * g.out_channels_per_group +
                         pair % g.out_channels_per_group;
      std::fill(sums.begin(), sums.end(), acc_t(0));
      for (int64_t n = 0; n < g.batch; ++n) {
        const acc_t* x = input + (n * g.in_channels() + ic) * g.in_numel();
        stage_weight_grad_planes(x, grad_output + (n * g.out_channels() + oc) * g.out_numel(), g,
                                 st, x_stage.data(), gy_stage.data());
        add_staged_weight_grad_terms(g, st, taps, st.x_in_place ? x : x_stage.data(),
                                     gy_stage.data(), sums.data());
      }
      store_weight_grad_totals(sums.data(), tap_count, grad_weight + pair * tap_count);
    }
  });
}

// The input gradient of layers with one output channel per group (depthwise
// layers), from the same staged grad_output planes: each input row's chunks
// of kWeightGradLanes positions sum their taps in registers, G chunks at once
// (independent chains), and are stored once. direct_input_grad_row adds tap
// by tap into a row of accumulators in memory, loading and storing every
// accumulator once per tap, through stride-s reads of grad_output.
//
// Same bits as that row body: every element adds its taps in its order
// (outer taps, then k2), from +0.0, without FMAs; a tap that does not reach
// an element adds +0.0 to it, which changes no sum (see above). The last
// chunk of a row moves back to end at the row's end, computing the overlap
// twice, to the same bits.
template <typename index_t>
bool input_grad_fits_lanes(const KernelGeometry<index_t>& g) {
  return g.out_channels_per_group == 1 && g.in_size[2] >= kWeightGradLanes &&
         int64_t(g.batch) * g.in_channels() >= at::get_num_threads() && staging_fits(g);
}

// Chunks beginning at starts[0..G) of input row (i0, i1), from the staged
// grad_output plane, into gx_row.
template <int G, typename acc_t, typename index_t>
void input_grad_chunks(const KernelGeometry<index_t>& g, const StagedPlanes& st,
                       const std::vector<TapColumns>& taps, const acc_t* w,
                       const acc_t* gy_stage, index_t i0, index_t i1, const int64_t* starts,
                       bool masked, acc_t* gx_row) {
  using P = ChunkParts<acc_t>;
  typename P::Mask lanes;
  part_lane_numbers<acc_t>(lanes);
  typename P::Part sum[G][P::kParts];
  for (int c = 0; c < G; ++c) {
    for (int i = 0; i < P::kParts; ++i) sum[c][i] = typename P::Part{};
  }
  const int64_t k2_count = g.kernel[2];
  for_each_outer_tap_from(g, i0, i1, [&](index_t outer_tap, index_t out_row) {
    const acc_t* gy_row = gy_stage + int64_t(out_row) * st.gy_row + st.pad_lo;
    for (int64_t k2 = 0; k2 < k2_count; ++k2) {
      const TapColumns& t = taps[k2];
      if (t.lo >= t.hi) continue;
      const acc_t* run = gy_row + t.phase * st.phase_row + t.q0;
      const acc_t wk = w[int64_t(outer_tap) * k2_count + k2];
      for (int c = 0; c < G; ++c) {
        for (int i = 0; i < P::kParts; ++i) {
          const int64_t first = starts[c] + i * P::kLanes;
          typename P::Part gy;
          load_part(run + first, gy);
          typename P::Part term = wk * gy;
          if (masked) mask_columns<acc_t>(term, lanes, first, t.lo, t.hi);
          sum[c][i] += term;
        }
      }
    }
  });
  for (int c = 0; c < G; ++c) {
    for (int i = 0; i < P::kParts; ++i) store_part(gx_row + starts[c] + i * P::kLanes, sum[c][i]);
  }
}

// The chunk starts of an input row (the last one moved back to end at the
// row's end): those that every reaching tap covers whole, and the edges,
// which need masks.
struct InputGradChunks {
  std::vector<int64_t> whole;
  std::vector<int64_t> edges;
};

template <typename index_t>
InputGradChunks input_grad_chunks_of_rows(const KernelGeometry<index_t>& g,
                                          const std::vector<TapColumns>& taps) {
  constexpr int64_t L = kWeightGradLanes;
  const int64_t in_w = g.in_size[2];
  int64_t reach_lo = 0, reach_hi = in_w;
  for (const auto& t : taps) {
    if (t.lo >= t.hi) continue;
    reach_lo = std::max(reach_lo, t.lo);
    reach_hi = std::min(reach_hi, t.hi);
  }
  InputGradChunks chunks;
  for (int64_t c = 0; c < in_w; c += L) {
    const int64_t start = std::min(c, in_w - L);
    (start >= reach_lo && start + L <= reach_hi ? chunks.whole : chunks.edges).push_back(start);
  }
  return chunks;
}

// One input plane's gradient (gx_plane, in_numel elements) from its staged
// grad_output plane and its filter w.
template <typename acc_t, typename index_t>
void input_grad_plane_from_stage(const KernelGeometry<index_t>& g, const StagedPlanes& st,
                                 const std::vector<TapColumns>& taps,
                                 const InputGradChunks& chunks, const acc_t* w,
                                 const acc_t* gy_stage, acc_t* gx_plane) {
  constexpr int kChunksAtOnce = 4;
  for (int64_t row = 0; row < st.in_rows; ++row) {
    const index_t i0 = index_t(row / g.in_size[1]), i1 = index_t(row % g.in_size[1]);
    acc_t* gx_row = gx_plane + row * g.in_size[2];
    for (const bool masked : {false, true}) {
      const std::vector<int64_t>& starts = masked ? chunks.edges : chunks.whole;
      const int64_t count = int64_t(starts.size());
      for (int64_t c = 0; c < count; c += kChunksAtOnce) {
        auto sum_chunks = [&](auto at_once) {
          input_grad_chunks<decltype(at_once)::value>(g, st, taps, w, gy_stage, i0, i1,
                                                      starts.data() + c, masked, gx_row);
        };
        switch (std::min<int64_t>(kChunksAtOnce, count - c)) {
          case 4: sum_chunks(std::integral_constant<int, 4>{}); break;
          case 3: sum_chunks(std::integral_constant<int, 3>{}); break;
          case 2: sum_chunks(std::integral_constant<int, 2>{}); break;
          default: sum_chunks(std::integral_constant<int, 1>{}); break;
        }
      }
    }
  }
}

template <typename acc_t, typename index_t>
void direct_input_grad_in_lanes(const acc_t* grad_output, const acc_t* weight,
                                const KernelGeometry<index_t>& g, acc_t* grad_input) {
  const std::vector<TapColumns> taps = tap_columns(g);
  const StagedPlanes st = staged_planes_layout(g, taps);
  const InputGradChunks chunks = input_grad_chunks_of_rows(g, taps);
  const int64_t planes = int64_t(g.batch) * g.in_channels();
  at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> gy_stage(st.out_rows * st.gy_row, acc_t(0));
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t n = plane / g.in_channels(), ic = plane % g.in_channels();
      // One output channel per group: that of channel ic's group.
      const int64_t oc = ic / g.in_channels_per_group;
      stage_grad_output_plane(grad_output + (n * g.out_channels() + oc) * g.out_numel(), g, st,
                              gy_stage.data());
      input_grad_plane_from_stage(g, st, taps, chunks, weight + ic * g.taps(), gy_stage.data(),
                                  grad_input + plane * g.in_numel());
    }
  });
}

// Both gradients of a depthwise layer (one input and one output channel per
// group) at once: a task takes a channel, and each sample's grad_output plane
// of it is staged once for the two. Run one after the other, each gradient
// read and staged every grad_output plane on its own: in `perf` of the
// benchmark's depthwise backward, those copies were 505 samples against the
// input gradient's 612 and the weight gradient's 349 (bench/NOTES.md). Same
// bits as the two above: each adds the same terms in the same order.
template <typename index_t>
bool backward_fits_lanes(const KernelGeometry<index_t>& g) {
  return g.in_channels_per_group == 1 && g.out_channels_per_group == 1 &&
         input_grad_fits_lanes(g) && weight_grad_fits_lanes(g);
}

template <typename acc_t, typename index_t>
void direct_backward_in_lanes(const acc_t* input, const acc_t* grad_output, const acc_t* weight,
                              const KernelGeometry<index_t>& g, acc_t* grad_input,
                              acc_t* grad_weight) {
  const std::vector<TapColumns> taps = tap_columns(g);
  const StagedPlanes st = staged_planes_layout(g, taps);
  const InputGradChunks chunks = input_grad_chunks_of_rows(g, taps);
  const int64_t tap_count = g.taps(), channels = g.in_channels();
  at::parallel_for(0, channels, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> x_stage(st.x_in_place ? 0 : st.in_rows * st.x_row, acc_t(0));
    std::vector<acc_t> gy_stage(st.out_rows * st.gy_row, acc_t(0));
    std::vector<acc_t> sums(tap_count * kWeightGradLanes);
    for (int64_t c = begin; c < end; ++c) {
      std::fill(sums.begin(), sums.end(), acc_t(0));
      for (int64_t n = 0; n < g.batch; ++n) {
        const int64_t plane = n * channels + c;
        const acc_t* x = input + plane * g.in_numel();
        stage_weight_grad_planes(x, grad_output + plane * g.out_numel(), g, st, x_stage.data(),
                                 gy_stage.data());
        add_staged_weight_grad_terms(g, st, taps, st.x_in_place ? x : x_stage.data(),
                                     gy_stage.data(), sums.data());
        input_grad_plane_from_stage(g, st, taps, chunks, weight + c * tap_count,
                                    gy_stage.data(), grad_input + plane * g.in_numel());
      }
      store_weight_grad_totals(sums.data(), tap_count, grad_weight + c * tap_count);
    }
  });
}

TORCH_TCONV_ISA_NAMESPACE_END
}  // namespace torch_tconv
