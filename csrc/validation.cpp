#include "validation.h"

#include <c10/util/Exception.h>
#include <c10/util/safe_numerics.h>

#include <algorithm>
#include <sstream>

namespace torch_tconv {
namespace {

template <typename T>
std::string tuple_str(c10::ArrayRef<T> values) {
  std::ostringstream s;
  s << "(";
  for (size_t i = 0; i < values.size(); ++i) {
    s << (i ? ", " : "") << values[i];
  }
  s << (values.size() == 1 ? ",)" : ")");
  return s.str();
}

std::string tuple_str(const std::vector<int64_t>& values) {
  return tuple_str(at::IntArrayRef(values));
}

std::string tuple_str(const std::vector<c10::SymInt>& values) {
  return tuple_str(c10::SymIntArrayRef(values));
}

std::string shape_str(const at::Tensor& t) {
  std::ostringstream s;
  s << t.sym_sizes();
  return s.str();
}

// Messages are only formatted on failure: the checks run on every call.
template <typename T>
void check_length(
    const std::string& op,
    const char* name,
    c10::ArrayRef<T> values,
    int64_t spatial_dims) {
  TORCH_CHECK(
      static_cast<int64_t>(values.size()) == spatial_dims,
      op, ": ", name, " must have ", spatial_dims,
      " values (one per spatial dim), got ", name, "=", tuple_str(values));
}

// Hyper-parameters stay below 2^31, as PyTorch's own kernels require; larger
// values describe no layer that fits in memory.
constexpr int64_t kParamLimit = int64_t(1) << 31;

void check_all(
    const std::string& op,
    const char* name,
    const std::vector<int64_t>& values,
    bool positive) {
  const bool ok = std::all_of(values.begin(), values.end(), [&](int64_t v) {
    return positive ? v > 0 : v >= 0;
  });
  TORCH_CHECK(
      ok, op, ": ", name, " must be ", positive ? "positive" : "non-negative",
      ", got ", name, "=", tuple_str(values));
  const bool small = std::all_of(values.begin(), values.end(),
                                 [](int64_t v) { return v < kParamLimit; });
  TORCH_CHECK(small, op, ": ", name, " must be smaller than 2^31, got ", name, "=",
                    tuple_str(values));
}

// Ranges and lengths of the hyper-parameters. `check_output_padding` is off
// for the gradient ops, which infer the output padding from the sizes.
void check_params(
    const std::string& op,
    const ConvTransposeParams& p,
    int64_t spatial_dims,
    bool check_output_padding) {
  check_length<int64_t>(op, "stride", p.stride, spatial_dims);
  const auto given = static_cast<int64_t>(p.padding_given.size());
  TORCH_CHECK(given == spatial_dims || given == 2 * spatial_dims, op, ": padding must have ",
              spatial_dims, " values (one per spatial dim) or ", 2 * spatial_dims,
              " (the start of each dim, then the end), got padding=", tuple_str(p.padding_given));
  check_length<int64_t>(op, "dilation", p.dilation, spatial_dims);
  check_all(op, "stride", p.stride, /*positive=*/true);
  check_all(op, "padding", p.padding_given, /*positive=*/false);
  check_all(op, "dilation", p.dilation, /*positive=*/true);
  TORCH_CHECK(p.groups > 0 && p.groups < kParamLimit, op,
                    ": groups must be positive and smaller than 2^31, got groups=", p.groups);
  if (!check_output_padding) return;
  check_length<int64_t>(op, "output_padding", p.output_padding, spatial_dims);
  check_all(op, "output_padding", p.output_padding, /*positive=*/false);
  for (int64_t j = 0; j < spatial_dims; ++j) {
    TORCH_CHECK(
        p.output_padding[j] < std::max(p.stride[j], p.dilation[j]),
        op, ": output_padding must be smaller than stride or dilation in every "
        "dim, got output_padding=", tuple_str(p.output_padding),
        " with stride=", tuple_str(p.stride), " and dilation=",
        tuple_str(p.dilation));
  }
}

void check_floating(const std::string& op, const char* name, const at::Tensor& t) {
  const auto dtype = t.scalar_type();
  TORCH_CHECK(
      dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf ||
          dtype == at::kBFloat16,
      op, ": ", name, " must be float32, float64, float16 or bfloat16, got ",
      name, " of dtype ", dtype);
}

// Dtype and device agreement of the tensors an op reads.
void check_tensors_agree(
    const std::string& op,
    std::initializer_list<std::pair<const char*, const at::Tensor*>> tensors) {
  const auto& [first_name, first] = *tensors.begin();
  for (const auto& [name, t] : tensors) {
    TORCH_CHECK(t->defined(), op, ": ", name, " must be a tensor, got an undefined tensor");
    check_floating(op, name, *t);
    TORCH_CHECK(
        t->scalar_type() == first->scalar_type(),
        op, ": ", first_name, " and ", name, " must have the same dtype, got ",
        first_name, " of dtype ", first->scalar_type(), " and ", name,
        " of dtype ", t->scalar_type());
    TORCH_CHECK(
        t->device() == first->device(),
        op, ": ", first_name, " and ", name, " must be on the same device, got ",
        first_name, " on ", first->device(), " and ", name, " on ", t->device());
  }
}

// True for an unbatched (C, spatial...) tensor, false for (N, C, spatial...).
bool is_unbatched(
    const std::string& op,
    const char* name,
    const at::Tensor& t,
    int64_t spatial_dims) {
  const int64_t dim = t.dim();
  TORCH_CHECK(
      dim == spatial_dims + 1 || dim == spatial_dims + 2,
      op, ": expected ", name, " to be ", spatial_dims + 1, "-D (unbatched) or ",
      spatial_dims + 2, "-D (batched), got ", name, " of shape ", shape_str(t));
  const int64_t first_spatial = dim - spatial_dims;
  for (int64_t d = first_spatial; d < dim; ++d) {
    TORCH_CHECK(
        t.sym_size(d) > 0, op, ": expected ", name,
        " to have non-zero spatial sizes, got ", name, " of shape ", shape_str(t));
  }
  return dim == spatial_dims + 1;
}

std::vector<c10::SymInt> spatial_sizes(const at::Tensor& t, int64_t spatial_dims) {
  auto sizes = t.sym_sizes();
  return std::vector<c10::SymInt>(sizes.end() - spatial_dims, sizes.end());
}

c10::SymInt channels(const at::Tensor& t, bool unbatched) {
  return t.sym_size(unbatched ? 0 : 1);
}

// Spatial output size of the forward with the given output padding per dim:
//   (in - 1) * stride - padding - padding_end + dilation * (kernel - 1) + output_padding + 1
std::vector<c10::SymInt> transposed_sizes(
    c10::SymIntArrayRef input_size,
    at::IntArrayRef kernel_size,
    const ConvTransposeParams& p,
    at::IntArrayRef output_padding) {
  std::vector<c10::SymInt> out;
  out.reserve(input_size.size());
  for (size_t j = 0; j < input_size.size(); ++j) {
    out.push_back((input_size[j] - 1) * p.stride[j] - p.padding[j] - p.padding_end[j] +
                  p.dilation[j] * (kernel_size[j] - 1) + output_padding[j] + 1);
  }
  return out;
}

bool all_positive(at::IntArrayRef values) {
  return std::all_of(values.begin(), values.end(), [](int64_t v) { return v > 0; });
}

std::vector<int64_t> concrete_kernel_size(const at::Tensor& weight, int64_t spatial_dims) {
  std::vector<int64_t> k;
  for (int64_t j = 0; j < spatial_dims; ++j) {
    k.push_back(weight.sym_size(2 + j).guard_int(__FILE__, __LINE__));
  }
  return k;
}

// The checks that forward and input-gradient share on weight: its channel
// split, its kernel sizes. Returns C_out.
c10::SymInt check_weight(
    const std::string& op,
    const at::Tensor& weight,
    const ConvTransposeParams& p) {
  const c10::SymInt in_channels = weight.sym_size(0);
  TORCH_CHECK(
      in_channels % p.groups == 0, op, ": weight.shape[0] (C_in = ", in_channels,
      ") must be divisible by groups=", p.groups, ", got weight of shape ",
      shape_str(weight));
  TORCH_CHECK(
      all_positive(concrete_kernel_size(weight, spatial_dims_of(weight))),
      op, ": kernel sizes must be positive, got weight of shape ", shape_str(weight));
  return weight.sym_size(1) * p.groups;
}

// See output_padding_for_size; `op` prefixes the messages. The caller has
// checked the hyper-parameters.
std::vector<c10::SymInt> implied_output_padding(
    const std::string& op,
    c10::SymIntArrayRef input_size,
    c10::SymIntArrayRef output_size,
    at::IntArrayRef kernel_size,
    const ConvTransposeParams& p) {
  const int64_t spatial_dims = static_cast<int64_t>(kernel_size.size());
  TORCH_CHECK(all_positive(kernel_size), op,
                    ": kernel sizes must be positive, got kernel_size=", tuple_str(kernel_size));
  check_length(op, "output_size", output_size, spatial_dims);
  check_length(op, "input size", input_size, spatial_dims);
  const std::vector<int64_t> zeros(spatial_dims, 0);
  const auto smallest = transposed_sizes(input_size, kernel_size, p, zeros);
  std::vector<c10::SymInt> output_padding;
  for (int64_t j = 0; j < spatial_dims; ++j) {
    const int64_t range = std::max(p.stride[j], p.dilation[j]);
    const c10::SymInt extra = output_size[j] - smallest[j];
    // A ValueError, as nn.ConvTranspose2d raises for an output_size it cannot produce.
    TORCH_CHECK_VALUE(
        extra >= 0 && extra < range,
        op, ": output size ", tuple_str(output_size),
        " cannot be produced from input size ", tuple_str(input_size),
        " with kernel_size=", tuple_str(kernel_size), ", stride=", tuple_str(p.stride),
        ", padding=", tuple_str(p.padding_given), ", dilation=", tuple_str(p.dilation),
        ": output size in dim ", j, " must lie in [", smallest[j], ", ",
        smallest[j] + (range - 1), "], got ", output_size[j]);
    output_padding.push_back(extra);
  }
  return output_padding;
}

// The output's element count must fit in int64 (checked when the sizes are
// known; symbolic sizes are checked when the real kernel runs).
void check_countable(
    const std::string& op,
    const std::vector<c10::SymInt>& shape,
    const at::Tensor& input,
    const ConvTransposeParams& p) {
  uint64_t numel = 1;
  bool overflow = false;
  for (const auto& size : shape) {
    const auto value = size.maybe_as_int();
    if (!value.has_value()) return;
    overflow |= c10::mul_overflows(numel, static_cast<uint64_t>(*value), &numel);
  }
  TORCH_CHECK(
      !overflow && numel < (uint64_t(1) << 63),
      op, ": the output would have shape ", tuple_str(shape),
      ", too many elements to count in 64 bits; it comes from input of shape ",
      shape_str(input), ", stride=", tuple_str(p.stride), ", padding=", tuple_str(p.padding),
      ", dilation=", tuple_str(p.dilation), " and output_padding=", tuple_str(p.output_padding));
}

}  // namespace

std::vector<c10::SymInt> output_padding_for_size(
    c10::SymIntArrayRef input_size,
    c10::SymIntArrayRef output_size,
    at::IntArrayRef kernel_size,
    const ConvTransposeParams& p) {
  const auto spatial_dims = static_cast<int64_t>(kernel_size.size());
  const std::string op = op_name(spatial_dims);
  check_params(op, p, spatial_dims, /*check_output_padding=*/false);
  return implied_output_padding(op, input_size, output_size, kernel_size, p);
}

int64_t spatial_dims_of(const at::Tensor& weight) {
  TORCH_CHECK(weight.defined(), "conv_transpose: weight must be a tensor, got an undefined tensor");
  const int64_t dim = weight.dim();
  TORCH_CHECK(
      dim >= 3 && dim <= 5,
      "conv_transpose: weight must be 3-D, 4-D or 5-D, laid out as "
      "(C_in, C_out/groups, *kernel_size), got weight of shape ", shape_str(weight));
  return dim - 2;
}

std::string op_name(int64_t spatial_dims) {
  return "conv_transpose" + std::to_string(spatial_dims) + "d";
}

std::vector<c10::SymInt> forward_output_shape(
    const at::Tensor& input,
    const at::Tensor& weight,
    const std::optional<at::Tensor>& bias,
    const ConvTransposeParams& p,
    at::OptionalSymIntArrayRef output_size) {
  const int64_t spatial_dims = spatial_dims_of(weight);
  const std::string op = op_name(spatial_dims);
  check_params(op, p, spatial_dims, /*check_output_padding=*/!output_size.has_value());
  TORCH_CHECK(input.defined(), op, ": input must be a tensor, got an undefined tensor");
  if (bias.has_value() && bias->defined()) {
    check_tensors_agree(op, {{"input", &input}, {"weight", &weight}, {"bias", &*bias}});
  } else {
    check_tensors_agree(op, {{"input", &input}, {"weight", &weight}});
  }
  const bool unbatched = is_unbatched(op, "input", input, spatial_dims);
  const c10::SymInt out_channels = check_weight(op, weight, p);
  TORCH_CHECK(
      channels(input, unbatched) == weight.sym_size(0),
      op, ": input has ", channels(input, unbatched), " channels but weight.shape[0] (C_in) is ",
      weight.sym_size(0), "; got input of shape ", shape_str(input),
      " and weight of shape ", shape_str(weight));
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(
        bias->dim() == 1 && bias->sym_size(0) == out_channels,
        op, ": bias must be a 1-D tensor of size C_out = weight.shape[1] * groups = ",
        out_channels, ", got bias of shape ", shape_str(*bias));
  }

  const auto kernel = concrete_kernel_size(weight, spatial_dims);
  const auto in_size = spatial_sizes(input, spatial_dims);
  std::vector<c10::SymInt> out_size;
  if (output_size.has_value()) {
    implied_output_padding(op, in_size, *output_size, kernel, p);
    out_size.assign(output_size->begin(), output_size->end());
  } else {
    out_size = transposed_sizes(in_size, kernel, p, p.output_padding);
    for (int64_t j = 0; j < spatial_dims; ++j) {
      TORCH_CHECK(
          out_size[j] > 0,
          op, ": the output would have size ", tuple_str(out_size),
          ", which is not positive; it comes from input of shape ", shape_str(input),
          ", kernel_size=", tuple_str(kernel), ", stride=", tuple_str(p.stride),
          ", padding=", tuple_str(p.padding_given), ", dilation=", tuple_str(p.dilation),
          " and output_padding=", tuple_str(p.output_padding),
          " as (in - 1) * stride - padding at the start - padding at the end"
          " + dilation * (kernel - 1) + output_padding + 1");
    }
  }

  std::vector<c10::SymInt> shape;
  if (!unbatched) shape.push_back(input.sym_size(0));
  shape.push_back(out_channels);
  shape.insert(shape.end(), out_size.begin(), out_size.end());
  check_countable(op, shape, input, p);
  return shape;
}

namespace {

// The shape functions of the two gradients; check_hyper_params is false where
// the caller (the fused backward) checked them once for both.
std::vector<c10::SymInt> input_grad_shape_of(
    const at::Tensor& grad_output,
    const at::Tensor& weight,
    c10::SymIntArrayRef input_size,
    const ConvTransposeParams& p,
    bool check_hyper_params) {
  const int64_t spatial_dims = spatial_dims_of(weight);
  const std::string op = op_name(spatial_dims) + " input gradient";
  if (check_hyper_params) check_params(op, p, spatial_dims, /*check_output_padding=*/false);
  TORCH_CHECK(grad_output.defined(), op, ": grad_output must be a tensor, got an undefined tensor");
  check_tensors_agree(op, {{"grad_output", &grad_output}, {"weight", &weight}});
  const bool unbatched = is_unbatched(op, "grad_output", grad_output, spatial_dims);
  const c10::SymInt out_channels = check_weight(op, weight, p);
  TORCH_CHECK(
      channels(grad_output, unbatched) == out_channels,
      op, ": grad_output has ", channels(grad_output, unbatched),
      " channels but weight.shape[1] * groups (C_out) is ", out_channels,
      "; got grad_output of shape ", shape_str(grad_output), " and weight of shape ",
      shape_str(weight));
  implied_output_padding(op, input_size, spatial_sizes(grad_output, spatial_dims),
                         concrete_kernel_size(weight, spatial_dims), p);

  std::vector<c10::SymInt> shape;
  if (!unbatched) shape.push_back(grad_output.sym_size(0));
  shape.push_back(weight.sym_size(0));
  shape.insert(shape.end(), input_size.begin(), input_size.end());
  return shape;
}

std::vector<c10::SymInt> weight_grad_shape_of(
    const at::Tensor& input,
    const at::Tensor& grad_output,
    at::IntArrayRef kernel_size,
    const ConvTransposeParams& p,
    bool check_hyper_params) {
  const int64_t spatial_dims = static_cast<int64_t>(kernel_size.size());
  TORCH_CHECK(
      spatial_dims >= 1 && spatial_dims <= 3,
      "conv_transpose weight gradient: kernel_size must have 1, 2 or 3 values, got kernel_size=",
      tuple_str(kernel_size));
  const std::string op = op_name(spatial_dims) + " weight gradient";
  if (check_hyper_params) check_params(op, p, spatial_dims, /*check_output_padding=*/false);
  TORCH_CHECK(all_positive(kernel_size), op,
                    ": kernel sizes must be positive, got kernel_size=", tuple_str(kernel_size));
  TORCH_CHECK(input.defined(), op, ": input must be a tensor, got an undefined tensor");
  TORCH_CHECK(grad_output.defined(), op, ": grad_output must be a tensor, got an undefined tensor");
  check_tensors_agree(op, {{"input", &input}, {"grad_output", &grad_output}});
  const bool unbatched = is_unbatched(op, "input", input, spatial_dims);
  TORCH_CHECK(
      is_unbatched(op, "grad_output", grad_output, spatial_dims) == unbatched &&
          (unbatched || input.sym_size(0) == grad_output.sym_size(0)),
      op, ": input and grad_output must have the same batch size, got input of shape ",
      shape_str(input), " and grad_output of shape ", shape_str(grad_output));
  const c10::SymInt in_channels = channels(input, unbatched);
  const c10::SymInt out_channels = channels(grad_output, unbatched);
  TORCH_CHECK(
      in_channels % p.groups == 0 && out_channels % p.groups == 0,
      op, ": the channels of input (", in_channels, ") and grad_output (", out_channels,
      ") must be divisible by groups=", p.groups);
  implied_output_padding(op, spatial_sizes(input, spatial_dims),
                         spatial_sizes(grad_output, spatial_dims), kernel_size, p);

  std::vector<c10::SymInt> shape{in_channels, out_channels / p.groups};
  shape.insert(shape.end(), kernel_size.begin(), kernel_size.end());
  return shape;
}

}  // namespace

std::vector<c10::SymInt> input_grad_shape(
    const at::Tensor& grad_output,
    const at::Tensor& weight,
    c10::SymIntArrayRef input_size,
    const ConvTransposeParams& p) {
  return input_grad_shape_of(grad_output, weight, input_size, p, /*check_hyper_params=*/true);
}

std::vector<c10::SymInt> weight_grad_shape(
    const at::Tensor& input,
    const at::Tensor& grad_output,
    at::IntArrayRef kernel_size,
    const ConvTransposeParams& p) {
  return weight_grad_shape_of(input, grad_output, kernel_size, p, /*check_hyper_params=*/true);
}

namespace {

// The padding at each end: one value per dim for both, or the starts then
// the ends. A list of another length is kept whole for check_params to
// refuse with its message.
ConvTransposeParams with_padding(ConvTransposeParams p, at::IntArrayRef padding) {
  const size_t dims = p.stride.size();
  p.padding_given = padding.vec();
  if (padding.size() == 2 * dims && dims > 0) {
    p.padding.assign(padding.begin(), padding.begin() + dims);
    p.padding_end.assign(padding.begin() + dims, padding.end());
  } else {
    p.padding = p.padding_end = padding.vec();
  }
  return p;
}

}  // namespace

ConvTransposeParams forward_params(
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef output_padding,
    at::IntArrayRef dilation, int64_t groups) {
  return with_padding({stride.vec(), {}, {}, output_padding.vec(), dilation.vec(), groups, {}},
                      padding);
}

ConvTransposeParams gradient_params(
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  return with_padding({stride.vec(), {}, {}, std::vector<int64_t>(stride.size(), 0),
                       dilation.vec(), groups, {}},
                      padding);
}

std::pair<std::vector<c10::SymInt>, std::vector<c10::SymInt>> backward_shapes(
    const at::Tensor& grad_output,
    const at::Tensor& input,
    const at::Tensor& weight,
    const ConvTransposeParams& p) {
  const int64_t spatial_dims = spatial_dims_of(weight);
  const std::string op = op_name(spatial_dims) + " backward";
  TORCH_CHECK(input.defined(), op, ": input must be a tensor, got an undefined tensor");
  check_params(op, p, spatial_dims, /*check_output_padding=*/false);
  auto weight_shape = weight_grad_shape_of(input, grad_output,
                                           concrete_kernel_size(weight, spatial_dims), p, false);
  auto input_shape =
      input_grad_shape_of(grad_output, weight, spatial_sizes(input, spatial_dims), p, false);
  TORCH_CHECK(
      weight_shape[0] == weight.sym_size(0),
      op, ": input has ", weight_shape[0], " channels but weight.shape[0] (C_in) is ",
      weight.sym_size(0), "; got input of shape ", shape_str(input), " and weight of shape ",
      shape_str(weight));
  return {std::move(input_shape), std::move(weight_shape)};
}

std::vector<c10::SymInt> bias_grad_shape(const at::Tensor& grad_output) {
  const std::string op = "conv_transpose bias gradient";
  TORCH_CHECK(grad_output.defined(), op, ": grad_output must be a tensor, got an undefined tensor");
  check_tensors_agree(op, {{"grad_output", &grad_output}});
  TORCH_CHECK(
      grad_output.dim() >= 3 && grad_output.dim() <= 5,
      op, ": grad_output must be 3-D, 4-D or 5-D, laid out as (N, C_out, *output_size), got "
      "grad_output of shape ", shape_str(grad_output));
  return {grad_output.sym_size(1)};
}

std::pair<std::vector<int64_t>, std::vector<int64_t>> padding_for_mode(
    const std::string& op, const std::string& mode, at::IntArrayRef kernel_size,
    at::IntArrayRef stride, at::IntArrayRef dilation) {
  TORCH_CHECK_VALUE(mode == "same" || mode == "valid", op,
                    ": padding must be 'same', 'valid', ints or (start, end) pairs, got padding='",
                    mode, "'");
  const auto dims = static_cast<int64_t>(kernel_size.size());
  check_length(op, "stride", stride, dims);
  check_length(op, "dilation", dilation, dims);
  std::vector<int64_t> start(dims), end(dims), output_padding(dims);
  for (int64_t j = 0; j < dims; ++j) {
    const int64_t extent = dilation[j] * (kernel_size[j] - 1) + 1;
    const int64_t overlap = std::max<int64_t>(extent - stride[j], 0);
    start[j] = mode == "same" ? overlap / 2 : 0;
    end[j] = mode == "same" ? overlap - start[j] : 0;
    output_padding[j] = std::max<int64_t>(stride[j] - extent, 0);
  }
  start.insert(start.end(), end.begin(), end.end());
  return {start, output_padding};
}

}  // namespace torch_tconv
