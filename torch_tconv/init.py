"""Initialisations of transposed-convolution kernels that do not produce
checkerboard artifacts, in place, like ``torch.nn.init``.

A transposed convolution of stride ``s`` is free of the checkerboard pattern
of uneven overlap when every output phase (output position mod ``s``) sums its
taps to the same gain (``torch_tconv.checkerboard.phase_gains``): then an
input that is constant per channel gives an output that is constant per
channel away from the borders. Both initialisations here have that property:

``resize_conv_``  the kernel of nearest-neighbour resize by ``s`` followed by a
                  stride-1 convolution (Odena, Dumoulin & Olah 2016; the
                  transposed-convolution form of the ICNR idea of Aitken et al.
                  2017): ``box_s ⊛ g``, ``g`` random or given.
``bilinear_``     the bilinear-interpolation kernel of FCN-style upsampling,
                  one per channel.

``resize_conv_kernel`` builds ``box_s ⊛ g`` differentiably;
``torch_tconv.ResizeConv2d`` uses it to stay artifact-free during training.
"""

import math
from typing import List, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from .functional import _is_int

IntOrTuple = Union[int, Sequence[int]]

__all__ = ["resize_conv_kernel", "resize_conv_", "bilinear_"]


def _per_dim(function: str, name: str, value: IntOrTuple, dims: int, minimum: int) -> List[int]:
    """`value` (an int, or a sequence of `dims` ints, each at least `minimum`)
    as a list of `dims` ints; TypeError or ValueError naming the argument."""
    if _is_int(value):
        values = [value] * dims
    elif isinstance(value, (tuple, list, torch.Size)) and all(_is_int(v) for v in value):
        values = list(value)
        if len(values) != dims:
            raise ValueError(f"{function}: {name} must be an int or {dims} ints (one per spatial "
                             f"dim), got {name}={value!r}")
    else:
        raise TypeError(f"{function}: {name} must be an int or a tuple of {dims} ints, "
                        f"got {name}={value!r}")
    if any(v < minimum for v in values):
        raise ValueError(f"{function}: {name} must be >= {minimum} in every dim, "
                         f"got {name}={value!r}")
    return values


def _check_kernel_layout(function: str, name: str, tensor, spatial: str) -> None:
    """TypeError or ValueError naming the argument unless `tensor` is a
    Tensor laid out as (C_in, C_out/groups, *spatial) with a spatial dim."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{function}: {name} must be a Tensor, got {type(tensor).__name__}")
    if tensor.dim() < 3:
        raise ValueError(f"{function}: {name} must be laid out as (C_in, C_out/groups, "
                         f"*{spatial}) with at least one spatial dim, got {name} of shape "
                         f"{tuple(tensor.shape)}")


def _check_weight(function: str, weight) -> int:
    """The number of spatial dims of a (C_in, C_out/groups, *kernel_size) weight."""
    _check_kernel_layout(function, "weight", weight, "kernel_size")
    if not weight.is_floating_point():
        raise TypeError(f"{function}: weight must have a floating dtype, got {weight.dtype}")
    return weight.dim() - 2


def resize_conv_kernel(base: Tensor, stride: IntOrTuple) -> Tensor:
    r"""The full convolution ``box_s ⊛ base`` over the trailing spatial dims:
    the transposed-convolution kernel of a nearest-neighbour resize by
    ``stride`` followed by a stride-1 convolution.

    Differentiable in ``base`` (a sum of shifted copies), so a layer
    parameterised by ``base`` can build its kernel in ``forward``.

    Args:
        base: ``(C_in, C_out / groups, *m)``.
        stride: an int (every dim after the first two is spatial), or one int
            per spatial dim (the last ``len(stride)`` dims), each >= 1.

    Returns:
        ``(..., *(m + stride - 1))``: ``out[..., j] = sum_{b < s} base[..., j - b]``
        per dim (terms outside ``base`` are 0). Every output phase ``r`` (index
        mod ``s``) then sums to ``base.sum()`` over its taps: the phase gains
        are uniform.

    Example: ``resize_conv_kernel(torch.ones(1, 1, 3), 2)`` is ``[[[1, 2, 2, 1]]]``.
    """
    function = "resize_conv_kernel"
    _check_kernel_layout(function, "base", base, "m")
    is_sequence = isinstance(stride, (tuple, list, torch.Size))
    dims = len(stride) if is_sequence else base.dim() - 2
    strides = _per_dim(function, "stride", stride, dims, 1)
    if dims > base.dim() - 2:
        raise ValueError(f"{function}: stride has {dims} entries but base of shape "
                         f"{tuple(base.shape)} has only {base.dim() - 2} spatial dims")
    return _box_convolved(base, strides)


def _box_convolved(kernel: Tensor, strides: List[int]) -> Tensor:
    """resize_conv_kernel without the checks: TorchScript code, which
    ResizeConv*d's forward runs (strides: one per trailing spatial dim)."""
    dims = len(strides)
    # Separable: the box of ones is a product of 1-D boxes, so one pass per dim
    # of s shifted copies (s * dims terms instead of s ** dims).
    for axis in range(dims):
        s = strides[axis]
        if s > 1:
            dim = kernel.dim() - dims + axis
            m = kernel.shape[dim]
            zeros_shape = list(kernel.shape)
            zeros_shape[dim] = s - 1
            zeros = kernel.new_zeros(zeros_shape)
            padded = torch.cat([zeros, kernel, zeros], dim)  # m + 2(s - 1) long
            # out[j] = sum_b kernel[j - b] = sum_b padded[j - b + s - 1]
            total = padded.narrow(dim, s - 1, m + s - 1)
            for b in range(1, s):
                total = total + padded.narrow(dim, s - 1 - b, m + s - 1)
            kernel = total
    return kernel


def resize_conv_(weight: Tensor, stride: IntOrTuple, base: Optional[Tensor] = None) -> Tensor:
    r"""Fills a transposed-convolution weight, in place, with the kernel of a
    nearest-neighbour resize by ``stride`` followed by a stride-1 convolution:
    ``weight = box_s ⊛ g`` (``resize_conv_kernel``), ``g`` of size
    ``m = kernel_size - stride + 1`` per dim.

    Every output phase then has the same gain (``sum(g)`` per channel pair),
    so ``checkerboard.phase_gain_score`` is 0 and an input that is constant
    per channel gives a constant output away from the borders, for any
    padding and any dilation coprime with the stride. With dilation 1 the
    layer computes exactly ``F.conv2d(F.interpolate(x, scale_factor=s,
    mode='nearest'), w_c, padding='same')`` when its padding is
    ``(m // 2, (m - 1) // 2)`` per dim (start, end) and ``w_c`` is ``g``
    flipped in space with its first two dims swapped (per group);
    ``torch_tconv.ResizeConv2d`` is that layer.

    Args:
        weight: ``(C_in, C_out / groups, *kernel_size)``, a torch_tconv or
            ``torch.nn`` ConvTranspose weight (a Parameter is filled without
            recording autograd history), ``kernel_size >= stride`` per dim.
        stride: the layer's stride: an int or one int per spatial dim.
        base: ``g``, ``(C_in, C_out / groups, *m)``; by default drawn as
            ``nn.ConvTranspose*d`` draws its weight (``kaiming_uniform_`` with
            ``a = sqrt(5)``, fan-in ``C_out / groups * prod(m)``), so the
            resize-then-convolve layer starts at the scale of a default
            stride-1 layer with kernel ``m``.

    Returns:
        ``weight``.

    Example: ``resize_conv_(torch_tconv.ConvTranspose2d(8, 8, 4, stride=2, padding=1).weight, 2)``.
    """
    function = "resize_conv_"
    dims = _check_weight(function, weight)
    strides = _per_dim(function, "stride", stride, dims, 1)
    kernel_size = list(weight.shape[2:])
    if any(k < s for k, s in zip(kernel_size, strides)):
        raise ValueError(
            f"{function}: the kernel must be at least as large as the stride in every dim "
            f"(a resize by s then a convolution of size m has a kernel of m + s - 1), got "
            f"kernel_size={tuple(kernel_size)} (weight of shape {tuple(weight.shape)}) with "
            f"stride={tuple(strides)}")
    base_shape = tuple(weight.shape[:2]) + tuple(k - s + 1 for k, s in zip(kernel_size, strides))
    with torch.no_grad():
        if base is None:
            base = torch.empty(base_shape, dtype=weight.dtype, device=weight.device)
            nn.init.kaiming_uniform_(base, a=math.sqrt(5))
        elif not isinstance(base, Tensor):
            raise TypeError(f"{function}: base must be a Tensor or None, got {type(base).__name__}")
        elif tuple(base.shape) != base_shape:
            raise ValueError(
                f"{function}: base must have shape (C_in, C_out/groups, *(kernel_size - stride "
                f"+ 1)) = {base_shape} for weight of shape {tuple(weight.shape)} and "
                f"stride={tuple(strides)}, got base of shape {tuple(base.shape)}")
        weight.copy_(resize_conv_kernel(base.to(weight.device, weight.dtype), strides))
    return weight


def _triangle(kernel_size: int, stride: int, dtype, device) -> Tensor:
    """Linear interpolation by `stride`: a triangle of half-width `stride`
    centred in the kernel. Its samples at spacing `stride` sum to 1 in every
    phase when the kernel holds all of its support (kernel_size >= 2s - 1)."""
    centre = (kernel_size - 1) / 2
    positions = torch.arange(kernel_size, dtype=torch.float64)
    return (1 - (positions - centre).abs() / stride).clamp(min=0).to(dtype=dtype, device=device)


def bilinear_(weight: Tensor, stride: IntOrTuple, groups: int = 1) -> Tensor:
    r"""Fills a transposed-convolution weight, in place, with the (bi/tri)linear
    interpolation kernel of FCN-style upsampling, each channel to itself.

    Per dim, a triangle of half-width ``stride`` centred in the kernel
    (``1 - |j - (k - 1) / 2| / s``, at least 0); the N-d kernel is their
    outer product. For ``kernel_size = 2 * stride`` this is the usual
    upsampling filter (k4 s2: ``[0.25, 0.75, 0.75, 0.25]``), and with
    ``padding = stride // 2`` the output is the input linearly interpolated
    on a grid ``stride`` times finer. The phases' gains are all 1: a constant
    input stays constant and a linear ramp stays linear away from the borders.

    Channels: the identity map, as in FCN: output channel ``c`` interpolates
    input channel ``c`` and no other (so ``C_in`` must equal ``C_out``; for
    mixing channels as well, follow the layer with a 1x1 convolution). Within
    each group the ``c``-th input channel feeds the ``c``-th output channel,
    so a depthwise weight ``(C, 1, *k)`` gets the filter in every channel.

    Args:
        weight: ``(C_in, C_out / groups, *kernel_size)`` with ``C_in ==
            groups * (C_out / groups)`` and ``kernel_size >= 2 * stride - 1``
            per dim (smaller kernels truncate the triangle: not an interpolation).
        stride: the layer's stride: an int or one int per spatial dim.
        groups: the layer's groups.

    Returns:
        ``weight``.

    Example: ``bilinear_(torch_tconv.ConvTranspose2d(3, 3, 4, stride=2, padding=1).weight, 2)``.
    """
    function = "bilinear_"
    dims = _check_weight(function, weight)
    strides = _per_dim(function, "stride", stride, dims, 1)
    if not _is_int(groups):
        raise TypeError(f"{function}: groups must be an int, got groups={groups!r}")
    in_channels, out_per_group = weight.shape[0], weight.shape[1]
    if groups < 1 or in_channels % groups:
        raise ValueError(f"{function}: groups must be >= 1 and divide C_in={in_channels}, "
                         f"got groups={groups}")
    if in_channels != groups * out_per_group:
        raise ValueError(
            f"{function}: the per-channel (identity) interpolation needs as many output as input "
            f"channels, got weight of shape {tuple(weight.shape)} with groups={groups} "
            f"(C_in={in_channels}, C_out={groups * out_per_group}); follow an interpolation of "
            f"C_in channels by a 1x1 convolution to change the channel count")
    kernel_size = list(weight.shape[2:])
    if any(k < 2 * s - 1 for k, s in zip(kernel_size, strides)):
        raise ValueError(
            f"{function}: linear interpolation by s needs kernel_size >= 2 * s - 1 in every dim, "
            f"got kernel_size={tuple(kernel_size)} with stride={tuple(strides)}")
    with torch.no_grad():
        kernel = torch.ones((), dtype=weight.dtype, device=weight.device)
        for k, s in zip(kernel_size, strides):
            kernel = kernel.unsqueeze(-1) * _triangle(k, s, weight.dtype, weight.device)
        weight.zero_()
        # The c-th input channel of each group is channel c mod (C_in / groups) of it.
        channels = torch.arange(in_channels, device=weight.device)
        weight[channels, channels % out_per_group] = kernel
    return weight
