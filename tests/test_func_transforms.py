"""torch.func transforms over every op against F.conv_transpose2d in float64:
grad, vjp, jacrev, jacfwd, hessian, per-sample gradients (vmap of grad), and
vmap over every combination of arguments, with in_dims other than 0, through
the batching rules (no per-sample fallback)."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, hessian, jacfwd, jacrev, vjp, vmap
from torch.profiler import ProfilerActivity, profile

import torch_tconv
from common_utils import make_case, op_params

ops = torch.ops.torch_tconv

VMAP_SIZE = 3


def layer(unbatched=False, groups=2):
    """A layer of the common table with one or two groups, strides and
    dilations of their own per dim, and output padding."""
    name = "grouped" if groups == 2 else "nonsquare_all"
    return make_case(name, None if unbatched else 2, torch.float64, "cpu")


def ours(params):
    return lambda x, w, b: torch_tconv.conv_transpose2d(x, w, b, **params)


def theirs(params):
    return lambda x, w, b: F.conv_transpose2d(x, w, b, **params)


def assert_trees_close(got, want, what):
    got_leaves, want_leaves = torch.utils._pytree.tree_leaves(got), torch.utils._pytree.tree_leaves(want)
    assert len(got_leaves) == len(want_leaves), what
    for g, w in zip(got_leaves, want_leaves):
        torch.testing.assert_close(g, w, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("unbatched", [False, True])
@pytest.mark.parametrize("transform", ["grad", "jacrev", "jacfwd", "hessian"])
def test_derivative_transforms(transform, unbatched):
    x, w, b, params = layer(unbatched)
    apply = {"grad": grad, "jacrev": jacrev, "jacfwd": jacfwd, "hessian": hessian}[transform]
    for argnums in (0, 1, 2, (0, 1, 2)):
        results = []
        for f in (ours(params), theirs(params)):
            loss = lambda *a: f(*a).tanh().sum()  # noqa: E731
            results.append(apply(loss, argnums=argnums)(x, w, b))
        assert_trees_close(results[0], results[1], f"{transform}, argnums={argnums}")


def test_vjp():
    x, w, b, params = layer()
    cotangent = torch.randn_like(theirs(params)(x, w, b))
    out, pullback = vjp(ours(params), x, w, b)
    expected_out, expected_pullback = vjp(theirs(params), x, w, b)
    torch.testing.assert_close(out, expected_out)
    assert_trees_close(pullback(cotangent), expected_pullback(cotangent), "vjp")


@pytest.mark.parametrize("unbatched_sample", [False, True])
def test_per_sample_gradients(unbatched_sample):
    """vmap(grad): the gradients of each sample's loss on its own, as in
    differential privacy; the sample is unbatched or a batch of one."""
    x, w, b, params = layer()
    targets = torch.randn_like(theirs(params)(x, w, b))

    def per_sample(f):
        def loss(w, b, xi, ti):
            if not unbatched_sample:
                xi, ti = xi.unsqueeze(0), ti.unsqueeze(0)
            return (f(xi, w, b) - ti).pow(2).sum()
        return vmap(grad(loss, argnums=(0, 1)), in_dims=(None, None, 0, 0))(w, b, x, targets)

    assert_trees_close(per_sample(ours(params)), per_sample(theirs(params)), "per-sample grads")


def stacked(t, dim, seed, size=VMAP_SIZE):
    g = torch.Generator().manual_seed(seed)
    return torch.stack([t * torch.randn((), generator=g, dtype=t.dtype) + i
                        for i in range(size)], dim)


def vmap_cases(args):
    """Every non-empty subset of the arguments vmapped, at dim 0 and at the
    last dim: (in_dims, the arguments stacked, a function of a vmap size
    giving arguments stacked to that size)."""
    for in_dims in itertools.product(*[(None, 0, -1)] * len(args)):
        if all(d is None for d in in_dims):
            continue

        def of_size(size, in_dims=in_dims):
            return [a if d is None else stacked(a, d, i, size)
                    for i, (a, d) in enumerate(zip(args, in_dims))]

        yield in_dims, of_size(VMAP_SIZE), of_size


def op_calls(fn):
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(1 for event in prof.events() if event.name.startswith("torch_tconv::"))


def assert_no_per_sample_loop(fn, in_dims, of_size):
    """A batching rule calls the ops as often for any vmap size; vmap's
    fallback calls them once per sample."""
    calls = [op_calls(lambda: vmap(fn, in_dims=in_dims)(*of_size(size))) for size in (2, 5)]
    assert calls[0] == calls[1], f"in_dims={in_dims}: {calls} op calls for vmap sizes 2 and 5"


@pytest.mark.parametrize("unbatched", [False, True])
@pytest.mark.parametrize("groups", [1, 2])
def test_vmap_forward_every_argument(unbatched, groups):
    x, w, b, params = layer(unbatched, groups)
    for in_dims, args, of_size in vmap_cases((x, w, b)):
        got = vmap(ours(params), in_dims=in_dims)(*args)
        want = vmap(theirs(params), in_dims=in_dims)(*args)
        torch.testing.assert_close(got, want, msg=lambda m: f"in_dims={in_dims}: {m}")
        assert_no_per_sample_loop(ours(params), in_dims, of_size)


def gradient_ops(x, w, params):
    """Each gradient op beside the same map built from F.conv_transpose2d's vjp."""
    forward = lambda x, w: F.conv_transpose2d(x, w, None, **params)  # noqa: E731
    stride, padding, _, dilation, groups = op_params(params)
    common = (stride, padding, dilation, groups)
    return {
        "input_grad": (lambda g, w: ops.conv_transpose_input_grad(g, w, list(x.shape[-2:]), *common),
                       lambda g, w: vjp(lambda x: forward(x, w), x)[1](g)[0], ("g", "w")),
        "weight_grad": (lambda x, g: ops.conv_transpose_weight_grad(x, g, list(w.shape[2:]), *common),
                        lambda x, g: vjp(lambda w: forward(x, w), w)[1](g)[0], ("x", "g")),
        "backward": (lambda g, x, w: ops.conv_transpose_backward(g, x, w, *common),
                     lambda g, x, w: vjp(forward, x, w)[1](g), ("g", "x", "w")),
    }


@pytest.mark.parametrize("unbatched", [False, True])
@pytest.mark.parametrize("op", ["input_grad", "weight_grad", "backward"])
def test_vmap_gradient_ops_every_argument(op, unbatched):
    x, w, _, params = layer(unbatched)
    g = torch.randn_like(theirs(params)(x, w, None))
    ours_op, reference, names = gradient_ops(x, w, params)[op]
    values = {"x": x, "w": w, "g": g}
    for in_dims, args, of_size in vmap_cases(tuple(values[n] for n in names)):
        assert_trees_close(vmap(ours_op, in_dims=in_dims)(*args),
                           vmap(reference, in_dims=in_dims)(*args), f"{op}, in_dims={in_dims}")
        assert_no_per_sample_loop(ours_op, in_dims, of_size)


def test_vmap_bias_grad():
    g = torch.randn(2, 6, 5, 4, dtype=torch.float64)
    for dim in (0, 1, -1):
        batched = stacked(g, dim, 0)
        torch.testing.assert_close(vmap(ops.conv_transpose_bias_grad, in_dims=dim)(batched),
                                   vmap(lambda g: g.sum((0, 2, 3)), in_dims=dim)(batched))
        assert_no_per_sample_loop(ops.conv_transpose_bias_grad, (dim,),
                                  lambda size, dim=dim: [stacked(g, dim, 0, size)])


def test_nested_vmap():
    """vmap of vmap: a batch of ensembles of layers (weights vmapped twice)."""
    x, w, b, params = layer()
    ws = torch.stack([stacked(w, 0, i) for i in range(2)])
    f = lambda f: vmap(vmap(f, in_dims=(None, 0, None)), in_dims=(None, 0, None))(x, ws, b)  # noqa: E731
    torch.testing.assert_close(f(ours(params)), f(theirs(params)))
    assert op_calls(lambda: f(ours(params))) == 3  # the call, and one per level's rule
