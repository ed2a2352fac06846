#!/usr/bin/env bash
# Fresh-clone install time with pip and with uv, side by side, first with empty package caches (everything
# downloaded) and then with the caches those installs filled; and the size of a cluster worker's environment
# (core + slurm, requirements/worker.lock) against make study's (+ the notebooks extra).
#
#   pip install uv                                   # uv on the PATH (any way of installing it will do)
#   benchmarks/install_time.sh [REPO [BRANCH]]       # default: this checkout's repository and branch
#
# Each install is `make install INSTALLER=pip|uv` in a new `git clone` (a venv, the locked packages, the Jupyter
# kernel spec and kdlib.warmup's byte-compilation). Caches live in a fresh temporary folder (PIP_CACHE_DIR,
# UV_CACHE_DIR), so "cold" means nothing cached. Needs ~25 GB free in $TMPDIR (PyPI's torch is a CUDA build: ~4 GB
# of wheels, ~6.5 GB installed); everything is deleted at the end unless KEEP=1.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
REPO=${1:-$(git -C "$here" rev-parse --show-toplevel)}
BRANCH=${2:-$(git -C "$here" rev-parse --abbrev-ref HEAD)}
command -v uv >/dev/null || { echo "uv is not on the PATH: pip install uv" >&2; exit 2; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kdlib-install.XXXXXX")
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
export PIP_CACHE_DIR=$WORK/pip-cache UV_CACHE_DIR=$WORK/uv-cache
unset PYTHONDONTWRITEBYTECODE

echo "machine: $(nproc) cores, $(python3 --version 2>&1), $(uv --version), pip $(python3 -m pip --version | cut -d' ' -f2)"
echo "clone of $REPO at $BRANCH ($(git -C "$REPO" rev-parse --short "$BRANCH")); load average $(cut -d' ' -f1 /proc/loadavg)"
results=()
for caches in cold warm; do
  for installer in pip uv; do
    rm -rf "$WORK/clone"
    git clone -q -b "$BRANCH" "$REPO" "$WORK/clone"
    t0=$(date +%s.%N)
    make -C "$WORK/clone" install INSTALLER=$installer > "$WORK/$installer-$caches.log" 2>&1 \
      || { cat "$WORK/$installer-$caches.log"; exit 1; }
    t1=$(date +%s.%N)
    warm=$(grep -o 'in [0-9.]* s' "$WORK/$installer-$caches.log" | tail -1)
    size=$(du -sh "$WORK/clone/.venv" | cut -f1)
    line=$(python3 -c "t = $t1 - $t0; w = float('${warm#in }'.split()[0]); print(f'{\"$installer\":4s} {\"$caches\":5s} \
caches: make install {t:4.0f} s = packages {t - w:4.0f} s + kdlib.warmup {w:3.0f} s; .venv $size; load $(cut -d' ' -f1 /proc/loadavg)')")
    echo "$line"
    results+=("$line")
  done
done

# A cluster worker: the core library and submitit, no notebooks extra (uv, warm cache; the size is what counts).
rm -rf "$WORK/clone" && git clone -q -b "$BRANCH" "$REPO" "$WORK/clone"
(cd "$WORK/clone" && uv venv -q --python python3 .venv-worker \
  && uv pip install -q --python .venv-worker/bin/python -e '.[slurm]' -c requirements/worker.lock \
  && .venv-worker/bin/python -c "import kdlib.study, kdlib.executors, kdlib.distributed, kdlib.imagenet, submitit")
for m in matplotlib jupyterlab pytest; do  # what a worker must not carry
  if "$WORK/clone/.venv-worker/bin/python" -c "import $m" 2>/dev/null; then echo "the worker env has $m" >&2; exit 1; fi
done
(cd "$WORK/clone" && make -s install INSTALLER=uv >/dev/null)
echo "worker install (core + slurm, requirements/worker.lock): .venv $(du -sh "$WORK/clone/.venv-worker" | cut -f1), \
$(ls -d "$WORK"/clone/.venv-worker/lib/python3*/site-packages/*.dist-info | wc -l) distributions"
echo "make study install (core + notebooks, requirements/study.lock): .venv $(du -sh "$WORK/clone/.venv" | cut -f1), \
$(ls -d "$WORK"/clone/.venv/lib/python3*/site-packages/*.dist-info | wc -l) distributions"
