"""ConvTranspose2d as a drop-in replacement for nn.ConvTranspose2d."""

import pytest
import torch
from torch import nn

import torch_tconv
from common_utils import DEVICES

MODULE_KWARGS = [
    dict(in_channels=4, out_channels=6, kernel_size=3),
    dict(in_channels=4, out_channels=6, kernel_size=(4, 2), stride=(2, 1), padding=(1, 0),
         output_padding=(1, 0), groups=2, bias=False, dilation=(1, 2)),
    dict(in_channels=3, out_channels=3, kernel_size=4, stride=2, padding=1, groups=3),
]


@pytest.mark.parametrize("kwargs", MODULE_KWARGS)
def test_same_parameters_init_and_repr(kwargs):
    torch.manual_seed(7)
    ours = torch_tconv.ConvTranspose2d(**kwargs)
    torch.manual_seed(7)
    theirs = nn.ConvTranspose2d(**kwargs)
    assert isinstance(ours, nn.ConvTranspose2d)
    assert ours.extra_repr() == theirs.extra_repr()
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for key, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kwargs", MODULE_KWARGS)
def test_state_dict_round_trip(kwargs, device):
    ours = torch_tconv.ConvTranspose2d(**kwargs, device=device, dtype=torch.float64)
    theirs = nn.ConvTranspose2d(**kwargs, device=device, dtype=torch.float64)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, kwargs["in_channels"], 5, 4, dtype=torch.float64, device=device)
    torch.testing.assert_close(ours(x), theirs(x))
    fresh = torch_tconv.ConvTranspose2d(**kwargs, device=device, dtype=torch.float64)
    fresh.load_state_dict(theirs.state_dict())
    torch.testing.assert_close(fresh(x), theirs(x))
    assert fresh.weight.dtype == torch.float64 and fresh.weight.device.type == device


@pytest.mark.parametrize("device", DEVICES)
def test_output_size_full_range(device):
    """Every size F.conv_transpose2d can produce is accepted: the range ends at
    min + max(stride, dilation) - 1, wider than stride alone when dilated."""
    layer = torch_tconv.ConvTranspose2d(2, 3, (3, 2), stride=(2, 1), dilation=(1, 3),
                                        device=device, dtype=torch.float64)
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64, device=device)
    base = layer(x).shape[-2:]  # output_padding 0: the smallest size
    for extra_h in range(2):
        for extra_w in range(3):
            size = [base[0] + extra_h, base[1] + extra_w]
            out = layer(x, output_size=size)
            expected = nn.functional.conv_transpose2d(
                x, layer.weight, layer.bias, stride=(2, 1), output_padding=(extra_h, extra_w),
                dilation=(1, 3))
            torch.testing.assert_close(out, expected)
            # Leading dims may be given too, as for nn.ConvTranspose2d.
            torch.testing.assert_close(layer(x, output_size=[1, 3] + size), expected)
    for bad in ([base[0] + 2, base[1]], [base[0], base[1] + 3], [base[0] - 1, base[1]]):
        with pytest.raises(ValueError, match=r"output size in dim \d must lie in"):
            layer(x, output_size=bad)
    with pytest.raises(ValueError, match="output_size must have 2 or 4 elements"):
        layer(x, output_size=[7])


def test_output_size_unbatched():
    layer = torch_tconv.ConvTranspose2d(2, 3, 3, stride=2)
    x = torch.randn(2, 5, 5)
    out = layer(x, output_size=[12, 11])
    assert out.shape == (3, 12, 11)
    assert layer(x, output_size=[3, 12, 11]).shape == (3, 12, 11)


def test_only_zeros_padding_mode():
    with pytest.raises(ValueError, match="zeros"):
        torch_tconv.ConvTranspose2d(2, 2, 3, padding_mode="reflect")


@pytest.mark.parametrize("device", DEVICES)
def test_module_backward_matches(device):
    torch.manual_seed(0)
    ours = torch_tconv.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1,
                                       device=device, dtype=torch.float64)
    theirs = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1,
                                device=device, dtype=torch.float64)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64, device=device)
    ours(x).square().sum().backward()
    theirs(x).square().sum().backward()
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad)
    torch.testing.assert_close(ours.bias.grad, theirs.bias.grad)
