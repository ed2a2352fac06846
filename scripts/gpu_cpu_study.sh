#!/usr/bin/env bash
# The cpu profile's studies (Fashion-MNIST, ResNet-8 student; issue 16) that a 2-core CPU cannot afford, on a lent
# GPU, in one command that fits the device's 10-minute call. Three lanes fill the store side by side under one
# deadline (LIMIT seconds) on the one GPU (LANE_A/B/C below say how many processes each):
#   A  teacher capacity: the ResNet-14/20/32/8x4/32x4 teachers (ResNet-8's come from the published archive) and
#      their students, all seeds together;
#   B  alpha against f: the alpha study's grid method after method (random, EL2N, forgetting, then BEST2), all
#      seeds together, so a stop leaves whole methods; its alpha rules are fitted if it finishes;
#   C  the pruning sweep at SWEEP_FRACTIONS (the published f = 0.05 runs are read, not redone), method after method.
# Then the records come back in at most 8 files under $OUT (the device's limit: 16 MiB each): runs.jsonl.gz (run
# records and alpha rules), teachers.jsonl.gz (teachers whose weights are under TEACHER_MB; the wide ones are
# left there), scores.jsonl.gz (if under 15 MiB), gpu_study.log and one log per lane. Back on a workstation:
#   for f in runs teachers scores; do python -m kdlib.archive import $f.jsonl.gz outputs/cpu/store; done
#   python -m kdlib.notebooks --profile cpu       # the notebooks read the runs and only draw
# Each record's runtime names the device that made it (GPU name, precision).
#
#   DATA_ROOT=.gpu/fashion-mnist STORE=/tmp/store scripts/gpu_cpu_study.sh            # on the device ($OUT set)
#   LIMIT=90 DEVICE=cpu LANE_A=1 scripts/gpu_cpu_study.sh                        # the same flow on a CPU
# Environment: LIMIT (default 500), OUT (default outputs/gpu-study), STORE (default $OUT/../gpu-store: never
# under $OUT, whose files all travel back), DATA_ROOT (default: the Debian package's folder), DEVICE (default cuda),
# LANE_A/B/C (default 3 / 1 / 1 worker processes; each worker trains its chunk of runs as stacked groups whose size
# kdlib.group_size chooses on the GPU from a measured throughput curve), BEST2 (default "facility_location moderate", the sweep's best two other
# methods at f = 0.05 in docs/results/cpu), SWEEP_FRACTIONS (default "0.05, 0.1"), TEACHER_MB (default 2).
# Measured on an H200 (2026-12-01, 16 worker processes, 5/6/5 per lane, fp32): "100% utilisation" in nvidia-smi
# but ~4,000 training images/s per ResNet-8 process (~65k in all): 16 contexts time-slicing one GPU, each with
# small launch-bound kernels, used it badly; 13 minutes made 159 runs and 5 teachers and no x4 teacher finished.
# Hence the defaults now: the grids of many small runs train as groups (kdlib.grouped: runs of any method, seed,
# alpha and label noise that share the kept fraction, stacked into one network, K times fewer and bigger kernels),
# one or two processes per lane, and the teachers share the GPU three at a time. Not yet run on a GPU in this form:
# benchmarks/gpu_check.sh measures the group step first.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
OUT=${OUT:-outputs/gpu-study}
STORE=${STORE:-$(dirname "$OUT")/gpu-store}
DATA_ROOT=${DATA_ROOT:-/usr/share/datasets/fashion-mnist}
LIMIT=${LIMIT:-500}
DEVICE=${DEVICE:-cuda}
read -r -a BEST2 <<< "${BEST2:-facility_location moderate}"
mkdir -p "$OUT" "$STORE"
LOG="$OUT/gpu_study.log"
deadline=$(( $(date +%s) + LIMIT ))
exec > >(tee -a "$LOG") 2>&1

# Preflight: fail in seconds, not at the deadline, if the device, the data or the code is not there.
"$PY" - "$DATA_ROOT" "$DEVICE" <<'EOF' || { echo "preflight failed"; exit 2; }
import sys, time, torch, numpy, pandas, kdlib
from kdlib.data import load_dataset
t = time.time()
d = load_dataset("fashion_mnist", root=sys.argv[1])
dev = sys.argv[2]
name = torch.cuda.get_device_name(0) if dev.startswith("cuda") else torch.backends.cpu.get_cpu_capability()
print(f"torch {torch.__version__} numpy {numpy.__version__} pandas {pandas.__version__}; device {dev}: {name}; "
      f"fashion_mnist {tuple(d.x_train.shape)} read in {time.time() - t:.1f} s", flush=True)
EOF
for f in docs/results/cpu/store/*.jsonl.gz; do "$PY" -m kdlib.archive import "$f" "$STORE"; done

fill() {  # fill HOW STUDY [args]: HOW = N worker processes, each training its chunks as groups
    local how=$1; shift
    local ex=(--executor processes --workers "$how" --runs-per-gpu "$how" --group-size "${GROUP_SIZE:-auto}")
    local left=$(( deadline - $(date +%s) ))
    if (( left < 20 )); then echo "skipped $1: deadline"; return; fi
    echo "[$(date +%T)] start $1 (${ex[*]}, ${left} s left)"
    timeout -s TERM "$left" "$PY" scripts/fill_store.py --profile cpu --study "$@" --store "$STORE" \
        --data-root "$DATA_ROOT" --device "$DEVICE" "${ex[@]}" 2>&1 \
        | tee "$OUT/lane_$1.log" | tr '\r' '\n' | grep --line-buffered -v -e 'it/s\]$' -e '^\s*$' | tail -n 4
    echo "[$(date +%T)] end $1 (rc ${PIPESTATUS[0]})"
}

if command -v nvidia-smi >/dev/null && [[ $DEVICE == cuda* ]]; then  # the GPU's load once a minute, into the log
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 60 & smi=$!
fi
fill "${LANE_A:-3}" teacher_capacity --interleave & lanes=($!)
fill "${LANE_B:-1}" alpha_vs_factor --interleave \
    --set "methods=[random, el2n, forgetting, ${BEST2[0]}, ${BEST2[1]}]" & lanes+=($!)
fill "${LANE_C:-1}" pruning_sweep --interleave --set "fractions=[${SWEEP_FRACTIONS:-0.05, 0.1}]" \
    'seeds_by_method={random: [0, 1, 2, 3, 4]}' & lanes+=($!)
wait "${lanes[@]}"  # the lanes only: a bare wait would also wait for the log's tee
[[ -n ${smi:-} ]] && kill "$smi"

"$PY" -m kdlib.archive export "$STORE" "$OUT/runs.jsonl.gz" --kinds runs alpha_rules
"$PY" -m kdlib.archive export "$STORE" "$OUT/teachers.jsonl.gz" --kinds teachers --max-blob-mb "${TEACHER_MB:-2}"
"$PY" -m kdlib.archive export "$STORE" "$OUT/scores.jsonl.gz" --kinds scores --max-blob-mb 4
for f in "$OUT"/*.jsonl.gz; do
    if (( $(stat -c %s "$f") > 15 * 1024 * 1024 )); then echo "$f over 15 MiB: removed"; rm "$f"; fi
done
"$PY" - "$STORE" <<'EOF'
import sys
from kdlib.store import Store
s = Store(sys.argv[1])
print({k: sum(1 for _ in s.records(k)) for k in ("runs", "teachers", "scores", "alpha_rules")})
EOF
ls -la "$OUT"
