"""The column workspace is bounded by chunking: whole samples per chunk, or
windows of one sample's input rows when a single sample is over the budget,
or windows of part of a row when one row alone is (a long 1-D signal).
Windows must not change col2im's sums by a single bit, and every gradient must
still match the float64 oracle. The window tests run on each backend: the
CPU's row bodies, the CPU launchers on the element bodies (the CUDA kernels'
arithmetic), and CUDA; and with contiguous and channels-last activations,
which the CPU runs as they are over position-major columns."""

import pytest
import torch
import torch.nn.functional as F

import torch_tconv
from common_utils import REFERENCE, assert_close_to, forward_op, layer_names, make_case

ops = torch.ops.torch_tconv
_C = torch_tconv._C

# Layers of more than two spatial dims, or longer, for windows in 1-D and 3-D.
OTHER_RANKS = ["1d_long", "3d_larger", "3d_strided_dilated"]


CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


@pytest.fixture(params=["contiguous", "channels_last"])
def activation_format(request):
    return request.param


def in_format(t, activation_format):
    """t in the activation format; channels-last exists for 2-D and 3-D only."""
    if activation_format == "contiguous":
        return t.contiguous()
    if t.dim() not in CHANNELS_LAST:
        pytest.skip("torch has no channels-last format for 1-D activations")
    return t.contiguous(memory_format=CHANNELS_LAST[t.dim()])


def check_columns_layout(x):
    """The CPU runs channels-last activations as they are (position-major
    columns); CUDA makes them contiguous. A tensor that is both (one channel,
    or one pixel) counts as contiguous."""
    assert _C.last_columns_position_major() == (x.is_cpu and not x.is_contiguous())


def layer(name, dtype, batch=2, one_input_channel_per_group=False, device="cpu",
          activation_format="contiguous"):
    """A layer of the common table; optionally cut to one input channel per
    group, which makes the GEMM a single product per entry and so exact
    whatever its blocking."""
    x, w, b, p = make_case(name, batch, dtype, "cpu", seed=5)
    if one_input_channel_per_group:
        per_group = x.shape[1] // p["groups"]
        x, w = x[:, ::per_group].contiguous(), w[::per_group].contiguous()
    return in_format(x.to(device), activation_format), w.to(device), b.to(device), p


forward = forward_op


def column_bytes_per_outer_row(x, w, p, dtype):
    """Column-buffer bytes of one outer input row (all of the innermost dim)."""
    c_out = w.shape[1] * p["groups"]
    taps = w[0, 0].numel()
    column_dtype = dtype
    if x.is_cpu and dtype == torch.bfloat16 and torch_tconv.backends.cpu_reduced_precision_gemm == "never":
        column_dtype = torch.float32
    element = torch.finfo(column_dtype).bits // 8
    return c_out * taps * x.shape[-1] * element


def budgets(x, w, p, dtype):
    """Budgets that force windows: one input position (windows of part of a
    row), two positions, three rows, and one plane of the outermost spatial
    dim plus a row (whole planes per window in 3-D)."""
    row = column_bytes_per_outer_row(x, w, p, dtype)
    plane = x.shape[-2] if x.dim() == 5 else 1
    position = row // x.shape[-1]
    return {"one_position": 1, "two_positions": 2 * position, "three_rows": 3 * row,
            "plane_and_a_row": (plane + 1) * row}


@pytest.fixture
def gemm_path():
    with torch_tconv.backends.flags(algorithm="gemm"):
        yield


WINDOWED = sorted(set(layer_names(2)) - {"depthwise", "depthwise_multiplier"}) + OTHER_RANKS


@pytest.fixture(params=["cpu-rows", "cpu-elements", pytest.param("cuda", marks=pytest.mark.cuda)])
def backend(request):
    """The device to run on; on the CPU, with the row bodies or with the
    element bodies that the CUDA kernels run."""
    with torch_tconv.backends.flags(cpu_row_kernels=request.param != "cpu-elements"):
        yield request.param.split("-")[0]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", layer_names(2) + OTHER_RANKS)
def test_windows_leave_col2im_bitwise_unchanged(name, dtype, backend, gemm_path,
                                                reduced_precision_gemm, activation_format):
    """Windows are added last first, so each output element gets its taps in
    the order of one col2im over the whole sample. The GEMM's own rounding
    depends on its blocking (MKL's results change with the column count), so
    the layer has one input channel per group: then every column entry is a
    single, exactly rounded product and only col2im's order could differ.
    Channels-last activations give the contiguous ones' bits too."""
    if backend == "cuda" and reduced_precision_gemm == "never":
        pytest.skip("the CPU's GEMM dtype choice does not apply to CUDA")
    x, w, b, p = layer(name, dtype, one_input_channel_per_group=True, device=backend,
                       activation_format=activation_format)
    whole = forward(x, w, b, p)
    check_columns_layout(x)
    assert torch.equal(whole, forward(x.contiguous(), w, b, p))
    for label, budget in budgets(x, w, p, dtype).items():
        torch_tconv.backends.column_budget_bytes = budget
        windowed = forward(x, w, b, p)
        check_columns_layout(x)
        assert windowed.stride() == whole.stride()
        assert _C.last_column_workspace_bytes() <= max(budget, column_bytes_per_outer_row(x, w, p, dtype))
        assert torch.equal(windowed, whole), (label, (windowed - whole).abs().max())
        unbiased = forward(x, w, None, p)
        torch_tconv.backends.column_budget_bytes = 1 << 40
        assert torch.equal(unbiased, forward(x, w, None, p)), label


@pytest.mark.parametrize("name", WINDOWED)
def test_windows_match_the_oracle_with_gradients(name, backend, activation_format):
    x, w, b, p = layer(name, torch.float64, batch=3)
    reference = REFERENCE[w.dim() - 2]
    oracle_leaves = [t.requires_grad_() for t in (x, w, b)]
    expected = reference(*oracle_leaves, **p)
    gy = torch.randn(expected.shape, dtype=expected.dtype)
    want = torch.autograd.grad(expected, oracle_leaves, gy)
    leaves = [in_format(x.detach(), activation_format).to(backend).requires_grad_(),
              w.detach().to(backend).requires_grad_(), b.detach().to(backend).requires_grad_()]
    gy = in_format(gy, activation_format).to(backend)
    for label, budget in budgets(x, w, p, torch.float64).items():
        torch_tconv.backends.column_budget_bytes = budget
        out = forward(*leaves, p)
        check_columns_layout(leaves[0])
        assert_close_to(out, expected, torch.float64, f"output ({label})")
        got = torch.autograd.grad(out, leaves, gy)
        check_columns_layout(gy)  # the backward follows grad_output
        for what, g, e in zip(("grad_input", "grad_weight", "grad_bias"), got, want):
            assert_close_to(g, e, torch.float64, f"{what} ({label})")


def test_workspace_is_bounded_whatever_the_image_size(backend):
    """One sample whose columns are far over the budget runs in windows whose
    workspace stays within it."""
    budget = 256 << 10
    torch_tconv.backends.column_budget_bytes = budget
    x = torch.randn(1, 4, 96, 80, device=backend)
    w = torch.randn(4, 8, 4, 4, device=backend)
    per_sample = 8 * 16 * 96 * 80 * 4
    assert per_sample > 10 * budget
    out = torch_tconv.conv_transpose2d(x, w, stride=2, padding=1)
    assert _C.last_column_workspace_bytes() <= budget
    # The reference on the CPU: cuDNN would round through TF32 by default.
    expected = F.conv_transpose2d(x.cpu(), w.cpu(), stride=2, padding=1)
    torch.testing.assert_close(out.cpu(), expected, rtol=1e-5, atol=1e-4)
    gy = torch.randn_like(out)
    ops.conv_transpose_input_grad(gy, w, [96, 80], [2, 2], [1, 1], [1, 1], 1)
    assert _C.last_column_workspace_bytes() <= budget
    ops.conv_transpose_weight_grad(x, gy, [4, 4], [2, 2], [1, 1], [1, 1], 1)
    assert _C.last_column_workspace_bytes() <= budget


@pytest.mark.parametrize("dims", [1, 2])
def test_a_long_signal_runs_in_bounded_memory(dims, backend):
    """A vocoder layer (k16 s8) on a long signal, or one very wide image row:
    one row alone is far over the budget, so windows take part of it; the
    workspace stays within the budget for the forward and both gradients."""
    budget = 32 << 10
    torch_tconv.backends.column_budget_bytes = budget
    length = 3000
    g = torch.Generator().manual_seed(0)
    shape = (1, 16, length) if dims == 1 else (1, 16, 1, length)
    kernel = (16,) if dims == 1 else (1, 16)
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(backend)
    w = torch.randn(16, 8, *kernel, generator=g, dtype=torch.float64).to(backend)
    b = torch.randn(8, generator=g, dtype=torch.float64).to(backend)
    lead = (1,) * (dims - 1)  # a single row in 2-D
    p = dict(stride=lead + (8,), padding=(0,) * (dims - 1) + (4,), output_padding=(0,) * dims,
             dilation=(1,) * dims, groups=1)
    assert 8 * 16 * length * 8 > 50 * budget
    leaves = [t.requires_grad_() for t in (x, w, b)]
    out = forward(*leaves, p)
    assert _C.last_column_workspace_bytes() <= budget
    gy = torch.randn(out.shape, generator=g, dtype=torch.float64).to(backend)
    got = torch.autograd.grad(out, leaves, gy)
    oracle_leaves = [t.detach().cpu().requires_grad_() for t in (x, w, b)]
    expected = REFERENCE[dims](*oracle_leaves, **p)
    assert_close_to(out, expected, torch.float64, "output")
    want = torch.autograd.grad(expected, oracle_leaves, gy.cpu())
    for what, actual, e in zip(("grad_input", "grad_weight", "grad_bias"), got, want):
        assert_close_to(actual, e, torch.float64, what)
    ops.conv_transpose_weight_grad(x.detach(), gy, list(kernel), list(p["stride"]),
                                   list(p["padding"]), list(p["dilation"]), 1)
    assert _C.last_column_workspace_bytes() <= budget


@pytest.mark.parametrize("name", ["dcgan_k4s2p1", "grouped", "3d"])
def test_parallel_lanes(name, activation_format):
    """With several threads, the CPU runs whole chunks in parallel, one lane
    per thread, each with serial GEMMs and its own partial weight gradient.
    The result must match the oracle, repeat bit for bit, and keep autograd
    out of the worker threads (inputs requiring grad)."""
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        x, w, b, p = layer(name, torch.float64, batch=7, activation_format=activation_format)
        leaves = [t.requires_grad_() for t in (x, w, b)]
        expected = REFERENCE[w.dim() - 2](*leaves, **p)
        gy = in_format(torch.randn(expected.shape, dtype=expected.dtype), activation_format)
        want = torch.autograd.grad(expected, leaves, gy)
        runs = []
        for _ in range(3):
            out = forward(*leaves, p)
            runs.append((out, *torch.autograd.grad(out, leaves, gy)))
        assert _C.last_column_workspace_bytes() > 0
        check_columns_layout(x)
        for got, e, what in zip(runs[0], (expected, *want), ("output", "grad_input", "grad_weight", "grad_bias")):
            assert_close_to(got, e, torch.float64, what)
        for run in runs[1:]:
            assert all(torch.equal(a, b_) for a, b_ in zip(runs[0], run))
    finally:
        torch.set_num_threads(previous)


def test_a_narrow_weight_gradient_holds_one_float32_sum():
    """A bfloat16 weight gradient over bfloat16 columns sums its chunks in
    float32. Its tensors at any time: that one sum (no lanes, even with two
    threads and room in the budget: each lane would add a sum), the columns,
    and one chunk's bfloat16 product (half a sum), added a few rows at a time
    (adding it whole widened all of it to float32 first: a second sum)."""
    from torch_tconv.bench import cpu_allocated_peak_mb
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        torch_tconv.backends.cpu_reduced_precision_gemm = "always"
        g = torch.Generator().manual_seed(0)
        x = torch.randn(4, 128, 6, 6, generator=g).to(torch.bfloat16)
        gy = torch.randn(4, 128, 12, 12, generator=g).to(torch.bfloat16)
        args = ([4, 4], [2, 2], [1, 1], [1, 1], 1)
        sum_mb = 128 * 128 * 16 * 4 / 2**20
        # Many chunks; then a budget of one sum, where float32 columns would
        # run in lanes.
        for budget_mb, bound_mb in ((1 / 16, 1.75 * sum_mb + 1 / 16), (sum_mb, 2.75 * sum_mb)):
            torch_tconv.backends.column_budget_bytes = int(budget_mb * 2**20)
            got = ops.conv_transpose_weight_grad(x, gy, *args)
            assert _C.last_column_workspace_bytes() <= budget_mb * 2**20
            peak = cpu_allocated_peak_mb(lambda _: ops.conv_transpose_weight_grad(x, gy, *args),
                                         None)
            assert peak < bound_mb, (budget_mb, peak, bound_mb)
            w = torch.zeros(128, 128, 4, 4, dtype=torch.float64, requires_grad=True)
            out = F.conv_transpose2d(x.double(), w, stride=2, padding=1)
            (want,) = torch.autograd.grad(out, w, gy.double())
            assert_close_to(got, want, torch.bfloat16, "grad_weight")
    finally:
        torch.set_num_threads(previous)


# Contiguous forwards with short output rows and many channels per group use
# position-major columns (plan.cpp): col2im then adds runs of channels.
SHORT_ROWS = {
    "dcgan_k4s2p1": dict(stride=(2, 2), padding=(1, 1), output_padding=(0, 0), dilation=(1, 1),
                         groups=1),
    "decoder_k3s2p1op1": dict(stride=(2, 2), padding=(1, 1), output_padding=(1, 1),
                              dilation=(1, 1), groups=1),
    "grouped_dilated": dict(stride=(2, 3), padding=(1, 0), output_padding=(1, 2), dilation=(1, 2),
                            groups=2),
}


def short_row_layer(name, in_per_group, dtype, seed=0):
    p = SHORT_ROWS[name]
    g = torch.Generator().manual_seed(seed)
    groups = p["groups"]
    x = torch.randn(3, in_per_group * groups, 5, 6, generator=g, dtype=torch.float64).to(dtype)
    w = torch.randn(in_per_group * groups, 40, 3, 4, generator=g, dtype=torch.float64).to(dtype)
    b = torch.randn(40 * groups, generator=g, dtype=torch.float64).to(dtype)
    return x, w, b, p


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", list(SHORT_ROWS))
def test_short_rows_use_position_major_columns_with_the_same_bits(name, dtype, gemm_path,
                                                                  reduced_precision_gemm):
    """One input channel per group, so that every column entry is one exact
    product: position-major columns must then give the channel-major path's
    bits (a tiny budget forces windows, which keep channel-major columns)."""
    x, w, b, p = short_row_layer(name, 1, dtype)
    out = forward(x, w, b, p)
    assert _C.last_columns_position_major()
    torch_tconv.backends.column_budget_bytes = 64
    windowed = forward(x, w, b, p)
    assert not _C.last_columns_position_major()
    assert torch.equal(out, windowed), (out.double() - windowed.double()).abs().max()


@pytest.mark.parametrize("name", list(SHORT_ROWS))
def test_short_rows_match_the_oracle(name, gemm_path):
    x, w, b, p = short_row_layer(name, 7, torch.float64, seed=1)
    leaves = [t.requires_grad_() for t in (x, w, b)]
    out = forward(*leaves, p)
    assert _C.last_columns_position_major()
    expected = REFERENCE[2](*leaves, **p)
    assert_close_to(out, expected, torch.float64, "output")
    gy = torch.randn_like(expected)
    for what, got, want in zip(("grad_input", "grad_weight", "grad_bias"),
                               torch.autograd.grad(out, leaves, gy),
                               torch.autograd.grad(expected, leaves, gy)):
        assert_close_to(got, want, torch.float64, what)


def test_the_cpu_forward_of_few_positions_takes_bigger_chunks():
    """Each chunk's GEMM packs the whole weight again, so the CPU forward's
    chunks hold the columns of 1024 input positions, up to 4x the budget
    that the gradients keep: a 16x16 VAE layer with k4 (16 KiB of columns
    per position) then runs 4 samples of 256 positions per GEMM, not 1; a
    layer of 1024 positions per sample keeps one sample per chunk; and a
    budget the user sets still bounds the forward. (GEMM + col2im asked
    for: "auto" runs the first layer, of short output lines, on the
    register-blocked tiles.)"""
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        torch_tconv.backends.algorithm = "gemm"
        g = torch.Generator().manual_seed(3)
        x = torch.randn(8, 8, 16, 16, generator=g)
        w = torch.randn(8, 256, 4, 4, generator=g)
        b = torch.randn(256, generator=g)
        per_sample = 256 * 256 * 16 * 4  # positions x (C_out x taps) x float32
        out = torch_tconv.conv_transpose2d(x, w, b, stride=2, padding=1)
        assert _C.last_column_workspace_bytes() == 4 * per_sample
        expected = F.conv_transpose2d(x.double(), w.double(), b.double(), stride=2, padding=1)
        assert_close_to(out, expected, torch.float32, "output")
        gy = torch.randn(out.shape, generator=g)
        ops.conv_transpose_input_grad(gy, w, [16, 16], [2, 2], [1, 1], [1, 1], 1)
        assert _C.last_column_workspace_bytes() == per_sample
        ops.conv_transpose_weight_grad(x, gy, [4, 4], [2, 2], [1, 1], [1, 1], 1)
        assert _C.last_column_workspace_bytes() == per_sample
        # 32x32: 1024 positions per sample, 2.25 MiB of columns each (k3, 64
        # channels), within the 4 MiB budget as before.
        x2 = torch.randn(4, 8, 32, 32, generator=g)
        w2 = torch.randn(8, 64, 3, 3, generator=g)
        torch_tconv.conv_transpose2d(x2, w2, stride=2, padding=1, output_padding=1)
        assert _C.last_column_workspace_bytes() == 1024 * 64 * 9 * 4
        torch_tconv.backends.column_budget_bytes = per_sample
        torch_tconv.conv_transpose2d(x, w, b, stride=2, padding=1)
        assert _C.last_column_workspace_bytes() == per_sample
    finally:
        torch.set_num_threads(previous)
