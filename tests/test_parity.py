"""Forward and all three gradients against F.conv_transpose2d in float64, over
a grid of layer configurations, batch sizes, dtypes and both kernel paths."""

import pytest
import torch

import torch_tconv
from common_utils import (DEVICES, assert_close_to, forward_and_grads, layer_names, make_case,
                          oracle)

ops = torch.ops.torch_tconv

LAYERS_2D = layer_names(2)


def check_against_oracle(x, w, b, params, dtype):
    x, w = x.detach().requires_grad_(), w.detach().requires_grad_()
    if b is not None:
        b = b.detach().requires_grad_()
    out = torch_tconv.conv_transpose2d(x, w, b, **params)
    grad_output = torch.randn(out.shape, dtype=torch.float64).to(out.device, dtype)
    expected = oracle(x, w, b, grad_output, **params)
    assert_close_to(out, expected[0], dtype, "output")
    if out.numel() == 0:
        return
    grads = torch.autograd.grad(out, [t for t in (x, w, b) if t is not None], grad_output)
    for name, got, want in zip(("grad_input", "grad_weight", "grad_bias"), grads, expected[1:]):
        assert_close_to(got, want, dtype, name)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", LAYERS_2D)
def test_grid(name, dtype, device, algorithm):
    x, w, b, params = make_case(name, 3, dtype, device)
    check_against_oracle(x, w, b, params, dtype)


@pytest.fixture
def int64_indices():
    """Small problems normally index in 32 bits; this forces the 64-bit
    instantiations of the kernel bodies, which large tensors use."""
    with torch_tconv.backends.flags(int32_indices=False):
        yield


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", LAYERS_2D)
def test_grid_with_64bit_indices(name, device, algorithm, int64_indices):
    x, w, b, params = make_case(name, 3, torch.float64, device)
    check_against_oracle(x, w, b, params, torch.float64)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch", [None, 0, 1, 2, 5])
@pytest.mark.parametrize("name", ["dcgan_k4s2p1", "nonsquare_all", "depthwise"])
def test_batch_sizes_and_unbatched(name, batch, device, algorithm):
    x, w, b, params = make_case(name, batch, torch.float64, device)
    check_against_oracle(x, w, b, params, torch.float64)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["grouped", "nonsquare_all", "pointwise_k1"])
def test_without_bias(name, device, algorithm):
    x, w, b, params = make_case(name, 2, torch.float64, device, bias=False)
    check_against_oracle(x, w, None, params, torch.float64)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["dcgan_k4s2p1", "grouped", "depthwise", "nonsquare_all"])
def test_low_precision(name, dtype, device, algorithm, reduced_precision_gemm):
    x, w, b, params = make_case(name, 2, dtype, device)
    check_against_oracle(x, w, b, params, dtype)


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_inputs(device, algorithm):
    x, w, b, params = make_case("nonsquare_all", 3, torch.float64, device)
    # Channels-last input, a weight that is a transposed view, a strided bias.
    x = x.to(memory_format=torch.channels_last)
    w = w.transpose(2, 3).contiguous().transpose(2, 3)
    b = torch.stack([b, b], 1)[:, 0]
    assert not w.is_contiguous() and not b.is_contiguous()
    check_against_oracle(x, w, b, params, torch.float64)
    # A sliced input and an expanded (stride-0) grad_output.
    big = torch.randn(3, 6, 9, 11, dtype=torch.float64, device=device)
    x = big[:, ::2, 1::2, ::2]
    out = torch_tconv.conv_transpose2d(x, w, b, **params)
    ref = oracle(x, w, b, torch.ones_like(out), **params)[0]
    assert_close_to(out, ref, torch.float64, "sliced input")
    xg = x.detach().clone().requires_grad_()
    torch_tconv.conv_transpose2d(xg, w, b, **params).sum().backward()
    x_ref = x.detach().double().cpu().requires_grad_()
    torch.nn.functional.conv_transpose2d(x_ref, w.double().cpu(), b.double().cpu(), **params).sum().backward()
    assert_close_to(xg.grad, x_ref.grad, torch.float64, "grad_input from expanded grad_output")


def test_poisoning_is_active():
    """The grid relies on torch.empty returning NaN under the test fixture."""
    assert torch.empty(16).isnan().all()


@pytest.fixture
def one_sample_per_chunk():
    """Shrinks the column workspace budget so that every sample is its own
    chunk: the chunked GEMM loop runs many times even on small problems."""
    with torch_tconv.backends.flags(column_budget_bytes=1):
        yield


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("algorithm", ["gemm"], indirect=True)
@pytest.mark.parametrize("name", ["grouped", "nonsquare_all", "dcgan_k4s2p1"])
def test_chunked_batch(name, algorithm, device, one_sample_per_chunk):
    x, w, b, params = make_case(name, 5, torch.float64, device)
    check_against_oracle(x, w, b, params, torch.float64)


def functional_forward(x, w, b, params):
    return torch_tconv.conv_transpose2d(x, w, b, **params)


@pytest.mark.parametrize("algorithm", ["gemm", "direct"], indirect=True)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", LAYERS_2D)
def test_cpu_row_bodies_equal_element_bodies(name, dtype, algorithm, reduced_precision_gemm):
    """The CPU runs the row bodies; the CUDA kernels run the element bodies.
    Both add the same terms in the same order, so they must agree bit for bit,
    which extends every CPU test of the row bodies to the element bodies.
    Both take ATen's GEMM: on AMD processors with AVX-512 the row bodies'
    GEMMs would otherwise run the register-blocked GEMM, whose multiply-adds
    are fused where the compiler chooses (its bits moved with -O1 in the
    sanitizer's build) and which tests/test_blocked_gemm.py checks against the
    oracle instead."""
    x, w, b, params = make_case(name, 3, dtype, "cpu")
    results = []
    for rows in (True, False):
        with torch_tconv.backends.flags(cpu_row_kernels=rows, cpu_gemm="aten"):
            results.append(forward_and_grads(functional_forward, x, w, b, params)[0])
    for what, row, element in zip(("output", "grad_input", "grad_weight", "grad_bias"), *results):
        assert torch.equal(row, element), what


# Inner-dim stride, padding, dilation, kernel size and output padding for
# the depthwise forward's register rows (csrc/cpu/register_rows.h): strides
# and paddings that leave phases short or uncovered at their edges.
REGISTER_ROW_LAYERS = [(1, 0, 1, 3, 0), (2, 1, 1, 4, 0), (2, 0, 2, 3, 1), (2, 3, 1, 4, 1),
                       (3, 2, 1, 5, 2)]


@pytest.mark.parametrize("isa", torch_tconv.backends.supported_cpu_isas())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layer", REGISTER_ROW_LAYERS, ids=str)
def test_register_rows_equal_element_bodies(layer, dtype, isa):
    """The direct path's float32/float64 depthwise forward sums its rows in
    vector registers (one input channel per group), its input gradient too
    (one output channel per group, rows of 8 or more), and its weight
    gradient sums every tap of a channel pair in vector lanes (any grouping);
    the others take the row bodies. The element bodies add the same terms
    one element at a time. Bit for bit, on every variant (4 to 16 lanes),
    over row widths around the lane counts (full chunks, the overlapping
    last chunk, the position-by-position edges, input rows read in place or
    copied), with a negative-zero bias (the sums must not start from +0),
    and once with mostly zero inputs, whose sums stay -0 (lanes that a term
    does not cover must add -0). A one-channel layer has fewer channels than
    threads and keeps the row bodies."""
    stride, padding, dilation, kernel, output_padding = layer
    params = dict(stride=(1, stride), padding=(1, padding), output_padding=(0, output_padding),
                  dilation=(1, dilation))
    g = torch.Generator().manual_seed(stride * 100 + kernel)
    for width in (1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 47, 64, 300):
        if (width - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding < 0:
            continue  # no output
        for in_channels, groups, out_per_group, zeros in (
                (4, 4, 2, False), (8, 4, 2, False), (4, 4, 1, False), (8, 4, 1, False),
                (1, 1, 1, False), (4, 4, 1, True)):
            x = torch.randn(2, in_channels, 3, width, generator=g, dtype=dtype)
            w = torch.randn(in_channels, out_per_group, 3, kernel, generator=g, dtype=dtype)
            if zeros:
                # Mostly +0 inputs and negative weights: many sums are -0
                # when a lane that a term does not cover is added.
                x = torch.where(torch.rand(x.shape, generator=g) < 0.7, 0.0, x)
                w = -w.abs()
            b = torch.full((groups * out_per_group,), -0.0, dtype=dtype)
            results = []
            for rows in (True, False):
                with torch_tconv.backends.flags(algorithm="direct", cpu_isa=isa,
                                                cpu_row_kernels=rows):
                    results.append(forward_and_grads(functional_forward, x, w, b,
                                                     dict(params, groups=groups))[0])
            for what, row, element in zip(("output", "grad_input", "grad_weight"), *results):
                assert torch.equal(row, element), (what, width, in_channels)
                assert torch.equal(torch.signbit(row), torch.signbit(element)), (what, width)


@pytest.mark.parametrize("isa", torch_tconv.backends.supported_cpu_isas())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layer", REGISTER_ROW_LAYERS, ids=str)
def test_depthwise_backward_in_one_pass_equals_each_gradient(layer, dtype, isa):
    """The backward op computes a depthwise layer's two gradients from one
    staging of each grad_output plane (cpu/staged_gradients.h); the input and
    weight gradient ops compute each on its own. The same bits, in every
    variant, at widths below, at and above the lane counts, against the
    float64 oracle too (the three ops could share a mistake)."""
    stride, padding, dilation, kernel, output_padding = layer
    params = dict(stride=(1, stride), padding=(1, padding), dilation=(1, dilation), groups=8)
    g = torch.Generator().manual_seed(stride * 10 + kernel)
    for width in (7, 8, 9, 17, 33, 64):
        x = torch.randn(3, 8, 4, width, generator=g, dtype=dtype)
        w = torch.randn(8, 1, 3, kernel, generator=g, dtype=dtype)
        out = torch_tconv.conv_transpose2d(x, w, None, output_padding=(0, output_padding),
                                           **params)
        gy = torch.randn(out.shape, generator=g, dtype=dtype)
        lists = [list(params[k]) for k in ("stride", "padding", "dilation")]
        with torch_tconv.backends.flags(algorithm="direct", cpu_isa=isa):
            both = ops.conv_transpose_backward(gy, x, w, *lists, 8)
            grad_input = ops.conv_transpose_input_grad(gy, w, [4, width], *lists, 8)
            grad_weight = ops.conv_transpose_weight_grad(x, gy, [3, kernel], *lists, 8)
        assert torch.equal(both[0], grad_input), width
        assert torch.equal(both[1], grad_weight), width
        expected = oracle(x, w, None, gy, output_padding=(0, output_padding), **params)
        assert_close_to(both[0], expected[1], dtype, "grad_input")
        assert_close_to(both[1], expected[2], dtype, "grad_weight")


@pytest.mark.parametrize("isa", torch_tconv.backends.supported_cpu_isas())
def test_streamed_register_rows_equal_element_bodies(isa):
    """Results of 16 MiB and more from the stride-2 register rows are written
    with streaming stores, which only whole aligned vectors take: the same
    bits as the element bodies, in every variant, at a width whose rows
    start aligned (1024) and one whose rows do not (1023)."""
    g = torch.Generator().manual_seed(7)
    for width, output_padding in ((512, 0), (511, 1)):
        x = torch.randn(1, 4, 520, width, generator=g)
        w = torch.randn(4, 1, 4, 4, generator=g)
        b = torch.full((4,), -0.0)
        params = dict(stride=2, padding=1, output_padding=output_padding, groups=4)
        results = []
        for rows in (True, False):
            with torch_tconv.backends.flags(algorithm="direct", cpu_isa=isa,
                                            cpu_row_kernels=rows), torch.no_grad():
                results.append(torch_tconv.conv_transpose2d(x, w, b, **params))
        assert results[0].nbytes >= 16 * 2**20, results[0].shape
        assert torch.equal(results[0], results[1]), width
        assert torch.equal(torch.signbit(results[0]), torch.signbit(results[1])), width


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", LAYERS_2D)
def test_fused_backward_equals_the_two_gradient_ops(name, dtype, device, algorithm,
                                                    reduced_precision_gemm):
    """conv_transpose_backward shares one im2col between both gradients; it
    must give exactly what the two gradient ops give on their own."""
    x, w, _, p = make_case(name, 3, dtype, device)
    stride, padding, dilation = (
        list(v) if isinstance(v, tuple) else [v, v]
        for v in (p.get("stride", 1), p.get("padding", 0), p.get("dilation", 1)))
    out = torch_tconv.conv_transpose2d(x, w, None, **p)
    gy = torch.randn(out.shape, dtype=torch.float64).to(device, dtype)
    args = (stride, padding, dilation, p["groups"])
    grad_input, grad_weight = ops.conv_transpose_backward(gy, x, w, *args)
    assert torch.equal(grad_input, ops.conv_transpose_input_grad(gy, w, list(x.shape[2:]), *args))
    assert torch.equal(grad_weight, ops.conv_transpose_weight_grad(x, gy, list(w.shape[2:]), *args))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_bias_grad_sums_in_opmath(dtype, device):
    """The bias gradient sums in float32 and rounds once: within half a unit
    in the last place of the exact sum (plus float32 rounding), where a sum
    kept in the input dtype would lose ~log2(terms) bits."""
    gy = (torch.rand(4, 3, 48, 40, dtype=torch.float64) + 0.5).to(device, dtype)
    exact = gy.double().sum([0, 2, 3])
    got = ops.conv_transpose_bias_grad(gy)
    ulp = torch.finfo(dtype).eps * exact.abs()
    assert got.dtype == dtype
    assert ((got.double() - exact).abs() <= 0.5 * ulp + 1e-5 * exact.abs()).all()
