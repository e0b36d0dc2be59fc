// A batched GEMM through the register-blocked tiles of
// blocked_phase_forward.h, for the GEMM path's three products (gemm.h) on
// processors where torch's BLAS is slower than the tiles: MKL runs its
// AVX2 kernels on AMD processors, AVX-512 ones included (Zen 5: torch.mm
// 180 GFLOP/s in float32, where the AVX-512 tiles reach about 300).
//
// GEMM layout, per matrix of the batch:
//   C (m x n) = [C +] A (m x k) · B (k x n)
// B is packed per depth block as BLIS packs it, per panel as
// [depth][kTileCols], zero past n; A's rows are read in place where they
// are contiguous (a pointer per tile row), else packed as BLIS packs A, per
// tile of kTileRows rows as [depth][kTileRows]. C's columns must be contiguous (the
// caller computes Cᵀ = Bᵀ·Aᵀ otherwise).
//
// The loops are BLIS's: per depth block of kDepthBlock, the packed blocks
// (B's, and A's where it is packed) are shared by every task; a
// task of kRowsPerTask rows and one panel passes its tiles over the panel,
// in L1. Every
// output's sum runs over the depth blocks in order, and within one in
// order, whatever the threads: repeats give the same bits.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "blocked_phase_forward.h"

namespace torch_tconv {
TORCH_TCONV_ISA_NAMESPACE_BEGIN
namespace blocked {

// A strided matrix of a batch: element (b, i, j) at
// data[b * batch_stride + i * row_stride + j * col_stride].
template <typename T>
struct StridedMatrices {
  T* data;
  int64_t batch_stride;
  int64_t row_stride;
  int64_t col_stride;

  T* at(int64_t b, int64_t i, int64_t j) const {
    return data + b * batch_stride + i * row_stride + j * col_stride;
  }
};

// B's rows [k0, k0 + depth) and panels [0, panels) of matrix `b_index`,
// packed as [panel][depth][NR], zero past n.
template <typename T>
void pack_depth_block(const StridedMatrices<const T>& b, int64_t b_index, int64_t k0,
                      int64_t depth, int64_t n, int64_t panels, T* packed) {
  constexpr int64_t NR = kTileCols<T>;
  at::parallel_for(0, panels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t panel = begin; panel < end; ++panel) {
      const int64_t columns = std::min<int64_t>(NR, n - panel * NR);
      T* dst = packed + panel * depth * NR;
      if (b.col_stride != 1 && b.row_stride < b.col_stride) {
        // A transposed B (its columns contiguous, as colsᵀ): read down each
        // column rather than gather across them.
        std::fill(dst, dst + depth * NR, T(0));
        for (int64_t j = 0; j < columns; ++j) {
          const T* src = b.at(b_index, k0, panel * NR + j);
          for (int64_t kk = 0; kk < depth; ++kk) dst[kk * NR + j] = src[kk * b.row_stride];
        }
        continue;
      }
      for (int64_t kk = 0; kk < depth; ++kk) {
        const T* src = b.at(b_index, k0 + kk, panel * NR);
        if (b.col_stride == 1) {
          std::memcpy(dst + kk * NR, src, columns * sizeof(T));
        } else {
          for (int64_t j = 0; j < columns; ++j) dst[kk * NR + j] = src[j * b.col_stride];
        }
        std::fill(dst + kk * NR + columns, dst + (kk + 1) * NR, T(0));
      }
    }
  });
}

// A's rows [0, m) and columns [k0, k0 + depth) of matrix `a_index`, packed
// per tile as [depth][kTileRows], as BLIS packs A: the tile then reads its
// rows' values at one depth from one pointer, at constant offsets, where
// row pointers would take 12 of the 16 general registers. Rows past m
// repeat the last one.
template <typename T>
void pack_tiles(const StridedMatrices<const T>& a, int64_t a_index, int64_t k0, int64_t depth,
                int64_t m, T* packed) {
  constexpr int MR = kTileRows;
  const int64_t tiles = (m + MR - 1) / MR;
  at::parallel_for(0, tiles, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      T* dst = packed + t * depth * MR;
      const T* src[MR];
      for (int i = 0; i < MR; ++i) src[i] = a.at(a_index, std::min<int64_t>(t * MR + i, m - 1), k0);
      // In the order of A's shorter stride: down each row where its
      // columns are contiguous, across the tile's rows where its rows are.
      if (a.col_stride <= a.row_stride) {
        for (int i = 0; i < MR; ++i) {
          for (int64_t kk = 0; kk < depth; ++kk) dst[kk * MR + i] = src[i][kk * a.col_stride];
        }
      } else {
        for (int64_t kk = 0; kk < depth; ++kk) {
          for (int i = 0; i < MR; ++i) dst[kk * MR + i] = src[i][kk * a.col_stride];
        }
      }
    }
  });
}

#pragma GCC push_options
#pragma GCC optimize("fp-contract=fast")

// One tile of a packed A (a[k * kTileRows + i]: row i at depth k) by a
// packed panel of B, into columns [column, column + kTileCols) of rows
// c[i], added to c where accumulate.
template <typename T>
void packed_tile(const T* a, int64_t depth, const T* b, T* const* c, int64_t column,
                 bool accumulate) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::kLanes;
  constexpr int MR = kTileRows;
  V acc[MR][kTileVectors];
  for (int i = 0; i < MR; ++i) {
    for (int v = 0; v < kTileVectors; ++v) acc[i][v] = V{};
  }
  for (int64_t kk = 0; kk < depth; ++kk) {
    V w[kTileVectors];
    for (int v = 0; v < kTileVectors; ++v) {
      std::memcpy(&w[v], b + kk * kTileCols<T> + v * L, sizeof(V));
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const T x = a[kk * MR + i];
#pragma GCC unroll 4
      for (int v = 0; v < kTileVectors; ++v) acc[i][v] += x * w[v];
    }
  }
  store_sums<T>(acc, c, column, nullptr, accumulate);
}

#pragma GCC pop_options

// c = [c +] a · b for every matrix of the batch (see the file's comment);
// c.col_stride must be 1.
template <typename T>
void gemm(int64_t batch, int64_t m, int64_t n, int64_t k, const StridedMatrices<const T>& a,
          const StridedMatrices<const T>& b, const StridedMatrices<T>& c, bool accumulate) {
  constexpr int MR = kTileRows;
  constexpr int64_t NR = kTileCols<T>;
  if (m == 0 || n == 0) return;
  const int64_t panels = (n + NR - 1) / NR;
  const int64_t row_blocks = (m + kRowsPerTask - 1) / kRowsPerTask;
  const int64_t total_tiles = (m + MR - 1) / MR;
  const int64_t tiles_per_block = (kRowsPerTask + MR - 1) / MR;
  const int64_t max_depth = std::min<int64_t>(kDepthBlock, std::max<int64_t>(k, 1));
  std::vector<T> packed_b(max_depth * panels * NR);
  // A's rows are read in place where they are contiguous: packing them too
  // measured slower for tall products (the channels-last decoder's input
  // gradient, 16384 x 576 by 576 x 128: 21 ms against 8, the packed block
  // written out past L2 and read back per panel) and no faster elsewhere.
  const bool a_rows_contiguous = a.col_stride == 1;
  std::vector<T> packed_a(a_rows_contiguous ? 0 : max_depth * total_tiles * MR);
  for (int64_t index = 0; index < batch; ++index) {
    if (k == 0) {
      // An empty sum: C is itself, or zero.
      if (!accumulate) {
        for (int64_t i = 0; i < m; ++i) std::fill_n(c.at(index, i, 0), n, T(0));
      }
      continue;
    }
    for (int64_t k0 = 0; k0 < k; k0 += kDepthBlock) {
      const int64_t depth = std::min(kDepthBlock, k - k0);
      const bool add = accumulate || k0 > 0;
      pack_depth_block(b, index, k0, depth, n, panels, packed_b.data());
      if (!a_rows_contiguous) pack_tiles(a, index, k0, depth, m, packed_a.data());
      at::parallel_for(0, row_blocks * panels, 1, [&](int64_t begin, int64_t end) {
        std::vector<const T*> rows(tiles_per_block * MR);
        std::vector<T*> out(tiles_per_block * MR);
        std::vector<T*> edge_out(tiles_per_block * MR);
        // Sums of the rows past m, and of a partial last panel's tiles.
        std::vector<T> scratch(panels * NR);
        std::vector<T> edge(tiles_per_block * MR * NR);
        for (int64_t item = begin; item < end; ++item) {
          // Row blocks of equal numbers of tiles (give or take one), not
          // of kRowsPerTask and a short last one: the threads' contiguous
          // ranges of tasks then hold as many rows each.
          const int64_t block = item / panels;
          const int64_t row0 = block * total_tiles / row_blocks * MR;
          const int64_t rows_here =
              std::min((block + 1) * total_tiles / row_blocks * MR, m) - row0;
          const int64_t panel = item % panels;
          const T* panel_b = packed_b.data() + panel * depth * NR;
          const int64_t columns = std::min<int64_t>(NR, n - panel * NR);
          const int64_t tiles = (rows_here + MR - 1) / MR;
          // The block's first tile in packed A (row0 is a whole number of
          // tiles), or its rows' pointers (rows past m repeat the last).
          const T* block_a = packed_a.data() + (a_rows_contiguous ? 0 : row0 * depth);
          const auto run_tile = [&](int64_t t, T* const* c_rows, int64_t column, bool sum) {
            if (a_rows_contiguous) {
              tile<T>(rows.data() + t * MR, 1, depth, panel_b, 0, c_rows, column, nullptr, sum);
            } else {
              packed_tile<T>(block_a + t * depth * MR, depth, panel_b, c_rows, column, sum);
            }
          };
          for (int64_t r = 0; r < tiles * MR; ++r) {
            if (a_rows_contiguous) rows[r] = a.at(index, row0 + std::min(r, rows_here - 1), k0);
            out[r] = r < rows_here ? c.at(index, row0 + r, 0) : scratch.data();
            edge_out[r] = edge.data() + r * NR;
          }
          if (columns == NR) {
            for (int64_t t = 0; t < tiles; ++t) run_tile(t, out.data() + t * MR, panel * NR, add);
            continue;
          }
          // A partial panel: its tiles sum in `edge`, then its columns go
          // to C.
          for (int64_t r = 0; r < tiles * MR; ++r) {
            T* e = edge_out[r];
            std::fill(e, e + NR, T(0));
            if (add && r < rows_here) std::memcpy(e, out[r] + panel * NR, columns * sizeof(T));
          }
          for (int64_t t = 0; t < tiles; ++t) run_tile(t, edge_out.data() + t * MR, 0, true);
          for (int64_t r = 0; r < rows_here; ++r) {
            std::memcpy(out[r] + panel * NR, edge_out[r], columns * sizeof(T));
          }
        }
      });
    }
  }
}

}  // namespace blocked
TORCH_TCONV_ISA_NAMESPACE_END
}  // namespace torch_tconv
