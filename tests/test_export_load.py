"""torch.export.save of a program with our ops, and torch.export.load of it
in a fresh process that never imports torch_tconv: torch loads torch_tconv
through its `torch.backends` entry point."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import torch_tconv


def entry_point_installed():
    from importlib.metadata import entry_points
    return any(e.value.startswith("torch_tconv") for e in entry_points(group="torch.backends"))


@pytest.mark.skipif(not entry_point_installed(), reason="torch_tconv is not pip-installed")
def test_load_in_fresh_process(tmp_path):
    torch.manual_seed(0)
    model = torch_tconv.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1)
    x = torch.randn(1, 4, 5, 5)
    program = torch.export.export(model, (x,))
    path = tmp_path / "program.pt2"
    torch.export.save(program, path)
    torch.save({"x": x, "expected": model(x).detach()}, tmp_path / "data.pt")
    script = textwrap.dedent(f"""
        import sys, torch
        program = torch.export.load({str(path)!r})
        data = torch.load({str(tmp_path / "data.pt")!r})
        torch.testing.assert_close(program.module()(data["x"]), data["expected"])
        print("loaded", "torch_tconv" in sys.modules)
    """)
    env = {k: v for k, v in os.environ.items() if k != "TORCH_DEVICE_BACKEND_AUTOLOAD"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "loaded True" in result.stdout
