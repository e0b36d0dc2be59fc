#!/usr/bin/env bash
# The GPU check: on a machine with a CUDA GPU, from a fresh checkout, in at
# about 7 minutes (each stage has a time limit), build the extension for
# that GPU, run the CUDA tests (every algorithm and tile variant, forced one
# at a time), time every algorithm and variant against cuDNN, and write the
# reports into OUT (at most 8 files, what a GPU slot sends back):
#   env.txt      GPU, driver, torch and toolkit versions, build time, and
#                ptxas's register and spill report for this GPU's architecture
#   tests.log    pytest's report of the CUDA tests
#   <date>-algorithms-<device>.{md,json}   the algorithm sweep: each
#                algorithm and tile variant against cuDNN per case, benchmark
#                mode's picks, cuDNN's kernel names (the table the default
#                rule's thresholds are read from)
#   <date>-<device>.{md,json}   the benchmark table (the README's), data
#   profile.txt  CUDA time per kernel for a few layers (torch.profiler), and
#                host microseconds per call of a tiny layer, ours and torch's
# Uses only what the machine has (python3 with torch, pytest, ninja); it
# downloads nothing. Exits non-zero if the build or any stage failed.
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
echo "gpu-check: built in $(( $(date +%s) - start )) s" | tee -a "$OUT/env.txt"
rm -f "$OUT/build.log"

# ptxas's report runs on the CPU while the GPU runs the tests.
ARCH=${TORCH_CUDA_ARCH_LIST%%;*}
"$PYTHON" scripts/ptxas_report.py --arch "${ARCH//./}" --out "$OUT/ptxas.txt" > /dev/null 2>&1 &
ptxas_pid=$!

start=$(date +%s)
# The CUDA tests alone (the CPU suite is CI's): first those of the kernels no
# GPU has run before, then the rest, each within its own time limit.
NEW_TESTS="tests/test_implicit_gemm.py tests/test_benchmark_mode.py"
timeout 80 "$PYTHON" -m pytest $NEW_TESTS -q -rs -p no:cacheprovider -m cuda \
  > "$OUT/tests.log" 2>&1 || status=1
tail -n 5 "$OUT/tests.log"
echo "gpu-check: implicit-GEMM tests ran in $(( $(date +%s) - start )) s"
start=$(date +%s)
ignored=$(printf -- "--ignore=%s " $NEW_TESTS)
# shellcheck disable=SC2086
timeout 80 "$PYTHON" -m pytest tests $ignored -q -rs -p no:cacheprovider -m cuda \
  >> "$OUT/tests.log" 2>&1 || status=1
tail -n 5 "$OUT/tests.log"
echo "gpu-check: other CUDA tests ran in $(( $(date +%s) - start )) s"

wait "$ptxas_pid" || status=1
{ echo; cat "$OUT/ptxas.txt" 2>/dev/null || echo "ptxas report missing"; } >> "$OUT/env.txt"
rm -f "$OUT/ptxas.txt"
tail -n 2 "$OUT/env.txt"

start=$(date +%s)
timeout 100 "$PYTHON" bench/algorithm_sweep.py --device cuda --out "$OUT" || status=1
echo "gpu-check: algorithm sweep ran in $(( $(date +%s) - start )) s"

start=$(date +%s)
{ timeout 25 "$PYTHON" bench/profile_cuda.py && echo \
  && timeout 15 "$PYTHON" bench/host_overhead.py --device cuda; } > "$OUT/profile.txt" 2>&1 || status=1
echo "gpu-check: profile ran in $(( $(date +%s) - start )) s"

start=$(date +%s)
timeout 60 "$PYTHON" bench/benchmark.py --device cuda --dtypes float16 bfloat16 float32 \
  --out "$OUT" || status=1
rm -f "$OUT"/*.png
echo "gpu-check: benchmark ran in $(( $(date +%s) - start )) s"
exit $status
