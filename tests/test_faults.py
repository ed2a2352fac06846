"""The study loses nothing under faults: kill -9, concurrent grids, corrupt files, diverging runs."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import grid_script
import kdlib.study as study
from grid_helpers import one_thread, tiny_config  # noqa: F401  (one_thread: the fixture used below)
from kdlib.prune import METHODS, PruningMethod, keep_high
from kdlib.store import Store, config_key
from kdlib.study import Study, TeacherConfig, expand_grid, run_grid
from kdlib.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")
HERE = Path(__file__).parent
SCRIPT = HERE / "grid_script.py"
DIVERGING = TrainConfig(epochs=1, batch_size=32, lr=1e6, schedule="constant")


@pytest.fixture
def grid_process():
    """Starts ``tests/grid_script.py STORE GRID`` as a separate process; any still running at the end is killed."""
    procs = []

    def start(store, grid):
        proc = subprocess.Popen([sys.executable, str(SCRIPT), str(store), grid], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def snapshot(store: Path) -> dict:
    """Every run record file: name -> (bytes, mtime_ns)."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (store / "runs").glob("*.json")}


def assert_store_clean(store: Path, keys) -> None:
    """Exactly one readable, finished record per distinct key, nothing quarantined."""
    s = Store(store)
    files = sorted(p.stem for p in (store / "runs").glob("*.json"))
    assert files == sorted(set(keys))
    assert all(s.done("runs", k) is not None for k in files)
    assert not list(store.rglob("*.corrupt"))


def counting(monkeypatch):
    """Counts the teacher and student trainings of this process."""
    calls = {"teacher": 0, "student": 0}
    real = study.train

    def train(*a, **k):
        calls["teacher" if str(k.get("desc", "")).startswith("teacher") else "student"] += 1
        return real(*a, **k)

    monkeypatch.setattr(study, "train", train)
    return calls


# --- processes killed and racing ----------------------------------------------------------------------------------
def test_grid_killed_with_sigkill_resumes_without_loss(tmp_path, monkeypatch, grid_process):
    store = tmp_path / "store"
    proc = grid_process(store, "kill")
    deadline = time.monotonic() + 120
    while len(list((store / "runs").glob("*.json"))) < 2:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the grid wrote no records"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = snapshot(store)
    assert 2 <= len(before) < 8, "the grid finished before it was killed"

    calls = counting(monkeypatch)  # started again (here, to save a second start-up of torch)
    df = run_grid(grid_script.configs("kill"), store, progress=False, group_size=1)
    assert df.status.tolist() == ["done"] * 8
    assert calls == {"teacher": 0, "student": 8 - len(before)}  # finished work is not recomputed
    assert_store_clean(store, df.key)
    after = snapshot(store)
    assert all(after[name] == before[name] for name in before)  # same bytes, same mtime: untouched
    assert len(list((store / "teachers").glob("*.json"))) == 1


def test_overlapping_grids_on_one_store_lose_nothing(tmp_path, monkeypatch, grid_process):
    store = tmp_path / "store"
    other = grid_process(store, "overlap_a")
    assert other.stdout.readline().strip() == "ready", other.communicate()[1][-3000:]
    calls = counting(monkeypatch)
    mine = run_grid(grid_script.configs("overlap_b"), store, progress=False, group_size=1)  # at the same time as the other process
    theirs = finish(other)
    keys = set(theirs["keys"]) | set(mine.key)
    assert len(keys) == 6 and theirs["status"] + mine.status.tolist() == ["done"] * 8
    assert_store_clean(store, keys)
    assert theirs["trained"]["teacher"] + calls["teacher"] == 1  # the teacher is trained once
    assert theirs["trained"]["student"] + calls["student"] == 6  # and every run once
    assert len(list((store / "teachers").glob("*.json"))) == 1


# --- determinism ------------------------------------------------------------------------------------------------
def test_same_config_gives_same_subset_and_accuracy_whatever_ran_before(tmp_path):
    cfg = tiny_config(fraction=0.2, alpha=0.5, seed=1)
    first = Study(tmp_path / "a", progress=False)
    second = Study(tmp_path / "b", progress=False)
    second.run(tiny_config(fraction=0.1, seed=3))  # moves the global RNG before the teacher is built
    assert np.array_equal(first.subset(cfg), second.subset(cfg))
    r1, r2 = first.run(cfg), second.run(cfg)
    assert r1["teacher_acc"] == r2["teacher_acc"]
    assert r1["result"]["losses"] == r2["result"]["losses"]
    assert r1["result"]["final_acc"] == r2["result"]["final_acc"]


# --- corrupt files ----------------------------------------------------------------------------------------------
def quarantined(store: Path, pattern: str) -> list[str]:
    return [p.with_name(p.name + ".why").read_text() for p in store.rglob(pattern + "*.corrupt")]


@pytest.mark.parametrize("damage", ["half-written", "tampered"])
def test_corrupt_record_is_detected_and_recomputed(tmp_path, monkeypatch, damage):
    cfg = tiny_config(fraction=0.1, seed=1)
    first = run_grid([cfg], tmp_path, progress=False)
    path = Store(tmp_path).path("runs", cfg.key())
    text = path.read_text()
    if damage == "half-written":
        path.write_text(text[: len(text) // 2])
    else:  # still valid JSON with the right key: only the record's checksum can tell
        rec = json.loads(text)
        rec["result"]["final_acc"] = 99.0
        path.write_text(json.dumps(rec))
    calls = counting(monkeypatch)
    again = run_grid([cfg], tmp_path, progress=False)
    assert calls == {"teacher": 0, "student": 1}
    assert again.final_acc.tolist() == first.final_acc.tolist()
    why = quarantined(tmp_path, "runs/")
    assert len(why) == 1 and why[0].startswith("unreadable record: ")
    assert ("checksum mismatch" in why[0]) == (damage == "tampered")


@pytest.mark.parametrize("target", ["checkpoint", "record"])
def test_corrupt_teacher_is_detected_and_retrained(tmp_path, monkeypatch, target):
    cfg = tiny_config(fraction=0.1, alpha=0.5, seed=1)
    first = run_grid([cfg], tmp_path, progress=False)
    s = Store(tmp_path)
    tkey = study.config_key(TeacherConfig.of(cfg))
    if target == "checkpoint":
        p = s.path("teachers", tkey, ".pt")
        raw = bytearray(p.read_bytes())
        raw[len(raw) // 2] ^= 0xFF  # one flipped byte
        p.write_bytes(bytes(raw))
    else:
        s.path("teachers", tkey).write_text("{\"key\": ")
    s.path("runs", cfg.key()).unlink()  # the run must be redone and needs its teacher
    calls = counting(monkeypatch)
    again = run_grid([cfg], tmp_path, progress=False)
    assert calls == {"teacher": 1, "student": 1}
    assert again.teacher_acc.tolist() == first.teacher_acc.tolist()
    assert again.final_acc.tolist() == first.final_acc.tolist()
    why = quarantined(tmp_path, "teachers/")
    assert len(why) == 1
    assert why[0] == "checksum mismatch" if target == "checkpoint" else why[0].startswith("unreadable record: ")


@pytest.fixture
def scored_method(monkeypatch):
    """A throwaway method whose scorer counts its calls (keeps the samples with the highest pixel sums)."""
    calls = []

    def pixel_sum(ctx):
        calls.append(1)
        return {"score": ctx.data.x_train.float().sum((1, 2, 3)).numpy()}

    method = PruningMethod("fault_test_pixels", lambda a, y, k, rng, cb: keep_high(a["score"], y, k, rng, cb),
                           "hardest", pixel_sum, scorer_name="fault_test_pixels")
    monkeypatch.setitem(METHODS._items, method.name, method)
    return method.name, calls


def test_corrupt_scores_are_detected_and_recomputed(tmp_path, scored_method):
    name, calls = scored_method
    cfg = tiny_config(method=name, fraction=0.2, seed=1)
    s = Study(tmp_path, progress=False)
    subset = s.subset(cfg)
    assert len(calls) == 1
    assert np.array_equal(Study(tmp_path, progress=False).subset(cfg), subset) and len(calls) == 1  # cached
    (npz,) = (tmp_path / "scores").glob("*.npz")
    npz.write_bytes(npz.read_bytes()[:-10])  # truncated
    assert np.array_equal(Study(tmp_path, progress=False).subset(cfg), subset)
    assert len(calls) == 2 and quarantined(tmp_path, "scores/") == ["checksum mismatch"]


def test_stale_reader_never_quarantines_a_newer_good_record(tmp_path):
    s = Store(tmp_path)
    path = s.path("runs", config_key("k"))
    path.parent.mkdir(parents=True)
    path.write_text("{corrupt")
    st = os.stat(path)
    stale = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)  # what a slow reader saw
    s.put("runs", path.stem, {"status": "done", "result": {"final_acc": 1.0}}, ident="k")  # another process repaired it
    assert s._quarantine(path, "unreadable record", stale) is False
    assert s.done("runs", path.stem)["result"] == {"final_acc": 1.0}
    assert not list(tmp_path.rglob("*.corrupt"))


# --- diverging runs ---------------------------------------------------------------------------------------------
def test_diverging_runs_are_failed_records_and_the_grid_completes(tmp_path):
    good = expand_grid(tiny_config(seed=1), {"fraction": [0.1, 0.2]})
    bad_student = tiny_config(seed=1, fraction=0.3, train=DIVERGING)
    bad_teacher = tiny_config(seed=1, fraction=0.1, alpha=0.5, teacher_train=DIVERGING)
    df = run_grid([good[0], bad_student, bad_teacher, good[1]], tmp_path, progress=False)
    assert df.status.tolist() == ["done", "failed", "failed", "done"]
    assert df.final_acc.notna().tolist() == [True, False, False, True]
    assert df.error[1] == "random f=0.3 a=0 s=1: loss became nan in epoch 1 (lr=1000000.0); stopping"
    assert df.error[2] == "teacher convnet_small: loss became nan in epoch 1 (lr=1000000.0); stopping"
    rec = Store(tmp_path).get("runs", bad_student.key())
    assert rec["status"] == "failed" and "loss became nan" in rec["error"]


# --- a grid survives one bad run (issue 12, cases 5 and 7) -------------------------------------------------------
def test_any_error_inside_a_run_is_a_failed_record_and_the_grid_goes_on(tmp_path, scored_method, monkeypatch):
    name, _ = scored_method

    def broken_scorer(ctx):
        raise RuntimeError("scorer exploded")

    broken = PruningMethod("fault_test_broken", METHODS.get(name).select, "hardest", broken_scorer)
    monkeypatch.setitem(METHODS._items, broken.name, broken)
    bad = tiny_config(method=broken.name, fraction=0.2, seed=1)
    df = run_grid([bad, tiny_config(fraction=0.1, seed=1)], tmp_path, progress=False)
    assert df.status.tolist() == ["failed", "done"]
    assert df.error[0] == "RuntimeError: scorer exploded"
    rec = Store(tmp_path).get("runs", bad.key())
    assert rec["traceback"].startswith("test_faults.py:") and "in broken_scorer" in rec["traceback"]


def test_fraction_too_small_for_the_dataset_is_a_failed_record_naming_it(tmp_path):
    tiny = tiny_config(fraction=0.0005, seed=1)  # digits: round(0.0005 * 1437) = 1 sample
    df = run_grid([tiny, tiny_config(fraction=0.1, seed=1)], tmp_path, progress=False)
    assert df.status.tolist() == ["failed", "done"]
    assert re.fullmatch(r"ValueError: fraction=0.0005 keeps round\(0.0005 \* \d+\) = 1 of the \d+ training samples; "
                        r"training needs at least 2: use fraction >= \S+", df.error[0]), df.error[0]


def test_teacher_fraction_too_small_names_teacher_fraction(tmp_path):
    df = run_grid([tiny_config(fraction=0.1, alpha=0.5, teacher_fraction=0.0005)], tmp_path, progress=False)
    assert df.error[0].startswith("ValueError: teacher_fraction=0.0005 keeps round(")


def test_missing_dataset_stops_the_grid_before_anything_trains(tmp_path, monkeypatch):
    calls = counting(monkeypatch)
    (tmp_path / "empty").mkdir()
    grid = [tiny_config(fraction=0.1), tiny_config(fraction=0.1, dataset="svhn")]
    with pytest.raises(FileNotFoundError, match="dataset 'svhn' not found"):
        run_grid(grid, tmp_path / "store", data_root=str(tmp_path / "empty"), progress=False)
    assert calls == {"teacher": 0, "student": 0}


def test_unwritable_store_stops_the_grid_before_anything_trains(tmp_path, monkeypatch):
    import kdlib.store

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    calls = counting(monkeypatch)
    Store(tmp_path)
    monkeypatch.setattr(kdlib.store.tempfile, "mkstemp", refuse)
    with pytest.raises(ValueError, match=r"store .* is not writable \(Permission denied\)"):
        run_grid([tiny_config(fraction=0.1)], tmp_path, progress=False)
    assert calls == {"teacher": 0, "student": 0}


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_stops_the_grid_at_once(tmp_path, monkeypatch):
    calls = counting(monkeypatch)
    with pytest.raises(ValueError, match="device='cuda' but this machine has no CUDA device"):
        run_grid([tiny_config(fraction=0.1)], tmp_path, device="cuda", progress=False)
    assert calls == {"teacher": 0, "student": 0}


def test_empty_grid_gives_an_empty_table_with_its_columns(tmp_path):
    df = run_grid([], tmp_path, progress=False)
    assert len(df) == 0 and {"key", "status", "final_acc"} <= set(df.columns)


# --- the bad-input table ----------------------------------------------------------------------------------------
def _bad_input_table():
    import importlib.util

    path = HERE.parent / "benchmarks" / "bad_input_table.py"
    spec = importlib.util.spec_from_file_location("bad_input_table", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


BAD_INPUT = _bad_input_table()


@pytest.mark.parametrize("case", BAD_INPUT.CASES, ids=[c.what for c in BAD_INPUT.CASES])
def test_bad_input_gets_the_documented_error(case):
    kind, text = BAD_INPUT.outcome(case)
    assert kind == case.raises, text
    assert re.search(case.expect, text), text
    assert f"| {case.what} | `{case.code}` | {kind} |" in (HERE.parent / "README.md").read_text(), \
        "the README's bad-input table is stale: run python benchmarks/bad_input_table.py"
