#!/usr/bin/env bash
# Builds a CPU-only copy of the extension with AddressSanitizer and
# UndefinedBehaviorSanitizer into build-sanitize/ and runs the CPU test suite
# against it, but for these tests:
# - the >2^31-element tests (minutes natively, far longer under ASan);
# - the resident-memory growth test: ASan keeps freed memory in quarantine,
#   so the process's memory grows by design (12 MB over its 2000 steps in
#   one CI run, under 5 in others);
# - the command-line tests (tests/test_cli.py), which start interpreters that
#   import torch under ASan (90 s of the 412) to run kernels the rest of the
#   suite runs, and the check of the built library's instructions, which
#   reads the binary and runs no kernel (38 s).
# Any report fails the run: UBSan aborts on its first finding, ASan on its
# first error. Leak detection is off, because the Python interpreter itself
# keeps memory until exit.
#
# usage: scripts/sanitize.sh [build|test|all] [PYTHON]
#   (default: all, .venv/bin/python). `build` and `test` are the two halves
#   of `all`, so that CI can time each.
set -euo pipefail
cd "$(dirname "$0")/.."
STEP=${1:-all}
PYTHON=${2:-.venv/bin/python}
BUILD=build-sanitize
case "$STEP" in
  build|test|all) ;;
  *) echo "sanitize: unknown step '$STEP' (build, test or all)"; exit 2 ;;
esac

if [ "$STEP" != test ]; then
  rm -rf "$BUILD"
  TORCH_TCONV_NO_CUDA=1 TORCH_TCONV_SANITIZE=1 "$PYTHON" setup.py build --build-base "$BUILD" > "$BUILD.log" 2>&1 \
    || { tail -n 40 "$BUILD.log"; echo "sanitize: build FAILED"; exit 1; }
  echo "sanitize: built into $BUILD"
fi
[ "$STEP" = build ] && exit 0

LIB=$(ls -d "$BUILD"/lib.* 2>/dev/null) || { echo "sanitize: no build in $BUILD (run the build step)"; exit 1; }

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
"$(dirname "$PYTHON")/pytest" tests -q -p no:cacheprovider --capture=sys -m "not cuda" \
  --ignore=tests/test_cli.py -k "not 2_31 and not memory_growth and not wide_instructions"
echo "sanitize: clean"
