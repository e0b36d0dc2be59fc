"""torch.fx.symbolic_trace of models with ConvTranspose2d and
conv_transpose2d: the graph runs and matches eager, with output_size from a
traced shape."""

import torch
import torch.nn.functional as F
from torch import fx, nn

import torch_tconv


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = torch_tconv.ConvTranspose2d(4, 6, 3, stride=2, padding=1)
        self.weight = nn.Parameter(torch.randn(6, 2, 2, 2, dtype=torch.float64))

    def forward(self, x, skip):
        y = self.up(x, output_size=skip.shape) + skip
        return torch_tconv.conv_transpose2d(y, self.weight, None, stride=2, groups=3)


def reference(model, x, skip):
    y = F.conv_transpose2d(x, model.up.weight, model.up.bias, stride=2, padding=1,
                           output_padding=skip.shape[-1] - 9) + skip
    return F.conv_transpose2d(y, model.weight, None, stride=2, groups=3)


def test_symbolic_trace_module_and_functional():
    torch.manual_seed(0)
    model = Decoder().double()
    graph_module = fx.symbolic_trace(model)
    for size in (9, 10):  # output_size stays a traced value, not a constant
        x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
        skip = torch.randn(2, 6, size, size, dtype=torch.float64)
        torch.testing.assert_close(graph_module(x, skip), reference(model, x, skip))
        torch.testing.assert_close(graph_module(x, skip), model(x, skip))
    targets = [node.target for node in graph_module.graph.nodes if node.op == "call_function"]
    assert torch_tconv.conv_transpose2d in targets
    assert torch.ops.torch_tconv.conv_transpose in targets


def test_traced_graph_trains():
    torch.manual_seed(0)
    model = Decoder().double()
    graph_module = fx.symbolic_trace(model)
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    skip = torch.randn(2, 6, 10, 10, dtype=torch.float64)
    graph_module(x, skip).square().sum().backward()
    model(x, skip).square().sum().backward()
    assert graph_module.up.weight.grad is model.up.weight.grad  # shared parameters
    expected = torch.autograd.grad(reference(model, x, skip).square().sum(), model.weight)[0]
    torch.testing.assert_close(model.weight.grad / 2, expected)


def test_functional_alone():
    def upsample(x, w):
        return torch_tconv.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1)

    graph_module = fx.symbolic_trace(upsample)
    x = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(graph_module(x, w),
                               F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1))
