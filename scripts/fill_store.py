"""Fills a profile's store with one study notebook's runs, seed after seed, without the notebook: so a session
that stops early (or a machine without papermill, such as a lent GPU) leaves whole seeds, and the notebook run
afterwards reads every run from the store and only draws.

    python scripts/fill_store.py --profile cpu --study pruning_sweep [--seeds 0 1 2] [--store DIR]
                                 [--data-root DIR] [--device auto] [--executor processes] [--workers 2]
                                 [--runs-per-gpu 8] [--group-size auto] [--group-mode auto] [--set NAME=YAML ...] [--interleave]
                                 [--export FILE]

The grid is the notebook's (``kdlib.plan.study_grid`` on ``params/<profile>/<study>.yaml`` over the notebook's
defaults, with ``--set`` overriding single parameters, e.g. ``--set 'fractions=[0.05, 0.1]'``); the executor and
its options default to the ones the parameter file names. Once every seed of alpha_vs_factor has run, the alpha
rules are fitted and saved as the notebook does (``kdlib.alpha_rule.fit_study_rules``), so ``alpha: auto`` in the
studies after it finds them. ``--export`` writes the store's run records, alpha rules, teachers (with weights) and
scores (with arrays) to one archive at the end, also after a Ctrl-C, or at once on a SIGTERM (``timeout``), which
stops the workers without waiting for their runs (``python -m kdlib.archive import FILE STORE`` brings the
records into another store).
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import sys
import time

import pandas as pd
import torch
import yaml

from kdlib import alpha_rule
from kdlib.archive import export_records
from kdlib.notebooks import store_dir
from kdlib.plan import GRID_STUDIES, study_grid, study_params
from kdlib.study import check_executor_options, run_grid


def _export(store: str, path: str | None) -> None:
    if path:
        n = export_records(store, path, ["runs", "alpha_rules", "teachers", "scores"])
        print(f"{path}: {n} records", flush=True)


def _on_term(store: str, path: str | None) -> None:
    """SIGTERM (a ``timeout``): the workers stop at once (a run cut short leaves its checkpoint for the next
    call, no record), the finished records are exported, and the process exits without waiting for any run."""
    def handler(signum: int, frame: object) -> None:
        for child in multiprocessing.active_children():
            child.terminate()
        _export(store, path)
        sys.stdout.flush()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--study", required=True, choices=GRID_STUDIES)
    ap.add_argument("--seeds", type=int, nargs="+", help="default: every seed of the grid, in order")
    ap.add_argument("--store")
    ap.add_argument("--data-root")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--executor")
    ap.add_argument("--workers", type=int)
    ap.add_argument("--runs-per-gpu", type=int)
    ap.add_argument("--group-size", type=lambda v: v if v == "auto" else int(v),
                    help="runs trained as one group (kdlib.grouped; 'auto': chosen for the device from a measured "
                         "throughput curve; 1: one at a time)")
    ap.add_argument("--group-mode", choices=("auto", "stacked", "loop"))
    ap.add_argument("--set", nargs="+", default=[], metavar="NAME=YAML",
                    help="override a parameter of the file, e.g. 'fractions=[0.05, 0.1]'")
    ap.add_argument("--interleave", action="store_true",
                    help="fill the seeds together, method by method in the order of `methods` (a stop leaves the "
                         "first methods whole at every seed) instead of seed after seed")
    ap.add_argument("--export", help="archive file written at the end (gzip JSON lines)")
    args = ap.parse_args()

    p = study_params(args.study, args.profile)
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or name not in p:
            raise SystemExit(f"--set takes NAME=YAML with NAME one of: {', '.join(sorted(p))}; got {item!r}")
        p[name] = yaml.safe_load(value)
    if args.data_root:
        p["data_root"] = args.data_root
    store = store_dir(args.profile, args.store)
    _on_term(str(store), args.export)
    configs = study_grid(args.study, p, store)
    options = check_executor_options(p.get("executor_options") or {})
    for name in ("workers", "runs_per_gpu", "group_size", "group_mode"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    executor = args.executor or p.get("executor", "local")
    grid_seeds = sorted({c.seed for c in configs})
    seeds = args.seeds if args.seeds is not None else grid_seeds
    if set(seeds) - set(grid_seeds):
        raise SystemExit(f"--seeds {sorted(set(seeds) - set(grid_seeds))} are not in the {args.study} grid; "
                         f"allowed: {grid_seeds}")
    print(f"{args.study} ({args.profile}): {len(configs)} runs; seeds {seeds}; executor {executor} {options}; "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}; store {store}", flush=True)
    parts = []
    try:
        rank = {m: i for i, m in enumerate(p.get("methods") or [])}
        batches = ([sorted((c for c in configs if c.seed in seeds), key=lambda c: (rank.get(c.method, 0), c.seed))]
                   if args.interleave else [[c for c in configs if c.seed == seed] for seed in seeds])
        for part in batches:
            t0 = time.time()
            df = run_grid(part, store, device=args.device, data_root=p.get("data_root"), progress=True,
                          executor=executor, **options)
            parts.append(df)
            not_done = int((df.status != "done").sum())
            print(f"seeds {sorted({c.seed for c in part})}: {len(part)} runs, {not_done} not done, "
                  f"{time.time() - t0:.0f} s", flush=True)
        if args.study == "alpha_vs_factor" and p.get("save_rule") and set(seeds) >= set(p["seeds"]):
            _, rules = alpha_rule.fit_study_rules(pd.concat(parts, ignore_index=True), p)  # as the notebook does
            for path in alpha_rule.save_rules(rules, store):  # so alpha "auto" in later studies finds them
                print("saved", path, flush=True)
    finally:  # also after a Ctrl-C, once the workers have stopped
        _export(str(store), args.export)


if __name__ == "__main__":
    main()
