#!/usr/bin/env bash
# Groups of runs on a GPU (issue 23), one prepared command under 8 minutes, everything it measures under $OUT:
#   1. benchmarks/grid_throughput.py: aggregate student-images/s of ResNet-8 (28x28x1, batch 128) and ResNet-32
#      (32x32x3, batch 64) KD runs, one at a time, in stacked groups of K = 1, 4, 16, 64 and as P processes
#      (targets on an H200: >= 500k ResNet-8 and >= 150k ResNet-32 KD images/s in aggregate);
#   2. benchmarks/gpu_check.py: the paper's KD step, the group curve and the paper's CIFAR grid priced grouped
#      (target: <= 30 H200-hours);
#   3. a short grid through the processes executor with groups: the cpu profile's pruning sweep at f = 0.3 for
#      random and EL2N at 3 seeds, alpha 0 and 0.5, on Fashion-MNIST, over the published archive it imports first
#      (its teachers; f = 0.3 is not in it), records and their runtime coming back;
#   4. python -m kdlib.plan --profile cpu --device cuda over an empty store: the whole cpu-profile grid (params/cpu)
#      priced on this GPU (target: <= 15 minutes).
# Each step has its own time limit and log; a step that fails or runs out of time does not stop the next.
#   DATA_ROOT=.gpu/fashion-mnist benchmarks/gpu_groups.sh          # on the device (Fashion-MNIST carried along)
#   QUICK=1 DEVICE=cpu LIMIT_GRID=60 LIMIT_PLAN=60 benchmarks/gpu_groups.sh   # a smoke test of the script on a CPU:
#                                                  tiny benchmarks, the grid and the plan cut at their limits
# Environment: OUT (default outputs/gpu-groups), DATA_ROOT (default the Debian package's folder), QUICK (tiny
# sizes), LIMIT_BENCH/LIMIT_CHECK/LIMIT_GRID/LIMIT_PLAN (seconds; defaults 150/120/120/60).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
OUT=${OUT:-outputs/gpu-groups}
DATA_ROOT=${DATA_ROOT:-/usr/share/datasets/fashion-mnist}
STORE=${STORE:-$(dirname "$OUT")/gpu-groups-store}  # never under $OUT: its files all travel back
mkdir -p "$OUT" "$STORE"
export XDG_CACHE_HOME="$OUT/cache"  # the group-size curves measured here come back too
for f in docs/results/cpu/store/records.jsonl.gz docs/results/cpu/store/teachers.jsonl.gz; do  # the published
    "$PY" -m kdlib.archive import "$f" "$STORE" > /dev/null                                   # runs and teachers
done

step() {  # step NAME LIMIT command...
    local name=$1 limit=$2; shift 2
    echo "[$(date +%T)] $name (limit ${limit} s)"
    timeout -s TERM "$limit" "$@" > "$OUT/$name.log" 2>&1
    echo "[$(date +%T)] $name: rc $?"; tail -n 30 "$OUT/$name.log"
}

if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,utilization.gpu,memory.used --format=csv > "$OUT/nvidia-smi.csv"
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 15 >> "$OUT/nvidia-smi.csv" &
    smi=$!
fi
if [[ -n ${QUICK:-} ]]; then
    step grid_throughput "${LIMIT_BENCH:-150}" "$PY" benchmarks/grid_throughput.py --quick
    step gpu_check "${LIMIT_CHECK:-120}" "$PY" benchmarks/gpu_check.py --dry-run
else
    step grid_throughput "${LIMIT_BENCH:-150}" "$PY" benchmarks/grid_throughput.py --rounds 3 --processes 4 16
    step gpu_check "${LIMIT_CHECK:-120}" "$PY" benchmarks/gpu_check.py --repeats 2
fi
step grid "${LIMIT_GRID:-120}" "$PY" scripts/fill_store.py --profile cpu --study pruning_sweep --store "$STORE" \
    --data-root "$DATA_ROOT" --device "${DEVICE:-auto}" --executor processes --workers 2 --runs-per-gpu 2 \
    --group-size auto --interleave --set 'methods=[random, el2n]' 'fractions=[0.3]' 'seeds=[0, 1, 2]' \
    'seeds_by_method={}' --export "$OUT/grid_records.jsonl.gz"
step plan "${LIMIT_PLAN:-60}" "$PY" -m kdlib.plan --profile cpu --device "${DEVICE:-auto}" \
    --store "$(dirname "$OUT")/gpu-groups-empty-store" \
    --data-root "$DATA_ROOT"
[[ -n ${smi:-} ]] && kill "$smi"
ls -la "$OUT"
