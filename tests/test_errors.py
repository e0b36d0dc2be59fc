"""Every input that F.conv_transpose2d rejects raises a Python exception whose
message names the argument and its value; nothing crashes or returns garbage."""

import pytest
import torch
import torch.nn.functional as F

import torch_tconv

ops = torch.ops.torch_tconv


def args(**overrides):
    base = dict(
        input=torch.randn(2, 4, 5, 5),
        weight=torch.randn(4, 3, 3, 3),
        bias=torch.randn(3),
        stride=1, padding=0, output_padding=0, groups=1, dilation=1,
    )
    base.update(overrides)
    return base


BAD_INPUTS = {
    "negative padding": (args(padding=-1), RuntimeError, r"padding must be non-negative, got padding=\(-1, -1\)"),
    "negative output_padding": (args(output_padding=(0, -1), stride=2), RuntimeError,
                                r"output_padding must be non-negative, got output_padding=\(0, -1\)"),
    "zero stride": (args(stride=(1, 0)), RuntimeError, r"stride must be positive, got stride=\(1, 0\)"),
    "negative dilation": (args(dilation=-2), RuntimeError, r"dilation must be positive, got dilation=\(-2, -2\)"),
    "zero groups": (args(groups=0), RuntimeError, "groups must be positive and smaller than 2\\^31, got groups=0"),
    "output_padding too large": (args(output_padding=2, stride=2, dilation=2), RuntimeError,
                                 r"output_padding must be smaller than stride or dilation.*"
                                 r"output_padding=\(2, 2\) with stride=\(2, 2\) and dilation=\(2, 2\)"),
    "channels mismatch": (args(input=torch.randn(2, 5, 5, 5)), RuntimeError,
                          r"input has 5 channels but weight.shape\[0\] \(C_in\) is 4"),
    "groups do not divide C_in": (args(groups=3), RuntimeError,
                                  r"weight.shape\[0\] \(C_in = 4\) must be divisible by groups=3"),
    "bias wrong size": (args(bias=torch.randn(4)), RuntimeError,
                        r"bias must be a 1-D tensor of size C_out = weight.shape\[1\] \* groups = 3, "
                        r"got bias of shape \[4\]"),
    "bias wrong rank": (args(bias=torch.randn(3, 1)), RuntimeError, r"got bias of shape \[3, 1\]"),
    "input rank too small": (args(input=torch.randn(4, 5)), RuntimeError,
                             r"expected input to be 3-D \(unbatched\) or 4-D \(batched\), got input of shape \[4, 5\]"),
    "input rank too large": (args(input=torch.randn(1, 2, 4, 5, 5)), RuntimeError,
                             r"expected input to be 3-D \(unbatched\) or 4-D \(batched\)"),
    "weight rank": (args(weight=torch.randn(4, 3, 3)), RuntimeError,
                    r"expected weight to be 4-D.*got weight of shape \(4, 3, 3\)"),
    "dtype mismatch input/weight": (args(weight=torch.randn(4, 3, 3, 3, dtype=torch.float64)), RuntimeError,
                                    "input and weight must have the same dtype, got input of dtype Float "
                                    "and weight of dtype Double"),
    "bias not floating": (args(bias=torch.ones(3, dtype=torch.int64)), RuntimeError,
                          "bias must be float32, float64, float16 or bfloat16, got bias of dtype Long"),
    "output size not positive": (args(padding=4), RuntimeError,
                                 r"the output would have size \(-1, -1\), which is not positive"),
    "tuple of wrong length": (args(stride=(1, 2, 3)), RuntimeError,
                              r"stride must be an int or a tuple of 2 ints, got stride=\(1, 2, 3\)"),
    "padding not an int": (args(padding=1.5), TypeError, r"padding must be an int or a tuple of 2 ints"),
    "zero spatial size": (args(input=torch.randn(2, 4, 0, 5)), RuntimeError,
                          "expected input to have non-zero spatial sizes"),
    "input not a tensor": (args(input=[1.0, 2.0]), TypeError, "input must be a Tensor, got list"),
}


# Dtypes that PyTorch's CPU kernel accepts but this library does not support:
# a clear error instead of a result.
UNSUPPORTED_DTYPES = {
    "integer dtype": (args(input=torch.ones(2, 4, 5, 5, dtype=torch.int64),
                           weight=torch.ones(4, 3, 3, 3, dtype=torch.int64), bias=None), RuntimeError,
                      "input must be float32, float64, float16 or bfloat16, got input of dtype Long"),
    "complex dtype": (args(input=torch.randn(2, 4, 5, 5, dtype=torch.complex64),
                           weight=torch.randn(4, 3, 3, 3, dtype=torch.complex64), bias=None), RuntimeError,
                      "got input of dtype ComplexFloat"),
}


# Parameters of 2^31 and more. PyTorch does not refuse them all: with stride
# 2^31 it tries to allocate terabytes, which some machines grant until the
# process is killed, so these are never handed to F.conv_transpose2d.
OUT_OF_RANGE = {
    "stride beyond int32": (args(stride=(2**31, 1)), RuntimeError,
                            r"stride must be smaller than 2\^31, got stride=\(2147483648, 1\)"),
    "groups beyond int32": (args(groups=2**40), RuntimeError,
                            "groups must be positive and smaller than 2\\^31, got groups=1099511627776"),
}
OUR_ERRORS = {**BAD_INPUTS, **UNSUPPORTED_DTYPES, **OUT_OF_RANGE}


@pytest.mark.parametrize("case", sorted(OUR_ERRORS))
def test_bad_input_raises_clear_error(case):
    kwargs, error, match = OUR_ERRORS[case]
    with pytest.raises(error, match=match):
        torch_tconv.conv_transpose2d(**kwargs)


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_torch_rejects_the_same_inputs(case):
    """Our error cases are inputs that PyTorch also refuses: we add clarity,
    not restrictions."""
    kwargs, _, _ = BAD_INPUTS[case]
    with pytest.raises((RuntimeError, ValueError, TypeError)):
        F.conv_transpose2d(**kwargs)


def test_ops_called_directly_validate():
    x, w = torch.randn(2, 4, 5, 5), torch.randn(4, 3, 3, 3)
    with pytest.raises(RuntimeError, match=r"stride must have 2 values .* got stride=\(1,\)"):
        ops.conv_transpose(x, w, None, [1], [0, 0], [0, 0], [1, 1], 1)
    with pytest.raises(ValueError, match=r"conv_transpose2d input gradient: output size \(7, 7\) "
                                         r"cannot be produced from input size \(9, 5\)"):
        ops.conv_transpose_input_grad(torch.randn(2, 3, 7, 7), w, [9, 5], [1, 1], [0, 0], [1, 1], 1)
    with pytest.raises(RuntimeError, match="grad_output has 2 channels but weight.shape\\[1\\] \\* groups"):
        ops.conv_transpose_input_grad(torch.randn(2, 2, 7, 7), w, [5, 5], [1, 1], [0, 0], [1, 1], 1)
    with pytest.raises(RuntimeError, match="input and grad_output must have the same batch size"):
        ops.conv_transpose_weight_grad(x, torch.randn(3, 3, 7, 7), [3, 3], [1, 1], [0, 0], [1, 1], 1)
    with pytest.raises(RuntimeError, match=r"kernel sizes must be positive, got kernel_size=\(0, 3\)"):
        ops.conv_transpose_weight_grad(x, torch.randn(2, 3, 7, 7), [0, 3], [1, 1], [0, 0], [1, 1], 1)
    gy = torch.randn(2, 3, 7, 7)
    with pytest.raises(RuntimeError, match=r"conv_transpose2d backward: input has 5 channels but "
                                         r"weight.shape\[0\] \(C_in\) is 4"):
        ops.conv_transpose_backward(gy, torch.randn(2, 5, 5, 5), w, [1, 1], [0, 0], [1, 1], 1)
    with pytest.raises(RuntimeError, match="input and grad_output must have the same batch size"):
        ops.conv_transpose_backward(gy, torch.randn(3, 4, 5, 5), w, [1, 1], [0, 0], [1, 1], 1)
    with pytest.raises(ValueError, match=r"output size \(7, 7\) cannot be produced from input size \(6, 5\)"):
        ops.conv_transpose_backward(gy, torch.randn(2, 4, 6, 5), w, [1, 1], [0, 0], [1, 1], 1)
    with pytest.raises(RuntimeError, match=r"bias gradient: grad_output must be 3-D, 4-D or 5-D, .* "
                                         r"got grad_output of shape \[3, 7\]"):
        ops.conv_transpose_bias_grad(torch.randn(3, 7))
    with pytest.raises(RuntimeError, match="grad_output must be float32, float64, float16 or bfloat16"):
        ops.conv_transpose_bias_grad(torch.ones(2, 3, 4, dtype=torch.int64))


def test_mixed_devices_rejected_on_meta():
    """Device agreement is checked before any kernel runs (meta stands in for
    a second device on machines without a GPU)."""
    with pytest.raises(RuntimeError, match="input and weight must be on the same device"):
        ops.conv_transpose(torch.randn(1, 4, 5, 5), torch.randn(4, 3, 3, 3, device="meta"),
                           None, [1, 1], [0, 0], [0, 0], [1, 1], 1)


@pytest.mark.cuda
def test_mixed_cpu_cuda_rejected():
    with pytest.raises(RuntimeError, match="must be on the same device"):
        torch_tconv.conv_transpose2d(torch.randn(1, 4, 5, 5, device="cuda"), torch.randn(4, 3, 3, 3))


def test_output_too_large_to_count():
    """Dilations just under 2^31 on every dim of a 3-D layer would give an
    output of more than 2^63 elements: refused before any allocation."""
    x, w = torch.randn(1, 1, 2, 2, 2), torch.randn(1, 1, 2, 2, 2)
    big = 2**31 - 1
    with pytest.raises(RuntimeError, match="too many elements to count in 64 bits"):
        ops.conv_transpose(x, w, None, [1, 1, 1], [0, 0, 0], [0, 0, 0], [big, big, big], 1)
