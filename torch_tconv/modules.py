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

from .functional import _exporting_to_onnx, _op_padding, _torch_conv_transpose


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


# The constructor arguments the ops' padding lists are resolved from.
_PADDING_INPUTS = ("padding", "output_padding", "stride", "dilation", "kernel_size")


class _ConvTransposeNd:
    """What ConvTranspose1d/2d/3d (each sets _spatial_dims) add to their
    torch.nn classes: padding may also be 'same', 'valid' or (start, end)
    pairs, resolved into the ops' lists (_op_padding, _op_output_padding)
    whenever a parameter they come from is set; the forward is TorchScript
    code that calls the op; during ONNX export it runs torch's own ops."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros",
                 device=None, dtype=None):
        # torch.nn stores ints; the other forms are set after its constructor.
        ints = isinstance(padding, int) or (
            isinstance(padding, (tuple, list)) and all(isinstance(p, int) for p in padding))
        super().__init__(in_channels, out_channels, kernel_size, stride, padding if ints else 0,
                         output_padding, groups, bias, dilation, padding_mode, device, dtype)
        if not ints:
            self.padding = padding
        self._resolve_padding()

    def _resolve_padding(self):
        op = "ConvTranspose" + str(self._spatial_dims) + "d"
        padding, output_padding = _op_padding(
            self.padding, list(self.output_padding), list(self.kernel_size), list(self.stride),
            list(self.dilation), self._spatial_dims, op)
        self._op_padding: List[int] = list(padding)
        self._op_output_padding: List[int] = list(output_padding)

    def __setattr__(self, name, value):
        super().__setattr__(name, value)
        if name in _PADDING_INPUTS and "_op_padding" in self.__dict__:
            self._resolve_padding()

    def forward(self, input: Tensor, output_size: Optional[List[int]] = None) -> Tensor:
        if not torch.jit.is_scripting():
            if _exporting_to_onnx():
                return self._forward_for_onnx(input, output_size)
        spatial: Optional[List[int]] = None
        if output_size is not None:
            spatial = _spatial_output_size(input, output_size, self._spatial_dims)
        return torch.ops.torch_tconv.conv_transpose(
            input, self.weight, self.bias, self.stride, self._op_padding,
            self._op_output_padding, self.dilation, self.groups, spatial)

    def _forward_for_onnx(self, input, output_size):
        if len(self._op_padding) == self._spatial_dims:
            return super().forward(input, output_size)
        if output_size is not None:
            raise NotImplementedError(
                "ConvTranspose" + str(self._spatial_dims) + "d: ONNX export of output_size "
                "with padding=" + repr(self.padding) + " is not supported")
        return _torch_conv_transpose(
            self._spatial_dims, input, self.weight, self.bias, list(self.stride),
            self._op_padding, self._op_output_padding, self.groups, list(self.dilation))


_CONSTRUCTOR_NOTE = """
    The constructor, parameters, default initialisation and ``extra_repr`` are
    those of the ``torch.nn`` class, so state_dicts load in both directions and
    ``isinstance`` against it holds. Only ``padding_mode='zeros'`` exists, as
    in PyTorch. ``padding`` may also be ``'same'``, ``'valid'`` or one
    ``(start, end)`` pair per dim, as for the functional
    (``conv_transpose2d`` explains them); the parameters stay the same. ``output_size`` in ``forward`` accepts every size the op can
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
