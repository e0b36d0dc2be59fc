"""The command line: ``python -m torch_tconv <command> [options]``.

  info          versions, whether the CUDA kernels were compiled and for which
                architectures, the CPU and the visible devices
  shape         a transposed convolution's output size; the output_padding
                that gives a target size; the same settings in PyTorch, Keras
                and JAX terms
  check         a short parity check against torch.nn.functional on this
                machine (CPU, and CUDA when there is one): forward and gradients
  bench         the benchmark against torch.nn.functional (torch_tconv.bench)
  checkerboard  tap counts and dead phases of a 2-D layer, and a PNG of its
                checkerboard pattern (torch_tconv.checkerboard)

Each command has --help. Sizes of 1-D, 2-D and 3-D layers are given as one,
two or three values; kernel, stride, dilation and output padding as one value
(every dim) or one per dim.
"""

import argparse
import json
import math
import os
import platform
import re
import sys
import time

import torch
import torch.nn.functional as F

import torch_tconv

from . import _C, functional

# Relative error (max |ours - reference| / max |reference|) allowed by `check`.
CHECK_TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4, torch.bfloat16: 3e-2}
_DTYPE_NAMES = {"float64": torch.float64, "float32": torch.float32,
                "bfloat16": torch.bfloat16}


class CliError(Exception):
    """A mistake in the command's arguments: printed, exit status 2."""


# --- shared argument parsing ------------------------------------------------------

def _per_dim(values, name, dims):
    """One value for every dim, or one per dim, as a list of `dims` ints."""
    if values is None:
        return None
    if len(values) == 1:
        return [values[0]] * dims
    if len(values) != dims:
        raise CliError(f"{name}: give one value (every dim) or {dims} (one per dim) for a "
                       f"{dims}-D layer, got {len(values)}: {values}")
    return list(values)


def _parse_padding(values, dims):
    """--padding as the functionals take it: 'same' or 'valid'; ints (one,
    or one per dim); or one start,end pair per dim (a single pair: every dim)."""
    if len(values) == 1 and values[0].lower() in ("same", "valid"):
        return values[0].lower()
    if all(re.fullmatch(r"-?\d+[,:]-?\d+", v) for v in values):
        pairs = [tuple(int(p) for p in re.split("[,:]", v)) for v in values]
        return tuple(_per_dim(pairs, "--padding", dims))
    if all(re.fullmatch(r"-?\d+", v) for v in values):
        return _per_dim([int(v) for v in values], "--padding", dims)
    raise CliError("--padding: give 'same', 'valid', ints, or one start,end pair per dim "
                   f"(e.g. 0,1 1,0), got {' '.join(values)}")


def _show(values):
    """An int when every dim has the same value, else a tuple."""
    values = [tuple(v) if isinstance(v, list) else v for v in values]
    return values[0] if len(set(values)) == 1 else tuple(values)


def _show_padding(padding):
    """'same', an int or a tuple of ints, or a tuple of (start, end) pairs."""
    if isinstance(padding, str):
        return repr(padding)
    if isinstance(padding[0], (tuple, list)):
        return str(tuple(tuple(p) for p in padding))
    return str(_show(padding))


# --- info -------------------------------------------------------------------------

def build_info():
    """What setup.py recorded when it built the extension (torch_tconv/_build_info.py,
    written at build time), or None for a build that predates it."""
    try:
        from . import _build_info
    except ImportError:
        return None
    return {name.lower(): value for name, value in vars(_build_info).items()
            if name.isupper()}


def _gradient_gemm_in_use():
    """What cpu_gemm "auto" runs the gradients' large float32 GEMMs on here."""
    large = (1024, 1024, 1024)
    if torch_tconv._C.onednn_gradient_gemm_preferred(*large):
        return "onednn"
    return "blocked" if torch_tconv._C.blocked_gradient_gemm_preferred(*large) else "aten"


def machine_info():
    from .bench import cpu_info, cpu_microarchitecture, transparent_huge_pages

    cpu_model, isa = cpu_info()
    recorded = build_info()
    cuda_kernels = torch_tconv.has_cuda_kernels()
    if recorded is None:
        archs = "unknown (no build info: the extension predates it)"
    elif not recorded.get("with_cuda"):
        archs = None
    else:
        archs = recorded.get("cuda_arch_list") or "unknown"
    devices = [{"device": "cpu", "name": cpu_model}]
    cuda_available = torch.cuda.is_available()
    if cuda_available:
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append({"device": f"cuda:{index}", "name": props.name,
                            "capability": f"{props.major}.{props.minor}",
                            "memory_gib": round(props.total_memory / 2**30, 1)})
    return {
        "torch_tconv": torch_tconv.__version__,
        "torch_tconv_path": torch_tconv.__path__[0],
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda_available else None,
        "python": platform.python_version(),
        "cuda_kernels": cuda_kernels,
        "cuda_architectures": archs,
        "build": recorded,
        "cpu_model": cpu_model,
        "cpu_microarchitecture": cpu_microarchitecture(),
        "cpu_isa": isa,
        "cpu_kernel_variants": torch_tconv.backends.supported_cpu_isas(),
        "cpu_kernel_variant_in_use": torch_tconv.backends.cpu_isa_in_use(),
        # What cpu_gemm "auto" runs for large float32 GEMMs here: the
        # forward's, and the gradients'.
        "cpu_gemm_in_use": ("blocked" if torch_tconv._C.blocked_gemm_preferred(1024, 1024, 1024)
                            else "aten"),
        "cpu_gradient_gemm_in_use": _gradient_gemm_in_use(),
        "transparent_huge_pages": transparent_huge_pages(),
        "cpu_huge_pages": torch_tconv.backends.cpu_huge_pages,
        "cpu_count": (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else os.cpu_count()),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": cuda_available,
        "devices": devices,
    }


def cmd_info(args):
    info = machine_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"torch_tconv {info['torch_tconv']} ({info['torch_tconv_path']})")
    print(f"torch {info['torch']}" + (f", CUDA {info['torch_cuda']}" if info["torch_cuda"]
                                      else ", CPU-only build")
          + (f", cuDNN {info['cudnn']}" if info["cudnn"] else "")
          + f"; python {info['python']}")
    if info["cuda_kernels"]:
        print(f"CUDA kernels: compiled, architectures {info['cuda_architectures']}")
    else:
        print("CUDA kernels: not compiled (CPU kernels only)")
    if info["build"]:
        built = info["build"]
        built_torch = built.get("torch_version", "unknown")
        print(f"built against torch {built_torch}"
              + (f" (CUDA {built['cuda_version']})" if built.get("cuda_version") else "")
              + (" with AddressSanitizer and UBSan" if built.get("sanitize") else "")
              + (f"; {built['reason']}" if built.get("reason") else "")
              + ("" if built_torch in ("unknown", info["torch"]) else
                 f"; WARNING: running under torch {info['torch']}, rebuild against it"))
    print(f"CPU: {info['cpu_model']}"
          + (f" ({info['cpu_microarchitecture']})" if info["cpu_microarchitecture"] else "")
          + f"; {info['cpu_count']} usable cores, "
          f"{info['torch_threads']} torch threads; "
          f"ISA: {' '.join(info['cpu_isa']) or 'none listed'}")
    print(f"CPU kernels: variant {info['cpu_kernel_variant_in_use']} in use "
          f"(this processor runs {', '.join(info['cpu_kernel_variants'])}; "
          "torch_tconv.backends.cpu_isa or TORCH_TCONV_CPU_ISA choose)")
    engines = {"blocked": "torch_tconv's register-blocked tiles", "aten": "ATen's (MKL/oneDNN)",
               "onednn": "oneDNN's matmul"}
    print("CPU GEMMs (float32): forward "
          + engines[info["cpu_gemm_in_use"]] + ", gradients "
          + engines[info["cpu_gradient_gemm_in_use"]]
          + ("; torch's MKL runs AVX2 kernels on this processor"
             if "aten" not in (info["cpu_gemm_in_use"], info["cpu_gradient_gemm_in_use"]) else "")
          + "; torch_tconv.backends.cpu_gemm chooses")
    mode = info["transparent_huge_pages"]
    print(f"CPU results of 32 MiB and more: "
          + ("advised for transparent huge pages" if info["cpu_huge_pages"] else "not advised")
          + f" (the kernel's mode: {mode or 'unknown'}"
          + ("; 'never' ignores the advice" if mode == "never" else "")
          + "); torch_tconv.backends.cpu_huge_pages chooses")
    gpus = info["devices"][1:]
    if not gpus:
        print("CUDA devices: none visible" + ("" if info["torch_cuda"] else
                                               " (torch is a CPU-only build)"))
    for gpu in gpus:
        print(f"{gpu['device']}: {gpu['name']}, compute capability {gpu['capability']}, "
              f"{gpu['memory_gib']} GiB")
    return 0


# --- shape ------------------------------------------------------------------------

def _meta_output(dims, size, kernel, stride, padding, output_padding, dilation):
    """The output's spatial size, from the functional itself on meta tensors:
    the package's padding resolution and the op's validation and shape
    arithmetic (validation.cpp), no second formula."""
    conv = getattr(torch_tconv, f"conv_transpose{dims}d")
    x = torch.empty(1, 1, *size, device="meta")
    w = torch.empty(1, 1, *kernel, device="meta")
    return list(conv(x, w, None, stride, padding, output_padding, 1, dilation).shape[2:])


def _crops(dims, padding, output_padding, kernel, stride, dilation):
    """(starts, ends, output_padding) of the ops, resolved as the functionals do."""
    pad, op = functional._op_padding(padding, list(output_padding), kernel, stride, dilation,
                                     dims, f"conv_transpose{dims}d")
    pad, op = list(pad), list(op)
    if len(pad) == dims:
        return pad, pad, op
    return pad[:dims], pad[dims:], op


def _equivalents(dims, kernel, stride, dilation, full, starts, length, prefer="same"):
    """The layer that keeps `length` outputs from `starts` on of the full
    output (positions past its end are zeros), in PyTorch, Keras and JAX terms.
    Where 'same' and 'valid' coincide (a kernel extent below the stride), the
    mode named by `prefer` is given."""
    extent = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    result = {}

    # PyTorch: the same crop p at both ends, then output_padding rows at the end.
    torch_op = [n - (f - 2 * s) for n, f, s in zip(length, full, starts)]
    if all(0 <= o < max(st, d) for o, st, d in zip(torch_op, stride, dilation)):
        result["pytorch"] = {"padding": starts, "output_padding": torch_op,
                             "text": f"nn.ConvTranspose{dims}d(..., kernel_size={_show(kernel)}, "
                                     f"stride={_show(stride)}, padding={_show(starts)}, "
                                     f"output_padding={_show(torch_op)}, "
                                     f"dilation={_show(dilation)})"}
    else:
        result["pytorch"] = {"padding": None, "output_padding": None,
                             "text": "no equivalent (PyTorch crops the same amount from both "
                                     "ends, then extends the end by output_padding < "
                                     "max(stride, dilation)); crop the output of padding=0 "
                                     "instead"}

    # Keras / TensorFlow: 'same' and 'valid' as resolved by the package's
    # padding_for_mode; 'valid' with output_padding (Keras: (in - 1) * s + k_e
    # + output_padding, nothing cropped at the start); else a cropping layer
    # after 'valid'.
    modes = {}
    for mode in ("same", "valid"):
        pad, op = _C.padding_for_mode(dims, mode, kernel, stride, dilation)
        mode_starts = list(pad[:dims])
        mode_length = [f - s - e + o for f, s, e, o in
                       zip(full, pad[:dims], pad[dims:], op)]
        modes[mode] = (mode_starts, mode_length)
    layer = f"Conv{dims}DTranspose(filters, kernel_size={_show(kernel)}, strides={_show(stride)}"
    if any(d != 1 for d in dilation):
        layer += f", dilation_rate={_show(dilation)}"
    keras_op = [n - f for n, f in zip(length, full)]
    keras = {"padding": "valid", "output_padding": None, "cropping": None}
    matching = [m for m in (prefer, "same", "valid") if modes[m] == (starts, length)]
    if matching:
        keras["padding"] = matching[0]
        text = f"{layer}, padding='{matching[0]}')"
    elif all(s == 0 for s in starts) and all(0 <= o < st for o, st in zip(keras_op, stride)):
        keras["output_padding"] = keras_op
        text = f"{layer}, padding='valid', output_padding={_show(keras_op)})"
    else:
        crops = [[s, v - s - n] for s, v, n in zip(starts, modes["valid"][1], length)]
        if all(a >= 0 and b >= 0 for a, b in crops):
            keras["cropping"] = crops
            crop_arg = tuple(crops[0]) if dims == 1 else tuple(tuple(c) for c in crops)
            text = (f"no single-layer equivalent: {layer}, padding='valid') then "
                    f"Cropping{dims}D({crop_arg})")
        else:
            keras["padding"] = None
            text = "no equivalent"
    result["keras"] = {**keras, "text": text}

    # JAX: lax.conv_transpose(transpose_kernel=True) pads the stride-dilated
    # input by explicit (low, high) pairs: k_e - 1 - crop at each end.
    pairs = [(e - 1 - s, e - 1 - (f - s - n)) for e, s, f, n in zip(extent, starts, full, length)]
    jax_padding = f"'{matching[0].upper()}'" if matching else str(tuple(pairs))
    text = f"lax.conv_transpose(..., strides={tuple(stride)}, padding={jax_padding}"
    if any(d != 1 for d in dilation):
        text += f", rhs_dilation={tuple(dilation)}"
    text += ", transpose_kernel=True)"
    if not jax_padding.startswith("("):
        text += f"; explicitly padding={tuple(pairs)}"
    result["jax"] = {"padding": pairs, "text": text}
    return result


def shape_report(args):
    dims = len(args.size)
    if not 1 <= dims <= 3:
        raise CliError(f"give 1, 2 or 3 input sizes (1-D, 2-D, 3-D), got {len(args.size)}")
    size = list(args.size)
    kernel = _per_dim(args.kernel, "--kernel", dims)
    stride = _per_dim(args.stride, "--stride", dims)
    dilation = _per_dim(args.dilation, "--dilation", dims)
    output_padding = _per_dim(args.output_padding, "--output-padding", dims)
    padding = _parse_padding(args.padding, dims)
    target = _per_dim(args.target, "--target", dims)
    try:
        output = _meta_output(dims, size, kernel, stride, padding, output_padding, dilation)
        starts, ends, resolved_op = _crops(dims, padding, output_padding, kernel, stride,
                                           dilation)
        zeros = [0] * dims
        full = _meta_output(dims, size, kernel, stride, 0, zeros, dilation)
    except (RuntimeError, ValueError, TypeError) as error:
        raise CliError(str(error).splitlines()[0]) from error
    report = {"dims": dims, "input": size, "kernel": kernel, "stride": stride,
              "padding": padding if isinstance(padding, str) else list(padding),
              "output_padding": output_padding, "dilation": dilation, "output": output,
              "full_output": full, "crop": [[s, e] for s, e in zip(starts, ends)],
              "resolved_output_padding": resolved_op}
    length = output
    if target is not None:
        found = {"size": target}
        if isinstance(padding, str):
            found["reachable"] = target == output
            found["range"] = [[n, n] for n in output]
            found["output_padding"] = zeros if found["reachable"] else None
            if not found["reachable"]:
                found["message"] = (
                    f"with padding={padding!r} output_padding must be 0, so the only size is "
                    f"{tuple(output)}; use integer or per-side padding to reach another")
        else:
            smallest = _meta_output(dims, size, kernel, stride, padding, zeros, dilation)
            # output_padding < max(stride, dilation), the op's rule.
            highest = [n + max(s, d) - 1 for n, s, d in zip(smallest, stride, dilation)]
            found["range"] = [[lo, hi] for lo, hi in zip(smallest, highest)]
            # The op decides: it implies output_padding from a requested
            # output size and raises ValueError when none gives it.
            x = torch.empty(1, 1, *size, device="meta")
            w = torch.empty(1, 1, *kernel, device="meta")
            try:
                op_padding = starts if starts == ends else starts + ends
                torch.ops.torch_tconv.conv_transpose(x, w, None, stride, op_padding, zeros,
                                                     dilation, 1, target)
                found["reachable"] = True
                found["output_padding"] = [t - n for t, n in zip(target, smallest)]
                length = target
            except ValueError as error:
                found["reachable"] = False
                found["output_padding"] = None
                ranges = " x ".join(f"[{lo}, {hi}]" for lo, hi in found["range"])
                found["message"] = (f"target {tuple(target)} is unreachable: output sizes "
                                    f"reachable with output_padding are {ranges} "
                                    f"(output_padding < max(stride, dilation)); "
                                    f"{str(error).splitlines()[0]}")
        report["target"] = found
    report["equivalents"] = _equivalents(dims, kernel, stride, dilation, full, starts, length,
                                         prefer="valid" if padding == "valid" else "same")
    return report


def cmd_shape(args):
    report = shape_report(args)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0 if report.get("target", {}).get("reachable", True) else 1
    dims = report["dims"]
    print(f"conv_transpose{dims}d: input {tuple(report['input'])}, "
          f"kernel={_show(report['kernel'])}, stride={_show(report['stride'])}, "
          f"padding={_show_padding(report['padding'])}, "
          f"output_padding={_show(report['output_padding'])}, "
          f"dilation={_show(report['dilation'])}")
    print(f"output size: {tuple(report['output'])}")
    print(f"  full output (in - 1) * stride + dilation * (kernel - 1) + 1: "
          f"{tuple(report['full_output'])}; cropped (start, end) per dim: "
          f"{tuple(tuple(c) for c in report['crop'])}; output_padding "
          f"{tuple(report['resolved_output_padding'])}")
    status = 0
    if "target" in report:
        found = report["target"]
        if found["reachable"]:
            print(f"target {tuple(found['size'])}: output_padding={_show(found['output_padding'])}"
                  + ("" if isinstance(report["padding"], str) else
                     "  (reachable: " + " x ".join(f"[{lo}, {hi}]" for lo, hi in found["range"])
                     + ")"))
        else:
            print(found["message"])
            status = 1
    print("equivalents" + (" (for the target)" if report.get("target", {}).get("reachable")
                           else "") + ":")
    for name, label in (("pytorch", "PyTorch"), ("keras", "Keras/TF"), ("jax", "JAX")):
        print(f"  {label:9} {report['equivalents'][name]['text']}")
    return status


# --- check ------------------------------------------------------------------------

# (name, dims, batch, C_in, C_out, input size, kernel, conv keyword arguments, channels-last)
CHECK_LAYERS = [
    ("k4 s2 p1", 2, 2, 6, 4, (5, 7), 4, dict(stride=2, padding=1), False),
    ("k3 s2 p1 op1 groups=2", 2, 2, 4, 6, (6, 5), 3,
     dict(stride=2, padding=1, output_padding=1, groups=2), False),
    ("k3 s2 dilation=2 'same'", 2, 2, 3, 5, (4, 6), 3,
     dict(stride=2, padding="same", dilation=2), False),
    ("k2 s3 'valid'", 2, 1, 3, 2, (4, 3), 2, dict(stride=3, padding="valid"), False),
    ("k3 s2 per-side ((0, 2), (1, 0)) op1", 2, 2, 3, 4, (5, 4), 3,
     dict(stride=2, padding=((0, 2), (1, 0)), output_padding=1), False),
    ("depthwise k4 s2 p1 groups=4", 2, 2, 4, 4, (6, 6), 4,
     dict(stride=2, padding=1, groups=4), False),
    ("channels-last k2 s2", 2, 2, 8, 4, (5, 6), 2, dict(stride=2), True),
    ("k16 s8 p4", 1, 2, 4, 3, (9,), 16, dict(stride=8, padding=4), False),
    ("k3 s2 p1 op1", 3, 1, 3, 2, (3, 4, 3), 3,
     dict(stride=2, padding=1, output_padding=1), False),
]
_TORCH_CONV = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _reference(dims, x, w, b, kwargs):
    """torch.nn.functional's result for kwargs: directly for int padding; for
    'same', 'valid' and per-side padding, which torch lacks, its full output
    (padding 0) cropped at each end as the package resolves the padding."""
    conv = _TORCH_CONV[dims]
    padding = kwargs.get("padding", 0)
    if not isinstance(padding, str) and not (
            isinstance(padding, tuple) and padding and isinstance(padding[0], tuple)):
        return conv(x, w, b, **kwargs)
    stride = functional._expand(kwargs.get("stride", 1), "stride", dims, "check")
    dilation = functional._expand(kwargs.get("dilation", 1), "dilation", dims, "check")
    output_padding = functional._expand(kwargs.get("output_padding", 0), "output_padding",
                                        dims, "check")
    starts, ends, op = _crops(dims, padding, output_padding, list(w.shape[2:]), stride,
                              dilation)
    full = conv(x, w, None, stride, 0, 0, kwargs.get("groups", 1), dilation)
    widths = []
    for j in reversed(range(dims)):  # F.pad: the last dim first; negative widths crop
        widths += [-starts[j], op[j] - ends[j]]
    return F.pad(full, widths) + b.reshape([-1] + [1] * dims)


def _relative_error(value, reference):
    value, reference = value.detach().double().cpu(), reference.detach().double().cpu()
    if value.shape != reference.shape:
        return math.inf
    scale = reference.abs().max().item()
    error = (value - reference).abs().max().item()
    return error / scale if scale > 0 else error


def check_layer(layer, device, dtype, seed):
    """(errors by quantity, shape text) of one layer against the float64 reference."""
    name, dims, batch, c_in, c_out, size, kernel, kwargs, channels_last = layer
    generator = torch.Generator().manual_seed(seed)
    groups = kwargs.get("groups", 1)

    def rand(*shape):
        # Rounded to dtype first, so that both sides see the same values.
        return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)

    x = rand(batch, c_in, *size)
    w = rand(c_in, c_out // groups, *([kernel] * dims))
    b = rand(c_out)
    layout = {4: torch.channels_last, 5: torch.channels_last_3d}.get(x.dim())
    if channels_last:
        x = x.contiguous(memory_format=layout)
    ours_in = [t.to(device).detach().requires_grad_() for t in (x, w, b)]
    reference_in = [t.double().detach().requires_grad_() for t in (x, w, b)]

    conv = getattr(torch_tconv, f"conv_transpose{dims}d")
    out = conv(*ours_in, **kwargs)
    reference = _reference(dims, *reference_in, kwargs)
    grad_out = torch.randn(reference.shape, generator=generator, dtype=torch.float64).to(dtype)
    grads = torch.autograd.grad(out, ours_in, grad_out.to(device).contiguous(
        memory_format=layout if channels_last else torch.contiguous_format))
    reference_grads = torch.autograd.grad(reference, reference_in, grad_out.double())
    errors = {"out": _relative_error(out, reference)}
    for key, value, expected in zip(("grad_input", "grad_weight", "grad_bias"), grads,
                                    reference_grads):
        errors[key] = _relative_error(value, expected)
    shapes = f"{tuple(x.shape)} -> {tuple(out.shape)}"
    return errors, shapes


def _check_devices(which):
    cuda = torch.cuda.is_available() and torch_tconv.has_cuda_kernels()
    if which == "cuda" and not cuda:
        raise CliError("CUDA requested, but " + (
            "torch sees no GPU" if not torch.cuda.is_available()
            else "this build has no CUDA kernels"))
    return {"cpu": ["cpu"], "cuda": ["cuda"], "all": ["cpu"] + (["cuda"] if cuda else [])}[which]


def _check_dtypes(device, names):
    dtypes = [_DTYPE_NAMES[n] for n in names]
    if device == "cuda" and not torch.cuda.is_bf16_supported():
        dtypes = [d for d in dtypes if d != torch.bfloat16]
    return dtypes


def cmd_check(args):
    devices = _check_devices(args.device)
    if "cuda" in devices:
        # Full float32 products: TF32 would be judged against float32's tolerance.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    start = time.perf_counter()
    failures = total = 0
    print(f"torch_tconv {torch_tconv.__version__} against torch.nn.functional "
          f"(torch {torch.__version__}), float64 reference; algorithm={args.algorithm}; "
          "max relative errors (max |error| / max |reference|) of out, grad_input, "
          "grad_weight, grad_bias")
    with torch_tconv.backends.flags(algorithm=args.algorithm):
        for device in devices:
            for dtype in _check_dtypes(device, args.dtypes):
                tolerance = CHECK_TOLERANCE[dtype]
                dtype_name = str(dtype).replace("torch.", "")
                for seed, layer in enumerate(CHECK_LAYERS):
                    total += 1
                    label = f"{device:4} {dtype_name:8} {layer[1]}-D {layer[0]}"
                    try:
                        errors, shapes = check_layer(layer, device, dtype, seed)
                    except (RuntimeError, ValueError, TypeError) as error:
                        failures += 1
                        print(f"FAIL  {label}: {type(error).__name__}: "
                              f"{str(error).splitlines()[0]}")
                        continue
                    ok = all(math.isfinite(e) and e <= tolerance for e in errors.values())
                    failures += not ok
                    values = " ".join(f"{key} {value:.1e}" for key, value in errors.items())
                    print(f"{'PASS' if ok else 'FAIL'}  {label} {shapes}: {values}"
                          f" (tolerance {tolerance:.0e})")
    elapsed = time.perf_counter() - start
    if failures:
        print(f"{failures} of {total} checks FAILED ({elapsed:.1f} s)")
        return 1
    print(f"all {total} checks passed ({elapsed:.1f} s)")
    return 0


# --- bench ------------------------------------------------------------------------

def cmd_bench(args):
    from . import bench

    bench.check_arguments(args._parser, args)
    bench.run(args)
    return 0


# --- checkerboard -----------------------------------------------------------------

def cmd_checkerboard(args):
    try:
        from . import checkerboard
    except ImportError as error:
        raise CliError(f"torch_tconv.checkerboard is not available: {error}") from error
    size = _per_dim(args.size, "size", 2)
    kernel = tuple(_per_dim(args.kernel, "--kernel", 2))
    stride = tuple(_per_dim(args.stride, "--stride", 2))
    padding = _parse_padding(args.padding, 2)
    padding = padding if isinstance(padding, str) else tuple(padding)
    output_padding = tuple(_per_dim(args.output_padding, "--output-padding", 2))
    dilation = tuple(_per_dim(args.dilation, "--dilation", 2))
    try:
        # The arguments' validation is the functional's, as for `shape`.
        output = _meta_output(2, size, kernel, stride, padding, list(output_padding),
                              list(dilation))
    except (RuntimeError, ValueError, TypeError) as error:
        raise CliError(str(error).splitlines()[0]) from error
    print(f"conv_transpose2d: input {tuple(size)} -> output {tuple(output)}")
    print(checkerboard.summary(kernel, stride, dilation=dilation, padding=padding))
    try:
        path = checkerboard.plot(args.out, input_size=tuple(size), kernel_size=kernel,
                                 stride=stride, padding=padding, output_padding=output_padding,
                                 dilation=dilation, seed=args.seed)
    except ImportError as error:
        raise CliError(f"the plot needs matplotlib: pip install 'torch_tconv[bench]' "
                       f"({error})") from error
    print(f"wrote {path}")
    return 0


# --- the parser -------------------------------------------------------------------

def _layer_arguments(parser, *, padding_help):
    parser.add_argument("-k", "--kernel", type=int, nargs="+", required=True, metavar="K",
                        help="kernel size: one value, or one per dim")
    parser.add_argument("-s", "--stride", type=int, nargs="+", default=[1], metavar="S",
                        help="stride (default 1)")
    parser.add_argument("-p", "--padding", nargs="+", default=["0"], metavar="P",
                        help=padding_help)
    parser.add_argument("--output-padding", "--op", type=int, nargs="+", default=[0],
                        metavar="OP", help="output padding (default 0)")
    parser.add_argument("-d", "--dilation", type=int, nargs="+", default=[1], metavar="D",
                        help="dilation (default 1)")


def build_parser():
    from . import bench

    parser = argparse.ArgumentParser(
        prog="python -m torch_tconv",
        description="torch_tconv's command line: transposed convolution for PyTorch.",
        epilog="Run `python -m torch_tconv <command> --help` for a command's options.")
    commands = parser.add_subparsers(dest="command", metavar="<command>")
    commands.required = True

    info = commands.add_parser(
        "info", help="versions, CUDA kernels and architectures, CPU, devices",
        description="torch_tconv's and torch's versions, whether the CUDA kernels were "
                    "compiled and for which architectures (TORCH_CUDA_ARCH_LIST recorded by "
                    "setup.py at build time), the CPU's model and ISA extensions, and the "
                    "CUDA devices torch sees.")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(handler=cmd_info)

    shape = commands.add_parser(
        "shape", help="output size; output_padding for a target size; PyTorch/Keras/JAX terms",
        description="The output size of a transposed convolution (1-D, 2-D or 3-D by the "
                    "number of input sizes), computed by the package itself; with --target, "
                    "the output_padding that gives that size, or the reachable range; and "
                    "the same settings in PyTorch, Keras/TensorFlow and JAX terms.",
        epilog="examples: shape 16 16 -k 4 -s 2 -p 1 | shape 16 -k 3 -s 2 -p same | "
               "shape 8 8 -k 3 -s 2 -p 1 --target 16 16 | shape 8 8 -k 3 -s 2 -p 0,1 1,0")
    shape.add_argument("size", type=int, nargs="+", help="input spatial size: L, H W or D H W")
    _layer_arguments(shape, padding_help="padding: ints (one, or one per dim), 'same', "
                                         "'valid', or a start,end pair per dim (default 0)")
    shape.add_argument("-t", "--target", type=int, nargs="+", metavar="N",
                       help="wanted output size: find the output_padding that gives it")
    shape.add_argument("--json", action="store_true", help="print JSON")
    shape.set_defaults(handler=cmd_shape)

    check = commands.add_parser(
        "check", help="short parity check against torch.nn.functional (forward, gradients)",
        description="Runs a few small layers (1-D, 2-D, 3-D; grouped, depthwise, "
                    "channels-last; int, 'same', 'valid' and per-side padding) through "
                    "torch_tconv and compares output and gradients with "
                    "torch.nn.functional.conv_transpose1d/2d/3d in float64. Prints one "
                    "PASS/FAIL line per case with the maximum relative errors; exits 1 on "
                    "any failure.")
    check.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                       help="all: the CPU, and CUDA when available (default)")
    check.add_argument("--dtypes", nargs="+", choices=list(_DTYPE_NAMES),
                       default=list(_DTYPE_NAMES), help="dtypes to check (default: all three)")
    check.add_argument("--algorithm", choices=["auto", "gemm", "direct", "phase"],
                       default="auto", help="torch_tconv.backends.algorithm for the run")
    check.set_defaults(handler=cmd_check)

    bench_parser = commands.add_parser(
        "bench", help="benchmark against torch.nn.functional (needs tqdm; matplotlib for "
                      "the chart)",
        description=bench.__doc__.split("\n\n")[0] + " Results go to --out as "
                    "<date>-<device>.{md,json,png}. The method: bench/NOTES.md in the repository.")
    bench.add_arguments(bench_parser)
    bench_parser.set_defaults(handler=cmd_bench, _parser=bench_parser)

    board = commands.add_parser(
        "checkerboard", help="tap counts, dead phases and a PNG of a 2-D layer's pattern",
        description="For a 2-D transposed convolution: how many kernel taps land on each "
                    "output phase (uneven counts make checkerboard artifacts), the phases "
                    "no tap reaches, and a PNG with the overlap map and a constant input's "
                    "response with the default and an artifact-free initialisation.")
    board.add_argument("size", type=int, nargs="+", help="input size: H W (or one value)")
    _layer_arguments(board, padding_help="padding: ints (one, or one per dim), 'same', "
                                         "'valid', or a start,end pair per dim (default 0)")
    board.add_argument("--seed", type=int, default=0, help="random seed of the weights")
    board.add_argument("-o", "--out", default="checkerboard.png",
                       help="PNG to write (default checkerboard.png)")
    board.set_defaults(handler=cmd_checkerboard)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except CliError as error:
        print(f"{parser.prog} {args.command}: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The output went to a program that stopped reading (`| head`).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
