"""scripts/fill_store.py (a study's grid filled without its notebook) and scripts/publish_results.py (outputs copied
to docs/results), run as a user runs them."""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
# one random run pair on digits (alpha 0 and 0.5, one seed): the smallest grid the quick sweep allows
TINY = ["--set", "methods=[random]", "fractions=[0.5]", "seeds_by_method={}",
        "train={epochs: 1, batch_size: 64, lr: 0.05, momentum: 0.9, weight_decay: 0.0005, schedule: step, "
        "precision: fp32, eval_every: 1000}"]


def _run(args, cwd=ROOT, timeout=600):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """A store filled by fill_store with the tiny grid at seed 0, exported to an archive."""
    tmp = tmp_path_factory.mktemp("fill")
    proc = _run(["scripts/fill_store.py", "--profile", "quick", "--study", "pruning_sweep", "--seeds", "0",
                 "--executor", "local", "--store", str(tmp / "store"), "--export", str(tmp / "a.jsonl.gz"), *TINY])
    return tmp, proc


def _archived(path: Path) -> list[dict]:
    return [json.loads(line) for line in gzip.decompress(path.read_bytes()).decode().splitlines() if line]


def test_fill_store_exits_cleanly(filled):
    _, proc = filled
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_fill_store_runs_the_seed_it_was_given(filled):
    tmp, _ = filled
    runs = [r for r in _archived(tmp / "a.jsonl.gz") if r["kind"] == "runs"]
    assert sorted((r["record"]["config"]["alpha"], r["record"]["config"]["seed"]) for r in runs) == [(0.0, 0), (0.5, 0)]


def test_fill_store_exports_the_teacher_with_its_weights(filled):
    tmp, _ = filled
    teachers = [r for r in _archived(tmp / "a.jsonl.gz") if r["kind"] == "teachers"]
    assert len(teachers) == 1 and teachers[0]["blob"]


def test_fill_store_rejects_a_seed_outside_the_grid(tmp_path):
    proc = _run(["scripts/fill_store.py", "--profile", "quick", "--study", "pruning_sweep", "--seeds", "7",
                 "--store", str(tmp_path / "s"), *TINY])
    assert proc.returncode != 0 and "allowed: [0, 1, 2]" in proc.stderr


def test_fill_store_rejects_an_unknown_parameter(tmp_path):
    proc = _run(["scripts/fill_store.py", "--profile", "quick", "--study", "pruning_sweep", "--store",
                 str(tmp_path / "s"), "--set", "fractionz=[0.5]"])
    assert proc.returncode != 0 and "NAME one of" in proc.stderr


@pytest.fixture
def published(tmp_path):
    """A fake profile's outputs (one sweep table and figure, a PDF that stays behind), published."""
    out = tmp_path / "outputs" / "prof" / "pruning_sweep"
    out.mkdir(parents=True)
    (out / "summary.csv").write_text("method,mean\nrandom,1.0\n")
    (out / "runs.csv").write_text("method,wall_seconds,runtime.device\nrandom,3600,cpu\n")
    (out / "method_ranking.png").write_bytes(b"png")
    (out / "method_ranking.pdf").write_bytes(b"pdf")
    (tmp_path / "outputs" / "prof" / "store").mkdir()
    proc = _run([str(ROOT / "scripts" / "publish_results.py"), "--profile", "prof"], cwd=tmp_path)
    return tmp_path / "docs" / "results" / "prof", proc


def test_publish_copies_the_listed_table(published):
    dst, _ = published
    assert (dst / "pruning_sweep" / "summary.csv").read_text() == "method,mean\nrandom,1.0\n"


def test_publish_copies_the_png(published):
    dst, _ = published
    assert (dst / "pruning_sweep" / "method_ranking.png").exists()


def test_publish_leaves_the_pdf(published):
    dst, _ = published
    assert not (dst / "pruning_sweep" / "method_ranking.pdf").exists()


def test_publish_names_a_study_without_outputs(published):
    _, proc = published
    assert "alpha_vs_factor: no outputs" in proc.stdout


def test_publish_reports_run_count_and_device(published):
    _, proc = published
    assert "1 runs; device: {'cpu': 1}" in proc.stdout


def test_publish_writes_a_readme_with_the_command(published):
    dst, _ = published
    assert "python -m kdlib.notebooks --profile prof --only pruning_sweep --force" in (
        dst / "pruning_sweep" / "README.md").read_text()


def test_publish_readme_states_the_wall_time(published):
    dst, _ = published
    assert "1.0 h in all" in (dst / "pruning_sweep" / "README.md").read_text()


@pytest.fixture
def republished(published, tmp_path):
    """The published README given a stale block and hand-written prose, then published again."""
    dst, _ = published
    readme = dst / "pruning_sweep" / "README.md"
    readme.write_text(readme.read_text().replace("1.0 h in all", "stale") + "\nHand-written findings.\n")
    _run([str(ROOT / "scripts" / "publish_results.py"), "--profile", "prof"], cwd=tmp_path)
    return readme.read_text()


def test_publish_replaces_a_stale_block(republished):
    assert "stale" not in republished


def test_publish_keeps_the_readme_prose(republished):
    assert "Hand-written findings." in republished


def test_publish_writes_the_store_archive(published):
    dst, _ = published
    assert (dst / "store" / "records.jsonl.gz").exists()


@pytest.fixture
def published_verdicts(tmp_path):
    """A fake profile with a claims verdict table, published: the claims README gets the generated table."""
    out = tmp_path / "outputs" / "prof" / "claims"
    out.mkdir(parents=True)
    pd.DataFrame([{"claim": "kd_improves", "verdict": "inconclusive", "dataset": "d", "model": "m", "teacher": "t",
                   "notes": "KD at alpha=0.5", "cells": 1, "cells_holds": 0, "cells_fails": 0,
                   "cells_inconclusive": 1, "seeds": "3", "seeds_needed": 5, "deciding_cells": "x"}]).to_csv(
        out / "verdicts.csv", index=False)
    (tmp_path / "outputs" / "prof" / "store").mkdir()
    _run([str(ROOT / "scripts" / "publish_results.py"), "--profile", "prof"], cwd=tmp_path)
    return (tmp_path / "docs" / "results" / "prof" / "claims" / "README.md").read_text()


def test_publish_writes_the_verdict_table_from_verdicts_csv(published_verdicts):
    assert "| kd_improves | d, m, t, KD at alpha=0.5 | **inconclusive** | 0/0/1 | 3 (5 needed) |" in published_verdicts
