"""Hypothesis strategies for transposed-convolution layers, valid and not."""

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from hypothesis import strategies as st

# How a tensor's values are laid out in memory: every op must give the same
# result for each.
LAYOUTS = ["contiguous", "channels_last", "strided", "transposed"]


@dataclass
class Layer:
    batch: Optional[int]  # None: unbatched input
    in_channels: int
    out_channels: int
    groups: int
    size: Tuple[int, int]
    kernel: Tuple[int, int]
    stride: Tuple[int, int]
    padding: Tuple[int, int]
    output_padding: Tuple[int, int]
    dilation: Tuple[int, int]
    bias: bool

    def params(self):
        return dict(stride=self.stride, padding=self.padding, output_padding=self.output_padding,
                    groups=self.groups, dilation=self.dilation)

    def input_shape(self):
        spatial = (self.in_channels, *self.size)
        return spatial if self.batch is None else (self.batch, *spatial)

    def weight_shape(self):
        return (self.in_channels, self.out_channels // self.groups, *self.kernel)


def pairs(low, high):
    return st.tuples(st.integers(low, high), st.integers(low, high))


@st.composite
def valid_layers(draw, max_size=5):
    """Any layer F.conv_transpose2d accepts, kept small."""
    groups = draw(st.integers(1, 3))
    kernel = draw(pairs(1, 4))
    stride = draw(pairs(1, 3))
    dilation = draw(pairs(1, 3))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    size = draw(pairs(1, max_size))
    # Padding up to what still leaves an output of at least one element.
    full = [(i - 1) * s + d * (k - 1) + op + 1
            for i, s, d, k, op in zip(size, stride, dilation, kernel, output_padding)]
    padding = tuple(draw(st.integers(0, (f - 1) // 2)) for f in full)
    return Layer(
        batch=draw(st.sampled_from([None, 0, 1, 2, 3])),
        in_channels=groups * draw(st.integers(1, 3)),
        out_channels=groups * draw(st.integers(1, 3)),
        groups=groups, size=size, kernel=kernel, stride=stride, padding=padding,
        output_padding=output_padding, dilation=dilation, bias=draw(st.booleans()),
    )


def with_layout(values: torch.Tensor, layout: str) -> torch.Tensor:
    """A tensor equal to `values` whose memory layout is `layout`."""
    if layout == "contiguous" or values.dim() < 2:
        return values.contiguous()
    if layout == "channels_last" and values.dim() == 4:
        return values.contiguous(memory_format=torch.channels_last)
    if layout == "strided":
        wide = torch.empty(*values.shape[:-1], 2 * values.shape[-1], dtype=values.dtype)
        view = wide[..., ::2]
        view.copy_(values)
        return view
    # transposed, or channels_last of a tensor that is not 4-D
    return values.transpose(-1, -2).contiguous().transpose(-1, -2)
