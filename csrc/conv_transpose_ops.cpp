#include "conv_transpose_ops.h"

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <c10/core/DeviceGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <numeric>

#include "conv_transpose_args.h"

namespace torch_tconv {
namespace {

bool use_direct(const Geometry& g, const Config& config) {
  switch (config.algorithm) {
    case Algorithm::kGemm:
      return false;
    case Algorithm::kDirect:
      return true;
    case Algorithm::kAuto:
      break;
  }
  // Depthwise-like layers: with one input channel per group the GEMM's inner
  // dimension is 1, so the column buffer costs more than the arithmetic.
  return g.in_channels_per_group == 1;
}

std::vector<int64_t> concrete(c10::SymIntArrayRef sizes) {
  return C10_AS_INTARRAYREF_SLOW(sizes).vec();
}

ConvTransposeParams make_params(
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef output_padding,
    at::IntArrayRef dilation, int64_t groups) {
  return {stride.vec(), padding.vec(), output_padding.vec(), dilation.vec(), groups};
}

// Geometry of a batched, validated problem: input (N, C_in, in...),
// output (N, C_out, out...), kernel sizes from the weight.
Geometry make_geometry(
    at::IntArrayRef input_shape,
    at::IntArrayRef output_shape,
    at::IntArrayRef kernel_size,
    const ConvTransposeParams& p) {
  const int64_t spatial_dims = static_cast<int64_t>(kernel_size.size());
  Geometry g{};
  g.batch = input_shape[0];
  g.groups = p.groups;
  g.in_channels_per_group = input_shape[1] / p.groups;
  g.out_channels_per_group = output_shape[1] / p.groups;
  const int64_t lead = kMaxSpatialDims - spatial_dims;
  for (int64_t j = 0; j < kMaxSpatialDims; ++j) {
    const bool used = j >= lead;
    const int64_t s = j - lead;
    g.in_size[j] = used ? input_shape[2 + s] : 1;
    g.out_size[j] = used ? output_shape[2 + s] : 1;
    g.kernel[j] = used ? kernel_size[s] : 1;
    g.stride[j] = used ? p.stride[s] : 1;
    g.padding[j] = used ? p.padding[s] : 0;
    g.dilation[j] = used ? p.dilation[s] : 1;
    g.tap_step[j] = g.stride[j] / std::gcd(g.stride[j], g.dilation[j]);
  }
  return g;
}

Geometry chunk_of(Geometry g, int64_t batch) {
  g.batch = batch;
  return g;
}


// A piece of the problem whose column buffer fits the chunk budget: either
// whole samples [n0, n0 + g.batch), or, when one sample alone is too large,
// a window of one sample's outer input rows (flattened over the two outer
// spatial dims). A window's geometry is the sample's with the input cut to
// the window: in_size shrunk and padding shifted by the window's start, so
// that every body sees only the taps whose input lies in the window.
struct Chunk {
  int64_t n0;
  Geometry g;
  // Input positions [position_begin, position_begin + g.in_numel()) of each
  // sample (all of them for whole samples).
  int64_t position_begin;
  bool window;
};

// Windows of `rows` outer input rows of sample n, last window first (see
// conv_transpose: col2im adds the windows in this order). A window holds
// whole planes of dim 0 when one plane fits, else rows of one plane.
template <typename F>
void for_each_window(const Geometry& g, int64_t n, int64_t rows, const F& f) {
  const int64_t plane = g.in_size[1];
  const int64_t in2 = g.in_size[2];
  auto emit = [&](int64_t i0, int64_t planes, int64_t i1, int64_t count) {
    Chunk c{n, chunk_of(g, 1), (i0 * plane + i1) * in2, true};
    c.g.in_size[0] = planes;
    c.g.padding[0] = g.padding[0] - i0 * g.stride[0];
    c.g.in_size[1] = count;
    c.g.padding[1] = g.padding[1] - i1 * g.stride[1];
    f(c);
  };
  if (rows >= plane) {
    const int64_t planes = rows / plane;
    for (int64_t end = g.in_size[0]; end > 0; end -= planes) {
      const int64_t begin = std::max<int64_t>(end - planes, 0);
      emit(begin, end - begin, 0, plane);
    }
  } else {
    for (int64_t i0 = g.in_size[0] - 1; i0 >= 0; --i0) {
      for (int64_t end = plane; end > 0; end -= rows) {
        const int64_t begin = std::max<int64_t>(end - rows, 0);
        emit(i0, 1, begin, end - begin);
      }
    }
  }
}

// How for_each_chunk covers a problem: as many whole samples per chunk as
// keep the column buffer within the chunk budget (on the CPU about what the
// caches hold, so that col2im and the gradient GEMMs find the columns just
// written still in cache), or windows of single samples where the backend
// supports them and one sample is over the budget.
//
// Lanes: on a backend that runs chunks in parallel, each of `lanes` threads
// takes a contiguous run of chunks of its share of the budget, with its own
// buffer, and runs them one after another with serial GEMMs; the GEMM output
// then stays in the cache of the core that reads it back. Otherwise one lane
// runs every chunk with parallel GEMMs and element passes.
struct ChunkPlan {
  bool windows;
  int64_t step;      // samples per chunk (1 with windows)
  int64_t rows;      // outer input rows per window
  int64_t lanes;
  int64_t capacity;  // column-buffer elements per lane
};

ChunkPlan plan_chunks(const ElementwiseKernels& kernels, const Geometry& g, at::ScalarType dtype,
                      const Config& config) {
  const int64_t element = c10::elementSize(dtype);
  const int64_t budget = std::min(config.column_budget_bytes, kernels.column_chunk_bytes);
  const int64_t per_sample = std::max<int64_t>(chunk_of(g, 1).col_numel() * element, 1);
  const int64_t outer_rows = g.in_size[0] * g.in_size[1];
  const int64_t per_row = std::max<int64_t>(per_sample / outer_rows, 1);
  const int64_t threads = at::get_num_threads();
  ChunkPlan plan{};
  plan.windows = kernels.col2im_window != nullptr && per_sample > budget && outer_rows > 1;
  plan.lanes = 1;
  if (plan.windows) {
    plan.step = 1;
    plan.rows = std::max<int64_t>(budget / per_row, 1);
    plan.capacity = std::min(plan.rows, outer_rows) * per_row / element;
  } else if (kernels.parallel_chunks && threads > 1 && per_sample * threads <= budget &&
             g.batch >= threads) {
    plan.lanes = threads;
    plan.step = std::clamp<int64_t>(budget / threads / per_sample, 1,
                                    (g.batch + threads - 1) / threads);
    plan.capacity = plan.step * per_sample / element;
  } else {
    plan.step = std::clamp<int64_t>(budget / per_sample, 1, std::max<int64_t>(g.batch, 1));
    plan.capacity = plan.step * per_sample / element;
  }
  return plan;
}

// Calls f(chunk, cols, lane) for chunks covering the problem as `plan` says,
// with cols the chunk's (groups, C_out/groups * taps, n * positions) column
// buffer in `dtype`. Chunks of different lanes run concurrently and must
// write disjoint outputs, or accumulate per lane.
//
// One buffer per lane serves all its chunks: a fresh allocation per chunk
// would pay the allocator's page faults again each time (about as long as the
// GEMM itself on the CPU).
template <typename F>
void for_each_chunk(const ChunkPlan& plan, const Geometry& g, at::ScalarType dtype,
                    const at::TensorOptions& options, const F& f) {
  record_column_workspace_bytes(plan.lanes * plan.capacity * c10::elementSize(dtype));
  auto run = [&](const Chunk& c, const at::Tensor& workspace, int64_t lane) {
    f(c,
      workspace.narrow(0, 0, c.g.col_numel())
          .view({c.g.groups, c.g.out_channels_per_group * c.g.taps(), c.g.col_width()}),
      lane);
  };
  const int64_t chunks = (g.batch + plan.step - 1) / plan.step;
  auto whole_samples = [&](int64_t i) {
    const int64_t n0 = i * plan.step;
    return Chunk{n0, chunk_of(g, std::min(plan.step, g.batch - n0)), 0, false};
  };
  if (plan.lanes > 1) {
    // One contiguous run of chunks per thread; lane = the thread's number.
    // The worker threads take the caller's thread-local state: ATen ops run
    // there must see the dispatch keys this kernel runs under (below
    // autograd), which at::parallel_for does not carry over.
    const at::ThreadLocalState caller_state;
    at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
      const at::ThreadLocalStateGuard state_guard(caller_state);
      const at::Tensor workspace = at::empty({plan.capacity}, options.dtype(dtype));
      const int64_t lane = at::get_thread_num();
      for (int64_t i = begin; i < end; ++i) run(whole_samples(i), workspace, lane);
    });
    return;
  }
  const at::Tensor workspace = at::empty({plan.capacity}, options.dtype(dtype));
  for (int64_t i = 0; i < chunks; ++i) {
    if (plan.windows) {
      for_each_window(g, i, plan.rows, [&](const Chunk& c) { run(c, workspace, 0); });
    } else {
      run(whole_samples(i), workspace, 0);
    }
  }
}

// Whether the chunk is one whole sample: its part of an (N, C, in...) tensor
// is then already in (groups, C/groups, positions) order, the GEMMs' layout.
bool is_one_whole_sample(const Chunk& c) {
  return c.g.batch == 1 && !c.window;
}

// The chunk's part of an (N, C, in...) tensor, as (n, C, positions).
at::Tensor input_part(const at::Tensor& t, const Chunk& c) {
  const int64_t n = c.g.batch;
  return t.narrow(0, c.n0, n)
      .view({n, t.size(1), -1})
      .narrow(2, c.position_begin, c.g.in_numel());
}

// im2col of the chunk's part of grad_output into its column buffer, which
// both gradient GEMMs read.
void grad_output_columns(const ElementwiseKernels& kernels, const at::Tensor& grad_output,
                         const Chunk& c, const at::Tensor& cols, const Config& config) {
  kernels.im2col(grad_output.narrow(0, c.n0, c.g.batch), cols, c.g, config);
}

// The GEMM operand of the chunk's part of an input-shaped (N, C_in, in...)
// tensor: the same data as (groups, C_in/groups, n * positions), in the
// column dtype.
at::Tensor group_major(const at::Tensor& t, const Chunk& c, at::ScalarType dtype) {
  const Geometry& g = c.g;
  const int64_t n = g.batch;
  if (is_one_whole_sample(c) && t.scalar_type() == dtype) {
    return input_part(t, c).view({g.groups, g.in_channels_per_group, g.in_numel()});
  }
  auto out = at::empty({g.groups, g.in_channels_per_group, n, g.in_numel()},
                       t.options().dtype(dtype));
  out.copy_(input_part(t, c)
                .view({n, g.groups, g.in_channels_per_group, g.in_numel()})
                .permute({1, 2, 0, 3}));
  return out.view({g.groups, g.in_channels_per_group, n * g.in_numel()});
}

// The weight as the gradients' GEMM operand: (groups, C_in/groups,
// C_out/groups * taps) in the column dtype.
at::Tensor weight_by_group(const at::Tensor& w, const Geometry& g, at::ScalarType dtype) {
  return w.view({g.groups, g.in_channels_per_group, g.out_channels_per_group * g.taps()}).to(dtype);
}

// The chunk's part of the input gradient, from its columns of grad_output.
// GEMM layout, per group g (batched over groups by bmm):
//   dX_g (C_in/G, n * positions) = W_g (C_in/G, C_out/G * taps)
//                                 · cols_g (C_out/G * taps, n * positions)
// with cols = im2col(grad_output): an ordinary convolution.
void input_grad_of_chunk(const at::Tensor& w_g, const Chunk& c, const at::Tensor& cols,
                         const at::Tensor& grad_input) {
  const Geometry& g = c.g;
  const int64_t n = g.batch;
  const int64_t positions = g.in_numel();
  if (is_one_whole_sample(c) && cols.scalar_type() == grad_input.scalar_type()) {
    // The GEMM writes the sample in place, with no copy (a kernel launch less
    // on the GPU).
    at::Tensor dx = input_part(grad_input, c).view({g.groups, g.in_channels_per_group, positions});
    at::bmm_out(dx, w_g, cols);
    return;
  }
  const at::Tensor dx = at::bmm(w_g, cols);
  // (G, C_in/G, n * positions), back to (n, C_in, positions) order.
  input_part(grad_input, c)
      .view({n, g.groups, g.in_channels_per_group, positions})
      .copy_(dx.view({g.groups, g.in_channels_per_group, n, positions}).permute({2, 0, 1, 3}));
}

// The weight gradient, summed over chunks in the op-math dtype: one partial
// sum per lane of the chunk plan, added up in lane order at the end, so the
// result does not depend on how the threads were scheduled. GEMM layout, per
// group g (batched over groups by bmm), for each chunk:
//   dW_g (C_in/G, C_out/G * taps) += X_g (C_in/G, n * positions)
//                                   · cols_gᵀ (n * positions, C_out/G * taps)
// A problem of one chunk needs no running sum: its GEMM is the gradient. That
// gives the same bits (the GEMM output, rounded once) and saves zeroing the
// sum and, for reduced-precision columns, two more passes: on the GPU, three
// kernel launches of a small layer's backward.
class WeightGradSum {
 public:
  WeightGradSum(const Geometry& g, const at::Tensor& x, at::ScalarType col_dtype,
                const ChunkPlan& plan)
      : x_(x), col_dtype_(col_dtype) {
    if (plan.windows || plan.lanes > 1 || plan.step < g.batch) {
      sums_ = at::zeros(
          {plan.lanes, g.groups, g.in_channels_per_group, g.out_channels_per_group * g.taps()},
          x.options().dtype(at::toOpMathType(x.scalar_type())));
    }
  }

  void add(const Chunk& c, const at::Tensor& cols, int64_t lane) {
    const at::Tensor cols_t = cols.transpose(1, 2);
    const at::Tensor x_g = group_major(x_, c, col_dtype_);
    if (!sums_.defined()) {
      only_chunk_ = at::bmm(x_g, cols_t);
      return;
    }
    at::Tensor sum = sums_.select(0, lane);
    if (col_dtype_ == sum.scalar_type()) {
      sum.baddbmm_(x_g, cols_t);
    } else {
      sum.add_(at::bmm(x_g, cols_t));
    }
  }

  at::Tensor result(at::IntArrayRef shape) const {
    at::Tensor total = only_chunk_;
    if (sums_.defined()) {
      total = sums_.select(0, 0);
      for (int64_t lane = 1; lane < sums_.size(0); ++lane) total = total + sums_.select(0, lane);
    }
    return total.view(shape).to(x_.scalar_type());
  }

 private:
  at::Tensor x_;
  at::ScalarType col_dtype_;
  at::Tensor sums_;        // (lanes, G, C_in/G, C_out/G * taps), or undefined
  at::Tensor only_chunk_;  // the one chunk's GEMM, when sums_ is undefined
};

// Adds a leading batch dim of 1 to an unbatched tensor.
at::Tensor batched(const at::Tensor& t, bool unbatched) {
  return (unbatched ? t.unsqueeze(0) : t).contiguous();
}

}  // namespace

at::Tensor conv_transpose(
    const ElementwiseKernels& kernels,
    const at::Tensor& input,
    const at::Tensor& weight,
    const std::optional<at::Tensor>& bias,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef output_padding,
    at::IntArrayRef dilation,
    int64_t groups,
    at::OptionalSymIntArrayRef output_size) {
  const Config config = config_snapshot();
  const auto p = make_params(stride, padding, output_padding, dilation, groups);
  const auto shape = concrete(forward_output_shape(input, weight, bias, p, output_size));
  c10::OptionalDeviceGuard guard(input.device());
  const bool unbatched = input.dim() == weight.dim() - 1;
  const at::Tensor x = batched(input, unbatched);
  const at::Tensor w = weight.contiguous();
  std::optional<at::Tensor> b;
  if (bias.has_value() && bias->defined()) b = bias->contiguous();

  std::vector<int64_t> out_shape = shape;
  if (unbatched) out_shape.insert(out_shape.begin(), 1);
  at::Tensor out = at::empty(out_shape, x.options());
  if (out.numel() == 0) return unbatched ? out.squeeze(0) : out;

  const Geometry g = make_geometry(x.sizes(), out.sizes(), w.sizes().slice(2), p);
  if (use_direct(g, config)) {
    kernels.direct_forward(x, w, b, out, g, config);
  } else {
    const auto dtype = kernels.column_dtype(x.scalar_type(), config);
    // GEMM layout, per group g (batched over groups by bmm):
    //   cols_g (C_out/G * taps, n * in_numel) = W_gᵀ (C_out/G * taps, C_in/G)
    //                                          · X_g (C_in/G, n * in_numel)
    // with W_g the group's (C_in/G, C_out/G * taps) slice of the weight.
    // W_gᵀ is a transposed view, or a contiguous copy where the backend
    // prefers one (see contiguous_forward_weight).
    at::Tensor w_t =
        w.view({g.groups, g.in_channels_per_group, g.out_channels_per_group * g.taps()})
            .to(dtype)
            .transpose(1, 2);
    if (kernels.contiguous_forward_weight) w_t = w_t.contiguous();
    // A sample split into windows of input rows is summed window by window
    // into its output, last window first: each output element then receives
    // its taps in the same order as from one col2im over the whole sample
    // (taps in increasing order come from decreasing input rows), so the
    // result is bitwise the same. The partial sums stay in the op-math dtype.
    at::Tensor target;
    at::Tensor opmath_sums;  // one sample's sums where the output dtype is narrower
    const ChunkPlan plan = plan_chunks(kernels, g, dtype, config);
    for_each_chunk(plan, g, dtype, x.options(), [&](const Chunk& c, at::Tensor cols, int64_t) {
      at::bmm_out(cols, w_t, group_major(x, c, dtype));
      const at::Tensor out_chunk = out.narrow(0, c.n0, c.g.batch);
      if (!c.window) {
        kernels.col2im(cols, b, out_chunk, c.g, config);
        return;
      }
      if (c.position_begin + c.g.in_numel() == g.in_numel()) {  // the sample's first window
        const auto opmath = at::toOpMathType(out_chunk.scalar_type());
        if (out_chunk.scalar_type() == opmath) {
          target = out_chunk;
        } else {
          if (!opmath_sums.defined()) opmath_sums = at::empty_like(out_chunk, opmath);
          target = opmath_sums;
        }
        if (b.has_value()) {
          target.view({1, g.out_channels(), g.out_numel()})
              .copy_(b->view({1, -1, 1}).expand({1, g.out_channels(), g.out_numel()}));
        } else {
          target.zero_();
        }
      }
      kernels.col2im_window(cols, target, c.g, config);
      if (c.position_begin == 0 && !target.is_same(out_chunk)) out_chunk.copy_(target);
    });
  }
  return unbatched ? out.squeeze(0) : out;
}

namespace {

// The gradient ops under a given config, so that the fused backward, which
// falls back on them, runs them with its own snapshot.
at::Tensor input_grad_with(
    const ElementwiseKernels& kernels,
    const Config& config,
    const at::Tensor& grad_output,
    const at::Tensor& weight,
    c10::SymIntArrayRef input_size,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups) {
  const auto p = gradient_params(stride, padding, dilation, groups);
  const auto shape = concrete(input_grad_shape(grad_output, weight, input_size, p));
  c10::OptionalDeviceGuard guard(grad_output.device());
  const bool unbatched = grad_output.dim() == weight.dim() - 1;
  const at::Tensor gy = batched(grad_output, unbatched);
  const at::Tensor w = weight.contiguous();

  std::vector<int64_t> in_shape = shape;
  if (unbatched) in_shape.insert(in_shape.begin(), 1);
  at::Tensor grad_input = at::empty(in_shape, gy.options());
  if (grad_input.numel() == 0) return unbatched ? grad_input.squeeze(0) : grad_input;

  const Geometry g = make_geometry(grad_input.sizes(), gy.sizes(), w.sizes().slice(2), p);
  if (use_direct(g, config)) {
    kernels.direct_input_grad(gy, w, grad_input, g, config);
  } else {
    const auto dtype = kernels.column_dtype(gy.scalar_type(), config);
    const at::Tensor w_g = weight_by_group(w, g, dtype);
    const ChunkPlan plan = plan_chunks(kernels, g, dtype, config);
    for_each_chunk(plan, g, dtype, gy.options(), [&](const Chunk& c, at::Tensor cols, int64_t) {
      grad_output_columns(kernels, gy, c, cols, config);
      input_grad_of_chunk(w_g, c, cols, grad_input);
    });
  }
  return unbatched ? grad_input.squeeze(0) : grad_input;
}

at::Tensor weight_grad_with(
    const ElementwiseKernels& kernels,
    const Config& config,
    const at::Tensor& input,
    const at::Tensor& grad_output,
    at::IntArrayRef kernel_size,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups) {
  const auto p = gradient_params(stride, padding, dilation, groups);
  const auto shape = concrete(weight_grad_shape(input, grad_output, kernel_size, p));
  c10::OptionalDeviceGuard guard(input.device());
  const bool unbatched = input.dim() == static_cast<int64_t>(kernel_size.size()) + 1;
  const at::Tensor x = batched(input, unbatched);
  const at::Tensor gy = batched(grad_output, unbatched);

  const Geometry g = make_geometry(x.sizes(), gy.sizes(), kernel_size, p);
  if (x.numel() == 0 || gy.numel() == 0) return at::zeros(shape, x.options());
  if (use_direct(g, config)) {
    at::Tensor grad_weight = at::empty(shape, x.options());
    kernels.direct_weight_grad(x, gy, grad_weight, g, config);
    return grad_weight;
  }
  const auto dtype = kernels.column_dtype(x.scalar_type(), config);
  const ChunkPlan plan = plan_chunks(kernels, g, dtype, config);
  WeightGradSum sum(g, x, dtype, plan);
  for_each_chunk(plan, g, dtype, x.options(), [&](const Chunk& c, at::Tensor cols, int64_t lane) {
    grad_output_columns(kernels, gy, c, cols, config);
    sum.add(c, cols, lane);
  });
  return sum.result(shape);
}

}  // namespace

at::Tensor conv_transpose_input_grad(
    const ElementwiseKernels& kernels,
    const at::Tensor& grad_output,
    const at::Tensor& weight,
    c10::SymIntArrayRef input_size,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups) {
  return input_grad_with(kernels, config_snapshot(), grad_output, weight, input_size, stride,
                         padding, dilation, groups);
}

at::Tensor conv_transpose_weight_grad(
    const ElementwiseKernels& kernels,
    const at::Tensor& input,
    const at::Tensor& grad_output,
    at::IntArrayRef kernel_size,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups) {
  return weight_grad_with(kernels, config_snapshot(), input, grad_output, kernel_size, stride,
                          padding, dilation, groups);
}

std::tuple<at::Tensor, at::Tensor> conv_transpose_backward(
    const ElementwiseKernels& kernels,
    const at::Tensor& grad_output,
    const at::Tensor& input,
    const at::Tensor& weight,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups) {
  const Config config = config_snapshot();
  const int64_t spatial_dims = spatial_dims_of(weight);
  const auto p = gradient_params(stride, padding, dilation, groups);
  const auto shapes = backward_shapes(grad_output, input, weight, p);
  const auto kernel_size = weight.sizes().slice(2);
  const bool unbatched = input.dim() == spatial_dims + 1;
  c10::OptionalDeviceGuard guard(input.device());
  const at::Tensor x = batched(input, unbatched);
  const at::Tensor gy = batched(grad_output, unbatched);
  const Geometry g = make_geometry(x.sizes(), gy.sizes(), kernel_size, p);
  if (x.numel() == 0 || gy.numel() == 0 || use_direct(g, config)) {
    // Nothing to share: each gradient as its own op computes it.
    const auto input_size = input.sym_sizes().slice(input.dim() - spatial_dims);
    return {input_grad_with(kernels, config, grad_output, weight, input_size, stride, padding,
                            dilation, groups),
            weight_grad_with(kernels, config, input, grad_output, kernel_size, stride, padding,
                             dilation, groups)};
  }
  const at::Tensor w = weight.contiguous();
  const auto dtype = kernels.column_dtype(x.scalar_type(), config);
  at::Tensor grad_input = at::empty(x.sizes(), x.options());
  const at::Tensor w_g = weight_by_group(w, g, dtype);
  const ChunkPlan plan = plan_chunks(kernels, g, dtype, config);
  WeightGradSum weight_grad(g, x, dtype, plan);
  // One im2col of grad_output per chunk serves both gradient GEMMs.
  for_each_chunk(plan, g, dtype, x.options(), [&](const Chunk& c, at::Tensor cols, int64_t lane) {
    grad_output_columns(kernels, gy, c, cols, config);
    input_grad_of_chunk(w_g, c, cols, grad_input);
    weight_grad.add(c, cols, lane);
  });
  return {unbatched ? grad_input.squeeze(0) : grad_input,
          weight_grad.result(concrete(shapes.second))};
}

at::Tensor conv_transpose_bias_grad(const ElementwiseKernels& kernels,
                                    const at::Tensor& grad_output) {
  const auto shape = concrete(bias_grad_shape(grad_output));
  c10::OptionalDeviceGuard guard(grad_output.device());
  const at::Tensor gy = grad_output.contiguous();
  at::Tensor out = at::empty(shape, gy.options());
  if (kernels.bias_grad != nullptr) {
    kernels.bias_grad(gy, out);
  } else {
    // ATen sums float16/bfloat16 in float32 and rounds once, into out: one
    // kernel, where summing to a float32 tensor first took a copy more.
    std::vector<int64_t> dims{0};
    for (int64_t d = 2; d < gy.dim(); ++d) dims.push_back(d);
    at::sum_out(out, gy, dims);
  }
  return out;
}

TORCH_LIBRARY(torch_tconv, m) {
  m.def(
      "conv_transpose(Tensor input, Tensor weight, Tensor? bias, int[] stride, "
      "int[] padding, int[] output_padding, int[] dilation, int groups, "
      "SymInt[]? output_size=None) -> Tensor");
  m.def(
      "conv_transpose_input_grad(Tensor grad_output, Tensor weight, "
      "SymInt[] input_size, int[] stride, int[] padding, int[] dilation, "
      "int groups) -> Tensor");
  m.def(
      "conv_transpose_weight_grad(Tensor input, Tensor grad_output, "
      "int[] kernel_size, int[] stride, int[] padding, int[] dilation, "
      "int groups) -> Tensor");
  m.def(
      "conv_transpose_backward(Tensor grad_output, Tensor input, Tensor weight, "
      "int[] stride, int[] padding, int[] dilation, int groups) -> (Tensor, Tensor)");
  m.def("conv_transpose_bias_grad(Tensor grad_output) -> Tensor");
}

}  // namespace torch_tconv
