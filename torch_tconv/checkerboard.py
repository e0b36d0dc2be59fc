r"""Checkerboard artifacts of transposed convolutions: where they come from,
how strong a layer's are, and a picture of them.

A transposed convolution of stride ``s`` scatters every input pixel's copy of
the kernel onto the output at steps of ``s``. Away from the borders, output
position ``o`` then receives the taps ``j`` with ``j * d ≡ o + p (mod s)``
(``d`` the dilation, ``p`` the padding cropped at the start): which taps
depends only on the output's *phase* ``r = o mod s``. Per dim, phase ``r``
receives

    c_r = #{ j in [0, k) : j * d ≡ r + p (mod s) }

taps, and in N-d the product of the per-dim counts (k3 s2: ``[2, 1]`` per dim,
``[[4, 2], [2, 1]]`` in 2-D). The counts are uniform exactly when ``s``
divides ``k`` and ``gcd(d, s) = 1``; where ``k < s`` or ``gcd(d, s) > 1`` some
phases get no tap at all (*dead phases*: those outputs are the bias alone,
whatever the input; k3 s2 d2 gives ``[3, 0]``). Uneven counts are what
Odena, Dumoulin & Olah (2016, "Deconvolution and Checkerboard Artifacts")
saw as checkerboard patterns.

Whether a trained or initialised layer shows the pattern depends on its
weights: the *phase gain* ``G_r[i, o]`` is the sum of the taps of channel
pair ``(i, o)`` that land on phase ``r`` (``phase_gains``). An input that is
constant per channel, ``x_i = c_i``, gives output channel ``o`` the value
``sum_i c_i * G_r[i, o] + bias[o]`` on phase ``r`` away from the borders, so
such inputs all give constant outputs exactly when every channel pair's gain
is the same in every phase. ``phase_gain_score`` measures how far from that
the weights are; ``torch_tconv.init.resize_conv_`` (nearest resize then a
convolution, Aitken et al. 2017's idea in transposed form) and
``torch_tconv.init.bilinear_`` initialise at score 0.

Functions: ``tap_counts``, ``dead_phases``, ``overlap_map`` (exact counts,
borders included), ``interior_mask``, ``phase_gains``, ``phase_gain_score``,
``report`` (every transposed convolution of a model), ``summary`` (text for
one configuration) and ``plot`` (a PNG).

Arguments of the geometry functions: ``kernel_size``, ``stride``,
``dilation``, ``padding``, ``output_padding`` and ``input_size`` are each an
int or a tuple with one int per spatial dim; the tuples' length sets the
number of spatial dims (all of them must agree), and with ints only it is 2.
``padding`` may also be ``'same'``, ``'valid'`` or one ``(start, end)`` pair
per dim, as for ``torch_tconv.conv_transpose2d``; only the start crop moves
the phases. Bad values raise ValueError, values of the wrong type TypeError,
each naming the argument.
"""

import math
import os
import warnings
from dataclasses import dataclass, field
from functools import reduce
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .functional import _is_int, _op_padding
from .init import _check_kernel_layout, _per_dim

IntOrTuple = Union[int, Sequence[int]]
Padding = Union[int, Sequence[int], str, Sequence[Sequence[int]]]

__all__ = ["DeadPhaseWarning", "tap_counts", "dead_phases", "overlap_map", "interior_mask",
           "phase_gains", "phase_gain_score", "LayerReport", "Report", "report", "summary",
           "plot"]

DEFAULT_DIMS = 2


class DeadPhaseWarning(UserWarning):
    """A transposed convolution whose stride, kernel size and dilation leave
    some output phases without any kernel tap (bias-only outputs).
    ``torch_tconv.ConvTranspose1d/2d/3d`` emit it at construction; silence it
    with ``warnings.filterwarnings("ignore", category=DeadPhaseWarning)``."""


def _is_sequence(value) -> bool:
    return isinstance(value, (tuple, list, torch.Size))


def _spatial_dims(function: str, **values) -> int:
    """The number of spatial dims the arguments describe: the common length
    of those given as sequences (a 'same'/'valid' string has none), else 2."""
    lengths = {name: len(v) for name, v in values.items() if _is_sequence(v)}
    if not lengths:
        return DEFAULT_DIMS
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{name}={values[name]!r}" for name in lengths)
        raise ValueError(f"{function}: the tuple arguments must have one entry per spatial dim, "
                         f"all the same number, got {described}")
    dims = next(iter(lengths.values()))
    if dims < 1:
        name = next(iter(lengths))
        raise ValueError(f"{function}: {name} must have at least one entry, got {name}={values[name]!r}")
    return dims


@dataclass(frozen=True)
class _Geometry:
    """One transposed convolution's arithmetic, per spatial dim."""
    kernel_size: List[int]
    stride: List[int]
    dilation: List[int]
    pad_start: List[int]
    pad_end: List[int]
    output_padding: List[int]

    @property
    def dims(self) -> int:
        return len(self.stride)

    def tap_phase(self, axis: int, tap: int) -> int:
        """The output phase (position mod stride) that tap `tap` lands on."""
        return (tap * self.dilation[axis] - self.pad_start[axis]) % self.stride[axis]

    def counts_1d(self, axis: int) -> List[int]:
        counts = [0] * self.stride[axis]
        for tap in range(self.kernel_size[axis]):
            counts[self.tap_phase(axis, tap)] += 1
        return counts

    def output_size(self, input_size: Sequence[int]) -> List[int]:
        return [(n - 1) * s - a - b + d * (k - 1) + op + 1 for n, s, a, b, d, k, op in zip(
            input_size, self.stride, self.pad_start, self.pad_end, self.dilation,
            self.kernel_size, self.output_padding)]


def _geometry(function: str, kernel_size, stride, dilation=1, padding: Padding = 0,
              output_padding=0, dims: Optional[int] = None, **more_sized) -> _Geometry:
    if dims is None:
        sized = dict(kernel_size=kernel_size, stride=stride, dilation=dilation,
                     output_padding=output_padding, **more_sized)
        if not isinstance(padding, str):
            sized["padding"] = padding
        dims = _spatial_dims(function, **sized)
    kernel_size = _per_dim(function, "kernel_size", kernel_size, dims, 1)
    stride = _per_dim(function, "stride", stride, dims, 1)
    dilation = _per_dim(function, "dilation", dilation, dims, 1)
    output_padding = _per_dim(function, "output_padding", output_padding, dims, 0)
    for name, value in (("kernel_size", kernel_size), ("stride", stride), ("dilation", dilation),
                        ("output_padding", output_padding)):
        if len(value) != dims:
            raise ValueError(f"{function}: {name} must have one entry per spatial dim ({dims}), "
                             f"got {name}={tuple(value)}")
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"{function}: padding must be an int, a tuple, 'same' or 'valid', "
                             f"got padding={padding!r}")
    elif _is_sequence(padding) and any(_is_sequence(p) for p in padding):
        if len(padding) != dims or not all(
                _is_sequence(p) and len(p) == 2 and all(_is_int(v) for v in p) for p in padding):
            raise TypeError(f"{function}: padding as (start, end) pairs needs one pair of ints "
                            f"per spatial dim ({dims}), got padding={padding!r}")
        if any(v < 0 for p in padding for v in p):
            raise ValueError(f"{function}: padding must be >= 0, got padding={padding!r}")
    else:
        checked = _per_dim(function, "padding", padding, dims, 0)
        if len(checked) != dims:
            raise ValueError(f"{function}: padding must have one entry per spatial dim ({dims}), "
                             f"got padding={padding!r}")
    for axis in range(dims):
        if output_padding[axis] >= max(stride[axis], dilation[axis]):
            raise ValueError(
                f"{function}: output_padding must be smaller than the stride or the dilation in "
                f"every dim, got output_padding={tuple(output_padding)} with "
                f"stride={tuple(stride)} and dilation={tuple(dilation)}")
    pads, output_padding = _op_padding(padding, output_padding, kernel_size, stride, dilation,
                                       dims, function)
    pads = list(pads)
    starts, ends = (pads, pads) if len(pads) == dims else (pads[:dims], pads[dims:])
    return _Geometry(kernel_size, stride, dilation, list(starts), list(ends), list(output_padding))


def _outer(vectors: Sequence[Tensor]) -> Tensor:
    """The N-d outer product of 1-D tensors."""
    dims = len(vectors)
    shaped = [v.reshape([-1 if a == axis else 1 for a in range(dims)])
              for axis, v in enumerate(vectors)]
    return reduce(torch.mul, shaped)


def tap_counts(kernel_size: IntOrTuple, stride: IntOrTuple, dilation: IntOrTuple = 1,
               padding: Padding = 0) -> Tensor:
    r"""How many kernel taps each output phase receives away from the borders.

    Phase ``r`` (per dim, output position mod ``stride``) receives
    ``#{j < k : j * d ≡ r + p (mod s)}`` taps per dim (``p`` the padding
    cropped at the start); the N-d count is the product over dims.

    Args: see the module docstring (ints alone mean 2-D).

    Returns:
        An int64 tensor of shape ``stride``: ``counts[r_1, ..., r_n]``.

    Example: ``tap_counts((3,), (2,))`` is ``tensor([2, 1])``; ``tap_counts(3, 2)``
    is ``tensor([[4, 2], [2, 1]])`` (max/min 4: uneven overlap).
    """
    geometry = _geometry("tap_counts", kernel_size, stride, dilation, padding)
    return _outer([torch.tensor(geometry.counts_1d(a), dtype=torch.int64)
                   for a in range(geometry.dims)])


def dead_phases(kernel_size: IntOrTuple, stride: IntOrTuple, dilation: IntOrTuple = 1,
                padding: Padding = 0) -> List[Tuple[int, ...]]:
    r"""The output phases that receive no kernel tap: their outputs are the
    bias alone, everywhere (a border output receives at most its phase's
    interior taps).

    There are some exactly when, in some dim, ``k < s`` or
    ``gcd(d, s) > 1`` (the taps reach only ``min(k, s / gcd(d, s))`` of the
    ``s`` phases).

    Returns:
        The phase indices, one tuple per phase, in row-major order.

    Example: ``dead_phases(3, 2, dilation=2)`` is ``[(0, 1), (1, 0), (1, 1)]``:
    three quarters of the outputs of a k3 s2 d2 layer ignore the input.
    """
    geometry = _geometry("dead_phases", kernel_size, stride, dilation, padding)
    counts = _outer([torch.tensor(geometry.counts_1d(a)) for a in range(geometry.dims)])
    return [tuple(index) for index in (counts == 0).nonzero().tolist()]


def overlap_map(input_size: IntOrTuple, kernel_size: IntOrTuple, stride: IntOrTuple,
                padding: Padding = 0, output_padding: IntOrTuple = 0,
                dilation: IntOrTuple = 1) -> Tensor:
    r"""How many (input pixel, kernel tap) pairs land on each output pixel,
    borders included: what the layer computes for an all-ones input and an
    all-ones one-channel kernel, counted without running it.

    Per dim, output ``o`` counts the pairs ``(i, j)``, ``0 <= i < n``,
    ``0 <= j < k``, with ``i * s + j * d - p_start = o``; the N-d map is the
    outer product of the per-dim counts, since an N-d pair lands on ``o``
    exactly when each dim's does.

    Args: see the module docstring (ints alone mean 2-D).

    Returns:
        An int64 tensor of the output's spatial size,
        ``(n - 1) * s - p_start - p_end + d * (k - 1) + output_padding + 1``
        per dim.

    Example: ``overlap_map((3,), (3,), (2,))`` is ``tensor([1, 1, 2, 1, 2, 1, 1])``.
    """
    function = "overlap_map"
    dims = _spatial_dims(function, input_size=input_size, kernel_size=kernel_size,
                         stride=stride, dilation=dilation, output_padding=output_padding,
                         **({} if isinstance(padding, str) else {"padding": padding}))
    sizes = _per_dim(function, "input_size", input_size, dims, 1)
    geometry = _geometry(function, kernel_size, stride, dilation, padding, output_padding, dims)
    out_sizes = geometry.output_size(sizes)
    if any(size < 1 for size in out_sizes):
        raise ValueError(f"{function}: the output would be empty, size {tuple(out_sizes)}, for "
                         f"input_size={tuple(sizes)} and padding={padding!r}")
    counts = []
    for axis in range(dims):
        inputs = torch.arange(sizes[axis]).unsqueeze(1)
        taps = torch.arange(geometry.kernel_size[axis]).unsqueeze(0)
        positions = (inputs * geometry.stride[axis] + taps * geometry.dilation[axis]
                     - geometry.pad_start[axis]).flatten()
        positions = positions[(positions >= 0) & (positions < out_sizes[axis])]
        counts.append(torch.bincount(positions, minlength=out_sizes[axis]))
    return _outer(counts)


def interior_mask(input_size: IntOrTuple, kernel_size: IntOrTuple, stride: IntOrTuple,
                  padding: Padding = 0, output_padding: IntOrTuple = 0,
                  dilation: IntOrTuple = 1) -> Tensor:
    r"""The output pixels away from the borders: those that receive all the
    taps of their phase (``overlap_map == tap_counts`` of their phase), so
    that a constant input gives them the phase's full gain.

    Returns:
        A bool tensor of the output's spatial size (``overlap_map``'s). It may
        be all False for an input smaller than the kernel.
    """
    function = "interior_mask"
    dims = _spatial_dims(function, input_size=input_size, kernel_size=kernel_size,
                         stride=stride, dilation=dilation, output_padding=output_padding,
                         **({} if isinstance(padding, str) else {"padding": padding}))
    geometry = _geometry(function, kernel_size, stride, dilation, padding, output_padding, dims)
    sizes = _per_dim(function, "input_size", input_size, dims, 1)
    masks = []
    for axis, n in enumerate(sizes):
        # The 1-D overlap of this dim alone against its phase's count.
        overlap = overlap_map((n,), (geometry.kernel_size[axis],), (geometry.stride[axis],),
                              ((geometry.pad_start[axis], geometry.pad_end[axis]),),
                              (geometry.output_padding[axis],), (geometry.dilation[axis],))
        full = torch.tensor(geometry.counts_1d(axis))
        phases = torch.arange(overlap.numel()) % geometry.stride[axis]
        masks.append(overlap == full[phases])
    return _outer(masks)


def phase_gains(weight: Tensor, stride: IntOrTuple, dilation: IntOrTuple = 1,
                padding: Padding = 0) -> Tensor:
    r"""Each channel pair's gain per output phase: the sum of the taps of
    ``weight[i, o]`` that land on phase ``r``.

    Away from the borders, an input constant per channel (``x_i = c_i``)
    gives output channel ``o`` (the ``o``-th of its group) the value
    ``sum_i c_i * G[i, o, r] + bias`` on phase ``r``, the sum over the input
    channels of its group.

    Args:
        weight: ``(C_in, C_out / groups, *kernel_size)``.
        stride, dilation, padding: the layer's (see the module docstring);
            the padding cropped at the start moves which phase is which.

    Returns:
        ``(C_in, C_out / groups, *stride)``, in ``weight``'s dtype.

    Example: for k3 s2 in 1-D, ``G[..., 0] = w[..., 0] + w[..., 2]`` and
    ``G[..., 1] = w[..., 1]``.
    """
    function = "phase_gains"
    _check_kernel_layout(function, "weight", weight, "kernel_size")
    dims = weight.dim() - 2
    geometry = _geometry(function, list(weight.shape[2:]), stride, dilation, padding, dims=dims)
    gains = weight.detach()
    for axis in range(dims):
        k, s = geometry.kernel_size[axis], geometry.stride[axis]
        # One-hot (tap, phase) matrix: contracting a kernel dim with it sums
        # each phase's taps. tensordot appends the phase dim at the end, so
        # the next kernel dim is always at index 2.
        assign = torch.zeros(k, s, dtype=weight.dtype, device=weight.device)
        for tap in range(k):
            assign[tap, geometry.tap_phase(axis, tap)] = 1
        gains = torch.tensordot(gains, assign, dims=([2], [0]))
    return gains


def _layer_geometry(module: nn.Module):
    """(weight in (C_in, C_out/groups, *k) layout, stride, dilation, padding
    starts) of a transposed convolution or resize-convolution module, or None
    for any other module."""
    from .modules import _ResizeConvNd  # modules imports this module

    if isinstance(module, _ResizeConvNd):
        return (module.transposed_weight(), list(module.stride), [1] * module._spatial_dims,
                [start for start, _ in module._padding_pairs])
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        dims = len(module.stride)
        if hasattr(module, "_op_padding"):  # torch_tconv's: padding may be 'same' or pairs
            starts = list(module._op_padding[:dims])
        else:
            starts = list(module.padding)
        return module.weight, list(module.stride), list(module.dilation), starts
    return None


def phase_gain_score(weight_or_module: Union[Tensor, nn.Module],
                     stride: Optional[IntOrTuple] = None,
                     dilation: Optional[IntOrTuple] = None) -> float:
    r"""How unevenly a layer's weights spread over the output phases: 0 for
    weights that cannot make a checkerboard from an input constant per channel.

    With ``G[i, o, r]`` the phase gains (``phase_gains``), per channel pair
    ``spread = max_r G - min_r G`` and ``level = mean_r |G|``; the score is

        sum over channel pairs of spread / sum over channel pairs of level,

    the mean spread relative to the mean gain's magnitude (the sums over
    pairs keep a pair whose gains are all near zero from dominating, as a
    per-pair ratio would). It is 0 exactly when every pair's gain is the same
    in every phase, which is exactly when every input that is constant per
    channel gives an output constant per channel away from the borders (the
    all-ones input alone could hide a spread that cancels in the sum over
    input channels). Dead phases have gain 0, so they score above 0 for any
    non-zero weight; an all-zero weight scores 0. Relabelling the phases
    (padding) does not change it. Computed in float64.

    Args:
        weight_or_module: a ``(C_in, C_out / groups, *kernel_size)`` weight,
            or a ``torch.nn``/torch_tconv ``ConvTranspose1d/2d/3d`` or a
            ``torch_tconv.ResizeConv*d`` (its composite kernel), whose stride
            and dilation are read from it.
        stride: the weight's layer's stride (required with a weight, not
            allowed with a module).
        dilation: the weight's layer's dilation (default 1).

    Returns:
        The score, a float >= 0: about 2.5 for the default initialisation
        of k3 s2 and of k4 s2 alike (random weights give each phase a
        different gain even where the overlap is even), 4 for k3 s2 d2's dead
        phases, below 1e-10 after ``torch_tconv.init.resize_conv_`` in float64.

    Example: ``phase_gain_score(torch_tconv.ConvTranspose2d(4, 4, 3, stride=2))``.
    """
    function = "phase_gain_score"
    if isinstance(weight_or_module, nn.Module):
        geometry = _layer_geometry(weight_or_module)
        if geometry is None:
            raise TypeError(f"{function}: the module must be a ConvTranspose1d/2d/3d or a "
                            f"ResizeConv1d/2d/3d, got {type(weight_or_module).__name__}")
        if stride is not None or dilation is not None:
            raise ValueError(f"{function}: stride and dilation are read from the module; pass "
                             f"them only with a weight tensor, got stride={stride!r}, "
                             f"dilation={dilation!r}")
        weight, stride, dilation, _ = geometry
    elif isinstance(weight_or_module, Tensor):
        if stride is None:
            raise ValueError(f"{function}: stride is required with a weight tensor, got stride=None")
        weight = weight_or_module
        dilation = 1 if dilation is None else dilation
    else:
        raise TypeError(f"{function}: expected a weight tensor or a transposed-convolution "
                        f"module, got {type(weight_or_module).__name__}")
    if isinstance(weight, nn.parameter.UninitializedParameter):
        return math.nan
    gains = phase_gains(weight.detach().double(), stride, dilation).flatten(2)
    spread = gains.amax(-1) - gains.amin(-1)
    level = gains.abs().mean(-1).sum()
    if level == 0:
        return 0.0
    return (spread.sum() / level).item()


def _max_over_min(per_dim_counts: Sequence[Sequence[int]]) -> float:
    """max/min of the N-d tap counts, the product of the per-dim ratios."""
    most = math.prod(max(c) for c in per_dim_counts)
    least = math.prod(min(c) for c in per_dim_counts)
    return math.inf if least == 0 else most / least


@dataclass
class LayerReport:
    """One transposed convolution of a model, as ``report`` finds it.

    Attributes:
        name: its name in the model (``named_modules``; ``""`` for the model itself).
        type: ``"nn.ConvTranspose2d"``, ``"torch_tconv.ConvTranspose2d"``,
            ``"torch_tconv.ResizeConv2d"``, ... (for a ResizeConv the kernel
            is the composite ``m + s - 1`` one it runs).
        kernel_size, stride, dilation: per dim.
        padding: the crop at the start of each dim (what moves the phases).
        tap_counts: per dim, the taps each phase receives (``tap_counts``'s factors).
        max_over_min: of the N-d tap counts; 1 is even, ``inf`` means dead phases.
        dead_phases: as ``dead_phases`` gives them.
        score: ``phase_gain_score`` of the current weights (NaN for a lazy,
            uninitialised layer).
    """
    name: str
    type: str
    kernel_size: Tuple[int, ...]
    stride: Tuple[int, ...]
    dilation: Tuple[int, ...]
    padding: Tuple[int, ...]
    tap_counts: Tuple[Tuple[int, ...], ...]
    max_over_min: float
    dead_phases: List[Tuple[int, ...]] = field(default_factory=list)
    score: float = 0.0

    @property
    def uneven(self) -> bool:
        """Whether the tap counts differ between phases (dead phases included)."""
        return self.max_over_min != 1


def _type_name(module: nn.Module) -> str:
    cls = type(module)
    if cls.__module__.startswith("torch_tconv"):
        return "torch_tconv." + cls.__name__
    if cls.__module__.startswith("torch.nn"):
        return "nn." + cls.__name__
    return cls.__module__ + "." + cls.__qualname__


class Report(list):
    """The ``LayerReport`` of each transposed convolution of a model, in
    ``named_modules`` order; ``str()`` is a table."""

    COLUMNS = ("layer", "type", "kernel", "stride", "dilation", "taps per dim", "max/min",
               "dead phases", "score")

    def __str__(self) -> str:
        if not self:
            return "no transposed convolutions"

        def dims(values):
            return "x".join(str(v) for v in values)

        rows = []
        for layer in self:
            dead = len(layer.dead_phases)
            total = math.prod(layer.stride)
            rows.append((
                layer.name or "(model)", layer.type, dims(layer.kernel_size), dims(layer.stride),
                dims(layer.dilation), " ".join(str(list(c)) for c in layer.tap_counts),
                "inf" if math.isinf(layer.max_over_min) else f"{layer.max_over_min:g}",
                f"{dead}/{total}" if dead else "-", f"{layer.score:.3g}"))
        widths = [max(len(row[c]) for row in rows + [self.COLUMNS])
                  for c in range(len(self.COLUMNS))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                 for row in [self.COLUMNS] + rows]
        lines.insert(1, "  ".join("-" * width for width in widths))
        lines.append("taps per dim: kernel taps per output phase away from the borders; "
                     "max/min: of the N-d counts (inf: some phases get none, bias-only outputs); "
                     "score: phase_gain_score of the weights (0: no checkerboard from inputs "
                     "constant per channel)")
        return "\n".join(lines)


def report(module_or_model: nn.Module) -> Report:
    r"""The checkerboard figures of every transposed convolution in a model:
    ``torch.nn.ConvTranspose1d/2d/3d`` (and their subclasses, torch_tconv's
    included) and ``torch_tconv.ResizeConv1d/2d/3d``.

    Args:
        module_or_model: any ``nn.Module``; a single layer reports itself.

    Returns:
        A ``Report``: a list of ``LayerReport`` whose ``str()`` is a table.

    Example: ``print(torch_tconv.checkerboard.report(decoder))``.
    """
    if not isinstance(module_or_model, nn.Module):
        raise TypeError(f"report: expected an nn.Module, got {type(module_or_model).__name__}")
    layers = Report()
    for name, module in module_or_model.named_modules():
        geometry = _layer_geometry(module)
        if geometry is None:
            continue
        weight, stride, dilation, starts = geometry
        kernel_size = list(weight.shape[2:])
        layout = _Geometry(kernel_size, stride, dilation, starts, starts, [0] * len(stride))
        per_dim = tuple(tuple(layout.counts_1d(a)) for a in range(layout.dims))
        layers.append(LayerReport(
            name=name, type=_type_name(module), kernel_size=tuple(kernel_size),
            stride=tuple(stride), dilation=tuple(dilation), padding=tuple(starts),
            tap_counts=per_dim, max_over_min=_max_over_min(per_dim),
            dead_phases=dead_phases(tuple(kernel_size), tuple(stride), tuple(dilation),
                                    tuple(starts)),
            score=phase_gain_score(module)))
    return layers


def summary(kernel_size: IntOrTuple, stride: IntOrTuple, dilation: IntOrTuple = 1,
            padding: Padding = 0) -> str:
    r"""A few lines about one configuration: the tap counts per phase (per
    dim, and the 2-D table), max/min and the dead phases.

    Example::

        >>> print(summary(3, 2))
        kernel_size=(3, 3) stride=(2, 2) dilation=(1, 1) padding=(0, 0)
        taps per output phase, per dim: [2, 1] x [2, 1]
        taps per output phase (rows: phase of dim 0, columns: phase of dim 1):
          4 2
          2 1
        max/min: 4 (uneven overlap: checkerboard artifacts are likely)
        dead phases: none
    """
    geometry = _geometry("summary", kernel_size, stride, dilation, padding)
    per_dim = [geometry.counts_1d(a) for a in range(geometry.dims)]
    ratio = _max_over_min(per_dim)
    counts = _outer([torch.tensor(c) for c in per_dim])
    dead = [tuple(index) for index in (counts == 0).nonzero().tolist()]
    lines = [f"kernel_size={tuple(geometry.kernel_size)} stride={tuple(geometry.stride)} "
             f"dilation={tuple(geometry.dilation)} padding={tuple(geometry.pad_start)}"
             + ("" if geometry.pad_start == geometry.pad_end else
                f" (start; end {tuple(geometry.pad_end)})"),
             "taps per output phase, per dim: " + " x ".join(str(c) for c in per_dim)]
    if geometry.dims == 2:
        lines.append("taps per output phase (rows: phase of dim 0, columns: phase of dim 1):")
        width = len(str(int(counts.max())))
        lines += ["  " + " ".join(str(v).rjust(width) for v in row) for row in counts.tolist()]
    if math.isinf(ratio):
        verdict = "dead phases: those outputs are the bias alone"
    elif ratio == 1:
        verdict = "even overlap: no checkerboard from the geometry"
    else:
        verdict = "uneven overlap: checkerboard artifacts are likely"
    lines.append(f"max/min: {'inf' if math.isinf(ratio) else f'{ratio:g}'} ({verdict})")
    if dead:
        lines.append(f"dead phases: {len(dead)} of {counts.numel()}: "
                     + ", ".join(str(p) for p in dead))
    else:
        lines.append("dead phases: none")
    return "\n".join(lines)


def _dead_phase_message(layer: str, kernel_size: Sequence[int], stride: Sequence[int],
                        dilation: Sequence[int], padding_start: Sequence[int]) -> Optional[str]:
    """The warning for a layer with dead phases, or None when it has none."""
    geometry = _Geometry(list(kernel_size), list(stride), list(dilation), list(padding_start),
                         list(padding_start), [0] * len(stride))
    per_dim = [geometry.counts_1d(a) for a in range(geometry.dims)]
    if all(min(c) > 0 for c in per_dim):
        return None
    counts = _outer([torch.tensor(c) for c in per_dim])
    dead = [tuple(index) for index in (counts == 0).nonzero().tolist()]
    fixes = []
    if any(math.gcd(d, s) > 1 for d, s in zip(dilation, stride)):
        fixes.append("a dilation coprime with the stride (e.g. dilation=1)")
    if any(k < s for k, s in zip(kernel_size, stride)):
        fixes.append("a kernel_size of at least the stride")
    shown = ", ".join(str(p) for p in dead[:8]) + (", ..." if len(dead) > 8 else "")
    return (f"{layer}(kernel_size={tuple(kernel_size)}, stride={tuple(stride)}, "
            f"dilation={tuple(dilation)}): {len(dead)} of the {counts.numel()} output phases "
            f"(output position mod stride) receive no kernel tap: {shown}; those outputs are the "
            f"bias alone, whatever the input (taps per phase per dim: "
            + " x ".join(str(c) for c in per_dim) + "). Use " + " and ".join(fixes)
            + " in every dim.")


def _imshow(axes, figure, values: Tensor, title: str, annotate: bool):
    values = values.double()
    low, high = values.min().item(), values.max().item()
    if high - low <= 1e-9 * max(1.0, abs(high)):
        # A constant picture: widen the range so that rounding noise is not
        # stretched over the whole colour map.
        low, high = low - 1, high + 1
    image = axes.imshow(values.numpy(), cmap="viridis", vmin=low, vmax=high,
                        interpolation="nearest")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    axes.set_title(title, fontsize=10)
    axes.set_xticks([])
    axes.set_yticks([])
    if annotate:
        for (row, column), value in zip(torch.cartesian_prod(
                torch.arange(values.shape[0]), torch.arange(values.shape[1])).tolist(),
                values.flatten().tolist()):
            axes.text(column, row, f"{value:g}", ha="center", va="center", fontsize=6,
                      color="white" if value < (low + high) / 2 else "black")


def _interior_range(response: Tensor, mask: Tensor) -> str:
    if not mask.any():
        return "no interior"
    inside = response[mask]
    return f"interior {inside.min().item():.3g} .. {inside.max().item():.3g}"


def plot(path: Union[str, os.PathLike], input_size: IntOrTuple = 8, kernel_size: IntOrTuple = 3,
         stride: IntOrTuple = 2, padding: Padding = 0, output_padding: IntOrTuple = 0,
         dilation: IntOrTuple = 1, channels: int = 1, seed: int = 0) -> str:
    r"""Draws one 2-D configuration's checkerboard into a PNG, three panels
    side by side:

    1. the overlap map (``overlap_map``: taps per output pixel, borders included);
    2. the output for an all-ones input of a ``torch_tconv.ConvTranspose2d``
       with its default initialisation (drawn with ``seed``; no bias, which
       would only shift the values), output channel 0;
    3. the same layer after ``torch_tconv.init.resize_conv_``: constant away
       from the borders. Where resize-convolution cannot be artifact-free
       (``kernel_size < stride`` or ``gcd(dilation, stride) > 1`` in a dim)
       the panel says so instead.

    The figure's title has the tap counts per phase; the PNG's metadata
    (``Title``, ``Description``) names the configuration and the panels.
    matplotlib is imported here (its Agg canvas: no display, and the global
    pyplot backend is left alone).

    Args:
        path: where to write the PNG (parent directories are created).
        input_size, kernel_size, stride, padding, output_padding, dilation:
            the layer and its input, an int or a pair each (``padding`` also
            ``'same'``, ``'valid'`` or ``((top, bottom), (left, right))``).
        channels: the layer's input and output channels.
        seed: the random weights' seed (the global generator is left as it was).

    Returns:
        ``path`` as a string.

    Example: ``plot("docs/checkerboard.png", input_size=(8, 8), kernel_size=(3, 3), stride=(2, 2))``.
    """
    function = "plot"
    from .init import resize_conv_
    from .modules import ConvTranspose2d  # modules imports this module

    for name, value in (("input_size", input_size), ("kernel_size", kernel_size),
                        ("stride", stride), ("output_padding", output_padding),
                        ("dilation", dilation)):
        if _is_sequence(value) and len(value) != 2:
            raise ValueError(f"{function}: draws 2-D layers only: {name} must be an int or a "
                             f"pair, got {name}={value!r}")
    if not isinstance(padding, str) and _is_sequence(padding) and len(padding) != 2:
        raise ValueError(f"{function}: draws 2-D layers only: padding must be an int, a pair, "
                         f"'same', 'valid' or two (start, end) pairs, got padding={padding!r}")
    if not _is_int(channels) or channels < 1:
        raise ValueError(f"{function}: channels must be an int >= 1, got channels={channels!r}")
    if not _is_int(seed):
        raise TypeError(f"{function}: seed must be an int, got seed={seed!r}")
    sizes = _per_dim(function, "input_size", input_size, 2, 1)
    geometry = _geometry(function, kernel_size, stride, dilation, padding, output_padding, dims=2)
    overlap = overlap_map(sizes, geometry.kernel_size, geometry.stride, padding,
                          geometry.output_padding, geometry.dilation)
    mask = interior_mask(sizes, geometry.kernel_size, geometry.stride, padding,
                         geometry.output_padding, geometry.dilation)
    ones = torch.ones(1, channels, *sizes, dtype=torch.float64)

    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # The dead phases are what the picture shows: no warning about them.
        warnings.simplefilter("ignore", DeadPhaseWarning)
        torch.manual_seed(seed)
        layer = ConvTranspose2d(channels, channels, geometry.kernel_size, geometry.stride,
                                padding, geometry.output_padding, bias=False,
                                dilation=geometry.dilation, dtype=torch.float64)
        with torch.no_grad():
            default_response = layer(ones)[0, 0]
        resizable = all(k >= s and math.gcd(d, s) == 1 for k, s, d in zip(
            geometry.kernel_size, geometry.stride, geometry.dilation))
        resize_response = None
        if resizable:
            resize_conv_(layer.weight, geometry.stride)
            with torch.no_grad():
                resize_response = layer(ones)[0, 0]

    from matplotlib.figure import Figure

    figure = Figure(figsize=(15, 5.2), dpi=100)
    panels = figure.subplots(1, 3)
    annotate = max(overlap.shape) <= 24
    _imshow(panels[0], figure, overlap, "overlap map: taps per output pixel", annotate)
    _imshow(panels[1], figure, default_response,
            f"constant input, default init (seed {seed})\n"
            + _interior_range(default_response, mask), False)
    if resize_response is not None:
        _imshow(panels[2], figure, resize_response,
                "constant input, resize_conv_ init\n" + _interior_range(resize_response, mask),
                False)
    else:
        panels[2].axis("off")
        panels[2].text(0.5, 0.5, "resize-convolution cannot make this layer even:\n"
                       "it needs kernel_size >= stride and\n"
                       "gcd(dilation, stride) = 1 in every dim", ha="center", va="center",
                       fontsize=10, transform=panels[2].transAxes)
        panels[2].set_title("constant input, resize_conv_ init", fontsize=10)
    per_dim = [geometry.counts_1d(a) for a in range(2)]
    ratio = _max_over_min(per_dim)
    configuration = (f"input {tuple(sizes)}, kernel_size={tuple(geometry.kernel_size)}, "
                     f"stride={tuple(geometry.stride)}, padding={padding!r}, "
                     f"output_padding={tuple(geometry.output_padding)}, "
                     f"dilation={tuple(geometry.dilation)}")
    figure.suptitle(f"ConvTranspose2d {configuration}\ntaps per phase per dim: "
                    + " x ".join(str(c) for c in per_dim)
                    + f", max/min {'inf (dead phases)' if math.isinf(ratio) else f'{ratio:g}'}",
                    fontsize=11)
    figure.tight_layout()
    target = os.fspath(path)
    directory = os.path.dirname(target)
    if directory:
        os.makedirs(directory, exist_ok=True)
    figure.savefig(target, format="png", metadata={
        "Title": f"torch_tconv checkerboard: {configuration}",
        "Description": "3 panels: overlap map; constant input, default init; "
                       "constant input, resize_conv_ init"})
    return target
