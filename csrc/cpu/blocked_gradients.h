// The gradients of the phase path on the CPU through register-blocked tiles
// (the forward's engine, cpu/blocked_phase_forward.h), with no column buffer
// and no im2col. Both read grad_output channels-last, as the forward reads
// its input, with each group's channels padded with zeros to whole panels
// (see padded_pixels in cpu/launchers.h): gy_pixel elements per output
// pixel, a group's channels gy_group apart.
//
// The input gradient is a strided convolution of grad_output. Per group,
//   gx[row][ic] = sum over (tap t, oc) of gy[row, t][oc] * w[ic][oc][t]
// with rows the input pixels (n, i...) and gy[row, t] the output pixel
// o = i * stride - padding + t * dilation that tap t of row i reaches.
// GEMM layout at the tile (the forward's `tile`):
//   A  per tap, kTileRows pointers to the rows' grad_output pixels, or to
//      zeros where the tap falls outside the output
//   B  the weight packed per group as [column panel][tap][oc][kTileCols],
//      the columns the group's input channels, zero past them
//   C  the task's sums [row][every panel's columns], stored into grad_input
//      (contiguous or channels-last)
//
// The weight gradient: per group and tap t,
//   gw[ic][oc][t] = sum over the input pixels r whose tap t lands inside
//                   the output of x[r][ic] * gy[r, t][oc]
// GEMM layout at the tile (outer_product_tile): rows the input channels
// (kTileRows of them, each a broadcast of x), columns kTileCols output
// channels (vectors of one grad_output pixel), depth the input pixels of
// one input line at a time. Each task owns its weight elements and sums
// every input pixel in a fixed order, so the result does not depend on the
// thread count.
#pragma once

#include <array>
#include <type_traits>
#include <utility>

#include "blocked_phase_forward.h"

namespace torch_tconv {
TORCH_TCONV_ISA_NAMESPACE_BEGIN
namespace blocked {

// Transposes a block of kLanes x kLanes: row i's lane j goes to row j's
// lane i. Each of log2(kLanes) rounds interleaves rows i and i + kLanes/2
// lane by lane into rows 2i (their first halves) and 2i + 1 (their second
// halves); after the last round the rows are the columns.
template <typename T>
struct BlockTranspose {
  using V = typename Vec<T>::type;
  static constexpr int L = Vec<T>::kLanes;
  using Index = std::conditional_t<sizeof(T) == 8, int64_t, int32_t>;
  typedef Index Mask __attribute__((vector_size(kVectorBytes)));

  template <size_t... k>
  static constexpr Mask interleave(int first, std::index_sequence<k...>) {
    return Mask{Index(k % 2 == 0 ? first + int(k) / 2 : L + first + int(k) / 2)...};
  }

  __attribute__((always_inline)) static void run(V (&rows)[L]) {
    constexpr Mask low = interleave(0, std::make_index_sequence<L>());
    constexpr Mask high = interleave(L / 2, std::make_index_sequence<L>());
    for (int round = 1; round < L; round *= 2) {
      V next[L];
      for (int i = 0; i < L / 2; ++i) {
        next[2 * i] = __builtin_shuffle(rows[i], rows[i + L / 2], low);
        next[2 * i + 1] = __builtin_shuffle(rows[i], rows[i + L / 2], high);
      }
      for (int i = 0; i < L; ++i) rows[i] = next[i];
    }
  }
};

// Positions [p0, p1) of a contiguous sample (channels x positions) into
// pixels of `pixel` elements, group g's channels at g * padded, the
// channels from per_group to padded zero. Whole blocks of kLanes channels
// x kLanes positions go through BlockTranspose, the rest one at a time.
template <typename T>
void transpose_to_pixels(const T* sample, int64_t positions, int64_t groups, int64_t per_group,
                         int64_t padded, int64_t p0, int64_t p1, T* pixels) {
  using V = typename Vec<T>::type;
  // Whole vectors loaded and stored in registers (a memcpy into the array
  // went through the stack in halves, and the shuffles then waited on the
  // failed store forwarding: 36% of the copy's samples on one instruction),
  // through a vector type that may alias the elements, as GCC's own
  // unaligned intrinsic types do.
  typedef T Unaligned
      __attribute__((vector_size(kVectorBytes), aligned(sizeof(T)), may_alias));
  constexpr int L = Vec<T>::kLanes;
  const int64_t pixel = groups * padded;
  const int64_t whole_end = p0 + (p1 - p0) / L * L;
  for (int64_t group = 0; group < groups; ++group) {
    const T* channels = sample + group * per_group * positions;
    T* out = pixels + group * padded;
    int64_t c0 = 0;
    for (; c0 + L <= per_group; c0 += L) {
      for (int64_t p = p0; p < whole_end; p += L) {
        V rows[L];
        for (int i = 0; i < L; ++i) {
          rows[i] = *reinterpret_cast<const Unaligned*>(channels + (c0 + i) * positions + p);
        }
        BlockTranspose<T>::run(rows);
        for (int j = 0; j < L; ++j) {
          *reinterpret_cast<Unaligned*>(out + (p + j) * pixel + c0) = rows[j];
        }
      }
      for (int64_t c = c0; c < c0 + L; ++c) {
        for (int64_t p = whole_end; p < p1; ++p) out[p * pixel + c] = channels[c * positions + p];
      }
    }
    for (int64_t c = c0; c < padded; ++c) {
      for (int64_t p = p0; p < p1; ++p) {
        out[p * pixel + c] = c < per_group ? channels[c * positions + p] : T(0);
      }
    }
  }
}

// The weight packed for the input gradient's tiles: per group,
// [panel][tap][oc][kTileCols], the columns the group's input channels.
template <typename T, typename index_t>
PackedWeight<T> pack_input_grad_weight(const T* w, const KernelGeometry<index_t>& g) {
  constexpr int64_t NR = kTileCols<T>;
  PackedWeight<T> packed;
  const int64_t cin = g.in_channels_per_group;
  const int64_t cout = g.out_channels_per_group;
  const int64_t taps = g.taps();
  packed.panels = (cin + NR - 1) / NR;
  packed.phase_offset = {0};
  packed.group_size = packed.panels * taps * cout * NR;
  T* data = packed.allocate(g.groups);
  std::atomic<bool> finite{true};
  at::parallel_for(0, int64_t(g.groups) * packed.panels, 1, [&](int64_t begin, int64_t end) {
    bool all_finite = true;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t group = item / packed.panels;
      const int64_t panel = item % packed.panels;
      const int64_t columns = std::min<int64_t>(NR, cin - panel * NR);
      // Input channel j of the panel: its weight row (C_out/groups x taps).
      const T* first = w + (group * cin + panel * NR) * cout * taps;
      T* dst = data + group * packed.group_size + panel * taps * cout * NR;
      for (int64_t t = 0; t < taps; ++t) {
        for (int64_t oc = 0; oc < cout; ++oc, dst += NR) {
          all_finite &= pack_panel_row(first + oc * taps + t, cout * taps, columns, dst);
        }
      }
    }
    if (!all_finite) finite.store(false, std::memory_order_relaxed);
  });
  packed.finite = finite.load();
  return packed;
}

// Coordinates (i0, i1, i2) of linear position `position` in a space of
// `size` (row-major, kMaxSpatialDims dims).
template <typename index_t>
void coordinates_of(int64_t position, const index_t* size, int64_t* coordinate) {
  for (int j = kMaxSpatialDims - 1; j >= 0; --j) {
    coordinate[j] = position % size[j];
    position /= size[j];
  }
}

// The kernel coordinates of every tap, row-major.
template <typename index_t>
std::vector<std::array<int64_t, kMaxSpatialDims>> kernel_coordinates(
    const KernelGeometry<index_t>& g) {
  std::vector<std::array<int64_t, kMaxSpatialDims>> taps(g.taps());
  for (int64_t t = 0; t < g.taps(); ++t) coordinates_of(t, g.kernel, taps[t].data());
  return taps;
}

// The output line (linear over the outer dims) that the tap at kernel
// coordinates k of input pixel `in` reaches, or -1 where its outer
// coordinates fall outside the output.
template <typename index_t>
int64_t output_line_of_tap(const KernelGeometry<index_t>& g, const int64_t* in,
                           const std::array<int64_t, kMaxSpatialDims>& k) {
  int64_t line = 0;
  for (int j = 0; j < kMaxSpatialDims - 1; ++j) {
    index_t o;
    if (!scatter_coordinate(g, j, index_t(in[j]), index_t(k[j]), o)) return -1;
    line = line * g.out_size[j] + o;
  }
  return line;
}

// The output pixel that the tap at kernel coordinates k of input pixel
// `in` reaches, as a linear position, or -1 where it falls outside the
// output.
template <typename index_t>
int64_t output_position_of_tap(const KernelGeometry<index_t>& g, const int64_t* in,
                               const std::array<int64_t, kMaxSpatialDims>& k) {
  constexpr int kInner = kMaxSpatialDims - 1;
  const int64_t line = output_line_of_tap(g, in, k);
  index_t o;
  if (line < 0 || !scatter_coordinate(g, kInner, index_t(in[kInner]), index_t(k[kInner]), o)) {
    return -1;
  }
  return line * g.out_size[kInner] + o;
}

// grad_input through the tiles, with the weight packed by
// pack_input_grad_weight. gx_channel and gx_step: grad_input's channel and
// position strides (contiguous or channels-last). The packed weight must be
// finite: the tiles multiply the zeros of taps outside the output by the
// weight, and 0 * inf is a NaN the gather never makes.
//
// Tasks: kRowsPerTask input pixels of one group. Their depth (taps x output
// channels) runs in blocks of about kDepthBlock, whose packed weight per
// panel stays in L1 while every tile of the task passes over it.
template <typename T, typename index_t>
void input_gradient(const T* gy, int64_t gy_pixel, int64_t gy_group, const PackedWeight<T>& packed,
                    T* gx, int64_t gx_channel, int64_t gx_step, const KernelGeometry<index_t>& g) {
  constexpr int MR = kTileRows;
  constexpr int64_t NR = kTileCols<T>;
  const T* packed_data = packed.storage.template const_data_ptr<T>();
  const int64_t cin = g.in_channels_per_group;
  const int64_t cout = g.out_channels_per_group;
  const int64_t taps = g.taps();
  const int64_t in_numel = g.in_numel();
  const int64_t out_numel = g.out_numel();
  const int64_t gx_sample = int64_t(g.in_channels()) * in_numel;
  const int64_t ldc = packed.panels * NR;
  const int64_t rows = int64_t(g.batch) * in_numel;
  const int64_t row_blocks = (rows + kRowsPerTask - 1) / kRowsPerTask;
  const int64_t tiles_per_block = (kRowsPerTask + MR - 1) / MR;
  const int64_t tap_stride = cout * NR;
  const int64_t channel_block = std::clamp<int64_t>(kDepthBlock / taps, 1, cout);
  const std::vector<T> zeros(cout, T(0));
  const auto tap_k = kernel_coordinates(g);
  // Per tap: the innermost output coordinate is in * inner_stride +
  // inner_offset.
  constexpr int kInner = kMaxSpatialDims - 1;
  const int64_t inner_stride = g.stride[kInner];
  const int64_t inner_size = g.out_size[kInner];
  std::vector<int64_t> inner_offset(taps);
  for (int64_t t = 0; t < taps; ++t) {
    inner_offset[t] = tap_k[t][kInner] * g.dilation[kInner] - g.padding[kInner];
  }
  at::parallel_for(0, int64_t(g.groups) * row_blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<const T*> tap_line(taps);
    std::vector<const T*> a(tiles_per_block * taps * MR);
    std::vector<const T*> moved(channel_block < cout ? a.size() : 0);
    std::vector<T> sums(tiles_per_block * MR * ldc);
    std::vector<T*> out(tiles_per_block * MR);   // where each row's sums go
    std::vector<T*> gx_rows(kRowsPerTask);        // each row's grad_input pixel
    for (int64_t item = begin; item < end; ++item) {
      const int64_t group = item / row_blocks;
      const int64_t row_begin = item % row_blocks * kRowsPerTask;
      const int64_t count = std::min(kRowsPerTask, rows - row_begin);
      const int64_t tiles = (count + MR - 1) / MR;
      // Each tile's pointers: a[(tile, tap, row)]. Rows past the end repeat
      // the last one's and store into sums nothing reads. Per input line
      // (n and the outer coordinates), each tap's grad_output line (null
      // where the outer coordinates fall outside); per row, an add and a
      // compare per tap.
      int64_t n = row_begin / in_numel;
      int64_t in[kMaxSpatialDims];
      coordinates_of(row_begin % in_numel, g.in_size, in);
      bool new_line = true;
      for (int64_t r = 0; r < tiles * MR; ++r) {
        const T** tile_a = a.data() + r / MR * taps * MR + r % MR;
        out[r] = sums.data() + std::min(r, count) * ldc;
        if (r >= count) {
          for (int64_t t = 0; t < taps; ++t) tile_a[t * MR] = tile_a[t * MR - 1];
          continue;
        }
        if (new_line) {
          const T* sample = gy + n * out_numel * gy_pixel + group * gy_group;
          for (int64_t t = 0; t < taps; ++t) {
            const int64_t line = output_line_of_tap(g, in, tap_k[t]);
            tap_line[t] = line >= 0 ? sample + line * inner_size * gy_pixel : nullptr;
          }
          new_line = false;
        }
        gx_rows[r] = gx + n * gx_sample + group * cin * gx_channel +
                     (row_begin + r - n * in_numel) * gx_step;
        for (int64_t t = 0; t < taps; ++t) {
          const int64_t o = in[kInner] * inner_stride + inner_offset[t];
          tile_a[t * MR] = tap_line[t] != nullptr && o >= 0 && o < inner_size
                               ? tap_line[t] + o * gy_pixel
                               : zeros.data();
        }
        if (++in[kInner] == g.in_size[kInner]) {
          in[kInner] = 0;
          new_line = true;
          for (int j = kInner - 1; j >= 0 && ++in[j] == g.in_size[j]; --j) in[j] = 0;
          if (in[0] == 0 && in[1] == 0) ++n;
        }
      }
      const T* weight = packed_data + group * packed.group_size;
      for (int64_t c0 = 0; c0 < cout; c0 += channel_block) {
        const int64_t channels = std::min(channel_block, cout - c0);
        // The tiles' pointers, moved to the block's first channel.
        if (c0 > 0) {
          for (int64_t k = 0; k < tiles * taps * MR; ++k) {
            moved[k] = a[k] == zeros.data() ? a[k] : a[k] + c0;
          }
        }
        const T* const* block_a = c0 > 0 ? moved.data() : a.data();
        for (int64_t panel = 0; panel < packed.panels; ++panel) {
          const T* b = weight + panel * taps * tap_stride + c0 * NR;
          for (int64_t tile_index = 0; tile_index < tiles; ++tile_index) {
            tile<T>(block_a + tile_index * taps * MR, taps, channels, b, tap_stride,
                    out.data() + tile_index * MR, panel * NR, nullptr, c0 > 0);
          }
        }
      }
      store_rows(sums.data(), ldc, count, cin, gx_rows.data(), gx_channel);
    }
  });
}

#pragma GCC push_options
#pragma GCC optimize("fp-contract=fast")

// acc[i][j] += sum over r < depth of a[i * a_channel + r * a_step] *
// b[r * b_step + j], for i < kTileRows (rows at and past `rows` repeat row
// rows - 1, whose sums nobody stores) and j < kTileCols. The depth's sums
// start from zero in registers and are added to acc once, so a long
// reduction adds one line's partial sum at a time.
template <typename T>
void outer_product_tile(const T* a, int64_t a_channel, int64_t a_step, int64_t rows, const T* b,
                        int64_t b_step, int64_t depth, T* acc) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::kLanes;
  V sum[kTileRows][kTileVectors];
  const T* row[kTileRows];
  for (int i = 0; i < kTileRows; ++i) {
    row[i] = a + std::min<int64_t>(i, rows - 1) * a_channel;
    for (int v = 0; v < kTileVectors; ++v) sum[i][v] = V{};
  }
  for (int64_t r = 0; r < depth; ++r) {
    V y[kTileVectors];
    for (int v = 0; v < kTileVectors; ++v) std::memcpy(&y[v], b + r * b_step + v * L, sizeof(V));
#pragma GCC unroll 16
    for (int i = 0; i < kTileRows; ++i) {
      const T x = row[i][r * a_step];
#pragma GCC unroll 4
      for (int v = 0; v < kTileVectors; ++v) sum[i][v] += x * y[v];
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < kTileRows; ++i) {
    for (int v = 0; v < kTileVectors; ++v) {
      V total;
      std::memcpy(&total, acc + i * kTileCols<T> + v * L, sizeof(V));
      total += sum[i][v];
      std::memcpy(acc + i * kTileCols<T> + v * L, &total, sizeof(V));
    }
  }
}

#pragma GCC pop_options

// The first and one-past-last input coordinate of dim j whose tap k lands
// inside the output.
template <typename index_t>
std::pair<int64_t, int64_t> inputs_reaching_output(const KernelGeometry<index_t>& g, int j,
                                                   int64_t k) {
  const int64_t s = g.stride[j];
  const int64_t offset = k * g.dilation[j] - g.padding[j];  // o = i * s + offset
  // i >= ceil(-offset / s) and i * s + offset <= out - 1.
  const int64_t low = -offset > 0 ? (-offset + s - 1) / s : 0;
  const int64_t last = g.out_size[j] - 1 - offset;
  const int64_t high = last < 0 ? 0 : std::min<int64_t>(last / s + 1, g.in_size[j]);
  return {low, std::max(low, high)};
}

// grad_weight (C_in, C_out/groups, k...) through the tiles, from x with
// channel and position strides x_channel and x_step (contiguous or
// channels-last); with accumulate, added to what gw holds (a later chunk
// of samples).
//
// Tasks: kTileRows input channels x one panel of output channels of one
// group, for every tap: a task passes over its inputs once, an input line
// at a time, and runs every tap over each line while the line and the
// grad_output lines its taps reach are in L1; its sums (taps x one tile)
// stay in L1 too.
template <typename T, typename index_t>
void weight_gradient(const T* x, int64_t x_channel, int64_t x_step, const T* gy, int64_t gy_pixel,
                     int64_t gy_group, T* gw, bool accumulate, const KernelGeometry<index_t>& g) {
  constexpr int MR = kTileRows;
  constexpr int64_t NR = kTileCols<T>;
  const int64_t cin = g.in_channels_per_group;
  const int64_t cout = g.out_channels_per_group;
  const int64_t taps = g.taps();
  const int64_t row_blocks = (cin + MR - 1) / MR;
  const int64_t panels = (cout + NR - 1) / NR;
  const int64_t in_numel = g.in_numel();
  const int64_t out_numel = g.out_numel();
  const int64_t x_sample = int64_t(g.in_channels()) * in_numel;
  constexpr int kInner = kMaxSpatialDims - 1;
  const int64_t lines = in_numel / std::max<int64_t>(g.in_size[kInner], 1);
  // Per tap: the innermost input range it reaches.
  const auto tap_k = kernel_coordinates(g);
  std::vector<std::pair<int64_t, int64_t>> inner_range(taps);
  for (int64_t t = 0; t < taps; ++t) {
    inner_range[t] = inputs_reaching_output(g, kInner, tap_k[t][kInner]);
  }
  const int64_t b_step = g.stride[kInner] * gy_pixel;
  at::parallel_for(0, int64_t(g.groups) * row_blocks * panels, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> acc(taps * MR * NR);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t panel = item % panels;
      const int64_t block = item / panels % row_blocks;
      const int64_t group = item / panels / row_blocks;
      const int64_t ic0 = block * MR;
      const int64_t rows = std::min<int64_t>(MR, cin - ic0);
      std::fill(acc.begin(), acc.end(), T(0));
      for (int64_t n = 0; n < g.batch; ++n) {
        const T* x_rows = x + n * x_sample + (group * cin + ic0) * x_channel;
        const T* gy_sample = gy + n * out_numel * gy_pixel + group * gy_group + panel * NR;
        for (int64_t line = 0; line < lines; ++line) {
          int64_t in[kMaxSpatialDims];
          coordinates_of(line * g.in_size[kInner], g.in_size, in);
          for (int64_t t = 0; t < taps; ++t) {
            const auto [low, high] = inner_range[t];
            if (low >= high) continue;
            in[kInner] = low;
            const int64_t o = output_position_of_tap(g, in, tap_k[t]);
            if (o < 0) continue;  // an outer coordinate outside the output
            outer_product_tile<T>(x_rows + (line * g.in_size[kInner] + low) * x_step, x_channel,
                                  x_step, rows, gy_sample + o * gy_pixel, b_step, high - low,
                                  acc.data() + t * MR * NR);
          }
        }
      }
      const int64_t columns = std::min<int64_t>(NR, cout - panel * NR);
      for (int64_t i = 0; i < rows; ++i) {
        T* dst = gw + ((group * cin + ic0 + i) * cout + panel * NR) * taps;
        for (int64_t j = 0; j < columns; ++j) {
          for (int64_t t = 0; t < taps; ++t) {
            const T sum = acc[(t * MR + i) * NR + j];
            dst[j * taps + t] = accumulate ? dst[j * taps + t] + sum : sum;
          }
        }
      }
    }
  });
}

}  // namespace blocked
TORCH_TCONV_ISA_NAMESPACE_END
}  // namespace torch_tconv
