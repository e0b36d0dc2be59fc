"""The ops as the dispatcher and torch.compile see them: opcheck on every op,
compile with fullgraph, and the registration of the CUDA kernels."""

import os

import pytest
import torch
from torch.library import opcheck

import torch_tconv
from common_utils import DEVICES, make_case, op_params

ops = torch.ops.torch_tconv


def op_samples(device):
    """Arguments for each op: batched, unbatched, grouped and dilated layers."""
    samples = []
    for name, batch in (("decoder_k3s2p1op1", 2), ("nonsquare_all", None),
                        ("grouped", 1), ("dilated_op_ge_stride", 2), ("depthwise", 2)):
        x, w, b, p = make_case(name, batch, torch.float32, device)
        stride, padding, output_padding, dilation, groups = op_params(p)
        out = ops.conv_transpose(x, w, b, stride, padding, output_padding, dilation, groups)
        gy = torch.randn_like(out)
        spatial = list(x.shape[-2:])
        samples.append((
            (ops.conv_transpose.default, (x, w, b, stride, padding, output_padding, dilation, groups)),
            (ops.conv_transpose.default,
             (x, w, None, stride, padding, [0, 0], dilation, groups, list(out.shape[-2:]))),
            (ops.conv_transpose_input_grad.default, (gy, w, spatial, stride, padding, dilation, groups)),
            (ops.conv_transpose_weight_grad.default,
             (x, gy, list(w.shape[2:]), stride, padding, dilation, groups)),
            (ops.conv_transpose_backward.default, (gy, x, w, stride, padding, dilation, groups)),
            (ops.conv_transpose_bias_grad.default, (gy if gy.dim() == 4 else gy.unsqueeze(0),)),
        ))
    return [s for group in samples for s in group]


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_every_op(device):
    for op, args in op_samples(device):
        args = tuple(a.requires_grad_() if isinstance(a, torch.Tensor) else a for a in args)
        opcheck(op, args)


class Decoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.up1 = torch_tconv.ConvTranspose2d(8, 6, 4, stride=2, padding=1)
        self.up2 = torch_tconv.ConvTranspose2d(6, 6, 3, stride=2, padding=1, output_padding=1, groups=3)
        self.up3 = torch_tconv.ConvTranspose2d(6, 3, (2, 3), stride=(2, 1), dilation=(1, 2))

    def forward(self, x):
        x = torch.relu(self.up1(x))
        x = torch.relu(self.up2(x))
        return self.up3(x, output_size=[x.shape[-2] * 2 + 1, x.shape[-1] + 5])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dynamic", [False, True])
def test_compile_fullgraph(device, dynamic):
    torch._dynamo.reset()
    model = Decoder().to(device)
    compiled = torch.compile(model, fullgraph=True, dynamic=dynamic, backend="aot_eager")
    for shape in ((2, 8, 4, 5), (3, 8, 6, 3)):
        x = torch.randn(shape, device=device, requires_grad=True)
        out = compiled(x)
        expected = model(x)
        torch.testing.assert_close(out, expected)
        (g_ours,) = torch.autograd.grad(out.sum(), x)
        (g_eager,) = torch.autograd.grad(expected.sum(), x)
        torch.testing.assert_close(g_ours, g_eager)


@pytest.mark.parametrize("device", DEVICES)
def test_compile_inductor(device):
    torch._dynamo.reset()
    model = Decoder().to(device)
    compiled = torch.compile(model, fullgraph=True)
    x = torch.randn(2, 8, 4, 5, device=device)
    torch.testing.assert_close(compiled(x), model(x))


def test_cuda_kernels_registered_in_cuda_builds():
    """A CUDA build of torch must yield CUDA kernels for every op; otherwise a
    silent CPU-only build would pass all CPU tests. TORCH_TCONV_EXPECT_CUDA=0
    declares a deliberately CPU-only build."""
    default = "1" if torch.version.cuda else "0"
    if os.environ.get("TORCH_TCONV_EXPECT_CUDA", default) != "1":
        pytest.skip("CPU-only build expected")
    assert torch_tconv._C.built_with_cuda
    for op in ("conv_transpose", "conv_transpose_input_grad", "conv_transpose_weight_grad",
               "conv_transpose_backward", "conv_transpose_bias_grad"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"torch_tconv::{op}", "CUDA"), op
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"torch_tconv::{op}", "CPU"), op
