// Helpers shared by the CPU and CUDA launchers.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>

#include <optional>
#include <type_traits>
#include <utility>

namespace torch_tconv {

// The index type of a KernelGeometry<index_t> (see dispatch_index_type).
template <typename G>
using index_type = std::decay_t<decltype(std::declval<G>().batch)>;

// The bias data, or null for a layer without bias.
template <typename scalar_t>
const scalar_t* bias_ptr(const std::optional<at::Tensor>& bias) {
  return bias.has_value() ? bias->const_data_ptr<scalar_t>() : nullptr;
}

// The dtypes every kernel is instantiated for.
#define TORCH_TCONV_DISPATCH(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, TYPE, NAME, __VA_ARGS__)

}  // namespace torch_tconv
