// Helpers shared by the CPU and CUDA launchers.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <optional>
#include <type_traits>
#include <utility>

#include "backend.h"
#include "kernels/implicit_gemm.h"

namespace torch_tconv {
TORCH_TCONV_ISA_NAMESPACE_BEGIN

// The index type of a KernelGeometry<index_t> (see dispatch_index_type).
template <typename G>
using index_type = std::decay_t<decltype(std::declval<G>().batch)>;

// The bias data, or null for a layer without bias.
template <typename scalar_t>
const scalar_t* bias_ptr(const std::optional<at::Tensor>& bias) {
  return bias.has_value() ? bias->const_data_ptr<scalar_t>() : nullptr;
}

// The layout of a batched activation tensor (N, C, spatial...) that is
// contiguous, or channels-last contiguous (see ActivationLayout).
template <typename index_t>
ActivationLayout<index_t> layout_of(const at::Tensor& t) {
  const int64_t channels = t.size(1);
  const int64_t positions = t.numel() / std::max<int64_t>(t.size(0) * channels, 1);
  if (t.is_contiguous()) {
    return {static_cast<index_t>(channels * positions), static_cast<index_t>(positions), 1};
  }
  TORCH_INTERNAL_ASSERT(t.is_contiguous(t.dim() == 5 ? at::MemoryFormat::ChannelsLast3d
                                                      : at::MemoryFormat::ChannelsLast),
                        "torch_tconv: an activation neither contiguous nor channels-last");
  return {static_cast<index_t>(channels * positions), 1, static_cast<index_t>(channels)};
}

// The dtypes every kernel is instantiated for.
#define TORCH_TCONV_DISPATCH(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, TYPE, NAME, __VA_ARGS__)

// Calls f(scalar_t(), g) with scalar_t the C++ type of `dtype` and g the
// geometry in the index type the config allows: the one dispatch of the
// launchers, so that each launcher's body is one lambda deep.
template <typename F>
void dispatch_launch(at::ScalarType dtype, const Geometry& geometry, const Config& config,
                     const F& f) {
  TORCH_TCONV_DISPATCH(dtype, "torch_tconv", [&] {
    dispatch_index_type(geometry, config, [&](const auto& g) { f(scalar_t(), g); });
  });
}

// The implicit GEMMs of a call as views of its tensors (kernels/implicit_gemm.h).
// The forward: f(view) once for all phases, or once per phase for strides
// over kMaxFusedStride.
template <typename scalar_t, typename index_t, typename F>
void for_each_forward_gemm(const at::Tensor& input, const at::Tensor& weight,
                           const std::optional<at::Tensor>& bias, const at::Tensor& out,
                           const KernelGeometry<index_t>& g, const F& f) {
  const auto x = input.const_data_ptr<scalar_t>();
  const auto w = weight.const_data_ptr<scalar_t>();
  const auto b = bias_ptr<scalar_t>(bias);
  const auto y = out.mutable_data_ptr<scalar_t>();
  const auto x_layout = layout_of<index_t>(input);
  const auto y_layout = layout_of<index_t>(out);
  if (PhaseTable<index_t>::fits(g)) {
    f(AllPhasesForwardGemm<scalar_t, index_t>{x, w, b, y, g, phase_table(g), x_layout, y_layout});
    return;
  }
  for (index_t p = 0; p < Phase<index_t>::count(g); ++p) {
    f(PhaseForwardGemm<scalar_t, index_t>{x, w, b, y, g, phase_of(g, p), x_layout, y_layout});
  }
}

template <typename scalar_t, typename index_t>
InputGradGemm<scalar_t, index_t> input_grad_gemm(const at::Tensor& grad_output,
                                                 const at::Tensor& weight,
                                                 const at::Tensor& grad_input,
                                                 const KernelGeometry<index_t>& g) {
  return {grad_output.const_data_ptr<scalar_t>(), weight.const_data_ptr<scalar_t>(),
          grad_input.mutable_data_ptr<scalar_t>(), g, layout_of<index_t>(grad_output),
          layout_of<index_t>(grad_input)};
}

template <typename scalar_t, typename index_t>
WeightGradGemm<scalar_t, index_t> weight_grad_gemm(const at::Tensor& input,
                                                   const at::Tensor& grad_output,
                                                   const at::Tensor& grad_weight,
                                                   const KernelGeometry<index_t>& g) {
  return {input.const_data_ptr<scalar_t>(), grad_output.const_data_ptr<scalar_t>(),
          grad_weight.mutable_data_ptr<scalar_t>(), g, layout_of<index_t>(input),
          layout_of<index_t>(grad_output)};
}

TORCH_TCONV_ISA_NAMESPACE_END
}  // namespace torch_tconv
