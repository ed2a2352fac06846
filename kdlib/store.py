"""The run store: content-addressed JSON records, teacher checkpoints and score arrays under one folder.

A config (any dataclass or dict) hashes to a key; its record lives at ``<root>/<kind>/<key>.json``. Every write
goes to a temporary file in the same folder and is renamed into place, so a reader never sees half a file. A
record proves itself: it carries the identity its key hashes (``ident``: the config in canonical form) and the
SHA-256 of its own content (``checksum``), and a binary artefact (checkpoint, scores) is valid only when a record
names its SHA-256. A record without a valid checksum, whose identity does not hash to its key, or written by an
older store format, and an artefact that does not match, is moved aside to ``*.corrupt`` (with a ``.why``) and
recomputed, never silently read. Kinds in ``NAMED_KINDS`` are keyed by a name (a dataset), not by a hash.
Files are created with the permissions the umask allows (a store can be shared by a group).
"""
from __future__ import annotations

import dataclasses
import errno
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import stat
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np

FORMAT_VERSION = 2  # 2: every record has a checksum and (outside NAMED_KINDS) the identity its key hashes
NAMED_KINDS = frozenset({"alpha_rules"})  # record kinds keyed by a name, not by the hash of a config
KEY_PATTERN = re.compile(r"[0-9a-f]{16}")  # a key: the first 16 hex digits of a config's SHA-256 (config_key)
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")  # a key of a NAMED_KINDS record (a dataset name)
CHECKPOINT_GENERATIONS = 2  # a damaged newest checkpoint falls back to the one before
ORPHAN_TMP_AGE_S = 86400.0  # a writer's temporary file (``.*.tmp``) this old is an orphan, removed on open
_CLEANED: set[str] = set()  # stores whose orphans this process has removed (once per process)


OMIT_IF_NONE = "omit_if_none"  # dataclass field metadata: left out of the canonical form while None


def canonical(obj: Any) -> Any:
    """A JSON-ready, order-stable form of dataclasses, tuples, numpy scalars and dicts. A dataclass field marked
    ``metadata={OMIT_IF_NONE: True}`` is left out while None, so a field added later keeps earlier keys."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: canonical(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not (f.metadata.get(OMIT_IF_NONE) and getattr(obj, f.name) is None)}
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


def identity(config: Any) -> Any:
    """What a record's key hashes: ``config.identity()`` when the config defines one (a run config leaves out its
    provenance fields), else the config itself; in canonical form."""
    ident = config.identity() if callable(getattr(config, "identity", None)) else config
    return canonical(ident)


def check_key(kind: str, key: Any) -> str:
    """``key`` when it is a valid key of ``kind`` (``KEY_PATTERN``, or ``NAME_PATTERN`` for ``NAMED_KINDS``), else
    a ValueError naming the pattern (a key is a file name in the store: no path, NUL or over-long name)."""
    pattern = NAME_PATTERN if kind in NAMED_KINDS else KEY_PATTERN
    if not isinstance(key, str) or not pattern.fullmatch(key):
        shown = repr(key) if len(str(key)) <= 64 else f"{str(key)[:32]!r}... ({len(str(key))} characters)"
        raise ValueError(f"key {shown} of a {kind!r} record does not match {pattern.pattern}")
    return key


def _umask() -> int:
    """The process's umask (read from /proc where possible: setting it to read it races with other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a shared store needs what open() would give
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


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's content, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _record_checksum(record: dict) -> str:
    """SHA-256 of a record's canonical JSON (without its ``checksum``): catches a record corrupted in place."""
    return _sha256(json.dumps(canonical(record), sort_keys=True, separators=(",", ":")).encode())


def _identity(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _not_regular(path: Path, what: str) -> None:
    warnings.warn(f"{path} is {what}, not a regular file: skipped (a store's records and artefacts are regular "
                  f"files; remove it)", stacklevel=4)


def _read(path: Path) -> Optional[tuple[bytes, tuple]]:
    """The file's bytes and identity (device, inode, size, mtime) of what was read, or None when absent, or, with
    a warning, when it is not a regular file (a directory, a FIFO, a symbolic link: opened without following
    links and without blocking, so a FIFO or a link loop never hangs or aborts a reader)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno != errno.ELOOP:
            raise
        _not_regular(path, "a symbolic link")
        return None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        _not_regular(path, "a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO, socket or device")
        return None
    with os.fdopen(fd, "rb") as fh:
        return fh.read(), _identity(st)


class CorruptArtifact(RuntimeError):
    """A record or artefact on disk failed to parse or to match its checksum."""


class Store:
    """Records (``kind`` = 'runs', 'teachers', 'scores', ...) keyed by config hash under ``root``."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"store {str(self.root)!r} is a file, not a folder: give the path of a folder "
                             f"(created when missing)")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as err:
            raise ValueError(f"store {str(self.root)!r} cannot be a folder: {err.strerror} ({err.filename}); give "
                             f"the path of a folder (created when missing)") from None
        if str(self.root.resolve()) not in _CLEANED:  # once per process and store: opening a store stays cheap
            _CLEANED.add(str(self.root.resolve()))
            self.clean_orphans()

    def clean_orphans(self, max_age_s: float = ORPHAN_TMP_AGE_S) -> int:
        """Removes the temporary files (``.*.tmp``) and import staging folders (``.import.*.tmp``) older than
        ``max_age_s`` that a killed writer left behind, anywhere in the store; nothing when the store cannot be
        written (a read-only store is never written). Returns how many were removed."""
        if not os.access(self.root, os.W_OK):
            return 0
        cutoff, removed = time.time() - max_age_s, 0
        for folder, dirs, files in os.walk(self.root):
            orphans = [d for d in dirs if d.startswith(".import.") and d.endswith(".tmp")]
            # where writers write: the store, its kinds and checkpoints/<kind>; never hidden folders or slurm logs
            deep = Path(folder) not in (self.root, self.root / "checkpoints")
            dirs[:] = [] if deep else [d for d in dirs if not d.startswith(".") and d != "slurm"]
            for name in orphans + [f for f in files if f.startswith(".") and f.endswith(".tmp")]:
                path = os.path.join(folder, name)
                try:
                    st = os.lstat(path)
                    if st.st_mtime >= cutoff:
                        continue
                    shutil.rmtree(path) if stat.S_ISDIR(st.st_mode) else os.unlink(path)
                    removed += 1
                except OSError:
                    pass
        return removed

    def check_writable(self) -> None:
        """Raises a ValueError naming the store when a file cannot be created in it (before a grid trains)."""
        try:
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".write-test.", suffix=".tmp")
            os.close(fd)
            os.unlink(tmp)
        except OSError as err:
            raise ValueError(f"store {str(self.root)!r} is not writable ({err.strerror}): a grid writes a record "
                             f"per run; give a folder you can write to") from None

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
        except OSError as err:  # a read-only store (EROFS, EACCES): reading it never writes; the file is skipped
            warnings.warn(f"{path}: {why}; skipped, left in place (the store cannot be written: {err.strerror})",
                          stacklevel=3)
            return True
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
                self._verify(kind, key, record)
            except (ValueError, UnicodeDecodeError) as err:
                if self._quarantine(path, f"unreadable record: {err}", ident):
                    return None
                continue
            return record
        return None

    @staticmethod
    def _verify(kind: str, key: str, record: Any) -> None:
        """Raises a ValueError saying why ``record`` (parsed JSON) cannot be trusted as the record of ``key``;
        removes its ``checksum`` field when it can."""
        if not isinstance(record, dict) or record.get("key") != key or "status" not in record:
            raise ValueError("record lacks its key or status")
        fmt = record.get("format")
        if fmt != FORMAT_VERSION:
            raise ValueError(f"record written by store format {fmt!r}, not {FORMAT_VERSION} (kdlib before records "
                             f"carried the identity their key hashes); it is recomputed")
        checksum = record.pop("checksum", None)
        if checksum is None:
            raise ValueError("record has no checksum")
        if checksum != _record_checksum(record):
            raise ValueError("record checksum mismatch")
        if kind not in NAMED_KINDS:
            if "ident" not in record:
                raise ValueError("record lacks the identity its key hashes")
            if config_key(record["ident"]) != key:
                raise ValueError(f"record identity hashes to {config_key(record['ident'])}, not to its key")

    def put(self, kind: str, key: str, record: dict, ident: Any = None) -> dict:
        """Writes ``record`` (adding key, identity, format version and time) atomically and returns it.

        Outside ``NAMED_KINDS`` the key must be the hash of the record's identity: ``ident`` when given, else
        ``identity(record["config"])``; a ValueError otherwise (a record must prove it belongs to its key)."""
        record = {**record, "key": key, "format": FORMAT_VERSION, "written": time.time()}
        if kind not in NAMED_KINDS:
            if ident is None and "config" not in record:
                raise ValueError(f"a {kind!r} record needs its config (or ident=...): its key must be that hash")
            record["ident"] = identity(ident if ident is not None else record["config"])
            if config_key(record["ident"]) != key:
                raise ValueError(f"{kind} record key {key!r} is not the hash of its identity "
                                 f"({config_key(record['ident'])})")
        data = canonical(record)
        data["checksum"] = _record_checksum(data)
        _atomic_write(self.path(kind, key), json.dumps(data, indent=1).encode())
        return record

    def upgrade(self, identify: Callable[[str, str, dict], Any]) -> dict[str, int]:
        """Rewrites the records of older store formats that can be proven in the current one and leaves the rest
        (they are moved aside when read). A record is upgraded when its own checksum is present and valid and
        ``identify(kind, key, record)`` returns the identity that hashes to its key (None: not provable).
        Returns counts: ``upgraded``, ``unprovable`` (left as they are) and ``current`` (already current)."""
        counts = {"upgraded": 0, "unprovable": 0, "current": 0}
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            kind = folder.name
            for path in sorted(folder.glob("*.json")):
                key = path.stem
                with self.lock(kind, key):
                    read = _read(path)
                    try:
                        record = json.loads(read[0]) if read is not None else None
                    except (ValueError, UnicodeDecodeError):
                        record = None
                    if not isinstance(record, dict) or record.get("key") != key:
                        counts["unprovable"] += 1
                        continue
                    if record.get("format") == FORMAT_VERSION:
                        counts["current"] += 1
                        continue
                    checksum = record.pop("checksum", None)
                    ident = None
                    if checksum is not None and checksum == _record_checksum(record):
                        ident = record.get("key") if kind in NAMED_KINDS else identify(kind, key, record)
                    if ident is None or (kind not in NAMED_KINDS and config_key(ident) != key):
                        counts["unprovable"] += 1
                        continue
                    record["format"] = FORMAT_VERSION
                    if kind not in NAMED_KINDS:
                        record["ident"] = canonical(ident)
                    data = canonical(record)
                    data["checksum"] = _record_checksum(data)
                    _atomic_write(path, json.dumps(data, indent=1).encode())
                    counts["upgraded"] += 1
        return counts

    def done(self, kind: str, key: str) -> Optional[dict]:
        """The record when it finished successfully, else None."""
        rec = self.get(kind, key)
        return rec if rec is not None and rec.get("status") == "done" else None

    def records(self, kind: str = "runs") -> list[dict]:
        """All readable records of ``kind``."""
        folder = self.root / kind
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return []
        out = []
        for e in entries:
            if not e.name.endswith(".json") or e.name.startswith("."):
                continue
            if not e.is_file(follow_symlinks=False):  # a directory, FIFO or link loop never hangs or aborts
                what = ("a symbolic link" if e.is_symlink() else "a directory" if e.is_dir(follow_symlinks=False)
                        else "a FIFO, socket or device")
                _not_regular(Path(e.path), what)
                continue
            rec = self.get(kind, e.name[:-len(".json")])
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
        read = self._verified_blob(kind, key, suffix, sha256)
        return None if read is None else read[0]

    def _verified_blob(self, kind: str, key: str, suffix: str, sha256: str) -> Optional[tuple[bytes, tuple]]:
        path = self.path(kind, key, suffix)
        read = _read(path)
        if read is None:
            return None
        data, ident = read
        if _sha256(data) != sha256:
            self._quarantine(path, "checksum mismatch", ident)
            return None
        return read

    def _load_blob(self, kind: str, key: str, suffix: str, sha256: str, load: Callable[[bytes], Any]) -> Any:
        """``load(artefact)`` when the artefact verifies and loads; an artefact whose SHA-256 verifies but that
        does not load (a pickle with code, a foreign format, a state of another architecture) is quarantined like
        a damaged one (``unloadable artefact: ...``), and None returned so that it is recomputed."""
        read = self._verified_blob(kind, key, suffix, sha256)
        if read is None:
            return None
        data, ident = read
        try:
            return load(data)
        except Exception as err:  # noqa: BLE001 - never executed (weights_only, allow_pickle=False): set aside
            text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(err)).split())  # torch's run to many styled lines
            short = text if len(text) <= 300 else text[:297] + "..."
            self._quarantine(self.path(kind, key, suffix), f"unloadable artefact: {type(err).__name__}: {short}",
                             ident)
            return None

    def save_state(self, kind: str, key: str, state: dict) -> str:
        import torch  # here, not at module level: reading records (the browser, claims) needs no torch

        buf = io.BytesIO()
        torch.save(state, buf)
        return self.put_blob(kind, key, buf.getvalue(), ".pt")

    def load_state(self, kind: str, key: str, sha256: str, into: Any = None) -> Optional[dict]:
        """The state dict saved under ``key`` (``weights_only=True``); with ``into`` (a module) it is also loaded
        into it. None when absent, damaged or unloadable (not a dict, a pickle with code, or, with ``into``, a state
        of another architecture): such a file is quarantined and the artefact recomputed."""
        import torch

        def load(data: bytes) -> dict:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            if not isinstance(state, dict):
                raise ValueError(f"a state is a dict, got {type(state).__name__}")
            if into is not None:
                into.load_state_dict(state)
            return state

        return self._load_blob(kind, key, ".pt", sha256, load)

    def save_arrays(self, kind: str, key: str, arrays: dict[str, np.ndarray]) -> str:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return self.put_blob(kind, key, buf.getvalue(), ".npz")

    def load_arrays(self, kind: str, key: str, sha256: str) -> Optional[dict[str, np.ndarray]]:
        """The arrays saved under ``key``; None when absent, damaged or unloadable (quarantined, recomputed)."""
        def load(data: bytes) -> dict[str, np.ndarray]:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                return {k: z[k] for k in z.files}

        return self._load_blob(kind, key, ".npz", sha256, load)

    # --- cross-process lock ------------------------------------------------------------------------------------
    @contextmanager
    def lock(self, kind: str, key: str) -> Iterator[None]:
        """An exclusive lock (``flock``) so two processes never compute the same artefact at once."""
        path = self.path(kind, key, ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # never follow a link: a lock file planted as a symlink would create or touch a file outside the store
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except OSError:
            if path.is_symlink():
                raise RuntimeError(f"lock file {path} is a symbolic link (to {os.readlink(path)}); a store's lock "
                                   f"files must be plain files: delete the link") from None
            raise
        with os.fdopen(fd, "a") as fh:
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
        import torch

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
        import torch

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

    def checkpoint(self, kind: str, key: str, config: Any = None, min_interval: float = 0.0) -> "StoreCheckpoint":
        """The checkpoint slot of ``key`` under ``checkpoints/<kind>`` (what ``kdlib.train.run_loop`` saves to);
        it saves at most once per ``min_interval`` seconds (0: at every call)."""
        return StoreCheckpoint(self, f"checkpoints/{kind}", key, config, min_interval)


@dataclasses.dataclass
class StoreCheckpoint:
    """A training loop's checkpoint in the store: atomic, checksummed, two generations, ``weights_only`` loads."""

    store: Store
    kind: str
    key: str
    config: Any = None
    min_interval: float = 0.0
    last_save: float = dataclasses.field(default_factory=time.monotonic)

    def load(self, map_location: Any = "cpu") -> Optional[dict]:
        return self.store.load_checkpoint(self.kind, self.key, map_location)

    def save(self, state: dict, epoch: int) -> None:
        """Saves, unless the last save (or the slot's creation) is less than ``min_interval`` seconds ago."""
        if time.monotonic() - self.last_save < self.min_interval:
            return
        self.store.save_checkpoint(self.kind, self.key, state, epoch, self.config)
        self.last_save = time.monotonic()

    def clear(self) -> None:
        self.store.drop_checkpoint(self.kind, self.key)
