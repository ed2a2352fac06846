"""A store's records in one compressed file: what a study publishes (small, in the repository) and what a later
session imports to carry on where the last one stopped.

``python -m kdlib.archive export STORE FILE [--kinds runs alpha_rules]`` writes every readable record of those
kinds as one JSON line each (gzip); ``python -m kdlib.archive import FILE STORE`` writes each record into the store
unless the store already holds a finished record under that key. A record keeps its checksum and the identity its
key hashes, and is verified again on import: a damaged or foreign line is refused, never mixed in; kinds come from
``ARCHIVE_KINDS``, keys must match the store's key pattern, lines and artefacts have size limits (``--max-line-mb``,
``--max-blob-mb``), and an archive that cannot be read to its end adds nothing. Teachers and
scores (``--kinds teachers scores``) travel with their binary artefact (weights, score arrays), base64 in the line
and checked against the SHA-256 their record holds, so a later session distils from the same teachers instead of
training them again; training checkpoints are never archived.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import gzip
import json
import os
import shutil
import tempfile
import warnings
import zlib
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from .store import Store, _atomic_write, _record_checksum, _sha256, canonical, check_key

DEFAULT_KINDS = ("runs", "alpha_rules")
BLOB_SUFFIX = {"teachers": ".pt", "scores": ".npz"}  # kinds whose record names a binary artefact by its SHA-256


ARCHIVE_KINDS = ("runs", "alpha_rules", "teachers", "scores")  # the record kinds an archive may hold
MAX_LINE_BYTES = 256 * 2**20  # default limit of one archive line (a teacher's weights travel base64 in it)
MAX_BLOB_BYTES = 192 * 2**20  # default limit of one decoded artefact


def _check_limit(value: Any, parameter: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{parameter} must be an integer >= 1 (bytes), got {value!r}")
    return value


def _check_kinds(kinds: Sequence[str]) -> None:
    unknown = [k for k in kinds if k not in ARCHIVE_KINDS]
    if unknown:
        raise ValueError(f"unknown kinds {unknown}; allowed values for 'kinds': {', '.join(ARCHIVE_KINDS)}")


def export_records(store: Store | str | os.PathLike, path: str | os.PathLike,
                   kinds: Sequence[str] = DEFAULT_KINDS, max_blob_bytes: Optional[int] = None) -> int:
    """Writes every readable record of ``kinds`` in ``store`` to the gzip JSON-lines file ``path`` (sorted by kind
    and key, so the same records give the same file); returns how many. ``max_blob_bytes`` leaves out teachers and
    scores whose artefact is larger (an archive that must fit a size limit: wide teachers are retrained instead)."""
    if max_blob_bytes is not None and (isinstance(max_blob_bytes, bool) or not isinstance(max_blob_bytes, int)
                                       or max_blob_bytes < 0):
        raise ValueError(f"max_blob_bytes must be None or an integer >= 0, got {max_blob_bytes!r}")
    _check_kinds(kinds)
    store = store if isinstance(store, Store) else Store(store)
    lines = []
    for kind in kinds:
        for rec in store.records(kind):
            data = canonical(rec)
            data["checksum"] = _record_checksum(data)
            item = {"kind": kind, "record": data}
            if kind in BLOB_SUFFIX:
                if not rec.get("sha256"):
                    continue  # a record without its artefact (not the main process's) is of no use elsewhere
                blob_path = store.path(kind, rec["key"], BLOB_SUFFIX[kind])
                if max_blob_bytes is not None and blob_path.exists() and blob_path.stat().st_size > max_blob_bytes:
                    continue  # too large for this archive (not read): the importing store recomputes it
                blob = store.get_blob(kind, rec["key"], BLOB_SUFFIX[kind], rec["sha256"])
                if blob is None:
                    continue  # its artefact is missing or damaged here: the importing store recomputes it
                item["blob"] = base64.b64encode(blob).decode()
            lines.append(json.dumps(item, sort_keys=True, separators=(",", ":")))
    payload = ("\n".join(lines) + "\n").encode() if lines else b""
    _atomic_write(Path(path), gzip.compress(payload, mtime=0))
    return len(lines)


def _archive_lines(path: str | os.PathLike, max_line_bytes: int) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of the gzip file, each read with a bounded ``readline`` (a line longer than the limit
    is a ValueError, never read whole); a truncated or damaged gzip file is a ValueError naming it."""
    try:
        with gzip.open(path, "rb") as fh:
            number = 0
            while True:
                line = fh.readline(max_line_bytes + 1)
                if not line:
                    return
                number += 1
                if len(line) > max_line_bytes:
                    raise ValueError(f"archive {path}: line {number} is longer than max_line_bytes="
                                     f"{max_line_bytes} (--max-line-mb); raise the limit if the archive is trusted")
                yield number, line
    except (EOFError, OSError, zlib.error) as err:
        raise ValueError(f"archive {path} is truncated or not a gzip file ({type(err).__name__}: {err})") from None


def _parse(line: bytes, max_blob_bytes: int) -> tuple[str, str, dict, Optional[bytes]]:
    """(kind, key, record, artefact) of one archive line, verified; a ValueError saying why it is refused."""
    try:
        item = json.loads(line)
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"not JSON ({err})") from None
    if not isinstance(item, dict) or not isinstance(item.get("record"), dict):
        raise ValueError("not a {kind, record} object")
    kind, record = item.get("kind"), item["record"]
    if kind not in ARCHIVE_KINDS:
        raise ValueError(f"kind {str(kind)[:80]!r} is not one of {', '.join(ARCHIVE_KINDS)}")
    key = check_key(kind, record.get("key"))
    Store._verify(kind, key, dict(record))
    blob = None
    if kind in BLOB_SUFFIX:
        text = item.get("blob")
        if not isinstance(text, str):
            raise ValueError("its artefact is missing")
        if len(text) // 4 * 3 > max_blob_bytes:
            raise ValueError(f"its artefact is larger than max_blob_bytes={max_blob_bytes} (--max-blob-mb)")
        try:
            blob = base64.b64decode(text, validate=True)
        except (ValueError, binascii.Error) as err:
            raise ValueError(f"its artefact is not base64 ({err})") from None
        if _sha256(blob) != record.get("sha256"):
            raise ValueError("artefact does not match its record's SHA-256")
    return kind, key, record, blob


def import_records(path: str | os.PathLike, store: Store | str | os.PathLike, *,
                   max_line_bytes: int = MAX_LINE_BYTES, max_blob_bytes: int = MAX_BLOB_BYTES) -> dict[str, int]:
    """Adds the archived records at ``path`` to ``store``; returns counts ``added``, ``present`` (the store already
    had that key) and ``refused`` (a line that fails its checksum or identity check, or whose kind, key or
    artefact is not allowed; each is warned about with its line number and why). Never overwrites a finished
    record; a ``done`` record replaces one that is not (a failed run, counted as added).

    All or nothing: every line is read, verified and staged in the store's folder first (``.import.*.tmp``),
    then moved into place, so an archive that cannot be read to its end (truncated or damaged gzip, a line longer
    than ``max_line_bytes``) is a ValueError naming it and adds nothing. Kinds come from ``ARCHIVE_KINDS``, keys
    must match the store's key pattern, and an artefact over ``max_blob_bytes`` is refused."""
    _check_limit(max_line_bytes, "max_line_bytes")
    _check_limit(max_blob_bytes, "max_blob_bytes")
    store = store if isinstance(store, Store) else Store(store)
    counts = {"added": 0, "present": 0, "refused": 0}
    stage = Path(tempfile.mkdtemp(dir=store.root, prefix=".import.", suffix=".tmp"))
    try:
        staged: dict[tuple[str, str], int] = {}
        for number, line in _archive_lines(path, max_line_bytes):
            if not line.strip():
                continue
            try:
                kind, key, record, blob = _parse(line, max_blob_bytes)
            except (ValueError, KeyError, TypeError) as err:
                counts["refused"] += 1
                warnings.warn(f"archive {path}: line {number} refused: {err}", stacklevel=2)
                continue
            if blob is not None:
                _atomic_write(stage / kind / f"{key}{BLOB_SUFFIX[kind]}", blob)
            _atomic_write(stage / kind / f"{key}.json", json.dumps(record, indent=1).encode())
            staged[(kind, key)] = number
        for (kind, key) in staged:
            with store.lock(kind, key):
                old = store.get(kind, key)
                new = json.loads((stage / kind / f"{key}.json").read_bytes())
                if old is not None and (old.get("status") == "done" or new.get("status") != "done"):
                    counts["present"] += 1
                    continue
                store.path(kind, key).parent.mkdir(parents=True, exist_ok=True)
                if kind in BLOB_SUFFIX:  # the artefact first: a record is never there without it
                    os.replace(stage / kind / f"{key}{BLOB_SUFFIX[kind]}", store.path(kind, key, BLOB_SUFFIX[kind]))
                os.replace(stage / kind / f"{key}.json", store.path(kind, key))
                counts["added"] += 1
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return counts


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="store -> archive file")
    ex.add_argument("store")
    ex.add_argument("file")
    ex.add_argument("--kinds", nargs="+", default=list(DEFAULT_KINDS))
    ex.add_argument("--max-blob-mb", type=float, help="leave out teachers and scores whose artefact is larger")
    im = sub.add_parser("import", help="archive file -> store (records already there are kept)")
    im.add_argument("file")
    im.add_argument("store")
    im.add_argument("--max-line-mb", type=float, default=MAX_LINE_BYTES / 2**20,
                    help="refuse the archive when a line is longer (default %(default)s)")
    im.add_argument("--max-blob-mb", type=float, default=MAX_BLOB_BYTES / 2**20,
                    help="refuse a teacher or scores line whose artefact is larger (default %(default)s)")
    args = parser.parse_args(argv)
    if args.command == "export":
        if args.max_blob_mb is not None and not args.max_blob_mb >= 0:
            parser.error(f"--max-blob-mb must be a number of MiB >= 0, got {args.max_blob_mb}")
        limit = None if args.max_blob_mb is None else int(args.max_blob_mb * 2**20)
        n = export_records(args.store, args.file, args.kinds, max_blob_bytes=limit)
        print(f"{args.file}: {n} record(s) of {', '.join(args.kinds)} from {args.store}")
    else:
        for option in ("max_line_mb", "max_blob_mb"):
            if not getattr(args, option) > 0:
                parser.error(f"--{option.replace('_', '-')} must be a number of MiB > 0, got {getattr(args, option)}")
        try:
            c = import_records(args.file, args.store, max_line_bytes=max(1, int(args.max_line_mb * 2**20)),
                               max_blob_bytes=max(1, int(args.max_blob_mb * 2**20)))
        except ValueError as err:
            parser.exit(1, f"{parser.prog}: error: {err}; nothing was imported\n")
        print(f"{args.store}: {c['added']} record(s) added, {c['present']} already there, {c['refused']} refused "
              f"(each warned above with its line and why)")


if __name__ == "__main__":
    main()
