"""Forward-mode AD of every op against F.conv_transpose2d in float64:
forward_ad dual tensors, torch.func.jvp, jacfwd and linearize, with tangents
on every combination of arguments, and forward-over-reverse and
reverse-over-forward Hessian-vector products."""

import itertools

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch.func import grad, jacfwd, jvp, linearize

import torch_tconv
from common_utils import make_case, op_params

ops = torch.ops.torch_tconv

# name -> (a layer of the common table, batch size; None: unbatched input):
# grouped with output padding, unbatched, and depthwise (the direct kernels).
CASES = {
    "grouped": ("grouped", 2),
    "unbatched_k4s2": ("dcgan_k4s2p1", None),
    "depthwise": ("depthwise", 2),
}


def make_layer(name, seed=0):
    layer, batch = CASES[name]
    return make_case(layer, batch, torch.float64, "cpu", seed=seed)


def tangent_sets(primals):
    """Every non-empty subset of the arguments carrying a random tangent (the
    others a zero one, which torch.func.jvp requires)."""
    for subset in itertools.chain.from_iterable(
            itertools.combinations(range(len(primals)), r) for r in range(1, len(primals) + 1)):
        yield subset, tuple(torch.randn_like(p) if i in subset else torch.zeros_like(p)
                            for i, p in enumerate(primals))


@pytest.mark.parametrize("name", sorted(CASES))
def test_func_jvp_every_tangent_combination(name):
    x, w, b, params = make_layer(name)
    ours = lambda x, w, b: torch_tconv.conv_transpose2d(x, w, b, **params)  # noqa: E731
    theirs = lambda x, w, b: F.conv_transpose2d(x, w, b, **params)  # noqa: E731
    for subset, tangents in tangent_sets((x, w, b)):
        out, tangent = jvp(ours, (x, w, b), tangents)
        expected_out, expected_tangent = jvp(theirs, (x, w, b), tangents)
        torch.testing.assert_close(out, expected_out)
        torch.testing.assert_close(tangent, expected_tangent, msg=lambda m: f"{subset}: {m}")
        assert tangent.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("requires_grad", [False, True])
def test_dual_tensors(name, requires_grad):
    """forward_ad's dual tensors, with and without arguments that also
    require grad, and under no_grad (forward mode ignores it)."""
    x, w, b, params = make_layer(name)
    for subset, tangents in tangent_sets((x, w, b)):
        expected = jvp(lambda x, w, b: F.conv_transpose2d(x, w, b, **params), (x, w, b), tangents)[1]
        for no_grad in (False, True):
            with fwAD.dual_level(), torch.set_grad_enabled(not no_grad):
                duals = [fwAD.make_dual(p.clone().requires_grad_(requires_grad), t) if i in subset
                         else p.clone().requires_grad_(requires_grad)
                         for i, (p, t) in enumerate(zip((x, w, b), tangents))]
                out = torch_tconv.conv_transpose2d(*duals, **params)
                tangent = fwAD.unpack_dual(out).tangent
            assert tangent is not None, f"{subset}: no tangent"
            torch.testing.assert_close(tangent, expected, msg=lambda m: f"{subset}: {m}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_jacfwd_and_linearize(name):
    x, w, b, params = make_layer(name)
    ours = lambda x, w, b: torch_tconv.conv_transpose2d(x, w, b, **params)  # noqa: E731
    theirs = lambda x, w, b: F.conv_transpose2d(x, w, b, **params)  # noqa: E731
    for got, want in zip(jacfwd(ours, argnums=(0, 1, 2))(x, w, b),
                         jacfwd(theirs, argnums=(0, 1, 2))(x, w, b)):
        torch.testing.assert_close(got, want)
    out, linear = linearize(lambda w: ours(x, w, b), w)
    dw = torch.randn_like(w)
    torch.testing.assert_close(out, theirs(x, w, b))
    torch.testing.assert_close(linear(dw), F.conv_transpose2d(x, dw, None, **params))


def gradient_op_cases(name):
    """(op, arguments, reference): each gradient op beside the same map built
    from F.conv_transpose2d's vjp."""
    x, w, _, params = make_layer(name)
    stride, padding, _, dilation, groups = op_params(params)
    forward = lambda x, w: F.conv_transpose2d(x, w, None, **params)  # noqa: E731
    g = torch.randn_like(forward(x, w))
    common = (stride, padding, dilation, groups)
    batched_g = g if g.dim() == 4 else g.unsqueeze(0)
    return [
        (lambda g, w: ops.conv_transpose_input_grad(g, w, list(x.shape[-2:]), *common), (g, w),
         lambda g, w: torch.func.vjp(lambda x: forward(x, w), x)[1](g)[0]),
        (lambda x, g: ops.conv_transpose_weight_grad(x, g, list(w.shape[2:]), *common), (x, g),
         lambda x, g: torch.func.vjp(lambda w: forward(x, w), w)[1](g)[0]),
        (lambda g, x, w: ops.conv_transpose_backward(g, x, w, *common), (g, x, w),
         lambda g, x, w: torch.func.vjp(forward, x, w)[1](g)),
        (lambda g: ops.conv_transpose_bias_grad(g), (batched_g,),
         lambda g: g.sum((0, 2, 3))),
    ]


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_ops_jvp(name):
    """The jvp of each gradient op, with tangents on every combination of its
    arguments, through torch.func.jvp and through dual tensors."""
    for op, args, reference in gradient_op_cases(name):
        for subset, tangents in tangent_sets(args):
            got = jvp(op, args, tangents)[1]
            want = jvp(reference, args, tangents)[1]
            torch.testing.assert_close(got, want, msg=lambda m: f"{subset}: {m}")
            with fwAD.dual_level():
                duals = [fwAD.make_dual(a, t) if i in subset else a
                         for i, (a, t) in enumerate(zip(args, tangents))]
                outs = op(*duals)
                outs = outs if isinstance(outs, tuple) else (outs,)
                dual_tangents = tuple(fwAD.unpack_dual(o).tangent for o in outs)
            want = want if isinstance(want, tuple) else (want,)
            for d, expected in zip(dual_tangents, want):
                if expected.abs().sum() == 0:
                    assert d is None or d.abs().sum() == 0
                else:
                    torch.testing.assert_close(d, expected)


@pytest.mark.parametrize("name", sorted(CASES))
def test_hessian_vector_products(name):
    """Forward-over-reverse (jvp of grad, and forward_ad over
    autograd.grad) and reverse-over-forward (grad of jvp), for each argument."""
    x, w, b, params = make_layer(name)
    v = [torch.randn_like(t) for t in (x, w, b)]

    def loss(lib):
        return lambda x, w, b: lib.conv_transpose2d(x, w, b, **params).sin().sum()
    for argnum in range(3):
        tangents = tuple(v[i] if i == argnum else torch.zeros_like(v[i]) for i in range(3))
        results = []
        for lib in (F, torch_tconv):
            f = loss(lib)
            forward_over_reverse = jvp(grad(f, argnums=(0, 1, 2)), (x, w, b), tangents)[1]
            reverse_over_forward = grad(lambda *p: jvp(f, p, tangents)[1], argnums=(0, 1, 2))(x, w, b)
            with fwAD.dual_level():
                primals = [t.clone().requires_grad_() for t in (x, w, b)]
                duals = [fwAD.make_dual(p, t) for p, t in zip(primals, tangents)]
                grads = torch.autograd.grad(f(*duals), duals, create_graph=True)
                dual_hvp = tuple(fwAD.unpack_dual(g).tangent for g in grads)
            results.append((forward_over_reverse, reverse_over_forward, dual_hvp))
        for kind, got, want in zip(("jvp(grad)", "grad(jvp)", "forward_ad over autograd.grad"),
                                   results[1], results[0]):
            for g, e in zip(got, want):
                torch.testing.assert_close(g, e, msg=lambda m: f"{kind}, argument {argnum}: {m}")
            assert sum(e.abs().sum() for e in want) > 0


@pytest.mark.parametrize("spatial_dims", [1, 3])
def test_jvp_in_1d_and_3d(spatial_dims):
    """The ops take 1 to 3 spatial dims: their tangents against
    F.conv_transpose1d/3d."""
    torch.manual_seed(spatial_dims)
    x = torch.randn((2, 4) + (3,) * spatial_dims, dtype=torch.float64)
    w = torch.randn((4, 3) + (2,) * spatial_dims, dtype=torch.float64)
    b = torch.randn(6, dtype=torch.float64)
    ones = [1] * spatial_dims
    reference = {1: F.conv_transpose1d, 3: F.conv_transpose3d}[spatial_dims]
    ours = lambda x, w, b: ops.conv_transpose(  # noqa: E731
        x, w, b, [2] * spatial_dims, ones, ones, ones, 2)
    theirs = lambda x, w, b: reference(x, w, b, stride=2, padding=1, output_padding=1, groups=2)  # noqa: E731
    for subset, tangents in tangent_sets((x, w, b)):
        torch.testing.assert_close(jvp(ours, (x, w, b), tangents)[1],
                                   jvp(theirs, (x, w, b), tangents)[1])
