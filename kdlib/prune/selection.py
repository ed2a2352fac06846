"""Selectors: pure functions of per-sample scores, labels, a budget ``k`` and a random generator.

Each returns sorted int64 indices of exactly ``k`` kept samples. ``class_balanced=True`` splits the budget over
classes in proportion to their sizes (largest remainder, so the total is exact) and selects within each class.
Direction convention: a *high score means hard*; ``keep_high`` keeps the hardest, ``keep_low`` the easiest.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..validate import check_fraction


def budget(n: int, fraction: float) -> int:
    """``round(fraction * n)``, at least 1: the number of samples kept."""
    return max(1, int(round(check_fraction(fraction) * n)))


def class_budgets(labels: np.ndarray, k: int) -> dict[int, int]:
    """Per-class budgets proportional to class sizes, summing exactly to ``k`` (largest-remainder rounding)."""
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * k / counts.sum()
    base = np.floor(quota).astype(int)
    order = np.argsort(-(quota - base), kind="stable")
    base[order[: k - base.sum()]] += 1
    return {int(c): int(b) for c, b in zip(classes, base)}


def per_class(select: Callable[[np.ndarray, int], np.ndarray], labels: np.ndarray, k: int,
              class_balanced: bool) -> np.ndarray:
    """Runs ``select(candidate_indices, k_c)`` per class when ``class_balanced``, else once over everything."""
    if not class_balanced:
        return np.sort(select(np.arange(len(labels)), k)).astype(np.int64)
    parts = [select(np.flatnonzero(labels == c), kc) for c, kc in class_budgets(labels, k).items() if kc > 0]
    return np.sort(np.concatenate(parts)).astype(np.int64)


def _ranked(scores: np.ndarray, candidates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Candidates sorted by descending score, ties broken at random."""
    tiebreak = rng.permutation(len(candidates))
    return candidates[np.lexsort((tiebreak, -scores[candidates]))]


def keep_random(labels: np.ndarray, k: int, rng: np.random.Generator, class_balanced: bool = False) -> np.ndarray:
    """A uniformly random subset of size ``k``."""
    return per_class(lambda cand, kc: rng.choice(cand, size=kc, replace=False), labels, k, class_balanced)


def keep_high(scores: np.ndarray, labels: np.ndarray, k: int, rng: np.random.Generator,
              class_balanced: bool = False) -> np.ndarray:
    """The ``k`` highest-scoring samples (the hardest, by the high-is-hard convention)."""
    return per_class(lambda cand, kc: _ranked(scores, cand, rng)[:kc], labels, k, class_balanced)


def keep_low(scores: np.ndarray, labels: np.ndarray, k: int, rng: np.random.Generator,
             class_balanced: bool = False) -> np.ndarray:
    """The ``k`` lowest-scoring samples (the easiest)."""
    return keep_high(-np.asarray(scores, dtype=float), labels, k, rng, class_balanced)
