import json
import os
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from kdlib.store import Store, config_key


@dataclass(frozen=True)
class Cfg:
    a: int
    b: tuple = (1, 2)


def test_key_stable_and_sensitive():
    assert config_key(Cfg(1)) == config_key(Cfg(1))
    assert config_key(Cfg(1)) != config_key(Cfg(2))
    assert config_key({"x": 1, "y": 2}) == config_key({"y": 2, "x": 1})


def test_put_get_roundtrip_and_no_temp_left(tmp_path):
    s = Store(tmp_path)
    k1 = config_key(Cfg(3))
    rec = s.put("runs", k1, {"status": "done", "config": Cfg(3), "result": {"acc": 1.5}})
    assert s.done("runs", k1)["result"] == {"acc": 1.5}
    assert rec["key"] == k1
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [f"{k1}.json"]


def test_corrupt_record_is_quarantined_not_read(store, put_record):
    s = store
    path = s.path("runs", put_record(Cfg(1)))
    path.write_text(path.read_text()[: len(path.read_text()) // 2])  # half-written
    assert s.get("runs", path.stem) is None
    assert not path.exists()
    assert any(p.name.endswith(".corrupt") for p in path.parent.iterdir())


def test_record_with_wrong_key_is_rejected(store, put_record):
    k1 = put_record(Cfg(1))
    os.replace(store.path("runs", k1), store.path("runs", "k2"))
    assert store.get("runs", "k2") is None


def test_blob_checksum(tmp_path):
    s = Store(tmp_path)
    sha = s.save_state("teachers", "t", {"w": torch.arange(4.0)})
    assert torch.equal(s.load_state("teachers", "t", sha)["w"], torch.arange(4.0))
    p = s.path("teachers", "t", ".pt")
    p.write_bytes(p.read_bytes()[:-3] + b"xyz")
    assert s.load_state("teachers", "t", sha) is None
    sha = s.save_arrays("scores", "s", {"el2n": np.arange(3.0)})
    assert np.array_equal(s.load_arrays("scores", "s", sha)["el2n"], np.arange(3.0))


def test_records_lists_readable_only(store, put_record):
    a = put_record(Cfg(1))
    b = put_record(Cfg(2), status="failed", error="x")
    (store.root / "runs" / "c.json").write_text("{not json")
    assert sorted(r["key"] for r in store.records("runs")) == sorted([a, b])
    json.loads(store.path("runs", a).read_text())


# --- records prove themselves (issue 12, case 3) -----------------------------------------------------------------
def rewrite(path, edit) -> None:
    """Rewrites the JSON record at ``path`` with ``edit(record)`` applied (an edit by hand, no checksum update)."""
    rec = json.loads(path.read_text())
    edit(rec)
    path.write_text(json.dumps(rec, indent=1))


def why_quarantined(store) -> list[str]:
    return [p.with_name(p.name + ".why").read_text() for p in store.root.rglob("*.corrupt")]


def test_record_without_checksum_is_quarantined(store, put_record):
    key = put_record(Cfg(1), result={"final_acc": 50.0})
    rewrite(store.path("runs", key), lambda r: (r.pop("checksum"), r["result"].update(final_acc=99.9)))
    assert store.get("runs", key) is None
    assert why_quarantined(store) == ["unreadable record: record has no checksum"]


def test_record_copied_under_another_key_is_quarantined(store, put_record):
    mine, other = put_record(Cfg(1), result={"final_acc": 50.0}), config_key(Cfg(2))
    store.path("runs", other).write_text(store.path("runs", mine).read_text())
    rewrite(store.path("runs", other), lambda r: (r.pop("checksum"), r.update(key=other)))
    assert store.get("runs", other) is None
    assert store.get("runs", mine)["result"] == {"final_acc": 50.0}  # the original is untouched


def test_record_whose_identity_does_not_hash_to_its_key_is_quarantined(store, put_record):
    """Even with a recomputed, valid checksum: a record only belongs to the key its identity hashes to."""
    from kdlib.store import _record_checksum

    mine, other = put_record(Cfg(1)), config_key(Cfg(2))

    def move(r):
        r.pop("checksum")
        r["key"] = other
        r["checksum"] = _record_checksum(r)

    store.path("runs", other).write_text(store.path("runs", mine).read_text())
    rewrite(store.path("runs", other), move)
    assert store.get("runs", other) is None
    assert why_quarantined(store) == [f"unreadable record: record identity hashes to {mine}, not to its key"]


def test_record_of_an_older_store_format_is_quarantined_not_misread(store, put_record, as_format_1):
    key = put_record(Cfg(1))
    as_format_1(store.path("runs", key))
    assert store.get("runs", key) is None
    (why,) = why_quarantined(store)
    assert why.startswith("unreadable record: record written by store format 1, not 2")


def test_put_refuses_a_key_that_is_not_the_hash_of_the_config(store):
    with pytest.raises(ValueError, match="is not the hash of its identity"):
        store.put("runs", "k1", {"status": "done", "config": Cfg(1)})


def test_named_kinds_are_keyed_by_name():
    from kdlib.alpha_rule import RULES_KIND
    from kdlib.store import NAMED_KINDS

    assert RULES_KIND in NAMED_KINDS


# --- the store's files and folders (issue 12, case 7) -----------------------------------------------------------
def test_store_path_that_is_a_file_gets_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="store .*file.* is a file, not a folder"):
        Store(tmp_path / "file")


def test_symlinked_lock_file_is_not_followed(store, tmp_path):
    outside = tmp_path / "outside.txt"
    lock = store.path("runs", "k", ".lock")
    lock.parent.mkdir(parents=True)
    lock.symlink_to(outside)
    with pytest.raises(RuntimeError, match="lock file .* is a symbolic link"):
        with store.lock("runs", "k"):
            pass
    assert not outside.exists()


def test_records_and_artefacts_are_readable_by_the_group_per_umask(store, put_record):
    old = os.umask(0o022)
    try:
        key = put_record(Cfg(1))
        store.save_state("teachers", key, {"w": torch.zeros(2)})
        store.save_arrays("scores", key, {"s": np.zeros(2)})
        with store.lock("runs", key):
            pass
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in store.root.rglob("*") if p.is_file()}
    assert set(modes.values()) == {0o644}, modes


# --- issue 25, items 5, 7, 9: artefacts that do not load, read-only stores, odd files, orphans -------------------
def _quarantined(store, kind):
    return [p.name for p in (store.root / kind).glob("*.corrupt")]


def _why(store, kind):
    (why,) = (store.root / kind).glob("*.why")
    return why.read_text()


def _state_with_code(store, key):
    """A teacher file whose SHA-256 its record holds, but whose pickle needs a class (code) to load."""
    import argparse
    import io

    buf = io.BytesIO()
    torch.save({"w": argparse.Namespace(x=1)}, buf)
    return store.put_blob("teachers", key, buf.getvalue(), ".pt")


def test_a_state_whose_pickle_needs_code_is_not_returned(store):
    key = config_key({"teacher": 1})
    assert store.load_state("teachers", key, _state_with_code(store, key)) is None


def test_a_state_whose_pickle_needs_code_is_quarantined(store):
    key = config_key({"teacher": 1})
    store.load_state("teachers", key, _state_with_code(store, key))
    assert _why(store, "teachers").startswith("unloadable artefact: UnpicklingError")


def test_a_state_of_another_architecture_is_quarantined(store):
    key = config_key({"teacher": 1})
    sha = store.save_state("teachers", key, torch.nn.Linear(2, 2).state_dict())
    assert store.load_state("teachers", key, sha, into=torch.nn.Linear(3, 3)) is None
    assert "size mismatch" in _why(store, "teachers")


def test_a_state_that_loads_into_its_model_is_returned(store):
    key = config_key({"teacher": 1})
    model = torch.nn.Linear(2, 2)
    sha = store.save_state("teachers", key, model.state_dict())
    assert torch.equal(store.load_state("teachers", key, sha, into=torch.nn.Linear(2, 2))["weight"], model.weight)


@pytest.mark.parametrize("payload", ["object array", "not a zip"])
def test_score_arrays_that_verify_but_do_not_load_are_quarantined(store, payload):
    import io

    key = config_key({"scores": 1})
    buf = io.BytesIO()
    if payload == "object array":
        np.savez(buf, scores=np.array([{"a": 1}], dtype=object))
    else:
        buf.write(b"PK\x03\x04 not a zip")
    sha = store.put_blob("scores", key, buf.getvalue(), ".npz")
    assert store.load_arrays("scores", key, sha) is None and len(_quarantined(store, "scores")) == 1


@pytest.fixture
def read_only(monkeypatch):
    """Every rename fails as on a read-only filesystem (EROFS; root ignores file modes, so chmod cannot test it)."""
    import errno
    import pathlib

    def replace(self, target):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(pathlib.Path, "replace", replace)


def test_a_read_only_store_skips_a_damaged_record_and_reads_the_rest(store, put_record, read_only):
    good = put_record({"run": 1})
    bad = put_record({"run": 2})
    store.path("runs", bad).write_text("{ half")
    with pytest.warns(UserWarning, match=f"{bad}.json: unreadable record: .*; skipped, left in place"):
        assert [r["key"] for r in store.records("runs")] == [good]


def test_a_read_only_store_is_never_written(store, put_record, read_only):
    bad = put_record({"run": 2})
    store.path("runs", bad).write_text("{ half")
    with pytest.warns(UserWarning):
        store.records("runs")
    assert sorted(p.name for p in (store.root / "runs").iterdir()) == [f"{bad}.json"]


def _within(seconds, fn):
    """``fn()``'s result, or a test failure when it has not returned after ``seconds`` (a FIFO blocks open())."""
    import threading

    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("value", fn()), daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"did not return within {seconds} s")
    return out.get("value")


@pytest.mark.parametrize("odd", ["directory", "fifo", "symlink loop", "symlink"])
def test_records_skip_what_is_not_a_regular_file(store, put_record, odd):
    good = put_record({"run": 1})
    path = store.root / "runs" / f"{config_key({'run': 2})}.json"
    if odd == "directory":
        path.mkdir()
    elif odd == "fifo":
        os.mkfifo(path)
    elif odd == "symlink loop":
        path.symlink_to(path)
    else:
        path.symlink_to(store.path("runs", good))
    with pytest.warns(UserWarning, match="not a regular file: skipped"):
        assert [r["key"] for r in _within(10, lambda: store.records("runs"))] == [good]


@pytest.mark.parametrize("odd", ["directory", "fifo", "symlink loop"])
def test_get_of_what_is_not_a_regular_file_is_none(store, odd):
    key = config_key({"run": 2})
    path = store.path("runs", key)
    path.parent.mkdir(parents=True)
    {"directory": path.mkdir, "fifo": lambda: os.mkfifo(path), "symlink loop": lambda: path.symlink_to(path)}[odd]()
    with pytest.warns(UserWarning, match="not a regular file: skipped"):
        assert _within(10, lambda: store.get("runs", key)) is None


def _orphans(root):
    """Two temporary files a killed writer left in ``root/runs`` (one two days old, one fresh), an old one in
    ``root/checkpoints/teachers`` and an old staging folder; no store has been opened on ``root`` yet."""
    import time

    two_days_ago = time.time() - 2 * 86400
    old, fresh = root / "runs" / ".a.json.x1.tmp", root / "runs" / ".b.json.x2.tmp"
    deep, stage = root / "checkpoints" / "teachers" / ".c.e1.pt.x3.tmp", root / ".import.x4.tmp"
    for p in (old, fresh, deep):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("partial")
    (stage / "runs").mkdir(parents=True)
    for p in (old, deep, stage):
        os.utime(p, (two_days_ago, two_days_ago))
    return old, fresh, deep, stage


def test_orphaned_temporary_files_older_than_a_day_are_removed_on_open(tmp_path):
    files = _orphans(tmp_path / "store")
    Store(tmp_path / "store")
    assert [p.exists() for p in files] == [False, True, False, False]


def test_orphans_are_left_in_a_store_that_cannot_be_written(tmp_path, monkeypatch):
    old, _, _, _ = _orphans(tmp_path / "store")
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: mode != os.W_OK)
    Store(tmp_path / "store")
    assert old.exists()
