"""Executes the study notebooks headless with papermill on a parameter profile.

``python -m kdlib.notebooks --profile quick`` runs every notebook that has ``params/<profile>/<name>.yaml``,
writing the executed copy to ``outputs/<profile>/<name>.ipynb`` and printing each wall time and the total.
A notebook whose inputs (the notebook, its parameter file, kdlib's source and, for the results browser, the
store's list of records) are unchanged since its last successful run is skipped; ``--force`` re-runs it. Every
run, teacher and score is cached in the store anyway: a re-run recomputes nothing, it only redraws.

``--smoke`` runs the profile's notebooks with the same models, methods, recipes, executors and launches on tiny
synthetic data in the real file formats (``kdlib.smoke``), one epoch per run, in minutes on a CPU; everything it
writes (data, store, executed notebooks, tables, figures) goes to ``outputs/<profile>-smoke/``, labelled smoke.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from .validate import check_positive

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ("theory_toy", "pruning_sweep", "alpha_vs_factor", "teacher_capacity", "teacher_fraction",
             "noisy_labels", "imagenet", "claims", "browse_results")
PROFILES = ("quick", "cpu", "paper")
READS_WHOLE_STORE = ("claims", "browse_results")  # notebooks whose output depends on every record in the store
# notebooks that read no store and whose output no other notebook reads: they run beside the grids, on the cores
# the grids leave idle (a quick study used 1.4 of 2 cores on average, 2026-11-30)
BESIDE = ("theory_toy",)


def output_dir(profile: str, out_dir: Optional[str] = None, name: Optional[str] = None) -> Path:
    """Where a notebook writes figures and tables: ``out_dir`` or ``outputs/<profile>[/<name>]``."""
    path = Path(out_dir) if out_dir else ROOT / "outputs" / profile / (name or "")
    path.mkdir(parents=True, exist_ok=True)
    return path


def store_dir(profile: str, store: Optional[str] = None) -> Path:
    """The run store shared by every notebook of a profile: ``outputs/<profile>/store`` unless given."""
    return Path(store) if store else ROOT / "outputs" / profile / "store"


def load_params(path: str | Path) -> dict[str, Any]:
    """A parameter file: a YAML mapping (safe_load only; no code is executed)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"parameter file {path} is not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"parameter file {path} must hold a mapping of parameter names to values, "
                         f"got {type(data).__name__}")
    return data


def notebook_parameters(notebook: str | Path) -> list[str]:
    """Names defined in the notebook's cell tagged ``parameters``."""
    import papermill as pm

    return list(pm.inspect_notebook(str(notebook)).keys())


def execute(name: str, profile: str, overrides: Optional[dict] = None, output: Optional[Path] = None,
            params_file: Optional[Path] = None, log_output: bool = False,
            cell_timeout: Optional[int] = None) -> Path:
    """Runs ``notebooks/<name>.ipynb`` with the profile's parameters (plus ``overrides``); returns the output.

    ``cell_timeout`` (seconds, default none) fails a cell that runs longer, instead of waiting forever."""
    import papermill as pm

    if cell_timeout is not None:
        check_positive(cell_timeout, "cell_timeout", integer=True)
    notebook = ROOT / "notebooks" / f"{name}.ipynb"
    params = load_params(params_file or ROOT / "params" / profile / f"{name}.yaml")
    params.update(overrides or {})
    params.setdefault("profile", profile)
    allowed = notebook_parameters(notebook)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for notebook {name!r}; allowed: {', '.join(allowed)}")
    output = output or ROOT / "outputs" / profile / f"{name}.ipynb"
    output.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(notebook), str(output), parameters=params, kernel_name="python3", cwd=str(ROOT),
                        log_output=log_output, progress_bar=False, execution_timeout=cell_timeout)
    return output


def fingerprint(name: str, params_file: Path, store: Optional[Path] = None) -> str:
    """sha256 of what an executed notebook depends on: the notebook, its parameter file, kdlib's source files and,
    when ``store`` is given, the names and sizes of the store's records."""
    h = hashlib.sha256()
    for path in [ROOT / "notebooks" / f"{name}.ipynb", Path(params_file), *sorted((ROOT / "kdlib").rglob("*.py"))]:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    if store is not None and Path(store).exists():
        for rec in sorted(Path(store).glob("*/*.json")):
            h.update(f"{rec.parent.name}/{rec.name}:{rec.stat().st_size}".encode())
    return h.hexdigest()


def startup_seconds(output: Path, wall: float) -> Optional[float]:
    """Seconds of a notebook run spent outside its cells (kernel launch and papermill's own work): the wall time
    less the cells' durations that papermill records in the executed notebook; None without that record."""
    import nbformat

    try:
        nb = nbformat.read(str(output), as_version=4)
    except Exception:  # not an executed notebook (nbformat raises several kinds)
        return None
    durations = [c.metadata.get("papermill", {}).get("duration") for c in nb.cells]
    if not durations or any(d is None for d in durations):
        return None
    return max(0.0, wall - sum(float(d) for d in durations))


def worker_startup_seconds() -> float:
    """Seconds a fresh grid worker process takes to import what it runs (``kdlib.executors``, ``kdlib.study``)."""
    import subprocess
    import sys

    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import kdlib.executors, kdlib.study"], check=True, cwd=ROOT)
    return time.perf_counter() - t0


def smoke_overrides(name: str, profile: str, outputs: Path) -> dict[str, Any]:
    """Every parameter of notebook ``name`` for a smoke run of ``profile`` (``kdlib.smoke.smoke_params``), its
    data written under ``outputs/<profile>-smoke/data`` first."""
    from .smoke import SMOKE_NOTE, smoke_params, write_smoke_data

    base = outputs / f"{profile}-smoke"
    base.mkdir(parents=True, exist_ok=True)
    (base / "SMOKE.txt").write_text(SMOKE_NOTE)
    data = write_smoke_data(base / "data")
    params = load_params(ROOT / "params" / profile / f"{name}.yaml")
    return smoke_params(name, params, notebook_parameters(ROOT / "notebooks" / f"{name}.ipynb"), data,
                        base / "store", base / name)


def run_study(profile: str, names: Optional[Sequence[str]] = None, force: bool = False, log_output: bool = False,
              outputs: Path = ROOT / "outputs", beside: Sequence[str] = BESIDE, smoke: bool = False) -> dict[str, str]:
    """Runs the profile's notebooks in order (default: all with a parameter file), skipping those that are up to
    date unless ``force``; prints each wall time and the total, and returns name -> 'ran' or 'up to date'.
    Notebooks named in ``beside`` (they read no store) run in a second lane beside the others. ``smoke``: the
    profile shrunk to tiny synthetic data in the real formats, into ``outputs/<profile>-smoke/``."""
    from concurrent.futures import ThreadPoolExecutor

    names = names or [n for n in NOTEBOOKS if (ROOT / "params" / profile / f"{n}.yaml").exists()
                      and (ROOT / "notebooks" / f"{n}.ipynb").exists()]
    tag = f"{profile}-smoke" if smoke else profile
    stamps = outputs / tag / ".fingerprints"
    t_all = time.perf_counter()

    def run_one(name: str) -> str:
        params_file = ROOT / "params" / profile / f"{name}.yaml"
        output = outputs / tag / f"{name}.ipynb"
        overrides = smoke_overrides(name, profile, outputs) if smoke else None
        store = None
        if name in READS_WHOLE_STORE:
            store = Path(overrides["store"]) if smoke else store_dir(profile, load_params(params_file).get("store"))
        stamp = stamps / name
        inputs = fingerprint(name, params_file, store)  # of the inputs this run reads
        if not force and output.exists() and stamp.exists() and stamp.read_text() == inputs:
            print(f"{name:18s}   up to date (inputs unchanged since its last run; --force re-runs it)", flush=True)
            return "up to date"
        t0 = time.perf_counter()
        execute(name, profile, overrides=overrides, output=output, params_file=params_file, log_output=log_output)
        stamps.mkdir(parents=True, exist_ok=True)
        stamp.write_text(inputs)  # after a successful run only
        wall = time.perf_counter() - t0
        startup = startup_seconds(output, wall)
        note = "" if startup is None else f"  (kernel start-up {startup:4.1f} s)"
        print(f"{name:18s} {wall:7.1f} s{note}  -> {output}", flush=True)
        return "ran"

    done: dict[str, str] = {}
    with ThreadPoolExecutor(1, thread_name_prefix="kdlib-beside") as lane:
        later = {name: lane.submit(run_one, name) for name in names if name in beside}
        for name in names:
            if name not in later:
                done[name] = run_one(name)
        for name, future in later.items():
            done[name] = future.result()
    print(f"{tag} study: {len(names)} notebooks in {time.perf_counter() - t_all:.1f} s wall time", flush=True)
    return {name: done[name] for name in names}


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="quick", choices=PROFILES)
    parser.add_argument("--only", nargs="*", choices=NOTEBOOKS, help="notebooks to run (default: all with params)")
    parser.add_argument("--force", action="store_true", help="re-run notebooks whose inputs are unchanged")
    parser.add_argument("--log-output", action="store_true", help="stream the notebooks' output")
    parser.add_argument("--smoke", action="store_true", help="every code path of the profile on tiny synthetic data "
                        "in the real file formats, one epoch per run; outputs in outputs/<profile>-smoke/")
    args = parser.parse_args(argv)
    # kernels inherit this: sleeping OpenMP waits keep torch fast when other processes share the cores
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import threading

    def probe() -> None:
        print(f"process start-up: a grid worker imports kdlib in {worker_startup_seconds():.1f} s", flush=True)

    threading.Thread(target=probe, name="kdlib-startup-probe", daemon=True).start()
    run_study(args.profile, args.only, force=args.force, log_output=args.log_output, smoke=args.smoke)


if __name__ == "__main__":
    main()
