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
import os
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
    """What the device at hand measured: the group curve of each (student, teacher) pair (``kdlib.group_size``:
    kdlib's real group step, KD loss and teacher forward included), and images per second of a run's training
    step alone (teachers, proxies) and of an evaluation forward pass, per architecture."""

    groups: dict[tuple[str, Optional[str]], Any]
    train: dict[str, float]
    forward: dict[str, float]
    measure: Optional[Any] = None  # (student, teacher) -> GroupPlan, for a pair not measured yet

    def group(self, student: str, teacher: Optional[str]) -> Any:
        """The group plan (size, mode, curve) of runs of ``student`` distilling from ``teacher`` (None: CE)."""
        if (student, teacher) not in self.groups:
            if self.measure is None:
                raise KeyError(f"no group curve measured for student {student!r} with teacher {teacher!r}")
            self.groups[student, teacher] = self.measure(student, teacher)
        return self.groups[student, teacher]


def measure_forward(model: Any, x: Any, steps: int, precision: str, device: Any) -> float:
    """Images per second of ``model``'s eval-mode forward on the batch ``x`` (after one warm-up pass)."""
    import torch

    from .train import autocast_context

    model.eval()
    with torch.no_grad():
        for i in range(steps + 1):
            if i == 1:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
            with autocast_context(device, precision):
                out = model(x)
        float(out.float().sum())
    return steps * len(x) / (time.perf_counter() - t0)


def measure_throughput(dataset: str, models: Sequence[str], recipe: TrainConfig, data_root: Optional[str] = None,
                       device: str = "auto", steps: int = 6, into: Optional[Throughput] = None) -> Throughput:
    """The single-run training rate and eval forward rate of each model in ``models`` on the dataset's shapes,
    and a group curve for each (student, teacher) pair when ``estimate`` asks (cached per device:
    ``kdlib.group_size.choose_group``)."""
    import torch

    from .data import load_dataset
    from .group_size import choose_group, measure_group_rate
    from .models import build_model
    from .train import resolve_device

    dev = resolve_device(device)
    data = load_dataset(dataset, data_root)
    shape = tuple(data.x_test.shape[1:])
    out = into or Throughput({}, {}, {})
    out.measure = lambda student, teacher: choose_group(student, teacher, data.num_classes, shape, recipe, dev)
    x = torch.randn(recipe.batch_size, *shape, device=dev).contiguous(memory_format=torch.channels_last)
    for name in dict.fromkeys(models):
        if name not in out.train:
            out.train[name] = measure_group_rate(name, None, data.num_classes, shape, recipe, dev, 1, "loop",
                                                 steps=steps, rounds=1)
            out.forward[name] = measure_forward(build_model(name, data.num_classes, data.in_channels).to(dev).to(
                memory_format=torch.channels_last), x, steps, recipe.precision, dev)
    return out


def rate_at(curve: Sequence[tuple[int, str, float]], k: int, mode: str) -> float:
    """Images/s of a group of ``k`` in ``mode`` from a measured curve: linear between the measured sizes around
    ``k`` (the largest measured rate beyond the curve's end)."""
    points = sorted((n, r) for n, m, r in curve if m == mode) or sorted((n, r) for n, _, r in curve)
    below = [p for p in points if p[0] <= k]
    above = [p for p in points if p[0] >= k]
    if not below:
        return above[0][1]
    if not above:
        return below[-1][1]
    (k0, r0), (k1, r1) = below[-1], above[0]
    return r0 if k1 == k0 else r0 + (r1 - r0) * (k - k0) / (k1 - k0)


def _images(tc: TrainConfig, n_kept: int, n_full: int) -> int:
    _, steps = total_steps(tc, n_kept, n_full)
    return steps * tc.batch_size


def estimate(configs: Sequence[RunConfig], store: Store | str, n_full: int, speed: Throughput,
             n_test: int = 0) -> dict[str, Any]:
    """Runs, pending runs, teachers and score caches still to compute, training images and device-seconds of what
    the store does not hold yet: students in the groups the runner forms (``kdlib.executors.chunk_runs``, at the
    size and rate of their pair's measured curve), their evaluations (``eval_every``) over ``n_test`` images,
    teachers and score proxies one at a time, and the scorers' passes over the training set."""
    from .executors import chunk_runs

    store = store if isinstance(store, Store) else Store(store)
    pending = [c for c in dict((c.key(), c) for c in configs).values() if store.done("runs", c.key()) is None]
    teachers: dict[str, TeacherConfig] = {}
    scores: dict[str, ScoreSpec] = {}
    images, seconds, groups = 0, 0.0, 0
    for bucket in chunk_runs(pending, len(pending) or 1):
        r0 = bucket[0].resolved()
        kd = next((c.resolved().teacher for c in bucket if c.resolved().uses_teacher), None)
        plan = speed.group(r0.model, kd)
        n_kept = max(1, round(r0.fraction * n_full))
        per_run = _images(r0.train, n_kept, n_full)
        epochs, _ = total_steps(r0.train, n_kept, n_full)
        evals = -(-epochs // r0.train.eval_every) + (epochs % r0.train.eval_every != 0)
        for i in range(0, len(bucket), plan.size):
            k = len(bucket[i:i + plan.size])
            seconds += k * per_run / rate_at(plan.curve, k, plan.mode)
            seconds += k * evals * n_test / speed.forward[r0.model]
            images += k * per_run
            groups += 1
        for c in bucket:
            r = c.resolved()
            if r.uses_teacher:
                t = TeacherConfig.of(r)
                if store.done("teachers", t.key()) is None:
                    teachers[t.key()] = t
            spec = ScoreSpec.of(r)
            if spec is not None and store.done("scores", spec.key()) is None:
                scores[spec.key()] = spec
    for t in teachers.values():
        im = _images(t.train, max(1, round(t.fraction * n_full)), n_full)
        epochs, _ = total_steps(t.train, max(1, round(t.fraction * n_full)), n_full)
        images += im
        seconds += im / speed.train[t.model] + (-(-epochs // t.train.eval_every)) * n_test / speed.forward[t.model]
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
            "groups": groups, "teachers": len(teachers), "scores": len(scores), "images": images,
            "device_seconds": seconds}


def plan_profile(profile: str, studies: Sequence[str] = GRID_STUDIES, workers: int = 2,
                 store: Optional[str] = None, device: str = "auto", data_root: Optional[str] = None) -> "Any":
    """One row per study: what ``estimate`` says on ``device``, with the wall time over ``workers`` workers.
    Studies share the store, so a teacher or score counted by an earlier study is not counted again."""
    import pandas as pd

    from .data import load_dataset

    st = Store(store_dir(profile, store))
    rows, seen_runs, speeds = [], set(), {}
    for study in studies:
        p = study_params(study, profile)
        if data_root:
            p["data_root"] = data_root
        configs = study_grid(study, p, st)
        fresh = [c for c in configs if c.key() not in seen_runs]
        seen_runs |= {c.key() for c in configs}
        archs = {c.model for c in configs} | {c.teacher for c in configs if c.teacher} | {
            c.proxy.model or c.model for c in configs}
        recipe = TrainConfig.from_dict(p["train"]) if isinstance(p.get("train"), dict) else TrainConfig()
        speed = measure_throughput(p["dataset"], sorted(archs), recipe, p.get("data_root"), device,
                                   into=speeds.get(p["dataset"]))
        speeds[p["dataset"]] = speed
        data = load_dataset(p["dataset"], p.get("data_root"))
        est = estimate(fresh, st, data.n_train, speed, len(data.y_test))
        est["runs"] = len(configs)
        rows.append({"study": study, **est, "wall_minutes": est["device_seconds"] / max(1, workers) / 60})
    return pd.DataFrame(rows)


def main(argv: Optional[Sequence[str]] = None) -> None:
    import torch

    from .group_size import device_name
    from .train import resolve_device

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--studies", nargs="+", default=list(GRID_STUDIES))
    parser.add_argument("--workers", type=int, default=None,
                        help="processes sharing the device (default: the cores, one thread each, on a CPU; 1 on a GPU)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--store")
    parser.add_argument("--data-root", help="where the datasets are (default: each parameter file's data_root)")
    args = parser.parse_args(argv)
    dev = resolve_device(args.device)
    workers = args.workers or (1 if dev.type == "cuda" else os.cpu_count() or 1)
    if dev.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))  # as each grid worker runs
    table = plan_profile(args.profile, args.studies, workers, args.store, args.device, args.data_root)
    unit = "GPU" if dev.type == "cuda" else "CPU"
    print(f"{device_name(dev)}; {workers} worker(s) x {torch.get_num_threads()} thread(s); groups as the runner "
          f"forms them (kdlib.group_size, cached per device)")
    print(table.round(1).to_string(index=False))
    total = table["device_seconds"].sum()
    print(f"total: {int(table['pending'].sum())} pending runs in {int(table['groups'].sum())} groups, "
          f"{total / 3600:.2f} {unit}-hours of one worker, ~{total / max(1, workers) / 3600:.2f} h wall")


if __name__ == "__main__":
    main()
