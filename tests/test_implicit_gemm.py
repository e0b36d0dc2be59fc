"""The implicit GEMMs (torch_tconv.backends.algorithm = "phase"): the forward
as one GEMM per output phase, the input gradient as a strided convolution of
grad_output, the weight gradient split along batch x positions; no column
buffer. Every tile variant is forced in turn: on the CPU the scalar tiles
run as the reference, the register-blocked tiles run the float32/float64
forward (test_blocked_tiles.py has larger layers for them), and the
tensor-core variants run through the emulation
of their CUDA kernel (the same tiling, loads, fragment coordinates and
epilogue, with mma.sync emulated from its PTX definition, written apart from
the kernel's register-pair form, so that a wrong fragment coordinate gives
wrong sums). Checked against the float64 oracle over the whole layer table
and over layers large enough to span many tiles, depth steps and split-K
slices, with outputs poisoned (conftest.py), so an element no tile writes
fails."""

import pytest
import torch
import torch.nn.functional as F

import torch_tconv
from common_utils import (DEVICES, LAYOUTS, assert_close_to, forward_op, layer_names,
                          make_case, oracle, with_layout)

MMA_VARIANTS = ["mma128x64", "mma64x64", "mma64x32", "mma32x16"]

# (dtype, tile variant): the scalar tiles for every dtype, each tensor-core
# shape for the 16-bit ones.
ENGINES = ([(torch.float64, "scalar"), (torch.float32, "scalar"), (torch.bfloat16, "scalar"),
            (torch.float64, "blocked"), (torch.float32, "blocked")]
           + [(dtype, v) for v in MMA_VARIANTS for dtype in (torch.float16, torch.bfloat16)])


def engine_id(engine):
    dtype, variant = engine
    return f"{str(dtype).removeprefix('torch.')}-{variant}"


@pytest.fixture(autouse=True)
def implicit_gemms():
    with torch_tconv.backends.flags(algorithm="phase"):
        yield


@pytest.fixture(params=ENGINES, ids=engine_id)
def engine(request):
    dtype, variant = request.param
    with torch_tconv.backends.flags(tile_variant=variant):
        yield dtype


def check_all_three(x, w, b, params, dtype, what, seed=1):
    """Forward and both gradients through autograd, against the oracle."""
    leaves = [t.detach().requires_grad_() for t in (x, w, b)]
    out = forward_op(*leaves, params)
    g = torch.Generator().manual_seed(seed)
    gy = torch.randn(out.shape, generator=g, dtype=torch.float64).to(out.device, dtype)
    got = (out, *torch.autograd.grad(out, leaves, gy))
    want = oracle(x, w, b, gy, **params)
    for name, actual, expected in zip(("output", "grad_input", "grad_weight", "grad_bias"), got, want):
        assert_close_to(actual, expected, dtype, f"{what}: {name}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("name", layer_names())
def test_layer_table(name, batch, device, engine):
    """1-D to 3-D, groups, depthwise, dilation, padding that crops, output
    padding, phases without taps."""
    if device == "cuda" and batch is None:
        pytest.skip("unbatched calls differ only on the host, which the CPU runs check")
    x, w, b, p = make_case(name, batch, engine, device)
    check_all_three(x, w, b, p, engine, name)


# Layers that span several row and column tiles of every variant, depths of
# several BK = 32 steps with ragged ends, and (weight gradient: a small
# weight, a long batch x positions depth) split-K slices: by split_k_for, a
# GEMM of few tiles and depth >= 1024 is cut into slices of >= 512.
LARGE = {
    "k4s2p1_many_channels": dict(shape=(2, 40, 9, 11), weight=(40, 70, 4, 4),
                                 params=dict(stride=2, padding=1)),
    "k3s2op1_grouped": dict(shape=(3, 36, 10, 7), weight=(36, 17, 3, 3),
                            params=dict(stride=2, padding=1, output_padding=1, groups=2)),
    "k2s2_unet": dict(shape=(4, 33, 12, 12), weight=(33, 20, 2, 2), params=dict(stride=2)),
    "k3s1_dilated": dict(shape=(2, 12, 15, 13), weight=(12, 9, 3, 3),
                         params=dict(padding=2, dilation=2)),
    "1d_long": dict(shape=(3, 8, 300), weight=(8, 6, 5), params=dict(stride=3, padding=2)),
    # Strides over kMaxFusedStride (8): one GEMM per phase instead of one for all.
    "stride9_per_phase": dict(shape=(2, 5, 7, 6), weight=(5, 4, 11, 3),
                              params=dict(stride=(9, 2), padding=(2, 1), output_padding=(3, 1))),
    "3d": dict(shape=(2, 6, 5, 6, 7), weight=(6, 11, 3, 2, 3),
               params=dict(stride=(2, 1, 2), padding=(1, 0, 1), output_padding=(1, 0, 0))),
}


def full_params(params, dims):
    p = dict(stride=1, padding=0, output_padding=0, dilation=1, groups=1)
    p.update(params)
    return {k: v if k == "groups" or isinstance(v, tuple) else (v,) * dims for k, v in p.items()}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(LARGE))
def test_layers_spanning_many_tiles(name, device, engine):
    case = LARGE[name]
    p = full_params(case["params"], len(case["shape"]) - 2)
    g = torch.Generator().manual_seed(3)
    x, w = (torch.randn(case[k], generator=g, dtype=torch.float64).to(device, engine)
            for k in ("shape", "weight"))
    b = torch.randn(case["weight"][1] * p["groups"], generator=g, dtype=torch.float64).to(device, engine)
    check_all_three(x, w, b, p, engine, name)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("variant", ["scalar"] + MMA_VARIANTS)
def test_split_weight_gradient_is_bitwise_reproducible(variant, device):
    """Slices summed into a workspace and reduced in slice order, never with
    atomics: the same call twice gives the same bits."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 8, 24, 24, generator=g).to(device, torch.bfloat16)
    gy = torch.randn(4, 6, 48, 48, generator=g).to(device, torch.bfloat16)
    with torch_tconv.backends.flags(tile_variant=variant):
        runs = [torch.ops.torch_tconv.conv_transpose_weight_grad(
            x, gy, [4, 4], [2, 2], [1, 1], [1, 1], 1) for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
    w = torch.zeros(8, 6, 4, 4, dtype=torch.float64, requires_grad=True)
    expected, = torch.autograd.grad(
        F.conv_transpose2d(x.double().cpu(), w, stride=2, padding=1), w, gy.double().cpu())
    assert_close_to(runs[0], expected, torch.bfloat16, "grad_weight")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_memory_layouts(layout, engine):
    x, w, b, p = make_case("grouped", 2, engine, "cpu")
    check_all_three(with_layout(x, layout), with_layout(w, layout), b, p, engine, layout)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["grouped", "3d_strided_dilated"])
def test_channels_last_is_read_and_written_in_place(name, device, engine):
    """Channels-last activations (NHWC, NDHWC) are read as they are, and the
    output and the input gradient are written channels-last, as torch's
    convolutions return them (and as the fake kernels say)."""
    x, w, b, p = make_case(name, 2, engine, device)
    fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
    x = x.contiguous(memory_format=fmt)
    leaves = [t.detach().requires_grad_() for t in (x, w, b)]
    out = forward_op(*leaves, p)
    gy = torch.randn(out.shape, dtype=torch.float64).to(device, engine).contiguous(memory_format=fmt)
    grads = torch.autograd.grad(out, leaves, gy)
    assert out.is_contiguous(memory_format=fmt) and not out.is_contiguous()
    assert grads[0].is_contiguous(memory_format=fmt)
    assert grads[1].is_contiguous()
    want = oracle(x, w, b, gy, **p)
    for what, actual, expected in zip(("output", "grad_input", "grad_weight", "grad_bias"),
                                      (out, *grads), want):
        assert_close_to(actual, expected, engine, what)


def test_channels_last_needs_no_copy():
    """The implicit GEMMs read channels-last input where it lies; the GEMM
    path makes it contiguous first (the profile shows that copy)."""
    from torch.profiler import profile

    x, w, b, p = make_case("grouped", 2, torch.float32, "cpu")
    x = x.contiguous(memory_format=torch.channels_last)

    def copies(algorithm):
        with torch_tconv.backends.flags(algorithm=algorithm), profile() as prof:
            forward_op(x, w, b, p)
        return {e.key for e in prof.key_averages() if e.key in ("aten::copy_", "aten::clone")}

    assert copies("gemm"), "the check must see the GEMM path's copy"
    assert not copies("phase")


@pytest.mark.parametrize("index_bits", [32, 64])
def test_both_index_widths(index_bits, engine):
    x, w, b, p = make_case("nonsquare_all", 2, engine, "cpu")
    with torch_tconv.backends.flags(int32_indices=index_bits == 32):
        check_all_three(x, w, b, p, engine, f"{index_bits}-bit indices")


def test_every_phase_and_tile_edge(engine):
    """Output sizes that are no multiple of the stride (phases of different
    lengths), a kernel smaller than the stride (phases with no tap: bias
    only), and channel and row counts that do not fill the last tile."""
    g = torch.Generator().manual_seed(0)
    for stride, kernel, size, channels in [(3, 2, (5, 7), 11), (4, 3, (3, 4), 9), (2, 5, (6, 5), 13)]:
        for output_padding in range(stride):
            x, w, b = (torch.randn(s, generator=g, dtype=torch.float64).to(engine) for s in
                       ((3, 5, *size), (5, channels, kernel, kernel), (channels,)))
            p = dict(stride=(stride,) * 2, padding=(1,) * 2, output_padding=(output_padding,) * 2,
                     dilation=(1, 1), groups=1)
            check_all_three(x, w, b, p, engine,
                            f"stride {stride}, kernel {kernel}, output_padding {output_padding}")


@pytest.mark.parametrize("variant", ["scalar"] + MMA_VARIANTS)
@pytest.mark.parametrize("gradient", [False, True])
def test_nan_and_inf_propagate_like_torch(variant, gradient):
    """Operands outside the image contribute nothing, not a zero: an
    infinite weight times a zero fill would make a NaN torch does not make.
    The scalar tiles skip them; the tensor-core tiles multiply zero fills,
    and a tile that met one and a non-finite operand redoes its sums
    (kernels/mma_tiles.h). For the gradients, grad_output holds the
    non-finite values (the weight gradient's B operand, the input
    gradient's A)."""
    dtype = torch.float64 if variant == "scalar" else torch.float16
    x, w, b, p = make_case("dcgan_k4s2p1", 2, dtype, "cpu")
    x[0, 0, 0, 0] = float("nan")
    x[1, -1, -1, -1] = float("inf")
    w[0, 0, 0, 0] = float("inf")
    w[1, 2, 3, 3] = float("-inf")
    with torch_tconv.backends.flags(tile_variant=variant):
        if gradient:
            x, w, b, p = make_case("dcgan_k4s2p1", 2, dtype, "cpu")
            leaves = [t.requires_grad_() for t in (x, w)]
            out = forward_op(*leaves, b, p)
            gy = torch.randn_like(out)
            gy[0, 0, 0, 0] = float("inf")
            gy[1, 3, -1, -1] = float("nan")
            got = torch.autograd.grad(out, leaves, gy)
            ref = [t.detach().double().requires_grad_() for t in (x, w)]
            expected = torch.autograd.grad(F.conv_transpose2d(*ref, b.double(), **p), ref, gy.double())
        else:
            got = [forward_op(x, w, b, p)]
            expected = [F.conv_transpose2d(x.double(), w.double(), b.double(), **p)]
    for actual, want in zip(got, expected):
        for check in (torch.isnan, torch.isposinf, torch.isneginf):
            assert torch.equal(check(actual), check(want)), check.__name__
        assert torch.isnan(want).any() or torch.isinf(want).any()
        finite = torch.isfinite(want)
        assert_close_to(actual[finite], want[finite], dtype, "finite elements")


@pytest.mark.parametrize("variant", MMA_VARIANTS)
def test_tensor_core_variants_leave_other_dtypes_to_the_scalar_tiles(variant):
    """A forced tensor-core shape applies to float16/bfloat16; float32 runs
    the scalar tiles and gives their bits."""
    x, w, b, p = make_case("grouped", 2, torch.float32, "cpu")
    with torch_tconv.backends.flags(tile_variant="scalar"):
        scalar = forward_op(x, w, b, p)
    with torch_tconv.backends.flags(tile_variant=variant):
        assert torch.equal(forward_op(x, w, b, p), scalar)


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="tile_variant must be"):
        torch_tconv.backends.tile_variant = "mma256x256"
