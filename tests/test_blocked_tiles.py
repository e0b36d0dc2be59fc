"""The CPU's register-blocked tiles for the forward (tile_variant "blocked",
cpu/blocked_phase_forward.h): one GEMM per output phase stored straight into
the output, which algorithm "auto" runs for float32/float64 layers that are
channels-last with 32 or more channels in and out, have a stride of 4 or
more and 16 or more channels, or are contiguous with output lines of at
most 32 and at most 128 input channels (and output channels that fill 60%
of the tiles' panels); on AMD processors, where MKL runs AVX2, contiguous
layers of longer lines or more channels too (the rule tests below). A contiguous output is stored from whole lines of
every phase, through each task's channels-last sums.

The layers here are large enough for what the small layer table
(test_implicit_gemm.py runs the tiles over it too) does not reach: several
column panels with a partial last one, several depth blocks (taps x input
channels over 256), several row blocks with a partial last tile, phases
without taps, and many taps per phase. Every compiled variant runs: the
tiles fuse their multiply-adds where the variant has FMA, so the variants
are compared with the float64 oracle, not with each other's bits. Outputs
are poisoned (conftest.py): an element no tile stores fails."""

import pytest
import torch
import torch.nn.functional as F

import torch_tconv
from common_utils import REFERENCE, assert_close_to, with_layout

ISAS = torch_tconv.backends.supported_cpu_isas()

# name: (input shape, weight shape, parameters)
LAYERS = {
    # 40 output channels: a full panel and a partial one (one panel of 32 and
    # one of 8 with AVX-512; 16-wide panels elsewhere); 4 taps x 70 channels
    # of depth: two blocks; 297 rows per phase: four row blocks.
    "panels_blocks_rows": ((3, 70, 9, 11), (70, 40, 4, 4),
                           dict(stride=2, padding=1, output_padding=0, dilation=1, groups=1)),
    # Groups, dilation, uneven strides and padding in 3-D.
    "grouped_dilated_3d": ((2, 40, 4, 5, 6), (40, 17, 3, 2, 3),
                           dict(stride=(2, 1, 3), padding=(1, 0, 2), output_padding=(1, 0, 1),
                                dilation=(1, 2, 1), groups=2)),
    # Groups of 32 output channels: whole panels, which channels-last outputs
    # take straight from the tiles' stores (no task sums), at a group offset.
    "grouped_whole_panels": ((2, 64, 5, 7), (64, 32, 3, 3),
                             dict(stride=2, padding=1, output_padding=1, dilation=1, groups=2)),
    # A kernel smaller than the stride: phases with no tap are the bias.
    "phases_without_taps": ((2, 8, 5, 5), (8, 6, 2, 2),
                            dict(stride=3, padding=0, output_padding=2, dilation=1, groups=1)),
    # A vocoder-like 1-D layer: 8 phases of 2 taps.
    "1d_k16_s8": ((2, 33, 40), (33, 20, 16),
                  dict(stride=8, padding=4, output_padding=0, dilation=1, groups=1)),
    # Output lines of 16800 positions, over the 1 MiB of sums of a task of
    # whole lines: a contiguous output is stored from tasks of one phase.
    "long_1d_lines": ((1, 17, 2100), (17, 20, 16),
                      dict(stride=8, padding=4, output_padding=0, dilation=1, groups=1)),
    # Stride 1: one phase of 25 taps, 12 channels: depth blocks of 10 channels.
    "many_taps": ((2, 12, 7, 6), (12, 9, 5, 5),
                  dict(stride=1, padding=2, output_padding=0, dilation=1, groups=1)),
}


def make(name, dtype, layout="contiguous", seed=0):
    x_shape, w_shape, params = LAYERS[name]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(x_shape, generator=g, dtype=torch.float64)
    w = torch.randn(w_shape, generator=g, dtype=torch.float64)
    b = torch.randn(w_shape[1] * params["groups"], generator=g, dtype=torch.float64)
    return with_layout(x.to(dtype), layout), w.to(dtype), b.to(dtype), params


def forward(x, w, b, params):
    return {3: torch_tconv.conv_transpose1d, 4: torch_tconv.conv_transpose2d,
            5: torch_tconv.conv_transpose3d}[x.dim()](x, w, b, **params)


def oracle(x, w, b, params):
    return REFERENCE[x.dim() - 2](x.double(), w.double(), b.double(), **params)


@pytest.mark.parametrize("isa", ["auto"] + ISAS)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_blocked_forward_matches_the_oracle(name, dtype, layout, isa):
    x, w, b, p = make(name, dtype, layout)
    with torch_tconv.backends.flags(algorithm="phase", tile_variant="blocked", cpu_isa=isa):
        out = forward(x, w, b, p)
    assert_close_to(out, oracle(x, w, b, p), dtype, f"{name}, {layout}, {isa}")
    if layout == "channels_last" and x.dim() == 4:
        assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("name", ["panels_blocks_rows", "grouped_whole_panels",
                                  "phases_without_taps"])
def test_without_bias(name, layout):
    x, w, _, p = make(name, torch.float32, layout)
    with torch_tconv.backends.flags(algorithm="phase", tile_variant="blocked"):
        out = forward(x, w, None, p)
    want = F.conv_transpose2d(x.double(), w.double(), None, **p)
    assert_close_to(out, want, torch.float32, f"{name} without bias, {layout}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_auto_takes_the_tiles_for_channels_last_layers_with_many_channels(dtype):
    """The rule of algorithm "auto": the tiles for a channels-last layer of
    32 or more channels in and out, GEMM + col2im for few channels. Each
    path gives its own bits, which tell them apart."""
    x, w, b, p = make("panels_blocks_rows", dtype, "channels_last")

    def run(**settings):
        with torch_tconv.backends.flags(**settings):
            return forward(x, w, b, p)

    tiles = run(algorithm="phase", tile_variant="blocked")
    gemm = run(algorithm="gemm")
    assert not torch.equal(tiles, gemm), "the two paths should differ in some bits"
    assert torch.equal(run(), tiles)
    # Forcing the scalar tiles keeps "auto" off the tiles.
    assert torch.equal(run(tile_variant="scalar"), gemm)
    # Fewer than 32 output channels: GEMM + col2im (the stride is 2).
    narrow = w[:, :31].contiguous()
    with torch_tconv.backends.flags():
        auto = forward(x, narrow, b[:31], p)
    with torch_tconv.backends.flags(algorithm="gemm"):
        assert torch.equal(auto, forward(x, narrow, b[:31], p))


# How the tiles stand against torch's BLAS here, which changes what "auto"
# takes for contiguous layers. MKL runs its AVX2 kernels on AMD processors:
# there AVX-512's tiles outrun it (Zen 5) and AVX2's tiles match it (Zen 3);
# on other processors MKL is the faster.
with open("/proc/cpuinfo") as _cpuinfo:
    AMD = "AuthenticAMD" in _cpuinfo.read()
TILES_OUTRUN_BLAS = torch_tconv._C.cpu_tiles_outrun_blas()
TILES_MATCH_BLAS = (AMD and not TILES_OUTRUN_BLAS
                    and torch_tconv.backends.cpu_isa_in_use() in ("avx2", "avx512"))


def expected_rule(slower, level, faster):
    return faster if TILES_OUTRUN_BLAS else level if TILES_MATCH_BLAS else slower


def test_the_tiles_outrun_the_blas_on_amd_with_avx512_only():
    assert TILES_OUTRUN_BLAS == (AMD and "avx512" in ISAS)


# Whether "auto" takes the tiles where the tiles are slower than the BLAS,
# level with it, and faster.
@pytest.mark.parametrize("stride, channels, slower, level, faster", [
    (4, 16, True, True, True), (8, 21, True, True, True),
    (3, 140, False, True, True),  # output lines of 16, overlapping taps
    (4, 15, False, False, False)])
def test_auto_takes_the_tiles_for_contiguous_layers_of_large_strides(stride, channels, slower,
                                                                    level, faster):
    tiles = expected_rule(slower, level, faster)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, channels, 6, 5, generator=g)
    w = torch.randn(channels, channels, 2 * stride, 2 * stride, generator=g)
    b = torch.randn(channels, generator=g)
    p = dict(stride=stride, padding=stride // 2, output_padding=0, dilation=1, groups=1)
    results = {}
    for algorithm in ("auto", "phase", "gemm"):
        with torch_tconv.backends.flags(algorithm=algorithm, tile_variant="blocked"):
            results[algorithm] = forward(x, w, b, p)
    assert not torch.equal(results["phase"], results["gemm"]), "the paths should differ in some bits"
    assert torch.equal(results["auto"], results["phase" if tiles else "gemm"])
    assert_close_to(results["auto"], oracle(x, w, b, p), torch.float32, f"stride {stride}")


# Whether "auto" takes the tiles where they are slower than the BLAS (output
# lines up to 32, at most 128 input channels), level with it (overlapping
# taps, lines up to 32 in float32 and 64 in float64, any channel count; any
# line with at most 32 input channels) and faster (overlapping taps, lines
# up to 64).
@pytest.mark.parametrize("in_channels, out_channels, width, dtype, slower, level, faster", [
    (70, 40, 11, torch.float32, True, True, True),     # output lines of 22
    (21, 21, 11, torch.float32, True, True, True),     # few channels, short lines
    (21, 21, 20, torch.float32, False, True, True),    # few channels, output lines of 40
    (32, 32, 40, torch.float32, False, True, False),   # 32 channels, output lines of 80
    (33, 40, 40, torch.float32, False, False, False),  # 33 channels, output lines of 80
    (21, 21, 20, torch.float64, False, True, True),    # the same in float64
    (70, 40, 20, torch.float32, False, False, True),   # output lines of 40
    (140, 40, 11, torch.float32, False, True, True),   # more than 128 input channels
    (140, 40, 11, torch.float64, False, True, True),
    (70, 40, 40, torch.float32, False, False, False),  # output lines of 80
    (70, 40, 40, torch.float64, False, False, False),
    (20, 8, 11, torch.float32, False, False, False),   # 8 output channels: half a panel or less
])
def test_auto_rule_for_contiguous_layers_of_stride_2(in_channels, out_channels, width, dtype,
                                                     slower, level, faster):
    """Contiguous layers of small strides take the tiles where col2im is
    weakest: short output lines."""
    tiles = expected_rule(slower, level, faster)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, in_channels, 5, width, generator=g, dtype=dtype)
    w = torch.randn(in_channels, out_channels, 4, 4, generator=g, dtype=dtype)
    b = torch.randn(out_channels, generator=g, dtype=dtype)
    p = dict(stride=2, padding=1, output_padding=0, dilation=1, groups=1)
    results = {}
    for algorithm in ("auto", "phase", "gemm"):
        with torch_tconv.backends.flags(algorithm=algorithm, tile_variant="blocked"):
            results[algorithm] = forward(x, w, b, p)
    assert results["auto"].shape[-1] == 2 * width
    assert not torch.equal(results["phase"], results["gemm"]), "the paths should differ in some bits"
    assert torch.equal(results["auto"], results["phase" if tiles else "gemm"])
    assert_close_to(results["auto"], oracle(x, w, b, p), dtype, f"{in_channels} channels")


def test_auto_gradients_stay_on_gemm():
    """"auto" computes the gradients of a layer of more than 32 input
    channels per group with GEMMs, whichever path its forward takes
    (test_blocked_gradients.py has the rule's other side)."""
    x, w, b, p = make("panels_blocks_rows", torch.float32, "channels_last")
    results = {}
    for algorithm in ("auto", "gemm"):
        leaves = [t.detach().requires_grad_() for t in (x, w, b)]
        with torch_tconv.backends.flags(algorithm=algorithm):
            out = forward(*leaves, p)
            gy = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(
                memory_format=torch.channels_last)
            results[algorithm] = torch.autograd.grad(out, leaves, gy)
    for auto, gemm in zip(results["auto"], results["gemm"]):
        assert torch.equal(auto, gemm)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_non_finite_inputs_propagate_like_torch(dtype):
    """Taps outside the input read zeros, which only a non-finite weight
    could turn into a NaN; with finite weights the tiles run, and infinite
    and NaN inputs reach the outputs torch's reach."""
    x, w, b, p = make("panels_blocks_rows", dtype, "channels_last")
    x[0, 0, 0, 0] = float("nan")
    x[1, 5, -1, -1] = float("inf")
    x[2, 3, 4, 0] = float("-inf")
    with torch_tconv.backends.flags(algorithm="phase", tile_variant="blocked"):
        out = forward(x, w, b, p)
    want = oracle(x, w, b, p)
    for check in (torch.isnan, torch.isposinf, torch.isneginf):
        assert torch.equal(check(out), check(want)), check.__name__
    finite = torch.isfinite(want)
    assert not finite.all()
    assert_close_to(out[finite], want[finite], dtype, "finite elements")


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_weights_run_the_scalar_tiles(value):
    """0 x inf is a NaN that the scatter never makes: with a non-finite
    weight the forward runs the scalar tiles, which skip the outside taps,
    and gives their bits."""
    x, w, b, p = make("panels_blocks_rows", torch.float64, "channels_last")
    w[3, 7, 0, 0] = value
    with torch_tconv.backends.flags(algorithm="phase", tile_variant="blocked"):
        out = forward(x, w, b, p)
    with torch_tconv.backends.flags(algorithm="phase", tile_variant="scalar"):
        scalar = forward(x, w, b, p)
    assert torch.equal(out.isnan(), scalar.isnan())
    finite = scalar.isfinite()
    assert torch.equal(out[finite], scalar[finite])
    want = oracle(x, w, b, p)
    for check in (torch.isnan, torch.isposinf, torch.isneginf):
        assert torch.equal(check(out), check(want)), check.__name__


@pytest.mark.parametrize("lines", [9, 16])
def test_line_tasks_give_the_same_bits_at_every_thread_count(lines):
    """A contiguous output's line tasks split the lines into a multiple of
    the thread count of blocks, in whole strides of lines (an odd count
    leaves a partial one): every line is stored once, and each output's
    sums are the same whatever the split."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 24, lines, 7, generator=g)
    w = torch.randn(24, 40, 3, 4, generator=g)
    b = torch.randn(40, generator=g)
    p = dict(stride=(2, 2), padding=(1, 1), output_padding=(1, 0), dilation=1, groups=1)
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3, 5):
            torch.set_num_threads(threads)
            with torch_tconv.backends.flags(algorithm="phase", tile_variant="blocked"):
                results.append(forward(x, w, b, p))
    finally:
        torch.set_num_threads(previous)
    assert results[0].shape[-2] == 2 * lines
    assert_close_to(results[0], oracle(x, w, b, p), torch.float32, f"{lines} lines")
    for other in results[1:]:
        assert torch.equal(other, results[0])
