"""Backward formulas of the three ops, each written with the other two.

With T(x, w, g) = <conv_transpose(x, w), g>, a trilinear form:
  conv_transpose(x, w)             = dT/dg   (scatter forward)
  conv_transpose_input_grad(g, w)  = dT/dx   (gather: an ordinary convolution)
  conv_transpose_weight_grad(x, g) = dT/dw
  conv_transpose_backward(g, x, w) = (dT/dx, dT/dw), sharing one im2col of g
and the bias gradient is conv_transpose_bias_grad(g), g summed per channel.
The backward of each is therefore another face of T, so every gradient is
one of these ops again and gradients of every order work.

Only the tensors a backward needs are saved: the input only if the weight
needs a gradient, the weight only if the input does.
"""

import torch

ops = torch.ops.torch_tconv


def _spatial(shape, spatial_dims):
    return list(shape[len(shape) - spatial_dims:])


def _params(ctx):
    return ctx.stride, ctx.padding, ctx.dilation, ctx.groups


def _save(ctx, stride, padding, dilation, groups, **tensors):
    """Stores the hyper-parameters, and each tensor only where a gradient
    that needs it is wanted: tensors maps a name to (tensor, needed)."""
    ctx.stride, ctx.padding, ctx.dilation, ctx.groups = stride, padding, dilation, groups
    names = [name for name, (_, needed) in tensors.items() if needed]
    ctx.saved_names = names
    ctx.save_for_backward(*(tensors[name][0] for name in names))


def _saved(ctx):
    return dict(zip(ctx.saved_names, ctx.saved_tensors))


# --- conv_transpose(input, weight, bias) -----------------------------------

def _forward_setup(ctx, inputs, output):
    input, weight, bias, stride, padding, _, dilation, groups, _ = inputs
    need_input, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    _save(ctx, stride, padding, dilation, groups,
          input=(input, need_weight), weight=(weight, need_input))
    spatial_dims = weight.dim() - 2
    ctx.input_size = _spatial(input.shape, spatial_dims)
    ctx.kernel_size = list(weight.shape[2:])
    ctx.batched = input.dim() == weight.dim()


def _forward_backward(ctx, grad_output):
    saved = _saved(ctx)
    grad_input = grad_weight = grad_bias = None
    if ctx.needs_input_grad[0] and ctx.needs_input_grad[1]:
        grad_input, grad_weight = ops.conv_transpose_backward(
            grad_output, saved["input"], saved["weight"], *_params(ctx))
    elif ctx.needs_input_grad[0]:
        grad_input = ops.conv_transpose_input_grad(
            grad_output, saved["weight"], ctx.input_size, *_params(ctx))
    elif ctx.needs_input_grad[1]:
        grad_weight = ops.conv_transpose_weight_grad(
            saved["input"], grad_output, ctx.kernel_size, *_params(ctx))
    if ctx.needs_input_grad[2]:
        grad_bias = ops.conv_transpose_bias_grad(
            grad_output if ctx.batched else grad_output.unsqueeze(0))
    return grad_input, grad_weight, grad_bias, None, None, None, None, None, None


# --- conv_transpose_input_grad(grad_output, weight) ------------------------

def _input_grad_setup(ctx, inputs, output):
    grad_output, weight, input_size, stride, padding, dilation, groups = inputs
    _save(ctx, stride, padding, dilation, groups,
          grad_output=(grad_output, ctx.needs_input_grad[1]),
          weight=(weight, ctx.needs_input_grad[0]))
    ctx.output_size = _spatial(grad_output.shape, weight.dim() - 2)
    ctx.kernel_size = list(weight.shape[2:])


def _input_grad_backward(ctx, grad_grad_input):
    saved = _saved(ctx)
    d_grad_output = d_weight = None
    if ctx.needs_input_grad[0]:
        d_grad_output = _forward_with_size(
            grad_grad_input, saved["weight"], ctx.output_size, ctx)
    if ctx.needs_input_grad[1]:
        d_weight = ops.conv_transpose_weight_grad(
            grad_grad_input, saved["grad_output"], ctx.kernel_size, *_params(ctx))
    return d_grad_output, d_weight, None, None, None, None, None


# --- conv_transpose_weight_grad(input, grad_output) ------------------------

def _weight_grad_setup(ctx, inputs, output):
    input, grad_output, kernel_size, stride, padding, dilation, groups = inputs
    _save(ctx, stride, padding, dilation, groups,
          input=(input, ctx.needs_input_grad[1]),
          grad_output=(grad_output, ctx.needs_input_grad[0]))
    spatial_dims = len(kernel_size)
    ctx.input_size = _spatial(input.shape, spatial_dims)
    ctx.output_size = _spatial(grad_output.shape, spatial_dims)


def _weight_grad_backward(ctx, grad_grad_weight):
    saved = _saved(ctx)
    d_input = d_grad_output = None
    if ctx.needs_input_grad[0]:
        d_input = ops.conv_transpose_input_grad(
            saved["grad_output"], grad_grad_weight, ctx.input_size, *_params(ctx))
    if ctx.needs_input_grad[1]:
        d_grad_output = _forward_with_size(
            saved["input"], grad_grad_weight, ctx.output_size, ctx)
    return d_input, d_grad_output, None, None, None, None, None


# --- conv_transpose_backward(grad_output, input, weight) -------------------
# = (input_grad(g, w), weight_grad(x, g)), so its backward is the sum of the
# two backward formulas above.

def _backward_setup(ctx, inputs, output):
    grad_output, input, weight, stride, padding, dilation, groups = inputs
    need_grad_output, need_input, need_weight = ctx.needs_input_grad[:3]
    _save(ctx, stride, padding, dilation, groups,
          grad_output=(grad_output, need_input or need_weight),
          input=(input, need_grad_output), weight=(weight, need_grad_output))
    spatial_dims = weight.dim() - 2
    ctx.input_size = _spatial(input.shape, spatial_dims)
    ctx.output_size = _spatial(grad_output.shape, spatial_dims)
    ctx.kernel_size = list(weight.shape[2:])


def _backward_backward(ctx, grad_grad_input, grad_grad_weight):
    saved = _saved(ctx)
    d_grad_output = d_input = d_weight = None
    if ctx.needs_input_grad[0]:
        terms = []
        if grad_grad_input is not None:
            terms.append(_forward_with_size(grad_grad_input, saved["weight"], ctx.output_size, ctx))
        if grad_grad_weight is not None:
            terms.append(_forward_with_size(saved["input"], grad_grad_weight, ctx.output_size, ctx))
        d_grad_output = sum(terms[1:], terms[0]) if terms else None
    if ctx.needs_input_grad[1] and grad_grad_weight is not None:
        d_input = ops.conv_transpose_input_grad(
            saved["grad_output"], grad_grad_weight, ctx.input_size, *_params(ctx))
    if ctx.needs_input_grad[2] and grad_grad_input is not None:
        d_weight = ops.conv_transpose_weight_grad(
            grad_grad_input, saved["grad_output"], ctx.kernel_size, *_params(ctx))
    return d_grad_output, d_input, d_weight, None, None, None, None


# --- conv_transpose_bias_grad(grad_output) ----------------------------------
# A sum over every dim but the channels: its backward broadcasts back.

def _bias_grad_setup(ctx, inputs, output):
    (grad_output,) = inputs
    ctx.shape = grad_output.shape


def _bias_grad_backward(ctx, grad_grad_bias):
    shape = [1, -1] + [1] * (len(ctx.shape) - 2)
    return (grad_grad_bias.reshape(shape).expand(ctx.shape),)


def _forward_with_size(input, weight, output_size, ctx):
    """The forward op producing exactly output_size (spatial): the output
    padding is implied by the size, as in the gradients of the forward."""
    zeros = [0] * len(output_size)
    return ops.conv_transpose(
        input, weight, None, ctx.stride, ctx.padding, zeros, ctx.dilation, ctx.groups,
        output_size)


# --- binding ------------------------------------------------------------------
# Each op's Autograd kernel is a torch.autograd.Function whose forward runs the
# op's backend kernel and whose backward is the formula above. This is what
# torch.library.register_autograd builds, without its generic argument
# handling, which measured 21 us per differentiable forward on a small layer
# (fill_defaults re-reads the schema once per argument, pytorch/pytorch#195110;
# custom-op wrapper overhead in general: pytorch/pytorch#139500): about half of
# torch_tconv's host time per call, which is what small layers on the GPU
# wait for.

_LIBRARY = torch.library.Library("torch_tconv", "IMPL")
_AFTER_AUTOGRAD = torch._C._after_autograd_keyset


def _bind(name, setup_context, backward):
    op = getattr(ops, name).default
    arguments = op._schema.arguments
    # The dispatcher drops trailing arguments equal to their defaults.
    defaults = tuple(argument.default_value for argument in arguments)

    def run_below_autograd(keyset, args):
        with torch._C._AutoDispatchBelowAutograd():
            return op.redispatch(keyset & _AFTER_AUTOGRAD, *args)

    class Function(torch.autograd.Function):
        # The keyset rides last, so needs_input_grad[i] is the op's argument i.
        @staticmethod
        def forward(ctx, *args_and_keyset):
            *args, keyset = args_and_keyset
            output = run_below_autograd(keyset, args)
            setup_context(ctx, args, output)
            return output

        @staticmethod
        def backward(ctx, *grads):
            return (*backward(ctx, *grads), None)

    Function.__name__ = Function.__qualname__ = f"{name}_function"

    def autograd_kernel(keyset, *args):
        args += defaults[len(args):]
        if torch.is_grad_enabled() and torch._C._any_requires_grad(*args):
            return Function.apply(*args, keyset)
        return run_below_autograd(keyset, args)

    _LIBRARY.impl(name, autograd_kernel, "Autograd", with_keyset=True)


_bind("conv_transpose", _forward_setup, _forward_backward)
_bind("conv_transpose_input_grad", _input_grad_setup, _input_grad_backward)
_bind("conv_transpose_weight_grad", _weight_grad_setup, _weight_grad_backward)
_bind("conv_transpose_backward", _backward_setup, _backward_backward)
_bind("conv_transpose_bias_grad", _bias_grad_setup, _bias_grad_backward)
