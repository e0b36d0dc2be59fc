"""Invalid and hostile arguments, fuzzed in a subprocess: a crash there fails
this test rather than killing the test run."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import torch_tconv

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
def test_fuzzed_arguments_raise_clear_errors_or_match_torch():
    # The child imports the very torch_tconv these tests import.
    package_root = str(Path(torch_tconv.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    result = subprocess.run(
        [sys.executable, str(HERE / "fuzz_invalid_inputs.py"), "600"],
        capture_output=True, text=True, timeout=900, env=env,
    )
    report = (result.stdout + result.stderr)[-6000:]
    assert result.returncode == 0, f"fuzzer exited with {result.returncode}:\n{report}"
    assert "600 examples passed" in result.stdout, report
