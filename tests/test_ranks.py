"""1-D and 3-D: conv_transpose1d/3d and ConvTranspose1d/3d, the same kernel
layer as 2-D, with the semantics, signatures and state_dicts of their
torch.nn twins. Checked against F.conv_transpose1d/3d in float64 on every
algorithm, with gradcheck and gradgradcheck, opcheck, unbatched input,
output_size, TorchScript, torch.fx, torch.compile and ONNX export."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import gradcheck, gradgradcheck
from torch.library import opcheck

import torch_tconv
from common_utils import (DEVICES, REFERENCE, assert_close_to, make_case, onnx_export_and_run,
                          oracle)

RANK_LAYERS = ["1d", "1d_grouped_dilated", "1d_long", "3d", "3d_depthwise", "3d_strided_dilated"]
FUNCTIONAL = {1: torch_tconv.conv_transpose1d, 3: torch_tconv.conv_transpose3d}
MODULES = {1: (torch_tconv.ConvTranspose1d, nn.ConvTranspose1d),
           3: (torch_tconv.ConvTranspose3d, nn.ConvTranspose3d)}


def make(name, device, dtype=torch.float64, batch=2):
    return make_case(name, batch, dtype, device, seed=3)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch", [None, 2])
@pytest.mark.parametrize("name", RANK_LAYERS)
def test_functional_matches_torch(name, batch, device, algorithm):
    x, w, b, p = make(name, device, batch=batch)
    leaves = [t.requires_grad_() for t in (x, w, b)]
    out = FUNCTIONAL[w.dim() - 2](*leaves, **p)
    gy = torch.randn_like(out)
    got = (out, *torch.autograd.grad(out, leaves, gy))
    for what, actual, expected in zip(("output", "grad_input", "grad_weight", "grad_bias"),
                                      got, oracle(x, w, b, gy, **p)):
        assert_close_to(actual, expected, torch.float64, what)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["1d_grouped_dilated", "3d_strided_dilated"])
def test_every_dtype(name, dtype, device):
    x, w, b, p = make(name, device, dtype)
    out = FUNCTIONAL[w.dim() - 2](x, w, b, **p)
    assert_close_to(out, oracle(x, w, b, torch.ones_like(out), **p)[0], dtype, "output")


@pytest.mark.parametrize("name", ["1d_grouped_dilated", "3d_depthwise"])
def test_gradcheck_and_gradgradcheck(name):
    x, w, b, p = make(name, "cpu", batch=1)
    conv = FUNCTIONAL[w.dim() - 2]
    leaves = tuple(t.requires_grad_() for t in (x, w, b))
    assert gradcheck(lambda *t: conv(*t, **p), leaves)
    assert gradgradcheck(lambda *t: conv(*t, **p), leaves)


@pytest.mark.parametrize("name", ["1d", "3d"])
def test_opcheck(name):
    x, w, b, p = make(name, "cpu")
    args = (x, w, b, list(p["stride"]), list(p["padding"]), list(p["output_padding"]),
            list(p["dilation"]), p["groups"], None)
    opcheck(torch.ops.torch_tconv.conv_transpose.default, args)


MODULE_KWARGS = {
    1: dict(in_channels=4, out_channels=6, kernel_size=5, stride=3, padding=2, output_padding=1,
            groups=2, dilation=2),
    3: dict(in_channels=4, out_channels=6, kernel_size=(3, 2, 2), stride=(2, 1, 2),
            padding=(1, 0, 1), output_padding=(1, 0, 0), groups=2, bias=False),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dims", [1, 3])
def test_module_is_a_drop_in_replacement(dims, device):
    ours_class, theirs_class = MODULES[dims]
    kwargs = MODULE_KWARGS[dims]
    torch.manual_seed(7)
    ours = ours_class(**kwargs, device=device, dtype=torch.float64)
    torch.manual_seed(7)
    theirs = theirs_class(**kwargs, device=device, dtype=torch.float64)
    assert isinstance(ours, theirs_class)
    assert ours.extra_repr() == theirs.extra_repr()
    for key, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key
    x = torch.randn(3, 4, *[5] * dims, dtype=torch.float64, device=device)
    torch.testing.assert_close(ours(x), theirs(x))
    torch.testing.assert_close(ours(x[0]), theirs(x[0]))  # unbatched
    ours(x).square().sum().backward()
    theirs(x).square().sum().backward()
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad)


@pytest.mark.parametrize("dims", [1, 3])
def test_output_size_full_range(dims):
    """Every size the op can produce, up to max(stride, dilation) - 1 above
    the smallest: wider than PyTorch's module allows where dilation > stride."""
    ours_class, _ = MODULES[dims]
    layer = ours_class(2, 3, 2, stride=1, dilation=3, dtype=torch.float64)
    x = torch.randn(1, 2, *[4] * dims, dtype=torch.float64)
    base = list(layer(x).shape[2:])
    for extra in range(3):
        size = [s + extra for s in base]
        expected = REFERENCE[dims](x, layer.weight, layer.bias, output_padding=extra, dilation=3)
        torch.testing.assert_close(layer(x, output_size=size), expected)
        torch.testing.assert_close(layer(x, output_size=[1, 3] + size), expected)
    with pytest.raises(ValueError, match=r"output size in dim \d must lie in"):
        layer(x, output_size=[s + 3 for s in base])
    with pytest.raises(ValueError, match=f"output_size must have {dims} or {dims + 2} elements"):
        layer(x, output_size=[7] * (dims + 1))


@pytest.mark.parametrize("dims", [1, 3])
def test_torchscript_fx_and_compile(dims):
    ours_class, _ = MODULES[dims]
    layer = ours_class(**MODULE_KWARGS[dims], dtype=torch.float64)
    x = torch.randn(2, 4, *[5] * dims, dtype=torch.float64)
    expected = layer(x)
    torch.testing.assert_close(torch.jit.script(layer)(x), expected)
    torch.testing.assert_close(torch.jit.trace(layer, x)(x), expected)
    traced = torch.fx.symbolic_trace(layer, concrete_args={"output_size": None})
    assert any("torch_tconv" in str(node.target) for node in traced.graph.nodes)
    torch.testing.assert_close(traced(x), expected)
    torch._dynamo.reset()
    torch.testing.assert_close(torch.compile(layer, fullgraph=True)(x), expected)


@pytest.mark.parametrize("dims", [1, 3])
def test_functional_argument_errors_name_the_argument(dims):
    conv = FUNCTIONAL[dims]
    x = torch.randn(1, 2, *[4] * dims)
    w = torch.randn(2, 3, *[3] * dims)
    with pytest.raises(RuntimeError, match=f"stride must be an int or a tuple of {dims} ints"):
        conv(x, w, stride=[2] * (dims + 1))
    with pytest.raises(RuntimeError, match="weight to be"):
        conv(x, torch.randn(2, 3, 3, 3) if dims == 1 else torch.randn(2, 3, 3))


@pytest.mark.parametrize("dims", [1, 3])
def test_onnx_export(dims):
    ours_class, _ = MODULES[dims]
    torch.manual_seed(0)
    layer = ours_class(**MODULE_KWARGS[dims]).eval()
    x = torch.randn(2, 4, *[5] * dims)
    op_types, out = onnx_export_and_run(layer, x)
    assert op_types.count("ConvTranspose") == 1
    with torch.no_grad():
        expected = layer(x)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
