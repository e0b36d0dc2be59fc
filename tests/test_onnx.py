"""torch.onnx.export of models with our layers gives standard ONNX
ConvTranspose nodes (groups, dilation, padding, output_padding, output_size),
which onnxruntime runs to the same result as eager mode."""

import io
import warnings

import pytest
import torch
from torch import nn

import torch_tconv

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = torch_tconv.ConvTranspose2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0),
                                              output_padding=(1, 0), groups=2, dilation=(1, 2))
        self.sized = torch_tconv.ConvTranspose2d(6, 3, 3, stride=2, padding=1)
        self.weight = nn.Parameter(torch.randn(3, 2, 4, 4))

    def forward(self, x):
        y = self.up(x).relu()
        z = self.sized(y, output_size=[2 * y.shape[-2], 2 * y.shape[-1]])
        return torch_tconv.conv_transpose2d(z, self.weight, None, stride=2, padding=1)


def export(model, x, dynamo):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            return torch.onnx.export(model, (x,), dynamo=True, verbose=False).model_proto
        buffer = io.BytesIO()
        torch.onnx.export(model, (x,), buffer, dynamo=False)
        return onnx.load_from_string(buffer.getvalue())


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_export_runs_in_onnxruntime(dynamo):
    torch.manual_seed(0)
    model = Decoder().eval()
    x = torch.randn(2, 4, 5, 6)
    proto = export(model, x, dynamo)
    op_types = [node.op_type for node in proto.graph.node]
    assert op_types.count("ConvTranspose") == 3, op_types
    assert not any(node.domain.startswith("torch_tconv") for node in proto.graph.node)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(torch.from_numpy(out), expected, rtol=1e-4, atol=1e-5)


def test_eager_after_export_uses_our_op():
    """The export path is taken only while exporting."""
    model = Decoder().eval()
    x = torch.randn(1, 4, 5, 6)
    export(model, x, dynamo=True)
    graph = torch.jit.trace(model.up, x)
    assert "torch_tconv::conv_transpose" in str(graph.inlined_graph)
