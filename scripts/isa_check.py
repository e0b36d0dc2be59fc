"""Checks the built library for instructions where they must not be.

The CPU launchers are compiled once per instruction set (csrc/cpu/cpu_isa.h);
each call runs a variant the processor supports. That is only safe if the
wider instructions stay inside their variants: a baseline function with an
AVX instruction in it would crash a processor without AVX. This script
disassembles torch_tconv._C and fails, naming them, if

  - a function outside the cpu_avx2 and cpu_avx512 namespaces uses any AVX
    instruction (a VEX- or EVEX-encoded one: mnemonics v...), or
  - a function of cpu_avx2 uses AVX-512 (zmm or mask registers, or the
    EVEX-only xmm16-31/ymm16-31).

It also checks that each variant did produce vector code of its own width
(so that a build that silently compiled every variant for the baseline
fails too).

    python scripts/isa_check.py [path/to/_C.so] [--any-width]

(--any-width: for a build that does not vectorise, such as the sanitizer's.)
"""

import re
import shutil
import subprocess
import sys
from collections import defaultdict

FUNCTION = re.compile(r"^[0-9a-f]+ <(.*)>:$")
INSTRUCTION = re.compile(r"^\s+[0-9a-f]+:\s+(\S+)\s*(.*)$")
AVX512_REGISTERS = re.compile(r"%zmm|%k[0-7]\b|%[xy]mm(1[6-9]|2[0-9]|3[01])\b")
# Not AVX: the VMX instructions and verr/verw also start with a v.
NOT_AVX = {"verr", "verw", "vmcall", "vmlaunch", "vmresume", "vmxoff", "vmxon", "vmread",
           "vmwrite", "vmptrld", "vmptrst", "vmclear", "vmfunc"}


def variant_of(function):
    """The AVX variant whose namespace holds the function, or None. Names the
    demangler gave up on (some long lambda clones) are matched mangled."""
    for name in ("cpu_avx512", "cpu_avx2"):
        if f"torch_tconv::{name}::" in function or f"11torch_tconv{len(name)}{name}" in function:
            return name
    return None


def disassembly(path):
    objdump = shutil.which("objdump")
    if objdump is None:
        sys.exit("isa_check: objdump not found (binutils)")
    return subprocess.run([objdump, "-d", "-C", "--no-show-raw-insn", path],
                          check=True, capture_output=True, text=True).stdout


def scan(listing):
    """(function -> set of findings) from objdump's disassembly: 'avx' for any
    AVX instruction, 'avx512' for AVX-512 registers, 'ymm'/'zmm' for vector
    widths."""
    findings = defaultdict(set)
    function = None
    for line in listing.splitlines():
        header = FUNCTION.match(line)
        if header:
            function = header.group(1)
            continue
        instruction = INSTRUCTION.match(line)
        if function is None or instruction is None:
            continue
        mnemonic, operands = instruction.groups()
        if mnemonic.startswith("v") and mnemonic not in NOT_AVX:
            findings[function].add("avx")
        if AVX512_REGISTERS.search(operands):
            findings[function].add("avx512")
        if "%ymm" in operands:
            findings[function].add("ymm")
        if "%zmm" in operands:
            findings[function].add("zmm")
    return findings


def check(listing, require_vector_width=True):
    """The problems found in a disassembly (empty: the library is clean).
    require_vector_width=False skips the check that each variant has vector
    code of its width (a sanitizer build at -O1 does not vectorise)."""
    findings = scan(listing)
    problems = []
    seen_width = {"cpu_avx2": False, "cpu_avx512": False}
    for function, found in sorted(findings.items()):
        variant = variant_of(function)
        if variant is None and "avx" in found:
            problems.append(f"AVX instructions outside the AVX variants: {function}")
        if variant == "cpu_avx2" and "avx512" in found:
            problems.append(f"AVX-512 in the AVX2 variant: {function}")
        if variant == "cpu_avx2" and "ymm" in found:
            seen_width["cpu_avx2"] = True
        if variant == "cpu_avx512" and "zmm" in found:
            seen_width["cpu_avx512"] = True
    for variant, seen in seen_width.items():
        if require_vector_width and not seen:
            problems.append(f"no {variant} function uses its vector width: "
                            "the variant was not compiled for its instructions")
    return problems


def main(argv):
    paths = [a for a in argv[1:] if not a.startswith("--")]
    if paths:
        path = paths[0]
    else:
        import torch_tconv._C as extension
        path = extension.__file__
    problems = check(disassembly(path), require_vector_width="--any-width" not in argv)
    for problem in problems:
        print("isa_check:", problem)
    print(f"isa_check: {path}: " + ("clean" if not problems else f"{len(problems)} problems"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
