// Autocast for the forward op, as ATen does for conv_transpose2d: under
// torch.autocast its floating inputs are cast to the autocast dtype of the
// device (lower_precision_fp policy). The gradient ops need no autocast kernel:
// the backward runs in the dtypes that the forward saw.
#include <ATen/autocast_mode.h>
#include <torch/library.h>

namespace torch_tconv {
namespace {

template <c10::DeviceType device>
at::Tensor autocast_forward(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef output_padding,
    at::IntArrayRef dilation, int64_t groups, at::OptionalSymIntArrayRef output_size) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(
      at::autocast::get_autocast_dispatch_key_from_device_type(device));
  const auto dtype = at::autocast::get_lower_precision_fp_from_device_type(device);
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("torch_tconv::conv_transpose", "")
                             .typed<decltype(autocast_forward<device>)>();
  return op.call(at::autocast::cached_cast(dtype, input, device),
                 at::autocast::cached_cast(dtype, weight, device),
                 at::autocast::cached_cast(dtype, bias, device), stride, padding,
                 output_padding, dilation, groups, output_size);
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_tconv, AutocastCPU, m) {
  m.impl("conv_transpose", &autocast_forward<c10::DeviceType::CPU>);
}

TORCH_LIBRARY_IMPL(torch_tconv, AutocastCUDA, m) {
  m.impl("conv_transpose", &autocast_forward<c10::DeviceType::CUDA>);
}

}  // namespace torch_tconv
