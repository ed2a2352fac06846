"""The run store: content-addressed JSON records, teacher checkpoints and score arrays under one folder.

A config (any dataclass or dict) hashes to a key; its record lives at ``<root>/<kind>/<key>.json``. Every write
goes to a temporary file in the same folder and is renamed into place, so a reader never sees half a file. A
record carries the SHA-256 of its own content (``checksum``) and a binary artefact (checkpoint, scores) is valid
only when a record names its SHA-256; anything that does not parse or does not match is moved aside to
``*.corrupt`` and recomputed, never silently read.
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import io
import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch

FORMAT_VERSION = 1
CHECKPOINT_GENERATIONS = 2  # a damaged newest checkpoint falls back to the one before


def canonical(obj: Any) -> Any:
    """A JSON-ready, order-stable form of dataclasses, tuples, numpy scalars and dicts."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: canonical(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): canonical(v) for k, v in sorted(obj.items())}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and obj.is_integer():
        return obj  # keep 1.0 distinct from 1 only by JSON's own rules
    return obj


def config_key(obj: Any) -> str:
    """First 16 hex digits of the SHA-256 of the canonical JSON of ``obj``."""
    text = json.dumps(canonical(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _record_checksum(record: dict) -> str:
    """SHA-256 of a record's canonical JSON (without its ``checksum``): catches a record corrupted in place."""
    return _sha256(json.dumps(canonical(record), sort_keys=True, separators=(",", ":")).encode())


def _identity(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _read(path: Path) -> Optional[tuple[bytes, tuple]]:
    """The file's bytes and identity (device, inode, size, mtime) of what was read, or None when absent."""
    try:
        with open(path, "rb") as fh:
            return fh.read(), _identity(os.fstat(fh.fileno()))
    except FileNotFoundError:
        return None


class CorruptArtifact(RuntimeError):
    """A record or artefact on disk failed to parse or to match its checksum."""


class Store:
    """Records (``kind`` = 'runs', 'teachers', 'scores', ...) keyed by config hash under ``root``."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, kind: str, key: str, suffix: str = ".json") -> Path:
        return self.root / kind / f"{key}{suffix}"

    def _quarantine(self, path: Path, why: str, ident: Optional[tuple] = None) -> bool:
        """Moves ``path`` aside to ``*.corrupt`` (with a ``.why``). With ``ident`` (the identity of the file that
        was read) a file that a writer has atomically replaced meanwhile is left in place (or put back) and False
        is returned, so a reader holding a stale corrupt copy never quarantines another process's good record."""
        bad = path.with_name(path.name + f".{int(time.time() * 1000)}.{os.getpid()}.corrupt")
        try:
            path.replace(bad)
        except FileNotFoundError:
            return ident is None
        if ident is not None and _identity(os.stat(bad)) != ident:
            try:  # it was a newer file: put it back unless an even newer one is already there
                os.link(bad, path)
            except FileExistsError:
                pass
            bad.unlink(missing_ok=True)
            return False
        (bad.parent / (bad.name + ".why")).write_text(why)
        return True

    # --- JSON records ---------------------------------------------------------------------------------------
    def get(self, kind: str, key: str) -> Optional[dict]:
        """The record, or None when absent or corrupt (a corrupt one is moved aside and reported in ``.why``)."""
        path = self.path(kind, key)
        for _ in range(3):  # re-read when a writer replaced the corrupt file while it was being judged
            read = _read(path)
            if read is None:
                return None
            raw, ident = read
            try:
                record = json.loads(raw)
                if not isinstance(record, dict) or record.get("key") != key or "status" not in record:
                    raise ValueError("record lacks its key or status")
                checksum = record.pop("checksum", None)
                if checksum is not None and checksum != _record_checksum(record):
                    raise ValueError("record checksum mismatch")
            except (ValueError, UnicodeDecodeError) as err:
                if self._quarantine(path, f"unreadable record: {err}", ident):
                    return None
                continue
            return record
        return None

    def put(self, kind: str, key: str, record: dict) -> dict:
        """Writes ``record`` (adding key, format version and time) atomically and returns it."""
        record = {**record, "key": key, "format": FORMAT_VERSION, "written": time.time()}
        data = canonical(record)
        data["checksum"] = _record_checksum(data)
        _atomic_write(self.path(kind, key), json.dumps(data, indent=1).encode())
        return record

    def done(self, kind: str, key: str) -> Optional[dict]:
        """The record when it finished successfully, else None."""
        rec = self.get(kind, key)
        return rec if rec is not None and rec.get("status") == "done" else None

    def records(self, kind: str = "runs") -> list[dict]:
        """All readable records of ``kind``."""
        folder = self.root / kind
        out = []
        for path in sorted(folder.glob("*.json")) if folder.exists() else []:
            rec = self.get(kind, path.stem)
            if rec is not None:
                out.append(rec)
        return out

    # --- binary artefacts with checksums ----------------------------------------------------------------------
    def put_blob(self, kind: str, key: str, data: bytes, suffix: str) -> str:
        """Writes a binary artefact atomically and returns its SHA-256 (to be stored in its record)."""
        _atomic_write(self.path(kind, key, suffix), data)
        return _sha256(data)

    def get_blob(self, kind: str, key: str, suffix: str, sha256: str) -> Optional[bytes]:
        """The artefact when its SHA-256 matches, else None (a mismatching file is moved aside)."""
        path = self.path(kind, key, suffix)
        read = _read(path)
        if read is None:
            return None
        data, ident = read
        if _sha256(data) != sha256:
            self._quarantine(path, "checksum mismatch", ident)
            return None
        return data

    def save_state(self, kind: str, key: str, state: dict) -> str:
        buf = io.BytesIO()
        torch.save(state, buf)
        return self.put_blob(kind, key, buf.getvalue(), ".pt")

    def load_state(self, kind: str, key: str, sha256: str) -> Optional[dict]:
        data = self.get_blob(kind, key, ".pt", sha256)
        return None if data is None else torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)

    def save_arrays(self, kind: str, key: str, arrays: dict[str, np.ndarray]) -> str:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return self.put_blob(kind, key, buf.getvalue(), ".npz")

    def load_arrays(self, kind: str, key: str, sha256: str) -> Optional[dict[str, np.ndarray]]:
        data = self.get_blob(kind, key, ".npz", sha256)
        if data is None:
            return None
        with np.load(io.BytesIO(data)) as z:
            return {k: z[k] for k in z.files}

    # --- cross-process lock ------------------------------------------------------------------------------------
    @contextmanager
    def lock(self, kind: str, key: str) -> Iterator[None]:
        """An exclusive lock (``flock``) so two processes never compute the same artefact at once."""
        path = self.path(kind, key, ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # --- in-run checkpoints ------------------------------------------------------------------------------------
    # ``<kind>/<key>.json`` names the last CHECKPOINT_GENERATIONS states (epoch, SHA-256) of an unfinished
    # computation, each in ``<kind>/<key>.e<epoch>.pt``; every state is saved with tensors and plain values only
    # and loaded with ``weights_only=True`` after its checksum is verified.
    def save_checkpoint(self, kind: str, key: str, state: dict, epoch: int, config: Any = None) -> None:
        """Adds ``state`` (saved after ``epoch`` epochs) as the newest generation of ``key``'s checkpoint."""
        buf = io.BytesIO()
        torch.save(state, buf)
        sha = self.put_blob(kind, key, buf.getvalue(), f".e{int(epoch)}.pt")
        rec = self.get(kind, key)
        gens = [g for g in (rec or {}).get("generations", []) if int(g["epoch"]) != int(epoch)]
        gens = (gens + [{"epoch": int(epoch), "sha256": sha}])[-CHECKPOINT_GENERATIONS:]
        self.put(kind, key, {"status": "partial", "config": config, "generations": gens})
        kept = {f"{key}.e{g['epoch']}.pt" for g in gens}
        for old in self.path(kind, key, ".e*.pt").parent.glob(f"{key}.e*.pt"):
            if old.name not in kept:
                old.unlink(missing_ok=True)

    def load_checkpoint(self, kind: str, key: str, map_location: Any = "cpu") -> Optional[dict]:
        """The newest generation of ``key``'s checkpoint that verifies and loads (``weights_only=True``); a damaged
        one is quarantined and the previous one tried. None when there is none (the computation starts over)."""
        rec = self.get(kind, key)
        for gen in reversed((rec or {}).get("generations", [])):
            suffix = f".e{int(gen['epoch'])}.pt"
            data = self.get_blob(kind, key, suffix, str(gen["sha256"]))
            if data is None:
                continue
            try:
                state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
                if not isinstance(state, dict):
                    raise ValueError(f"a checkpoint is a dict, got {type(state).__name__}")
            except Exception as err:  # an unpicklable or foreign payload: never executed, set aside
                self._quarantine(self.path(kind, key, suffix), f"unloadable checkpoint: {err}")
                continue
            return state
        return None

    def drop_checkpoint(self, kind: str, key: str) -> None:
        """Removes ``key``'s checkpoint (record first, then every generation's file)."""
        self.path(kind, key).unlink(missing_ok=True)
        for old in self.path(kind, key).parent.glob(f"{key}.e*.pt"):
            old.unlink(missing_ok=True)

    def checkpoint(self, kind: str, key: str, config: Any = None) -> "StoreCheckpoint":
        """The checkpoint slot of ``key`` under ``checkpoints/<kind>`` (what ``kdlib.train.run_loop`` saves to)."""
        return StoreCheckpoint(self, f"checkpoints/{kind}", key, config)


@dataclasses.dataclass
class StoreCheckpoint:
    """A training loop's checkpoint in the store: atomic, checksummed, two generations, ``weights_only`` loads."""

    store: Store
    kind: str
    key: str
    config: Any = None

    def load(self, map_location: Any = "cpu") -> Optional[dict]:
        return self.store.load_checkpoint(self.kind, self.key, map_location)

    def save(self, state: dict, epoch: int) -> None:
        self.store.save_checkpoint(self.kind, self.key, state, epoch, self.config)

    def clear(self) -> None:
        self.store.drop_checkpoint(self.kind, self.key)
