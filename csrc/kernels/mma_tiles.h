// The tensor-core engine of the implicit GEMMs (implicit_gemm.h), for
// float16 and bfloat16: one block per BM x BN tile of C, warps of mma.sync
// m16n8k16 with float32 accumulators.
//
// Everything but the MMA instruction is host/device code here, written as
// the steps of a block's program, each a function of the thread (or warp and
// lane) number:
//   start         each thread decodes the one A row and one B column it loads
//   decode_depth  BK threads decode the depth step's coordinates into shared
//                 memory, once per step for the whole block
//   load          the threads fill the A and B tiles in shared memory through
//                 the view's offsets (zero where outside the image)
//   fragments     each lane picks its registers of the MMA operands
//   store         each lane writes its accumulators through the view
// The CUDA kernel runs the steps with __syncthreads() between them and the
// MMA instruction in the middle; the CPU runs the very same steps for every
// thread in turn, with an emulation of the MMA as PTX defines it
// (cpu/mma_emulation.h), so the CPU suite checks the tiling, the loads, the
// fragment coordinates and the epilogue of the kernel that the GPU runs.
//
// Operands outside the image are loaded as zeros, which the MMAs multiply.
// Torch never forms those products, and they matter only when the other
// operand is infinite or NaN (0 x inf = NaN): a block that loads both a zero
// fill and a non-finite value recomputes its tile's sums one by one,
// skipping the outside operands as the scalar engine does, so non-finite
// values propagate exactly as in torch, at no cost to finite inputs.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../config.h"
#include "implicit_gemm.h"

namespace torch_tconv {
TORCH_TCONV_ISA_NAMESPACE_BEGIN

constexpr int kWarpSize = 32;
constexpr int kMmaM = 16;
constexpr int kMmaN = 8;
constexpr int kMmaK = 16;

// Coordinates inside one MMA's operand: (row, col) of A and C, (k, n) of B.
struct FragmentCoord {
  int row;
  int col;
};

// The register layouts of mma.sync.m16n8k16 with 16-bit inputs and float32
// accumulators (PTX ISA, "Matrix Fragments for mma.m16n8k16"). Lane l is
// thread t = l % 4 of group g = l / 4.
//
// A (16 x 16, row-major): register q of 4 holds the pair (row, col),
// (row, col + 1), rows g and g + 8, columns 2t and 2t + 8.
C10_HOST_DEVICE inline FragmentCoord mma_a_pair(int lane, int q) {
  return {lane / 4 + 8 * (q & 1), (lane % 4) * 2 + 8 * (q >> 1)};
}
// B (16 x 8, column-major): register q of 2 holds the pair (k, n),
// (k + 1, n): k = 2t and 2t + 8, n = g.
C10_HOST_DEVICE inline FragmentCoord mma_b_pair(int lane, int q) {
  return {(lane % 4) * 2 + 8 * q, lane / 4};
}
// C (16 x 8): accumulator e of 4 at row g or g + 8, column 2t or 2t + 1.
C10_HOST_DEVICE inline FragmentCoord mma_c_element(int lane, int e) {
  return {lane / 4 + 8 * (e >> 1), (lane % 4) * 2 + (e & 1)};
}

// A tile shape: BM x BN of C per block, BK of depth per step, a grid of
// WARPS_M x WARPS_N warps each owning a (BM / WARPS_M) x (BN / WARPS_N)
// part of the tile as MI x NI MMAs.
template <int BM_, int BN_, int WARPS_M_, int WARPS_N_>
struct MmaTileShape {
  static constexpr int BM = BM_;
  static constexpr int BN = BN_;
  static constexpr int BK = 32;
  static constexpr int WARPS_M = WARPS_M_;
  static constexpr int WARPS_N = WARPS_N_;
  static constexpr int kThreads = kWarpSize * WARPS_M * WARPS_N;
  static constexpr int WM = BM / WARPS_M;
  static constexpr int WN = BN / WARPS_N;
  static constexpr int MI = WM / kMmaM;
  static constexpr int NI = WN / kMmaN;
  // Shared-memory rows are BK + kPad elements long: 80 bytes, so that the
  // fragments' 4-byte pairs stay aligned and the eight rows one register
  // reads fall in different banks.
  static constexpr int kPad = 8;
  static_assert(WM % kMmaM == 0 && WN % kMmaN == 0, "a warp's tile is whole MMAs");
  static_assert(BK % kMmaK == 0, "a depth step is whole MMAs");
  // Each thread loads one fixed row of A and one fixed column of B.
  static_assert(kThreads % BM == 0 && kThreads % BN == 0, "threads cover rows and columns");
  static_assert(BK <= kThreads, "one thread per depth coordinate");
};

// The shapes compiled, by the name they have in torch_tconv.backends:
// a large tile for large GEMMs, and narrower ones for few output channels
// (the last layer of a generator has 3).
using MmaTile128x64 = MmaTileShape<128, 64, 4, 2>;
using MmaTile64x64 = MmaTileShape<64, 64, 2, 2>;
using MmaTile64x32 = MmaTileShape<64, 32, 2, 2>;
using MmaTile32x16 = MmaTileShape<32, 16, 2, 1>;

// Two 16-bit elements at p (even index) as one MMA register, the first in
// the low half.
template <typename scalar_t>
C10_HOST_DEVICE inline uint32_t load_pair(const scalar_t* p) {
#if defined(__CUDA_ARCH__)
  return *reinterpret_cast<const uint32_t*>(p);
#else
  uint32_t bits;
  std::memcpy(&bits, p, sizeof(bits));
  return bits;
#endif
}

template <typename Shape, typename scalar_t, typename View>
struct MmaBlock {
  static_assert(sizeof(scalar_t) == 2, "the MMAs take 16-bit inputs");
  using index_t = typename View::index_type;
  static constexpr int BM = Shape::BM;
  static constexpr int BN = Shape::BN;
  static constexpr int BK = Shape::BK;
  static constexpr int MI = Shape::MI;
  static constexpr int NI = Shape::NI;

  struct Shared {
    typename View::Depth depth[BK];
    bool depth_inside[BK];
    // Whether the tile loaded a zero fill, and a non-finite operand: the
    // MMAs' sums are then not torch's (see exact_sums). Only ever set to
    // true, by any thread.
    bool filled_outside;
    bool loaded_nonfinite;
    alignas(16) scalar_t a[BM][BK + Shape::kPad];
    alignas(16) scalar_t b[BN][BK + Shape::kPad];
  };

  struct Thread {
    typename View::Row row;  // the A row it loads
    bool row_inside;
    typename View::Col col;  // the B column it loads
    bool col_inside;
    bool filled_outside;    // what this thread loaded, over all depth steps
    bool loaded_nonfinite;
    float acc[MI][NI][4];
  };

  // Whether the 16 bits of a float16/bfloat16 are an infinity or a NaN (all
  // exponent bits set).
  C10_HOST_DEVICE static bool nonfinite(scalar_t value) {
    constexpr uint16_t exponent = std::is_same_v<scalar_t, c10::Half> ? 0x7c00 : 0x7f80;
    return (value.x & exponent) == exponent;
  }

  C10_HOST_DEVICE static void start(const View& v, const TileCoord<index_t>& t, int thread,
                                    Thread& s) {
    const index_t r = t.row0 + thread % BM;
    s.row_inside = r < v.rows();
    if (s.row_inside) s.row = v.row(r);
    const index_t c = t.col0 + thread % BN;
    s.col_inside = c < v.cols();
    if (s.col_inside) s.col = v.col(c);
    s.filled_outside = false;
    s.loaded_nonfinite = false;
    for (int mi = 0; mi < MI; ++mi) {
      for (int ni = 0; ni < NI; ++ni) {
        for (int e = 0; e < 4; ++e) s.acc[mi][ni][e] = 0.f;
      }
    }
  }

  C10_HOST_DEVICE static void decode_depth(const View& v, Shared& sh, const TileCoord<index_t>& t,
                                           index_t k0, int thread) {
    if (thread >= BK) return;
    const index_t k = k0 + thread;
    sh.depth_inside[thread] = k < t.k_end;
    if (k < t.k_end) sh.depth[thread] = v.depth_at(k);
  }

  // Thread `thread` loads A[thread % BM][kk] for kk = thread / BM, then every
  // kThreads / BM steps, and likewise B: consecutive threads read
  // consecutive rows (positions, contiguous in NCHW) of one depth step.
  // Zeros also pad the tile beyond the GEMM's rows, columns and depth;
  // only fills inside it (offset -1) count as filled_outside.
  C10_HOST_DEVICE static void load(const View& v, Shared& sh, const TileCoord<index_t>& t,
                                   Thread& s, int thread) {
    const scalar_t zero(0.f);
    const int r = thread % BM;
    for (int kk = thread / BM; kk < BK; kk += Shape::kThreads / BM) {
      scalar_t value = zero;
      if (s.row_inside && sh.depth_inside[kk]) {
        const index_t offset = v.a_offset(t.group, s.row, sh.depth[kk]);
        s.filled_outside |= offset < 0;
        if (offset >= 0) value = v.a[offset];
      }
      s.loaded_nonfinite |= nonfinite(value);
      sh.a[r][kk] = value;
    }
    const int c = thread % BN;
    for (int kk = thread / BN; kk < BK; kk += Shape::kThreads / BN) {
      scalar_t value = zero;
      if (s.col_inside && sh.depth_inside[kk]) {
        const index_t offset = v.b_offset(t.group, sh.depth[kk], s.col);
        s.filled_outside |= offset < 0;
        if (offset >= 0) value = v.b[offset];
      }
      s.loaded_nonfinite |= nonfinite(value);
      sh.b[c][kk] = value;
    }
  }

  // After the last depth step: each thread reports what it loaded. The
  // flags start false (reset by thread 0 in reset_flags, before the first
  // barrier) and are read after the next barrier.
  C10_HOST_DEVICE static void reset_flags(Shared& sh, int thread) {
    if (thread == 0) {
      sh.filled_outside = false;
      sh.loaded_nonfinite = false;
    }
  }
  C10_HOST_DEVICE static void report_flags(Shared& sh, const Thread& s) {
    if (s.filled_outside) sh.filled_outside = true;
    if (s.loaded_nonfinite) sh.loaded_nonfinite = true;
  }
  C10_HOST_DEVICE static bool sums_need_redoing(const Shared& sh) {
    return sh.filled_outside && sh.loaded_nonfinite;
  }

  // Calls f(acc, r, c) for each of the lane's accumulators inside the GEMM,
  // with its GEMM row and column.
  template <typename F>
  C10_HOST_DEVICE static void for_each_accumulator(const View& v, const TileCoord<index_t>& t,
                                                   Thread& s, int warp, int lane, const F& f) {
    const int row_base = warp % Shape::WARPS_M * Shape::WM;
    const int col_base = warp / Shape::WARPS_M * Shape::WN;
    for (int mi = 0; mi < MI; ++mi) {
      for (int ni = 0; ni < NI; ++ni) {
        for (int e = 0; e < 4; ++e) {
          const FragmentCoord p = mma_c_element(lane, e);
          const index_t r = t.row0 + row_base + mi * kMmaM + p.row;
          const index_t c = t.col0 + col_base + ni * kMmaN + p.col;
          if (r < v.rows() && c < v.cols()) f(s.acc[mi][ni][e], r, c);
        }
      }
    }
  }

  // The lane's sums again, one product at a time in float32, skipping
  // operands outside the image: torch's sums where the tile's zero fills
  // met a non-finite operand. Not inlined: it runs only for such tiles, and
  // inlined its registers made the sm80 build of the MMA loop spill.
  C10_HOST_DEVICE C10_NOINLINE static void exact_sums(const View& v, const TileCoord<index_t>& t,
                                                      Thread& s, int warp, int lane) {
    for_each_accumulator(v, t, s, warp, lane, [&](float& acc, index_t r, index_t c) {
      const auto row = v.row(r);
      const auto col = v.col(c);
      float sum = 0.f;
      for (index_t k = t.k_begin; k < t.k_end; ++k) {
        const auto d = v.depth_at(k);
        const index_t a = v.a_offset(t.group, row, d);
        const index_t b = v.b_offset(t.group, d, col);
        if (a >= 0 && b >= 0) sum += static_cast<float>(v.a[a]) * static_cast<float>(v.b[b]);
      }
      acc = sum;
    });
  }

  // The lane's registers of the MMAs of depth sub-step ks (0 or 16).
  C10_HOST_DEVICE static void fragments(const Shared& sh, int warp, int lane, int ks,
                                        uint32_t (&a)[MI][4], uint32_t (&b)[NI][2]) {
    const int row_base = warp % Shape::WARPS_M * Shape::WM;
    const int col_base = warp / Shape::WARPS_M * Shape::WN;
    for (int mi = 0; mi < MI; ++mi) {
      for (int q = 0; q < 4; ++q) {
        const FragmentCoord p = mma_a_pair(lane, q);
        a[mi][q] = load_pair(&sh.a[row_base + mi * kMmaM + p.row][ks + p.col]);
      }
    }
    for (int ni = 0; ni < NI; ++ni) {
      for (int q = 0; q < 2; ++q) {
        const FragmentCoord p = mma_b_pair(lane, q);
        b[ni][q] = load_pair(&sh.b[col_base + ni * kMmaN + p.col][ks + p.row]);
      }
    }
  }

  C10_HOST_DEVICE static void store(const View& v, const TileStore<View, float>& store,
                                    const TileCoord<index_t>& t, Thread& s, int warp, int lane) {
    for_each_accumulator(v, t, s, warp, lane, [&](float& acc, index_t r, index_t c) {
      store(t, r, v.row(r), c, v.col(c), acc);
    });
  }
};

// Calls f(Shape{}) for an MMA variant; returns false for the others.
template <typename F>
bool with_mma_shape(TileVariant variant, const F& f) {
  switch (variant) {
    case TileVariant::kMma128x64:
      f(MmaTile128x64{});
      return true;
    case TileVariant::kMma64x64:
      f(MmaTile64x64{});
      return true;
    case TileVariant::kMma64x32:
      f(MmaTile64x32{});
      return true;
    case TileVariant::kMma32x16:
      f(MmaTile32x16{});
      return true;
    default:
      return false;
  }
}

// The default choice for a float16/bfloat16 GEMM of rows x cols per group:
// the column tile follows a small C (few output channels), and the large
// tile only where it still gives a full wave of blocks on a 132-SM GPU.
// A rule of the shape, not a timing: thresholds to be read from
// `make gpu-check`'s table once a GPU has run it.
constexpr int64_t kOneWaveBlocks = 132;

inline TileVariant default_mma_variant(int64_t rows, int64_t cols, int64_t groups) {
  if (cols <= 16) return TileVariant::kMma32x16;
  if (cols <= 32) return TileVariant::kMma64x32;
  const int64_t large_tiles = groups * ((rows + 127) / 128) * ((cols + 63) / 64);
  return large_tiles >= kOneWaveBlocks ? TileVariant::kMma128x64 : TileVariant::kMma64x64;
}

TORCH_TCONV_ISA_NAMESPACE_END
}  // namespace torch_tconv
