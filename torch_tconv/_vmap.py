"""Batching rules of the five ops, for torch.func.vmap (and so jacfwd, jacrev
and per-sample gradients), with no per-sample loop.

A vmapped dimension of size B folds into a dimension the ops already have:
  - into the batch N when only the image-like tensors (input, grad_output)
    carry it and the weight does not: every sample meets the same weight;
  - into the groups otherwise: B copies of a layer with `groups` groups are
    one layer with B * groups groups, its channels B-major. A tensor without
    the vmapped dim is repeated B times along its channels.
The weight gradient sums over N, so it always folds into the groups.
Unbatched tensors (C, *spatial) take the vmapped dim as their batch.
"""

import torch

ops = torch.ops.torch_tconv


def _to_batch(t, bdim):
    """Physical tensor with the vmapped dim at bdim -> that dim at 0."""
    return t.movedim(bdim, 0)


def _into_channels(t, bdim, batch_size, channel_dim):
    """Merges the vmapped dim into the channel dim (B-major), repeating t
    B times there if it has no vmapped dim (bdim None). channel_dim is the
    logical position of the channels."""
    if bdim is None:
        t = t.unsqueeze(channel_dim)
        shape = list(t.shape)
        shape[channel_dim] = batch_size
        t = t.expand(shape)
    else:
        t = t.movedim(bdim, channel_dim)
    return t.flatten(channel_dim, channel_dim + 1)


def _out_of_channels(t, batch_size, channel_dim):
    """The inverse of _into_channels: returns the result and its vmapped dim."""
    return t.unflatten(channel_dim, (batch_size, -1)), channel_dim


def _channel_dim(t, bdim, spatial_dims):
    """Channel position of an image-like tensor: 0 unbatched, 1 batched."""
    logical_dim = t.dim() - (bdim is not None)
    return logical_dim - spatial_dims - 1


def _logical_shape(t, bdim):
    shape = list(t.shape)
    if bdim is not None:
        del shape[bdim]
    return shape


def _spatial_dims_of_weight(weight, bdim):
    return weight.dim() - (bdim is not None) - 2


def _fold_batch(t, bdim, spatial_dims):
    """Folds the vmapped dim into N (batched tensors) or makes it N
    (unbatched ones). Returns the tensor and how to undo it on a result."""
    t = _to_batch(t, bdim)
    if _channel_dim(t, 0, spatial_dims) == 0:
        return t, lambda out: (out, 0)
    batch_size = t.shape[0]
    return t.flatten(0, 1), lambda out: (out.unflatten(0, (batch_size, -1)), 0)


def _conv_transpose_vmap(info, in_dims, input, weight, bias, stride, padding,
                         output_padding, dilation, groups, output_size=None):
    input_bdim, weight_bdim, bias_bdim = in_dims[:3]
    spatial_dims = _spatial_dims_of_weight(weight, weight_bdim)
    params = (stride, padding, output_padding, dilation)
    if weight_bdim is None:
        # The bias is added here only where it is the same for every sample.
        fused_bias = bias if bias_bdim is None else None
        if input_bdim is None:
            out, out_dim = ops.conv_transpose(input, weight, fused_bias, *params, groups,
                                              output_size), None
        else:
            x, unfold = _fold_batch(input, input_bdim, spatial_dims)
            out, out_dim = unfold(ops.conv_transpose(x, weight, fused_bias, *params, groups,
                                                     output_size))
        if bias_bdim is not None:
            b = _to_batch(bias, bias_bdim).reshape([info.batch_size, -1] + [1] * spatial_dims)
            if out_dim is None:
                out, out_dim = out.unsqueeze(0), 0
            # b is (B, C_out, 1...): it lines up with the vmapped dim and the
            # channels of a batched output once N is made a broadcast dim.
            if out.dim() == spatial_dims + 3:
                b = b.unsqueeze(1)
            out = out.movedim(out_dim, 0) + b
            out_dim = 0
        return out, out_dim

    batch_size = info.batch_size
    channel_dim = _channel_dim(input, input_bdim, spatial_dims)
    x = _into_channels(input, input_bdim, batch_size, channel_dim)
    w = _into_channels(weight, weight_bdim, batch_size, 0)
    b = None if bias is None else _into_channels(bias, bias_bdim, batch_size, 0)
    out = ops.conv_transpose(x, w, b, *params, groups * batch_size, output_size)
    return _out_of_channels(out, batch_size, channel_dim)


def _conv_transpose_input_grad_vmap(info, in_dims, grad_output, weight, input_size, stride,
                                    padding, dilation, groups):
    grad_output_bdim, weight_bdim = in_dims[:2]
    spatial_dims = _spatial_dims_of_weight(weight, weight_bdim)
    params = (input_size, stride, padding, dilation)
    if grad_output_bdim is None and weight_bdim is None:  # from the fused backward's rule
        return ops.conv_transpose_input_grad(grad_output, weight, *params, groups), None
    if weight_bdim is None:
        g, unfold = _fold_batch(grad_output, grad_output_bdim, spatial_dims)
        return unfold(ops.conv_transpose_input_grad(g, weight, *params, groups))
    batch_size = info.batch_size
    channel_dim = _channel_dim(grad_output, grad_output_bdim, spatial_dims)
    g = _into_channels(grad_output, grad_output_bdim, batch_size, channel_dim)
    w = _into_channels(weight, weight_bdim, batch_size, 0)
    out = ops.conv_transpose_input_grad(g, w, *params, groups * batch_size)
    return _out_of_channels(out, batch_size, channel_dim)


def _conv_transpose_weight_grad_vmap(info, in_dims, input, grad_output, kernel_size, stride,
                                     padding, dilation, groups):
    input_bdim, grad_output_bdim = in_dims[:2]
    spatial_dims = len(kernel_size)
    if input_bdim is None and grad_output_bdim is None:  # from the fused backward's rule
        return ops.conv_transpose_weight_grad(input, grad_output, kernel_size, stride, padding,
                                              dilation, groups), None
    batch_size = info.batch_size
    channel_dim = _channel_dim(input, input_bdim, spatial_dims)
    x = _into_channels(input, input_bdim, batch_size, channel_dim)
    g = _into_channels(grad_output, grad_output_bdim, batch_size, channel_dim)
    out = ops.conv_transpose_weight_grad(x, g, kernel_size, stride, padding, dilation,
                                         groups * batch_size)
    return _out_of_channels(out, batch_size, 0)


def _conv_transpose_backward_vmap(info, in_dims, grad_output, input, weight, stride, padding,
                                  dilation, groups):
    grad_output_bdim, input_bdim, weight_bdim = in_dims[:3]
    spatial_dims = _spatial_dims_of_weight(weight, weight_bdim)
    input_size = _logical_shape(input, input_bdim)[-spatial_dims:]
    kernel_size = _logical_shape(weight, weight_bdim)[-spatial_dims:]
    params = (stride, padding, dilation, groups)
    grad_input, grad_input_dim = _conv_transpose_input_grad_vmap(
        info, (grad_output_bdim, weight_bdim), grad_output, weight, input_size, *params)
    grad_weight, grad_weight_dim = _conv_transpose_weight_grad_vmap(
        info, (input_bdim, grad_output_bdim), input, grad_output, kernel_size, *params)
    return (grad_input, grad_weight), (grad_input_dim, grad_weight_dim)


def _conv_transpose_bias_grad_vmap(info, in_dims, grad_output):
    (bdim,) = in_dims
    g = _into_channels(grad_output, bdim, info.batch_size, 1)
    return _out_of_channels(ops.conv_transpose_bias_grad(g), info.batch_size, 0)


for _name, _rule in (
    ("conv_transpose", _conv_transpose_vmap),
    ("conv_transpose_input_grad", _conv_transpose_input_grad_vmap),
    ("conv_transpose_weight_grad", _conv_transpose_weight_grad_vmap),
    ("conv_transpose_backward", _conv_transpose_backward_vmap),
    ("conv_transpose_bias_grad", _conv_transpose_bias_grad_vmap),
):
    torch.library.register_vmap(f"torch_tconv::{_name}", _rule)
