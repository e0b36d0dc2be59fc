#!/usr/bin/env bash
# The GPU check: on a machine with a CUDA GPU, from a fresh checkout, build the
# extension for that GPU, run the whole test suite (CUDA tests included) and
# the CUDA benchmark, and write the reports into OUT:
#   env.txt      GPU, driver, torch and toolkit versions
#   build.log    the build
#   tests.log    pytest's report; tests.xml the same as JUnit XML
#   <date>-<device>.{md,json,png}   the benchmark table, data and chart
#   profile.txt  CUDA time per kernel for a few layers (torch.profiler)
#   host_overhead.md  host microseconds per call of a tiny layer, ours and torch's
# Uses only what the machine has (python3 with torch, pytest, ninja); it
# downloads nothing. Exits non-zero if the build or any test failed.
set -uo pipefail

OUT=${1:?usage: scripts/gpu_check.sh OUT_DIR}
PYTHON=${PYTHON:-python3}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"

if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDA_HOME=/usr/local/cuda
fi
# Build only for the GPU at hand: one architecture compiles fastest.
if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
  TORCH_CUDA_ARCH_LIST=$("$PYTHON" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')
  export TORCH_CUDA_ARCH_LIST
fi
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
# On the GPU image, CXX is preset to /opt/gcc/bin/g++ (a wrapper), and the
# extension it built crashed at its first use of std::ostream, inside our own
# .so (2026-11-24, torch 2.11); the distribution's compiler builds one that
# works. TORCH_TCONV_CXX overrides the choice.
if [ -n "${TORCH_TCONV_CXX:-}" ]; then
  export CXX=$TORCH_TCONV_CXX
elif [ -x /usr/bin/g++ ]; then
  export CXX=/usr/bin/g++
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  "$PYTHON" -c 'import sys, torch; print("python", sys.version.split()[0]); print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())'
  "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" --version | tail -n 2
  echo "TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST MAX_JOBS=$MAX_JOBS CXX=${CXX:-default}"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# A stale build/ from another checkout would be linked as is: start clean.
rm -rf build torch_tconv/_C*.so

status=0
start=$(date +%s)
if ! "$PYTHON" setup.py build_ext --inplace > "$OUT/build.log" 2>&1; then
  tail -n 40 "$OUT/build.log"
  echo "gpu-check: build FAILED"
  exit 1
fi
echo "gpu-check: built in $(( $(date +%s) - start )) s"

start=$(date +%s)
# The slow tests of the CPU alone (fuzzing, leaks, >2^31 elements: minutes)
# are CI's; the slow CUDA ones (>2^31 elements on the GPU) run here.
"$PYTHON" -m pytest tests -q -rs -p no:cacheprovider -m "not slow or cuda" \
  --junitxml="$OUT/tests.xml" > "$OUT/tests.log" 2>&1 || status=1
tail -n 25 "$OUT/tests.log"
echo "gpu-check: tests ran in $(( $(date +%s) - start )) s"

start=$(date +%s)
"$PYTHON" bench/benchmark.py --device cuda --out "$OUT" || status=1
echo "gpu-check: benchmark ran in $(( $(date +%s) - start )) s"

"$PYTHON" bench/profile_cuda.py --out "$OUT/profile.txt" || status=1
"$PYTHON" bench/host_overhead.py --device cuda --out "$OUT/host_overhead.md" || status=1
exit $status
