"""DeepCore-family methods: DeepFool, Cal, CRAIG, GradMatch and Glister (Guo et al. 2022's DeepCore library).

Except DeepFool (its own scorer: the same proxy, then DeepFool attacks), all use the shared ``proxy_run``
arrays. "Last-layer gradients" are the true cross-entropy gradients of the final proxy's head,
``(softmax(z) - onehot(y)) ⊗ [1, embedding]`` (:func:`kdlib.prune.proxy.gradient_factors`); similarities, Gram
matrices and matching are computed from these factors without materialising them when that is cheaper. The
subset a student trains on is unweighted, so CRAIG's and GradMatch's per-sample weights are not used.
"""
from __future__ import annotations

import itertools
import math
from typing import Iterator

import numpy as np
import torch
from torch import nn

from ..train import resolve_device
from .base import ScoreContext, register_method, register_scorer
from .geometry import facility_location_steps
from .orders import ORDERS, digest
from .proxy import gradient_factors, gradient_gram, gradient_matrix, proxy_run, softmax_np, train_proxy
from .selection import keep_high, keep_low, per_class

DEEPFOOL_MAX_ITER = 50
DEEPFOOL_OVERSHOOT = 0.02
GLISTER_ROUNDS = 64
GRADMATCH_LAMBDA = 1.0
GRADMATCH_PRIMAL_MAX_DIM = 2048


# ----------------------------------------------------------------------------------------------- DeepFool
def deepfool_distances(model: nn.Module, x: torch.Tensor, num_classes: int, max_iter: int = DEEPFOOL_MAX_ITER,
                       overshoot: float = DEEPFOOL_OVERSHOOT) -> np.ndarray:
    """Norm of the DeepFool perturbation (Moosavi-Dezfooli et al. 2016) that changes the model's prediction, per
    sample of the normalised inputs ``x`` (eval mode): linearise the logit differences to every other class,
    step to the nearest linearised boundary (plus 1e-4), repeat until the prediction flips (tested with the
    ``1 + overshoot`` scaled perturbation) or ``max_iter`` steps. Samples that never flip keep their accumulated
    perturbation."""
    model.eval()
    req = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        with torch.no_grad():
            pred0 = model(x).argmax(1)
        r_tot = torch.zeros_like(x)
        active = torch.arange(len(x), device=x.device)
        for _ in range(max_iter):
            if len(active) == 0:
                break
            xa = (x[active] + (1 + overshoot) * r_tot[active]).requires_grad_(True)
            f = model(xa)
            grads = torch.stack([torch.autograd.grad(f[:, c].sum(), xa, retain_graph=c + 1 < num_classes)[0]
                                 for c in range(num_classes)], 1).flatten(2)  # (b, K, P)
            rows = torch.arange(len(active), device=x.device)
            p0 = pred0[active]
            w = grads - grads[rows, p0][:, None]
            fd = (f - f[rows, p0][:, None]).detach()
            w_norm = w.norm(dim=2).clamp_min(1e-12)
            dist = fd.abs() / w_norm
            dist[rows, p0] = float("inf")
            l_hat = dist.argmin(1)
            step = ((fd[rows, l_hat].abs() + 1e-4) / w_norm[rows, l_hat] ** 2)[:, None] * w[rows, l_hat]
            r_tot[active] += step.view_as(xa)
            with torch.no_grad():
                pred = model(x[active] + (1 + overshoot) * r_tot[active]).argmax(1)
            active = active[pred == p0]
        return ((1 + overshoot) * r_tot).flatten(1).norm(dim=1).detach().cpu().numpy()
    finally:
        for p, r in zip(model.parameters(), req):
            p.requires_grad_(r)


@register_scorer("deepfool_run", max_iter=DEEPFOOL_MAX_ITER, overshoot=DEEPFOOL_OVERSHOOT)
def deepfool_run(ctx: ScoreContext) -> dict[str, np.ndarray]:
    """Trains the proxy of ``proxy_run`` (same recipe and seed, so the same model) and returns the DeepFool
    perturbation norm of every un-augmented training sample (``deepfool``; small = close to the boundary)."""
    device = resolve_device(ctx.device)
    model = train_proxy(ctx, 0)
    out = []
    for s in range(0, ctx.data.n_train, 256):
        xb = ctx.data.normalize(ctx.data.x_train[s:s + 256].to(device))
        out.append(deepfool_distances(model, xb, ctx.data.num_classes, int(ctx.params.get("max_iter", DEEPFOOL_MAX_ITER)),
                                      float(ctx.params.get("overshoot", DEEPFOOL_OVERSHOOT))))
    return {"deepfool": np.concatenate(out)}


@register_method("deepfool", keeps="hardest", scorer=deepfool_run)
def deepfool(arrays: dict, labels: np.ndarray, k: int, rng: np.random.Generator,
             class_balanced: bool = False) -> np.ndarray:
    """DeepFool (Ducoffe & Precioso 2018, as in DeepCore): keeps the k samples with the smallest DeepFool
    perturbation, i.e. closest to the proxy's decision boundary (the hardest). The attack starts from the proxy's
    prediction (not the label), in normalised input space, at most 50 steps, with the original DeepFool's 1e-4
    step margin and 0.02 overshoot (DeepCore omits both).

    Proxy: ``deepfool_run`` retrains the proxy of ``proxy_run`` (same recipe and seed) and attacks every
    training sample (about ``max_iter``-bounded, typically 2-5 steps of 1 forward + C backward passes).
    """
    return keep_low(arrays["deepfool"], labels, k, rng, class_balanced)


# ----------------------------------------------------------------------------------------------- Cal
@register_method("cal", keeps="hardest", scorer=proxy_run)
def cal(arrays: dict, labels: np.ndarray, k: int, rng: np.random.Generator,
        class_balanced: bool = False) -> np.ndarray:
    """Contrastive active learning (Cal; Margatina et al., EMNLP 2021; as in DeepCore): keeps the k samples whose
    predicted distribution diverges most (mean symmetric KL) from those of their 10 nearest neighbours in
    embedding space: close in feature space yet predicted differently (the hardest).

    Direction: highest divergence kept, as in Margatina et al.; DeepCore's code keeps the lowest. Neighbours are
    searched among all training samples in the final proxy's embedding space (DeepCore uses an ImageNet
    pretrained ResNet-18, which is not available offline). Proxy: the shared ``proxy_run``.
    """
    return keep_high(arrays["cal_kl"], labels, k, rng, class_balanced)


# ----------------------------------------------------------------------------------------------- CRAIG
def craig_similarity(gram: np.ndarray) -> np.ndarray:
    """DeepCore's CRAIG similarity: ``max(d) - d + 1e-3`` for Euclidean distances ``d`` between gradients."""
    diag = np.diag(gram)
    d = np.sqrt(np.clip(diag[:, None] + diag[None, :] - 2 * gram, 0, None))
    return (d.max() - d + 1e-3).astype(np.float32)


@register_method("craig", keeps="representative", scorer=proxy_run)
def craig(arrays: dict, labels: np.ndarray, k: int, rng: np.random.Generator,
          class_balanced: bool = False) -> np.ndarray:
    """CRAIG (Mirzasoleiman et al., ICML 2020; as in DeepCore): per class, facility location over last-layer
    gradients with similarity ``max distance - distance``, so the kept samples' gradients cover (approximate)
    every sample's gradient. Exact lazy greedy; the per-sample weights are not used.

    Keeps a representative subset. Per class (the n_c x n_c matrix fits in memory): the budget is split by class
    proportions even when ``class_balanced=False`` (DeepCore's unbalanced variant runs one greedy over the
    block-diagonal matrix, which can shift a few samples between classes). Proxy: the shared ``proxy_run``.
    """
    def select(cand: np.ndarray, kc: int) -> np.ndarray:
        z, h, y = arrays["logits"][cand], arrays["embeddings"][cand], labels[cand]

        def start() -> Iterator[int]:
            return facility_location_steps(craig_similarity(gradient_gram(*gradient_factors(z, y, h))))

        return cand[ORDERS.prefix(("craig", digest(z, h, y)), kc, start, keep_state=False)]

    return per_class(select, labels, k, True)


# ----------------------------------------------------------------------------------------------- GradMatch
def omp_primal_steps(a: np.ndarray, b: np.ndarray, lam: float = GRADMATCH_LAMBDA) -> Iterator[int]:
    """Ridge-regularised orthogonal matching pursuit (GradMatch's OMP) on the columns of ``a`` (d, n) to match
    ``b`` (d), as a generator: each step adds the unselected column with the largest (signed) correlation with
    the residual ``r = b - A_S x_S``, ``x_S = (A_S^T A_S + lam I)^{-1} A_S^T b``. Uses
    ``r = lam (A_S A_S^T + lam I)^{-1} b`` with Sherman-Morrison updates: O(nd + d^2) per step."""
    a32 = np.asarray(a, dtype=np.float32)
    d, n = a32.shape
    b = np.asarray(b, dtype=np.float64)
    inv = np.eye(d) / lam
    r = b.copy()
    free = np.ones(n, dtype=bool)
    for _ in range(n):
        i = int(np.argmax(np.where(free, a32.T @ r.astype(np.float32), -np.inf)))
        free[i] = False
        yield i
        col = a32[:, i].astype(np.float64)
        ka = inv @ col
        inv -= np.outer(ka, ka) / (1.0 + col @ ka)
        r = lam * (inv @ b)


def omp_dual_steps(gram: np.ndarray, c: np.ndarray, lam: float = GRADMATCH_LAMBDA) -> Iterator[int]:
    """The same OMP from the Gram matrix ``G = A^T A`` (n, n) and ``c = A^T b`` only (for large d): correlations
    ``c - G[:, S] x_S`` with ``x_S = (G_SS + lam I)^{-1} c_S``, the inverse grown by block updates."""
    gram = np.asarray(gram, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    inv = np.zeros((0, 0))
    sel: list[int] = []
    free = np.ones(len(c), dtype=bool)
    proj = c.copy()
    for _ in range(len(c)):
        i = int(np.argmax(np.where(free, proj, -np.inf)))
        free[i] = False
        yield i
        g = gram[sel, i]
        w = inv @ g
        s = gram[i, i] + lam - g @ w
        inv = np.block([[inv + np.outer(w, w) / s, -w[:, None] / s], [-w[None, :] / s, np.full((1, 1), 1.0 / s)]])
        sel.append(i)
        proj = c - gram[:, sel] @ (inv @ c[sel])


def omp_primal(a: np.ndarray, b: np.ndarray, k: int, lam: float = GRADMATCH_LAMBDA) -> np.ndarray:
    """The first ``k`` picks of :func:`omp_primal_steps`."""
    return np.fromiter(itertools.islice(omp_primal_steps(a, b, lam), min(k, a.shape[1])), dtype=np.int64)


def omp_dual(gram: np.ndarray, c: np.ndarray, k: int, lam: float = GRADMATCH_LAMBDA) -> np.ndarray:
    """The first ``k`` picks of :func:`omp_dual_steps`."""
    return np.fromiter(itertools.islice(omp_dual_steps(gram, c, lam), min(k, len(c))), dtype=np.int64)


def gradmatch_steps(u: np.ndarray, v: np.ndarray, lam: float = GRADMATCH_LAMBDA) -> Iterator[int]:
    """OMP matching the mean of the gradients ``u_i ⊗ v_i``: the primal form when the gradient dimension
    ``C * (D + 1)`` is at most ``GRADMATCH_PRIMAL_MAX_DIM``, else the dual (Gram) form."""
    if u.shape[1] * v.shape[1] <= GRADMATCH_PRIMAL_MAX_DIM:
        a = gradient_matrix(u, v)
        return omp_primal_steps(a.T, a.mean(0), lam)
    gram = gradient_gram(u, v)
    return omp_dual_steps(gram, gram.mean(1), lam)


@register_method("gradmatch", keeps="representative", scorer=proxy_run, lam=GRADMATCH_LAMBDA)
def gradmatch(arrays: dict, labels: np.ndarray, k: int, rng: np.random.Generator,
              class_balanced: bool = False, lam: float = GRADMATCH_LAMBDA) -> np.ndarray:
    """GradMatch (Killamsetty et al., ICML 2021; as in DeepCore): per class, orthogonal matching pursuit (ridge
    lambda = 1) selecting samples whose last-layer gradients best reconstruct the class's mean gradient (DeepCore's
    default target when no validation set is given). All k OMP picks are kept (DeepCore keeps only those with a
    non-zero NNLS weight and can return fewer); the weights are not used.

    Keeps a representative subset. Per class: the budget is split by class proportions even when
    ``class_balanced=False``. Proxy: the shared ``proxy_run``.
    """
    def select(cand: np.ndarray, kc: int) -> np.ndarray:
        z, h, y = arrays["logits"][cand], arrays["embeddings"][cand], labels[cand]
        u, v = gradient_factors(z, y, h)
        primal = u.shape[1] * v.shape[1] <= GRADMATCH_PRIMAL_MAX_DIM
        return cand[ORDERS.prefix(("gradmatch", digest(z, h, y), lam), kc, lambda: gradmatch_steps(u, v, lam),
                                  keep_state=primal)]

    return per_class(select, labels, k, True)


# ----------------------------------------------------------------------------------------------- Glister
def glister_order(logits: np.ndarray, labels: np.ndarray, embeddings: np.ndarray, k: int, eta: float,
                  rounds: int = GLISTER_ROUNDS) -> np.ndarray:
    """GLISTER-ONLINE's greedy (Killamsetty et al., AAAI 2021) with DeepCore's last-layer Taylor approximation,
    the candidates doubling as the validation set: the gain of a candidate is ``g_e . g_val``, the dot product of
    its gradient with the mean validation gradient; after each pick the head takes one step
    ``theta - eta * mean(selected gradients)`` and the validation gradient is recomputed there.

    Approximation: picks are made in ``rounds`` batches of ``ceil(k / rounds)`` top gains between updates (exact
    greedy when ``k <= rounds``)."""
    u, v = gradient_factors(logits, labels, embeddings)
    n = len(u)
    k = min(k, n)
    z = np.asarray(logits, dtype=np.float64)
    onehot = np.zeros_like(z)
    onehot[np.arange(n), labels] = 1.0
    g_val = u.T @ v / n  # (C, D+1): mean validation gradient
    free = np.ones(n, dtype=bool)
    order: list[int] = []
    per_round = max(1, math.ceil(k / rounds))
    while len(order) < k:
        gain = np.where(free, ((u @ g_val) * v).sum(1), -np.inf)
        m = min(per_round, k - len(order))
        top = np.argpartition(-gain, m - 1)[:m]
        top = top[np.argsort(-gain[top], kind="stable")]
        order.extend(int(i) for i in top)
        free[top] = False
        sel = np.asarray(order)
        step = u[sel].T @ v[sel] / len(sel)  # mean selected gradient (C, D+1)
        u_val = softmax_np(z - eta * v @ step.T) - onehot
        g_val = u_val.T @ v / n
    return np.asarray(order[:k], dtype=np.int64)


@register_method("glister", keeps="representative", scorer=proxy_run, rounds=GLISTER_ROUNDS)
def glister(arrays: dict, labels: np.ndarray, k: int, rng: np.random.Generator,
            class_balanced: bool = False, rounds: int = GLISTER_ROUNDS) -> np.ndarray:
    """Glister (Killamsetty et al., AAAI 2021; as in DeepCore): per class, greedy selection maximising the
    one-step Taylor estimate of the validation log-likelihood gain from last-layer gradients (step size the proxy
    lr). Validation set: the class's own training samples (DeepCore's default; no held-out split is carved out of
    the training data). Approximation: 64 batched greedy rounds per class.

    Keeps a representative subset. Per class: the budget is split by class proportions even when
    ``class_balanced=False``. Proxy: the shared ``proxy_run``.
    """
    eta = float(arrays["lr"])

    def select(cand: np.ndarray, kc: int) -> np.ndarray:
        z, h, y = arrays["logits"][cand], arrays["embeddings"][cand], labels[cand]
        return cand[ORDERS.prefix(("glister", digest(z, h, y), kc, eta, rounds), kc,
                                  lambda: iter(glister_order(z, y, h, kc, eta, rounds)), keep_state=False)]

    return per_class(select, labels, k, True)
