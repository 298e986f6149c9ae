#!/usr/bin/env bash
# Set everything up (scripts/setup.sh), then run the encoder demo on the bundled sample catalog.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/encoder_demo.py "$@"
