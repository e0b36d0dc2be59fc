"""torch_tconv: transposed convolution with its own CPU and CUDA kernels.

Equivalent to ``torch.nn.functional.conv_transpose1d/2d/3d`` and
``torch.nn.ConvTranspose1d/2d/3d``; see the README for devices and dtypes.

Layout of the package:
  _C            the native extension; importing it registers the ops
                ``torch.ops.torch_tconv.*`` (OPS)
  _fake         fake (meta) kernels of the ops, for torch.compile
  _autograd     the ops' backward and jvp formulas, written with the ops themselves
  _vmap         the ops' batching rules, for torch.func.vmap
  backends      the kernels' settings (algorithm, workspace, ...) and flags()
  convert       kernels from Keras/TensorFlow and Flax, and back
  functional    conv_transpose1d, conv_transpose2d, conv_transpose3d
  checkerboard  checkerboard artifacts: taps per output phase, dead phases,
                overlap maps, the weights' phase-gain score, a model report,
                a plot
  init          artifact-free initialisations: resize_conv_, bilinear_
  modules       ConvTranspose1d, ConvTranspose2d, ConvTranspose3d (which warn
                about dead phases), ResizeConv1d, ResizeConv2d, ResizeConv3d
"""

import torch  # noqa: F401  (loads libtorch, which _C links against)

try:
    from . import _C  # noqa: F401  (registers the ops)
except ImportError as error:  # pragma: no cover - depends on how it was installed
    raise ImportError(
        "torch_tconv's native extension is not built. Install the package with "
        "`pip install --no-build-isolation .`, or build it in place with "
        "`python setup.py build_ext --inplace`; when importing an installed copy, "
        "run from outside the source tree, whose torch_tconv/ would shadow it."
    ) from error
from . import _autograd, _fake, _vmap  # noqa: F401  (registers fake kernels, autograd, vmap)
from . import backends, checkerboard, convert, init  # noqa: F401
from .functional import conv_transpose1d, conv_transpose2d, conv_transpose3d
from .modules import (ConvTranspose1d, ConvTranspose2d, ConvTranspose3d, ResizeConv1d,
                      ResizeConv2d, ResizeConv3d)

__all__ = ["conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
           "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
           "ResizeConv1d", "ResizeConv2d", "ResizeConv3d", "has_cuda_kernels"]

# The registered ops: the scatter forward, its two gradient faces, both
# gradients in one pass, and the bias gradient.
OPS = ("conv_transpose", "conv_transpose_input_grad", "conv_transpose_weight_grad",
       "conv_transpose_backward", "conv_transpose_bias_grad")
__version__ = "0.1.0"


def has_cuda_kernels() -> bool:
    """Whether this build registered CUDA kernels for every op."""
    return all(
        torch._C._dispatch_has_kernel_for_dispatch_key(f"torch_tconv::{op}", "CUDA")
        for op in OPS
    )
