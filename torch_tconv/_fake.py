"""Fake (meta) kernels: output shapes without computing, for torch.compile.

The shapes and the argument checks come from the same C++ functions that the
real kernels call (csrc/validation.cpp), so a bad argument fails at
trace time with the same message as in eager mode.
"""

import torch

from . import _C


@torch.library.register_fake("torch_tconv::conv_transpose")
def _conv_transpose_fake(
    input, weight, bias, stride, padding, output_padding, dilation, groups, output_size=None
):
    shape = _C.forward_output_shape(
        input, weight, bias, stride, padding, output_padding, dilation, groups, output_size
    )
    return input.new_empty(shape)


@torch.library.register_fake("torch_tconv::conv_transpose_input_grad")
def _conv_transpose_input_grad_fake(
    grad_output, weight, input_size, stride, padding, dilation, groups
):
    shape = _C.input_grad_shape(
        grad_output, weight, input_size, stride, padding, dilation, groups
    )
    return grad_output.new_empty(shape)


@torch.library.register_fake("torch_tconv::conv_transpose_weight_grad")
def _conv_transpose_weight_grad_fake(
    input, grad_output, kernel_size, stride, padding, dilation, groups
):
    shape = _C.weight_grad_shape(
        input, grad_output, kernel_size, stride, padding, dilation, groups
    )
    return input.new_empty(shape)


@torch.library.register_fake("torch_tconv::conv_transpose_backward")
def _conv_transpose_backward_fake(grad_output, input, weight, stride, padding, dilation, groups):
    input_shape, weight_shape = _C.backward_shapes(
        grad_output, input, weight, stride, padding, dilation, groups
    )
    return input.new_empty(input_shape), weight.new_empty(weight_shape)


@torch.library.register_fake("torch_tconv::conv_transpose_bias_grad")
def _conv_transpose_bias_grad_fake(grad_output):
    return grad_output.new_empty(_C.bias_grad_shape(grad_output))
