#!/usr/bin/env bash
# The GPU check in one go (at most ~8 minutes on an H100/H200): ours against transformers on the same weights.
#
#     bash benchmarks/gpu_check.sh [bench_gpu.py options]
#
# Runs on the machine's own python3 and packages (torch with CUDA, transformers); the package is taken from src/.
# Prints the GPU, then benchmarks/bench_gpu.py's sections (forward, end-to-end, half precision, training step, ONNX),
# then the tests that need a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PYTHON="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true
timeout 450 "$PYTHON" benchmarks/bench_gpu.py --budget 360 "$@"
echo
echo "## tests that need a GPU"
timeout 60 "$PYTHON" -m pytest -q -rs -p no:cacheprovider -k "gpu or cuda" --continue-on-collection-errors tests 2>&1 | tail -15
