"""Every mistake raises the exception type that torch raises for the same
mistake (so `except RuntimeError` written for F.conv_transpose2d and
nn.ConvTranspose2d keeps working), with a message naming the argument."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torch_tconv


def args(**overrides):
    base = dict(input=torch.randn(2, 4, 5, 5), weight=torch.randn(4, 3, 3, 3), bias=torch.randn(3),
                stride=1, padding=0, output_padding=0, groups=1, dilation=1)
    base.update(overrides)
    return base


# mistake -> (arguments of conv_transpose2d, the argument the message names)
FUNCTIONAL_MISTAKES = {
    "negative padding": (args(padding=-1), "padding"),
    "negative output_padding": (args(output_padding=(0, -1), stride=2), "output_padding"),
    "zero stride": (args(stride=(1, 0)), "stride"),
    "negative dilation": (args(dilation=-2), "dilation"),
    "zero groups": (args(groups=0), "groups"),
    "output_padding too large": (args(output_padding=2, stride=2), "output_padding"),
    "channels mismatch": (args(input=torch.randn(2, 5, 5, 5)), "input"),
    "groups do not divide C_in": (args(groups=3), "groups"),
    "bias wrong size": (args(bias=torch.randn(4)), "bias"),
    "input rank": (args(input=torch.randn(4, 5)), "input"),
    "weight rank": (args(weight=torch.randn(4, 3, 3)), "weight"),
    "weight dtype": (args(weight=torch.randn(4, 3, 3, 3, dtype=torch.float64)), "weight"),
    "output not positive": (args(padding=4), "padding"),
    "tuple of wrong length": (args(stride=(1, 2, 3)), "stride"),
    "padding not an int": (args(padding=1.5), "padding"),
    "stride a string": (args(stride="2"), "stride"),
    "groups not an int": (args(groups=1.0), "groups"),
    "zero spatial size": (args(input=torch.randn(2, 4, 0, 5)), "input"),
    "input not a tensor": (args(input=[1.0, 2.0]), "input"),
    "weight not a tensor": (args(weight=3), "weight"),
    "bias not a tensor": (args(bias=[1.0, 2.0, 3.0]), "bias"),
}


def raised(fn, *a, **kw):
    with pytest.raises(Exception) as info:
        fn(*a, **kw)
    return info.value


def mismatches(cases, ours, theirs):
    """The cases where our exception is not an instance of torch's type, or
    its message does not name the argument."""
    found = []
    for mistake, (call_args, argument) in sorted(cases.items()):
        theirs_error = raised(theirs, **call_args)
        ours_error = raised(ours, **call_args)
        if not isinstance(ours_error, type(theirs_error)) or argument not in str(ours_error):
            found.append(f"{mistake}: torch raises {type(theirs_error).__name__}, we raise {ours_error!r}")
    return found


def test_functional_raises_torchs_types():
    assert mismatches(FUNCTIONAL_MISTAKES, torch_tconv.conv_transpose2d, F.conv_transpose2d) == []


MODULE_MISTAKES = {
    "output_size out of range": (dict(output_size=[13, 13]), "output size"),
    "output_size too small": (dict(output_size=[8, 9]), "output size"),
    "output_size of the wrong length": (dict(output_size=[10]), "output_size"),
    "channels mismatch": (dict(input=torch.randn(1, 3, 5, 5)), "input"),
    "input rank": (dict(input=torch.randn(5, 5)), "input"),
}


def test_module_raises_torchs_types():
    torch.manual_seed(0)
    ours_layer = torch_tconv.ConvTranspose2d(4, 2, 3, stride=2)
    theirs_layer = nn.ConvTranspose2d(4, 2, 3, stride=2)
    x = torch.randn(1, 4, 5, 5)
    cases = {name: (dict(dict(input=x), **call_args), argument)
             for name, (call_args, argument) in MODULE_MISTAKES.items()}
    assert mismatches(cases, ours_layer, theirs_layer) == []


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_bias_of_another_dtype_is_cast(dtype):
    """F.conv_transpose2d accepts a bias of another floating dtype with a
    float64 input (and with unbatched input on the CPU): the bias is cast to
    the input's dtype. We accept it for every input, the gradient flowing
    back in the bias's own dtype."""
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    b = torch.randn(3, dtype=dtype, requires_grad=True)
    out = torch_tconv.conv_transpose2d(x, w, b, stride=2)
    expected = F.conv_transpose2d(x, w, b, stride=2)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, expected)
    (grad,) = torch.autograd.grad(out.sum(), b)
    assert grad.dtype == dtype
