#!/usr/bin/env bash
# The cpu profile's studies (Fashion-MNIST, ResNet-8; issue 16) at the issue's full grids, on a lent GPU, in one
# command that fits the device's 10-minute call: each study is filled seed after seed (scripts/fill_store.py) in
# the order the claims need them, all under one deadline (LIMIT seconds), then every record (runs, alpha rules,
# teachers with weights, scores with arrays) is exported to $OUT/cpu_study.jsonl.gz, whatever finished.
# Back on a workstation:
#   python -m kdlib.archive import cpu_study.jsonl.gz outputs/cpu/store
#   python -m kdlib.notebooks --profile cpu          # the notebooks read the runs and only draw what is new
# Runs the store already holds are read, never redone: a second call goes on where the first stopped.
#
#   scripts/gpu_cpu_study.sh                           # on the device; DATA_ROOT: the four Fashion-MNIST IDX .gz
#   LIMIT=120 DEVICE=cpu WORKERS=2 RUNS_PER_GPU=1 scripts/gpu_cpu_study.sh   # the same flow on a CPU
# Environment: LIMIT (default 540), OUT (default outputs/gpu-study), DATA_ROOT (default: the Debian package's
# folder), DEVICE (default cuda), WORKERS (default 16 processes), RUNS_PER_GPU (default 16), BEST2 (the sweep's
# best two other methods, added to the alpha study; default "facility_location moderate", the best two at f = 0.05 in docs/results/cpu).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=1
OUT=${OUT:-outputs/gpu-study}
DATA_ROOT=${DATA_ROOT:-/usr/share/datasets/fashion-mnist}
LIMIT=${LIMIT:-540}
read -r -a BEST2 <<< "${BEST2:-facility_location moderate}"
mkdir -p "$OUT"
deadline=$(( $(date +%s) + LIMIT ))
"$PY" -c "import torch, kdlib; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else torch.backends.cpu.get_cpu_capability())"

fill() {  # fill STUDY [--set ...]: one study under what is left of the deadline
    local left=$(( deadline - $(date +%s) ))
    if (( left < 20 )); then echo "skipped $1: deadline"; return; fi
    timeout -s TERM "$left" "$PY" scripts/fill_store.py --profile cpu --study "$@" --store "$OUT/store" \
        --data-root "$DATA_ROOT" --device "${DEVICE:-cuda}" --workers "${WORKERS:-16}" \
        --runs-per-gpu "${RUNS_PER_GPU:-16}" 2>&1 | grep -v 'it/s\]$' | tail -n 3
}

# The issue's grids (params/cpu holds the cut a 2-core CPU can afford; these put back what it dropped).
fill pruning_sweep --set 'fractions=[0.05, 0.1, 0.3, 0.5, 0.7, 1.0]' 'seeds_by_method={random: [0, 1, 2, 3, 4]}'
fill alpha_vs_factor --set "methods=[random, el2n, forgetting, ${BEST2[0]}, ${BEST2[1]}]" \
    'fractions=[0.02, 0.05, 0.1, 0.3]'
fill noisy_labels
fill teacher_fraction
fill teacher_capacity --set 'teachers=[resnet8, resnet14, resnet20, resnet32, resnet8x4, resnet32x4]'
"$PY" -m kdlib.archive export "$OUT/store" "$OUT/cpu_study.jsonl.gz" --kinds runs alpha_rules teachers scores
