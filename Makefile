# wsls: `make demo` and `make test` are all a new user needs (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export MAX_JOBS ?= 2
# OpenMP threads that spin while waiting cost more than the work on small machines
export OMP_WAIT_POLICY ?= PASSIVE
CMAKE_BUILD ?= build-cmake

.PHONY: setup build test demo bench lint format cmake check-cuda-build gpu-check clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.deps: requirements-dev.txt | $(PY)
	$(PIP) install -q -r requirements-dev.txt
	touch $@

$(VENV)/.installed: $(VENV)/.deps pyproject.toml setup.py
	$(PIP) install -q --no-build-isolation --no-deps -e .
	touch $@

# Incremental (ninja): seconds when nothing changed.
build: $(VENV)/.installed
	$(PY) setup.py -q build_ext --inplace 2>&1 | grep -E "wsls setup|error" || true
	@$(PY) -c "import torch, wsls.ops as o; print('wsls._C:', o.build_info())"

setup: build

test: setup
	$(PY) -m pytest -q

# The whole method on a generated phantom (7 to 18 minutes on the 2-core machines; DEMO_ARGS=--quick: half).
DEMO_ARGS ?=
demo: setup
	$(PY) -m wsls.ops.selfcheck
	$(PY) -m wsls demo $(DEMO_ARGS)

bench: setup
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# Fails unless the CUDA kernels were compiled and registered.
check-cuda-build: setup
	$(PY) -c "import torch, wsls.ops as o; i = o.build_info(); \
	assert i['cuda'], 'wsls was built without its CUDA kernels'; \
	assert o.has_kernel('attention_cam', 'CUDA'), 'no CUDA kernel registered'; \
	assert all(o.has_kernel(op, 'CUDA') for op in ('affinity_grow', 'mask_nms', 'candidate_scores', 'pack_masks', 'unpack_masks')), 'no CUDA kernel for affinity_grow / mask_nms'; \
	assert o.has_kernel('pairwise_affinity_loss', 'CUDA'), 'no pairwise_affinity_loss CUDA kernel'; \
	assert o.has_kernel('pairwise_affinity_loss_backward', 'CUDA'), 'no CUDA backward kernel'; \
	print('CUDA kernels compiled for', i['cuda_arch_list'])"

lint: $(VENV)/.deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/clang-format --dry-run --Werror $$(git ls-files 'csrc/*.h' 'csrc/*.cpp' 'csrc/*.cu' 'csrc/*.cuh')

format: $(VENV)/.deps
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
	$(VENV)/bin/clang-format -i $$(git ls-files 'csrc/*.h' 'csrc/*.cpp' 'csrc/*.cu' 'csrc/*.cuh')

# The C++/libtorch library (CPU kernels; add -DWSLS_WITH_CUDA=ON for the CUDA ones).
cmake: $(VENV)/.deps
	cmake -S . -B $(CMAKE_BUILD) -DCMAKE_PREFIX_PATH="$$($(PY) -c 'import torch; print(torch.utils.cmake_prefix_path)')" \
	  -DCUDA_TOOLKIT_ROOT_DIR=$${CUDA_HOME:-/usr/local/cuda} -DCUDAToolkit_ROOT=$${CUDA_HOME:-/usr/local/cuda} $(CMAKE_ARGS)
	cmake --build $(CMAKE_BUILD) -j $(MAX_JOBS)
	$(PY) -c "import torch; torch.ops.load_library('$(CMAKE_BUILD)/libwsls.so'); print('libwsls:', torch.ops.wsls.attention_cam)"

# On a machine with a GPU and no network: that machine's python and torch, no venv. Builds from
# source (TORCH_CUDA_ARCH_LIST = that GPU's), CUDA tests, benchmarks on the GPU, wsls.segment on a
# BraTS case (CUDA against CPU), a bf16 training; under 6 minutes (each step time-boxed); report in
# $OUT/gpu_check.md, else gpu_check_out/. Without a GPU: one line, exit 1. MAX_JOBS: all cores
# unless you set it (the 2 above is for the small development machine).
# GPU_CHECK_ARGS: e.g. --bundle run/bundle --case ../shared/data/brats2015/<case> (see --help).
GPU_CHECK_ARGS ?=
gpu-check:
	$(if $(filter file,$(origin MAX_JOBS)),MAX_JOBS=$$(nproc)) PYTHON=$(PYTHON) \
	  bash tools/gpu_check.sh $(GPU_CHECK_ARGS)

clean:
	rm -rf build $(CMAKE_BUILD) wsls/_C*.so *.egg-info
