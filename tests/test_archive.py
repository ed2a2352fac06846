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
    with pytest.warns(UserWarning, match="line 1 refused: record checksum mismatch"):
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
    with pytest.warns(UserWarning, match="line 1 refused: artefact does not match its record's SHA-256"):
        assert import_records(path, tmp_path / "other")["refused"] == 1


def test_refused_teacher_leaves_no_record(with_teacher, tmp_path):
    store, key = with_teacher
    path = _export_teachers(store, tmp_path)
    item = json.loads(gzip.decompress(path.read_bytes()))
    del item["blob"]
    path.write_bytes(gzip.compress(json.dumps(item).encode()))
    with pytest.warns(UserWarning, match="line 1 refused: its artefact is missing"):
        import_records(path, tmp_path / "other")
    assert Store(tmp_path / "other").get("teachers", key) is None


def test_negative_max_blob_mb_names_the_option(with_teacher, tmp_path, capsys):
    from kdlib.archive import main
    store, _ = with_teacher
    with pytest.raises(SystemExit):
        main(["export", str(store.root), str(tmp_path / "t.jsonl.gz"), "--max-blob-mb", "-1"])
    assert "--max-blob-mb must be" in capsys.readouterr().err


# --- issue 25, item 4: what an archive may not do ---------------------------------------------------------------
def _lines(path):
    return [json.loads(line) for line in gzip.decompress(path.read_bytes()).decode().splitlines()]


def _write(path, items, raw_tail=b""):
    path.write_bytes(gzip.compress(("\n".join(json.dumps(i) for i in items) + "\n").encode() + raw_tail))
    return path


def _renamed(item, key):
    """``item`` with its record under ``key``, checksum recomputed (only the key pattern can refuse it)."""
    from kdlib.store import _record_checksum

    record = {k: v for k, v in item["record"].items() if k != "checksum"}
    record["key"] = key
    record["checksum"] = _record_checksum(record)
    return {**item, "record": record}


@pytest.mark.parametrize("kind", ["..", ".", "", "checkpoints/runs", "other"])
def test_a_kind_outside_the_fixed_list_is_refused(archive, tmp_path, kind):
    items = _lines(archive)
    _write(archive, [{**items[0], "kind": kind}])
    with pytest.warns(UserWarning, match="line 1 refused: kind .* is not one of runs, alpha_rules, teachers, scores"):
        assert import_records(archive, tmp_path / "other")["refused"] == 1


def test_a_dot_dot_kind_writes_nothing_outside_the_store(archive, tmp_path):
    items = _lines(archive)
    _write(archive, [{**items[0], "kind": ".."}])
    with pytest.warns(UserWarning):
        import_records(archive, tmp_path / "sub" / "other")
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["other"]


@pytest.mark.parametrize("key", ["abc\x00def", "a" * 300, "../../etc/passwd", ".hidden"],
                         ids=["NUL byte", "300 characters", "a path", "a dot name"])
def test_a_key_off_the_store_pattern_is_refused_and_the_rest_imported(archive, tmp_path, key):
    items = _lines(archive)
    named = next(i for i in items if i["kind"] == "alpha_rules")
    _write(archive, [_renamed(named, key)] + items)
    with pytest.warns(UserWarning, match="line 1 refused: key .* does not match"):
        assert import_records(archive, tmp_path / "other") == {"added": 3, "present": 0, "refused": 1}


def test_a_run_key_that_is_not_a_hash_is_refused(archive, tmp_path):
    items = _lines(archive)
    run = next(i for i in items if i["kind"] == "runs")
    _write(archive, [_renamed(run, "A" * 16)])
    with pytest.warns(UserWarning, match=r"key 'AAAAAAAAAAAAAAAA' of a 'runs' record does not match \[0-9a-f\]\{16\}"):
        import_records(archive, tmp_path / "other")


def test_a_truncated_archive_is_an_error_naming_it(archive, tmp_path):
    raw = archive.read_bytes()
    archive.write_bytes(raw[: len(raw) - 12])  # the gzip trailer and some data gone
    with pytest.raises(ValueError, match=f"archive {archive} is truncated or not a gzip file"):
        import_records(archive, tmp_path / "other")


def test_a_truncated_archive_adds_nothing(archive, tmp_path):
    raw = archive.read_bytes()
    archive.write_bytes(raw[: len(raw) - 12])
    with pytest.raises(ValueError):
        import_records(archive, tmp_path / "other")
    assert Store(tmp_path / "other").records("runs") == []


def test_a_line_over_the_limit_is_an_error_naming_the_line_and_limit(archive, tmp_path):
    items = _lines(archive)
    _write(archive, items + [{"kind": "runs", "record": {"pad": "x" * 5000}}])
    with pytest.raises(ValueError, match="line 4 is longer than max_line_bytes=2000 \\(--max-line-mb\\)"):
        import_records(archive, tmp_path / "other", max_line_bytes=2000)


def test_a_line_over_the_limit_adds_nothing_before_it(archive, tmp_path):
    items = _lines(archive)
    _write(archive, items + [{"kind": "runs", "record": {"pad": "x" * 5000}}])
    with pytest.raises(ValueError):
        import_records(archive, tmp_path / "other", max_line_bytes=2000)
    assert not any((tmp_path / "other").rglob("*.json"))


def test_one_long_line_is_never_read_whole(archive, tmp_path, monkeypatch):
    """A gzip bomb of one line: readline is always bounded (the old ``for line in fh`` read it whole)."""
    sizes = []
    real = gzip.GzipFile.readline

    def readline(self, size=-1):
        sizes.append(size)
        return real(self, size)

    monkeypatch.setattr(gzip.GzipFile, "readline", readline)
    archive.write_bytes(gzip.compress(b"x" * 10_000_000))
    with pytest.raises(ValueError, match="line 1 is longer"):
        import_records(archive, tmp_path / "other", max_line_bytes=1000)
    assert sizes == [1001]


def test_a_limit_that_is_not_a_positive_integer_names_the_parameter(archive, tmp_path):
    with pytest.raises(ValueError, match="max_line_bytes must be an integer >= 1 \\(bytes\\), got 0"):
        import_records(archive, tmp_path / "other", max_line_bytes=0)


def test_an_artefact_over_the_limit_is_refused(with_teacher, tmp_path):
    store, _ = with_teacher
    path = _export_teachers(store, tmp_path)
    with pytest.warns(UserWarning, match="its artefact is larger than max_blob_bytes=3 \\(--max-blob-mb\\)"):
        assert import_records(path, tmp_path / "other", max_blob_bytes=3)["refused"] == 1


def test_a_done_record_replaces_a_failed_one(filled, archive, tmp_path):
    other = Store(tmp_path / "other")
    config = {"dataset": "digits", "seed": 0}
    from kdlib.store import config_key
    other.put("runs", config_key(config), {"status": "failed", "config": config, "error": "killed"})
    import_records(archive, other)
    assert other.get("runs", config_key(config))["status"] == "done"


def test_a_failed_record_never_replaces_a_done_one(filled, tmp_path):
    from kdlib.store import config_key
    config = {"dataset": "digits", "seed": 0}
    failed = Store(tmp_path / "failed")
    failed.put("runs", config_key(config), {"status": "failed", "config": config})
    export_records(failed, tmp_path / "failed.jsonl.gz")
    assert import_records(tmp_path / "failed.jsonl.gz", filled) == {"added": 0, "present": 1, "refused": 0}


def test_export_of_an_unknown_kind_names_the_allowed_ones(filled, tmp_path):
    with pytest.raises(ValueError, match="unknown kinds \\['checkpoints'\\]; allowed values for 'kinds': runs, "):
        export_records(filled, tmp_path / "a.jsonl.gz", ["checkpoints"])


def test_cli_import_of_a_truncated_archive_says_nothing_was_imported(archive, tmp_path, capsys):
    from kdlib.archive import main

    archive.write_bytes(archive.read_bytes()[:-12])
    with pytest.raises(SystemExit):
        main(["import", str(archive), str(tmp_path / "other")])
    assert "is truncated or not a gzip file" in capsys.readouterr().err


def test_an_import_leaves_no_staging_folder(archive, tmp_path):
    import_records(archive, tmp_path / "other")
    assert not list((tmp_path / "other").glob(".import.*"))
