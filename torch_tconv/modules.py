"""nn.Module interface: drop-in replacements for torch.nn.ConvTranspose*d.

The forward is TorchScript code (torch.jit.script and trace work as with
nn.ConvTranspose2d) that calls the op directly; torch.fx traces it into one
call of the op, and during torch.onnx.export it runs nn.ConvTranspose2d's own
forward, so the exporter emits a standard ONNX ConvTranspose node.
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


class ConvTranspose2d(nn.ConvTranspose2d):
    r"""Drop-in replacement for :class:`torch.nn.ConvTranspose2d`.

    The constructor, parameters (``weight`` of shape
    ``(C_in, C_out / groups, kH, kW)``, ``bias`` of shape ``(C_out,)``), default
    initialisation and ``extra_repr`` are those of ``nn.ConvTranspose2d``, so
    state_dicts load in both directions and ``isinstance(m, nn.ConvTranspose2d)``
    holds. Only ``padding_mode='zeros'`` exists, as in PyTorch.

    ``forward(input, output_size=None)``:
        input: ``(N, C_in, H_in, W_in)`` or ``(C_in, H_in, W_in)``.
        output_size: optional target size, ``(H_out, W_out)`` or with the
            leading dims of the output. Every size that ``conv_transpose2d``
            can produce is accepted: from the size with ``output_padding=0`` up
            to ``max(stride, dilation) - 1`` more in each dim. (PyTorch's own
            module bounds this by the stride alone, and so rejects valid sizes
            of dilated layers.) A size out of range is a ValueError, as in
            PyTorch.
    """

    # A constant for TorchScript, which does not see class attributes otherwise.
    __constants__ = nn.ConvTranspose2d.__constants__ + ["_spatial_dims"]
    _spatial_dims = 2

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
