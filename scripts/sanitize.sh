#!/usr/bin/env bash
# Builds a CPU-only copy of the extension with AddressSanitizer and
# UndefinedBehaviorSanitizer into build-sanitize/ and runs the CPU test suite
# against it, but for the >2^31-element tests (minutes natively, far longer
# under ASan). Any report fails the run:
# UBSan aborts on its first finding, ASan on its first error. Leak detection
# is off, because the Python interpreter itself keeps memory until exit.
#
# usage: scripts/sanitize.sh [PYTHON]   (default: .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${1:-.venv/bin/python}
BUILD=build-sanitize

rm -rf "$BUILD"
TORCH_TCONV_NO_CUDA=1 TORCH_TCONV_SANITIZE=1 "$PYTHON" setup.py build --build-base "$BUILD" > "$BUILD.log" 2>&1 \
  || { tail -n 40 "$BUILD.log"; echo "sanitize: build FAILED"; exit 1; }
LIB=$(ls -d "$BUILD"/lib.*)

# The sanitizer runtimes must be loaded before anything else in the process.
ASAN_RUNTIME=$(gcc -print-file-name=libasan.so)
UBSAN_RUNTIME=$(gcc -print-file-name=libubsan.so)
export LD_PRELOAD="$ASAN_RUNTIME:$UBSAN_RUNTIME"
# allocator_may_return_null and max_allocation_size_mb: tests ask PyTorch for
# impossible allocations and expect its out-of-memory exception, which ASan
# would otherwise turn into an abort (or grant, and exhaust the machine).
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1:max_allocation_size_mb=6144:alloc_dealloc_mismatch=0:new_delete_type_mismatch=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export PYTHONPATH="$PWD/$LIB"
export TORCH_TCONV_EXPECT_CUDA=0  # a deliberately CPU-only build
# pytest's own executable (not `python -m pytest`), so that the checkout's
# torch_tconv/ does not shadow the sanitized build; --capture=sys leaves
# stderr alone, so that a sanitizer report survives the abort it causes.
"$(dirname "$PYTHON")/pytest" tests -q -p no:cacheprovider --capture=sys -m "not cuda" -k "not 2_31"
echo "sanitize: clean"
