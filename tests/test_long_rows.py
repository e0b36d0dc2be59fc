"""Long innermost rows on the CPU: the row launchers split rows longer than
4096 positions (kRowPartPositions in csrc/cpu/launchers.h) into parts, so
that a part's accumulators stay in cache and one long row (a one-channel
signal) spreads over the threads; a window of the column workspace that
covers part of a row adds to part of each output row. Every layer here has
rows of more than one part, with strides, paddings and dilations that put
the parts' edges between a tap's targets."""

import pytest
import torch

import torch_tconv
from common_utils import assert_close_to, forward_and_grads, forward_op, oracle

# name: (in_channels, out_channels, groups, input length, kernel, stride,
# padding, dilation, output_padding); the output lengths are in comments.
LONG_ROWS = {
    "stride1": (3, 3, 1, 4500, 3, 1, 1, 1, 0),  # 4500: two parts
    "stride2_dilated": (2, 3, 1, 2500, 5, 2, 1, 2, 1),  # 5006
    "stride3_padded": (1, 1, 1, 3000, 7, 3, 4, 1, 2),  # 9003: three parts
    "stride8_depthwise": (4, 4, 4, 1200, 16, 8, 4, 1, 0),  # 9600
    "stride5_gaps": (2, 1, 1, 2000, 2, 5, 0, 3, 4),  # 10002, taps miss positions
    "one_position_over": (2, 2, 2, 4097, 1, 1, 0, 1, 0),  # 4097
}


def long_row_case(name, dims, dtype, seed=0):
    """Input, weight, bias and parameters of LONG_ROWS[name] as a 1-D layer,
    or as a 2-D one of three input rows and a kernel two rows high."""
    cin, cout, groups, length, k, s, p, d, op = LONG_ROWS[name]
    gen = torch.Generator().manual_seed(seed)
    outer_in, outer_k = ((), ()) if dims == 1 else ((3,), (2,))
    x = torch.randn(2, cin, *outer_in, length, generator=gen, dtype=torch.float64)
    w = torch.randn(cin, cout // groups, *outer_k, k, generator=gen, dtype=torch.float64)
    b = torch.randn(cout, generator=gen, dtype=torch.float64)

    def per_dim(inner, outer):
        return (inner,) if dims == 1 else (outer, inner)

    params = dict(stride=per_dim(s, 2), padding=per_dim(p, 0), dilation=per_dim(d, 1),
                  output_padding=per_dim(op, 1), groups=groups)
    return x.to(dtype), w.to(dtype), b.to(dtype), params


def check_against_oracle(name, dims, dtype):
    x, w, b, params = long_row_case(name, dims, dtype)
    got, grad_output = forward_and_grads(forward_op, x, w, b, params)
    want = oracle(x, w, b, grad_output, **params)
    for what, g, e in zip(("output", "grad_input", "grad_weight", "grad_bias"), got, want):
        assert_close_to(g, e, dtype, f"{name} {dims}-D {what}")


@pytest.mark.parametrize("algorithm", ["auto", "gemm", "direct"], indirect=True)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("name", sorted(LONG_ROWS))
def test_long_rows_against_oracle(name, dims, dtype, algorithm):
    check_against_oracle(name, dims, dtype)


@pytest.mark.parametrize("budget", [4096, 200_000])
@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("name", sorted(LONG_ROWS))
def test_windows_of_long_rows_against_oracle(name, dims, budget):
    """A column budget below one row's columns makes the GEMM path run
    windows of part of a row (4096 bytes: a few dozen positions each,
    200,000: windows that span several row parts)."""
    with torch_tconv.backends.flags(algorithm="gemm", column_budget_bytes=budget):
        check_against_oracle(name, dims, torch.float64)


@pytest.mark.parametrize("budget", [None, 4096, 200_000])
@pytest.mark.parametrize("algorithm", ["gemm", "direct"], indirect=True)
@pytest.mark.parametrize("name", sorted(LONG_ROWS))
def test_long_row_parts_equal_element_bodies(name, algorithm, budget):
    """Parts add each output's terms in the element bodies' order: the same
    bits as the element bodies that CUDA runs."""
    x, w, b, params = long_row_case(name, 1, torch.float32)
    budget_flags = {} if budget is None else {"column_budget_bytes": budget}
    results = []
    for rows in (True, False):
        with torch_tconv.backends.flags(cpu_row_kernels=rows, **budget_flags):
            results.append(forward_and_grads(forward_op, x, w, b, params)[0])
    for what, row, element in zip(("output", "grad_input", "grad_weight", "grad_bias"), *results):
        assert torch.equal(row, element), what


WIDER_ISAS = [isa for isa in torch_tconv.backends.supported_cpu_isas() if isa != "base"]


@pytest.mark.skipif(not WIDER_ISAS, reason="this processor runs only the baseline variant")
@pytest.mark.parametrize("isa", WIDER_ISAS)
@pytest.mark.parametrize("settings", [dict(algorithm="gemm"), dict(algorithm="direct"),
                                      dict(algorithm="gemm", column_budget_bytes=4096)],
                         ids=["gemm", "direct", "gemm-windows"])
@pytest.mark.parametrize("name", ["stride2_dilated", "stride3_padded", "stride8_depthwise"])
def test_long_row_parts_in_every_cpu_variant(name, settings, isa):
    """Each compiled CPU variant runs the same parts: the baseline's bits."""
    x, w, b, params = long_row_case(name, 1, torch.float32)
    results = []
    for variant in ("base", isa):
        with torch_tconv.backends.flags(cpu_isa=variant, **settings):
            results.append(forward_and_grads(forward_op, x, w, b, params)[0])
    for what, base, wide in zip(("output", "grad_input", "grad_weight", "grad_bias"), *results):
        assert torch.equal(base, wide), what
