"""A small grid run as a separate process by tests/test_faults.py (kill -9 and overlapping-grid tests).

``python tests/grid_script.py STORE GRID [--executor local]`` runs grid ``GRID`` (see ``GRIDS``) on ``STORE`` and
prints ``ready`` once imported, then one JSON line: how many teachers and students this process trained, and the grid's statuses.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from grid_helpers import tiny_config  # noqa: E402

from kdlib import study  # noqa: E402
from kdlib.study import expand_grid, run_grid  # noqa: E402

GRIDS = {
    # 8 runs on one teacher: long enough to be killed after a few records
    "kill": {"fraction": [0.1, 0.2, 0.3, 0.4], "alpha": [0.0, 0.5], "seed": [1]},
    # two grids sharing the teacher and the runs at fraction 0.2
    "overlap_a": {"fraction": [0.1, 0.2], "alpha": [0.0, 0.5], "seed": [0]},
    "overlap_b": {"fraction": [0.2, 0.3], "alpha": [0.0, 0.5], "seed": [0]},
}


def configs(grid: str) -> list:
    return expand_grid(tiny_config(), GRIDS[grid])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("grid", choices=sorted(GRIDS))
    parser.add_argument("--executor", default="local")
    args = parser.parse_args()
    torch.set_num_threads(1)
    trained = {"teacher": 0, "student": 0}
    real_train = study.train

    def counting_train(*a, **k):
        trained["teacher" if str(k.get("desc", "")).startswith("teacher") else "student"] += 1
        return real_train(*a, **k)

    study.train = counting_train
    print("ready", flush=True)  # imports done (they take seconds on busy cores): the grid starts now
    df = run_grid(configs(args.grid), args.store, progress=False, executor=args.executor, workers=2,
                  group_size=1)
    print(json.dumps({"trained": trained, "status": df.status.tolist(), "keys": df.key.tolist()}), flush=True)


if __name__ == "__main__":
    main()
