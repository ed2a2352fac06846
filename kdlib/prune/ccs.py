"""Coverage-centric coreset selection (CCS; Zheng et al., ICLR 2023)."""
from __future__ import annotations

import numpy as np

from .base import register_method
from .proxy import proxy_run
from .selection import per_class

CCS_STRATA = 50


def ccs_beta(fraction: float) -> float:
    """Share of the data (the hardest) that CCS prunes before sampling: ``max(0, 0.4 - f)``.

    This reproduces the hard-cutoff rates CCS uses on CIFAR-10 for pruning rates 30/50/70/80/90 %
    (f = 0.7/0.5/0.3/0.2/0.1 -> beta = 0/0/0.1/0.2/0.3; the README's 90 % example uses ``--mis-ratio 0.3``) and
    extends them linearly (f = 0.05 -> 0.35). Never more than ``1 - f``, so enough samples remain.
    """
    return float(min(max(0.0, 0.4 - fraction), 1.0 - fraction))


def allocate(budget: int, sizes: np.ndarray) -> np.ndarray:
    """CCS's budget split over strata: visiting strata from the sparsest up, each gets
    ``min(size, remaining budget // remaining strata)``; any remainder left by the integer division then goes to
    strata with room, sparsest first, so the total is exactly ``min(budget, sizes.sum())``."""
    sizes = np.asarray(sizes, dtype=np.int64)
    out = np.zeros(len(sizes), dtype=np.int64)
    rest = int(budget)
    order = np.argsort(sizes, kind="stable")
    for i, b in enumerate(order):
        out[b] = min(sizes[b], rest // (len(order) - i))
        rest -= out[b]
    for b in order:
        if rest <= 0:
            break
        extra = min(sizes[b] - out[b], rest)
        out[b] += extra
        rest -= extra
    return out


def stratified_sample(scores: np.ndarray, k: int, rng: np.random.Generator, strata: int = CCS_STRATA) -> np.ndarray:
    """Positions of ``k`` samples drawn by CCS's stratified sampling: ``strata`` equal-width score bins over
    [min, max], budget spread by :func:`allocate`, uniform sampling without replacement inside each bin."""
    scores = np.asarray(scores, dtype=np.float64)
    lo, hi = scores.min(), scores.max()
    width = (hi - lo) / strata if hi > lo else 1.0
    bins = np.minimum(((scores - lo) / width).astype(np.int64), strata - 1)
    sizes = np.bincount(bins, minlength=strata)
    take = allocate(k, sizes)
    parts = [rng.choice(np.flatnonzero(bins == b), size=int(take[b]), replace=False) for b in range(strata) if take[b]]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def ccs_select(difficulty: np.ndarray, labels: np.ndarray, k: int, rng: np.random.Generator,
               class_balanced: bool = False, beta: float | None = None, strata: int = CCS_STRATA) -> np.ndarray:
    """CCS on a difficulty score (high = hard): drop the hardest ``beta`` share (default :func:`ccs_beta` of
    ``f = k / N``), then stratified sampling of ``k`` over the rest. Per class when ``class_balanced``."""
    difficulty = np.asarray(difficulty, dtype=np.float64)
    beta = ccs_beta(k / len(labels)) if beta is None else float(beta)

    def select(cand: np.ndarray, kc: int) -> np.ndarray:
        n_drop = min(int(round(beta * len(cand))), len(cand) - kc)
        ranked = cand[np.lexsort((rng.permutation(len(cand)), -difficulty[cand]))]  # hardest first
        kept = ranked[n_drop:]
        return kept[stratified_sample(difficulty[kept], kc, rng, strata)]

    return per_class(select, labels, k, class_balanced)


@register_method("ccs", keeps="stratified", scorer=proxy_run, strata=CCS_STRATA)
def ccs(arrays: dict, labels: np.ndarray, k: int, rng: np.random.Generator,
        class_balanced: bool = False, strata: int = CCS_STRATA) -> np.ndarray:
    """Coverage-centric coreset selection (Zheng et al., ICLR 2023): prunes the hardest ``beta(f) = max(0, 0.4 - f)``
    share of the data by AUM (CCS's CIFAR choice: the probability margin ``p_y - max_{c != y} p_c`` averaged over
    the proxy run's epochs; low = hard), then samples the budget from 50 equal-width AUM strata, filling the
    sparsest strata first. Keeps a stratified slice (never the pruned hardest share).

    Over all samples (as CCS's code), or per class when ``class_balanced``. Proxy: the shared ``proxy_run``
    (per-epoch passes over the un-augmented training set in eval mode, not CCS's augmented mini-batch logs).
    """
    return ccs_select(-np.asarray(arrays["aum"]), labels, k, rng, class_balanced, strata=strata)
