// The forward's phase GEMMs (kernels/phase_tiles.h) on the CPU, with
// register-blocked tiles: the "blocked" tile variant, which "auto" takes for
// float32 and float64 on the CPU. Per group and output phase,
//   out[row][oc] = bias[oc] + sum over (tap t, ic) of in[row, t][ic] * w_t[ic][oc]
// with rows the phase's outputs (n, m...) and in[row, t] the input pixel
// that tap t of the phase reads for that output, stored straight into the
// output: no column buffer, no col2im.
//
// GEMM layout at the tile (kTileRows x kTileCols, in vector registers):
//   A  per tap, kTileRows pointers to the rows' input pixels, each with its
//      C_in channels contiguous (a contiguous input is copied channels-last
//      first: packing it per task, as BLIS packs A, copies each input pixel
//      once per tap, and measured slower), or to zeros where the tap falls
//      outside the input
//   B  the weight packed per (group, phase) as [column panel][tap][ic][kTileCols],
//      zero-padded past the group's output channels
//   C  the task's sums, [row][every panel's columns], which its last step
//      stores into the output (channels-last or contiguous)
// The zeros stand for taps outside the input. They may only do so where the
// weight is finite (0 * inf is a NaN the scatter never makes): packing
// checks it, and a layer with a non-finite weight runs the scalar tiles.
//
// The tile's multiply-adds are fused (FMA) where the variant has FMA, unlike
// the rest of the library (setup.py turns contraction off so that every
// variant gives the baseline's bits): a tile without FMA runs at half the
// rate. So the variants' results differ in the last bits here, and the
// tests compare this engine with the float64 oracle, not across variants.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "../kernels/phase_tiles.h"

namespace torch_tconv {
TORCH_TCONV_ISA_NAMESPACE_BEGIN
namespace blocked {

// Vector width and register count of the variant being compiled, which
// cpu/launchers_<isa>.cpp define (the baseline: SSE2's).
#ifndef TORCH_TCONV_CPU_VECTOR_BYTES
#define TORCH_TCONV_CPU_VECTOR_BYTES 16
#define TORCH_TCONV_CPU_VECTOR_REGISTERS 16
#endif
constexpr int kVectorBytes = TORCH_TCONV_CPU_VECTOR_BYTES;
// Rows of a tile: its 2 x rows accumulators, 2 weight vectors and a
// broadcast input fill the registers (12 rows of 32 registers, 6 of 16).
constexpr int kTileRows = TORCH_TCONV_CPU_VECTOR_REGISTERS >= 32 ? 12 : 6;
constexpr int kTileVectors = 2;  // columns of a tile, in vectors

// Depth of a block (taps x input channels): its packed weight per panel,
// 256 x 32 floats, is 32 KiB of a 48 KiB L1.
constexpr int64_t kDepthBlock = 256;
// Output rows per parallel task: its tiles all pass over a depth block's
// panel before the next, and its inputs and outputs stay in L2.
constexpr int64_t kRowsPerTask = 96;
// Most sums of a task of whole output lines (a contiguous output's tasks),
// in bytes: the task's output stays in L2 until its final store. Longer
// lines run in tasks of single phases.
constexpr int64_t kLineTaskBytes = 1024 * 1024;

template <typename T>
struct Vec {
  typedef T type __attribute__((vector_size(kVectorBytes)));
  static constexpr int kLanes = kVectorBytes / sizeof(T);
};

template <typename T>
constexpr int kTileCols = kTileVectors * Vec<T>::kLanes;

#pragma GCC push_options
#pragma GCC optimize("fp-contract=fast")

// One tile: kTileRows x kTileCols sums over taps x channels of depth, into
// columns [column, column + kTileCols) of rows c[i]. a[t * kTileRows + i]: row i's input pixel for tap t,
// at the block's first channel; b: the panel's packed weight there, taps
// tap_stride apart. c = base + sums, base the bias (null: zero) or, with
// accumulate (a later depth block), c itself.
// A tile's sums into columns [column, column + kTileCols) of rows c[i]:
// c = base + sums, base the bias (null: zero) or, with accumulate, c itself.
// Inlined and fully unrolled, so that every accumulator has a constant index
// and stays in a register through the caller's loops.
template <typename T>
__attribute__((always_inline)) inline void store_sums(
    const typename Vec<T>::type (&acc)[kTileRows][kTileVectors], T* const* c, int64_t column,
    const T* bias, bool accumulate) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::kLanes;
#pragma GCC unroll 16
  for (int i = 0; i < kTileRows; ++i) {
    T* out = c[i] + column;
    for (int v = 0; v < kTileVectors; ++v) {
      V base = V{};
      if (accumulate) {
        std::memcpy(&base, out + v * L, sizeof(V));
      } else if (bias != nullptr) {
        std::memcpy(&base, bias + v * L, sizeof(V));
      }
      base += acc[i][v];
      std::memcpy(out + v * L, &base, sizeof(V));
    }
  }
}

template <typename T>
void tile(const T* const* a, int64_t taps, int64_t channels, const T* b, int64_t tap_stride,
          T* const* c, int64_t column, const T* bias, bool accumulate) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::kLanes;
  V acc[kTileRows][kTileVectors];
  for (int i = 0; i < kTileRows; ++i) {
    for (int v = 0; v < kTileVectors; ++v) acc[i][v] = V{};
  }
  for (int64_t t = 0; t < taps; ++t) {
    const T* row[kTileRows];
    for (int i = 0; i < kTileRows; ++i) row[i] = a[t * kTileRows + i];
    const T* bt = b + t * tap_stride;
    for (int64_t ic = 0; ic < channels; ++ic) {
      V w[kTileVectors];
      for (int v = 0; v < kTileVectors; ++v) {
        std::memcpy(&w[v], bt + ic * kTileCols<T> + v * L, sizeof(V));
      }
#pragma GCC unroll 16
      for (int i = 0; i < kTileRows; ++i) {
        const T x = row[i][ic];
#pragma GCC unroll 4
        for (int v = 0; v < kTileVectors; ++v) acc[i][v] += x * w[v];
      }
    }
  }
  store_sums<T>(acc, c, column, bias, accumulate);
}

#pragma GCC pop_options

// The phases of a problem, with each phase's taps, and where each kernel
// tap lands: every tap belongs to exactly one phase.
template <typename index_t>
struct PhaseList {
  std::vector<Phase<index_t>> phases;
  std::vector<std::vector<PhaseTap<index_t>>> taps;  // per phase
  std::vector<int64_t> phase_of_tap;                 // per kernel tap
  std::vector<int64_t> number_of_tap;                // its number in that phase
  int64_t max_taps = 1;
  int64_t max_rows = 0;

  explicit PhaseList(const KernelGeometry<index_t>& g)
      : taps(Phase<index_t>::count(g)), phase_of_tap(g.taps(), -1), number_of_tap(g.taps(), 0) {
    for (int64_t p = 0; p < static_cast<int64_t>(taps.size()); ++p) {
      phases.push_back(phase_of(g, index_t(p)));
      const Phase<index_t>& phase = phases.back();
      for (index_t t = 0; t < phase.taps; ++t) {
        taps[p].push_back(phase_tap(g, phase, t));
        phase_of_tap[taps[p].back().kernel_index] = p;
        number_of_tap[taps[p].back().kernel_index] = t;
      }
      max_taps = std::max<int64_t>(max_taps, phase.taps);
      max_rows = std::max<int64_t>(max_rows, phase.rows);
    }
  }
};

// The weight of every (group, phase) packed for the tiles: per group and
// phase, [panel][tap][ic][kTileCols], the columns past the group's output
// channels zero.
template <typename T>
struct PackedWeight {
  at::Tensor storage;
  std::vector<int64_t> phase_offset;  // per phase, within a group's part
  int64_t group_size = 0;             // elements per group
  int64_t panels = 0;
  // Whether every weight is finite (neither infinite nor NaN): the tiles
  // multiply missing taps' zeros by the weight, which 0 * inf would turn
  // into NaN where the layer adds nothing.
  bool finite = true;

  // Allocates storage for `groups` groups of group_size elements; returns
  // its data.
  T* allocate(int64_t groups) {
    storage = at::empty({group_size * groups},
                        at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
    return storage.template mutable_data_ptr<T>();
  }
};

// One row of a packed panel: `columns` weights `step` apart from src,
// then zeros to kTileCols. Returns whether they are all finite (x - x is 0
// exactly for the finite values), the test riding on the copy instead of a
// pass of its own over the weight.
template <typename T>
bool pack_panel_row(const T* src, int64_t step, int64_t columns, T* dst) {
  bool all_finite = true;
  for (int64_t j = 0; j < columns; ++j) {
    const T v = src[j * step];
    all_finite &= v - v == T(0);
    dst[j] = v;
  }
  for (int64_t j = columns; j < kTileCols<T>; ++j) dst[j] = T(0);
  return all_finite;
}

template <typename T, typename index_t>
PackedWeight<T> pack_weight(const T* w, const KernelGeometry<index_t>& g,
                            const PhaseList<index_t>& list) {
  constexpr int64_t NR = kTileCols<T>;
  PackedWeight<T> packed;
  const int64_t cin = g.in_channels_per_group;
  const int64_t cout = g.out_channels_per_group;
  const int64_t kernel_taps = g.taps();
  packed.panels = (cout + NR - 1) / NR;
  for (const auto& phase : list.phases) {
    packed.phase_offset.push_back(packed.group_size);
    packed.group_size += packed.panels * int64_t(phase.taps) * cin * NR;
  }
  T* data = packed.allocate(g.groups);
  std::atomic<bool> finite{true};
  // Per (group, input channel): its weight row (C_out/groups x taps) goes
  // to one row of kTileCols per (phase, panel, tap).
  at::parallel_for(0, int64_t(g.groups) * cin, 16, [&](int64_t begin, int64_t end) {
    bool all_finite = true;
    for (int64_t row = begin; row < end; ++row) {
      const int64_t group = row / cin;
      const int64_t ic = row % cin;
      const T* src = w + row * cout * kernel_taps;
      T* group_dst = data + group * packed.group_size;
      for (int64_t k = 0; k < kernel_taps; ++k) {
        const int64_t p = list.phase_of_tap[k];
        const int64_t t = list.number_of_tap[k];
        const int64_t phase_taps = list.phases[p].taps;
        T* dst = group_dst + packed.phase_offset[p] + (t * cin + ic) * NR;
        for (int64_t panel = 0; panel < packed.panels; ++panel) {
          all_finite &= pack_panel_row(src + panel * NR * kernel_taps + k, kernel_taps,
                                       std::min<int64_t>(NR, cout - panel * NR),
                                       dst + panel * phase_taps * cin * NR);
        }
      }
    }
    if (!all_finite) finite.store(false, std::memory_order_relaxed);
  });
  packed.finite = finite.load();
  return packed;
}

// The phase's row after r.
template <typename index_t>
void next_row(const Phase<index_t>& phase, PhaseRow<index_t>& r) {
  for (int j = kMaxSpatialDims - 1; j >= 0; --j) {
    if (++r.m[j] < phase.out_count[j]) return;
    r.m[j] = 0;
  }
  ++r.n;
}

// Output lines: every coordinate but the innermost, numbered (n, outer
// coordinates) row-major. Per phase, the output line of each of its own
// lines (n, m outer...), increasing: the phase's lines that land in a range
// of output lines are a range of its lines, and so a range of its rows.
template <typename index_t>
std::vector<std::vector<int64_t>> output_line_of_phase_lines(const KernelGeometry<index_t>& g,
                                                             const PhaseList<index_t>& list) {
  std::vector<std::vector<int64_t>> lines;
  for (const auto& phase : list.phases) {
    std::vector<int64_t> of_line;
    for (int64_t n = 0; n < g.batch; ++n) {
      for (int64_t m0 = 0; m0 < phase.out_count[0]; ++m0) {
        for (int64_t m1 = 0; m1 < phase.out_count[1]; ++m1) {
          const int64_t o0 = phase.residue[0] + int64_t(g.stride[0]) * m0;
          const int64_t o1 = phase.residue[1] + int64_t(g.stride[1]) * m1;
          of_line.push_back((n * g.out_size[0] + o0) * g.out_size[1] + o1);
        }
      }
    }
    lines.push_back(std::move(of_line));
  }
  return lines;
}

// Stores the first `columns` sums of each of `rows` rows (ldc apart) at
// dst[r], channels channel_stride apart: whole pixels where that is 1,
// else a channel at a time, since the rows' values of one channel share a
// few cache lines while one row's channels lie a plane apart, in the same
// L1 set where a plane is a multiple of 4 KiB.
template <typename T>
void store_rows(const T* sums, int64_t ldc, int64_t rows, int64_t columns, T* const* dst,
                int64_t channel_stride) {
  if (channel_stride == 1) {
    for (int64_t r = 0; r < rows; ++r) std::memcpy(dst[r], sums + r * ldc, columns * sizeof(T));
    return;
  }
  for (int64_t c = 0; c < columns; ++c) {
    for (int64_t r = 0; r < rows; ++r) dst[r][c * channel_stride] = sums[r * ldc + c];
  }
}

// The forward into `y` through the blocked tiles, from `x` channels-last
// (N, in..., C_in). y_channel and y_step are the output's channel and
// position strides (contiguous or channels-last, see ActivationLayout).
// Returns false, with nothing written, where the weight is not finite.
//
// Blocking, as in BLIS: a task's rows of one (group, phase) run in blocks
// of kRowsPerTask; their depth runs in blocks of about kDepthBlock (taps x
// a range of input channels), whose packed weight per panel (kDepthBlock x
// kTileCols) stays in L1 while every tile of the block passes over it; the
// block's inputs and sums stay in L2 between depth blocks. Inputs are read
// where they lie, unpacked: a pixel's channels are contiguous.
//
// Tasks: with a channels-last output, kRowsPerTask rows of one (group,
// phase), their sums stored as whole pixels (straight from the tiles where
// the output channels fill whole panels). With a contiguous output whose
// lines fit kLineTaskBytes, a range of whole output lines of one group,
// every phase of them: their sums gather channels-last in the task's
// buffer, then go out a channel at a time as whole runs of the output's
// lines. Tasks of single phases would store each channel's values `stride`
// apart, and each cache line of the output would be written in parts by
// several tasks.
template <typename T, typename index_t>
bool forward(const T* x, const T* w, const T* bias, T* y, int64_t y_channel, int64_t y_step,
             const KernelGeometry<index_t>& g) {
  constexpr int MR = kTileRows;
  constexpr int64_t NR = kTileCols<T>;
  const PhaseList<index_t> list(g);
  const PackedWeight<T> packed = pack_weight(w, g, list);
  if (!packed.finite) return false;
  const T* packed_data = packed.storage.template const_data_ptr<T>();

  const int64_t phase_count = static_cast<int64_t>(list.phases.size());
  const int64_t cin = g.in_channels_per_group;
  const int64_t cout = g.out_channels_per_group;
  const int64_t in_sample = int64_t(g.in_numel()) * g.in_channels();
  const int64_t x_step = g.in_channels();  // between input pixels
  const int64_t out_numel = g.out_numel();
  const int64_t out_sample = int64_t(g.out_channels()) * out_numel;
  const int64_t ldc = packed.panels * NR;  // sums: rows of every panel
  constexpr int kInner = kMaxSpatialDims - 1;
  const int64_t line_length = g.out_size[kInner];
  // Channels-last outputs of whole panels take the tiles' stores directly.
  const bool direct = y_channel == 1 && cout % NR == 0;
  // Line tasks: whole outer strides of lines, so that every phase has as
  // many lines in each task, and about kRowsPerTask rows of each phase.
  const int64_t line_bytes = g.out_size[kInner] * ldc * int64_t(sizeof(T));
  const int64_t outer_stride = g.stride[kInner - 1];
  const int64_t rows_per_phase_line =
      std::max<int64_t>((g.out_size[kInner] + g.stride[kInner] - 1) / g.stride[kInner], 1);
  const int64_t lines_per_task =
      (kRowsPerTask + rows_per_phase_line - 1) / rows_per_phase_line * outer_stride;
  const bool line_tasks =
      y_step == 1 && y_channel != 1 && lines_per_task * line_bytes <= kLineTaskBytes;
  const std::vector<T> zeros(cin, T(0));
  // The bias per group, zero-padded to whole panels.
  std::vector<T> bias_rows;
  if (bias != nullptr) {
    bias_rows.assign(g.groups * ldc, T(0));
    for (int64_t group = 0; group < g.groups; ++group) {
      std::copy(bias + group * cout, bias + (group + 1) * cout, bias_rows.begin() + group * ldc);
    }
  }
  const std::vector<T> zero_sums(ldc, T(0));
  const int64_t tiles_per_block = (kRowsPerTask + MR - 1) / MR;

  const int64_t total_lines = int64_t(g.batch) * (out_numel / std::max<int64_t>(line_length, 1));
  const int64_t lines_per_sample = out_numel / std::max<int64_t>(line_length, 1);
  const std::vector<std::vector<int64_t>> phase_lines =
      line_tasks ? output_line_of_phase_lines(g, list) : std::vector<std::vector<int64_t>>{};

  const int64_t row_blocks = (list.max_rows + kRowsPerTask - 1) / kRowsPerTask;
  // Line tasks split the lines, in whole outer strides (units), into a
  // multiple of the thread count of blocks whose units differ by at most
  // one: at::parallel_for gives each thread a contiguous range of tasks, and
  // blocks of lines_per_task with a short last one had left a thread idle
  // (DCGAN 512->256: 512 lines in 11 blocks, 6 against 4.67 blocks' work).
  const int64_t line_units = (total_lines + outer_stride - 1) / outer_stride;
  const int64_t threads = std::max<int64_t>(at::get_num_threads(), 1);
  const int64_t line_blocks = std::min(
      ((total_lines + lines_per_task - 1) / lines_per_task + threads - 1) / threads * threads,
      std::max<int64_t>(line_units, 1));
  const auto first_line_of = [&](int64_t block) {
    return std::min(block * line_units / line_blocks * outer_stride, total_lines);
  };
  const int64_t max_task_lines =
      line_blocks > 0 ? (line_units + line_blocks - 1) / line_blocks * outer_stride : 0;
  // Tasks (group, row block, phase), phases innermost: neighbouring tasks
  // write neighbouring outputs; or (group, line block).
  const int64_t items = line_tasks ? int64_t(g.groups) * line_blocks
                                   : int64_t(g.groups) * row_blocks * phase_count;
  at::parallel_for(0, items, 1, [&](int64_t begin, int64_t end) {
    std::vector<const T*> a(tiles_per_block * list.max_taps * MR);
    std::vector<const T*> moved(a.size());
    std::vector<T> sums(line_tasks ? max_task_lines * line_bytes / int64_t(sizeof(T))
                        : direct   ? ldc
                                   : tiles_per_block * MR * ldc);
    std::vector<T> scratch(ldc);                    // the rows past a block's end
    std::vector<T*> out(tiles_per_block * MR);      // where each row's sums go
    std::vector<T*> y_rows(tiles_per_block * MR);   // each row's output pixel
    std::vector<const T*> line_input(list.max_taps);
    std::vector<int64_t> line_first(list.max_taps);

    // Rows [row_begin, row_end) of (group, phase p), at most kRowsPerTask,
    // into sums_of(n, position), the row's sums for its output position
    // (linear spatial index) in sample n; also records each row's output
    // pixel in y_rows.
    const auto run_block = [&](int64_t p, int64_t group, int64_t row_begin, int64_t row_end,
                               const auto& sums_of) {
      const Phase<index_t>& phase = list.phases[p];
      const int64_t taps = phase.taps;
      const int64_t rows = row_end - row_begin;
      const T* group_bias = bias != nullptr ? bias_rows.data() + group * ldc : nullptr;
      // Each tile's pointers, once for every block and panel: a[(tile, tap,
      // row)], and where each row's sums go (out). Rows past the end repeat
      // the last one's inputs, and store into a row nothing reads.
      const int64_t tiles = (rows + MR - 1) / MR;
      PhaseRow<index_t> pr = phase_row(phase, index_t(row_begin));
      int64_t line_position = 0;
      T* y_line = nullptr;
      bool new_line = true;
      for (int64_t r = 0; r < tiles * MR; ++r) {
        const T** tile_a = a.data() + r / MR * taps * MR + r % MR;
        if (r >= rows) {
          for (int64_t t = 0; t < taps; ++t) tile_a[t * MR] = tile_a[t * MR - 1];
          out[r] = scratch.data();
          continue;
        }
        if (new_line) {
          // A line: the rows of one sample and outer coordinates. Per tap,
          // its input row there (null where the outer coordinates fall
          // outside) and the innermost coordinate of the line's first row;
          // each row's pointers are then an add and a compare.
          PhaseRow<index_t> first = pr;
          first.m[kInner] = 0;
          line_position = int64_t(phase_output_position(g, phase, first));
          y_line = y + pr.n * out_sample + line_position * y_step + group * cout * y_channel;
          const T* sample = x + int64_t(pr.n) * in_sample + group * cin;
          for (int64_t t = 0; t < taps; ++t) {
            const PhaseTap<index_t>& tap = list.taps[p][t];
            int64_t outer = 0;
            bool inside = true;
            for (int j = 0; j < kInner; ++j) {
              const int64_t i = int64_t(phase.first_in[j]) + pr.m[j] - tap.in_offset[j];
              inside = inside && i >= 0 && i < g.in_size[j];
              outer = outer * g.in_size[j] + i;
            }
            line_input[t] = inside ? sample + outer * g.in_size[kInner] * x_step : nullptr;
            line_first[t] = int64_t(phase.first_in[kInner]) - tap.in_offset[kInner];
          }
        }
        const int64_t m = pr.m[kInner];
        const int64_t step = m * g.stride[kInner];
        y_rows[r] = y_line + step * y_step;
        out[r] = sums_of(r, int64_t(pr.n), line_position + step);
        for (int64_t t = 0; t < taps; ++t) {
          const int64_t i = line_first[t] + m;
          tile_a[t * MR] = line_input[t] != nullptr && i >= 0 && i < g.in_size[kInner]
                               ? line_input[t] + i * x_step
                               : zeros.data();
        }
        next_row(phase, pr);
        new_line = pr.m[kInner] == 0;
      }
      if (taps == 0) {
        // A phase with no tap (a kernel smaller than the stride): the bias.
        const T* base = group_bias != nullptr ? group_bias : zero_sums.data();
        for (int64_t r = 0; r < rows; ++r) std::memcpy(out[r], base, ldc * sizeof(T));
        return;
      }
      const T* weight = packed_data + group * packed.group_size + packed.phase_offset[p];
      const int64_t tap_stride = cin * NR;
      const int64_t channel_block = std::clamp<int64_t>(kDepthBlock / taps, 1, cin);
      for (int64_t c0 = 0; c0 < cin; c0 += channel_block) {
        const int64_t channels = std::min(channel_block, cin - c0);
        // The tiles' input pointers, moved to the block's first channel.
        for (int64_t k = 0; k < tiles * taps * MR; ++k) {
          moved[k] = a[k] == zeros.data() ? a[k] : a[k] + c0;
        }
        for (int64_t panel = 0; panel < packed.panels; ++panel) {
          const T* b = weight + panel * taps * tap_stride + c0 * NR;
          for (int64_t tile_index = 0; tile_index < tiles; ++tile_index) {
            tile<T>(moved.data() + tile_index * taps * MR, taps, channels, b, tap_stride,
                    out.data() + tile_index * MR, panel * NR,
                    group_bias != nullptr ? group_bias + panel * NR : nullptr, c0 > 0);
          }
        }
      }
    };

    for (int64_t item = begin; item < end; ++item) {
      if (line_tasks) {
        const int64_t group = item / line_blocks;
        const int64_t first_line = first_line_of(item % line_blocks);
        const int64_t last_line = first_line_of(item % line_blocks + 1);
        const int64_t first_position = first_line * line_length;
        const auto sums_of = [&](int64_t, int64_t n, int64_t position) {
          return sums.data() + (n * out_numel + position - first_position) * ldc;
        };
        for (int64_t p = 0; p < phase_count; ++p) {
          const std::vector<int64_t>& lines = phase_lines[p];
          const int64_t per_line = list.phases[p].out_count[kInner];
          const int64_t row_begin =
              (std::lower_bound(lines.begin(), lines.end(), first_line) - lines.begin()) * per_line;
          const int64_t row_end =
              (std::lower_bound(lines.begin(), lines.end(), last_line) - lines.begin()) * per_line;
          for (int64_t r0 = row_begin; r0 < row_end; r0 += kRowsPerTask) {
            run_block(p, group, r0, std::min(r0 + kRowsPerTask, row_end), sums_of);
          }
        }
        // The lines' sums into the output, per line in blocks of kStoreBlock
        // channels x positions: each channel's positions of a block are one
        // run of the output, written whole before the next channel's (the
        // channels' runs lie a plane apart, in the same L1 set where a plane
        // is a multiple of 4 KiB), read from the block's sums in L1.
        constexpr int64_t kStoreBlock = 16;
        for (int64_t line = first_line; line < last_line; ++line) {
          const int64_t n = line / lines_per_sample;
          T* dst = y + n * out_sample + group * cout * y_channel +
                   (line - n * lines_per_sample) * line_length;
          const T* src = sums.data() + (line - first_line) * line_length * ldc;
          for (int64_t c0 = 0; c0 < cout; c0 += kStoreBlock) {
            const int64_t c1 = std::min(c0 + kStoreBlock, cout);
            for (int64_t o0 = 0; o0 < line_length; o0 += kStoreBlock) {
              const int64_t o1 = std::min(o0 + kStoreBlock, line_length);
              for (int64_t c = c0; c < c1; ++c) {
                for (int64_t o = o0; o < o1; ++o) dst[c * y_channel + o] = src[o * ldc + c];
              }
            }
          }
        }
        continue;
      }
      const int64_t p = item % phase_count;
      const int64_t block = item / phase_count % row_blocks;
      const int64_t group = item / phase_count / row_blocks;
      const int64_t row_begin = block * kRowsPerTask;
      const int64_t row_end = std::min<int64_t>(row_begin + kRowsPerTask, list.phases[p].rows);
      if (row_begin >= row_end) continue;
      run_block(p, group, row_begin, row_end, [&](int64_t r, int64_t, int64_t) {
        return direct ? y_rows[r] : sums.data() + r * ldc;
      });
      if (direct) continue;
      // A contiguous output here has lines too long for line tasks.
      store_rows(sums.data(), ldc, row_end - row_begin, cout, y_rows.data(), y_channel);
    }
  });
  return true;
}

}  // namespace blocked
TORCH_TCONV_ISA_NAMESPACE_END
}  // namespace torch_tconv
