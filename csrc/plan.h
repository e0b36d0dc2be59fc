// How a described call runs: the algorithm (direct kernels, or GEMMs over a
// column buffer), the dtype of that buffer, and how the problem is cut into
// chunks of whole samples, or windows of one sample's input rows, so that
// the buffer stays within the budget. Made once per call from the Problem
// and the call's Config snapshot; everything after reads the plan.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>

#include <algorithm>

#include "backend.h"
#include "problem.h"

namespace torch_tconv {

// How the GEMM path covers a problem: as many whole samples per chunk as
// keep the column buffer within the chunk budget (on the CPU about what the
// caches hold, so that col2im and the gradient GEMMs find the columns just
// written still in cache), or windows of single samples where the backend
// supports them and one sample is over the budget: whole outer input rows,
// or parts of one row where a row alone is over it.
//
// Lanes: on a backend that runs chunks in parallel, each of `lanes` threads
// takes a contiguous run of chunks of its share of the budget, with its own
// buffer, and runs them one after another with serial GEMMs; the GEMM output
// then stays in the cache of the core that reads it back. Otherwise one lane
// runs every chunk with parallel GEMMs and element passes.
struct ChunkPlan {
  bool windows;
  int64_t samples_per_chunk;    // 1 with windows
  int64_t rows_per_window;      // outer input rows (over the two outer dims)
  // Where one outer input row alone is over the budget (a long 1-D signal):
  // windows of this many innermost positions of one row; 0: whole rows.
  int64_t positions_per_window;
  int64_t lanes;
  int64_t buffer_elements;      // of each lane's column buffer
};

// The kernels a call runs: the direct ones (no GEMM), GEMMs over a column
// buffer, or implicit GEMMs (kernels/implicit_gemm.h).
enum class Path { kGemm, kDirect, kPhase };

struct Plan {
  Config config;                // the call's snapshot, for the launchers
  Path path;
  bool direct;                  // path == kDirect
  at::ScalarType column_dtype;  // of the GEMM operands and column buffers
  ChunkPlan chunks;             // the GEMM path's cut of the problem
  // The memory format of the activations the GEMM path's passes take:
  // contiguous, or channels-last where the problem's activations are and the
  // backend has channels-last passes; these read and write them as they are,
  // over position-major column buffers (kernels/pixel_bodies.h).
  at::MemoryFormat activation_format;
  // Whether the column buffers are position-major: with channels-last
  // activations, and for the forward of contiguous ones with short output
  // rows (see plan.cpp), whose col2im then adds whole runs of channels
  // instead of a few values per row.
  bool position_major_columns;
  // The GEMM path's products: the backend's own GEMM (Backend::blocked_gemm)
  // for the shapes gemm_suits takes (null: every shape), or, where gemm is
  // null, ATen's bmm.
  void (*gemm)(const at::Tensor& a, const at::Tensor& b, const at::Tensor& c,
               bool accumulate) = nullptr;
  bool (*gemm_suits)(int64_t m, int64_t n, int64_t k) = nullptr;

  bool position_major() const {
    return position_major_columns;
  }
};

Plan make_plan(const Backend& backend, const Problem& problem, const Config& config,
               at::ScalarType dtype);

// A piece of the problem whose column buffer fits the chunk budget: either
// whole samples [n0, n0 + g.batch), or, when one sample alone is too large,
// a window of one sample's input: outer input rows (flattened over the two
// outer spatial dims), or part of one row. A window's geometry is the
// sample's with the input cut to the window: in_size shrunk and padding
// shifted by the window's start, so that every body sees only the taps whose
// input lies in the window. Its input positions are contiguous in the sample.
struct Chunk {
  int64_t n0;
  Geometry g;
  // Input positions [position_begin, position_begin + g.in_numel()) of each
  // sample (all of them for whole samples).
  int64_t position_begin;
  bool window;
};

// Whether the chunk lies within one sample (the whole sample, or a window of
// its positions): its part of an (N, C, in...) tensor is then already in
// (groups, C/groups, positions) order, the GEMMs' layout, with rows one
// sample's positions apart, which the GEMMs read and write in place. A window
// read through a copy instead costs an allocation and a pass per window: for
// a 48000-frame codec layer at batch 1, six 2 MiB copies per call, whose
// scattered placement in malloc's heap raised the call's resident memory
// above PyTorch's.
inline bool is_one_sample(const Chunk& c) {
  return c.g.batch == 1;
}

inline Geometry chunk_of(Geometry g, int64_t batch) {
  g.batch = batch;
  return g;
}

// Windows of sample n, last window first (see the forward in ops.cpp:
// col2im adds the windows in this order): of `rows` outer input rows, or
// with `positions` > 0 of that many innermost positions of one row. A window
// of rows holds whole planes of dim 0 when one plane fits, else rows of one
// plane.
template <typename F>
void for_each_window(const Geometry& g, int64_t n, int64_t rows, int64_t positions, const F& f) {
  const int64_t plane = g.in_size[1];
  const int64_t in2 = g.in_size[2];
  // Input [i0, i0 + planes) x [i1, i1 + count) x [i2, i2 + length).
  auto emit = [&](int64_t i0, int64_t planes, int64_t i1, int64_t count, int64_t i2,
                  int64_t length) {
    Chunk c{n, chunk_of(g, 1), (i0 * plane + i1) * in2 + i2, true};
    c.g.in_size[0] = planes;
    c.g.padding[0] = g.padding[0] - i0 * g.stride[0];
    c.g.in_size[1] = count;
    c.g.padding[1] = g.padding[1] - i1 * g.stride[1];
    c.g.in_size[2] = length;
    c.g.padding[2] = g.padding[2] - i2 * g.stride[2];
    f(c);
  };
  if (positions > 0) {
    for (int64_t i0 = g.in_size[0] - 1; i0 >= 0; --i0) {
      for (int64_t i1 = plane - 1; i1 >= 0; --i1) {
        for (int64_t end = in2; end > 0; end -= positions) {
          const int64_t begin = std::max<int64_t>(end - positions, 0);
          emit(i0, 1, i1, 1, begin, end - begin);
        }
      }
    }
  } else if (rows >= plane) {
    const int64_t planes = rows / plane;
    for (int64_t end = g.in_size[0]; end > 0; end -= planes) {
      const int64_t begin = std::max<int64_t>(end - planes, 0);
      emit(begin, end - begin, 0, plane, 0, in2);
    }
  } else {
    for (int64_t i0 = g.in_size[0] - 1; i0 >= 0; --i0) {
      for (int64_t end = plane; end > 0; end -= rows) {
        const int64_t begin = std::max<int64_t>(end - rows, 0);
        emit(i0, 1, begin, end - begin, 0, in2);
      }
    }
  }
}

// Calls f(chunk, cols, lane) for chunks covering the problem as the plan
// says, with cols the chunk's (groups, C_out/groups * taps, n * positions)
// column buffer, or (groups, n * positions, taps * C_out/groups) where the
// plan's columns are position-major. Chunks of different lanes run concurrently and must write
// disjoint outputs, or accumulate per lane.
//
// One buffer per lane serves all its chunks: a fresh allocation per chunk
// would pay the allocator's page faults again each time (about as long as the
// GEMM itself on the CPU).
template <typename F>
void for_each_chunk(const Plan& plan, const Geometry& g, const at::TensorOptions& options,
                    const F& f) {
  const ChunkPlan& chunks = plan.chunks;
  const auto dtype = plan.column_dtype;
  record_column_workspace(chunks.lanes * chunks.buffer_elements * c10::elementSize(dtype),
                          plan.position_major());
  auto run = [&](const Chunk& c, const at::Tensor& workspace, int64_t lane) {
    const int64_t depth = c.g.out_channels_per_group * c.g.taps();
    const at::Tensor cols = workspace.narrow(0, 0, c.g.col_numel());
    f(c,
      plan.position_major() ? cols.view({c.g.groups, c.g.col_width(), depth})
                          : cols.view({c.g.groups, depth, c.g.col_width()}),
      lane);
  };
  const int64_t step = chunks.samples_per_chunk;
  const int64_t count = (g.batch + step - 1) / step;
  auto whole_samples = [&](int64_t i) {
    const int64_t n0 = i * step;
    return Chunk{n0, chunk_of(g, std::min(step, g.batch - n0)), 0, false};
  };
  if (chunks.lanes > 1) {
    // One contiguous run of chunks per thread; lane = the thread's number.
    // The worker threads take the caller's thread-local state: ATen ops run
    // there must see the dispatch keys this kernel runs under (below
    // autograd), which at::parallel_for does not carry over.
    const at::ThreadLocalState caller_state;
    at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
      const at::ThreadLocalStateGuard state_guard(caller_state);
      const at::Tensor workspace = at::empty({chunks.buffer_elements}, options.dtype(dtype));
      const int64_t lane = at::get_thread_num();
      for (int64_t i = begin; i < end; ++i) run(whole_samples(i), workspace, lane);
    });
    return;
  }
  const at::Tensor workspace = at::empty({chunks.buffer_elements}, options.dtype(dtype));
  for (int64_t i = 0; i < count; ++i) {
    if (chunks.windows) {
      for_each_window(g, i, chunks.rows_per_window, chunks.positions_per_window,
                      [&](const Chunk& c) { run(c, workspace, 0); });
    } else {
      run(whole_samples(i), workspace, 0);
    }
  }
}

}  // namespace torch_tconv
