#include "ops.h"

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <c10/core/DeviceGuard.h>

#include "autotune.h"
#include "gemm.h"
#include "plan.h"
#include "problem.h"
#include "result_memory.h"

namespace torch_tconv {
namespace {

// im2col of the chunk's part of grad_output into its column buffer, which
// both gradient GEMMs read.
void grad_output_columns(const Backend& backend, const Plan& plan, const at::Tensor& grad_output,
                         const Chunk& c, const at::Tensor& cols) {
  const auto im2col = plan.position_major() ? backend.im2col_channels_last : backend.im2col;
  im2col(grad_output.narrow(0, c.n0, c.g.batch), cols, c.g, plan.config);
}

// A sample split into windows of input rows is summed window by window into
// its output, last window first: each output element then receives its taps
// in the same order as from one col2im over the whole sample (taps in
// increasing order come from decreasing input rows), so the result is
// bitwise the same. The partial sums stay in the op-math dtype.
class WindowedOutput {
 public:
  WindowedOutput(const Backend& backend, const Plan& plan, const Geometry& g,
                 const std::optional<at::Tensor>& bias)
      : backend_(backend), plan_(plan), g_(g), bias_(bias) {}

  void add(const Chunk& c, const at::Tensor& cols, const at::Tensor& out_sample) {
    if (c.position_begin + c.g.in_numel() == g_.in_numel()) start(out_sample);
    const auto add_window = plan_.position_major() ? backend_.col2im_window_channels_last
                                                   : backend_.col2im_window;
    add_window(cols, target_, c.g, plan_.config);
    if (c.position_begin == 0 && !target_.is_same(out_sample)) out_sample.copy_(target_);
  }

 private:
  // At the sample's first window: the sums start from the bias.
  void start(const at::Tensor& out_sample) {
    const auto opmath = at::toOpMathType(out_sample.scalar_type());
    if (out_sample.scalar_type() == opmath) {
      target_ = out_sample;
    } else {
      if (!opmath_sums_.defined()) opmath_sums_ = at::empty_like(out_sample, opmath);
      target_ = opmath_sums_;
    }
    if (bias_.has_value()) {
      std::vector<int64_t> channel_shape(target_.dim(), 1);
      channel_shape[1] = -1;
      target_.copy_(bias_->view(channel_shape).expand_as(target_));
    } else {
      target_.zero_();
    }
  }

  const Backend& backend_;
  const Plan& plan_;
  const Geometry& g_;
  const std::optional<at::Tensor>& bias_;
  at::Tensor target_;
  at::Tensor opmath_sums_;  // one sample's sums where the output dtype is narrower
};

// The run_* functions take the activations in their own layout (see
// Problem::batched): the implicit GEMMs, and the GEMM path where its plan
// says so (Plan::activation_format), read channels-last tensors as they are
// and write their activation-shaped result in Problem::result_format; the
// other paths make them contiguous and the ops convert their results.
// Either way the result's format is the fake kernels' (a compiled graph
// indexes results by the fake kernels' strides).

at::Tensor run_forward(const Backend& backend, const Problem& problem, const Plan& plan,
                       const at::Tensor& input, const at::Tensor& w,
                       const std::optional<at::Tensor>& b) {
  const Geometry& g = problem.geometry;
  if (plan.path == Path::kPhase) {
    at::Tensor out = empty_result(problem.output_shape(),
                                  input.options().memory_format(problem.result_format), plan.config);
    if (out.numel() != 0) backend.phase_forward(input, w, b, out, g, plan.config);
    return out;
  }
  const at::Tensor x = input.contiguous(plan.activation_format);
  at::Tensor out = empty_result(problem.output_shape(),
                                x.options().memory_format(plan.activation_format), plan.config);
  if (out.numel() == 0) return out;
  if (plan.direct) {
    backend.direct_forward(x, w, b, out, g, plan.config);
    return out;
  }
  const at::Tensor w_op = forward_weight(backend, w, g, plan);
  const auto col2im = !plan.position_major() ? backend.col2im
                      : plan.activation_format != at::MemoryFormat::Contiguous
                          ? backend.col2im_channels_last
                          : backend.col2im_position_major_rows;
  WindowedOutput windowed(backend, plan, g, b);
  for_each_chunk(plan, g, x.options(), [&](const Chunk& c, const at::Tensor& cols, int64_t) {
    forward_columns(w_op, x, c, plan, cols);
    const at::Tensor out_chunk = out.narrow(0, c.n0, c.g.batch);
    if (c.window) {
      windowed.add(c, cols, out_chunk);
    } else {
      col2im(cols, b, out_chunk, c.g, plan.config);
    }
  });
  return out;
}

at::Tensor run_input_grad(const Backend& backend, const Problem& problem, const Plan& plan,
                          const at::Tensor& grad_output, const at::Tensor& w) {
  const Geometry& g = problem.geometry;
  if (plan.path == Path::kPhase) {
    at::Tensor grad_input = empty_result(
        problem.input_shape(), grad_output.options().memory_format(problem.result_format),
        plan.config);
    if (grad_input.numel() != 0) {
      backend.implicit_input_grad(grad_output, w, grad_input, g, plan.config);
    }
    return grad_input;
  }
  const at::Tensor gy = grad_output.contiguous(plan.activation_format);
  at::Tensor grad_input = empty_result(
      problem.input_shape(), gy.options().memory_format(plan.activation_format), plan.config);
  if (grad_input.numel() == 0) return grad_input;
  if (plan.direct) {
    backend.direct_input_grad(gy, w, grad_input, g, plan.config);
    return grad_input;
  }
  const at::Tensor w_op = input_grad_weight(w, g, plan);
  for_each_chunk(plan, g, gy.options(), [&](const Chunk& c, const at::Tensor& cols, int64_t) {
    grad_output_columns(backend, plan, gy, c, cols);
    input_grad_of_chunk(w_op, c, plan, cols, grad_input);
  });
  return grad_input;
}

at::Tensor run_weight_grad(const Backend& backend, const Problem& problem, const Plan& plan,
                           const at::Tensor& input, const at::Tensor& grad_output) {
  const Geometry& g = problem.geometry;
  if (input.numel() == 0 || grad_output.numel() == 0) {
    return at::zeros(problem.weight_shape(), input.options());
  }
  if (plan.path == Path::kPhase) {
    at::Tensor grad_weight = at::empty(problem.weight_shape(), input.options());
    backend.implicit_weight_grad(input, grad_output, grad_weight, g, plan.config);
    return grad_weight;
  }
  const at::Tensor x = input.contiguous(plan.activation_format);
  const at::Tensor gy = grad_output.contiguous(plan.activation_format);
  if (plan.direct) {
    at::Tensor grad_weight = at::empty(problem.weight_shape(), x.options());
    backend.direct_weight_grad(x, gy, grad_weight, g, plan.config);
    return grad_weight;
  }
  WeightGradSum sum(g, x, plan);
  for_each_chunk(plan, g, x.options(), [&](const Chunk& c, const at::Tensor& cols, int64_t lane) {
    grad_output_columns(backend, plan, gy, c, cols);
    sum.add(c, cols, lane);
  });
  return sum.result(problem.weight_shape());
}

// Both gradients in one call: the phase and direct paths through the
// backend's op for both where it has one, which shares what the two read;
// the GEMM path with one im2col of grad_output per chunk serving both GEMMs.
std::tuple<at::Tensor, at::Tensor> run_backward(
    const Backend& backend, const Problem& problem, const Plan& plan,
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& w) {
  if (plan.path == Path::kPhase && backend.phase_backward != nullptr && input.numel() != 0 &&
      grad_output.numel() != 0) {
    at::Tensor grad_input = empty_result(
        problem.input_shape(), grad_output.options().memory_format(problem.result_format),
        plan.config);
    at::Tensor grad_weight = at::empty(problem.weight_shape(), input.options());
    backend.phase_backward(grad_output, input, w, grad_input, grad_weight, problem.geometry,
                           plan.config);
    return {grad_input, grad_weight};
  }
  if (plan.direct && backend.direct_backward != nullptr && input.numel() != 0 &&
      grad_output.numel() != 0) {
    const at::Tensor gy = grad_output.contiguous(plan.activation_format);
    const at::Tensor x = input.contiguous(plan.activation_format);
    at::Tensor grad_input = empty_result(
        problem.input_shape(), gy.options().memory_format(plan.activation_format), plan.config);
    at::Tensor grad_weight = at::empty(problem.weight_shape(), x.options());
    backend.direct_backward(gy, x, w, grad_input, grad_weight, problem.geometry, plan.config);
    return {grad_input, grad_weight};
  }
  if (input.numel() == 0 || grad_output.numel() == 0 || plan.path != Path::kGemm) {
    // Nothing to share: each gradient as its own op computes it.
    return {run_input_grad(backend, problem, plan, grad_output, w),
            run_weight_grad(backend, problem, plan, input, grad_output)};
  }
  const at::Tensor gy = grad_output.contiguous(plan.activation_format);
  const at::Tensor x = input.contiguous(plan.activation_format);
  const Geometry& g = problem.geometry;
  at::Tensor grad_input = empty_result(
      problem.input_shape(), x.options().memory_format(plan.activation_format), plan.config);
  const at::Tensor w_op = input_grad_weight(w, g, plan);
  WeightGradSum grad_weight(g, x, plan);
  for_each_chunk(plan, g, x.options(), [&](const Chunk& c, const at::Tensor& cols, int64_t lane) {
    grad_output_columns(backend, plan, gy, c, cols);
    input_grad_of_chunk(w_op, c, plan, cols, grad_input);
    grad_weight.add(c, cols, lane);
  });
  return {grad_input, grad_weight.result(problem.weight_shape())};
}

// The call's configuration: the current one, or in benchmark mode the
// fastest for its shape (autotune.h), timed by calling run.
template <typename Run>
Config tuned(const Backend& backend, OpKind op, const Problem& problem, const at::Tensor& t,
             const Run& run) {
  return tuned_config(backend, op, problem, t.scalar_type(), t.device(), config_snapshot(),
                      [&](const Config& config) { run(config); });
}

std::optional<at::Tensor> contiguous(const std::optional<at::Tensor>& t) {
  if (!t.has_value() || !t->defined()) return std::nullopt;
  return t->contiguous();
}

}  // namespace

at::Tensor conv_transpose(
    const Backend& backend,
    const at::Tensor& input,
    const at::Tensor& weight,
    const std::optional<at::Tensor>& bias,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef output_padding,
    at::IntArrayRef dilation,
    int64_t groups,
    at::OptionalSymIntArrayRef output_size) {
  const Problem problem = describe_forward(input, weight, bias, stride, padding, output_padding,
                                           dilation, groups, output_size);
  c10::OptionalDeviceGuard guard(input.device());
  const at::Tensor x = problem.batched(input);
  const at::Tensor w = weight.contiguous();
  const auto b = contiguous(bias);
  const auto run = [&](const Config& config) {
    return run_forward(backend, problem, make_plan(backend, problem, config, x.scalar_type()), x,
                       w, b);
  };
  return problem.as_given(run(tuned(backend, OpKind::kForward, problem, x, run)))
      .contiguous(problem.result_format);
}

at::Tensor conv_transpose_input_grad(
    const Backend& backend,
    const at::Tensor& grad_output,
    const at::Tensor& weight,
    c10::SymIntArrayRef input_size,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups) {
  const Problem problem =
      describe_input_grad(grad_output, weight, input_size, stride, padding, dilation, groups);
  c10::OptionalDeviceGuard guard(grad_output.device());
  const at::Tensor gy = problem.batched(grad_output);
  const at::Tensor w = weight.contiguous();
  const auto run = [&](const Config& config) {
    return run_input_grad(backend, problem, make_plan(backend, problem, config, gy.scalar_type()),
                          gy, w);
  };
  return problem.as_given(run(tuned(backend, OpKind::kInputGrad, problem, gy, run)))
      .contiguous(problem.result_format);
}

at::Tensor conv_transpose_weight_grad(
    const Backend& backend,
    const at::Tensor& input,
    const at::Tensor& grad_output,
    at::IntArrayRef kernel_size,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups) {
  const Problem problem =
      describe_weight_grad(input, grad_output, kernel_size, stride, padding, dilation, groups);
  c10::OptionalDeviceGuard guard(input.device());
  const at::Tensor x = problem.batched(input);
  const at::Tensor gy = problem.batched(grad_output);
  const auto run = [&](const Config& config) {
    return run_weight_grad(backend, problem, make_plan(backend, problem, config, x.scalar_type()),
                           x, gy);
  };
  return run(tuned(backend, OpKind::kWeightGrad, problem, x, run));
}

std::tuple<at::Tensor, at::Tensor> conv_transpose_backward(
    const Backend& backend,
    const at::Tensor& grad_output,
    const at::Tensor& input,
    const at::Tensor& weight,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups) {
  const Problem problem =
      describe_backward(grad_output, input, weight, stride, padding, dilation, groups);
  c10::OptionalDeviceGuard guard(input.device());
  const at::Tensor gy = problem.batched(grad_output);
  const at::Tensor x = problem.batched(input);
  const at::Tensor w = weight.contiguous();
  const auto run = [&](const Config& config) {
    return run_backward(backend, problem, make_plan(backend, problem, config, x.scalar_type()),
                        gy, x, w);
  };
  auto [grad_input, grad_weight] = run(tuned(backend, OpKind::kBackward, problem, x, run));
  return {problem.as_given(grad_input).contiguous(problem.result_format), grad_weight};
}

at::Tensor conv_transpose_bias_grad(const Backend& backend, const at::Tensor& grad_output) {
  const auto shape = C10_AS_INTARRAYREF_SLOW(bias_grad_shape(grad_output)).vec();
  c10::OptionalDeviceGuard guard(grad_output.device());
  // Contiguous or channels-last, as grad_output comes.
  const at::Tensor gy = grad_output.contiguous(grad_output.suggest_memory_format());
  at::Tensor out = at::empty(shape, gy.options());
  if (backend.bias_grad != nullptr) {
    backend.bias_grad(gy, out);
  } else {
    // ATen sums float16/bfloat16 in float32 and rounds once, into out: one
    // kernel, where summing to a float32 tensor first took a copy more.
    std::vector<int64_t> dims{0};
    for (int64_t d = 2; d < gy.dim(); ++d) dims.push_back(d);
    at::sum_out(out, gy, dims);
  }
  return out;
}

}  // namespace torch_tconv
