"""How many epochs the cpu profile's recipe needs: full-data ResNet-8 students on Fashion-MNIST trained for several
epoch budgets (the sweep's recipe otherwise), so the study's budget can be chosen as the shortest whose accuracy is
within 1 point of the longest run's.

    python scripts/convergence_budget.py [--epochs 3 5 10 20 30] [--seeds 0] [--store outputs/cpu/store]
                                         [--out docs/results/cpu/budget]

Runs go through the cpu profile's store (so the chosen budget's full-data run is reused by the sweep) and write
``budget.csv`` (one row per run) and ``README.md``-ready lines to stdout.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from kdlib.precision import runtime_info
from kdlib.study import RunConfig, run_grid

RECIPE = dict(batch_size=128, lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="step")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, nargs="+", default=[3, 5, 10, 20, 30])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--store", default="outputs/cpu/store")
    ap.add_argument("--out", default="docs/results/cpu/budget")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    configs = [RunConfig(dataset="fashion_mnist", model="resnet8", seed=s,
                         train={**RECIPE, "epochs": e, "eval_every": max(1, e // 6)})
               for e in sorted(args.epochs, reverse=True) for s in args.seeds]
    t0 = time.time()
    df = run_grid(configs, args.store, device="cpu", executor="processes", workers=args.workers)
    wall = time.time() - t0
    df["epochs"] = [c.train.epochs for c in configs]
    table = df[["epochs", "seed", "final_acc", "best_acc", "train_seconds", "images_per_sec", "key"]].sort_values(
        ["epochs", "seed"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "budget.csv", index=False)
    mean = table.groupby("epochs")["final_acc"].mean()
    ref_epochs = int(mean.index.max())
    within = [int(e) for e, acc in mean.items() if mean[ref_epochs] - acc <= 1.0]
    print(f"capability {torch.backends.cpu.get_cpu_capability()}; {runtime_info('cpu', 'auto')}")
    print(table.to_string(index=False))
    print(f"wall {wall:.0f} s; reference (longest) {ref_epochs} epochs: {mean[ref_epochs]:.2f}%;"
          f" shortest budget within 1 point: {min(within)} epochs")


if __name__ == "__main__":
    main()
