# Set-up and everyday commands. `make test` and `make bench` each create the
# virtual environment, install torch and the other dependencies, build the
# extension and run.

PYTHON ?= python3
VENV ?= .venv
# The CUDA 13.0 build of torch, matching the nvcc 13.0 toolkit of our build
# machines; on a machine without a toolkit the CUDA sources are skipped.
TORCH_SPEC ?= torch==2.14.1
OUT ?= gpu-check-out

BIN := $(VENV)/bin
STAMP := $(VENV)/.deps-installed

ifneq ($(wildcard /usr/local/cuda/bin/nvcc),)
export CUDA_HOME ?= /usr/local/cuda
endif
# Build machines have no GPU to detect: name the architectures (A100, H100).
export TORCH_CUDA_ARCH_LIST ?= 8.0;9.0
export MAX_JOBS ?= $(shell nproc)

.PHONY: venv build test bench sanitize sanitize-build sanitize-test ptxas gpu-check clean

venv: $(STAMP)

$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel ninja
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q pytest hypothesis numpy matplotlib tqdm archspec onnx onnxscript onnxruntime jax
	touch $@

build: venv
	$(BIN)/pip install -q --no-build-isolation --no-deps .

test: build
	$(BIN)/pytest tests -q -rs

# The CPU suite against an AddressSanitizer + UBSan build (scripts/sanitize.sh),
# and its two halves.
sanitize: venv
	bash scripts/sanitize.sh all $(BIN)/python

sanitize-build: venv
	bash scripts/sanitize.sh build $(BIN)/python

sanitize-test: venv
	bash scripts/sanitize.sh test $(BIN)/python

bench: build
	$(BIN)/python bench/benchmark.py

# ptxas's registers and spills of the implicit-GEMM kernels for the
# architectures built by default; fails if a tensor-core kernel spills. The
# two compiles (1.5 min each, one core each) run at once, their reports
# printed in order.
ptxas: venv
	@logs=$$(mktemp -d); status=0; \
	for arch in 80 90; do $(BIN)/python scripts/ptxas_report.py --arch $$arch > $$logs/$$arch.log 2>&1 & \
	  echo $$! > $$logs/$$arch.pid; done; \
	for arch in 80 90; do wait $$(cat $$logs/$$arch.pid) || status=1; cat $$logs/$$arch.log; done; \
	rm -rf $$logs; exit $$status

# On a machine with a GPU, from a fresh checkout; uses the machine's python3.
gpu-check:
	bash scripts/gpu_check.sh $(OUT)

clean:
	rm -rf build build-sanitize build-sanitize.log dist *.egg-info torch_tconv/*.so
