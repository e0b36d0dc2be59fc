// The tensor-core engine (kernels/mma_tiles.h) run on the CPU: every step of
// a block's program for every thread in turn, the steps the CUDA kernel
// separates by __syncthreads() one after another, and mma.sync emulated from
// its definition. Slow; it exists so that the CPU suite checks the kernel's
// tiling, loads, fragments and epilogue (torch_tconv.backends.tile_variant).
#pragma once

#include <memory>
#include <vector>

#include "../kernels/mma_tiles.h"

namespace torch_tconv {
TORCH_TCONV_ISA_NAMESPACE_BEGIN

template <typename scalar_t>
float half_to_float(uint16_t bits) {
  return static_cast<float>(scalar_t(bits, scalar_t::from_bits()));
}

// mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16} for a whole warp:
// d[lane] += A x B, with the operands' elements placed as the PTX ISA lists
// them, element by element (a_i for i < 8 at row g + 8 * (i / 2 % 2), column
// 2t + i % 2 + 8 * (i / 4); b_i for i < 4 at k = 2t + i % 2 + 8 * (i / 2),
// n = g; c_i at row g + 8 * (i / 2), column 2t + i % 2), written apart from
// the register-pair form the kernel uses so that the two check each other.
template <typename scalar_t>
void mma_m16n8k16_emulated(float (&d)[kWarpSize][4], const uint32_t (&a)[kWarpSize][4],
                           const uint32_t (&b)[kWarpSize][2]) {
  float A[kMmaM][kMmaK];
  float B[kMmaK][kMmaN];
  for (int lane = 0; lane < kWarpSize; ++lane) {
    const int g = lane / 4;
    const int t = lane % 4;
    for (int i = 0; i < 8; ++i) {
      const auto bits = static_cast<uint16_t>(a[lane][i / 2] >> (16 * (i % 2)));
      A[g + 8 * (i / 2 % 2)][2 * t + i % 2 + 8 * (i / 4)] = half_to_float<scalar_t>(bits);
    }
    for (int i = 0; i < 4; ++i) {
      const auto bits = static_cast<uint16_t>(b[lane][i / 2] >> (16 * (i % 2)));
      B[2 * t + i % 2 + 8 * (i / 2)][g] = half_to_float<scalar_t>(bits);
    }
  }
  for (int lane = 0; lane < kWarpSize; ++lane) {
    const int g = lane / 4;
    const int t = lane % 4;
    for (int i = 0; i < 4; ++i) {
      const int row = g + 8 * (i / 2);
      const int col = 2 * t + i % 2;
      float sum = d[lane][i];
      for (int k = 0; k < kMmaK; ++k) sum += A[row][k] * B[k][col];
      d[lane][i] = sum;
    }
  }
}

// One tile of the tensor-core engine, every thread of its block emulated.
template <typename Shape, typename scalar_t, typename View>
void mma_gemm_tile_emulated(const View& v, const TileCoord<typename View::index_type>& t,
                            const TileStore<View, float>& store) {
  using Block = MmaBlock<Shape, scalar_t, View>;
  constexpr int kWarps = Shape::kThreads / kWarpSize;
  auto shared = std::make_unique<typename Block::Shared>();
  std::vector<typename Block::Thread> threads(Shape::kThreads);
  for (int thread = 0; thread < Shape::kThreads; ++thread) {
    Block::start(v, t, thread, threads[thread]);
    Block::reset_flags(*shared, thread);
  }
  for (auto k0 = t.k_begin; k0 < t.k_end; k0 += Shape::BK) {
    for (int thread = 0; thread < Shape::kThreads; ++thread) {
      Block::decode_depth(v, *shared, t, k0, thread);
    }
    for (int thread = 0; thread < Shape::kThreads; ++thread) {
      Block::load(v, *shared, t, threads[thread], thread);
    }
    for (int ks = 0; ks < Shape::BK; ks += kMmaK) {
      for (int warp = 0; warp < kWarps; ++warp) {
        uint32_t a[kWarpSize][Shape::MI][4];
        uint32_t b[kWarpSize][Shape::NI][2];
        for (int lane = 0; lane < kWarpSize; ++lane) {
          Block::fragments(*shared, warp, lane, ks, a[lane], b[lane]);
        }
        for (int mi = 0; mi < Shape::MI; ++mi) {
          for (int ni = 0; ni < Shape::NI; ++ni) {
            uint32_t a_warp[kWarpSize][4];
            uint32_t b_warp[kWarpSize][2];
            float d[kWarpSize][4];
            for (int lane = 0; lane < kWarpSize; ++lane) {
              for (int q = 0; q < 4; ++q) a_warp[lane][q] = a[lane][mi][q];
              for (int q = 0; q < 2; ++q) b_warp[lane][q] = b[lane][ni][q];
              for (int e = 0; e < 4; ++e) d[lane][e] = threads[warp * kWarpSize + lane].acc[mi][ni][e];
            }
            mma_m16n8k16_emulated<scalar_t>(d, a_warp, b_warp);
            for (int lane = 0; lane < kWarpSize; ++lane) {
              for (int e = 0; e < 4; ++e) threads[warp * kWarpSize + lane].acc[mi][ni][e] = d[lane][e];
            }
          }
        }
      }
    }
  }
  for (int thread = 0; thread < Shape::kThreads; ++thread) {
    Block::report_flags(*shared, threads[thread]);
  }
  const bool redo = Block::sums_need_redoing(*shared);
  for (int thread = 0; thread < Shape::kThreads; ++thread) {
    if (redo) Block::exact_sums(v, t, threads[thread], thread / kWarpSize, thread % kWarpSize);
    Block::store(v, store, t, threads[thread], thread / kWarpSize, thread % kWarpSize);
  }
}

TORCH_TCONV_ISA_NAMESPACE_END
}  // namespace torch_tconv
