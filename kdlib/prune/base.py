"""The pruning-method interface: a cached *scorer* and a pure *selector*."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch

from ..data import ImageData
from ..registry import Registry, resolve_params
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
    """What a scorer may use: the data (with the labels the student will see), the proxy recipe, a seed and the
    scorer's hyperparameters (``params``: its declared defaults, overridden by the run's ``method_params``)."""

    data: ImageData
    labels: torch.Tensor
    proxy: ProxyConfig
    model: str
    seed: int
    device: str = "auto"
    progress: bool = True
    params: Mapping[str, Any] = field(default_factory=dict)


Scorer = Callable[[ScoreContext], dict[str, np.ndarray]]
Selector = Callable[..., np.ndarray]  # (arrays, labels, k, rng, class_balanced, **hyperparameters) -> indices


def register_scorer(name: str, **params: Any) -> Callable[[Scorer], Scorer]:
    """Decorator on a scorer: declares the name its score cache is keyed by and its hyperparameters with their
    defaults (given to it as ``ctx.params``; they are part of the score and run keys)."""
    def add(fn: Scorer) -> Scorer:
        fn.scorer_name = name  # type: ignore[attr-defined]
        fn.scorer_params = dict(params)  # type: ignore[attr-defined]
        return fn

    return add


@dataclass(frozen=True)
class PruningMethod:
    """A pruning method: ``scorer`` (or None) makes per-sample arrays, cached per (dataset, scorer name and
    hyperparameters, proxy, seed); ``select(arrays, labels, k, rng, class_balanced, **params)`` returns exactly
    ``k`` indices. ``params`` are the selector's hyperparameters with their defaults. ``keeps`` says which
    samples it keeps; ``doc`` names the source paper and proxy recipe. ``scorer_name`` names the score cache
    (default: the name the scorer was registered with by ``register_scorer``, else the method's name)."""

    name: str
    select: Selector
    keeps: str
    scorer: Optional[Scorer] = None
    doc: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    scorer_name: Optional[str] = None

    @property
    def scorer_key(self) -> Optional[str]:
        """The declared name of the cached score arrays: ``scorer_name``, else the name the scorer was registered
        with (``register_scorer``; methods sharing a registered scorer share its cache), else the method's own."""
        if self.scorer is None:
            return None
        return self.scorer_name or getattr(self.scorer, "scorer_name", None) or self.name

    @property
    def scorer_params(self) -> dict[str, Any]:
        return dict(getattr(self.scorer, "scorer_params", {})) if self.scorer is not None else {}

    def hyperparameters(self, overrides: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
        """Every hyperparameter of the method (selector's and scorer's) at its default or at ``overrides``."""
        return resolve_params("method_params", f"method {self.name!r}", {**self.scorer_params, **dict(self.params)},
                              overrides)

    def selector_params(self, hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
        return {k: hyperparameters[k] for k in self.params}

    def score_params(self, hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
        return {k: hyperparameters[k] for k in self.scorer_params}


METHODS: Registry[PruningMethod] = Registry("pruning method", "method")


def register_method(name: str, keeps: str, scorer: Optional[Scorer] = None,
                    **params: Any) -> Callable[[Selector], Selector]:
    """Decorator on a selector: registers ``PruningMethod(name, selector, keeps, scorer, doc, params)``; the
    keyword arguments declare the selector's hyperparameters with their defaults (passed to it by name, part
    of the run key, settable per run through ``RunConfig.method_params``)."""
    if keeps not in KEEPS:
        raise ValueError(f"keeps must be one of {KEEPS}, got {keeps!r}")

    def add(select: Selector) -> Selector:
        METHODS.add(name, PruningMethod(name, select, keeps, scorer, (select.__doc__ or "").strip(), dict(params)))
        return select

    return add
