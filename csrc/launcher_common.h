// Helpers shared by the CPU and CUDA launchers.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <optional>
#include <type_traits>
#include <utility>

#include "kernels/implicit_gemm.h"

namespace torch_tconv {

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

}  // namespace torch_tconv
