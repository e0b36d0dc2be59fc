"""Backward and forward-mode (jvp) formulas of the five ops, each written
with the ops themselves.

With T(x, w, g) = <conv_transpose(x, w), g>, a trilinear form:
  conv_transpose(x, w)             = dT/dg   (scatter forward)
  conv_transpose_input_grad(g, w)  = dT/dx   (gather: an ordinary convolution)
  conv_transpose_weight_grad(x, g) = dT/dw
  conv_transpose_backward(g, x, w) = (dT/dx, dT/dw), sharing one im2col of g
and the bias gradient is conv_transpose_bias_grad(g), g summed per channel.
The backward of each is therefore another face of T, so every gradient is
one of these ops again and gradients of every order work. Each op is linear
in every tensor argument, so its tangent is the sum, over the arguments that
carry one, of the op with that argument replaced by its tangent.

Only the tensors a backward needs are saved: the input only if the weight
needs a gradient, the weight only if the input does.
"""

import contextlib

import torch
import torch.autograd.forward_ad as _forward_ad

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
    ctx.output_shape = output.shape


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


# --- forward mode --------------------------------------------------------------
# Each formula takes the op's arguments (primals) and the tangents of its
# tensor arguments (None where an argument carries none), and returns the
# tangent of each output (None where no argument contributes to it).

def _sum(terms):
    return sum(terms[1:], terms[0]) if terms else None


def _forward_jvp(ctx, args, tangents):
    input, weight, bias, *params = args
    input_t, weight_t, bias_t = tangents[:3]
    terms = []
    # The bias tangent joins the first term as its bias, once.
    if input_t is not None:
        terms.append(ops.conv_transpose(input_t, weight, bias_t, *params))
        bias_t = None
    if weight_t is not None:
        terms.append(ops.conv_transpose(input, weight_t, bias_t, *params))
        bias_t = None
    if bias_t is not None:
        spatial = [1] * (weight.dim() - 2)
        terms.append(bias_t.reshape([-1] + spatial).expand(ctx.output_shape).contiguous())
    return _sum(terms)


def _bilinear_jvp(op, args, tangents):
    """Tangent of op(first, second, *params), which is linear in each of its
    first two arguments."""
    first, second, *params = args
    first_t, second_t = tangents[:2]
    terms = []
    if first_t is not None:
        terms.append(op(first_t, second, *params))
    if second_t is not None:
        terms.append(op(first, second_t, *params))
    return _sum(terms)


def _input_grad_jvp(ctx, args, tangents):
    return _bilinear_jvp(ops.conv_transpose_input_grad, args, tangents)


def _weight_grad_jvp(ctx, args, tangents):
    return _bilinear_jvp(ops.conv_transpose_weight_grad, args, tangents)


def _backward_jvp(ctx, args, tangents):
    grad_output, input, weight, stride, padding, dilation, groups = args
    grad_output_t, input_t, weight_t = tangents[:3]
    params = (stride, padding, dilation, groups)
    input_size = _spatial(input.shape, weight.dim() - 2)
    kernel_size = list(weight.shape[2:])
    return (
        _input_grad_jvp(ctx, (grad_output, weight, input_size, *params), (grad_output_t, weight_t)),
        _weight_grad_jvp(ctx, (input, grad_output, kernel_size, *params), (input_t, grad_output_t)),
    )


def _bias_grad_jvp(ctx, args, tangents):
    (grad_output_t,) = tangents
    return None if grad_output_t is None else ops.conv_transpose_bias_grad(grad_output_t)


# --- binding ------------------------------------------------------------------
# Each op's Autograd kernel is a torch.autograd.Function whose forward runs the
# op's backend kernel, whose backward and jvp are the formulas above. It is in
# the setup_context form that torch.func requires, so grad, vjp, jacrev,
# jacfwd, hessian and vmap(grad) see through it. This is what
# torch.library.register_autograd builds, without its generic argument
# handling, which measured 21 us per differentiable forward on a small layer
# (fill_defaults re-reads the schema once per argument, pytorch/pytorch#195110;
# custom-op wrapper overhead in general: pytorch/pytorch#139500): about half of
# torch_tconv's host time per call, which is what small layers on the GPU
# wait for. Unlike register_autograd's kernel, this one also takes the
# Function's path while a forward-mode level is open: tensors that carry only
# a tangent do not require grad, and skipping the Function for them would
# drop their tangents, a silently zero derivative.

_LIBRARY = torch.library.Library("torch_tconv", "IMPL")
_AFTER_AUTOGRAD = torch._C._after_autograd_keyset


@contextlib.contextmanager
def _single_level_function_allowed():
    """Under torch.func transforms, lets Function record its node on the
    transform's wrapped tensors, as the C++ autograd kernels of torch's own
    ops do. functorch refuses a single-level Function under a transform by
    default because one called from user code, above the dispatcher, would
    see wrappers of several levels; ours runs at the op's Autograd key, where
    the dispatcher has already picked the level, so its forward's redispatch
    below autograd and its formulas (ops again) go through functorch's
    layers like any op's."""
    allowed = torch._C._functorch.get_single_level_autograd_function_allowed()
    torch._C._functorch.set_single_level_autograd_function_allowed(True)
    try:
        yield
    finally:
        torch._C._functorch.set_single_level_autograd_function_allowed(allowed)


def _forward_mode_active():
    """Whether a forward-mode AD level is open (forward_ad.dual_level, and
    torch.func.jvp/jacfwd/linearize, which open one)."""
    return _forward_ad._current_level >= 0


def _bind(name, setup_context, backward, jvp):
    op = getattr(ops, name).default
    arguments = op._schema.arguments
    # The dispatcher drops trailing arguments equal to their defaults.
    defaults = tuple(argument.default_value for argument in arguments)
    tensor_positions = tuple(i for i, argument in enumerate(arguments)
                             if str(argument.type) in ("Tensor", "Optional[Tensor]"))

    def run_below_autograd(keyset, args):
        with torch._C._AutoDispatchBelowAutograd():
            return op.redispatch(keyset & _AFTER_AUTOGRAD, *args)

    class Function(torch.autograd.function._SingleLevelFunction):
        # The keyset and the modes ride last, so needs_input_grad[i] is the
        # op's argument i.
        @staticmethod
        def forward(*args_keyset_modes):
            *args, keyset, modes = args_keyset_modes
            if modes is None:
                return run_below_autograd(keyset, args)
            # Under torch.func, the levels below this one differentiate the
            # redispatched call: they need the grad modes of the call, which
            # Function.apply switched off around forward.
            grad_enabled, forward_grad_enabled = modes
            with torch.set_grad_enabled(grad_enabled), \
                    _forward_ad._set_fwd_grad_enabled(forward_grad_enabled):
                return run_below_autograd(keyset, args)

        @staticmethod
        def setup_context(ctx, inputs, output):
            args = inputs[:-2]
            setup_context(ctx, args, output)
            if _forward_mode_active():
                # The primals of the jvp: the tensors through save_for_forward,
                # the rest as they are.
                ctx.save_for_forward(*(args[i] for i in tensor_positions))
                ctx.jvp_args = [None if i in tensor_positions else a for i, a in enumerate(args)]

        @staticmethod
        def backward(ctx, *grads):
            return (*backward(ctx, *grads), None, None)

        @staticmethod
        def jvp(ctx, *tangents):
            args = list(ctx.jvp_args)
            for i, saved in zip(tensor_positions, ctx.saved_tensors):
                args[i] = saved
            return jvp(ctx, args, [tangents[i] for i in tensor_positions])

    Function.__name__ = Function.__qualname__ = f"{name}_function"

    def autograd_kernel(keyset, *args):
        args += defaults[len(args):]
        differentiable = torch.is_grad_enabled() and torch._C._any_requires_grad(*args)
        if differentiable or _forward_mode_active():
            if torch._C._are_functorch_transforms_active():
                modes = (torch.is_grad_enabled(), torch._C._is_fwd_grad_enabled())
                with _single_level_function_allowed():
                    return Function.apply(*args, keyset, modes)
            return Function.apply(*args, keyset, None)
        return run_below_autograd(keyset, args)

    _LIBRARY.impl(name, autograd_kernel, "Autograd", with_keyset=True)


_bind("conv_transpose", _forward_setup, _forward_backward, _forward_jvp)
_bind("conv_transpose_input_grad", _input_grad_setup, _input_grad_backward, _input_grad_jvp)
_bind("conv_transpose_weight_grad", _weight_grad_setup, _weight_grad_backward, _weight_grad_jvp)
_bind("conv_transpose_backward", _backward_setup, _backward_backward, _backward_jvp)
_bind("conv_transpose_bias_grad", _bias_grad_setup, _bias_grad_backward, _bias_grad_jvp)
