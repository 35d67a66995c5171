#!/usr/bin/env bash
# The GPU check in one go (at most ~8 minutes on an H100/H200): ours against transformers on the same weights.
#
#     bash benchmarks/gpu_check.sh [bench_gpu.py options]
#
# Runs on the machine's own python3 and packages (torch with CUDA, transformers); the package is taken from src/.
# Prints the GPU, then benchmarks/bench_gpu.py's sections (forward, end-to-end, half precision, training step), the
# ONNX Runtime CUDA-provider section (skipped cleanly without onnxruntime-gpu),
# then the tests that need a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PYTHON="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true
timeout 290 "$PYTHON" benchmarks/bench_gpu.py --only forward end-to-end half training --budget 235 "$@"
# onnxruntime's CUDA provider on Swin-T exported by 'mask2former export' (fp32 and fp16) against our PyTorch; prints
# a skip line when onnxruntime (onnxruntime-gpu) or its CUDA provider is missing
timeout 150 "$PYTHON" benchmarks/bench_gpu.py --only onnx --budget 140 "$@"
echo
echo "## tests that need a GPU"
timeout 40 "$PYTHON" -m pytest -q -rs -p no:cacheprovider -k "gpu or cuda" --continue-on-collection-errors tests 2>&1 | tail -15
