#!/usr/bin/env bash
# Create .venv in the checkout, install Semsearch with every extra, export the model.
# Idempotent: a second run installs nothing new and the export is a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check)
"${PIP[@]}" install --quiet --upgrade pip setuptools wheel
# torch first, pinned: the CPU wheel on local disk (an unpinned torch pulls a CUDA build).
"${PIP[@]}" install --quiet torch==2.13.0
"${PIP[@]}" install --quiet -e '.[export,bench,dev]'
.venv/bin/semsearch-index export-model --out "${SEMSEARCH_MODEL_DIR:-models/all-minilm-l6-v2}"
