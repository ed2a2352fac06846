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
