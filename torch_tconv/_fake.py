"""Fake (meta) kernels: output shapes without computing, for torch.compile.

The shapes and the argument checks come from the same C++ functions that the
real kernels call (csrc/validation.cpp), so a bad argument fails at
trace time with the same message as in eager mode.
"""

import torch

from . import _C


def _empty_activation(like, shape, spatial_dims):
    """An activation-shaped result in the memory format of the ops' results
    (Problem::result_format in csrc/problem.h, the same rule): channels-last
    where the batched activation it comes from is channels-last and not also
    contiguous."""
    memory_format = torch.contiguous_format
    if like.dim() == spatial_dims + 2 and like.dim() in (4, 5) and not like.is_contiguous():
        channels_last = torch.channels_last if like.dim() == 4 else torch.channels_last_3d
        if like.is_contiguous(memory_format=channels_last):
            memory_format = channels_last
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=memory_format)


@torch.library.register_fake("torch_tconv::conv_transpose")
def _conv_transpose_fake(
    input, weight, bias, stride, padding, output_padding, dilation, groups, output_size=None
):
    shape = _C.forward_output_shape(
        input, weight, bias, stride, padding, output_padding, dilation, groups, output_size
    )
    return _empty_activation(input, shape, weight.dim() - 2)


@torch.library.register_fake("torch_tconv::conv_transpose_input_grad")
def _conv_transpose_input_grad_fake(
    grad_output, weight, input_size, stride, padding, dilation, groups
):
    shape = _C.input_grad_shape(
        grad_output, weight, input_size, stride, padding, dilation, groups
    )
    return _empty_activation(grad_output, shape, weight.dim() - 2)


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
    return (_empty_activation(grad_output, input_shape, weight.dim() - 2),
            weight.new_empty(weight_shape))


@torch.library.register_fake("torch_tconv::conv_transpose_bias_grad")
def _conv_transpose_bias_grad_fake(grad_output):
    return grad_output.new_empty(_C.bias_grad_shape(grad_output))
