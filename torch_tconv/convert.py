"""Transposed-convolution kernels from other frameworks, in this library's
(and torch's) layout ``(C_in, C_out, k...)``, and back.

    w = torch_tconv.convert.from_keras(keras_layer.get_weights()[0])
    layer.weight.data.copy_(w)

Keras ``Conv{1,2,3}DTranspose`` and TensorFlow's ``conv{1,2,3}d_transpose``
store ``(k..., C_out, C_in)`` and compute the gradient of a convolution with
that kernel, as torch does: the kernel is transposed, never flipped.

Flax ``nn.ConvTranspose`` stores ``(k..., C_in, C_out)``. By default
(``transpose_kernel=False``) it correlates the stride-dilated input with the
kernel as it is, which is torch's transposed convolution with the kernel
flipped in every spatial dim; with ``transpose_kernel=True`` its kernel is
``(k..., C_out, C_in)`` and it matches Keras.

Only ``groups=1`` kernels convert (neither Keras's nor Flax's transposed
convolutions have groups). The padding of each framework maps as the README's
padding table says (Keras and Flax ``'same'``/``'valid'``: ``padding='same'``/``'valid'``).
"""

import numpy as np
import torch

__all__ = ["from_keras", "to_keras", "from_flax", "to_flax"]


def _as_tensor(kernel, name):
    tensor = torch.as_tensor(np.asarray(kernel)) if not isinstance(kernel, torch.Tensor) else kernel
    if tensor.dim() not in (3, 4, 5):
        raise ValueError(f"{name}: expected a 1-D, 2-D or 3-D kernel with two channel dims "
                         f"(3 to 5 dims in all), got shape {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point kernel, got dtype {tensor.dtype}")
    return tensor


def _channels_first(kernel, in_axis, out_axis):
    """(k..., a, b) -> (C_in, C_out, k...), the channel axes given."""
    spatial = list(range(kernel.dim() - 2))
    return kernel.permute(in_axis, out_axis, *spatial).contiguous()


def _channels_last(weight, in_last):
    """(C_in, C_out, k...) -> (k..., C_in, C_out) or (k..., C_out, C_in)."""
    spatial = list(range(2, weight.dim()))
    order = spatial + ([0, 1] if in_last is False else [1, 0])
    return weight.permute(*order).contiguous()


def from_keras(kernel) -> torch.Tensor:
    """A Keras/TensorFlow transposed-convolution kernel ``(k..., C_out, C_in)``
    as ``(C_in, C_out, k...)``."""
    kernel = _as_tensor(kernel, "from_keras")
    dims = kernel.dim() - 2
    return _channels_first(kernel, dims + 1, dims)


def to_keras(weight: torch.Tensor) -> torch.Tensor:
    """``(C_in, C_out, k...)`` as a Keras/TensorFlow kernel ``(k..., C_out, C_in)``."""
    weight = _as_tensor(weight, "to_keras")
    return _channels_last(weight, in_last=True)


def from_flax(kernel, transpose_kernel: bool = False) -> torch.Tensor:
    """A Flax ``ConvTranspose`` kernel as ``(C_in, C_out, k...)``: with
    ``transpose_kernel=False`` (Flax's default) ``(k..., C_in, C_out)``,
    flipped in every spatial dim; with ``transpose_kernel=True`` Keras's layout."""
    if transpose_kernel:
        return from_keras(kernel)
    kernel = _as_tensor(kernel, "from_flax")
    dims = kernel.dim() - 2
    return _channels_first(kernel, dims, dims + 1).flip(list(range(2, dims + 2)))


def to_flax(weight: torch.Tensor, transpose_kernel: bool = False) -> torch.Tensor:
    """``(C_in, C_out, k...)`` as a Flax ``ConvTranspose`` kernel (the inverse
    of from_flax)."""
    if transpose_kernel:
        return to_keras(weight)
    weight = _as_tensor(weight, "to_flax")
    return _channels_last(weight.flip(list(range(2, weight.dim()))), in_last=False)
