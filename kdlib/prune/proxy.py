"""Proxy models for scorers: seeded training, un-augmented eval-mode passes, and the shared ``proxy_run`` scorer.

One proxy run (``ProxyConfig.train``, full length, seed derived from the scoring seed) yields, from a pass over
the un-augmented training set in eval mode after every epoch and after the last one:

* ``forgetting`` (int) and ``ever_learned`` (bool): learned-to-forgotten transitions between consecutive epochs
  (Toneva et al. 2019, counted from per-epoch full passes rather than from the mini-batch presentations);
* ``aum``: the mean over epochs of the probability margin ``p_y - max_{c != y} p_c`` (the "accumulated margin"
  of CCS's code, averaged instead of summed; high = easy);
* ``logits`` and ``embeddings`` (penultimate features) of the final proxy: uncertainty, geometry and last-layer
  gradient methods derive everything from these;
* ``cal_kl``: Cal's contrastive score (mean symmetric KL between a sample's predicted distribution and those of
  its 10 nearest neighbours in the proxy's embedding space);
* ``lr``: the proxy's learning rate (Glister's Taylor step).

Every method whose scorer is ``proxy_run`` shares one cached set of these arrays per (dataset, proxy recipe,
scoring seed, label noise).

Seeds: a run's scoring seed (``RunConfig.score_seed``, default the run's own seed) seeds every proxy through
:func:`proxy_seed`, so each repeat of a study is scored by its own proxies, recorded in its run config, and a
proxy never shares the initialisation of the student trained with the same seed.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import ImageData
from ..models import build_model
from ..train import autocast_context, resolve_device, train
from ..seeds import proxy_seed
from .base import ScoreContext, register_scorer

CAL_NEIGHBOURS = 10  # the default of proxy_run's declared hyperparameter cal_neighbours


def build_proxy(ctx: ScoreContext, index: int = 0) -> nn.Module:
    """A freshly initialised proxy (architecture ``ctx.model``), seeded by :func:`proxy_seed`."""
    torch.manual_seed(proxy_seed(ctx.seed, index))
    return build_model(ctx.model, ctx.data.num_classes, ctx.data.in_channels)


class _Stop(Exception):
    """Raised from the epoch hook to end a proxy run early (EL2N/GraNd at ``score_epoch``)."""


def train_proxy(ctx: ScoreContext, index: int = 0, epoch_hook: Optional[Callable[[int, nn.Module], None]] = None,
                stop_after: Optional[int] = None) -> nn.Module:
    """Trains proxy ``index`` with ``ctx.proxy.train`` on all training samples with ``ctx.labels``.

    ``stop_after=e`` stops after epoch ``e`` of the *full* run (the learning-rate schedule is the full run's);
    ``e=0`` returns the initialised model untrained.
    """
    model = build_proxy(ctx, index)
    device = resolve_device(ctx.device)
    if stop_after == 0:
        return model.to(device)

    def hook(epoch: int, m: nn.Module) -> None:
        if epoch_hook is not None:
            epoch_hook(epoch, m)
        if stop_after is not None and epoch >= stop_after:
            raise _Stop

    try:
        train(model, ctx.data, ctx.proxy.train, labels=ctx.labels, seed=proxy_seed(ctx.seed, index), device=device,
              progress=ctx.progress, desc=f"proxy {ctx.model} #{index}", evaluate_test=False, epoch_hook=hook)
    except _Stop:
        pass
    return model


@torch.no_grad()
def forward_train_set(model: nn.Module, data: ImageData, device: str | torch.device = "auto",
                      precision: str = "fp32", batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, embeddings), fp32 on CPU, of the un-augmented training set in eval mode."""
    device = resolve_device(device)
    was_training = model.training
    model.eval()
    logits, embeds = [], []
    for s in range(0, data.n_train, batch_size):
        xb = data.normalize(data.x_train[s:s + batch_size].to(device)).contiguous(memory_format=torch.channels_last)
        with autocast_context(device, precision):
            h = model.embed(xb)
            z = model.head(h)
        logits.append(z.float().cpu())
        embeds.append(h.float().cpu())
    model.train(was_training)
    return torch.cat(logits), torch.cat(embeds)


class ForgettingCounter:
    """Counts forgetting events (correct at epoch t, wrong at t+1) from a sequence of per-epoch correctness."""

    def __init__(self, n: int) -> None:
        self.counts = np.zeros(n, dtype=np.int64)
        self.ever_learned = np.zeros(n, dtype=bool)
        self._last = np.zeros(n, dtype=bool)

    def update(self, correct: np.ndarray) -> None:
        correct = np.asarray(correct, dtype=bool)
        self.counts += self._last & ~correct
        self.ever_learned |= correct
        self._last = correct


def count_forgetting(correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forgetting events and the ever-learned mask from a (T epochs, N samples) boolean correctness matrix."""
    counter = ForgettingCounter(np.asarray(correct).shape[1])
    for row in np.asarray(correct, dtype=bool):
        counter.update(row)
    return counter.counts, counter.ever_learned


def probability_margin(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``p_y - max_{c != y} p_c`` per sample (positive when the labelled class wins)."""
    probs = np.asarray(probs, dtype=np.float64)
    rows = np.arange(len(labels))
    p_y = probs[rows, labels]
    other = probs.copy()
    other[rows, labels] = -np.inf
    return p_y - other.max(1)


def knn_indices(x: np.ndarray, k: int, chunk: int = 512) -> np.ndarray:
    """Indices (N, k) of each row's ``k`` nearest other rows (Euclidean), computed in chunks."""
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    n = len(xt)
    k = min(k, n - 1)
    sq = (xt * xt).sum(1)
    out = np.empty((n, k), dtype=np.int64)
    for s in range(0, n, chunk):
        d = sq[s:s + chunk, None] - 2.0 * xt[s:s + chunk] @ xt.T + sq[None, :]
        rows = torch.arange(s, min(s + chunk, n))
        d[rows - s, rows] = float("inf")  # never one's own neighbour
        out[s:s + chunk] = torch.topk(d, k, dim=1, largest=False).indices.numpy()
    return out


def knn_divergence(embeddings: np.ndarray, probs: np.ndarray, k: int = CAL_NEIGHBOURS) -> np.ndarray:
    """Cal's score: mean over the ``k`` nearest neighbours of the symmetric KL
    ``(KL(p_i||p_j) + KL(p_j||p_i)) / 2`` between predicted distributions (Margatina et al. 2021)."""
    if len(embeddings) < 2:
        return np.zeros(len(embeddings))
    nn_idx = knn_indices(embeddings, k)
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None)
    logp = np.log(p)
    out = np.empty(len(p))
    for s in range(0, len(p), 4096):
        a, la = p[s:s + 4096, None, :], logp[s:s + 4096, None, :]
        b, lb = p[nn_idx[s:s + 4096]], logp[nn_idx[s:s + 4096]]
        out[s:s + 4096] = (0.5 * ((a - b) * (la - lb)).sum(-1)).mean(1)  # 0.5*(KL(a||b)+KL(b||a))
    return out


def softmax_np(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


@register_scorer("proxy_run", cal_neighbours=10)
def proxy_run(ctx: ScoreContext) -> dict[str, np.ndarray]:
    """One full proxy run: training dynamics (forgetting, AUM) and the final proxy's logits, embeddings and Cal
    score on the un-augmented training set (eval mode). Shared by every method that needs a trained proxy."""
    labels = ctx.labels.numpy()
    counter = ForgettingCounter(len(labels))
    margin_sum = np.zeros(len(labels))
    precision = ctx.proxy.train.precision
    epochs = [0]

    def hook(epoch: int, model: nn.Module) -> None:
        logits, _ = forward_train_set(model, ctx.data, ctx.device, precision)
        probs = softmax_np(logits.numpy())
        counter.update(probs.argmax(1) == labels)
        margin_sum[:] += probability_margin(probs, labels)
        epochs[0] = epoch

    model = train_proxy(ctx, 0, epoch_hook=hook)
    logits, embeds = forward_train_set(model, ctx.data, ctx.device, precision)
    logits, embeds = logits.numpy(), embeds.numpy()
    return {
        "forgetting": counter.counts, "ever_learned": counter.ever_learned,
        "aum": margin_sum / max(1, epochs[0]),
        "logits": logits.astype(np.float32), "embeddings": embeds.astype(np.float32),
        "cal_kl": knn_divergence(embeds, softmax_np(logits), int(ctx.params.get("cal_neighbours", CAL_NEIGHBOURS))),
        "lr": np.asarray(ctx.proxy.train.lr, dtype=np.float64),
    }


def gradient_factors(logits: np.ndarray, labels: np.ndarray, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Last-layer cross-entropy gradients as factors: sample i's gradient w.r.t. the head (bias, weight) is
    ``u_i ⊗ v_i`` with ``u_i = softmax(z_i) - onehot(y_i)`` (C) and ``v_i = [1, h_i]`` (D+1).

    (DeepCore applies the cross-entropy to softmax outputs, i.e. a double softmax; this is the true gradient.)
    """
    u = softmax_np(logits)
    u[np.arange(len(labels)), labels] -= 1.0
    v = np.concatenate([np.ones((len(embeddings), 1)), np.asarray(embeddings, dtype=np.float64)], axis=1)
    return u, v


def gradient_gram(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Gram matrix of the gradients ``u_i ⊗ v_i``: ``(u u^T) * (v v^T)`` without forming the gradients
    (float32 unless ``u`` is float64 and small)."""
    dtype = np.float64 if len(u) <= 2048 else np.float32
    u, v = np.asarray(u, dtype=dtype), np.asarray(v, dtype=dtype)
    gram = u @ u.T
    gram *= v @ v.T
    return gram


def gradient_matrix(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The gradients themselves: ``u ⊗ v`` flattened to (N, C*(D+1))."""
    return (u[:, :, None] * v[:, None, :]).reshape(len(u), -1)


def el2n_from_logits(logits: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> np.ndarray:
    """EL2N (Paul et al. 2021): ``|| softmax(z) - onehot(y) ||_2`` per sample."""
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    return (F.softmax(z, 1) - F.one_hot(y, z.shape[1]).double()).norm(dim=1).numpy()
