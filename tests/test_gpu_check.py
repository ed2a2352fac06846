"""benchmarks/gpu_check.sh: its CPU dry run goes end to end (so the GPU check cannot rot where no GPU is), and the
grid's cost model prices a run as documented."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))
import gpu_check  # noqa: E402

from kdlib.study import RunConfig  # noqa: E402
from kdlib.train import TrainConfig  # noqa: E402


@pytest.fixture(scope="module")
def dry_run() -> str:
    """The output of ``benchmarks/gpu_check.sh --dry-run`` (fails the tests using it when the script fails)."""
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(["bash", str(BENCH / "gpu_check.sh"), "--dry-run"], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out.stdout


def test_dry_run_prints_the_machine_header_first(dry_run):
    assert dry_run.startswith("machine: ")


def test_dry_run_measures_both_loops_in_both_precisions_and_groups(dry_run):
    names = ["reference fp32 KD", "reference fp32 CE", "kdlib bf16 KD", "kdlib bf16 CE", "kdlib fp32 KD",
             "kdlib fp32 CE", "kdlib bf16 group K=2 stacked", "kdlib bf16 group K=1 loop", "kdlib bf16 group K=2 loop"]
    assert [n for n in names if f"  {n} " not in dry_run.split("images/s (median")[1]] == []


def test_dry_run_counts_every_paper_cifar_notebook(dry_run):
    assert all(f"{name} (" in dry_run for name in gpu_check.GRID_STUDIES)


def test_dry_run_projects_hours_for_kdlib_and_the_reference(dry_run):
    table = dry_run.split("projected CPU-hours")[1]
    assert ("reference loop, fp32" in table, "kdlib, bf16, one run" in table, "kdlib, bf16, groups of" in table) == \
        (True,) * 3


def test_a_kd_run_costs_its_subset_epochs_its_teachers_forwards_and_the_teacher_run():
    run = RunConfig(dataset="cifar10", model="resnet32", teacher="resnet32", alpha=0.5, fraction=0.5,
                    train=TrainConfig(epochs=2, batch_size=64))
    cost = gpu_check.grid_cost({run.key(): run})
    # 2 epochs x 25,000 images (student and teacher forward), 2 epochs x 50,000 (the teacher's own run), and
    # 2 evaluations of 10,000 test images for each of the student and the teacher
    assert cost["work"] == {"student_kd": 50_000, "teacher_forward": 50_000, "teachers": 100_000,
                            "eval_forward": 40_000}


def test_hours_price_ce_passes_and_teacher_forwards():
    cost = {"work": {"student_kd": 50_000, "teacher_forward": 50_000, "teachers": 100_000}, "groups": {}}
    # ce = 1 ms, kd = 3 ms per image: (100,000 + 50,000) x 1 ms + 50,000 x 2 ms = 250 s
    assert gpu_check.hours(cost, 1e-3, 3e-3) == pytest.approx(250 / 3600)


def test_grouped_students_are_priced_at_their_groups_rate():
    cost = {"work": {"teachers": 0}, "groups": {2: 1000, 4: 6000}}
    curve = [(2, "stacked", 100.0), (4, "stacked", 300.0)]
    assert gpu_check.hours(cost, 1.0, 2.0, curve) == pytest.approx((1000 / 100 + 6000 / 300) / 3600)


def test_runs_of_one_group_key_fill_groups_of_the_chosen_size():
    runs = [RunConfig(dataset="cifar10", model="resnet32", teacher="resnet32", alpha=a, fraction=0.5, seed=s,
                      train=TrainConfig(epochs=2, batch_size=64)) for a in (0.0, 0.5) for s in range(3)]
    cost = gpu_check.grid_cost({r.key(): r for r in runs}, group_size=4)
    assert (cost["counts"]["groups"], sorted(cost["groups"])) == (2, [2, 4])
