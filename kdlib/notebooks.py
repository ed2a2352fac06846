"""Executes the study notebooks headless with papermill on a parameter profile.

``python -m kdlib.notebooks --profile quick`` runs every notebook that has ``params/<profile>/<name>.yaml``,
writing the executed copy to ``outputs/<profile>/<name>.ipynb`` and printing each wall time and the total.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ("theory_toy", "pruning_sweep", "alpha_vs_factor", "teacher_capacity", "teacher_fraction",
             "noisy_labels", "imagenet", "browse_results")
PROFILES = ("quick", "cpu", "paper")


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


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="quick", choices=PROFILES)
    parser.add_argument("--only", nargs="*", choices=NOTEBOOKS, help="notebooks to run (default: all with params)")
    parser.add_argument("--log-output", action="store_true", help="stream the notebooks' output")
    args = parser.parse_args(argv)
    # kernels inherit this: sleeping OpenMP waits keep torch fast when other processes share the cores
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    names = args.only or [n for n in NOTEBOOKS if (ROOT / "params" / args.profile / f"{n}.yaml").exists()
                          and (ROOT / "notebooks" / f"{n}.ipynb").exists()]
    t_all = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        out = execute(name, args.profile, log_output=args.log_output)
        print(f"{name:18s} {time.perf_counter() - t0:7.1f} s  -> {out.relative_to(ROOT)}", flush=True)
    print(f"{args.profile} study: {len(names)} notebooks in {time.perf_counter() - t_all:.1f} s wall time", flush=True)


if __name__ == "__main__":
    main()
