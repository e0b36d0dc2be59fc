"""torch_tconv.backends: settings read and written as attributes, flags()
restoring them, and one snapshot of all of them per call, so that a call in
flight keeps its configuration when another thread changes it."""

import threading

import pytest
import torch

import torch_tconv

backends = torch_tconv.backends


def test_attributes_and_flags_restore():
    assert backends.algorithm == "auto"
    with backends.flags(algorithm="direct", column_budget_bytes=1 << 20, int32_indices=False):
        assert (backends.algorithm, backends.column_budget_bytes, backends.int32_indices) == (
            "direct", 1 << 20, False)
        backends.cpu_row_kernels = False
        assert backends.cpu_row_kernels is False
    assert (backends.algorithm, backends.int32_indices, backends.cpu_row_kernels) == (
        "auto", True, True)
    with pytest.raises(KeyError):
        with backends.flags(cpu_reduced_precision_gemm="never"):
            assert backends.cpu_reduced_precision_gemm == "never"
            raise KeyError("the block fails")
    assert backends.cpu_reduced_precision_gemm == "auto"


def test_bad_settings_are_refused_and_change_nothing():
    with pytest.raises(ValueError, match="algorithm must be 'auto', 'gemm', 'direct' or 'phase', got 'fast'"):
        backends.algorithm = "fast"
    with pytest.raises(ValueError, match="column_budget_bytes must be positive, got 0"):
        backends.column_budget_bytes = 0
    with pytest.raises(AttributeError, match="no setting 'budget'"):
        with backends.flags(budget=1):
            pass
    assert backends.algorithm == "auto" and backends.column_budget_bytes == 128 << 20


def test_settings_take_effect():
    """Each setting reaches the kernels: the workspace follows the budget."""
    x, w = torch.randn(4, 8, 12, 12), torch.randn(8, 6, 4, 4)
    with backends.flags(algorithm="gemm", column_budget_bytes=1):
        torch_tconv.conv_transpose2d(x, w, stride=2)
        small = torch_tconv._C.last_column_workspace_bytes()
    with backends.flags(algorithm="gemm"):
        torch_tconv.conv_transpose2d(x, w, stride=2)
        large = torch_tconv._C.last_column_workspace_bytes()
    assert 0 < small < large


def test_calls_in_flight_keep_their_configuration():
    """One thread runs calls while another switches, again and again, between
    two configurations that differ in two settings at once: P = (gemm,
    bfloat16 columns) and Q = (direct, float32 columns). Each configuration
    gives its own bits, and so does a call that would read one setting of P
    and the other of Q (gemm with float32 columns). Every call must return
    P's or Q's result exactly: it ran with one configuration throughout."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 8, 12, 12, generator=g).bfloat16()
    w = torch.randn(8, 6, 4, 4, generator=g).bfloat16()
    P = dict(algorithm="gemm", cpu_reduced_precision_gemm="always")
    Q = dict(algorithm="direct", cpu_reduced_precision_gemm="never")
    mixed = dict(algorithm="gemm", cpu_reduced_precision_gemm="never")

    def run(**settings):
        with backends.flags(**settings):
            return torch_tconv.conv_transpose2d(x, w, stride=2, padding=1)

    expected = {"P": run(**P), "Q": run(**Q)}
    assert not torch.equal(expected["P"], expected["Q"])
    assert not any(torch.equal(run(**mixed), e) for e in expected.values())

    stop = threading.Event()

    def switch():
        while not stop.is_set():
            for settings in (P, Q):
                # One change of both settings (flags sets the configuration whole).
                with backends.flags(**settings):
                    pass
                backends._set(**settings)

    switcher = threading.Thread(target=switch)
    seen = {"P": 0, "Q": 0}
    with backends.flags(**P):
        switcher.start()
        try:
            for _ in range(200):
                out = torch_tconv.conv_transpose2d(x, w, stride=2, padding=1)
                matches = [name for name, e in expected.items() if torch.equal(out, e)]
                assert len(matches) == 1, "a call ran with a mix of two configurations"
                seen[matches[0]] += 1
        finally:
            stop.set()
            switcher.join()
    assert seen["P"] > 0 and seen["Q"] > 0, seen  # the switches did reach the calls
