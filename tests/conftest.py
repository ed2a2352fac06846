"""Shared test fixtures."""
from __future__ import annotations

import pytest

from kdlib.store import Store, config_key


@pytest.fixture
def store(tmp_path) -> Store:
    """An empty store in a temporary folder."""
    return Store(tmp_path / "store")


@pytest.fixture
def put_record(store):
    """``put_record(config, kind="runs", **fields)``: writes a record whose key is the hash of ``config`` (as the
    study writes them) and returns its key."""

    def put(config, kind: str = "runs", **fields) -> str:
        key = config_key(config)
        store.put(kind, key, {"status": "done", "config": config, **fields})
        return key

    return put


@pytest.fixture
def as_format_1():
    """``as_format_1(path, checksum=True)``: rewrites the record at ``path`` as kdlib wrote it before store format 2
    (no ``ident``; with a valid checksum, or none as before checksums existed)."""
    import json

    from kdlib.store import _record_checksum

    def rewrite(path, checksum: bool = True) -> None:
        rec = json.loads(path.read_text())
        rec.pop("checksum")
        rec.pop("ident", None)
        rec["format"] = 1
        if checksum:
            rec["checksum"] = _record_checksum(rec)
        path.write_text(json.dumps(rec, indent=1))

    return rewrite


@pytest.fixture(scope="session")
def digits_folder(tmp_path_factory):
    """sklearn digits written in ImageNet's folder layout (8 train / 4 val images per class, 16px JPEGs), once per
    session; a test that changes files works on a copy."""
    from kdlib.imagenet import export_image_folder

    return export_image_folder("digits", tmp_path_factory.mktemp("folders") / "digits", per_class=8, image_size=16,
                               val_per_class=4)
