"""The ``torchrun`` entry point: ``RunConfig``s trained with DistributedDataParallel through ``kdlib.study.Study``.

Launch (one node, N processes; NCCL on CUDA, gloo on CPU)::

    python -m torch.distributed.run --nproc_per_node=N -m kdlib.distributed --config run.yaml [--store DIR]

or ``launch(configs, store, nproc)`` (in this process when ``nproc <= 1``, else torchrun in a subprocess), or
``run_grid(configs, store, executor="torchrun", nproc=N)``. The config file (YAML or JSON) is a mapping of
``RunConfig`` fields plus ``store`` / ``progress`` / ``device``, optionally with ``runs: [...]``, a list of field
mappings each laid over the top-level fields; the runs execute in order in one process group. Nothing here trains
or keys: every run is ``Study.run`` with the job's process group, so its key, teacher (under ``teachers/``),
scores and record are those of a single-process run; ``nproc`` is not part of any key.

Runs on in-memory datasets take rows ``rank::world`` of every batch. Runs on an image folder
(``dataset: image_folder`` with ``data: {root, image_size, crop_scale, workers, eval_batch_size}``,
``kdlib.imagenet.FolderSpec``) stream it through DataLoader workers and a ``DistributedSampler``. The recipe's
``batch_size`` is the total over the N processes (it must divide evenly), so lr and schedule do not depend on N.
BatchNorm statistics are per process (no SyncBN), as in torchvision's reference scripts; evaluation is sharded
and the correct counts summed, so the accuracy is exact; rank 0 alone writes records and checkpoints.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from .executors import free_port, run_torchrun, torchrun_command  # noqa: F401  (re-exported)
from .processes import ProcessGroup
from .store import Store, canonical
from .study import RunConfig, Study

OPERATIONAL = ("store", "progress", "device", "runs")


def as_config(d: RunConfig | Mapping[str, Any]) -> RunConfig:
    """A ``RunConfig`` from plain values (a ``RunConfig`` is returned as it is)."""
    return d if isinstance(d, RunConfig) else RunConfig.from_dict(d)


def run_all(configs: Sequence[RunConfig], group: ProcessGroup, store: Store, progress: bool = True,
            on_record: Optional[Callable[[dict], None]] = None) -> list[dict]:
    """``Study.run`` of each config in order in this process group; ``on_record(record)`` as each finishes."""
    study = Study(store, progress=progress, group=group)
    records = []
    for cfg in configs:
        records.append(canonical(study.run(cfg)))
        if on_record is not None:
            on_record(records[-1])
    return records


def summary_line(rec: dict) -> str:
    """One JSON line naming a run and its outcome (what ``main`` prints on rank 0)."""
    res, cfg = rec.get("result") or {}, rec["config"]
    return json.dumps({"key": rec["key"], "status": rec["status"], "model": cfg["model"],
                       "fraction": cfg["fraction"], "alpha": cfg["alpha"], "seed": cfg["seed"],
                       "final_acc": res.get("final_acc"), "images_per_sec": res.get("images_per_sec"),
                       "wall_seconds": res.get("wall_seconds"), "world_size": rec.get("world_size")})


def parse_launch(spec: Mapping[str, Any]) -> tuple[list[RunConfig], dict]:
    """A launch mapping -> (run configs, options). Top-level run fields are defaults for every entry of ``runs``."""
    shared = {k: v for k, v in spec.items() if k not in OPERATIONAL}
    runs = spec.get("runs") or [{}]
    configs = [as_config({**shared, **item}) for item in runs]
    options = {"store": spec.get("store"), "progress": bool(spec.get("progress", True)),
               "device": spec.get("device", "auto")}
    return configs, options


def load_launch(path: str | os.PathLike) -> dict:
    """A YAML or JSON launch file as a mapping."""
    import yaml

    spec = yaml.safe_load(Path(path).read_text())
    if not isinstance(spec, dict):
        raise ValueError(f"{path} must hold a mapping of run fields (and store/progress/device/runs)")
    return spec


def launch(configs: Sequence[RunConfig | Mapping[str, Any]], store: str | os.PathLike, nproc: int = 1,
           progress: bool = True, device: str = "auto", echo: bool = True) -> list[dict]:
    """Runs ``configs`` in order and returns their records: in this process when ``nproc <= 1``, else through
    ``torchrun --nproc_per_node=nproc`` in a subprocess (``kdlib.executors.run_torchrun``; its output streamed
    here when ``echo``)."""
    configs = [as_config(c) for c in configs]
    if nproc <= 1:
        return run_all(configs, ProcessGroup.from_env(device), Store(store), progress)
    return run_torchrun(configs, store, nproc, progress, device, echo)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """``python -m torch.distributed.run --nproc_per_node=N -m kdlib.distributed --config FILE``."""
    parser = argparse.ArgumentParser(description="kdlib distributed training (run under torchrun)")
    parser.add_argument("--config", required=True, help="YAML/JSON launch file: run fields, store, runs")
    parser.add_argument("--store", help="run store folder (overrides the file's store)")
    parser.add_argument("--results", help="rank 0 writes the records of the runs here as JSON")
    parser.add_argument("--device", help="auto, cpu or cuda (overrides the file's device)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    configs, opts = parse_launch(load_launch(args.config))
    store_root = args.store or opts["store"]
    if not store_root:
        parser.error("no store: give --store or set store in the config file")
    group = ProcessGroup.from_env(args.device or opts["device"])
    try:
        records = run_all(configs, group, Store(store_root), opts["progress"] and not args.no_progress,
                          on_record=(lambda rec: print(summary_line(rec), flush=True)) if group.main else None)
        if group.main and args.results:
            Path(args.results).write_text(json.dumps(canonical(records)))
    finally:
        group.close()


if __name__ == "__main__":
    main()
