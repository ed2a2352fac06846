"""The compute a study profile asks for, before it runs: its grids, what the store already holds, and the time
the rest will take on this machine.

``python -m kdlib.plan --profile cpu`` prints, per study notebook, the runs requested and pending, the teachers
and score caches to compute, the images to train on and the estimated wall time. Throughput is measured here and
now (a few training steps and forward passes of each architecture on the study's data), so the estimate is for
the machine at hand. The grids are the ones the notebooks run (``study_grid``; the notebooks call it too).
"""
from __future__ import annotations

import argparse
import ast
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from .notebooks import NOTEBOOKS, ROOT, load_params, store_dir
from .store import Store
from .study import RunConfig, ScoreSpec, TeacherConfig, expand_grid, seeded_grid, sweep_grid
from .train import TrainConfig, total_steps

GRID_STUDIES = ("pruning_sweep", "alpha_vs_factor", "teacher_capacity", "teacher_fraction", "noisy_labels")
# Scoring passes over the training set beyond the proxy's training, in forward-pass equivalents per proxy model
# (rough, from the cpu profile's measured scoring times, 2026-11-26): GraNd takes per-sample gradients of every
# parameter, DeepFool iterates per sample; the others read the proxy once.
SCORING_PASSES = {"grand_run": 30.0, "deepfool_run": 50.0}
EARLY_SCORERS = ("el2n_run", "grand_run")  # scorers that average n_models proxies stopped at the early epoch


def _base(p: Mapping[str, Any], *names: str) -> dict:
    return {n: p[n] for n in names if n in p}


def study_grid(study: str, p: Mapping[str, Any], store: Store | str | None = None) -> list[RunConfig]:
    """The runs notebook ``study`` trains for parameters ``p`` (a notebook's parameter names and values)."""
    if study not in GRID_STUDIES:
        raise ValueError(f"study must be one of: {', '.join(GRID_STUDIES)}; got {study!r}")
    common = _base(p, "dataset", "model", "tau", "class_balanced", "train", "teacher_train", "proxy")
    if study == "pruning_sweep":
        return sweep_grid({**common, "teacher": p["teacher"]}, p["methods"],
                          {"fraction": p["fractions"], "alpha": p["alphas"]}, p["seeds"], p.get("seeds_by_method"))
    if study == "alpha_vs_factor":  # each method at its fractions (fractions_by_method), every alpha and seed
        return seeded_grid({**common, "teacher": p["teacher"]}, "method", p["methods"],
                           {"alpha": p["alphas"], "seed": p["seeds"]}, p["fractions"],
                           p.get("fractions_by_method"), store, varied="fraction")
    grid = {"method": p["methods"], "fraction": p["fractions"], "seed": p["seeds"]}
    if study == "teacher_capacity":  # each teacher at its seeds; the no-KD baseline at all of them
        kd = seeded_grid({**common, "alpha": p["alpha"]}, "teacher", p["teachers"],
                         {"method": p["methods"], "fraction": p["fractions"]}, p["seeds"],
                         p.get("seeds_by_teacher"), store)
        seeds = list(dict.fromkeys([*p["seeds"], *sorted({c.seed for c in kd})]))
        return expand_grid({**common, "alpha": 0.0}, {**grid, "seed": seeds}) + kd
    if study == "teacher_fraction":
        return expand_grid({**common, "teacher": p["teacher"], "alpha": 0.0}, grid) + expand_grid(
            {**common, "teacher": p["teacher"], "alpha": p["alpha"]},
            {**grid, "teacher_fraction": p["teacher_fractions"]}, store)
    noisy = {**common, "teacher": p["teacher"], "label_noise": p["label_noise"], "noise_seed": p["noise_seed"]}
    return expand_grid(noisy, {"method": p["methods"], "fraction": p["fractions"], "alpha": p["alphas"],
                               "seed": p["seeds"]}, store)  # noisy_labels


def notebook_defaults(study: str) -> dict[str, Any]:
    """The literal values assigned in the notebook's ``parameters`` cell (read with ``ast``; no kernel, no
    papermill, so it works on a worker install)."""
    import json

    if study not in NOTEBOOKS:
        raise ValueError(f"study must be one of: {', '.join(NOTEBOOKS)}; got {study!r}")
    nb = json.loads((ROOT / "notebooks" / f"{study}.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    defaults = {}
    for node in ast.parse("".join(cell["source"])).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                defaults[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                defaults[node.targets[0].id] = None
    return defaults


def study_params(study: str, profile: str) -> dict[str, Any]:
    """The notebook's parameter defaults (its ``parameters`` cell) overlaid with ``params/<profile>/<study>.yaml``."""
    return {**notebook_defaults(study), **load_params(ROOT / "params" / profile / f"{study}.yaml")}


@dataclass
class Throughput:
    """Images per second of a training step and of a forward pass (batch ``batch_size``), per architecture."""

    train: dict[str, float]
    forward: dict[str, float]


def measure_throughput(dataset: str, models: Sequence[str], batch_size: int = 128, steps: int = 12,
                       data_root: Optional[str] = None, precision: str = "auto") -> Throughput:
    """Times ``steps`` SGD steps (after two warm-up steps) and as many forward passes of each model, on one
    thread as a grid worker runs."""
    import torch

    from .data import load_dataset
    from .models import build_model
    from .train import autocast_context

    data = load_dataset(dataset, data_root)
    x = data.x_train[:batch_size].float().div(255).contiguous(memory_format=torch.channels_last)
    y = data.y_train[:batch_size]
    out = Throughput({}, {})
    dev = torch.device("cpu")
    for name in dict.fromkeys(models):
        model = build_model(name, data.num_classes, data.in_channels).to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        for i in range(steps + 2):
            if i == 2:
                t0 = time.perf_counter()
            with autocast_context(dev, precision):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        out.train[name] = steps * batch_size / (time.perf_counter() - t0)
        model.eval()
        with torch.no_grad():
            t0 = time.perf_counter()
            for _ in range(steps):
                with autocast_context(dev, precision):
                    model(x)
        out.forward[name] = steps * batch_size / (time.perf_counter() - t0)
    return out


def _train_seconds(tc: TrainConfig, n_kept: int, n_full: int, ips: float) -> tuple[int, float]:
    _, steps = total_steps(tc, n_kept, n_full)
    images = steps * tc.batch_size
    return images, images / ips


def estimate(configs: Sequence[RunConfig], store: Store | str, n_full: int, speed: Throughput) -> dict[str, Any]:
    """Runs, pending runs, teachers and score caches still to compute, training images and CPU-seconds (one
    worker) of what the store does not hold yet."""
    store = store if isinstance(store, Store) else Store(store)
    pending = [c for c in dict((c.key(), c) for c in configs).values() if store.done("runs", c.key()) is None]
    teachers: dict[str, TeacherConfig] = {}
    scores: dict[str, ScoreSpec] = {}
    images, seconds = 0, 0.0
    for c in pending:
        r = c.resolved()
        n_kept = max(1, round(r.fraction * n_full))
        im, s = _train_seconds(r.train, n_kept, n_full, speed.train[r.model])
        images, seconds = images + im, seconds + s
        if r.uses_teacher:
            seconds += im / speed.forward[r.teacher]
            t = TeacherConfig.of(r)
            if store.done("teachers", t.key()) is None:
                teachers[t.key()] = t
        spec = ScoreSpec.of(r)
        if spec is not None and store.done("scores", spec.key()) is None:
            scores[spec.key()] = spec
    for t in teachers.values():
        im, s = _train_seconds(t.train, max(1, round(t.fraction * n_full)), n_full, speed.train[t.model])
        images, seconds = images + im, seconds + s
    for spec in scores.values():
        p = spec.proxy
        early = spec.scorer in EARLY_SCORERS  # n_models proxies stopped early; the others train one full proxy
        epochs = max(1, p.early_epoch) if early else p.train.epochs
        models = p.n_models if early else 1
        im = models * epochs * n_full
        passes = models * (1.0 + SCORING_PASSES.get(spec.scorer, 0.0))
        images += im
        seconds += im / speed.train[spec.model] + passes * n_full / speed.forward[spec.model]
    return {"runs": len(configs), "distinct": len({c.key() for c in configs}), "pending": len(pending),
            "teachers": len(teachers), "scores": len(scores), "images": images, "cpu_seconds": seconds}


def plan_profile(profile: str, studies: Sequence[str] = GRID_STUDIES, workers: int = 2,
                 store: Optional[str] = None) -> "Any":
    """One row per study: what ``estimate`` says, with the wall time over ``workers`` single-thread workers.
    Studies share the store, so a teacher or score counted by an earlier study is not counted again."""
    import pandas as pd

    from .data import load_dataset

    st = Store(store_dir(profile, store))
    rows, seen_runs, speeds = [], set(), {}
    for study in studies:
        p = study_params(study, profile)
        configs = study_grid(study, p, st)
        fresh = [c for c in configs if c.key() not in seen_runs]
        seen_runs |= {c.key() for c in configs}
        archs = {c.model for c in configs} | {c.teacher for c in configs if c.teacher} | {
            c.proxy.model for c in configs if c.proxy.model}
        speed = speeds.setdefault(p["dataset"], Throughput({}, {}))
        missing = sorted(archs - set(speed.train))  # each architecture is measured once per dataset
        if missing:
            measured = measure_throughput(p["dataset"], missing, data_root=p.get("data_root"))
            speed.train.update(measured.train)
            speed.forward.update(measured.forward)
        n_full = len(load_dataset(p["dataset"], p.get("data_root")).y_train)
        est = estimate(fresh, st, n_full, speed)
        est["runs"] = len(configs)
        rows.append({"study": study, **est, "wall_minutes": est["cpu_seconds"] / max(1, workers) / 60})
    return pd.DataFrame(rows)


def main(argv: Optional[Sequence[str]] = None) -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--studies", nargs="+", default=list(GRID_STUDIES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--store")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    table = plan_profile(args.profile, args.studies, args.workers, args.store)
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}; {args.workers} single-thread workers")
    print(table.round(1).to_string(index=False))
    total = table["cpu_seconds"].sum()
    print(f"total: {int(table['pending'].sum())} pending runs, {total / 3600:.2f} CPU-hours, "
          f"~{total / max(1, args.workers) / 3600:.2f} h wall")


if __name__ == "__main__":
    main()
