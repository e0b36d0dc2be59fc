"""The CPU's register-blocked gradients (algorithm "phase" with the tile
variant "auto" or "blocked", cpu/blocked_gradients.h): the input gradient as
a strided convolution of grad_output and the weight gradient as outer
products, both from one channels-last copy of grad_output whose groups are
padded to whole column panels, made per chunk of samples. Algorithm "auto"
takes them for float32/float64 layers of 2 to 32 input channels per group
and at most 64 taps whose output channels fill 60% of the panels.

The layers below reach what the small layer table (test_implicit_gemm.py)
does not: groups whose channels fill whole panels (the copy is then a view
for channels-last grad_output) or part of one, several depth blocks, rows
past a task's last tile, taps outside the output in every dim, and batches
over one chunk. Every compiled variant runs; the tiles fuse their
multiply-adds where the variant has FMA, so each is compared with the
float64 oracle. Outputs are poisoned (conftest.py): an element no tile
stores fails."""

import pytest
import torch

import torch_tconv
from common_utils import REFERENCE, assert_close_to, with_layout

ISAS = torch_tconv.backends.supported_cpu_isas()

# name: (input shape, weight shape, parameters)
LAYERS = {
    # 8 groups of 16 channels in and out: whole panels of 16 floats (two of
    # 8 doubles), each group's channels 16 apart in every pixel.
    "grouped_whole_panels": ((2, 128, 9, 10), (128, 16, 4, 4),
                             dict(stride=2, padding=1, output_padding=0, dilation=1, groups=8)),
    # 13 output channels per group: padded to a panel; 7 input channels.
    "grouped_padded": ((3, 14, 7, 9), (14, 13, 3, 5),
                       dict(stride=(2, 3), padding=(1, 2), output_padding=(1, 0),
                            dilation=(2, 1), groups=2)),
    # 25 taps x 20 output channels: two depth blocks of the input gradient.
    "depth_blocks": ((2, 6, 8, 7), (6, 20, 5, 5),
                     dict(stride=1, padding=2, output_padding=0, dilation=1, groups=1)),
    # 1-D, k16 s8: taps outside the output at both ends of every row.
    "1d_k16_s8": ((2, 6, 40), (6, 5, 16),
                  dict(stride=8, padding=4, output_padding=0, dilation=1, groups=1)),
    # 3-D, uneven strides, padding beyond the kernel's reach in one dim.
    "3d": ((2, 4, 3, 4, 5), (4, 7, 2, 3, 2),
           dict(stride=(1, 2, 3), padding=(0, 1, 1), output_padding=(0, 1, 2), dilation=1,
                groups=1)),
    # 9 samples of 64 x 64 outputs of 32 channels: 512 KiB of grad_output per
    # sample, so 8 samples per 4 MiB chunk and a chunk of 1 after them.
    "chunks": ((9, 16, 32, 32), (16, 32, 4, 4),
               dict(stride=2, padding=1, output_padding=0, dilation=1, groups=1)),
}


def make(name, dtype, layout="contiguous", seed=0):
    x_shape, w_shape, params = LAYERS[name]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(x_shape, generator=g, dtype=torch.float64)
    w = torch.randn(w_shape, generator=g, dtype=torch.float64)
    out = REFERENCE[x.dim() - 2](x, w, None, **params)
    gy = torch.randn(out.shape, generator=g, dtype=torch.float64)
    return (with_layout(x.to(dtype), layout), w.to(dtype), with_layout(gy.to(dtype), layout),
            params)


def gradients(x, w, gy, params, **settings):
    leaves = [x.detach().requires_grad_(), w.detach().requires_grad_()]
    conv = {3: torch_tconv.conv_transpose1d, 4: torch_tconv.conv_transpose2d,
            5: torch_tconv.conv_transpose3d}[x.dim()]
    with torch_tconv.backends.flags(**settings):
        out = conv(*leaves, None, **params)
        return torch.autograd.grad(out, leaves, gy)


def oracle(x, w, gy, params):
    leaves = [x.detach().double().requires_grad_(), w.detach().double().requires_grad_()]
    out = REFERENCE[x.dim() - 2](*leaves, None, **params)
    return torch.autograd.grad(out, leaves, gy.double())


@pytest.mark.parametrize("isa", ["auto"] + ISAS)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_blocked_gradients_match_the_oracle(name, dtype, layout, isa):
    x, w, gy, p = make(name, dtype, layout)
    grad_input, grad_weight = gradients(x, w, gy, p, algorithm="phase", tile_variant="blocked",
                                        cpu_isa=isa)
    want_input, want_weight = oracle(x, w, gy, p)
    assert_close_to(grad_input, want_input, dtype, f"{name} grad_input, {layout}, {isa}")
    assert_close_to(grad_weight, want_weight, dtype, f"{name} grad_weight, {layout}, {isa}")


@pytest.mark.parametrize("name", ["grouped_padded", "chunks"])
def test_each_gradient_alone(name):
    """The input and weight gradient ops, each on its own (the backward op
    computes both from one copy of grad_output)."""
    x, w, gy, p = make(name, torch.float64)
    want_input, want_weight = oracle(x, w, gy, p)
    ops = torch.ops.torch_tconv
    dims = x.dim() - 2
    args = [list(p[key]) if isinstance(p[key], tuple) else [p[key]] * dims
            for key in ("stride", "padding", "dilation")] + [p["groups"]]
    with torch_tconv.backends.flags(algorithm="phase"):
        grad_input = ops.conv_transpose_input_grad(gy, w, list(x.shape[2:]), *args)
        grad_weight = ops.conv_transpose_weight_grad(x, gy, list(w.shape[2:]), *args)
    assert_close_to(grad_input, want_input, torch.float64, f"{name} grad_input alone")
    assert_close_to(grad_weight, want_weight, torch.float64, f"{name} grad_weight alone")


def test_gradients_give_the_same_bits_at_every_thread_count():
    """Each weight-gradient task sums every sample of its elements in one
    order, and each input-gradient row is one task's: the bits do not depend
    on the thread count."""
    x, w, gy, p = make("chunks", torch.float32)
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(gradients(x, w, gy, p, algorithm="phase"))
    finally:
        torch.set_num_threads(previous)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_auto_takes_the_blocked_gradients_for_few_channels_per_group(dtype):
    """The rule of algorithm "auto": the blocked gradients for 2 to 32 input
    channels per group and at most 64 taps, im2col + GEMMs otherwise. Each path gives its own
    bits, which tell them apart."""
    x, w, gy, p = make("grouped_whole_panels", dtype)
    blocked = gradients(x, w, gy, p, algorithm="phase")
    gemm = gradients(x, w, gy, p, algorithm="gemm")
    assert not all(torch.equal(a, b) for a, b in zip(blocked, gemm)), "the paths should differ"
    for auto, want in zip(gradients(x, w, gy, p), blocked):
        assert torch.equal(auto, want)
    # Forcing the scalar tiles keeps "auto" on im2col + GEMMs.
    for auto, want in zip(gradients(x, w, gy, p, tile_variant="scalar"), gemm):
        assert torch.equal(auto, want)
    # 64 input channels per group, or 21 with 256 taps (FCN k16 s8): im2col
    # + GEMMs.
    for channels, kernel, stride in ((64, 4, 2), (21, 16, 8)):
        x = torch.randn(2, channels, 5, 5, dtype=dtype)
        w = torch.randn(channels, 16, kernel, kernel, dtype=dtype)
        params = dict(stride=stride, padding=stride // 2, output_padding=0, dilation=1, groups=1)
        gy = torch.randn(REFERENCE[2](x, w, None, **params).shape, dtype=dtype)
        for auto, want in zip(gradients(x, w, gy, params),
                              gradients(x, w, gy, params, algorithm="gemm")):
            assert torch.equal(auto, want)


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_non_finite_weights_run_the_scalar_tiles(value):
    """The input gradient's tiles multiply the zeros of taps outside the
    output by the weight; with a non-finite weight both gradients run the
    scalar tiles, and reach the NaNs and infinities torch's reach."""
    x, w, gy, p = make("grouped_padded", torch.float64)
    w[3, 5, 1, 2] = value
    blocked = gradients(x, w, gy, p, algorithm="phase", tile_variant="blocked")
    scalar = gradients(x, w, gy, p, algorithm="phase", tile_variant="scalar")
    for a, b in zip(blocked, scalar):
        assert torch.equal(a.isnan(), b.isnan())
        finite = b.isfinite()
        assert torch.equal(a[finite], b[finite])
    want_input, _ = oracle(x, w, gy, p)
    for check in (torch.isnan, torch.isposinf, torch.isneginf):
        assert torch.equal(check(blocked[0]), check(want_input)), check.__name__
