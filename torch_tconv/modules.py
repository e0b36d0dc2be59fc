"""nn.Module interface: drop-in replacements for torch.nn.ConvTranspose1d,
ConvTranspose2d and ConvTranspose3d, and ResizeConv1d/2d/3d (nearest-neighbour
resize then a convolution, run as one transposed convolution).

The forward is TorchScript code (torch.jit.script and trace work as with the
torch.nn classes) that calls the op directly; torch.fx traces it into one
call of the op, and during torch.onnx.export it runs torch.nn's own forward,
so the exporter emits a standard ONNX ConvTranspose node.

ConvTranspose1d/2d/3d warn (checkerboard.DeadPhaseWarning, a UserWarning) at
construction when some output phases receive no kernel tap.
"""

import math
import warnings
from typing import List, Optional

import torch
from torch import Tensor, nn

from .checkerboard import DeadPhaseWarning, _dead_phase_message
from .functional import (_exporting_to_onnx, _op_padding, _torch_conv_transpose,
                         conv_transpose1d, conv_transpose2d, conv_transpose3d)
from .init import _box_convolved

# torch.fx records the kernel builder as one call: its shape arithmetic on
# the weight is not traceable symbolically.
torch.fx.wrap("_box_convolved")


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
        # Once, here: PyTorch accepts such layers silently, and a layer whose
        # outputs are partly bias-only rarely is what was meant.
        message = _dead_phase_message(
            "ConvTranspose" + str(self._spatial_dims) + "d", self.kernel_size, self.stride,
            self.dilation, self._op_padding[:self._spatial_dims])
        if message is not None:
            warnings.warn(message, DeadPhaseWarning, stacklevel=2)

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


_FUNCTIONALS = {1: conv_transpose1d, 2: conv_transpose2d, 3: conv_transpose3d}


class _ResizeConvNd(nn.Module):
    """Nearest-neighbour resize by ``stride`` then a stride-1 convolution,
    computed as one transposed convolution (ResizeConv1d/2d/3d set
    _spatial_dims; the class docstring is _RESIZE_CONV_DOC)."""

    _spatial_dims = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride, groups: int = 1,
                 bias: bool = True, device=None, dtype=None):
        super().__init__()
        dims = self._spatial_dims
        name = type(self).__name__
        for arg, value in (("in_channels", in_channels), ("out_channels", out_channels),
                           ("groups", groups)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: {arg} must be a positive int, got {arg}={value!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: groups must divide in_channels and out_channels, got "
                             f"groups={groups}, in_channels={in_channels}, "
                             f"out_channels={out_channels}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.groups = groups
        self.kernel_size = self._per_dim("kernel_size", kernel_size)
        self.stride = self._per_dim("stride", stride)
        # Cropped from the full transposed output (in - 1) * s + m + s - 1 so
        # that it is in * s long and lines up with a convolution padded
        # (m - 1) // 2 before and m // 2 after (F.conv2d's padding='same').
        self._padding_pairs = [(m // 2, (m - 1) // 2) for m in self.kernel_size]
        # The op's form of those crops (the starts, then the ends), for a
        # forward that TorchScript can compile.
        self._op_padding: List[int] = [m // 2 for m in self.kernel_size] + \
            [(m - 1) // 2 for m in self.kernel_size]
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(
            (out_channels, in_channels // groups, *self.kernel_size), **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.reset_parameters()

    def _per_dim(self, arg: str, value) -> tuple:
        dims = self._spatial_dims
        values = [value] * dims if isinstance(value, int) and not isinstance(value, bool) \
            else value
        if not (isinstance(values, (tuple, list)) and len(values) == dims
                and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values)):
            raise ValueError(f"{type(self).__name__}: {arg} must be a positive int or "
                             f"{dims} positive ints, got {arg}={value!r}")
        return tuple(values)

    def reset_parameters(self) -> None:
        # nn.Conv*d's initialisation for the same weight layout.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = nn.init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    def transposed_weight(self) -> Tensor:
        """The transposed convolution's kernel, built from ``weight``
        (differentiably): ``box_s ⊛ g``, where ``g`` is ``weight`` flipped in
        space with its channel dims swapped per group.

        Returns:
            ``(C_in, C_out / groups, *(kernel_size + stride - 1))``.
        """
        groups, dims = self.groups, self._spatial_dims
        out_per_group = self.out_channels // groups
        in_per_group = self.in_channels // groups
        # A convolution correlates and its transpose scatters: the conv
        # kernel, flipped, with (out, in) swapped within each group.
        g = self.weight.reshape(groups, out_per_group, in_per_group, *self.kernel_size)
        g = g.transpose(1, 2).reshape(self.in_channels, out_per_group, *self.kernel_size)
        g = g.flip(list(range(2, 2 + dims)))
        return _box_convolved(g, list(self.stride))

    def forward(self, input: Tensor) -> Tensor:
        if not torch.jit.is_scripting():
            if _exporting_to_onnx():
                # The functional hands the call to torch's own op, which the
                # ONNX exporters translate.
                return _FUNCTIONALS[self._spatial_dims](
                    input, self.transposed_weight(), self.bias, self.stride,
                    self._padding_pairs, 0, self.groups, 1)
        dims = self._spatial_dims
        return torch.ops.torch_tconv.conv_transpose(
            input, self.transposed_weight(), self.bias, list(self.stride), self._op_padding,
            [0] * dims, [1] * dims, self.groups, None)

    def extra_repr(self) -> str:
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}")
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text


_RESIZE_CONV_DOC = r"""Nearest-neighbour upsampling by ``stride``, then a stride-1
    convolution with kernel ``g`` (``weight``), padded to keep the size:

        ResizeConv{n}d(...)(x) == F.conv{n}d(F.interpolate(x, scale_factor=stride,
                                             mode='nearest'),
                                 weight, bias, padding='same', groups=groups)

    exactly (the tests check it in float64), computed as ONE transposed
    convolution of stride ``s`` whose kernel is ``box_s ⊛ flip(g)`` (size
    ``m + s - 1`` per dim; ``transposed_weight``), cropped ``m // 2`` at the
    start and ``(m - 1) // 2`` at the end of each dim. Per input pixel and
    channel pair that is ``(m + s - 1)^n`` multiply-adds instead of the
    ``s^n * m^n`` of upsampling first (s2 m3 in 2-D: 16 instead of 36), and no
    upsampled tensor is stored.

    Every output phase of ``box_s ⊛ g`` sums to ``sum(g)``, so the layer has
    no checkerboard from uneven overlap: a constant input gives a constant
    output away from the borders (Odena et al. 2016). The parameter is ``g``
    itself and the kernel is built in ``forward``, so training keeps that
    property, as an ICNR-initialised (Aitken et al. 2017) layer would not.

    Args:
        in_channels, out_channels: as for ``nn.Conv{n}d``.
        kernel_size: ``m``, the convolution's size: an int or {n} ints.
        stride: the upsampling factor: an int or {n} ints.
        groups: as for ``nn.Conv{n}d``.
        bias: whether to add a learnable bias.

    Parameters: ``weight`` ``(C_out, C_in / groups, *m)`` and ``bias``
    ``(C_out,)``: the layout and default initialisation of ``nn.Conv{n}d``, so
    the weights of an ``nn.Upsample`` + ``nn.Conv{n}d`` pair load into it.

    Shapes: input ``(N, C_in, *size)`` or ``(C_in, *size)``; output
    ``(N, C_out, *(size * stride))``.

    Example: ``ResizeConv2d(64, 32, kernel_size=3, stride=2)(torch.randn(1, 64, 16, 16))``
    is ``(1, 32, 32, 32)``.
"""


class ResizeConv1d(_ResizeConvNd):
    __doc__ = _RESIZE_CONV_DOC.replace("{n}", "1")
    __constants__ = ["_spatial_dims"]
    _spatial_dims = 1


class ResizeConv2d(_ResizeConvNd):
    __doc__ = _RESIZE_CONV_DOC.replace("{n}", "2")
    __constants__ = ["_spatial_dims"]
    _spatial_dims = 2


class ResizeConv3d(_ResizeConvNd):
    __doc__ = _RESIZE_CONV_DOC.replace("{n}", "3")
    __constants__ = ["_spatial_dims"]
    _spatial_dims = 3
