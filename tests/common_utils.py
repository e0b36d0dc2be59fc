"""Helpers shared by the test modules (which import from here, never from
each other): devices and tolerances, the float64 oracle, the one table of
layers that the tests draw their cases from, and hypothesis strategies of
random layers and memory layouts."""

from dataclasses import dataclass
from typing import Tuple

import pytest
import torch
import torch.nn.functional as F
from hypothesis import strategies as st

import torch_tconv

ops = torch.ops.torch_tconv

HAS_CUDA = torch.cuda.is_available() and torch_tconv.has_cuda_kernels()

DEVICES = ["cpu"] + [pytest.param("cuda", marks=pytest.mark.cuda)]

# Relative tolerance of each dtype against the float64 oracle (scaled by the
# magnitude of the reference). Low precision: one rounding of the output plus,
# on CUDA, of the column buffer.
TOLERANCE = {
    torch.float64: 1e-10,
    torch.float32: 2e-5,
    torch.float16: 4e-3,
    torch.bfloat16: 3e-2,
}

REFERENCE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def assert_close_to(actual, expected, dtype, what):
    """Compares with the float64 oracle at the dtype's tolerance, relative to
    the magnitude of the expected values. NaN (a poisoned, unwritten element)
    always fails."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == dtype, f"{what}: dtype {actual.dtype} != {dtype}"
    tol = TOLERANCE[dtype]
    scale = expected.abs().max().item() if expected.numel() else 1.0
    torch.testing.assert_close(
        actual.double().cpu(), expected.double().cpu(), rtol=tol, atol=tol * max(scale, 1e-30),
        msg=lambda m: f"{what} ({dtype}): {m}",
    )


def oracle(input, weight, bias, grad_output, **params):
    """F.conv_transpose*d in float64 on the CPU, on upcast copies of the very
    values the op under test receives. Returns (out, grad_input, grad_weight,
    grad_bias)."""
    x = input.detach().double().cpu().requires_grad_()
    w = weight.detach().double().cpu().requires_grad_()
    b = None if bias is None else bias.detach().double().cpu().requires_grad_()
    out = REFERENCE[w.dim() - 2](x, w, b, **params)
    grads = torch.autograd.grad(out, [t for t in (x, w, b) if t is not None],
                                grad_output.detach().double().cpu())
    return (out, *grads) + ((None,) if b is None else ())


@dataclass(frozen=True)
class Layer:
    """A layer: channels, groups, the input's spatial size and the kernel's,
    and the hyper-parameters, one value per spatial dim (an int stands for
    the same value in every dim)."""

    in_channels: int
    out_channels: int
    groups: int
    input_size: Tuple[int, ...]
    kernel_size: Tuple[int, ...]
    stride: object = 1
    padding: object = 0
    output_padding: object = 0
    dilation: object = 1

    @property
    def spatial_dims(self):
        return len(self.kernel_size)

    def per_dim(self, value):
        return tuple(value) if isinstance(value, tuple) else (value,) * self.spatial_dims

    def params(self):
        """Keyword arguments of F.conv_transpose*d and conv_transpose2d."""
        return dict(stride=self.per_dim(self.stride), padding=self.per_dim(self.padding),
                    output_padding=self.per_dim(self.output_padding),
                    dilation=self.per_dim(self.dilation), groups=self.groups)

    def input_shape(self, batch):
        """batch None: unbatched."""
        shape = (self.in_channels, *self.input_size)
        return shape if batch is None else (batch, *shape)

    def weight_shape(self):
        return (self.in_channels, self.out_channels // self.groups, *self.kernel_size)


# Every hyper-parameter of the op, non-square kernels and strides, overlap,
# gaps, cropping, dilation; in 1-D, 2-D and 3-D.
LAYERS = {
    "k3s1": Layer(4, 3, 1, (5, 6), (3, 3)),
    "dcgan_k4s2p1": Layer(4, 6, 1, (4, 5), (4, 4), stride=2, padding=1),
    "decoder_k3s2p1op1": Layer(3, 5, 1, (5, 4), (3, 3), stride=2, padding=1, output_padding=1),
    "unet_k2s2": Layer(5, 3, 1, (3, 4), (2, 2), stride=2),
    "nonsquare_all": Layer(3, 4, 1, (4, 5), (2, 3), stride=(3, 1), padding=(1, 0),
                           output_padding=(2, 0), dilation=(1, 2)),
    "dilated_op_ge_stride": Layer(2, 3, 1, (4, 4), (3, 2), stride=1, padding=(2, 1),
                                  output_padding=(1, 2), dilation=(2, 3)),
    "grouped": Layer(4, 6, 2, (4, 3), (3, 3), stride=2, padding=1, output_padding=1),
    "depthwise": Layer(4, 4, 4, (5, 5), (4, 4), stride=2, padding=1),
    "depthwise_multiplier": Layer(3, 6, 3, (4, 5), (3, 2), stride=(2, 1), padding=(0, 1)),
    "crop_k5s2p3": Layer(2, 2, 1, (5, 6), (5, 5), stride=2, padding=3),
    "pointwise_k1": Layer(3, 4, 1, (3, 3), (1, 1)),
    "gaps_k2s3": Layer(2, 3, 1, (3, 4), (2, 2), stride=3, output_padding=2),
    "single_output_channel": Layer(5, 1, 1, (3, 3), (3, 3), stride=2),
    "1d": Layer(3, 4, 1, (7,), (3,), stride=2, padding=1, output_padding=1),
    "1d_long": Layer(3, 4, 1, (9,), (3,), stride=2, padding=1, output_padding=1),
    "1d_grouped_dilated": Layer(4, 6, 2, (5,), (2,), stride=3, output_padding=2, dilation=2),
    "3d": Layer(2, 3, 1, (3, 4, 2), (2, 3, 2), stride=(2, 1, 2), padding=(1, 0, 0),
                output_padding=(1, 0, 1), dilation=(1, 2, 1)),
    "3d_larger": Layer(2, 3, 1, (4, 5, 3), (2, 3, 2), stride=(2, 1, 2), padding=(1, 0, 0),
                       output_padding=(1, 0, 1), dilation=(1, 2, 1)),
    "3d_strided_dilated": Layer(3, 2, 1, (3, 4, 4), (3, 2, 3), stride=(2, 3, 1),
                                padding=(2, 1, 1), output_padding=(1, 2, 0), dilation=(2, 1, 2)),
    "3d_depthwise": Layer(3, 3, 3, (2, 3, 3), (3, 2, 2), stride=(1, 2, 2), padding=(1, 0, 1),
                          output_padding=(0, 1, 0), dilation=(2, 1, 1)),
}


def layer_names(spatial_dims=None):
    """The table's names, sorted, of layers with that many spatial dims."""
    return sorted(name for name, layer in LAYERS.items()
                  if spatial_dims is None or layer.spatial_dims == spatial_dims)


def make_case(name, batch, dtype, device, bias=True, seed=0):
    """Fresh random input, weight and bias of LAYERS[name] (batch None: an
    unbatched input), and the layer's keyword parameters."""
    layer = LAYERS[name]
    g = torch.Generator().manual_seed(seed)

    def random(*size):
        return torch.randn(size, generator=g, dtype=torch.float64).to(device, dtype)

    x = random(*layer.input_shape(batch))
    w = random(*layer.weight_shape())
    b = random(layer.out_channels) if bias else None
    return x, w, b, layer.params()


def op_params(params):
    """The keyword parameters as the ops' positional lists: stride, padding,
    output_padding, dilation, groups."""
    return ([list(params[k]) for k in ("stride", "padding", "output_padding", "dilation")]
            + [params["groups"]])


def forward_op(x, w, b, params):
    """The forward op itself, on any rank."""
    return ops.conv_transpose(x, w, b, *op_params(params))


def forward_and_grads(forward, x, w, b, params, grad_output=None, seed=1):
    """((output, grad_input, grad_weight, grad_bias), grad_output) of
    forward(x, w, b, params), for grad_output or a random one from `seed`."""
    x, w, b = (t.detach().requires_grad_() for t in (x, w, b))
    out = forward(x, w, b, params)
    if grad_output is None:
        grad_output = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed),
                                  dtype=torch.float64).to(out)
    return (out.detach(), *torch.autograd.grad(out, (x, w, b), grad_output)), grad_output


# --- hypothesis strategies -------------------------------------------------

# How a tensor's values are laid out in memory: every op must give the same
# result for each.
LAYOUTS = ["contiguous", "channels_last", "strided", "transposed"]


def pairs(low, high):
    return st.tuples(st.integers(low, high), st.integers(low, high))


@st.composite
def valid_layers(draw, max_size=5):
    """Any layer F.conv_transpose2d accepts, kept small, with a batch size
    (None: unbatched) and whether it has a bias: (layer, batch, bias)."""
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
    layer = Layer(
        in_channels=groups * draw(st.integers(1, 3)),
        out_channels=groups * draw(st.integers(1, 3)),
        groups=groups, input_size=size, kernel_size=kernel, stride=stride, padding=padding,
        output_padding=output_padding, dilation=dilation,
    )
    return layer, draw(st.sampled_from([None, 0, 1, 2, 3])), draw(st.booleans())


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


def onnx_export_and_run(model, x):
    """Exports model with the TorchScript-based exporter, checks that no
    torch_tconv op is left in the graph, runs it in onnxruntime on x, and
    returns (the ONNX op types, onnxruntime's output as a tensor). Skips
    where onnx or onnxruntime is missing."""
    import io
    import warnings

    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buffer, dynamo=False)
    proto = onnx.load_from_string(buffer.getvalue())
    assert not any(node.domain.startswith("torch_tconv") for node in proto.graph.node)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    return [node.op_type for node in proto.graph.node], torch.from_numpy(out)
