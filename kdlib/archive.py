"""A store's records in one compressed file: what a study publishes (small, in the repository) and what a later
session imports to carry on where the last one stopped.

``python -m kdlib.archive export STORE FILE [--kinds runs alpha_rules]`` writes every readable record of those
kinds as one JSON line each (gzip); ``python -m kdlib.archive import FILE STORE`` writes each record into the store
unless the store already holds a record under that key. A record keeps its checksum and the identity its key
hashes, and is verified again on import: a damaged or foreign line is refused, never mixed in. Teachers and
scores (``--kinds teachers scores``) travel with their binary artefact (weights, score arrays), base64 in the line
and checked against the SHA-256 their record holds, so a later session distils from the same teachers instead of
training them again; training checkpoints are never archived.
"""
from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
from pathlib import Path
from typing import Optional, Sequence

from .store import Store, _atomic_write, _record_checksum, _sha256, canonical

DEFAULT_KINDS = ("runs", "alpha_rules")
BLOB_SUFFIX = {"teachers": ".pt", "scores": ".npz"}  # kinds whose record names a binary artefact by its SHA-256


def export_records(store: Store | str | os.PathLike, path: str | os.PathLike,
                   kinds: Sequence[str] = DEFAULT_KINDS, max_blob_bytes: Optional[int] = None) -> int:
    """Writes every readable record of ``kinds`` in ``store`` to the gzip JSON-lines file ``path`` (sorted by kind
    and key, so the same records give the same file); returns how many. ``max_blob_bytes`` leaves out teachers and
    scores whose artefact is larger (an archive that must fit a size limit: wide teachers are retrained instead)."""
    if max_blob_bytes is not None and (isinstance(max_blob_bytes, bool) or not isinstance(max_blob_bytes, int)
                                       or max_blob_bytes < 0):
        raise ValueError(f"max_blob_bytes must be None or an integer >= 0, got {max_blob_bytes!r}")
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


def import_records(path: str | os.PathLike, store: Store | str | os.PathLike) -> dict[str, int]:
    """Adds the archived records at ``path`` to ``store``; returns counts ``added``, ``present`` (the store already
    had that key) and ``refused`` (a line that fails its checksum or identity check). Never overwrites."""
    store = store if isinstance(store, Store) else Store(store)
    counts = {"added": 0, "present": 0, "refused": 0}
    with gzip.open(path, "rt") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                kind, record = item["kind"], item["record"]
                key = record["key"]
                if not isinstance(kind, str) or "/" in kind or not isinstance(key, str) or "/" in key:
                    raise ValueError("bad kind or key")
                Store._verify(kind, key, dict(record))
                blob = None
                if kind in BLOB_SUFFIX:
                    blob = base64.b64decode(item["blob"], validate=True)
                    if _sha256(blob) != record["sha256"]:
                        raise ValueError("artefact does not match its record's SHA-256")
            except (ValueError, KeyError, TypeError):
                counts["refused"] += 1
                continue
            with store.lock(kind, key):
                if store.get(kind, key) is not None:
                    counts["present"] += 1
                    continue
                if blob is not None:  # the artefact first: a record is never there without it
                    store.put_blob(kind, key, blob, BLOB_SUFFIX[kind])
                _atomic_write(store.path(kind, key), json.dumps(record, indent=1).encode())
                counts["added"] += 1
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
    args = parser.parse_args(argv)
    if args.command == "export":
        if args.max_blob_mb is not None and not args.max_blob_mb >= 0:
            parser.error(f"--max-blob-mb must be a number of MiB >= 0, got {args.max_blob_mb}")
        limit = None if args.max_blob_mb is None else int(args.max_blob_mb * 2**20)
        n = export_records(args.store, args.file, args.kinds, max_blob_bytes=limit)
        print(f"{args.file}: {n} record(s) of {', '.join(args.kinds)} from {args.store}")
    else:
        c = import_records(args.file, args.store)
        print(f"{args.store}: {c['added']} record(s) added, {c['present']} already there, {c['refused']} refused "
              f"(checksum or identity did not verify)")


if __name__ == "__main__":
    main()
