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
