"""Property-based tests: random valid layers, batch sizes (0 included),
unbatched inputs and memory layouts, against F.conv_transpose2d in float64,
for the forward and all three gradients, on every kernel path."""

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import torch_tconv
from common_utils import LAYOUTS, assert_close_to, oracle, valid_layers, with_layout

PROPERTY_SETTINGS = settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY_SETTINGS
@given(
    drawn=valid_layers(),
    layouts=st.tuples(*[st.sampled_from(LAYOUTS)] * 3),
    algorithm=st.sampled_from(["auto", "gemm", "direct", "phase"]),
    int32_indices=st.booleans(),
    element_bodies=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_float64_oracle(drawn, layouts, algorithm, int32_indices, element_bodies, seed):
    """element_bodies runs the CPU launchers on the bodies the CUDA kernels
    run, so random geometries check the GPU's index arithmetic too."""
    layer, batch, bias = drawn
    g = torch.Generator().manual_seed(seed)
    x = with_layout(torch.randn(layer.input_shape(batch), generator=g, dtype=torch.float64),
                    layouts[0])
    w = with_layout(torch.randn(layer.weight_shape(), generator=g, dtype=torch.float64), layouts[1])
    b = torch.randn(layer.out_channels, generator=g, dtype=torch.float64) if bias else None
    leaves = [t.requires_grad_() for t in (x, w, b) if t is not None]

    with torch_tconv.backends.flags(algorithm=algorithm, int32_indices=int32_indices,
                                    cpu_row_kernels=not element_bodies):
        out = torch_tconv.conv_transpose2d(x, w, b, **layer.params())
        grad_output = with_layout(torch.randn(out.shape, generator=g, dtype=torch.float64), layouts[2])
        expected = oracle(x, w, b, grad_output, **layer.params())
        assert_close_to(out, expected[0], torch.float64, "output")
        grads = torch.autograd.grad(out, leaves, grad_output, allow_unused=True)
    for name, got, want in zip(("grad_input", "grad_weight", "grad_bias"), grads, expected[1:]):
        if out.numel() == 0 and got is None:
            continue  # no path from an empty output to the leaf
        assert_close_to(got, want, torch.float64, name)
