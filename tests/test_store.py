import json
import os
from dataclasses import dataclass

import numpy as np
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
    rec = s.put("runs", "k1", {"status": "done", "config": Cfg(3), "result": {"acc": 1.5}})
    assert s.done("runs", "k1")["result"] == {"acc": 1.5}
    assert rec["key"] == "k1"
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["k1.json"]


def test_corrupt_record_is_quarantined_not_read(tmp_path):
    s = Store(tmp_path)
    s.put("runs", "k1", {"status": "done"})
    path = s.path("runs", "k1")
    path.write_text(path.read_text()[: len(path.read_text()) // 2])  # half-written
    assert s.get("runs", "k1") is None
    assert not path.exists()
    assert any(p.name.endswith(".corrupt") for p in path.parent.iterdir())


def test_record_with_wrong_key_is_rejected(tmp_path):
    s = Store(tmp_path)
    s.put("runs", "k1", {"status": "done"})
    os.replace(s.path("runs", "k1"), s.path("runs", "k2"))
    assert s.get("runs", "k2") is None


def test_blob_checksum(tmp_path):
    s = Store(tmp_path)
    sha = s.save_state("teachers", "t", {"w": torch.arange(4.0)})
    assert torch.equal(s.load_state("teachers", "t", sha)["w"], torch.arange(4.0))
    p = s.path("teachers", "t", ".pt")
    p.write_bytes(p.read_bytes()[:-3] + b"xyz")
    assert s.load_state("teachers", "t", sha) is None
    sha = s.save_arrays("scores", "s", {"el2n": np.arange(3.0)})
    assert np.array_equal(s.load_arrays("scores", "s", sha)["el2n"], np.arange(3.0))


def test_records_lists_readable_only(tmp_path):
    s = Store(tmp_path)
    s.put("runs", "a", {"status": "done"})
    s.put("runs", "b", {"status": "failed", "error": "x"})
    (tmp_path / "runs" / "c.json").write_text("{not json")
    assert sorted(r["key"] for r in s.records("runs")) == ["a", "b"]
    json.loads(s.path("runs", "a").read_text())
