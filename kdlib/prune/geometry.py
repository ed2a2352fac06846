"""Geometry / coverage pruning on a trained proxy's features: herding, k-center greedy, facility location, graph cut
and Moderate coreset.

All use the shared ``proxy_run`` scorer (one full run of the proxy recipe; penultimate embeddings and logits of
the final proxy on the un-augmented training set, eval mode). Greedy selectors are deterministic given the
arrays (k-center's first centre is drawn from the run's generator). Methods that are inherently per class
(herding towards the class mean; the submodular functions, whose n x n similarity matrices only fit per class)
split the budget over classes in proportion to class sizes even when ``class_balanced=False``.
"""
from __future__ import annotations

import itertools
from typing import Iterator

import numpy as np
import torch

from .base import register_method
from .orders import ORDERS, digest
from .proxy import gradient_factors, gradient_gram, proxy_run
from .selection import per_class

SIMILARITIES = ("cosine", "rbf")


# ----------------------------------------------------------------------------------------------- herding
def herding_steps(x: np.ndarray) -> Iterator[int]:
    """Herding (Welling 2009; Chen et al. 2010) as a generator of positions into ``x``: step t picks the point that
    keeps the mean of the picked points closest to the mean ``mu`` of all of ``x``, i.e. the unpicked point
    nearest ``t * mu - (sum of picked)``.

    (DeepCore takes the argmax of that distance, i.e. the farthest point: a bug.)
    """
    x = np.asarray(x, dtype=np.float64)
    mu = x.mean(0)
    sq = (x * x).sum(1)
    total = np.zeros(x.shape[1])
    free = np.ones(len(x), dtype=bool)
    for t in range(len(x)):
        d = sq - 2.0 * (x @ ((t + 1) * mu - total))  # ||x_i - target||^2 up to a constant
        d[~free] = np.inf
        i = int(np.argmin(d))
        free[i] = False
        total += x[i]
        yield i


def herding_order(x: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` herding picks (positions into ``x``)."""
    return np.fromiter(itertools.islice(herding_steps(x), min(k, len(x))), dtype=np.int64)


@register_method("herding", keeps="representative", scorer=proxy_run)
def herding(arrays: dict, labels: np.ndarray, k: int, rng: np.random.Generator,
            class_balanced: bool = False) -> np.ndarray:
    """Herding (Welling, ICML 2009; Chen et al., UAI 2010; as in DeepCore, without its argmax bug): per class, greedily
    keeps the samples whose running mean of proxy embeddings stays closest to the class mean embedding.

    Keeps a representative subset. Inherently per class: the budget is split by class proportions even when
    ``class_balanced=False``. Proxy: the shared ``proxy_run`` (final proxy's penultimate embeddings).
    """
    emb = arrays["embeddings"]

    def select(cand: np.ndarray, kc: int) -> np.ndarray:
        x = emb[cand]
        return cand[ORDERS.prefix(("herding", digest(x)), kc, lambda: herding_steps(x))]

    return per_class(select, labels, k, True)


# ----------------------------------------------------------------------------------------------- k-center
def kcenter_steps(x: np.ndarray, first: int) -> Iterator[int]:
    """Farthest-first traversal (the greedy 2-approximation of k-center; Sener & Savarese 2018) as a generator of
    positions into ``x``: starting from ``first``, repeatedly the point farthest from the chosen centres."""
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    sq = (xt * xt).sum(1)
    min_d = torch.full((len(xt),), float("inf"))
    i = int(first)
    for _ in range(len(xt)):
        yield i
        torch.minimum(min_d, sq - 2.0 * (xt @ xt[i]) + sq[i], out=min_d)
        min_d[i] = -float("inf")  # chosen centres are never chosen again (even with duplicate points)
        i = int(torch.argmax(min_d))


def kcenter_order(x: np.ndarray, k: int, first: int) -> np.ndarray:
    """The first ``k`` centres of the farthest-first traversal from ``first`` (positions into ``x``)."""
    return np.fromiter(itertools.islice(kcenter_steps(x, first), min(k, len(x))), dtype=np.int64)


def covering_radius(x: np.ndarray, centres: np.ndarray) -> float:
    """``max_i min_{c in centres} ||x_i - x_c||``: the k-center objective."""
    x = np.asarray(x, dtype=np.float64)
    c = x[np.asarray(centres)]
    d = (x * x).sum(1)[:, None] - 2 * x @ c.T + (c * c).sum(1)[None, :]
    return float(np.sqrt(max(0.0, np.clip(d, 0, None).min(1).max())))


@register_method("kcenter", keeps="diverse", scorer=proxy_run)
def kcenter(arrays: dict, labels: np.ndarray, k: int, rng: np.random.Generator,
            class_balanced: bool = False) -> np.ndarray:
    """k-center greedy (Sener & Savarese, ICLR 2018; as in DeepCore): farthest-first traversal of the proxy's
    embeddings from a random first centre, minimising the largest distance of any sample to the kept set.

    Keeps a diverse (covering) subset; over all samples, or per class when ``class_balanced``. Proxy: the shared
    ``proxy_run`` (final proxy's penultimate embeddings).
    """
    emb = arrays["embeddings"]

    def select(cand: np.ndarray, kc: int) -> np.ndarray:
        x, first = emb[cand], int(rng.integers(len(cand)))
        return cand[ORDERS.prefix(("kcenter", digest(x), first), kc, lambda: kcenter_steps(x, first))]

    return per_class(select, labels, k, class_balanced)


# ----------------------------------------------------------------------------------------------- submodular
def similarity_from_gram(gram: np.ndarray, kind: str = "cosine") -> np.ndarray:
    """Non-negative similarities from a Gram matrix: ``cosine`` is DeepCore's ``0.5 + 0.5 cos`` in [0, 1];
    ``rbf`` is ``exp(-d^2 / median(d^2))`` over squared Euclidean distances ``d^2``."""
    if kind not in SIMILARITIES:
        raise ValueError(f"unknown similarity {kind!r}; allowed values: {', '.join(SIMILARITIES)}")
    diag = np.clip(np.diag(gram), 0, None)
    if kind == "cosine":
        norm = np.sqrt(diag)
        denom = np.outer(norm, norm)
        cos = np.divide(gram, denom, out=np.zeros_like(gram), where=denom > 0)
        return (0.5 + 0.5 * np.clip(cos, -1, 1)).astype(np.float32)
    d2 = np.clip(diag[:, None] + diag[None, :] - 2 * gram, 0, None)
    scale = np.median(d2[np.triu_indices(len(d2), 1)]) if len(d2) > 1 else 1.0
    return np.exp(-d2 / max(scale, 1e-12)).astype(np.float32)


def facility_location_steps(sim: np.ndarray, block: int = 16) -> Iterator[int]:
    """Exact greedy maximisation of facility location ``F(S) = sum_i max_{j in S} sim[i, j]`` (``sim`` symmetric,
    non-negative) as a generator, with lazy evaluations (Minoux 1978): stale gains are upper bounds, so the
    ``block`` largest stale bounds are re-evaluated until the largest bound is an exact gain."""
    sim = np.asarray(sim, dtype=np.float32)
    n = len(sim)
    cur = np.zeros(n, dtype=np.float32)
    bound = sim.sum(0).astype(np.float64)  # exact gains of the empty set
    fresh = np.ones(n, dtype=bool)  # bound[i] is the exact gain of i for the current set
    for t in range(n):
        while True:
            best = int(np.argmax(bound))
            if fresh[best]:
                break
            m = min(block, n - t)
            top = np.union1d(np.argpartition(-bound, m - 1)[:m], [best])
            top = top[~fresh[top] & np.isfinite(bound[top])]
            bound[top] = np.maximum(sim[top] - cur, 0).sum(1)
            fresh[top] = True
        yield best
        np.maximum(cur, sim[best], out=cur)
        bound[best] = -np.inf
        fresh[:] = False


def facility_location_order(sim: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` greedy facility-location picks."""
    return np.fromiter(itertools.islice(facility_location_steps(sim), min(k, len(sim))), dtype=np.int64)


def graph_cut_steps(sim: np.ndarray, lam: float = 1.0) -> Iterator[int]:
    """Greedy maximisation of the graph-cut function as in DeepCore, as a generator: the gain of adding ``e`` to
    ``S`` is ``lam * sum_i sim[i, e] - 2 * sum_{j in S} sim[j, e]`` (representativeness minus redundancy)."""
    sim = np.asarray(sim, dtype=np.float64)
    base = lam * sim.sum(0)
    acc = np.zeros(len(sim))
    free = np.ones(len(sim), dtype=bool)
    for _ in range(len(sim)):
        best = int(np.argmax(np.where(free, base - 2.0 * acc, -np.inf)))
        free[best] = False
        acc += sim[best]
        yield best


def graph_cut_order(sim: np.ndarray, k: int, lam: float = 1.0) -> np.ndarray:
    """The first ``k`` greedy graph-cut picks."""
    return np.fromiter(itertools.islice(graph_cut_steps(sim, lam), min(k, len(sim))), dtype=np.int64)


def _unit_rows(a: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(a, axis=1, keepdims=True)
    return np.divide(a, norm, out=np.zeros_like(a), where=norm > 0)


def gradient_similarity(logits: np.ndarray, labels: np.ndarray, embeddings: np.ndarray,
                        kind: str = "cosine") -> np.ndarray:
    """Similarities (float32, n x n) between the last-layer gradients ``u_i ⊗ v_i`` of the given samples. The
    cosine is computed from unit factors, ``cos(g_i, g_j) = cos(u_i, u_j) cos(v_i, v_j)``, in two matrix products."""
    u, v = gradient_factors(logits, labels, embeddings)
    if kind != "cosine":
        return similarity_from_gram(gradient_gram(u, v), kind)
    u, v = _unit_rows(u).astype(np.float32), _unit_rows(v).astype(np.float32)
    sim = u @ u.T
    sim *= v @ v.T
    sim *= 0.5
    sim += 0.5
    return sim


def _submodular(name: str, steps, arrays: dict, labels: np.ndarray, k: int) -> np.ndarray:
    """Per-class greedy over gradient similarities, memoised (the n_c x n_c matrix is built only on a miss)."""
    def select(cand: np.ndarray, kc: int) -> np.ndarray:
        z, h, y = arrays["logits"][cand], arrays["embeddings"][cand], labels[cand]

        def start() -> Iterator[int]:
            return steps(gradient_similarity(z, y, h, "cosine"))

        return cand[ORDERS.prefix((name, digest(z, h, y)), kc, start, keep_state=False)]

    return per_class(select, labels, k, True)


@register_method("facility_location", keeps="representative", scorer=proxy_run)
def facility_location(arrays: dict, labels: np.ndarray, k: int, rng: np.random.Generator,
                      class_balanced: bool = False) -> np.ndarray:
    """Submodular facility location (Iyer et al. 2021; DeepCore's Submodular): greedily maximises
    ``sum_i max_{j in S} sim(i, j)`` with DeepCore's similarity ``0.5 + 0.5 cos`` between last-layer gradients
    (``(softmax - onehot) ⊗ [1, embedding]`` of the final proxy). Exact lazy greedy.

    Keeps a representative subset. Per class (the n_c x n_c similarity matrix fits in memory; a 6000-sample class
    takes 144 MB): the budget is split by class proportions even when ``class_balanced=False``. Proxy: the shared
    ``proxy_run``.
    """
    return _submodular("facility_location", facility_location_steps, arrays, labels, k)


@register_method("graph_cut", keeps="representative", scorer=proxy_run)
def graph_cut(arrays: dict, labels: np.ndarray, k: int, rng: np.random.Generator,
              class_balanced: bool = False) -> np.ndarray:
    """Submodular graph cut (Iyer et al. 2021; DeepCore's Submodular, lambda = 1): greedily maximises
    ``sum_{i in V, j in S} sim(i, j) - sum_{i, j in S} sim(i, j)`` with DeepCore's ``0.5 + 0.5 cos`` similarity
    between last-layer gradients of the final proxy: representative samples with a redundancy penalty.

    Per class (memory), the budget split by class proportions even when ``class_balanced=False``. Proxy: the
    shared ``proxy_run``.
    """
    return _submodular("graph_cut", graph_cut_steps, arrays, labels, k)


# ----------------------------------------------------------------------------------------------- Moderate
def median_distances(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Euclidean distance of each sample's features to its class's coordinate-wise median feature vector."""
    x = np.asarray(x, dtype=np.float64)
    d = np.empty(len(x))
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        d[idx] = np.linalg.norm(x[idx] - np.median(x[idx], axis=0), axis=1)
    return d


def keep_middle(values: np.ndarray, labels: np.ndarray, k: int, rng: np.random.Generator,
                class_balanced: bool = False) -> np.ndarray:
    """The ``k`` samples whose ranks by ``values`` are nearest the median rank: the contiguous band of ranks
    starting at ``floor((n - k) / 2)`` (ties broken at random)."""
    values = np.asarray(values, dtype=np.float64)

    def band(cand: np.ndarray, kc: int) -> np.ndarray:
        ranked = cand[np.lexsort((rng.permutation(len(cand)), values[cand]))]
        start = (len(cand) - kc) // 2
        return ranked[start:start + kc]

    return per_class(band, labels, k, class_balanced)


@register_method("moderate", keeps="representative", scorer=proxy_run)
def moderate(arrays: dict, labels: np.ndarray, k: int, rng: np.random.Generator,
             class_balanced: bool = False) -> np.ndarray:
    """Moderate coreset (Xia et al., ICLR 2023): the score is the distance of a sample's proxy embedding to its
    class's median embedding (coordinate-wise median, as in the official code); keeps the k samples whose
    distances rank nearest the median distance (the official rank band ``[N(1-f)/2, N(1+f)/2)``), dropping
    both the closest (easiest) and the farthest (hardest).

    Band over all samples, or per class when ``class_balanced``. Proxy: the shared ``proxy_run``.
    """
    return keep_middle(median_distances(arrays["embeddings"], labels), labels, k, rng, class_balanced)
