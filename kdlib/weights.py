"""External model weights: a state-dict file a teacher is loaded from, named in keys by its content's SHA-256."""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping, Optional

from .store import file_sha256
from .validate import from_plain, normalise, optional


@lru_cache(maxsize=64)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def weights_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of the file at ``path`` (read once per process while its size and modification time stay)."""
    st = os.stat(path)
    return _sha256_of(os.path.realpath(path), st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class WeightsFile:
    """A state dict on disk (kdlib, or torchvision's ResNet layout). Keyed by ``sha256`` (filled in from the
    file when the spec is built; given only when a record is read back), never by ``path``: moving the file
    keeps the keys, changing its content changes them."""

    path: str
    sha256: Optional[str] = None

    def __post_init__(self) -> None:
        normalise(self, {"path": _check_path, "sha256": optional(_check_sha256)})
        if self.sha256 is None:
            if not os.path.isfile(self.path):
                raise ValueError(f"teacher_checkpoint: no file at {self.path!r}")
            object.__setattr__(self, "sha256", weights_sha256(self.path))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | str | os.PathLike) -> "WeightsFile":
        """A spec from a path or from plain values (``{"path": ..., "sha256": ...}``)."""
        if isinstance(d, (str, os.PathLike)):
            return cls(str(d))
        return from_plain(cls, d, {}, "teacher_checkpoint parameter(s)")

    def identity(self) -> dict:
        return {"sha256": self.sha256}

    def load_into(self, model: Any) -> None:
        """Loads the file into ``model`` after checking its SHA-256 (``load_weights``)."""
        found = weights_sha256(self.path)
        if found != self.sha256:
            raise ValueError(f"teacher_checkpoint {self.path} has SHA-256 {found[:16]}..., not the "
                             f"{self.sha256[:16]}... its run is keyed by; the file changed since the run was planned")
        load_weights(self.path, model)


def _check_path(value: Any, parameter: str) -> str:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ValueError(f"{parameter} must be the path of a state-dict file, got {value!r}")
    return str(value)


def _check_sha256(value: Any, parameter: str) -> str:
    if not isinstance(value, str) or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"{parameter} must be 64 hex digits (filled in from the file; leave it out), got {value!r}")
    return value


def load_weights(path: str | os.PathLike, model: Any) -> None:
    """Loads a kdlib state dict (or ``{"model": state}``), or a torchvision ResNet one (``fc.*`` -> ``head.*``,
    the rest -> ``body.*``), into ``model`` (``weights_only`` load)."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]
    keys = set(model.state_dict())
    if not set(state) & keys and hasattr(model, "body"):
        state = {(f"head.{k[3:]}" if k.startswith("fc.") else f"body.{k}"): v for k, v in state.items()}
    model.load_state_dict(state)
