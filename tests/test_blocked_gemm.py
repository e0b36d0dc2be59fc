"""The GEMM path's products through the CPU's register-blocked tiles
(cpu_gemm "blocked", cpu/blocked_gemm.h), which "auto" takes on processors
where they outrun torch's BLAS (AMD with AVX-512, where MKL runs AVX2).

The GEMM itself is checked against float64 products on shapes that reach
its edges: rows past a tile, a partial last panel, several depth blocks,
every operand transposed, batch strides, an output whose rows are
contiguous instead of its columns, and accumulation. Then the layers: the
three computations of the GEMM path (contiguous and channels-last, groups,
windows and lanes) with the blocked GEMM forced, in every compiled variant,
against the float64 oracle. The tiles fuse their multiply-adds where the
variant has FMA, so the variants are compared with the oracle, not with
each other's bits; repeats give the same bits. The same layers run through
oneDNN's matmul (cpu_gemm "onednn", float32), which "auto" takes for the
gradients on AMD's Zen 4."""

import re

import pytest
import torch

import torch_tconv
from common_utils import assert_close_to, oracle, with_layout

ISAS = torch_tconv.backends.supported_cpu_isas()
_C = torch_tconv._C
ONEDNN = _C.onednn_gemm_available()

# (batch, M, K, N): one tile exactly, rows past a tile, a partial panel,
# depth blocks (K over 256), a 96-row task boundary, and empty products.
SHAPES = [(1, 12, 8, 32), (2, 13, 5, 33), (1, 97, 300, 70), (3, 30, 513, 17),
          (1, 200, 1, 64), (2, 7, 0, 9), (1, 0, 4, 5)]


def operand(batch, rows, cols, transposed, dtype, g):
    """A (batch, rows, cols) operand, stored transposed when asked."""
    if transposed:
        return torch.randn(batch, cols, rows, generator=g, dtype=dtype).transpose(1, 2)
    return torch.randn(batch, rows, cols, generator=g, dtype=dtype)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("a_t, b_t, c_t", [(False, False, False), (True, False, False),
                                           (False, True, False), (True, True, True)])
@pytest.mark.parametrize("shape", SHAPES)
def test_blocked_gemm_matches_float64_products(shape, a_t, b_t, c_t, dtype, isa):
    batch, m, k, n = shape
    g = torch.Generator().manual_seed(sum(shape))
    a = operand(batch, m, k, a_t, dtype, g)
    b = operand(batch, k, n, b_t, dtype, g)
    start = operand(batch, m, n, c_t, dtype, g)
    want = torch.bmm(a.double(), b.double())
    with torch_tconv.backends.flags(cpu_isa=isa):
        out = torch.full_like(start, float("nan"))  # start's strides
        assert out.stride() == start.stride()
        _C.blocked_gemm(a, b, out, False)
        assert_close_to(out, want, dtype, f"{shape} product")
        summed = start.clone()
        _C.blocked_gemm(a, b, summed, True)
        assert_close_to(summed, want + start.double(), dtype, f"{shape} accumulated")


def test_blocked_gemm_output_of_neither_layout():
    """An output whose rows and columns are both strided goes through a
    contiguous copy, accumulated or not."""
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(2, 20, 40, generator=g), torch.randn(2, 40, 50, generator=g)
    base = torch.randn(2, 40, 100, generator=g)
    before = base.clone()
    out = base[:, ::2, ::2]
    start = out.clone()
    _C.blocked_gemm(a, b, out, True)
    assert_close_to(out, torch.bmm(a.double(), b.double()) + start.double(), torch.float32, "sum")
    _C.blocked_gemm(a, b, out, False)
    assert_close_to(out, torch.bmm(a.double(), b.double()), torch.float32, "product")
    # Nothing between the output's elements is written.
    assert torch.equal(base[:, 1::2], before[:, 1::2])
    assert torch.equal(base[:, ::2, 1::2], before[:, ::2, 1::2])


def test_blocked_gemm_refuses_bad_operands():
    a, b, out = torch.randn(1, 4, 5), torch.randn(1, 6, 3), torch.empty(1, 4, 3)
    with pytest.raises(ValueError, match=r"a \(G, M, K\), b \(G, K, N\)"):
        _C.blocked_gemm(a, b, out, False)
    with pytest.raises(ValueError, match="float32 or float64"):
        _C.blocked_gemm(a.bfloat16(), torch.randn(1, 5, 3).bfloat16(), out.bfloat16(), False)


# Layers of the GEMM path: (input shape, weight shape, parameters).
LAYERS = {
    "dcgan_like": ((3, 70, 6, 7), (70, 40, 4, 4), dict(stride=2, padding=1)),
    "grouped": ((2, 64, 5, 6), (64, 24, 3, 3), dict(stride=2, padding=1, output_padding=1, groups=2)),
    "deep_1d": ((2, 300, 9), (300, 50, 4), dict(stride=2, padding=1)),
    "3d": ((2, 20, 3, 4, 5), (20, 13, 2, 3, 2), dict(stride=(2, 1, 2), padding=(0, 1, 0))),
}
FUNCTIONS = {3: torch_tconv.conv_transpose1d, 4: torch_tconv.conv_transpose2d,
             5: torch_tconv.conv_transpose3d}


def run_layer(name, dtype, layout, **settings):
    x_shape, w_shape, params = LAYERS[name]
    g = torch.Generator().manual_seed(len(name))
    x = with_layout(torch.randn(x_shape, generator=g, dtype=dtype), layout).requires_grad_()
    w = torch.randn(w_shape, generator=g, dtype=dtype).requires_grad_()
    b = torch.randn(w_shape[1] * params.get("groups", 1), generator=g, dtype=dtype).requires_grad_()
    with torch_tconv.backends.flags(algorithm="gemm", **settings):
        out = FUNCTIONS[x.dim()](x, w, b, **params)
        blocked = _C.last_gemm_blocked()
        gy = torch.randn(out.shape, generator=g, dtype=dtype)
        grads = torch.autograd.grad(out, (x, w, b), gy)
    return (x, w, b, gy, params), (out, *grads), blocked


@pytest.mark.parametrize("isa", ["auto"] + ISAS)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layers_through_the_blocked_gemm_match_the_oracle(name, dtype, layout, isa):
    (x, w, b, gy, params), results, blocked = run_layer(name, dtype, layout, cpu_gemm="blocked",
                                                        cpu_isa=isa)
    assert blocked, "cpu_gemm 'blocked' should run the blocked GEMM"
    for what, got, want in zip(("output", "grad_input", "grad_weight", "grad_bias"), results,
                               oracle(x, w, b, gy, **params)):
        assert_close_to(got, want, dtype, f"{name} {layout} {isa}: {what}")


# The engines a test may force: the blocked tiles, and oneDNN's matmul where
# torch has it (float32 products, one per group, each copied or added into
# its place: gemm.h, onednn_product).
ENGINES = ["blocked"] + (["onednn"] if ONEDNN else [])


def engine_ran(engine):
    return _C.last_gemm_blocked() if engine == "blocked" else _C.last_gemm_onednn()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("settings", [dict(column_budget_bytes=4096),
                                      dict(column_budget_bytes=1 << 16)])
def test_windows_and_lanes_through_each_engine(settings, engine):
    """Small budgets: samples in windows of rows, weight-gradient sums per
    lane that each product is added into."""
    (x, w, b, gy, params), results, _ = run_layer("dcgan_like", torch.float32, "contiguous",
                                                  cpu_gemm=engine, **settings)
    assert engine_ran(engine)
    for got, want in zip(results, oracle(x, w, b, gy, **params)):
        assert_close_to(got, want, torch.float32, f"{engine} {settings}")


@pytest.mark.parametrize("engine", ENGINES)
def test_repeats_give_the_same_bits(engine):
    first = run_layer("deep_1d", torch.float32, "contiguous", cpu_gemm=engine)[1]
    again = run_layer("deep_1d", torch.float32, "contiguous", cpu_gemm=engine)[1]
    for a, b in zip(first, again):
        assert torch.equal(a, b)


def test_aten_keeps_the_blocked_gemm_off_and_reduced_dtypes_never_take_it():
    assert not run_layer("dcgan_like", torch.float32, "contiguous", cpu_gemm="aten")[2]
    with torch_tconv.backends.flags(cpu_reduced_precision_gemm="always"):
        assert not run_layer("dcgan_like", torch.bfloat16, "contiguous", cpu_gemm="blocked")[2]


def test_auto_follows_the_processor():
    """"auto" takes the blocked GEMM where the tiles outrun the BLAS (the
    vendor and the variant's width decide), for products of 48 or more rows
    and columns; for the gradients' products only where AVX-512 runs at
    full width (AMD family 26 and later, not the Zen 4's family 25)."""
    with open("/proc/cpuinfo") as f:
        cpuinfo = f.read()
    amd = "AuthenticAMD" in cpuinfo
    avx512 = "avx512" in torch_tconv.backends.supported_cpu_isas()
    family = int(re.search(r"^cpu family\s*:\s*(\d+)", cpuinfo, re.M).group(1))
    assert _C.cpu_tiles_outrun_blas() == (amd and avx512)
    assert _C.blocked_gemm_preferred(48, 48, 1) == (amd and avx512)
    assert _C.blocked_gradient_gemm_preferred(48, 48, 1) == (amd and avx512 and family >= 26)
    assert not _C.blocked_gradient_gemm_preferred(47, 1000, 1000)
    # Where AVX-512 runs in halves (Zen 4), oneDNN's matmul instead.
    onednn_here = ONEDNN and amd and avx512 and family < 26
    assert _C.onednn_gradient_gemm_preferred(48, 48, 1) == onednn_here
    assert not _C.onednn_gradient_gemm_preferred(47, 1000, 1000)
    assert not _C.blocked_gemm_preferred(47, 1000, 1000)
    assert not _C.blocked_gemm_preferred(1000, 47, 1000)
    assert run_layer("dcgan_like", torch.float32, "contiguous")[2] == (amd and avx512)
    assert _C.last_gemm_onednn() == onednn_here  # the backward's products
    if "avx2" in ISAS:
        with torch_tconv.backends.flags(cpu_isa="avx2"):
            assert not _C.cpu_tiles_outrun_blas()


def test_the_setting_is_checked():
    with pytest.raises(ValueError,
                       match="cpu_gemm must be 'auto', 'aten', 'blocked' or 'onednn', got 'mkl'"):
        torch_tconv.backends.cpu_gemm = "mkl"
    assert torch_tconv.backends.cpu_gemm == "auto"


# cpu_gemm "onednn" (windows, lanes and repeats: with the blocked GEMM above).
needs_onednn = pytest.mark.skipif(not ONEDNN, reason="torch was built without oneDNN")


@needs_onednn
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layers_through_onednn_match_the_oracle(name, layout):
    (x, w, b, gy, params), results, blocked = run_layer(name, torch.float32, layout,
                                                        cpu_gemm="onednn")
    assert not blocked
    assert _C.last_gemm_onednn(), "cpu_gemm 'onednn' should run oneDNN's matmul"
    for what, got, want in zip(("output", "grad_input", "grad_weight", "grad_bias"), results,
                               oracle(x, w, b, gy, **params)):
        assert_close_to(got, want, torch.float32, f"{name} {layout}: {what}")


def test_onednn_leaves_other_dtypes_to_aten():
    """oneDNN's matmul runs float32 only: float64 and reduced-precision
    columns keep ATen's bmm."""
    (x, w, b, gy, params), results, blocked = run_layer("grouped", torch.float64, "contiguous",
                                                        cpu_gemm="onednn")
    assert not blocked and not _C.last_gemm_onednn()
    for got, want in zip(results, oracle(x, w, b, gy, **params)):
        assert_close_to(got, want, torch.float64, "float64")
    with torch_tconv.backends.flags(cpu_reduced_precision_gemm="always"):
        run_layer("dcgan_like", torch.bfloat16, "contiguous", cpu_gemm="onednn")
        assert not _C.last_gemm_onednn()
