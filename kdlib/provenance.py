"""Which code produced a record: kdlib's version, the git commit and whether the tree had uncommitted changes,
or, outside a git checkout, a hash of kdlib's source files. Recorded beside every result, outside its key."""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import subprocess
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def source_hash(package_dir: Path = PACKAGE_DIR) -> str:
    """First 16 hex digits of the SHA-256 over kdlib's ``*.py`` files (relative names and contents)."""
    h = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        h.update(str(path.relative_to(package_dir)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=PACKAGE_DIR, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.lru_cache(maxsize=None)
def code_info() -> dict:
    """{'kdlib': version, 'commit': git commit or None, 'dirty': uncommitted changes or None, 'source': hash}."""
    try:
        version = importlib.metadata.version("kdlib")
    except importlib.metadata.PackageNotFoundError:
        version = None
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no", "--", str(PACKAGE_DIR)) if commit else None
    return {"kdlib": version, "commit": commit, "dirty": None if status is None else bool(status),
            "source": source_hash()}
