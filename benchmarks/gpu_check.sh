#!/usr/bin/env bash
# The GPU check, one command (a few minutes on one GPU; stopped at 8): the paper's ResNet-32 KD step with kdlib and
# with the reference loop, bf16 and fp16, lockstep groups, and the projected GPU-hours of the paper's CIFAR grid for
# both, after the machine header. Details: benchmarks/gpu_check.py.
#   benchmarks/gpu_check.sh              # on a CUDA machine (uses .venv when there, else python3)
#   benchmarks/gpu_check.sh --dry-run    # anywhere, in seconds: CPU, ResNet-8, tiny sizes (tests/test_gpu_check.py)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's kdlib, installed or not
exec timeout "${GPU_CHECK_LIMIT:-480}" "$PY" benchmarks/gpu_check.py "$@"
