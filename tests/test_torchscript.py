"""torch.jit.script and torch.jit.trace of models with ConvTranspose2d, as
with nn.ConvTranspose2d: the U-Net pattern with output_size taken from a
skip connection's shape, saved and loaded."""

import io
import warnings

import pytest
import torch
from torch import nn

import torch_tconv


class UNetUp(nn.Module):
    """An up-convolution sized to its skip connection, then a grouped one."""

    def __init__(self, layer):
        super().__init__()
        self.up = layer(4, 6, 3, stride=2, padding=1)
        self.mix = layer(6, 6, (2, 3), stride=(1, 2), dilation=(2, 1), groups=3, bias=False)

    def forward(self, x, skip):
        return self.mix(self.up(x, output_size=skip.shape) + skip)


def pair_of_models():
    torch.manual_seed(0)
    ours = UNetUp(torch_tconv.ConvTranspose2d).double()
    theirs = UNetUp(nn.ConvTranspose2d).double()
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def inputs(size=10):
    return torch.randn(2, 4, 5, 5, dtype=torch.float64), torch.randn(2, 6, size, size, dtype=torch.float64)


def round_trip(module):
    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    buffer.seek(0)
    return torch.jit.load(buffer)


@pytest.fixture(autouse=True)
def quiet():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


def test_script():
    ours, theirs = pair_of_models()
    scripted = torch.jit.script(ours)
    loaded = round_trip(scripted)
    for size in (9, 10):  # both sizes this stride can produce: output_size is not baked in
        x, skip = inputs(size)
        expected = theirs(x, skip)
        torch.testing.assert_close(scripted(x, skip), expected)
        torch.testing.assert_close(loaded(x, skip), expected)
    assert "torch_tconv::conv_transpose" in str(scripted.up.graph)


def test_script_gradients():
    ours, theirs = pair_of_models()
    scripted = torch.jit.script(ours)
    x, skip = inputs()
    for model in (scripted, theirs):
        model.zero_grad()
        model(x, skip).square().sum().backward()
    torch.testing.assert_close(scripted.up.weight.grad, theirs.up.weight.grad)
    torch.testing.assert_close(scripted.mix.weight.grad, theirs.mix.weight.grad)


def test_script_rejects_bad_output_size():
    scripted = torch.jit.script(pair_of_models()[0])
    x, _ = inputs()
    with pytest.raises(Exception, match="output_size must have 2 or 4 elements"):
        scripted.up(x, output_size=[10])


def test_trace():
    ours, theirs = pair_of_models()
    x, skip = inputs()
    traced = torch.jit.trace(ours, (x, skip))
    expected = theirs(x, skip)
    torch.testing.assert_close(traced(x, skip), expected)
    torch.testing.assert_close(round_trip(traced)(x, skip), expected)
    assert "torch_tconv::conv_transpose" in str(traced.inlined_graph)
