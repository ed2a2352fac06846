"""Grid-level saving (c): teachers, scores and finished runs are never recomputed.

    python benchmarks/grid_cache.py            # digits, convnet_small, EL2N + random, 2 fractions, 2 alphas
    python benchmarks/grid_cache.py --group-size 1  # one run at a time (default: groups, size chosen for the device)

Calls ``kdlib.study.run_grid`` three times on one fresh store: (1) the grid from scratch (one teacher, one EL2N
score cache, every student); (2) the same grid again: every record is read, nothing trains; (3) the grid with
one more fraction: only the new students train, the teacher and the scores are reused. Prints the wall time of
each call, the ratio to the first, and how many teachers / score caches / runs the store holds after each.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_header  # noqa: E402

from kdlib.store import Store  # noqa: E402
from kdlib.study import expand_grid, run_grid  # noqa: E402
from kdlib.train import TrainConfig  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--group-size", default="auto", type=lambda v: v if v == "auto" else int(v))
    args = ap.parse_args(argv)
    print(machine_header(), flush=True)
    recipe = TrainConfig(epochs=args.epochs, batch_size=64, lr=0.05, schedule="cosine")
    base = dict(dataset="digits", model="convnet_small", teacher="convnet_small", train=recipe,
                proxy={"train": {"epochs": 3, "batch_size": 64, "lr": 0.05, "schedule": "cosine"}})
    grid = {"method": ["random", "el2n"], "fraction": [0.2, 0.5], "alpha": [0.0, 0.5], "seed": [0]}
    more = {**grid, "fraction": [0.2, 0.5, 0.35]}
    with tempfile.TemporaryDirectory() as root:
        store = Store(root)

        def call(label: str, axes: dict) -> float:
            configs = expand_grid(base, axes)
            t0 = time.perf_counter()
            df = run_grid(configs, store, progress=False, group_size=args.group_size)
            dt = time.perf_counter() - t0
            counts = {k: len(list((store.root / k).glob("*.json"))) if (store.root / k).exists() else 0
                      for k in ("teachers", "scores", "runs")}
            print(f"{label:48s} {len(configs):3d} configs {dt:7.2f} s   store: {counts['teachers']} teacher(s), "
                  f"{counts['scores']} score cache(s), {counts['runs']} runs; all done: {bool((df.status == 'done').all())}",
                  flush=True)
            return dt

        first = call("1. grid from scratch", grid)
        second = call("2. same grid again", grid)
        third = call("3. grid + one fraction (teacher, scores reused)", more)
    print(f"\nsecond call / first call: {second / first:.4f} ({first / max(second, 1e-9):.0f}x cheaper)")
    print(f"third call / first call:  {third / first:.2f} (only the 4 new students train)")


if __name__ == "__main__":
    main()
