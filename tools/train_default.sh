#!/usr/bin/env bash
# Rebuilds the shipped tumour model (wsls/pretrained/tumour) from the data, with its seed:
# the four shared BraTS 2015 cases and the 16-case BraTS 2018 development set
# (../shared/data/get_brats2018.sh writes it to $WSLS_DATA/brats2018).
#   tools/train_default.sh [RUN_FOLDER]      (default: runs/default_tumour; resumes if interrupted)
# The model card's cross-validation figures come from benchmarks/eval_cv.py (its summary.md),
# passed as CV_SUMMARY=path/to/summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
SHARED=${WSLS_SHARED_DATA:-../shared/data}
BRATS18=${WSLS_DATA:-$HOME/wsls-data}/brats2018
RUN=${1:-runs/default_tumour}
[ -d "$SHARED/brats2015" ] || { echo "train_default: $SHARED/brats2015 not found" >&2; exit 1; }
[ -d "$BRATS18" ] || { echo "train_default: $BRATS18 not found: build it with $SHARED/get_brats2018.sh" >&2; exit 1; }
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
"$PY" -m wsls train "$SHARED/brats2015" "$BRATS18" --preset tumour --out "$RUN" --resume --no-progress
"$PY" tools/make_pretrained.py "$RUN/bundle" wsls/pretrained/tumour ${CV_SUMMARY:+--cv-summary "$CV_SUMMARY"}
