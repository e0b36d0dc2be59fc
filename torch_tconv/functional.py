"""Functional interface: the same signatures and semantics as
``torch.nn.functional.conv_transpose1d``, ``conv_transpose2d`` and
``conv_transpose3d``.

Like torch's own functionals, they honour ``__torch_function__``: tensor
subclasses and torch.fx's symbolic tracing (whose Proxy is such a subclass)
see one call, and an FX graph records it as one call_function node. During
torch.onnx.export the call is handed to ``F.conv_transpose*d``, whose
standard ONNX ConvTranspose node the exporter knows, instead of a custom op it
has no translation for.
"""

import sys
from typing import List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch.overrides import handle_torch_function, has_torch_function_variadic

from . import _C  # registers the ops

IntOrTuple = Union[int, Sequence[int]]
# ints (both ends of each dim, as torch), 'same' or 'valid' (TensorFlow's
# modes), or one (start, end) pair per dim.
Padding = Union[int, Sequence[int], str, Sequence[Sequence[int]]]

_TORCH_FUNCTIONAL = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _expand(value: IntOrTuple, name: str, spatial_dims: int, op: str) -> List[int]:
    """An int, or a sequence of 1 or `spatial_dims` ints, as a list of
    `spatial_dims` ints. Ranges are checked by the op itself. Errors are the
    types F.conv_transpose2d raises: TypeError for a value that is not ints,
    RuntimeError for a sequence of the wrong length."""
    if _is_int(value):
        return [value] * spatial_dims
    if not (isinstance(value, (tuple, list, torch.Size)) and all(_is_int(v) for v in value)):
        raise TypeError(
            f"{op}: {name} must be an int or a tuple of {spatial_dims} ints, got {name}={value!r}")
    if len(value) == 1:
        return [value[0]] * spatial_dims
    if len(value) != spatial_dims:
        raise RuntimeError(
            f"{op}: {name} must be an int or a tuple of {spatial_dims} ints, got {name}={value!r}")
    return list(value)


def _exporting_to_onnx() -> bool:
    # torch.onnx is imported by whoever exports: until then, nothing is exporting.
    onnx = sys.modules.get("torch.onnx")
    return onnx is not None and onnx.is_in_onnx_export()


def _conv_transpose(
    spatial_dims: int,
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    stride: IntOrTuple,
    padding: Padding,
    output_padding: IntOrTuple,
    groups: int,
    dilation: IntOrTuple,
) -> torch.Tensor:
    op = f"conv_transpose{spatial_dims}d"
    for name, t in (("input", input), ("weight", weight)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")
    if bias is not None and not isinstance(bias, torch.Tensor):
        raise TypeError(f"{op}: bias must be a Tensor or None, got {type(bias).__name__}")
    if weight.dim() != spatial_dims + 2:
        raise RuntimeError(
            f"{op}: expected weight to be {spatial_dims + 2}-D, laid out as "
            f"(C_in, C_out/groups, *kernel_size), got weight of shape {tuple(weight.shape)}"
        )
    if not _is_int(groups):
        raise TypeError(f"{op}: groups must be an int, got groups={groups!r}")
    stride = _expand(stride, "stride", spatial_dims, op)
    output_padding = _expand(output_padding, "output_padding", spatial_dims, op)
    dilation = _expand(dilation, "dilation", spatial_dims, op)
    padding, output_padding = _op_padding(padding, output_padding, list(weight.shape[2:]),
                                          stride, dilation, spatial_dims, op)
    if bias is not None and bias.dtype != input.dtype and bias.is_floating_point():
        # F.conv_transpose2d accepts such a bias on some paths (float64 input,
        # unbatched input on the CPU) and refuses it on others; it is cast to
        # the input's dtype here everywhere, differentiably.
        bias = bias.to(input.dtype)
    if _exporting_to_onnx() and spatial_dims in _TORCH_FUNCTIONAL:
        return _torch_conv_transpose(spatial_dims, input, weight, bias, stride, padding,
                                     output_padding, groups, dilation)
    return torch.ops.torch_tconv.conv_transpose(
        input, weight, bias, stride, padding, output_padding, dilation, groups)


def _op_padding(padding, output_padding: List[int], kernel_size: List[int], stride: List[int],
                dilation: List[int], spatial_dims: int, op: str):
    """The ops' padding (one value per dim for both ends, or the starts then
    the ends) and output padding, from a functional's or module's padding:
    ints, 'same' or 'valid' (TensorFlow's modes, whose arithmetic is
    validation.cpp's padding_for_mode), or one (start, end) pair per dim."""
    if isinstance(padding, str):
        if any(output_padding):
            raise ValueError(f"{op}: output_padding must be 0 with padding={padding!r}, "
                             f"got output_padding={tuple(output_padding)}")
        return _C.padding_for_mode(spatial_dims, padding, kernel_size, stride, dilation)
    if isinstance(padding, (tuple, list)) and any(isinstance(p, (tuple, list)) for p in padding):
        pairs = list(padding)
        if len(pairs) != spatial_dims or not all(
                isinstance(p, (tuple, list)) and len(p) == 2 and all(_is_int(v) for v in p)
                for p in pairs):
            raise TypeError(
                f"{op}: padding as (start, end) pairs must have one pair of ints per spatial "
                f"dim ({spatial_dims}), got padding={padding!r}")
        return [p[0] for p in pairs] + [p[1] for p in pairs], output_padding
    return _expand(padding, "padding", spatial_dims, op), output_padding


def _torch_conv_transpose(spatial_dims, input, weight, bias, stride, padding, output_padding,
                          groups, dilation):
    """The same convolution in torch's own ops, which the ONNX exporters
    translate: F.conv_transpose*d, with an asymmetric crop as a pad of
    negative widths (ONNX Pad/Slice)."""
    conv = _TORCH_FUNCTIONAL[spatial_dims]
    if len(padding) == spatial_dims:
        return conv(input, weight, bias, stride, padding, output_padding, groups, dilation)
    full = conv(input, weight, None, stride, 0, 0, groups, dilation)
    starts, ends = padding[:spatial_dims], padding[spatial_dims:]
    widths = []
    for j in reversed(range(spatial_dims)):  # F.pad: the last dim first
        widths += [-starts[j], output_padding[j] - ends[j]]
    out = F.pad(full, widths)
    if bias is not None:
        out = out + bias.reshape([-1] + [1] * spatial_dims)
    return out


def _public(function, spatial_dims, input, weight, bias, stride, padding, output_padding,
            groups, dilation):
    """The body of each conv_transpose*d: __torch_function__, then the op."""
    if has_torch_function_variadic(input, weight, bias):
        return handle_torch_function(
            function, (input, weight, bias), input, weight, bias, stride=stride,
            padding=padding, output_padding=output_padding, groups=groups, dilation=dilation)
    return _conv_transpose(
        spatial_dims, input, weight, bias, stride, padding, output_padding, groups, dilation)


def conv_transpose1d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
) -> torch.Tensor:
    r"""1-D transposed convolution, the adjoint of ``conv1d``; equivalent to
    ``torch.nn.functional.conv_transpose1d``.

    ``out[n, oc, i*s - p + k*d] += x[n, ic, i] * w[ic, oc', k]`` within each group.

    Args:
        input: ``(N, C_in, L_in)`` or unbatched ``(C_in, L_in)``.
        weight: ``(C_in, C_out / groups, k)``.
        bias: ``(C_out,)`` or None. A bias of another floating dtype is cast
            to the input's.
        stride, output_padding, dilation: an int or a 1-tuple, as for
            ``conv_transpose2d``.
        padding: as for ``conv_transpose2d``: an int or 1-tuple, ``'same'``,
            ``'valid'`` or ``((start, end),)``.
        groups: splits ``C_in`` and ``C_out`` into ``groups`` independent parts.

    Returns:
        ``(N, C_out, L_out)`` (or ``(C_out, L_out)``) with
        ``L_out = (L_in - 1) * s - 2 * p + d * (k - 1) + output_padding + 1``.

    Raises:
        The types ``F.conv_transpose1d`` raises; each message names the argument.
    """
    return _public(conv_transpose1d, 1, input, weight, bias, stride, padding, output_padding,
                   groups, dilation)


def conv_transpose2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
) -> torch.Tensor:
    r"""2-D transposed convolution, the adjoint of ``conv2d``.

    Every input pixel multiplies the kernel and its products accumulate into
    the output window it lands on:
    ``out[n, oc, iy*sH - pH + ky*dH, ix*sW - pW + kx*dW] += x[n, ic, iy, ix] * w[ic, oc', ky, kx]``
    within each group. Equivalent to ``torch.nn.functional.conv_transpose2d``.

    Args:
        input: ``(N, C_in, H_in, W_in)`` or unbatched ``(C_in, H_in, W_in)``.
        weight: ``(C_in, C_out / groups, kH, kW)``.
        bias: ``(C_out,)`` or None. A bias of another floating dtype is cast
            to the input's.
        stride, output_padding, dilation: an int or a pair ``(h, w)``.
            ``output_padding`` adds rows/columns at the far end and must be
            smaller than ``stride`` or ``dilation``.
        padding: an int or a pair ``(h, w)``: that many rows/columns removed
            from each side of the full output ``(in - 1) * s + d * (k - 1) + 1``;
            or per side, ``((top, bottom), (left, right))``; or TensorFlow's
            ``'same'`` (output = input * stride, for any kernel, stride and
            dilation: the full output cropped by ``max(d * (k - 1) + 1 - s, 0)``,
            the smaller half at the start) or ``'valid'`` (output = input *
            stride + ``max(d * (k - 1) + 1 - s, 0)``: the full output); where the
            kernel's extent is below the stride both add zeros (bias) at the
            end up to input * stride. With a string, output_padding must be 0.
        groups: splits ``C_in`` and ``C_out`` into ``groups`` independent parts.

    Returns:
        ``(N, C_out, H_out, W_out)`` (or ``(C_out, H_out, W_out)``) with
        ``H_out = (H_in - 1) * sH - top - bottom + dH * (kH - 1) + output_padding_h + 1``
        (``top = bottom = pH`` for int padding) and likewise for ``W_out``.

    Raises:
        TypeError: an argument of the wrong type. RuntimeError: a value out of
        range or tensors that do not fit together. These are the types
        ``F.conv_transpose2d`` raises; each message names the argument.
    """
    return _public(conv_transpose2d, 2, input, weight, bias, stride, padding, output_padding,
                   groups, dilation)


def conv_transpose3d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
) -> torch.Tensor:
    r"""3-D transposed convolution, the adjoint of ``conv3d``; equivalent to
    ``torch.nn.functional.conv_transpose3d``.

    ``out[n, oc, iz*sD - pD + kz*dD, iy*sH - pH + ky*dH, ix*sW - pW + kx*dW]
    += x[n, ic, iz, iy, ix] * w[ic, oc', kz, ky, kx]`` within each group.

    Args:
        input: ``(N, C_in, D_in, H_in, W_in)`` or unbatched ``(C_in, D_in, H_in, W_in)``.
        weight: ``(C_in, C_out / groups, kD, kH, kW)``.
        bias: ``(C_out,)`` or None. A bias of another floating dtype is cast
            to the input's.
        stride, output_padding, dilation: an int or a triple ``(d, h, w)``,
            as for ``conv_transpose2d``.
        padding: as for ``conv_transpose2d``: an int or triple, ``'same'``,
            ``'valid'`` or three ``(start, end)`` pairs.
        groups: splits ``C_in`` and ``C_out`` into ``groups`` independent parts.

    Returns:
        ``(N, C_out, D_out, H_out, W_out)`` (or without N), each size
        ``(in - 1) * s - 2 * p + d * (k - 1) + output_padding + 1``.

    Raises:
        The types ``F.conv_transpose3d`` raises; each message names the argument.
    """
    return _public(conv_transpose3d, 3, input, weight, bias, stride, padding, output_padding,
                   groups, dilation)
