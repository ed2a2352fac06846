"""kdlib.archive: a store's records exported to one file and imported into another store, verified."""
from __future__ import annotations

import gzip
import json

import pytest

from kdlib.archive import export_records, import_records
from kdlib.store import Store


@pytest.fixture
def filled(store, put_record):
    """A store with two run records and one alpha rule (a named kind)."""
    put_record({"dataset": "digits", "seed": 0}, final_acc=90.0)
    put_record({"dataset": "digits", "seed": 1}, final_acc=91.0)
    store.put("alpha_rules", "digits", {"status": "done", "rule": [0.1, 0.2]})
    return store


@pytest.fixture
def archive(filled, tmp_path):
    path = tmp_path / "records.jsonl.gz"
    export_records(filled, path)
    return path


def test_export_counts_records(filled, tmp_path):
    assert export_records(filled, tmp_path / "a.jsonl.gz") == 3


def test_export_is_deterministic(filled, tmp_path):
    export_records(filled, tmp_path / "a.jsonl.gz")
    export_records(filled, tmp_path / "b.jsonl.gz")
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()


def test_import_adds_every_record(archive, tmp_path):
    assert import_records(archive, tmp_path / "other")["added"] == 3


def test_imported_records_equal_the_originals(filled, archive, tmp_path):
    other = Store(tmp_path / "other")
    import_records(archive, other)
    assert other.records("runs") == filled.records("runs")


def test_imported_named_kind_is_readable(archive, tmp_path):
    other = Store(tmp_path / "other")
    import_records(archive, other)
    assert other.get("alpha_rules", "digits")["rule"] == [0.1, 0.2]


def test_import_keeps_records_already_present(filled, archive):
    assert import_records(archive, filled) == {"added": 0, "present": 3, "refused": 0}


def test_tampered_record_is_refused(archive, tmp_path):
    lines = gzip.decompress(archive.read_bytes()).decode().splitlines()
    item = json.loads(lines[0])
    item["record"]["result"] = {"final_acc": 99.9}  # changed after its checksum was taken
    lines[0] = json.dumps(item)
    archive.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    assert import_records(archive, tmp_path / "other")["refused"] == 1


@pytest.fixture
def with_teacher(store, put_record):
    """A store with one teacher record and its weights file (bytes standing in for a state dict)."""
    key = put_record({"dataset": "digits", "model": "convnet", "seed": 0}, kind="teachers",
                     sha256=store.put_blob("teachers", "pending", b"weights", ".pt"))
    store.path("teachers", "pending", ".pt").rename(store.path("teachers", key, ".pt"))
    return store, key


def _export_teachers(store, tmp_path):
    path = tmp_path / "teachers.jsonl.gz"
    export_records(store, path, ["teachers"])
    return path


def test_teacher_weights_travel_with_their_record(with_teacher, tmp_path):
    store, key = with_teacher
    other = Store(tmp_path / "other")
    import_records(_export_teachers(store, tmp_path), other)
    assert other.get_blob("teachers", key, ".pt", store.get("teachers", key)["sha256"]) == b"weights"


def test_teacher_without_its_weights_is_not_exported(with_teacher, tmp_path):
    store, key = with_teacher
    store.path("teachers", key, ".pt").unlink()
    assert export_records(store, tmp_path / "t.jsonl.gz", ["teachers"]) == 0


def test_teacher_over_the_size_limit_is_not_exported(with_teacher, tmp_path):
    store, _ = with_teacher
    assert export_records(store, tmp_path / "t.jsonl.gz", ["teachers"], max_blob_bytes=6) == 0


def test_teacher_within_the_size_limit_is_exported(with_teacher, tmp_path):
    store, _ = with_teacher
    assert export_records(store, tmp_path / "t.jsonl.gz", ["teachers"], max_blob_bytes=7) == 1


def test_negative_size_limit_names_the_parameter(with_teacher, tmp_path):
    store, _ = with_teacher
    with pytest.raises(ValueError, match="max_blob_bytes"):
        export_records(store, tmp_path / "t.jsonl.gz", ["teachers"], max_blob_bytes=-1)


def test_teacher_with_altered_weights_is_refused(with_teacher, tmp_path):
    store, _ = with_teacher
    path = _export_teachers(store, tmp_path)
    item = json.loads(gzip.decompress(path.read_bytes()))
    item["blob"] = "b3RoZXI="  # base64 of b"other"
    path.write_bytes(gzip.compress(json.dumps(item).encode()))
    assert import_records(path, tmp_path / "other")["refused"] == 1


def test_refused_teacher_leaves_no_record(with_teacher, tmp_path):
    store, key = with_teacher
    path = _export_teachers(store, tmp_path)
    item = json.loads(gzip.decompress(path.read_bytes()))
    del item["blob"]
    path.write_bytes(gzip.compress(json.dumps(item).encode()))
    import_records(path, tmp_path / "other")
    assert Store(tmp_path / "other").get("teachers", key) is None


def test_negative_max_blob_mb_names_the_option(with_teacher, tmp_path, capsys):
    from kdlib.archive import main
    store, _ = with_teacher
    with pytest.raises(SystemExit):
        main(["export", str(store.root), str(tmp_path / "t.jsonl.gz"), "--max-blob-mb", "-1"])
    assert "--max-blob-mb must be" in capsys.readouterr().err
