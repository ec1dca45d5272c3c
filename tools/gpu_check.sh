#!/usr/bin/env bash
# GPU check (`make gpu-check`): with this machine's own python and torch (no venv, no network),
# build wsls from source, run the CUDA tests, the kernel benchmarks on the GPU, wsls.segment on a
# BraTS case (CUDA against CPU) and a short bf16 training; one report: $OUT/gpu_check.md
# (./gpu_check_out/ when OUT is unset). Without a visible GPU: one line on stderr, exit 1.
# Missing pure-Python packages travel as wheels in .whl/ (see the device tool's README).
# Usage: bash tools/gpu_check.sh [--bundle DIR] [--case PATH] [--budget S] [--plan] ...
# (every option: python3 tools/gpu_check.py --help)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || { echo "gpu-check: no python at '$PY' (set PYTHON)" >&2; exit 1; }
if compgen -G ".whl/*.whl" >/dev/null; then
  timeout 60 "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/wsls-site \
    .whl/*.whl
  export PYTHONPATH=/tmp/wsls-site${PYTHONPATH:+:$PYTHONPATH}
fi
exec "$PY" tools/gpu_check.py --python "$(command -v "$PY")" "$@"
