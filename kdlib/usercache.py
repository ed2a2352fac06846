"""The per-user cache, ``$XDG_CACHE_HOME/kdlib`` (default ``~/.cache/kdlib``): answers worth keeping between
processes (whether this CPU computes bf16 faster, an image folder's content fingerprint, the digits split).
Losing it costs only time: a read-only or missing home means the answer is computed again next time. It is only
ever a speed-up: every cached value is checked against what it stands for by its reader, and a file that cannot
be read or does not verify is ignored with a warning naming it (``ignored``) and recomputed."""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from .store import _atomic_write


def cache_path(name: str) -> Path:
    """The file ``name`` in the per-user cache folder (not created)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kdlib" / name


def save(name: str, data: bytes) -> None:
    """Writes ``data`` to the cache file ``name`` atomically (a concurrent reader never sees half a file);
    a home that cannot be written is ignored."""
    try:
        _atomic_write(cache_path(name), data)
    except OSError:
        pass


def read_map(name: str) -> dict[str, Any]:
    """The JSON mapping in the cache file ``name``; empty when it is missing, or, with a warning naming the file,
    when it is unreadable or not a mapping."""
    data = read_json(name)
    if data is None:
        return {}
    if not isinstance(data, dict):
        ignored(name, f"not a mapping (a {type(data).__name__})")
        return {}
    return data


def remember(name: str, key: str, value: Any) -> None:
    """Adds ``key: value`` to the JSON mapping in the cache file ``name``."""
    save(name, json.dumps({**read_map(name), key: value}, indent=1).encode())


def ignored(name: str, why: str) -> None:
    """Warns that the cache file ``name`` is ignored (and recomputed) because of ``why``."""
    warnings.warn(f"ignoring the per-user cache file {cache_path(name)}: {why}; it is recomputed", stacklevel=3)


def read_json(name: str) -> Any:
    """The JSON value in the cache file ``name``; None when it is missing, or, with a warning naming the file,
    when it cannot be read or parsed."""
    path = cache_path(name)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        ignored(name, f"unreadable ({err.strerror})")
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        ignored(name, f"not JSON ({err})")
        return None
