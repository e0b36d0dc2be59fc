"""Functional interface: the same signatures and semantics as
``torch.nn.functional.conv_transpose2d``."""

from typing import Optional, Sequence, Union

import torch

from . import _C  # noqa: F401  (registers the ops)

IntOrTuple = Union[int, Sequence[int]]


def _expand(value: IntOrTuple, name: str, spatial_dims: int, op: str) -> list:
    """An int, or a sequence of 1 or `spatial_dims` ints, as a list of
    `spatial_dims` ints. Ranges are checked by the op itself."""
    if isinstance(value, int) and not isinstance(value, bool):
        return [value] * spatial_dims
    if isinstance(value, (tuple, list, torch.Size)) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        if len(value) == 1:
            return [value[0]] * spatial_dims
        if len(value) == spatial_dims:
            return list(value)
    raise ValueError(
        f"{op}: {name} must be an int or a tuple of {spatial_dims} ints, got {name}={value!r}"
    )


def _conv_transpose(
    spatial_dims: int,
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    stride: IntOrTuple,
    padding: IntOrTuple,
    output_padding: IntOrTuple,
    groups: int,
    dilation: IntOrTuple,
    output_size: Optional[Sequence[int]] = None,
) -> torch.Tensor:
    op = f"conv_transpose{spatial_dims}d"
    for name, t in (("input", input), ("weight", weight)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")
    if bias is not None and not isinstance(bias, torch.Tensor):
        raise TypeError(f"{op}: bias must be a Tensor or None, got {type(bias).__name__}")
    if weight.dim() != spatial_dims + 2:
        raise ValueError(
            f"{op}: expected weight to be {spatial_dims + 2}-D, laid out as "
            f"(C_in, C_out/groups, *kernel_size), got weight of shape {tuple(weight.shape)}"
        )
    if not isinstance(groups, int) or isinstance(groups, bool):
        raise ValueError(f"{op}: groups must be an int, got groups={groups!r}")
    return torch.ops.torch_tconv.conv_transpose(
        input,
        weight,
        bias,
        _expand(stride, "stride", spatial_dims, op),
        _expand(padding, "padding", spatial_dims, op),
        _expand(output_padding, "output_padding", spatial_dims, op),
        _expand(dilation, "dilation", spatial_dims, op),
        groups,
        None if output_size is None else list(output_size),
    )


def conv_transpose2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
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
        bias: ``(C_out,)`` or None.
        stride, padding, output_padding, dilation: an int or a pair ``(h, w)``.
            ``padding`` removes that many rows/columns from each side of the
            full output ``(in - 1) * s + d * (k - 1) + 1``; ``output_padding``
            adds rows/columns at the far end and must be smaller than
            ``stride`` or ``dilation``.
        groups: splits ``C_in`` and ``C_out`` into ``groups`` independent parts.

    Returns:
        ``(N, C_out, H_out, W_out)`` (or ``(C_out, H_out, W_out)``) with
        ``H_out = (H_in - 1) * sH - 2 * pH + dH * (kH - 1) + output_padding_h + 1``
        and likewise for ``W_out``.
    """
    return _conv_transpose(2, input, weight, bias, stride, padding, output_padding, groups, dilation)
