"""Benchmark mode (torch_tconv.backends.benchmark): the first call of each
shape key times the algorithms and tile variants and keeps the fastest;
later calls of that key reuse the choice; forced algorithms are never
timed; nothing is timed during CUDA graph capture. Whatever is chosen, the
results are the oracle's."""

import pytest
import torch
import torch.nn.functional as F

import torch_tconv
from common_utils import DEVICES, assert_close_to, make_case, oracle

backends = torch_tconv.backends
CANDIDATES = {"gemm", "direct", "phase"}


@pytest.fixture(autouse=True)
def fresh_choices():
    backends.clear_benchmark_choices()
    with backends.flags(benchmark=True):
        yield
    backends.clear_benchmark_choices()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_each_key_is_timed_once_and_the_results_are_right(dtype, device):
    x, w, b, p = make_case("grouped", 2, dtype, device)
    leaves = [t.requires_grad_() for t in (x, w, b)]
    for _ in range(3):
        out = torch_tconv.conv_transpose2d(*leaves, **p)
        gy = torch.randn_like(out)
        grads = torch.autograd.grad(out, leaves, gy)
    choices = backends.benchmark_choices()
    # The forward, and the backward op (or its two gradient ops): each once.
    assert 2 <= len(choices) <= 3, choices
    assert {algorithm for _, algorithm, _ in choices} <= CANDIDATES
    want = oracle(x, w, b, gy, **p)
    for name, got, expected in zip(("output", "grad_input", "grad_weight", "grad_bias"),
                                   (out, *grads), want):
        assert_close_to(got, expected, dtype, name)


def test_a_new_shape_is_a_new_key():
    x, w, b, p = make_case("dcgan_k4s2p1", 2, torch.float32, "cpu")
    torch_tconv.conv_transpose2d(x, w, b, **p)
    assert len(backends.benchmark_choices()) == 1
    torch_tconv.conv_transpose2d(x[:1], w, b, **p)
    assert len(backends.benchmark_choices()) == 2
    torch_tconv.conv_transpose2d(x[:1], w, b, **p)
    assert len(backends.benchmark_choices()) == 2
    backends.clear_benchmark_choices()
    assert backends.benchmark_choices() == []


def test_forced_algorithms_are_not_timed():
    x, w, b, p = make_case("dcgan_k4s2p1", 2, torch.float32, "cpu")
    with backends.flags(algorithm="gemm"):
        out = torch_tconv.conv_transpose2d(x, w, b, **p)
    assert backends.benchmark_choices() == []
    torch.testing.assert_close(out, F.conv_transpose2d(x, w, b, **p))


@pytest.mark.cuda
def test_nothing_is_timed_during_graph_capture():
    x, w, b, p = make_case("dcgan_k4s2p1", 2, torch.float16, "cuda")
    torch_tconv.conv_transpose2d(x, w, b, **p)  # warm-up outside capture (the allocator)
    backends.clear_benchmark_choices()
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        with torch.cuda.graph(graph, stream=stream):
            out = torch_tconv.conv_transpose2d(x, w, b, **p)
    assert backends.benchmark_choices() == []
    graph.replay()
    torch.cuda.synchronize()
    assert_close_to(out, oracle(x, w, b, torch.ones_like(out), **p)[0], torch.float16, "output")
