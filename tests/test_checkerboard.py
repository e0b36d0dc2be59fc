"""Checkerboard artifacts: torch_tconv.checkerboard's counts against the op
run on ones, the phase gains against the op's response to constant inputs,
the artifact-free initialisations (torch_tconv.init), ResizeConv1d/2d/3d
against resize-then-convolve in torch's own ops, the dead-phase warning, the
report, the plot and the errors."""

import math
import struct
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torch_tconv
from torch_tconv import checkerboard, init

CONV_TRANSPOSE = {1: torch_tconv.conv_transpose1d, 2: torch_tconv.conv_transpose2d,
                  3: torch_tconv.conv_transpose3d}
MODULES = {1: torch_tconv.ConvTranspose1d, 2: torch_tconv.ConvTranspose2d,
           3: torch_tconv.ConvTranspose3d}
RESIZE_CONV = {1: torch_tconv.ResizeConv1d, 2: torch_tconv.ResizeConv2d,
               3: torch_tconv.ResizeConv3d}
CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def counted_by_the_op(input_size, kernel_size, stride, padding=0, output_padding=0, dilation=1):
    """The brute-force overlap: the op itself on an all-ones input and kernel."""
    dims = len(input_size)
    ones_input = torch.ones(1, 1, *input_size, dtype=torch.float64)
    ones_kernel = torch.ones(1, 1, *kernel_size, dtype=torch.float64)
    return CONV_TRANSPOSE[dims](ones_input, ones_kernel, None, stride, padding, output_padding,
                                1, dilation)[0, 0]


def interior_phase_counts_by_the_op(kernel_size, stride, dilation, padding):
    """Per phase, the taps the op lands on one interior output of a 1-D
    layer: read from the middle of a long all-ones output."""
    n = 4 * ((dilation * (kernel_size - 1) + 2 * padding) // stride + 3)
    out = counted_by_the_op((n,), (kernel_size,), (stride,), padding, 0, dilation)
    middle = out.numel() // 2
    counts = [0] * stride
    for position in range(middle, middle + stride):
        counts[position % stride] = int(out[position])
    return counts


def not_dead(**kwargs):
    """Constructs a layer without the dead-phase warning failing a test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", checkerboard.DeadPhaseWarning)
        return kwargs.pop("cls")(**kwargs)


# ----------------------------------------------------------------- tap counts

def test_k3_s2_counts_two_and_one_and_four_to_one_in_2d():
    assert checkerboard.tap_counts((3,), (2,)).tolist() == [2, 1]
    counts = checkerboard.tap_counts(3, 2)  # ints alone: 2-D
    assert counts.tolist() == [[4, 2], [2, 1]]
    assert counts.max().item() / counts.min().item() == 4
    assert checkerboard.dead_phases(3, 2) == []


def test_k3_s2_d2_has_three_dead_phases_of_four():
    assert checkerboard.tap_counts((3,), (2,), (2,)).tolist() == [3, 0]
    assert checkerboard.dead_phases((3,), (2,), (2,)) == [(1,)]
    assert checkerboard.dead_phases(3, 2, dilation=2) == [(0, 1), (1, 0), (1, 1)]
    # The op agrees: the odd rows and columns of a k3 s2 d2 output get nothing.
    out = counted_by_the_op((6, 6), (3, 3), (2, 2), dilation=(2, 2))
    assert (out[1::2, :] == 0).all() and (out[:, 1::2] == 0).all() and (out[::2, ::2] > 0).all()


def test_k4_s2_is_even():
    assert checkerboard.tap_counts(4, 2).tolist() == [[4, 4], [4, 4]]
    assert checkerboard.tap_counts((4, 4, 4), (2, 2, 2)).unique().tolist() == [8]


def test_padding_moves_the_phases():
    assert checkerboard.tap_counts((3,), (2,), padding=(1,)).tolist() == [1, 2]
    assert checkerboard.tap_counts((3,), (2,), padding=((1, 0),)).tolist() == [1, 2]
    assert checkerboard.dead_phases((3,), (2,), (2,), (1,)) == [(0,)]


@pytest.mark.parametrize("kernel_size,stride,dilation,padding", [
    (3, 2, 1, 0), (3, 2, 1, 1), (4, 2, 1, 1), (5, 2, 1, 2), (5, 3, 1, 0), (7, 3, 1, 4),
    (16, 8, 1, 4), (3, 2, 2, 0), (3, 2, 3, 1), (4, 3, 2, 2), (2, 3, 1, 0), (1, 2, 1, 0),
    (6, 4, 2, 3), (9, 4, 3, 5), (3, 1, 2, 1)])
def test_tap_counts_match_the_op(kernel_size, stride, dilation, padding):
    expected = interior_phase_counts_by_the_op(kernel_size, stride, dilation, padding)
    assert checkerboard.tap_counts((kernel_size,), (stride,), (dilation,),
                                   (padding,)).tolist() == expected
    dead = [(r,) for r, c in enumerate(expected) if c == 0]
    assert checkerboard.dead_phases((kernel_size,), (stride,), (dilation,), (padding,)) == dead


@pytest.mark.parametrize("kernel_size,stride,dilation,padding", [
    ((3, 4), (2, 3), (1, 1), (0, 1)), ((5, 3), (3, 2), (2, 1), (1, 1)),
    ((3, 2), (2, 2), (1, 1), (1, 0))])
def test_tap_counts_in_2d_match_the_op(kernel_size, stride, dilation, padding):
    input_size = (12, 12)
    out = counted_by_the_op(input_size, kernel_size, stride, padding, 0, dilation)
    rows, columns = out.shape[0] // 2, out.shape[1] // 2
    expected = torch.zeros(stride, dtype=torch.int64)
    for row in range(rows, rows + stride[0]):
        for column in range(columns, columns + stride[1]):
            expected[row % stride[0], column % stride[1]] = int(out[row, column])
    assert torch.equal(checkerboard.tap_counts(kernel_size, stride, dilation, padding), expected)


def test_counts_are_even_exactly_when_the_stride_divides_the_kernel_and_the_dilation_is_coprime():
    for k in range(1, 9):
        for s in range(1, 5):
            for d in range(1, 5):
                counts = checkerboard.tap_counts((k,), (s,), (d,))
                even = bool((counts == counts[0]).all())
                assert even == (k % s == 0 and math.gcd(d, s) == 1), (k, s, d, counts)
                dead = checkerboard.dead_phases((k,), (s,), (d,))
                assert bool(dead) == (k < s or math.gcd(d, s) > 1), (k, s, d, dead)
                assert counts.sum().item() == k  # every tap lands on exactly one phase


# ---------------------------------------------------------------- overlap map

@pytest.mark.parametrize("input_size,kernel_size,stride,padding,output_padding,dilation", [
    ((5,), (3,), (2,), 0, 0, 1),
    ((7,), (3,), (2,), 1, 1, 1),
    ((4,), (5,), (3,), 2, 2, 1),
    ((6,), (3,), (2,), 0, 1, 2),
    ((3,), (2,), (3,), 0, 2, 1),
    ((5,), (4,), (2,), "same", 0, 1),
    ((5,), (3,), (2,), "valid", 0, 1),
    ((4,), (1,), (3,), "same", 0, 1),  # 'same' adds bias-only outputs at the end
    ((6,), (3,), (2,), ((2, 0),), 0, 1),
    ((8, 8), (3, 3), (2, 2), 0, 0, 1),
    ((5, 6), (4, 3), (2, 3), (1, 0), (1, 2), (1, 1)),
    ((6, 5), (3, 3), (2, 2), 0, (1, 1), (2, 2)),
    ((4, 4), (5, 5), (2, 2), "same", 0, 1),
    ((4, 5), (2, 3), (3, 1), ((1, 0), (0, 2)), (2, 0), (1, 2)),
    ((3, 4, 2), (2, 3, 2), (2, 1, 2), (1, 0, 0), (1, 0, 1), (1, 2, 1)),
    ((3, 3, 3), (3, 3, 3), (2, 2, 2), "valid", 0, 1),
    ((2, 3, 2), (3, 2, 3), (2, 3, 1), (2, 1, 1), (1, 2, 0), (2, 1, 2)),
])
def test_overlap_map_matches_the_op_on_ones(input_size, kernel_size, stride, padding,
                                            output_padding, dilation):
    expected = counted_by_the_op(input_size, kernel_size, stride, padding, output_padding,
                                 dilation)
    actual = checkerboard.overlap_map(input_size, kernel_size, stride, padding, output_padding,
                                      dilation)
    assert actual.dtype == torch.int64
    assert torch.equal(actual.double(), expected)


def test_overlap_map_with_ints_is_2d():
    assert torch.equal(checkerboard.overlap_map(4, 3, 2).double(),
                       counted_by_the_op((4, 4), (3, 3), (2, 2)))


def test_interior_mask_marks_the_outputs_with_all_their_phase_taps():
    input_size, kernel_size, stride, padding = (7, 6), (3, 4), (2, 3), (1, 0)
    overlap = checkerboard.overlap_map(input_size, kernel_size, stride, padding)
    mask = checkerboard.interior_mask(input_size, kernel_size, stride, padding)
    counts = checkerboard.tap_counts(kernel_size, stride, padding=padding)
    rows = torch.arange(overlap.shape[0]) % stride[0]
    columns = torch.arange(overlap.shape[1]) % stride[1]
    full = counts[rows][:, columns]
    assert torch.equal(mask, overlap == full)
    assert mask.any() and not mask.all()


# ---------------------------------------------------------------- phase gains

@pytest.mark.parametrize("dims,kernel_size,stride,padding,dilation,groups", [
    (1, (3,), (2,), 0, 1, 1), (1, (5,), (3,), ((2, 1),), 1, 2), (2, (3, 3), (2, 2), 1, 1, 1),
    (2, (4, 3), (2, 3), (1, 2), (1, 2), 2), (2, (3, 3), (2, 2), 0, 2, 1),
    (3, (3, 2, 3), (2, 2, 1), (1, 0, 1), 1, 1)])
def test_phase_gains_are_the_response_to_inputs_constant_per_channel(
        dims, kernel_size, stride, padding, dilation, groups):
    in_channels, out_channels = 2 * groups, 3 * groups
    weight = torch.randn(in_channels, out_channels // groups, *kernel_size, dtype=torch.float64)
    bias = torch.randn(out_channels, dtype=torch.float64)
    levels = torch.randn(in_channels, dtype=torch.float64)
    input_size = (7,) * dims
    x = levels.reshape(1, -1, *[1] * dims).expand(1, in_channels, *input_size).contiguous()
    out = CONV_TRANSPOSE[dims](x, weight, bias, stride, padding, 0, groups, dilation)[0]
    gains = checkerboard.phase_gains(weight, stride, dilation, padding)
    assert gains.shape == (in_channels, out_channels // groups, *stride)
    # Within each group, sum_i c_i G[i, o, r] + bias[o].
    grouped = gains.reshape(groups, in_channels // groups, out_channels // groups, *stride)
    per_group_levels = levels.reshape(groups, -1, *[1] * (dims + 1))
    expected = (grouped * per_group_levels).sum(1).reshape(out_channels, *stride)
    expected = expected + bias.reshape(-1, *[1] * dims)
    mask = checkerboard.interior_mask(input_size, kernel_size, stride, padding, 0, dilation)
    assert mask.any()
    for position in mask.nonzero().tolist():
        phase = tuple(p % s for p, s in zip(position, stride))
        torch.testing.assert_close(out[(slice(None), *position)],
                                   expected[(slice(None), *phase)], rtol=1e-12, atol=1e-12)


# -------------------------------------------------- scores and initialisation

@pytest.mark.parametrize("dims,kernel_size,stride,dilation", [
    (1, 3, 2, 1), (1, 16, 8, 1), (2, 3, 2, 1), (2, (5, 4), (2, 3), 1), (2, 4, 2, 3),
    (3, 3, 2, 1), (3, (2, 3, 4), (2, 1, 3), 1)])
def test_resize_conv_init_scores_zero_and_default_init_does_not(dims, kernel_size, stride,
                                                                dilation):
    layer = MODULES[dims](3, 4, kernel_size, stride, dilation=dilation, dtype=torch.float64)
    assert checkerboard.phase_gain_score(layer) > 0.1
    returned = init.resize_conv_(layer.weight, stride)
    assert returned is layer.weight
    assert checkerboard.phase_gain_score(layer) < 1e-10
    assert checkerboard.phase_gain_score(layer.weight, layer.stride, layer.dilation) < 1e-10


def test_resize_conv_init_works_on_torch_nn_layers_and_keeps_autograd_clean():
    layer = nn.ConvTranspose2d(4, 2, 3, stride=2, dtype=torch.float64)
    assert checkerboard.phase_gain_score(layer) > 0.1
    init.resize_conv_(layer.weight, 2)
    assert layer.weight.grad_fn is None and layer.weight.requires_grad
    assert checkerboard.phase_gain_score(layer) < 1e-10


def test_resize_conv_init_draws_the_base_like_the_default_init():
    # kaiming_uniform(a=sqrt(5)) of (C_in, C_out, m, m): bound 1 / sqrt(C_out * m * m).
    weight = torch.empty(64, 32, 4, 4, dtype=torch.float64)
    init.resize_conv_(weight, 2)
    base_bound = 1 / math.sqrt(32 * 3 * 3)
    corners = weight[..., 0, 0]  # one base tap each: the base's values themselves
    assert corners.abs().max() <= base_bound
    assert corners.abs().max() > 0.9 * base_bound
    assert corners.std() == pytest.approx(base_bound / math.sqrt(3), rel=0.05)


def test_score_counts_dead_phases_and_an_all_zero_kernel_scores_zero():
    # Gains [g, 0] per pair: spread |g|, level |g| / 2.
    weight = torch.rand(2, 3, 3, dtype=torch.float64) + 0.1
    assert checkerboard.phase_gain_score(weight, 2, 2) == pytest.approx(2.0)
    assert checkerboard.phase_gain_score(torch.zeros(2, 2, 3, 3), 2) == 0.0


def test_score_is_the_spread_over_the_level_summed_over_pairs():
    weight = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    gains = checkerboard.phase_gains(weight, 2).flatten(2)
    spread = (gains.max(-1).values - gains.min(-1).values).sum()
    level = gains.abs().mean(-1).sum()
    assert checkerboard.phase_gain_score(weight, 2) == pytest.approx((spread / level).item())


@pytest.mark.parametrize("kernel_size,stride,padding", [
    (3, 2, 0), (3, 2, 1), ((5, 4), (3, 2), (2, 1)), (4, 2, "same"), (3, 2, ((1, 0), (0, 1)))])
def test_constant_input_gives_a_constant_interior_after_resize_conv_only(kernel_size, stride,
                                                                         padding):
    torch.manual_seed(0)
    layer = torch_tconv.ConvTranspose2d(3, 4, kernel_size, stride, padding, dtype=torch.float64)
    levels = torch.randn(3, 1, 1, dtype=torch.float64)
    x = levels.expand(1, 3, 9, 8).contiguous()
    mask = checkerboard.interior_mask((9, 8), layer.kernel_size, layer.stride, padding)
    assert mask.sum() > 4

    def interior_spread(out):
        inside = out[0][:, mask]  # (C_out, interior pixels)
        return (inside.max(1).values - inside.min(1).values).max().item()

    with torch.no_grad():
        assert interior_spread(layer(x)) > 1e-3
        init.resize_conv_(layer.weight, layer.stride)
        out = layer(x)
    assert interior_spread(out) < 1e-12
    if not mask.all():  # (k3 s2 p1 crops every border output away)
        # The borders differ: the mask is needed, the output is not flat everywhere.
        assert (out[0].amax((1, 2)) - out[0].amin((1, 2))).max() > 1e-6


# ------------------------------------------------- resize then convolve, exactly

def resized_then_convolved(x, conv_weight, bias, stride, groups):
    dims = x.dim() - 2
    upsampled = F.interpolate(x, scale_factor=stride, mode="nearest")
    return CONV[dims](upsampled, conv_weight, bias, padding="same", groups=groups)


@pytest.mark.parametrize("dims,in_channels,out_channels,kernel_size,stride,groups,bias", [
    (2, 3, 4, 3, 2, 1, True),
    (2, 2, 4, (2, 3), (2, 3), 2, False),  # even m: the crop is asymmetric
    (2, 4, 4, 4, 3, 4, True),  # depthwise
    (2, 3, 2, 1, 2, 1, True),  # m = 1: nearest upsampling, channel mixing
    (1, 3, 2, 5, 4, 1, True),
    (3, 2, 3, 3, 2, 1, True),
    (3, 2, 2, (2, 3, 1), (1, 2, 3), 1, False)])
def test_resize_conv_layer_equals_nearest_upsampling_then_convolution(
        dims, in_channels, out_channels, kernel_size, stride, groups, bias):
    layer = RESIZE_CONV[dims](in_channels, out_channels, kernel_size, stride, groups=groups,
                              bias=bias, dtype=torch.float64)
    size = (5, 4, 3)[:dims]
    x = torch.randn(2, in_channels, *size, dtype=torch.float64, requires_grad=True)
    out = layer(x)
    strides = layer.stride
    expected = resized_then_convolved(x, layer.weight, layer.bias, strides, groups)
    assert out.shape == (2, out_channels, *(n * s for n, s in zip(size, strides)))
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    # The composite kernel is built in forward: gradients reach g itself.
    grad = torch.randn_like(out)
    params = [x, layer.weight] + ([layer.bias] if bias else [])
    ours = torch.autograd.grad(out, params, grad)
    theirs = torch.autograd.grad(expected, params, grad)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    assert checkerboard.phase_gain_score(layer) < 1e-10


def test_resize_conv_layer_stays_artifact_free_after_a_training_step():
    layer = torch_tconv.ResizeConv2d(3, 3, 3, 2, dtype=torch.float64)
    optimiser = torch.optim.SGD(layer.parameters(), lr=0.5)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    loss = (layer(x) - torch.randn(2, 3, 12, 12, dtype=torch.float64)).square().mean()
    loss.backward()
    before = layer.weight.detach().clone()
    optimiser.step()
    assert not torch.equal(before, layer.weight)
    assert checkerboard.phase_gain_score(layer) < 1e-10
    assert layer.transposed_weight().shape == (3, 3, 4, 4)
    assert layer(torch.randn(3, 5, 7, dtype=torch.float64)).shape == (3, 10, 14)  # unbatched


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_resize_conv_layer_scripts_traces_compiles_and_exports(dims):
    """ResizeConv*d works with what users do with their layers: TorchScript
    (script and trace), torch.compile(fullgraph=True), torch.export, and
    ONNX (torch's own transposed convolution in the graph), each giving the
    eager output."""
    from common_utils import onnx_export_and_run

    layer = RESIZE_CONV[dims](4, 6, 3, 2)
    x = torch.randn(2, 4, *([5, 4, 3][:dims]))
    expected = layer(x)
    assert torch.equal(torch.jit.script(layer)(x), expected)
    assert torch.equal(torch.jit.trace(layer, x)(x), expected)
    torch._dynamo.reset()
    torch.testing.assert_close(torch.compile(layer, fullgraph=True)(x), expected)
    exported = torch.export.export(layer, (x,))
    torch.testing.assert_close(exported.module()(x), expected)
    op_types, out = onnx_export_and_run(layer, x)
    assert "ConvTranspose" in op_types
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_resize_conv_layer_under_torch_func_forward_ad_and_fx():
    """torch.func grad, jvp and vmap, dual tensors and FX tracing of
    ResizeConv2d give what the same transforms give on nearest resize then
    convolution, in float64."""
    layer = torch_tconv.ResizeConv2d(3, 4, 3, 2, dtype=torch.float64)
    params = {name: p.detach() for name, p in layer.named_parameters()}

    def ours(x, p):
        return torch.func.functional_call(layer, p, (x,))

    def reference(x, p):
        return resized_then_convolved(x, p["weight"], p["bias"], (2, 2), 1)

    x = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    tangent = torch.randn_like(x)
    close = dict(rtol=1e-10, atol=1e-10)
    for f in (ours, reference):
        assert f(x, params).shape == (2, 4, 10, 8)
    torch.testing.assert_close(
        torch.func.grad(lambda p: ours(x, p).square().sum())(params),
        torch.func.grad(lambda p: reference(x, p).square().sum())(params), **close)
    torch.testing.assert_close(torch.func.jvp(lambda t: ours(t, params), (x,), (tangent,)),
                               torch.func.jvp(lambda t: reference(t, params), (x,), (tangent,)),
                               **close)
    torch.testing.assert_close(torch.func.vmap(lambda t: ours(t, params))(x.unsqueeze(1)),
                               torch.func.vmap(lambda t: reference(t, params))(x.unsqueeze(1)),
                               **close)
    import torch.autograd.forward_ad as fwAD
    expected_tangent = torch.func.jvp(lambda t: reference(t, params), (x,), (tangent,))[1]
    with fwAD.dual_level():
        dual = layer(fwAD.make_dual(x, tangent))
        torch.testing.assert_close(fwAD.unpack_dual(dual).tangent, expected_tangent, **close)
    traced = torch.fx.symbolic_trace(layer)
    torch.testing.assert_close(traced(x), reference(x, params), **close)


def test_resize_conv_layer_has_the_conv_layout_and_default_init():
    layer = torch_tconv.ResizeConv2d(8, 6, 3, 2, groups=2)
    reference = nn.Conv2d(8, 6, 3, groups=2)
    assert layer.weight.shape == reference.weight.shape
    assert layer.bias.shape == reference.bias.shape
    bound = 1 / math.sqrt(4 * 3 * 3)
    assert layer.weight.abs().max() <= bound and layer.bias.abs().max() <= bound
    assert "ResizeConv2d(8, 6, kernel_size=(3, 3), stride=(2, 2), groups=2)" in repr(layer)


@pytest.mark.parametrize("kernel_size,stride", [((3, 3), (2, 2)), ((4, 5), (2, 3)), ((2, 2), (2, 2))])
def test_resize_conv_init_with_a_base_is_resize_then_convolve(kernel_size, stride):
    in_channels, out_channels = 3, 2
    m = tuple(k - s + 1 for k, s in zip(kernel_size, stride))
    base = torch.randn(in_channels, out_channels, *m, dtype=torch.float64)
    weight = torch.empty(in_channels, out_channels, *kernel_size, dtype=torch.float64)
    init.resize_conv_(weight, stride, base=base)
    x = torch.randn(2, in_channels, 5, 4, dtype=torch.float64)
    pairs = tuple((n // 2, (n - 1) // 2) for n in m)
    out = torch_tconv.conv_transpose2d(x, weight, None, stride, pairs)
    # A transposed convolution scatters where a convolution correlates: the
    # equivalent convolution's kernel is the base flipped, channels swapped.
    conv_weight = base.flip((2, 3)).transpose(0, 1)
    expected = resized_then_convolved(x, conv_weight, None, stride, 1)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_resize_conv_kernel_is_the_full_convolution_with_a_box():
    assert init.resize_conv_kernel(torch.ones(1, 1, 3), 2).tolist() == [[[1, 2, 2, 1]]]
    base = torch.randn(2, 3, 3, 2, dtype=torch.float64)
    expected = F.conv_transpose2d(base.reshape(6, 1, 3, 2), torch.ones(1, 1, 2, 3,
                                                                       dtype=torch.float64))
    torch.testing.assert_close(init.resize_conv_kernel(base, (2, 3)),
                               expected.reshape(2, 3, 4, 4), rtol=1e-14, atol=1e-14)


# ------------------------------------------------------------------- bilinear

@pytest.mark.parametrize("stride,kernel_size,padding", [(2, 4, 1), (4, 8, 2)])
def test_bilinear_matches_bilinear_interpolation_in_the_interior(stride, kernel_size, padding):
    layer = torch_tconv.ConvTranspose2d(3, 3, kernel_size, stride, padding, bias=False,
                                        dtype=torch.float64)
    init.bilinear_(layer.weight, stride)
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64)
    with torch.no_grad():
        out = layer(x)
    expected = F.interpolate(x, scale_factor=stride, mode="bilinear", align_corners=False)
    assert out.shape == expected.shape
    mask = checkerboard.interior_mask((6, 5), kernel_size, stride, padding)
    torch.testing.assert_close(out[:, :, mask], expected[:, :, mask], rtol=1e-12, atol=1e-12)
    assert checkerboard.phase_gain_score(layer) < 1e-12


@pytest.mark.parametrize("dims,kernel_size,stride", [
    (1, 5, 3), (1, 6, 3), (2, (3, 6), (2, 3)), (2, 7, 2), (3, (4, 5, 3), (2, 3, 2))])
def test_bilinear_keeps_constants_constant_and_ramps_linear(dims, kernel_size, stride):
    layer = MODULES[dims](2, 2, kernel_size, stride, bias=False, dtype=torch.float64)
    init.bilinear_(layer.weight, stride)
    size = (7, 6, 5)[:dims]
    grids = torch.meshgrid(*[torch.arange(n, dtype=torch.float64) for n in size], indexing="ij")
    slopes = torch.randn(2, dims, dtype=torch.float64)
    offsets = torch.randn(2, dtype=torch.float64)
    ramp = torch.stack([offsets[c] + sum(slopes[c, a] * grids[a] for a in range(dims))
                        for c in range(2)]).unsqueeze(0)
    constant = offsets.reshape(1, 2, *[1] * dims).expand_as(ramp).contiguous()
    with torch.no_grad():
        ramp_out, constant_out = layer(ramp)[0], layer(constant)[0]
    mask = checkerboard.interior_mask(size, layer.kernel_size, layer.stride)
    assert mask.any()
    # Constant: the same constant (gain 1), channel by channel.
    torch.testing.assert_close(constant_out[:, mask],
                               offsets[:, None].expand(2, int(mask.sum())), rtol=1e-12,
                               atol=1e-12)
    # Ramp: every second difference vanishes wherever three neighbours are interior.
    for axis in range(dims):
        n = ramp_out.shape[axis + 1]
        a, b, c = (ramp_out.narrow(axis + 1, start, n - 2) for start in range(3))
        inside = (mask.narrow(axis, 0, n - 2) & mask.narrow(axis, 1, n - 2)
                  & mask.narrow(axis, 2, n - 2))
        assert inside.any()
        second = (a - 2 * b + c)[:, inside]
        assert second.abs().max() < 1e-12
        # and the ramp did not collapse to a constant
        assert (c - a)[:, inside].abs().max() > 1e-6


def test_bilinear_maps_each_channel_to_itself():
    weight = torch.randn(3, 3, 4, 4)
    init.bilinear_(weight, 2)
    off_diagonal = ~torch.eye(3, dtype=torch.bool)
    assert (weight[off_diagonal] == 0).all()
    torch.testing.assert_close(weight[0, 0, :, 1], torch.tensor([0.1875, 0.5625, 0.5625, 0.1875]))
    depthwise = torch.randn(3, 1, 4, 4)
    init.bilinear_(depthwise, 2, groups=3)
    assert torch.equal(depthwise[0], weight[0, 0:1]) and torch.equal(depthwise[2], weight[0, 0:1])
    grouped = torch.randn(4, 2, 4)  # 2 groups of 2 channels: identity within each
    init.bilinear_(grouped, 2, groups=2)
    assert grouped[0, 1].abs().sum() == 0 and grouped[1, 0].abs().sum() == 0
    assert grouped[2, 0].abs().sum() > 0 and grouped[3, 1].abs().sum() > 0


# ------------------------------------------------------------ module warning

@pytest.mark.parametrize("dims,kwargs,phases", [
    (2, dict(kernel_size=3, stride=2, dilation=2), "(0, 1), (1, 0), (1, 1)"),
    (1, dict(kernel_size=1, stride=2), "(1,)"),
    (3, dict(kernel_size=(3, 3, 3), stride=(1, 2, 1), dilation=(1, 2, 1)), "(0, 1, 0)"),
    (2, dict(kernel_size=2, stride=4, padding=1), "12 of the 16 output phases")])
def test_layers_with_dead_phases_warn_once_at_construction(dims, kwargs, phases):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MODULES[dims](2, 2, **kwargs)
    assert len(caught) == 1
    warning = caught[0]
    assert issubclass(warning.category, UserWarning)
    assert issubclass(warning.category, checkerboard.DeadPhaseWarning)
    message = str(warning.message)
    assert f"ConvTranspose{dims}d(kernel_size=" in message and "stride=" in message
    assert "dilation=" in message and phases in message and "Use " in message
    assert warning.filename == __file__  # points at the line that built the layer
    with pytest.warns(UserWarning, match="receive no kernel tap"):
        MODULES[dims](2, 2, **kwargs)


@pytest.mark.parametrize("dims,kwargs", [
    (2, dict(kernel_size=3, stride=2)), (2, dict(kernel_size=4, stride=2, padding=1)),
    (2, dict(kernel_size=3, stride=2, dilation=3)), (1, dict(kernel_size=2, stride=2)),
    (3, dict(kernel_size=2, stride=2)), (2, dict(kernel_size=3, stride=1, dilation=2)),
    (2, dict(kernel_size=4, stride=2, padding="same"))])
def test_layers_without_dead_phases_do_not_warn(dims, kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MODULES[dims](2, 2, **kwargs)


def test_the_dead_phase_warning_can_be_silenced():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=checkerboard.DeadPhaseWarning)
        torch_tconv.ConvTranspose2d(2, 2, 3, stride=2, dilation=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=".*receive no kernel tap")
        torch_tconv.ConvTranspose2d(2, 2, 3, stride=2, dilation=2)


# --------------------------------------------------------------------- report

def test_report_lists_torch_nn_and_torch_tconv_layers_with_their_numbers():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.ConvTranspose2d(2, 3, 3, stride=2, dtype=torch.float64),
        nn.ReLU(),
        nn.Sequential(torch_tconv.ConvTranspose2d(3, 3, 4, stride=2, padding=1,
                                                  dtype=torch.float64)),
        not_dead(cls=torch_tconv.ConvTranspose2d, in_channels=3, out_channels=3, kernel_size=3,
                 stride=2, dilation=2, dtype=torch.float64),
        torch_tconv.ResizeConv2d(3, 2, 3, 2, dtype=torch.float64),
        torch_tconv.ConvTranspose1d(2, 2, 5, stride=3, padding=2, dtype=torch.float64),
    )
    layers = checkerboard.report(model)
    assert [layer.name for layer in layers] == ["0", "2.0", "3", "4", "5"]
    assert [layer.type for layer in layers] == [
        "nn.ConvTranspose2d", "torch_tconv.ConvTranspose2d", "torch_tconv.ConvTranspose2d",
        "torch_tconv.ResizeConv2d", "torch_tconv.ConvTranspose1d"]
    assert [layer.tap_counts for layer in layers] == [
        ((2, 1), (2, 1)), ((2, 2), (2, 2)), ((3, 0), (3, 0)), ((2, 2), (2, 2)), ((1, 2, 2),)]
    assert [layer.max_over_min for layer in layers] == [4, 1, math.inf, 1, 2]
    assert [layer.dead_phases for layer in layers] == [
        [], [], [(0, 1), (1, 0), (1, 1)], [], []]
    assert layers[3].kernel_size == (4, 4) and layers[3].padding == (1, 1)
    assert layers[4].padding == (2,)
    for layer, module in zip(layers, [model[0], model[2][0], model[3], model[4], model[5]]):
        assert layer.score == checkerboard.phase_gain_score(module)
    assert layers[0].score > 0.1 and layers[2].score == pytest.approx(4.0)
    assert layers[3].score < 1e-10
    assert [layer.uneven for layer in layers] == [True, False, True, False, True]

    text = str(layers)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["layer", "type", "kernel"]
    assert lines[2].split()[:8] == ["0", "nn.ConvTranspose2d", "3x3", "2x2", "1x1", "[2,", "1]",
                                    "[2,"]
    assert "inf" in lines[4] and "3/4" in lines[4]
    assert "torch_tconv.ResizeConv2d" in lines[5]

    init.resize_conv_(model[0].weight, 2)
    assert checkerboard.report(model)[0].score < 1e-10


def test_report_of_a_single_layer_and_of_a_model_without_any():
    layer = torch_tconv.ConvTranspose2d(2, 2, 3, stride=2, padding="same")
    (only,) = checkerboard.report(layer)
    assert only.name == "" and only.padding == (0, 0)  # 'same' crops (0, 1) per dim
    assert "(model)" in str(checkerboard.report(layer))
    assert str(checkerboard.report(nn.Linear(2, 2))) == "no transposed convolutions"
    assert len(checkerboard.report(nn.Linear(2, 2))) == 0


def test_summary_names_the_counts_the_ratio_and_the_dead_phases():
    text = checkerboard.summary(3, 2)
    assert "[2, 1] x [2, 1]" in text and "max/min: 4 " in text and "dead phases: none" in text
    assert "  4 2\n  2 1" in text
    dead = checkerboard.summary((3, 3), (2, 2), (2, 2))
    assert "max/min: inf" in dead and "3 of 4: (0, 1), (1, 0), (1, 1)" in dead
    assert "max/min: 1 (even" in checkerboard.summary((4,), (2,))


# ----------------------------------------------------------------------- plot

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_plot_writes_a_png_with_three_panels(tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    path = tmp_path / "figures" / "checkerboard.png"
    returned = torch_tconv.checkerboard.plot(
        str(path), input_size=(8, 8), kernel_size=(3, 3), stride=(2, 2), padding=(0, 0),
        output_padding=(0, 0), dilation=(1, 1), seed=0)
    assert returned == str(path)
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert width > 2 * height
    with Image.open(path) as image:
        assert image.size == (width, height)
        assert image.text["Description"].startswith("3 panels")
        assert "kernel_size=(3, 3)" in image.text["Title"]
    # The picture is not blank.
    import matplotlib.image

    pixels = matplotlib.image.imread(str(path))
    assert pixels.shape[:2] == (height, width) and pixels.std() > 0.05


def test_plot_of_a_layer_with_dead_phases(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "dead.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the plot itself does not warn
        checkerboard.plot(path, input_size=6, kernel_size=3, stride=2, dilation=2, channels=2)
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_plot_leaves_the_global_random_state_alone(tmp_path):
    pytest.importorskip("matplotlib")
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    checkerboard.plot(tmp_path / "a.png", input_size=4, kernel_size=3, stride=2, seed=5)
    assert torch.equal(torch.rand(3), expected)


# --------------------------------------------------------------------- errors

@pytest.mark.parametrize("call,error,words", [
    (lambda: checkerboard.tap_counts(3, 0), ValueError, ["stride", "0"]),
    (lambda: checkerboard.tap_counts((3, 3), (2, 2, 2)), ValueError, ["stride=(2, 2, 2)"]),
    (lambda: checkerboard.tap_counts(0, 2), ValueError, ["kernel_size", "0"]),
    (lambda: checkerboard.tap_counts(3, 2.0), TypeError, ["stride", "2.0"]),
    (lambda: checkerboard.dead_phases(3, 2, dilation=0), ValueError, ["dilation", "0"]),
    (lambda: checkerboard.tap_counts(3, 2, padding="full"), ValueError, ["padding", "full"]),
    (lambda: checkerboard.overlap_map((4,), (3,), (0,)), ValueError, ["stride", "(0,)"]),
    (lambda: checkerboard.overlap_map((0,), (3,), (2,)), ValueError, ["input_size"]),
    (lambda: checkerboard.overlap_map((2,), (3,), (2,), padding=(3,)), ValueError, ["empty"]),
    (lambda: checkerboard.overlap_map((4,), (3,), (2,), output_padding=(2,)), ValueError,
     ["output_padding", "(2,)"]),
    (lambda: checkerboard.overlap_map((4,), (3,), (2,), padding=-1), ValueError,
     ["padding", "-1"]),
    (lambda: checkerboard.phase_gain_score(torch.randn(2, 2, 3, 3)), ValueError,
     ["stride", "None"]),
    (lambda: checkerboard.phase_gain_score(nn.Linear(2, 2)), TypeError, ["Linear"]),
    (lambda: checkerboard.phase_gain_score(nn.ConvTranspose2d(2, 2, 3, 2), stride=2),
     ValueError, ["stride", "module"]),
    (lambda: checkerboard.report([1]), TypeError, ["nn.Module", "list"]),
    (lambda: init.resize_conv_(torch.empty(2, 2, 3, 3), 0), ValueError, ["stride", "0"]),
    (lambda: init.resize_conv_(torch.empty(2, 2, 2, 2), 3), ValueError,
     ["kernel_size=(2, 2)", "stride=(3, 3)"]),
    (lambda: init.resize_conv_(torch.empty(2, 2, 4, 4), 2, base=torch.empty(2, 2, 2, 2)),
     ValueError, ["base", "(2, 2, 3, 3)", "(2, 2, 2, 2)"]),
    (lambda: init.resize_conv_(torch.empty(2, 2, 4, 4), (2, 2, 2)), ValueError,
     ["stride", "(2, 2, 2)"]),
    (lambda: init.resize_conv_(torch.empty(2, 4), 2), ValueError, ["weight", "(2, 4)"]),
    (lambda: init.resize_conv_([1.0], 2), TypeError, ["weight", "list"]),
    (lambda: init.bilinear_(torch.empty(2, 3, 4, 4), 2), ValueError, ["C_in=2", "C_out=3"]),
    (lambda: init.bilinear_(torch.empty(2, 2, 2, 2), 2), ValueError,
     ["kernel_size=(2, 2)", "stride=(2, 2)"]),
    (lambda: init.bilinear_(torch.empty(2, 2, 4, 4), -1), ValueError, ["stride", "-1"]),
    (lambda: torch_tconv.ResizeConv2d(3, 4, 3, 2, groups=2), ValueError, ["groups=2"]),
    (lambda: torch_tconv.ResizeConv2d(3, 4, 3, 0), ValueError, ["stride", "0"]),
    (lambda: torch_tconv.ResizeConv2d(3, 4, (3, 3, 3), 2), ValueError,
     ["kernel_size", "(3, 3, 3)"]),
    (lambda: checkerboard.plot("x.png", input_size=(4, 4, 4)), ValueError,
     ["2-D", "input_size"]),
])
def test_bad_arguments_raise_errors_that_name_them(call, error, words):
    with pytest.raises(error) as caught:
        call()
    for word in words:
        assert word in str(caught.value), (word, str(caught.value))


def test_the_package_exports_the_new_names():
    assert "ResizeConv2d" in torch_tconv.__all__
    assert torch_tconv.checkerboard.tap_counts is checkerboard.tap_counts
    assert torch_tconv.init.resize_conv_ is init.resize_conv_
