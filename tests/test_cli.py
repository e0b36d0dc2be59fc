"""The command line, `python -m torch_tconv <command>`, run as users run it:
a subprocess of this interpreter that imports the same torch_tconv as the
tests (its directory first on PYTHONPATH). Independent commands run
concurrently to keep the module short (~30 s on 2 cores)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import torch_tconv

PACKAGE_PARENT = str(Path(torch_tconv.__file__).resolve().parent.parent)
COMMANDS = ["info", "shape", "check", "bench", "checkerboard"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def cli_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (PACKAGE_PARENT, env.get("PYTHONPATH")) if p)
    return env


def run_cli(*commands, cwd=None, timeout=120):
    """Runs each argument list as `python -m torch_tconv ...`, all at once;
    returns their CompletedProcess objects in order."""
    processes = [subprocess.Popen([sys.executable, "-m", "torch_tconv", *map(str, argv)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=cli_env(), cwd=cwd)
                 for argv in commands]
    results = []
    for argv, process in zip(commands, processes):
        stdout, stderr = process.communicate(timeout=timeout)
        results.append(subprocess.CompletedProcess(argv, process.returncode, stdout, stderr))
    return results


def test_help_of_every_command(tmp_path):
    *results, no_command = run_cli(["--help"], *([command, "--help"] for command in COMMANDS),
                                   [], cwd=tmp_path)
    assert no_command.returncode == 2
    assert "usage:" in no_command.stderr
    for result in results:
        assert result.returncode == 0, (result.args, result.stderr)
        assert result.stdout.startswith("usage: python -m torch_tconv"), result.stdout
    for command in COMMANDS:
        assert command in results[0].stdout
    # Every option of the benchmark is there.
    for option in ("--device", "--out", "--quick", "--dtypes", "--cases", "--repeats"):
        assert option in results[COMMANDS.index("bench") + 1].stdout


def test_info(tmp_path):
    text, as_json = run_cli(["info"], ["info", "--json"], cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert f"torch {torch.__version__}" in text.stdout
    assert f"torch_tconv {torch_tconv.__version__}" in text.stdout
    assert "CUDA kernels: " + ("compiled" if torch_tconv.has_cuda_kernels()
                               else "not compiled") in text.stdout
    assert "CPU: " in text.stdout
    info = json.loads(as_json.stdout)
    assert info["torch"] == torch.__version__
    try:
        import archspec.cpu
        want = archspec.cpu.host().name
    except ImportError:
        want = None
    assert info["cpu_microarchitecture"] == want
    assert (f"({want});" in text.stdout) == (want is not None)
    assert info["cuda_kernels"] == torch_tconv.has_cuda_kernels()
    assert info["cpu_huge_pages"] is True
    assert (f"advised for transparent huge pages (the kernel's mode: "
            f"{info['transparent_huge_pages'] or 'unknown'}") in text.stdout
    assert len(info["devices"]) == 1 + (torch.cuda.device_count()
                                        if torch.cuda.is_available() else 0)
    if info["build"] is None:
        assert info["cuda_architectures"].startswith("unknown")
    assert info["cpu_kernel_variant_in_use"] in info["cpu_kernel_variants"]
    assert f"variant {info['cpu_kernel_variant_in_use']} in use" in text.stdout
    assert info["cpu_gemm_in_use"] == ("blocked" if torch_tconv._C.cpu_tiles_outrun_blas()
                                       else "aten")
    assert ("forward torch_tconv's register-blocked tiles" in text.stdout) == (
        info["cpu_gemm_in_use"] == "blocked")
    assert info["cpu_gradient_gemm_in_use"] == (
        "onednn" if torch_tconv._C.onednn_gradient_gemm_preferred(1024, 1024, 1024)
        else "blocked" if torch_tconv._C.blocked_gradient_gemm_preferred(1024, 1024, 1024)
        else "aten")
    assert ("gradients oneDNN's matmul" in text.stdout) == (
        info["cpu_gradient_gemm_in_use"] == "onednn")


# (command-line arguments, the same layer as F.conv_transpose*d's keywords)
SHAPES = [
    (["16", "16", "-k", "4", "-s", "2", "-p", "1"], dict(stride=2, padding=1), (16, 16), 4),
    (["7", "9", "-k", "3", "-s", "2", "-p", "1", "--op", "1"],
     dict(stride=2, padding=1, output_padding=1), (7, 9), 3),
    (["5", "6", "-k", "3", "5", "-s", "2", "3", "-p", "0", "2", "-d", "2", "1", "--op", "1", "0"],
     dict(stride=(2, 3), padding=(0, 2), dilation=(2, 1), output_padding=(1, 0)), (5, 6), (3, 5)),
    (["10", "-k", "16", "-s", "8", "-p", "4"], dict(stride=8, padding=4), (10,), 16),
    (["3", "4", "5", "-k", "3", "-s", "2", "-p", "1", "--op", "1"],
     dict(stride=2, padding=1, output_padding=1), (3, 4, 5), 3),
]
TORCH_FUNCTIONAL = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def torch_output_size(size, kernel, **kwargs):
    dims = len(size)
    kernel = (kernel,) * dims if isinstance(kernel, int) else kernel
    x = torch.zeros(1, 1, *size)
    w = torch.zeros(1, 1, *kernel)
    return list(TORCH_FUNCTIONAL[dims](x, w, **kwargs).shape[2:])


def test_shape(tmp_path):
    results = run_cli(*(["shape", *argv, "--json"] for argv, *_ in SHAPES), cwd=tmp_path)
    for (argv, kwargs, size, kernel), result in zip(SHAPES, results):
        assert result.returncode == 0, (argv, result.stderr)
        report = json.loads(result.stdout)
        expected = torch_output_size(size, kernel, **kwargs)
        assert report["output"] == expected, argv
        # The PyTorch equivalent it states gives that size too.
        torch_terms = report["equivalents"]["pytorch"]
        assert torch_output_size(size, kernel, **{
            **kwargs, "padding": tuple(torch_terms["padding"]),
            "output_padding": tuple(torch_terms["output_padding"])}) == expected


def test_shape_same_target_and_errors(tmp_path):
    same, target, unreachable, bad = run_cli(
        ["shape", "11", "13", "-k", "3", "-s", "2", "-d", "2", "-p", "same", "--json"],
        ["shape", "8", "8", "-k", "3", "-s", "2", "-p", "1", "--target", "16", "15", "--json"],
        ["shape", "8", "8", "-k", "3", "-s", "2", "-p", "1", "--target", "18", "15"],
        ["shape", "8", "8", "-k", "3", "-s", "2", "-p", "1", "--op", "2"],
        cwd=tmp_path)
    assert same.returncode == 0, same.stderr
    report = json.loads(same.stdout)
    assert report["output"] == [22, 26]
    assert report["equivalents"]["keras"]["padding"] == "same"
    assert "'SAME'" in report["equivalents"]["jax"]["text"]

    assert target.returncode == 0, target.stderr
    found = json.loads(target.stdout)["target"]
    assert found["reachable"] and found["output_padding"] == [1, 0]
    assert found["range"] == [[15, 16], [15, 16]]
    assert torch_output_size((8, 8), 3, stride=2, padding=1, output_padding=(1, 0)) == [16, 15]

    # The text form, with the range of sizes output_padding can reach.
    assert unreachable.returncode == 1
    assert "output size: (15, 15)" in unreachable.stdout
    assert "unreachable" in unreachable.stdout
    assert "[15, 16] x [15, 16]" in unreachable.stdout
    for name in ("PyTorch", "Keras", "JAX"):
        assert name in unreachable.stdout

    assert bad.returncode == 2
    assert "output_padding must be smaller than stride or dilation" in bad.stderr


def test_shape_in_process(capsys):
    """More of `shape` through cli.main, without a process per case."""
    from torch_tconv import cli

    assert cli.main(["shape", "9", "-k", "5", "-s", "3", "-p", "same", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["output"] == [27]
    # With a string padding, output_padding is fixed at 0: one size only.
    assert cli.main(["shape", "8", "8", "-k", "3", "-s", "2", "-p", "same",
                     "--target", "17", "16"]) == 1
    assert "output_padding must be 0" in capsys.readouterr().out
    assert cli.main(["shape", "8", "8", "-k", "3", "5", "7"]) == 2
    assert "--kernel" in capsys.readouterr().err
    assert cli.main(["shape", "8", "8", "-k", "3", "-p", "1,2,3"]) == 2
    assert "--padding" in capsys.readouterr().err
    # Per-side padding: the crops are as given.
    assert cli.main(["shape", "8", "8", "-k", "3", "-s", "2", "-p", "0,1", "1,0", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["crop"] == [[0, 1], [1, 0]] and report["output"] == [16, 16]


def test_shape_equivalents_compute_the_same_layer():
    """The PyTorch and JAX settings that `shape` states, run: the same
    values as torch_tconv's (and JAX's 'SAME'/'VALID' and a crop after
    'VALID' standing in for Keras/TensorFlow's)."""
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from torch_tconv import cli

    layout = {1: ("NCH", "OIH", "NCH"), 2: ("NCHW", "OIHW", "NCHW")}
    configs = [["6", "5", "-k", "4", "-s", "2", "-p", "1"],
               ["6", "5", "-k", "3", "-s", "2", "-p", "1", "--target", "12", "10"],
               ["7", "-k", "3", "-s", "2", "-p", "same"],
               ["4", "5", "-k", "2", "-s", "3", "-p", "valid"],
               ["5", "4", "-k", "3", "-s", "2", "-d", "2", "-p", "same"],
               ["5", "4", "-k", "5", "-s", "2", "-p", "0,2", "1,0", "--op", "1"],
               ["6", "-k", "5", "-s", "3", "-p", "2"],
               ["4", "4", "-k", "4", "-s", "2", "-p", "3"]]
    parser = cli.build_parser()
    generator = torch.Generator().manual_seed(0)
    for argv in configs:
        args = parser.parse_args(["shape", *argv])
        report = cli.shape_report(args)
        dims, stride, dilation = report["dims"], report["stride"], report["dilation"]
        x = torch.randn(1, 2, *report["input"], generator=generator, dtype=torch.float64)
        w = torch.randn(2, 3, *report["kernel"], generator=generator, dtype=torch.float64)
        output_padding = (report["target"]["output_padding"] if "target" in report
                          else report["output_padding"])
        padding = cli._parse_padding(args.padding, dims)
        ours = getattr(torch_tconv, f"conv_transpose{dims}d")(
            x, w, None, stride, padding, output_padding, 1, dilation)
        equivalents = report["equivalents"]

        def jax_output(padding):
            out = jax.lax.conv_transpose(
                jnp.asarray(x.numpy()), jnp.asarray(w.numpy()), strides=tuple(stride),
                padding=padding, rhs_dilation=tuple(dilation), dimension_numbers=layout[dims],
                transpose_kernel=True)
            return torch.from_numpy(jax.device_get(out).copy())

        torch_terms = equivalents["pytorch"]
        if torch_terms["padding"] is not None:
            torch_out = TORCH_FUNCTIONAL[dims](x, w, None, stride, torch_terms["padding"],
                                               torch_terms["output_padding"], 1, dilation)
            torch.testing.assert_close(torch_out, ours, msg=str(argv))
        explicit = [tuple(p) for p in equivalents["jax"]["padding"]]
        torch.testing.assert_close(jax_output(explicit), ours, msg=str(argv))
        keras = equivalents["keras"]
        if keras["padding"] and keras["output_padding"] is None:
            expected = jax_output(keras["padding"].upper())
            if keras["cropping"]:
                widths = []
                for start, end in reversed(keras["cropping"]):
                    widths += [-start, -end]
                expected = F.pad(expected, widths)
            torch.testing.assert_close(expected, ours, msg=str(argv))


def test_check_passes(tmp_path):
    (result,) = run_cli(["check", "--device", "cpu"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    passed = [line for line in lines if line.startswith("PASS")]
    assert not [line for line in lines if line.startswith("FAIL")]
    # Every layer in each of the three dtypes.
    assert len(passed) >= 3 * 9
    for dtype in ("float64", "float32", "bfloat16"):
        assert any(f" {dtype} " in line for line in passed)
    assert "grad_weight" in passed[0]
    assert "checks passed" in lines[-1]


def test_bench_quick(tmp_path):
    pytest.importorskip("tqdm")
    out = tmp_path / "results"
    (result,) = run_cli(["bench", "--device", "cpu", "--quick", "--cases", "fcn-k4s2",
                         "--dtypes", "float32", "--repeats", "1", "--out", out], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    reports = sorted(out.glob("*-cpu.md"))
    data = sorted(out.glob("*-cpu.json"))
    assert len(reports) == 1 and len(data) == 1
    results = json.loads(data[0].read_text())
    assert [r["case"] for r in results["results"]] == ["fcn-k4s2-32x32"]
    case = results["results"][0]
    assert case["status"] == "ok"
    # GB/s on the CPU against the run's memory-bandwidth ceiling.
    assert results["machine"]["copy_bandwidth_gbs"] > 0
    assert case["fwd"]["bytes"] > 0 and case["fwd"]["ours_gbs"] > 0
    assert 0 < case["fwd"]["ours_bandwidth_fraction"]
    text = reports[0].read_text()
    assert "memory bandwidth:" in text and "fwd % copy BW" in text
    # The page settings that decide what a fresh result's first write costs.
    machine = results["machine"]
    assert machine["cpu_huge_pages"] is True
    try:
        mode = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
        assert f"[{machine['transparent_huge_pages']}]" in mode
    except FileNotFoundError:
        assert machine["transparent_huge_pages"] is None
    assert "- transparent_huge_pages: " in text
    assert not (tmp_path / "bench-results").exists()


def test_bench_default_output_is_the_working_directory(tmp_path):
    """An installed package writes its results under ./bench-results, never
    into its own directory."""
    from torch_tconv import bench

    args = bench.parse_args([])
    assert Path(args.out) == Path("bench-results")
    assert not Path(args.out).is_absolute()


@pytest.mark.skipif(importlib.util.find_spec("torch_tconv.checkerboard") is None,
                    reason="torch_tconv.checkerboard is not in this tree")
def test_checkerboard(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "board.png"
    result, bad = run_cli(["checkerboard", "8", "8", "-k", "3", "-s", "2", "--out", png],
                          ["checkerboard", "8", "8", "-k", "3", "-s", "2", "-p", "1",
                           "--op", "2", "--out", tmp_path / "bad.png"],
                          cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    # k3 s2: two taps on the even phase, one on the odd, in each dim.
    assert "[2, 1] x [2, 1]" in result.stdout
    assert "output (17, 17)" in result.stdout
    assert bad.returncode == 2 and "output_padding" in bad.stderr
    assert not (tmp_path / "bad.png").exists()
