"""The CPU kernels' per-instruction-set variants (csrc/cpu/cpu_isa.h): each
variant this processor supports gives the baseline's bits on every path and
dtype; the setting and the environment variable select them and reject what
the processor cannot run; and the built library keeps wider instructions
inside their variants (scripts/isa_check.py)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import torch_tconv
from common_utils import assert_close_to, forward_and_grads, forward_op, make_case, oracle

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import isa_check  # noqa: E402

SUPPORTED = torch_tconv.backends.supported_cpu_isas()
WIDER = [isa for isa in SUPPORTED if isa != "base"]
CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


def results(name, dtype, settings, channels_last=False):
    """Forward and all gradients of a layer from the table under settings."""
    x, w, b, p = make_case(name, 3, dtype, "cpu", seed=11)
    if channels_last:
        x = x.contiguous(memory_format=CHANNELS_LAST[x.dim()])
    leaves = [t.requires_grad_() for t in (x, w, b)]
    with torch_tconv.backends.flags(**settings):
        out = forward_op(*leaves, p)
        gy = torch.randn(out.shape, generator=torch.Generator().manual_seed(3),
                         dtype=torch.float64).to(dtype)
        if channels_last:
            gy = gy.contiguous(memory_format=CHANNELS_LAST[gy.dim()])
        return (out, *torch.autograd.grad(out, leaves, gy))


# Not the element bodies: like the emulated tensor-core tiles, they run in
# the baseline variant whichever is set (test_reference_paths_run_in_the_baseline).
PATHS = {
    "gemm-rows": dict(algorithm="gemm"),
    "gemm-windows": dict(algorithm="gemm", column_budget_bytes=64),
    "direct-rows": dict(algorithm="direct"),
    # The scalar tiles: the register-blocked ones fuse multiply-adds where the
    # variant has FMA, and are compared with the oracle instead
    # (test_blocked_tiles.py).
    "phase": dict(algorithm="phase", tile_variant="scalar"),
}


@pytest.mark.skipif(not WIDER, reason="this processor runs only the baseline variant")
@pytest.mark.parametrize("isa", WIDER)
@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["dcgan_k4s2p1", "grouped", "nonsquare_all", "1d",
                                  "3d_strided_dilated", "depthwise"])
def test_variants_give_the_baselines_bits(name, dtype, path, isa):
    base = results(name, dtype, {**PATHS[path], "cpu_isa": "base"})
    wide = results(name, dtype, {**PATHS[path], "cpu_isa": isa})
    for what, b, w in zip(("output", "grad_input", "grad_weight", "grad_bias"), base, wide):
        assert torch.equal(b, w), (what, (b.double() - w.double()).abs().max())


@pytest.mark.skipif(not WIDER, reason="this processor runs only the baseline variant")
@pytest.mark.parametrize("isa", WIDER)
@pytest.mark.parametrize("name", ["dcgan_k4s2p1", "grouped", "3d_strided_dilated"])
def test_variants_give_the_baselines_bits_channels_last(name, isa):
    base = results(name, torch.float32, {"algorithm": "gemm", "cpu_isa": "base"}, True)
    wide = results(name, torch.float32, {"algorithm": "gemm", "cpu_isa": isa}, True)
    assert all(torch.equal(b, w) for b, w in zip(base, wide))


def test_the_setting_selects_the_variant():
    assert torch_tconv.backends.supported_cpu_isas()[0] == "base"
    with torch_tconv.backends.flags(cpu_isa="base"):
        assert torch_tconv.backends.cpu_isa_in_use() == "base"
        assert torch_tconv._C.cpu_backend_name() == "cpu_base"
    for isa in WIDER:
        with torch_tconv.backends.flags(cpu_isa=isa):
            assert torch_tconv.backends.cpu_isa_in_use() == isa
            # The Backend the ops are handed (the variant's own launchers).
            assert torch_tconv._C.cpu_backend_name() == "cpu_" + isa
    assert torch_tconv.backends.cpu_isa == "auto"
    if "TORCH_TCONV_CPU_ISA" not in os.environ:
        # AVX2 where the processor has it, not AVX-512 (measured slower),
        # but with the AVX-512 register-blocked tiles where it has those.
        assert torch_tconv.backends.cpu_isa_in_use() == ("avx2" if WIDER else "base")
        expected = {"base": "cpu_base", "avx2": "cpu_avx2",
                    "avx512": "cpu_avx2_with_avx512_tiles"}[SUPPORTED[-1]]
        assert torch_tconv._C.cpu_backend_name() == expected


REFERENCE_PATHS = [dict(cpu_row_kernels=False), dict(tile_variant="mma64x32")]


@pytest.mark.parametrize("isa", SUPPORTED)
@pytest.mark.parametrize("settings", REFERENCE_PATHS, ids=["elements", "mma"])
def test_reference_paths_run_in_the_baseline(isa, settings):
    """Only the baseline variant compiles the element bodies and the emulated
    tensor-core tiles (cpu/launchers.h): a wider variant hands those calls to
    it, and would raise on an internal assertion if it were given one."""
    with torch_tconv.backends.flags(cpu_isa=isa, **settings):
        assert torch_tconv._C.cpu_backend_name() == "cpu_base"
    with torch_tconv.backends.flags(cpu_isa=isa):
        assert torch_tconv._C.cpu_backend_name() == "cpu_" + isa
    x, w, b, p = make_case("dcgan_k4s2p1", 3, torch.float16, "cpu", seed=5)
    for algorithm in ("direct", "gemm", "phase"):
        with torch_tconv.backends.flags(cpu_isa=isa, algorithm=algorithm, **settings):
            actual, gy = forward_and_grads(forward_op, x, w, b, p, seed=6)
        expected = oracle(x, w, b, gy, **p)
        for what, a, e in zip(("output", "grad_input", "grad_weight", "grad_bias"),
                              actual, expected):
            assert_close_to(a, e, torch.float16, f"{algorithm} {what}")


def test_unknown_and_unsupported_variants_are_refused():
    with pytest.raises(ValueError, match="cpu_isa must be 'auto', 'base', 'avx2' or 'avx512'"):
        torch_tconv.backends.cpu_isa = "sse9"
    missing = [isa for isa in ("avx2", "avx512") if isa not in WIDER]
    for isa in missing:
        with pytest.raises(ValueError, match=f"cpu_isa '{isa}' is not supported"):
            torch_tconv.backends.cpu_isa = isa
    assert torch_tconv.backends.cpu_isa == "auto"


def run_with_environment(value, code, cwd):
    """code in a fresh interpreter with TORCH_TCONV_CPU_ISA=value, run outside
    the source tree (whose torch_tconv/ would shadow an installed copy)."""
    env = dict(os.environ, TORCH_TCONV_CPU_ISA=value)
    return subprocess.run([sys.executable, "-c", "import torch, torch_tconv\n" + code],
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_environment_variable_chooses_the_automatic_variant(tmp_path):
    done = run_with_environment(
        "base", "x = torch.randn(1, 2, 3, 3); w = torch.randn(2, 2, 3, 3)\n"
        "torch_tconv.conv_transpose2d(x, w)\n"
        "print(torch_tconv.backends.cpu_isa_in_use())", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "base"
    if WIDER:
        # A variant the variable names runs whole: AVX2's own tiles too.
        named = run_with_environment("avx2", "print(torch_tconv._C.cpu_backend_name())", tmp_path)
        assert named.returncode == 0, named.stderr
        assert named.stdout.strip() == "cpu_avx2"
    refused = run_with_environment(
        "avx9", "torch_tconv.conv_transpose2d(torch.randn(1, 2, 3, 3), torch.randn(2, 2, 3, 3))",
        tmp_path)
    assert refused.returncode != 0
    assert "TORCH_TCONV_CPU_ISA must be one of" in refused.stderr


needs_objdump = pytest.mark.skipif(shutil.which("objdump") is None, reason="needs binutils' objdump")


def sanitizer_build():
    try:
        from torch_tconv import _build_info
    except ImportError:
        return False
    return bool(getattr(_build_info, "SANITIZE", False))


@needs_objdump
def test_the_library_keeps_wide_instructions_in_their_variants():
    # The sanitizer's build (-O1) does not vectorise: its variants have no
    # vector code of their width to find.
    problems = isa_check.check(isa_check.disassembly(torch_tconv._C.__file__),
                               require_vector_width=not sanitizer_build())
    assert problems == []


def test_the_check_finds_stray_instructions():
    """The checker itself: a baseline function with an AVX instruction, and an
    AVX2 function with AVX-512 registers, are both reported; a clean listing
    with each variant's own width is not."""
    clean = """
0000000000001000 <torch_tconv::ops_helper()>:
    1000:\tmovss  %xmm0,%xmm1
0000000000002000 <void torch_tconv::cpu_avx2::(anonymous namespace)::add()>:
    2000:\tvaddps %ymm0,%ymm1,%ymm2
0000000000003000 <void torch_tconv::cpu_avx512::(anonymous namespace)::add()>:
    3000:\tvaddps %zmm0,%zmm1,%zmm2
"""
    assert isa_check.check(clean) == []
    leaked = clean + """
0000000000004000 <c10::BFloat16::operator float() const>:
    4000:\tvmovss %xmm0,%xmm1
0000000000005000 <void torch_tconv::cpu_avx2::(anonymous namespace)::wide()>:
    5000:\tvaddps %zmm0,%zmm1,%zmm2
"""
    problems = isa_check.check(leaked)
    assert any("outside the AVX variants: c10::BFloat16" in p for p in problems)
    assert any("AVX-512 in the AVX2 variant" in p for p in problems)
    narrow = clean.replace("%zmm", "%xmm")
    assert any("no cpu_avx512 function" in p for p in isa_check.check(narrow))
