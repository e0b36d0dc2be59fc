"""nn.Module interface: drop-in replacements for torch.nn.ConvTranspose1d,
ConvTranspose2d and ConvTranspose3d.

The forward is TorchScript code (torch.jit.script and trace work as with the
torch.nn classes) that calls the op directly; torch.fx traces it into one
call of the op, and during torch.onnx.export it runs torch.nn's own forward,
so the exporter emits a standard ONNX ConvTranspose node.
"""

from typing import List, Optional

import torch
from torch import Tensor, nn

from .functional import _exporting_to_onnx


def _spatial_output_size(input: Tensor, output_size: List[int], spatial_dims: int) -> List[int]:
    """The spatial part of a requested output size, which may carry the
    output's leading dims too, as for nn.ConvTranspose2d. Its range is
    checked by the op, which implies the output padding from it."""
    leading = 2 if input.dim() == spatial_dims + 2 else 1
    size = [int(s) for s in output_size]
    if len(size) == leading + spatial_dims:
        size = size[leading:]
    if len(size) != spatial_dims:
        # Concatenation, not an f-string: this function is TorchScript too.
        raise ValueError(
            "ConvTranspose" + str(spatial_dims) + "d: for " + str(input.dim())
            + "-D input, output_size must have " + str(spatial_dims) + " or "
            + str(leading + spatial_dims) + " elements, got output_size=" + str(output_size))
    return size


# A leaf of torch.fx graphs: output_size may be a traced tensor shape.
torch.fx.wrap("_spatial_output_size")


class _ConvTransposeNd:
    """The forward of ConvTranspose1d/2d/3d (each sets _spatial_dims): TorchScript
    code that calls the op; during ONNX export, torch.nn's own forward."""

    def forward(self, input: Tensor, output_size: Optional[List[int]] = None) -> Tensor:
        if not torch.jit.is_scripting():
            if _exporting_to_onnx():
                return super().forward(input, output_size)
        spatial: Optional[List[int]] = None
        if output_size is not None:
            spatial = _spatial_output_size(input, output_size, self._spatial_dims)
        return torch.ops.torch_tconv.conv_transpose(
            input, self.weight, self.bias, self.stride, self.padding, self.output_padding,
            self.dilation, self.groups, spatial)


_CONSTRUCTOR_NOTE = """
    The constructor, parameters, default initialisation and ``extra_repr`` are
    those of the ``torch.nn`` class, so state_dicts load in both directions and
    ``isinstance`` against it holds. Only ``padding_mode='zeros'`` exists, as
    in PyTorch. ``output_size`` in ``forward`` accepts every size the op can
    produce: from the size with ``output_padding=0`` up to
    ``max(stride, dilation) - 1`` more in each dim (PyTorch's module bounds it
    by the stride alone and so rejects valid sizes of dilated layers); a size
    out of range is a ValueError, as in PyTorch.
"""


class ConvTranspose1d(_ConvTransposeNd, nn.ConvTranspose1d):
    __doc__ = r"""Drop-in replacement for :class:`torch.nn.ConvTranspose1d`.

    ``weight``: ``(C_in, C_out / groups, k)``; ``bias``: ``(C_out,)``.
    ``forward(input, output_size=None)``: input ``(N, C_in, L_in)`` or
    ``(C_in, L_in)``; output_size ``(L_out,)`` or with the output's leading dims.
""" + _CONSTRUCTOR_NOTE

    # A constant for TorchScript, which does not see class attributes otherwise.
    __constants__ = nn.ConvTranspose1d.__constants__ + ["_spatial_dims"]
    _spatial_dims = 1


class ConvTranspose2d(_ConvTransposeNd, nn.ConvTranspose2d):
    __doc__ = r"""Drop-in replacement for :class:`torch.nn.ConvTranspose2d`.

    ``weight``: ``(C_in, C_out / groups, kH, kW)``; ``bias``: ``(C_out,)``.
    ``forward(input, output_size=None)``: input ``(N, C_in, H_in, W_in)`` or
    ``(C_in, H_in, W_in)``; output_size ``(H_out, W_out)`` or with the
    output's leading dims.
""" + _CONSTRUCTOR_NOTE

    __constants__ = nn.ConvTranspose2d.__constants__ + ["_spatial_dims"]
    _spatial_dims = 2


class ConvTranspose3d(_ConvTransposeNd, nn.ConvTranspose3d):
    __doc__ = r"""Drop-in replacement for :class:`torch.nn.ConvTranspose3d`.

    ``weight``: ``(C_in, C_out / groups, kD, kH, kW)``; ``bias``: ``(C_out,)``.
    ``forward(input, output_size=None)``: input ``(N, C_in, D_in, H_in, W_in)``
    or without N; output_size ``(D_out, H_out, W_out)`` or with the output's
    leading dims.
""" + _CONSTRUCTOR_NOTE

    __constants__ = nn.ConvTranspose3d.__constants__ + ["_spatial_dims"]
    _spatial_dims = 3
