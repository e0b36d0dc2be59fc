"""torch_tconv.convert: Keras/TensorFlow and Flax transposed-convolution
kernels in torch's layout, each checked against the source framework's own
computation (jax.lax.conv_transpose, which Flax's ConvTranspose calls, and
which with transpose_kernel=True is documented to equal Keras's
Conv*DTranspose on the same kernel), in 1-D, 2-D and 3-D, with 'same' and
'valid' padding."""

import numpy as np
import pytest
import torch

import torch_tconv
from torch_tconv import convert
from common_utils import assert_close_to

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

FUNCTIONAL = {1: torch_tconv.conv_transpose1d, 2: torch_tconv.conv_transpose2d,
              3: torch_tconv.conv_transpose3d}
# Channels-last activations and kernels, as Keras and Flax keep them.
LAYOUT = {1: ("NHC", "HIO", "NHC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}


def framework_conv_transpose(x_channels_last, kernel, stride, padding, transpose_kernel):
    dims = kernel.ndim - 2
    out = jax.lax.conv_transpose(jnp.asarray(x_channels_last), jnp.asarray(kernel),
                                 strides=(stride,) * dims, padding=padding.upper(),
                                 dimension_numbers=LAYOUT[dims],
                                 transpose_kernel=transpose_kernel)
    return np.asarray(jax.device_get(out))


def channels_first(x):
    return torch.from_numpy(np.moveaxis(x, -1, 1).copy())


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("source", ["keras", "flax", "flax_transpose_kernel"])
def test_matches_the_source_framework(source, dims, padding):
    rng = np.random.default_rng(dims)
    c_in, c_out, k, stride = 3, 5, 4 if dims < 3 else 3, 2
    x = rng.standard_normal((2, *[5] * dims, c_in))
    if source == "flax":
        # Flax's default kernel: (k..., C_in, C_out), not transposed.
        kernel = rng.standard_normal((*[k] * dims, c_in, c_out))
        weight = convert.from_flax(kernel)
        expected = framework_conv_transpose(x, kernel, stride, padding, transpose_kernel=False)
    else:
        # Keras's kernel, and Flax's with transpose_kernel=True: (k..., C_out, C_in),
        # which jax's "HWIO" names from the forward convolution's side.
        kernel = rng.standard_normal((*[k] * dims, c_out, c_in))
        weight = (convert.from_keras(kernel) if source == "keras"
                  else convert.from_flax(kernel, transpose_kernel=True))
        expected = framework_conv_transpose(x, kernel, stride, padding, transpose_kernel=True)
    assert weight.shape == (c_in, c_out, *[k] * dims)
    out = FUNCTIONAL[dims](channels_first(x), weight, stride=stride, padding=padding)
    assert_close_to(out, channels_first(expected), torch.float64, f"{source} {dims}-D {padding}")


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_round_trips(dims):
    weight = torch.randn(3, 4, *range(2, 2 + dims), dtype=torch.float64)
    torch.testing.assert_close(convert.from_keras(convert.to_keras(weight)), weight)
    for transposed in (False, True):
        torch.testing.assert_close(
            convert.from_flax(convert.to_flax(weight, transposed), transposed), weight)
    assert convert.to_keras(weight).shape == (*range(2, 2 + dims), 4, 3)
    assert convert.to_flax(weight).shape == (*range(2, 2 + dims), 3, 4)


def test_bad_kernels_are_refused():
    with pytest.raises(ValueError, match="from_keras: expected a 1-D, 2-D or 3-D kernel"):
        convert.from_keras(np.zeros((3, 3)))
    with pytest.raises(TypeError, match="from_flax: expected a floating-point kernel"):
        convert.from_flax(np.zeros((3, 3, 2, 2), dtype=np.int64))
