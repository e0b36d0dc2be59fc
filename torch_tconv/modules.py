"""nn.Module interface: drop-in replacements for torch.nn.ConvTranspose*d."""

from typing import List, Optional

import torch
from torch import nn

from .functional import _conv_transpose


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
            of dilated layers.)
    """

    _spatial_dims = 2

    def forward(self, input: torch.Tensor, output_size: Optional[List[int]] = None) -> torch.Tensor:
        spatial = None
        if output_size is not None:
            spatial = self._spatial_output_size(input, output_size)
        return _conv_transpose(
            self._spatial_dims,
            input,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self.output_padding,
            self.groups,
            self.dilation,
            output_size=spatial,
        )

    def _spatial_output_size(self, input: torch.Tensor, output_size) -> List[int]:
        """The spatial part of a requested output size; its range is checked by
        the op, which implies the output padding from it."""
        dims = self._spatial_dims
        leading = 2 if input.dim() == dims + 2 else 1
        size = list(output_size)
        if len(size) == leading + dims:
            size = size[leading:]
        if len(size) != dims:
            raise ValueError(
                f"{type(self).__name__}: for {input.dim()}-D input, output_size must have "
                f"{dims} or {leading + dims} elements, got output_size={tuple(output_size)}"
            )
        return size
