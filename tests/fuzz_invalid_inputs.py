"""Fuzzes torch_tconv.conv_transpose2d with mostly invalid arguments.

Run as a script (`python tests/fuzz_invalid_inputs.py EXAMPLES`) in its own
process by test_invalid_inputs.py, so that a crash fails that test instead of
killing pytest. Each example is judged against F.conv_transpose2d:
  * if we raise, it is a Python exception whose message names an argument;
  * if we return, torch returned too, and the results agree (NaN and Inf in the
    same places).
Exits 0 when every example passed; hypothesis prints the first failure.
"""

import os
import resource
import sys

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from common_utils import valid_layers

import torch_tconv

# What an error message must mention (one of them): the arguments by name.
ARGUMENT_WORDS = ("input", "weight", "bias", "stride", "padding", "output_padding", "dilation",
                  "groups", "output size", "kernel")
# A refused allocation is not a bad argument; it must still be an exception.
ALLOCATION_WORDS = ("can't allocate memory", "out of memory")

HUGE = [2**31, 2**40, 2**62, -(2**62)]
numbers = st.one_of(st.integers(-2, 4), st.sampled_from(HUGE))
params = st.one_of(
    numbers,
    st.tuples(numbers, numbers),
    st.tuples(numbers),
    st.tuples(numbers, numbers, numbers),
    st.sampled_from([1.5, "1", None]),
)
dtypes = st.sampled_from([torch.float32] * 6 + [torch.float64, torch.float16, torch.bfloat16,
                                               torch.int64, torch.int32, torch.complex64, torch.bool])


def tensor(shape, dtype, special=False):
    """Random values of any dtype, with NaN/Inf sprinkled in when asked."""
    if dtype.is_complex:
        return torch.randn(shape, dtype=dtype)
    if dtype == torch.bool:
        return torch.rand(shape) > 0.5
    if not dtype.is_floating_point:
        return torch.randint(-3, 4, shape, dtype=dtype)
    t = torch.randn(shape, dtype=torch.float64).to(dtype)
    return inject_special(t) if special else t


def retype(tensor, dtype):
    return tensor if tensor is None else globals()["tensor"](list(tensor.shape), dtype, False)


# Ways to spoil a valid call; each takes (draw, kwargs) and edits kwargs.
MUTATIONS = {
    "input rank": lambda draw, kw: kw.update(input=tensor(
        draw(st.lists(st.integers(1, 4), min_size=1, max_size=6)), kw["input"].dtype, False)),
    "weight rank": lambda draw, kw: kw.update(weight=tensor(
        draw(st.lists(st.integers(1, 4), min_size=1, max_size=6)), kw["weight"].dtype, False)),
    "input channels": lambda draw, kw: kw.update(input=tensor(
        [*kw["input"].shape[:-3], draw(st.integers(0, 7)), *kw["input"].shape[-2:]],
        kw["input"].dtype, False)),
    "weight shape": lambda draw, kw: kw.update(weight=tensor(
        [draw(st.integers(0, 7)), draw(st.integers(0, 3)), draw(st.integers(0, 4)), draw(st.integers(0, 4))],
        kw["weight"].dtype, False)),
    "zero spatial size": lambda draw, kw: kw.update(input=tensor(
        [*kw["input"].shape[:-1], 0], kw["input"].dtype, False)),
    "bias": lambda draw, kw: kw.update(bias=tensor(
        draw(st.lists(st.integers(0, 7), min_size=0, max_size=2)), kw["weight"].dtype, False)),
    "input dtype": lambda draw, kw: kw.update(input=retype(kw["input"], draw(dtypes))),
    "weight dtype": lambda draw, kw: kw.update(weight=retype(kw["weight"], draw(dtypes))),
    "bias dtype": lambda draw, kw: kw.update(bias=retype(kw.get("bias"), draw(dtypes))),
    "all dtypes": lambda draw, kw: (lambda d: kw.update(
        input=retype(kw["input"], d), weight=retype(kw["weight"], d),
        bias=retype(kw.get("bias"), d)))(draw(dtypes)),
    "stride": lambda draw, kw: kw.update(stride=draw(params)),
    "padding": lambda draw, kw: kw.update(padding=draw(params)),
    "output_padding": lambda draw, kw: kw.update(output_padding=draw(params)),
    "dilation": lambda draw, kw: kw.update(dilation=draw(params)),
    "groups": lambda draw, kw: kw.update(groups=draw(st.one_of(numbers, st.sampled_from([1.0, None])))),
    "NaN and Inf": lambda draw, kw: kw.update(input=inject_special(kw["input"]),
                                              weight=inject_special(kw["weight"])),
}


if torch.cuda.is_available():
    # Where a GPU exists: one tensor moved to it, the others left on the CPU.
    MUTATIONS["mixed devices"] = lambda draw, kw: kw.update(
        **{name: kw[name].cuda() for name in [draw(st.sampled_from(["input", "weight", "bias"]))]
           if kw.get(name) is not None})


def inject_special(t):
    if not t.dtype.is_floating_point or t.numel() == 0:
        return t
    t = t.clone()
    flat = t.view(-1)
    for value in (float("nan"), float("inf"), -float("inf")):
        flat[torch.randint(0, flat.numel(), ())] = value
    return t


@st.composite
def calls(draw):
    """A valid layer call, spoiled by up to three mutations (none at times)."""
    layer, batch, bias = draw(valid_layers())
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    kwargs = dict(input=tensor(list(layer.input_shape(batch)), dtype, False),
                  weight=tensor(list(layer.weight_shape()), dtype, False), **layer.params())
    if bias:
        kwargs["bias"] = tensor([layer.out_channels], dtype, False)
    for name in draw(st.lists(st.sampled_from(sorted(MUTATIONS)), max_size=3)):
        MUTATIONS[name](draw, kwargs)
    return kwargs


def run(fn, kwargs):
    try:
        return fn(**kwargs), None
    except Exception as error:  # noqa: BLE001 - every exception is judged below
        return None, error


def describe(kwargs):
    return {k: (f"tensor{tuple(v.shape)} {v.dtype}" if isinstance(v, torch.Tensor) else v)
            for k, v in kwargs.items()}


def check(kwargs):
    expected, torch_error = run(F.conv_transpose2d, kwargs)
    out, error = run(torch_tconv.conv_transpose2d, kwargs)
    context = f"arguments {describe(kwargs)}; torch: {torch_error!r}"
    if error is not None:
        assert isinstance(error, (RuntimeError, ValueError, TypeError)), f"{error!r} for {context}"
        message = str(error)
        assert any(word in message for word in ARGUMENT_WORDS + ALLOCATION_WORDS), \
            f"message names no argument: {message!r} for {context}"
        return
    assert torch_error is None, f"accepted what torch rejects: {context}"
    assert out.shape == expected.shape and out.dtype == expected.dtype, context
    ours, theirs = out.double(), expected.double()
    assert torch.equal(ours.isnan(), theirs.isnan()), f"NaN positions differ: {context}"
    assert torch.equal(ours.isinf(), theirs.isinf()), f"Inf positions differ: {context}"
    finite = ours.isfinite()
    tol = {torch.float64: 1e-9, torch.float32: 1e-4}.get(out.dtype, 3e-2)
    scale = theirs[finite].abs().max().item() if finite.any() else 1.0
    torch.testing.assert_close(ours[finite], theirs[finite], rtol=tol, atol=tol * max(scale, 1.0),
                               msg=lambda m: f"{m} for {context}")
    assert torch.equal(ours.isinf() & (ours > 0), theirs.isinf() & (theirs > 0)), context


def main(examples):
    # Huge sizes must fail as exceptions, not by exhausting the machine. Under
    # AddressSanitizer, which reserves terabytes of address space, its own
    # max_allocation_size_mb does this job instead (scripts/sanitize.sh).
    if "libasan" not in os.environ.get("LD_PRELOAD", ""):
        limit = 6 << 30
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True)
    @given(calls())
    def fuzz(kwargs):
        check(kwargs)

    fuzz()
    print(f"{examples} examples passed")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
