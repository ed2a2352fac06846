"""The install sets: every dependency of pyproject.toml is pinned in the lockfile of each install set that needs
it, a cluster worker's lock carries neither JupyterLab nor pytest, and the warm-up skips extras not installed."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from kdlib import warmup

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# lockfile -> the extras its install set holds (the Makefile's `lock` target)
SETS = {"worker": ["slurm"], "study": ["notebooks"], "test": ["notebooks", "ray", "slurm", "mlflow", "test"]}


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement).group(0)).lower()


def _pinned(lock: str) -> set[str]:
    text = (ROOT / "requirements" / f"{lock}.lock").read_text()
    return {_name(line) for line in text.splitlines() if "==" in line and not line.startswith((" ", "#"))}


@pytest.mark.parametrize("lock", sorted(SETS))
def test_every_dependency_of_the_install_set_is_pinned(lock):
    wanted = {_name(r) for r in PROJECT["dependencies"]}
    for extra in SETS[lock]:
        wanted |= {_name(r) for r in PROJECT["optional-dependencies"][extra]}
    assert sorted(wanted - _pinned(lock)) == []


def test_a_worker_installs_neither_jupyterlab_nor_pytest_nor_plotting():
    assert {"jupyterlab", "pytest", "matplotlib", "seaborn", "papermill"} & _pinned("worker") == set()


def test_warmup_skips_and_names_modules_not_installed(monkeypatch, capfd):
    monkeypatch.setattr(warmup, "MODULES", ("json", "kdlib_no_such_module"))
    warmup.main()
    assert "skipped: kdlib_no_such_module (no kdlib_no_such_module)" in capfd.readouterr().out


def _here(lock: str) -> dict[str, str]:
    """The pins of ``lock`` that apply on this Python and platform: name -> version."""
    from packaging.requirements import Requirement

    text = (ROOT / "requirements" / f"{lock}.lock").read_text()
    reqs = [Requirement(line) for line in text.splitlines() if "==" in line and not line.startswith((" ", "#"))]
    return {_name(r.name): str(r.specifier)[2:] for r in reqs if r.marker is None or r.marker.evaluate()}


def test_install_sets_agree_on_every_shared_pin():
    locks = {lock: _here(lock) for lock in SETS}
    clashes = [(name, lock, version, other, locks[other][name])
               for lock, pins in locks.items() for name, version in pins.items()
               for other in locks if name in locks[other] and locks[other][name] != version]
    assert clashes == []
