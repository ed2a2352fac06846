"""One slice of the quick profile's pruning sweep (digits) through one grid executor, into a fresh store.

    python benchmarks/scale_out.py --executor local
    python benchmarks/scale_out.py --executor processes --workers 2          # add --runs-per-gpu 2 on GPUs
    python benchmarks/scale_out.py --executor ray --num-cpus 1              # add --num-gpus 0.5 on GPUs
    python benchmarks/scale_out.py --executor slurm --slurm '{"cluster": "local"}'   # submitit's local backend

Prints the number of runs, the wall time and a digest of every record's (key, final accuracy, loss curve): equal
digests mean equal records. Records are bitwise equal across executors at equal torch thread counts, so the
local executor runs with ``--threads`` (default 1, what a 2-worker pool on 2 cores, a Ray task with one CPU
and a SLURM job with one CPU use).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def configs(methods: list[str], fractions: list[float], alphas: list[float], seeds: list[int]) -> list:
    """The quick profile's sweep recipe (params/quick/pruning_sweep.yaml) on a smaller grid."""
    from kdlib.study import sweep_grid

    p = yaml.safe_load((ROOT / "params" / "quick" / "pruning_sweep.yaml").read_text())
    base = {k: p[k] for k in ("dataset", "model", "teacher", "train", "proxy")}
    return sweep_grid(base, methods, {"fraction": fractions, "alpha": alphas}, seeds)


def digest(store_root: Path, keys: list[str]) -> str:
    from kdlib.store import Store

    store = Store(store_root)
    rows = [(k, store.get("runs", k)["result"]["final_acc"], store.get("runs", k)["result"]["losses"]) for k in keys]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:12]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executor", default="local", choices=["local", "processes", "ray", "slurm"])
    parser.add_argument("--store", help="store folder (default: a fresh temporary one)")
    parser.add_argument("--workers", type=int)
    parser.add_argument("--runs-per-gpu", type=int, default=1)
    parser.add_argument("--num-cpus", type=float, default=1)
    parser.add_argument("--num-gpus", type=float, default=0)
    parser.add_argument("--slurm", type=json.loads, help="the slurm mapping, as JSON")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the local executor")
    parser.add_argument("--methods", nargs="+", default=["random", "forgetting"])
    parser.add_argument("--fractions", nargs="+", type=float, default=[0.2, 1.0])
    parser.add_argument("--alphas", nargs="+", type=float, default=[0.0, 0.5])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    args = parser.parse_args(argv)

    import torch

    from kdlib.study import run_grid

    torch.set_num_threads(args.threads)
    grid = configs(args.methods, args.fractions, args.alphas, args.seeds)
    with tempfile.TemporaryDirectory(prefix="kdlib-scale-out-") as tmp:
        store = Path(args.store or Path(tmp) / "store")
        t0 = time.perf_counter()
        df = run_grid(grid, store, progress=False, executor=args.executor, workers=args.workers,
                      runs_per_gpu=args.runs_per_gpu, num_cpus=args.num_cpus, num_gpus=args.num_gpus,
                      slurm=args.slurm)
        wall = time.perf_counter() - t0
        print(f"executor={args.executor}: {len(df)} runs ({(df.status == 'done').sum()} done, "
              f"{df.key.nunique()} distinct) in {wall:.1f} s; records digest {digest(store, sorted(set(df.key)))}")


if __name__ == "__main__":
    main()
