"""Padding the way people ask for it: TensorFlow's 'same' and 'valid'
(checked against jax.lax.conv_transpose with transpose_kernel=True, which
follows TensorFlow's padding) and per-side (start, end) pairs (checked
against the full output of F.conv_transpose*d, cropped), in 1-D, 2-D and 3-D,
for the functionals and the modules, with gradients, TorchScript, ONNX and
errors that name the argument."""

import itertools

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import nn

import torch_tconv
from common_utils import DEVICES, REFERENCE, assert_close_to, onnx_export_and_run

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

FUNCTIONAL = {1: torch_tconv.conv_transpose1d, 2: torch_tconv.conv_transpose2d,
              3: torch_tconv.conv_transpose3d}
MODULE = {1: torch_tconv.ConvTranspose1d, 2: torch_tconv.ConvTranspose2d,
          3: torch_tconv.ConvTranspose3d}
LAYOUT = {1: ("NCH", "OIH", "NCH"), 2: ("NCHW", "OIHW", "NCHW"), 3: ("NCDHW", "OIDHW", "NCDHW")}

# (kernel, stride, dilation) per dim: even and odd kernels, kernels smaller
# than, equal to and larger than the stride, and dilated ones.
GEOMETRIES = [(k, s, d) for k, s, d in itertools.product([1, 2, 3, 4, 5], [1, 2, 3], [1, 2])
              if not (d == 2 and k == 1)]


def jax_conv_transpose(x, w, stride, dilation, padding):
    dims = w.dim() - 2
    out = jax.lax.conv_transpose(
        jnp.asarray(x.numpy()), jnp.asarray(w.numpy()), strides=tuple(stride),
        padding=padding.upper(), rhs_dilation=tuple(dilation), dimension_numbers=LAYOUT[dims],
        transpose_kernel=True)
    return torch.from_numpy(jax.device_get(out).copy())


def cropped_full_output(x, w, b, stride, dilation, starts, ends, extra=None):
    """The oracle of per-side padding: the full transposed output, cropped by
    `starts` and `ends` (and extended by `extra` zeros at the end), plus bias."""
    dims = w.dim() - 2
    full = REFERENCE[dims](x, w, None, stride=stride, dilation=dilation)
    widths = []
    for j in reversed(range(dims)):
        widths += [-starts[j], (extra[j] if extra else 0) - ends[j]]
    out = F.pad(full, widths)
    return out if b is None else out + b.reshape([-1] + [1] * dims)


def case(dims, k, s, d, size=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, *[size] * dims, generator=g, dtype=torch.float64)
    w = torch.randn(3, 4, *[k] * dims, generator=g, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64)
    return x, w, b, [s] * dims, [d] * dims


@pytest.mark.parametrize("mode", ["same", "valid"])
@pytest.mark.parametrize("k,s,d", GEOMETRIES)
def test_modes_match_jax_2d(k, s, d, mode):
    x, w, b, stride, dilation = case(2, k, s, d)
    out = torch_tconv.conv_transpose2d(x, w, None, stride=stride, padding=mode, dilation=dilation)
    expected = jax_conv_transpose(x, w, stride, dilation, mode)
    if mode == "same":
        assert out.shape[2:] == tuple(5 * s for _ in range(2))
    assert_close_to(out, expected, torch.float64, f"padding={mode!r}, k={k}, s={s}, d={d}")


@pytest.mark.parametrize("mode", ["same", "valid"])
@pytest.mark.parametrize("dims", [1, 3])
def test_modes_match_jax_1d_and_3d(dims, mode):
    for k, s, d in [(4, 2, 1), (3, 2, 1), (2, 3, 1), (3, 2, 2), (5, 1, 1)]:
        x, w, b, stride, dilation = case(dims, k, s, d, size=4)
        out = FUNCTIONAL[dims](x, w, None, stride=stride, padding=mode, dilation=dilation)
        expected = jax_conv_transpose(x, w, stride, dilation, mode)
        assert_close_to(out, expected, torch.float64, f"{dims}-D padding={mode!r} k={k} s={s}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_per_side_padding_with_gradients(dims, device, algorithm):
    x, w, b, stride, dilation = case(dims, 4, 2, 1, size=4)
    starts, ends = [2, 0, 1][:dims], [0, 3, 1][:dims]
    pairs = tuple(zip(starts, ends))
    leaves = [t.to(device).requires_grad_() for t in (x, w, b)]
    out = FUNCTIONAL[dims](*leaves, stride=stride, padding=pairs, dilation=dilation)
    oracle_leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    expected = cropped_full_output(*oracle_leaves, stride, dilation, starts, ends)
    assert_close_to(out, expected, torch.float64, f"padding={pairs}")
    gy = torch.randn_like(expected)
    got = torch.autograd.grad(out, leaves, gy.to(device))
    want = torch.autograd.grad(expected, oracle_leaves, gy)
    for what, g, e in zip(("grad_input", "grad_weight", "grad_bias"), got, want):
        assert_close_to(g, e, torch.float64, f"{what}, padding={pairs}")


@pytest.mark.parametrize("mode", ["same", "valid"])
def test_modes_with_gradients_and_bias(mode, algorithm):
    """'same' with an odd overlap (k4 s1: crop 1 at the start, 2 at the end)
    and with a kernel below the stride (k2 s3: zeros and bias at the end)."""
    for k, s in [(4, 1), (2, 3), (4, 2)]:
        x, w, b, stride, dilation = case(2, k, s, 1)
        extent = k
        overlap = max(extent - s, 0)
        starts = [overlap // 2 if mode == "same" else 0] * 2
        ends = [overlap - starts[0] if mode == "same" else 0] * 2
        extra = [max(s - extent, 0)] * 2
        leaves = [t.clone().requires_grad_() for t in (x, w, b)]
        out = torch_tconv.conv_transpose2d(*leaves, stride=stride, padding=mode)
        oracle_leaves = [t.clone().requires_grad_() for t in (x, w, b)]
        expected = cropped_full_output(*oracle_leaves, stride, dilation, starts, ends, extra)
        assert_close_to(out, expected, torch.float64, f"{mode} k{k} s{s}")
        gy = torch.randn_like(expected)
        for what, g, e in zip(("grad_input", "grad_weight", "grad_bias"),
                              torch.autograd.grad(out, leaves, gy),
                              torch.autograd.grad(expected, oracle_leaves, gy)):
            assert_close_to(g, e, torch.float64, f"{what}, {mode} k{k} s{s}")


@pytest.mark.parametrize("padding", ["same", "valid", ((1, 2), (0, 1))])
def test_modules(padding):
    torch.manual_seed(0)
    layer = torch_tconv.ConvTranspose2d(3, 4, 4, stride=2, padding=padding, dtype=torch.float64)
    theirs = nn.ConvTranspose2d(3, 4, 4, stride=2, dtype=torch.float64)
    theirs.load_state_dict(layer.state_dict())  # the same parameters as torch.nn's
    assert f"padding={padding}" in layer.extra_repr()
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    expected = torch_tconv.conv_transpose2d(x, layer.weight, layer.bias, stride=2, padding=padding)
    torch.testing.assert_close(layer(x), expected)
    torch.testing.assert_close(torch.jit.script(layer)(x), expected)
    torch.testing.assert_close(layer(x[0]), expected[0])
    if padding == "same":
        assert layer(x).shape[2:] == (10, 12)
        # output_size within the op's range: here the smallest is the 'same' size.
        assert layer(x, output_size=[11, 12]).shape[2:] == (11, 12)
    # Changing a parameter after construction is seen by the next call.
    layer.padding = (1, 1)
    theirs.padding = (1, 1)
    torch.testing.assert_close(layer(x), theirs(x))


def test_onnx_export_of_same_and_per_side_padding():
    torch.manual_seed(0)
    model = nn.Sequential(torch_tconv.ConvTranspose2d(3, 4, 4, stride=2, padding="same"),
                          torch_tconv.ConvTranspose2d(4, 2, 3, stride=2, padding=((1, 0), (0, 2))))
    model.eval()
    x = torch.randn(1, 3, 5, 6)
    _, out = onnx_export_and_run(model, x)
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_errors_name_the_argument():
    x, w = torch.randn(1, 2, 4, 4), torch.randn(2, 3, 3, 3)
    with pytest.raises(ValueError, match="padding must be 'same', 'valid', ints or"):
        torch_tconv.conv_transpose2d(x, w, padding="full")
    with pytest.raises(ValueError, match="output_padding must be 0 with padding='same'"):
        torch_tconv.conv_transpose2d(x, w, stride=2, padding="same", output_padding=1)
    with pytest.raises(TypeError, match=r"one pair of ints per spatial dim \(2\)"):
        torch_tconv.conv_transpose2d(x, w, padding=((1, 2),))
    with pytest.raises(RuntimeError, match="padding must be non-negative"):
        torch_tconv.conv_transpose2d(x, w, padding=((1, -1), (0, 0)))
    with pytest.raises(RuntimeError, match=r"padding must have 2 values .* or 4"):
        torch.ops.torch_tconv.conv_transpose(x, w, None, [1, 1], [1, 1, 1], [0, 0], [1, 1], 1)
    with pytest.raises(ValueError, match="padding must be 'same'"):
        torch_tconv.ConvTranspose2d(2, 3, 3, padding="full")


TRANSFORM_CASES = [(1, "same"), (2, ((2, 0), (1, 3))), (3, "valid"), (3, ((1, 0), (0, 1), (2, 1)))]


def ours_and_reference(dims, padding, stride=2, kernel=3):
    """Our functional with this padding, and the same map made of torch's
    own ops (the full output, cropped or extended, plus bias)."""
    extent = kernel
    if isinstance(padding, str):
        overlap = max(extent - stride, 0)
        starts = [overlap // 2 if padding == "same" else 0] * dims
        ends = [overlap - starts[0] if padding == "same" else 0] * dims
        extra = [max(stride - extent, 0)] * dims
    else:
        starts, ends, extra = [p[0] for p in padding], [p[1] for p in padding], None

    def ours(x, w, b):
        return FUNCTIONAL[dims](x, w, b, stride=stride, padding=padding)

    def reference(x, w, b):
        return cropped_full_output(x, w, b, [stride] * dims, [1] * dims, starts, ends, extra)
    return ours, reference


@pytest.mark.parametrize("dims,padding", TRANSFORM_CASES)
def test_torch_func_and_forward_mode(dims, padding):
    """grad, jvp (forward mode), vmap over a batch of inputs, and dual
    tensors, against the same transforms of the reference map."""
    from torch.func import grad, jvp, vmap

    ours, reference = ours_and_reference(dims, padding)
    x, w, b, _, _ = case(dims, 3, 2, 1, size=3, seed=4)
    tangents = tuple(torch.randn_like(t) for t in (x, w, b))
    def loss(f):
        return lambda x, w, b: f(x, w, b).square().sum()

    for argnum in range(3):
        torch.testing.assert_close(grad(loss(ours), argnums=argnum)(x, w, b),
                                   grad(loss(reference), argnums=argnum)(x, w, b))
    torch.testing.assert_close(jvp(ours, (x, w, b), tangents), jvp(reference, (x, w, b), tangents))
    xs = torch.randn(3, *x.shape, dtype=torch.float64)
    torch.testing.assert_close(vmap(ours, in_dims=(0, None, None))(xs, w, b),
                               vmap(reference, in_dims=(0, None, None))(xs, w, b))
    with fwAD.dual_level():
        duals = [fwAD.make_dual(t, d) for t, d in zip((x, w, b), tangents)]
        tangent = fwAD.unpack_dual(ours(*duals)).tangent
    torch.testing.assert_close(tangent, jvp(reference, (x, w, b), tangents)[1])


@pytest.mark.parametrize("dims,padding", TRANSFORM_CASES)
def test_compile_and_export(dims, padding):
    layer = MODULE[dims](3, 4, 3, stride=2, padding=padding, dtype=torch.float64)
    x = torch.randn(2, 3, *[4] * dims, dtype=torch.float64)
    expected = layer(x)
    torch._dynamo.reset()
    torch.testing.assert_close(torch.compile(layer, fullgraph=True)(x), expected)
    program = torch.export.export(layer, (x,))
    torch.testing.assert_close(program.module()(x), expected)
    traced = torch.fx.symbolic_trace(layer, concrete_args={"output_size": None})
    torch.testing.assert_close(traced(x), expected)
