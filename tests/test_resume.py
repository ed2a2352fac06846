"""In-run resume through the store: a run killed mid-way resumes from its last checkpoint and ends as an
uninterrupted run ends; checkpoints are checksummed, loaded with weights_only=True, and a damaged one is set aside."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from grid_helpers import RESUME_CONFIG, one_thread  # noqa: F401  (one_thread: the fixture used below)
from kdlib.store import Store, config_key
from kdlib.study import Study

pytestmark = pytest.mark.usefixtures("one_thread")
HERE = Path(__file__).parent


def leftovers(root: Path) -> list[str]:
    """Checkpoint files (records and states) left under the store."""
    folder = root / "checkpoints"
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".lock")) \
        if folder.exists() else []


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """A store whose run was killed by SIGKILL in its third epoch (in a separate process)."""
    root = tmp_path_factory.mktemp("killed")
    proc = subprocess.run([sys.executable, str(HERE / "resume_script.py"), str(root), "3"], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    return root


def test_a_killed_run_leaves_the_checkpoint_of_its_second_epoch(killed):
    store = Store(killed)
    key = RESUME_CONFIG.key()
    assert store.get("runs", key) is None
    assert store.load_checkpoint("checkpoints/runs", key)["state"]["epoch"] == 2


def test_a_killed_run_resumes_and_ends_with_the_uninterrupted_record(killed, tmp_path):
    whole = Study(tmp_path, device="cpu", progress=False).run(RESUME_CONFIG)["result"]
    resumed = Study(killed, device="cpu", progress=False).run(RESUME_CONFIG)["result"]
    assert (resumed["final_acc"], resumed["losses"], resumed["curve"]) == \
        (whole["final_acc"], whole["losses"], whole["curve"])


def test_no_checkpoint_is_left_once_the_record_exists(killed):
    Study(killed, device="cpu", progress=False).run(RESUME_CONFIG)
    assert leftovers(killed) == []


CONFIG = {"run": "a config"}  # what a checkpoint record names (its key is the hash of it)
KEY = config_key(CONFIG)


def test_a_damaged_newest_checkpoint_is_quarantined_and_the_previous_one_used(tmp_path):
    store = Store(tmp_path)
    for epoch in (1, 2):
        store.save_checkpoint("checkpoints/runs", KEY, {"w": torch.full((3,), float(epoch))}, epoch, CONFIG)
    newest = tmp_path / "checkpoints" / "runs" / f"{KEY}.e2.pt"
    newest.write_bytes(newest.read_bytes()[:-7])  # truncated
    assert torch.equal(store.load_checkpoint("checkpoints/runs", KEY)["w"], torch.full((3,), 1.0))
    assert len(list(newest.parent.glob(f"{KEY}.e2.pt.*.corrupt"))) == 1


class Payload:
    """Pickles to a call of ``Path.touch``: what a planted checkpoint would run if loaded with weights_only=False."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return Path.touch, (self.target,)


def test_a_checkpoint_carrying_code_is_never_run_and_is_quarantined(tmp_path):
    store = Store(tmp_path / "store")
    planted = tmp_path / "pwned"
    store.save_checkpoint("checkpoints/runs", KEY, {"w": Payload(planted)}, 1, CONFIG)  # valid checksum, foreign object
    assert store.load_checkpoint("checkpoints/runs", KEY) is None  # the run starts over
    assert not planted.exists()
    assert len(list((tmp_path / "store" / "checkpoints" / "runs").glob(f"{KEY}.e1.pt.*.corrupt"))) == 1


def test_only_the_last_two_generations_are_kept(tmp_path):
    store = Store(tmp_path)
    for epoch in (1, 2, 3):
        store.save_checkpoint("checkpoints/runs", KEY, {"w": torch.zeros(1)}, epoch, CONFIG)
    assert sorted(p.name for p in (tmp_path / "checkpoints" / "runs").glob("*.pt")) == [f"{KEY}.e2.pt", f"{KEY}.e3.pt"]


def test_a_slot_saves_at_most_once_per_interval(tmp_path):
    slot = Store(tmp_path).checkpoint("runs", KEY, CONFIG, min_interval=3600.0)
    slot.save({"w": torch.zeros(1)}, 1)
    assert slot.load() is None


def test_a_slot_without_interval_saves_every_call(tmp_path):
    slot = Store(tmp_path).checkpoint("runs", KEY, CONFIG)
    slot.save({"w": torch.zeros(1)}, 1)
    assert torch.equal(slot.load()["w"], torch.zeros(1))


def test_a_study_saves_short_runs_no_checkpoint_by_default(tmp_path, monkeypatch):
    """The default interval (60 s) spares a seconds-long run its per-epoch fsync'd checkpoints."""
    saved = []
    monkeypatch.setattr(Store, "save_checkpoint", lambda self, *a, **k: saved.append(a))
    Study(tmp_path, device="cpu", progress=False).run(RESUME_CONFIG)
    assert saved == []


def test_a_negative_checkpoint_interval_names_the_parameter(tmp_path):
    with pytest.raises(ValueError, match="checkpoint_every"):
        Study(tmp_path, device="cpu", checkpoint_every=-1)
