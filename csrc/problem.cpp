#include "problem.h"

#include <numeric>

namespace torch_tconv {
namespace {

std::vector<int64_t> concrete(c10::SymIntArrayRef sizes) {
  return C10_AS_INTARRAYREF_SLOW(sizes).vec();
}

// Whether a validated image-like tensor (input, grad_output) came without
// its batch dim: validation has checked it has spatial_dims + 1 or + 2 dims.
bool is_unbatched(const at::Tensor& t, int64_t spatial_dims) {
  return t.dim() == spatial_dims + 1;
}

std::vector<int64_t> with_batch(std::vector<int64_t> shape, bool unbatched) {
  if (unbatched) shape.insert(shape.begin(), 1);
  return shape;
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

// See Problem::result_format.
at::MemoryFormat result_format_of(const at::Tensor& activation, bool unbatched) {
  if (unbatched || activation.is_contiguous()) return at::MemoryFormat::Contiguous;
  const auto channels_last = activation.dim() == 5 ? at::MemoryFormat::ChannelsLast3d
                                                   : at::MemoryFormat::ChannelsLast;
  return (activation.dim() == 4 || activation.dim() == 5) &&
                 activation.is_contiguous(channels_last)
             ? channels_last
             : at::MemoryFormat::Contiguous;
}

// `activation`: the tensor whose layout the activation-shaped result takes.
Problem make_problem(OpKind op, ConvTransposeParams params, bool unbatched,
                     const std::vector<int64_t>& input_shape,
                     const std::vector<int64_t>& output_shape, at::IntArrayRef kernel_size,
                     const at::Tensor& activation) {
  const auto spatial_dims = static_cast<int64_t>(kernel_size.size());
  Geometry g = make_geometry(with_batch(input_shape, unbatched),
                             with_batch(output_shape, unbatched), kernel_size, params);
  return {op, std::move(params), spatial_dims, unbatched, g,
          result_format_of(activation, unbatched)};
}

std::vector<int64_t> spatial(const int64_t (&sizes)[kMaxSpatialDims], int64_t spatial_dims) {
  return {sizes + kMaxSpatialDims - spatial_dims, sizes + kMaxSpatialDims};
}

std::vector<int64_t> joined(std::vector<int64_t> head, const std::vector<int64_t>& tail) {
  head.insert(head.end(), tail.begin(), tail.end());
  return head;
}

}  // namespace

std::vector<int64_t> Problem::input_shape() const {
  const Geometry& g = geometry;
  return joined({g.batch, g.in_channels()}, spatial(g.in_size, spatial_dims));
}

std::vector<int64_t> Problem::output_shape() const {
  const Geometry& g = geometry;
  return joined({g.batch, g.out_channels()}, spatial(g.out_size, spatial_dims));
}

std::vector<int64_t> Problem::weight_shape() const {
  const Geometry& g = geometry;
  return joined({g.in_channels(), g.out_channels_per_group}, spatial(g.kernel, spatial_dims));
}

at::Tensor Problem::batched(const at::Tensor& t) const {
  const at::Tensor b = unbatched ? t.unsqueeze(0) : t;
  return b.contiguous(b.suggest_memory_format());
}

at::Tensor Problem::as_given(const at::Tensor& t) const {
  return unbatched ? t.squeeze(0) : t;
}

Problem describe_forward(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef output_padding,
    at::IntArrayRef dilation, int64_t groups, at::OptionalSymIntArrayRef output_size) {
  auto p = forward_params(stride, padding, output_padding, dilation, groups);
  const auto out_shape = concrete(forward_output_shape(input, weight, bias, p, output_size));
  const bool unbatched = is_unbatched(input, spatial_dims_of(weight));
  return make_problem(OpKind::kForward, std::move(p), unbatched, input.sizes().vec(),
                      out_shape, weight.sizes().slice(2), input);
}

Problem describe_input_grad(
    const at::Tensor& grad_output, const at::Tensor& weight, c10::SymIntArrayRef input_size,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  auto p = gradient_params(stride, padding, dilation, groups);
  const auto in_shape = concrete(input_grad_shape(grad_output, weight, input_size, p));
  const bool unbatched = is_unbatched(grad_output, spatial_dims_of(weight));
  return make_problem(OpKind::kInputGrad, std::move(p), unbatched, in_shape,
                      grad_output.sizes().vec(), weight.sizes().slice(2), grad_output);
}

Problem describe_weight_grad(
    const at::Tensor& input, const at::Tensor& grad_output, at::IntArrayRef kernel_size,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  auto p = gradient_params(stride, padding, dilation, groups);
  weight_grad_shape(input, grad_output, kernel_size, p);
  const bool unbatched = is_unbatched(input, static_cast<int64_t>(kernel_size.size()));
  return make_problem(OpKind::kWeightGrad, std::move(p), unbatched, input.sizes().vec(),
                      grad_output.sizes().vec(), kernel_size, input);
}

Problem describe_backward(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  auto p = gradient_params(stride, padding, dilation, groups);
  backward_shapes(grad_output, input, weight, p);
  const bool unbatched = is_unbatched(input, spatial_dims_of(weight));
  return make_problem(OpKind::kBackward, std::move(p), unbatched, input.sizes().vec(),
                      grad_output.sizes().vec(), weight.sizes().slice(2), grad_output);
}

}  // namespace torch_tconv
