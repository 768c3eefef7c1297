#!/usr/bin/env bash
# The one prepared GPU check (bench/gpu_check.py): training, embeddings, GroundingDINO,
# SAM and exact ranking at full size on one CUDA device, offline, in at most 8 minutes.
#
#   bench/gpu_check.sh [OUT.json]     default: bench-results/gpu/<device>.json
#   GPU_CHECK_TINY=1 bench/gpu_check.sh OUT.json     tiny sizes, any device (the tests)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec timeout --signal=INT 480 "$PY" bench/gpu_check.py "$@"
