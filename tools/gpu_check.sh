#!/usr/bin/env bash
# GPU check: build wsls from source with this machine's own python and torch (no venv, no
# network), then run the op tests (CUDA cases included) and the kernel benchmarks on the GPU.
# Missing pure-Python packages travel as wheels in .whl/ (see the device tool's README).
# Logs go to $OUT (or ./gpu-check-out). Usage: bash tools/gpu_check.sh [pytest -k expression]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOGS=${OUT:-gpu-check-out}
mkdir -p "$LOGS"
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/wsls-site .whl/*.whl
  export PYTHONPATH=/tmp/wsls-site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
export MAX_JOBS=${MAX_JOBS:-16} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
start=$(date +%s)
WSLS_REQUIRE_CUDA=1 "$PY" setup.py -q build_ext --inplace >"$LOGS/build.log" 2>&1 ||
  { tail -40 "$LOGS/build.log"; exit 1; }
grep "wsls setup" "$LOGS/build.log"
echo "build: $(($(date +%s) - start)) s"
"$PY" -c "import torch, wsls.ops as o; i = o.build_info(); print(i); assert i['cuda'] and torch.cuda.is_available()"
"$PY" -m pytest -q -x tests/test_op_*.py ${1:+-k "$1"} 2>&1 | tee "$LOGS/tests.log" | tail -15
for bench in benchmarks/bench_*.py; do
  case "$bench" in *bench_data.py|*bench_training.py|*bench_end_to_end.py) continue ;; esac
  echo "== $bench"
  "$PY" "$bench" --device cuda 2>&1 | tee "$LOGS/$(basename "$bench" .py).log" | grep -vE "^W[0-9]+ "
done
echo "gpu check: $(($(date +%s) - start)) s"
