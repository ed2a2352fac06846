"""The pruning-method interface: a cached *scorer* and a pure *selector*."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

import numpy as np
import torch

from ..data import ImageData
from ..registry import Registry
from ..train import TrainConfig
from ..validate import check_config, check_number, check_positive, from_plain, normalise, optional

KEEPS = ("random", "hardest", "easiest", "stratified", "diverse", "representative")


@dataclass(frozen=True)
class ProxyConfig:
    """How a scorer trains its proxy model(s). ``model=None`` means the student's architecture.

    ``train`` is the proxy's recipe (a full run of ``train.epochs`` epochs gives the training dynamics, final
    probabilities and embeddings used by forgetting, uncertainty, geometry and DeepCore-family methods).
    ``n_models`` independently initialised proxies are averaged by the early scores (EL2N, GraNd; Paul et al.
    2021 use 10). ``score_epoch`` is the epoch of the proxy run at which the early scores are taken (Paul et al.:
    20 of 200): ``None`` means a tenth of the run (at least 1), ``0`` means at initialisation.
    """

    model: Optional[str] = None
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=10, batch_size=128, lr=0.1,
                                                                    schedule="cosine"))
    n_models: int = 1
    score_epoch: Optional[int] = None

    def __post_init__(self) -> None:
        from ..models import MODELS

        normalise(self, {
            "model": optional(lambda v, p: MODELS.check(v, "proxy model")),
            "train": lambda v, p: check_config(v, "proxy train", TrainConfig),
            "n_models": lambda v, p: check_positive(v, "proxy n_models", integer=True),
            "score_epoch": optional(lambda v, p: check_number(v, "proxy score_epoch", integer=True, low=0)),
        })
        if self.score_epoch is not None and self.score_epoch > self.train.epochs:
            raise ValueError(f"proxy score_epoch must be None or an integer in [0, train.epochs="
                             f"{self.train.epochs}], got {self.score_epoch!r}")

    @property
    def early_epoch(self) -> int:
        """The epoch at which EL2N/GraNd are scored: ``score_epoch``, or a tenth of the run (at least 1)."""
        return self.score_epoch if self.score_epoch is not None else max(1, round(self.train.epochs / 10))

    @classmethod
    def from_dict(cls, d: Mapping) -> "ProxyConfig":
        """Builds a proxy recipe from a plain dict (``train`` may be a dict), naming any unknown key."""
        return from_plain(cls, d, {"train": TrainConfig}, "proxy parameter(s)")


@dataclass
class ScoreContext:
    """What a scorer may use: the data (with the labels the student will see), the proxy recipe and a seed."""

    data: ImageData
    labels: torch.Tensor
    proxy: ProxyConfig
    model: str
    seed: int
    device: str = "auto"
    progress: bool = True


Scorer = Callable[[ScoreContext], dict[str, np.ndarray]]
Selector = Callable[[dict[str, np.ndarray], np.ndarray, int, np.random.Generator, bool], np.ndarray]


@dataclass(frozen=True)
class PruningMethod:
    """A pruning method: ``scorer`` (or None) makes per-sample arrays, cached per (dataset, scorer, proxy, seed);
    ``select(arrays, labels, k, rng, class_balanced)`` returns exactly ``k`` indices. ``keeps`` says which
    samples it keeps; ``doc`` names the source paper and proxy recipe."""

    name: str
    select: Selector
    keeps: str
    scorer: Optional[Scorer] = None
    doc: str = ""

    @property
    def scorer_key(self) -> Optional[str]:
        """Names the cached score arrays; methods sharing a scorer share its cache."""
        return None if self.scorer is None else self.scorer.__name__


METHODS: Registry[PruningMethod] = Registry("pruning method", "method")


def register_method(name: str, keeps: str, scorer: Optional[Scorer] = None) -> Callable[[Selector], Selector]:
    """Decorator on a selector: registers ``PruningMethod(name, selector, keeps, scorer, doc=selector.__doc__)``."""
    if keeps not in KEEPS:
        raise ValueError(f"keeps must be one of {KEEPS}, got {keeps!r}")

    def add(select: Selector) -> Selector:
        METHODS.add(name, PruningMethod(name, select, keeps, scorer, (select.__doc__ or "").strip()))
        return select

    return add
