"""backends.cpu_huge_pages: CPU results of 32 MiB and more, which malloc maps
afresh on every call, are advised for transparent huge pages, so that their
first write takes a fault per 2 MiB instead of per 4 KiB. The advice must
cover only whole huge pages inside the result, leave smaller results alone,
and change no value.

The kernel reports the advice per mapping in /proc/self/smaps
("THPeligible"); the tests need its "madvise" mode, in which only advised
memory is eligible, and are skipped elsewhere. Each case runs in a fresh
interpreter (this file as a script): in a long test process a large result
may be carved from heap memory that an earlier test's result left advised,
so "not advised" could not be told from "advised before"."""

import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import torch_tconv
from torch_tconv.bench import transparent_huge_pages

HUGE_PAGE = 2 << 20
ADVISED_FROM = 32 << 20


def _mapping(address):
    """(start, end, THPeligible or None) of this process's mapping that
    holds the address, from /proc/self/smaps."""
    current = None
    for line in pathlib.Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and ":" not in head:
            start, end = (int(v, 16) for v in head.split("-"))
            current = (start, end) if start <= address < end else None
        elif current is not None and line.startswith("THPeligible:"):
            return current + (line.split()[1] == "1",)
    return None, None, None


def _advice(t):
    """Whether the first whole huge page inside t is advised. (Where the
    advice ends is the arithmetic of whole_huge_pages, tested on its own:
    the kernel merges adjacent advised mappings, so smaps cannot tell.)"""
    begin, nbytes = t.data_ptr(), t.untyped_storage().nbytes()
    first_page = (begin + HUGE_PAGE - 1) // HUGE_PAGE * HUGE_PAGE
    return {"bytes": nbytes, "advised": _mapping(first_page)[2]}


def _case(name, algorithm, huge_pages):
    """Runs one case in this process: the result's advice, and its largest
    error against the float64 oracle relative to the oracle's magnitude."""
    ops = torch.ops.torch_tconv
    torch.manual_seed(0)
    with torch_tconv.backends.flags(algorithm=algorithm, cpu_huge_pages=huge_pages):
        if name == "forward":
            # Depthwise, k = s = 2: a 36 MiB float32 output.
            x, w, b = torch.randn(1, 9, 512, 512), torch.randn(9, 1, 2, 2), torch.randn(9)
            result = torch_tconv.conv_transpose2d(x, w, b, stride=2, groups=9)
            expected = F.conv_transpose2d(x.double(), w.double(), b.double(), stride=2, groups=9)
        elif name == "small_forward":
            # The same layer with 6 channels: 24 MiB.
            x, w = torch.randn(1, 6, 512, 512), torch.randn(6, 1, 2, 2)
            result = torch_tconv.conv_transpose2d(x, w, stride=2, groups=6)
            expected = F.conv_transpose2d(x.double(), w.double(), stride=2, groups=6)
        else:
            # A 1x1 layer's input gradient over a 36 MiB input; channels-last
            # for the backward op, contiguous for the input-gradient op.
            w, gy = torch.randn(9, 4, 1, 1), torch.randn(1, 4, 1024, 1024)
            expected = F.conv2d(gy.double(), w.double())
            if name == "backward":
                x = torch.randn(1, 9, 1024, 1024).contiguous(memory_format=torch.channels_last)
                result, _ = ops.conv_transpose_backward(
                    gy.contiguous(memory_format=torch.channels_last), x, w, [1, 1], [0, 0],
                    [1, 1], 1)
            else:
                result = ops.conv_transpose_input_grad(gy, w, [1024, 1024], [1, 1], [0, 0],
                                                       [1, 1], 1)
    error = ((result.double() - expected).abs().max() / expected.abs().max()).item()
    return {**_advice(result), "error": error}


CASES = [("forward", algorithm) for algorithm in ("auto", "gemm", "direct", "phase")] + [
    ("input_grad", "gemm"), ("input_grad", "phase"), ("backward", "gemm"), ("backward", "phase")]


def _run_all(huge_pages):
    """Every case, the small one first (so that no large result can have
    advised its memory), in one process; {"name/algorithm": result}."""
    return {f"{name}/{algorithm}": _case(name, algorithm, huge_pages)
            for name, algorithm in [("small_forward", "auto")] + CASES}


@pytest.fixture(scope="module")
def runs():
    """The cases run with the setting on and off, in two fresh interpreters
    at once."""
    env = dict(os.environ)
    package_parent = str(pathlib.Path(torch_tconv.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    children = {setting: subprocess.Popen([sys.executable, __file__, str(int(setting))],
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True, env=env)
                for setting in (True, False)}
    results = {}
    for setting, child in children.items():
        stdout, stderr = child.communicate(timeout=600)
        assert child.returncode == 0, stderr
        results[setting] = json.loads(stdout.strip().splitlines()[-1])
    return results


needs_madvise_mode = pytest.mark.skipif(
    transparent_huge_pages() != "madvise" or _mapping(torch.empty(1).data_ptr())[2] is None,
    reason=f"transparent huge pages are {transparent_huge_pages()!r}, not 'madvise', or smaps has no "
           "THPeligible")


@needs_madvise_mode
@pytest.mark.parametrize("name,algorithm", CASES)
def test_large_results_are_advised_only_when_set(runs, name, algorithm):
    advised, left = runs[True][f"{name}/{algorithm}"], runs[False][f"{name}/{algorithm}"]
    assert advised["bytes"] >= ADVISED_FROM
    assert advised["advised"], advised
    assert left["advised"] is False, left
    for run in (advised, left):
        assert run["error"] < 2e-5, run


@pytest.mark.parametrize("begin,nbytes,pages", [
    (0, 4 * HUGE_PAGE, (0, 4 * HUGE_PAGE)),
    (64, 4 * HUGE_PAGE, (HUGE_PAGE, 4 * HUGE_PAGE)),
    (HUGE_PAGE - 16, 3 * HUGE_PAGE, (HUGE_PAGE, 3 * HUGE_PAGE)),
    (HUGE_PAGE - 16, 3 * HUGE_PAGE + 16, (HUGE_PAGE, 4 * HUGE_PAGE)),
    (5 * HUGE_PAGE + 1, 2 * HUGE_PAGE - 2, (0, 0)),
    (5 * HUGE_PAGE + 1, 2 * HUGE_PAGE - 1, (6 * HUGE_PAGE, 7 * HUGE_PAGE)),
    (5 * HUGE_PAGE, HUGE_PAGE - 1, (0, 0)),
    (5 * HUGE_PAGE, 0, (0, 0)),
    (0x7F00_0000_0040, 36 << 20, (0x7F00_0020_0000, 0x7F00_0240_0000)),
])
def test_advice_covers_only_whole_huge_pages_inside(begin, nbytes, pages):
    """The advised range starts at the first huge page boundary at or after
    the result's first byte and ends at the last one at or before its end."""
    assert torch_tconv._C.whole_huge_pages(begin, nbytes) == pages


@needs_madvise_mode
def test_smaller_results_are_left_alone(runs):
    """Under 32 MiB a result comes from malloc's heap, whose pages are reused
    without faults: advising it would mark heap memory that later holds
    other allocations."""
    run = runs[True]["small_forward/auto"]
    assert run["bytes"] < ADVISED_FROM
    assert run["advised"] is False, run
    assert run["error"] < 2e-5, run


if __name__ == "__main__":
    print(json.dumps(_run_all(bool(int(sys.argv[1])))))
