"""Score-based pruning: EL2N, GraNd, forgetting events and uncertainty (least confidence, entropy, margin).

Convention: a *high score means hard*; every method here keeps the hardest ``k`` samples (``keep_high``), ties
broken at random by the run's generator.

Protocols (see each method's docstring):

* EL2N and GraNd (scorers ``el2n_run``, ``grand_run``): ``ProxyConfig.n_models`` independently initialised
  proxies are trained with the full proxy recipe and stopped after epoch ``ProxyConfig.early_epoch`` (default a
  tenth of the run; Paul et al. use epoch 20 of 200 and 10 models; ``score_epoch: 0`` scores at
  initialisation); the scores are computed on un-augmented inputs in eval mode and averaged over the proxies.
  This is Paul et al.'s protocol, not CCS's (EL2N summed over epochs 0-9 of one augmented run). Both scorers
  train the same proxies (same seeds); they are separate so that EL2N alone does not pay for GraNd.
* GraNd is the **full-parameter** per-sample gradient norm of the cross-entropy (``torch.func`` vmap over
  ``grad``, BatchNorm in eval mode), not DeepCore's last-layer approximation.
* Forgetting and uncertainty use the shared ``proxy_run`` scorer (one full proxy run, see
  :mod:`kdlib.prune.proxy`).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from ..data import ImageData
from ..train import resolve_device
from .base import ScoreContext, register_method, register_scorer
from .proxy import el2n_from_logits, forward_train_set, proxy_run, softmax_np, train_proxy
from .selection import keep_high

NEVER_LEARNED = ("max", "zero")


def per_sample_grad_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 128) -> np.ndarray:
    """Full-parameter gradient norm ``||grad_theta CE(f(x_i), y_i)||_2`` per sample of the (normalised) inputs
    ``x`` (eval mode, fp32)."""
    return np.concatenate([_grad_norms(model, x[s:s + batch_size], y[s:s + batch_size])
                           for s in range(0, len(x), batch_size)])


def grand_scores(model: nn.Module, data: ImageData, labels: torch.Tensor, device: torch.device,
                 batch_size: int = 128) -> np.ndarray:
    """:func:`per_sample_grad_norms` over the un-augmented training set, normalising one batch at a time."""
    out = []
    for s in range(0, data.n_train, batch_size):
        xb = data.normalize(data.x_train[s:s + batch_size].to(device))
        out.append(_grad_norms(model, xb, labels[s:s + batch_size].to(device)))
    return np.concatenate(out)


def _grad_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    model.eval()
    params = {k: p.detach() for k, p in model.named_parameters()}
    buffers = {k: b.detach() for k, b in model.named_buffers()}

    def loss(p: dict, b: dict, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, (p, b), (xi[None],)), yi[None])

    g = vmap(grad(loss), in_dims=(None, None, 0, 0))(params, buffers, x, y)
    return torch.stack([v.flatten(1).pow(2).sum(1) for v in g.values()]).sum(0).sqrt().cpu().numpy()


def _early_proxies(ctx: ScoreContext) -> Iterator[nn.Module]:
    """The ``ctx.proxy.n_models`` early proxies: proxy ``m`` trained with the full recipe, stopped after epoch
    ``ctx.proxy.early_epoch`` (0: untrained)."""
    for m in range(ctx.proxy.n_models):
        yield train_proxy(ctx, m, stop_after=ctx.proxy.early_epoch)


@register_scorer("el2n_run")
def el2n_run(ctx: ScoreContext) -> dict[str, np.ndarray]:
    """EL2N at epoch ``ctx.proxy.early_epoch``, averaged over ``ctx.proxy.n_models`` independently initialised
    proxies (Paul et al. 2021), on un-augmented inputs in eval mode (fp32)."""
    device = resolve_device(ctx.device)
    el2n_ = np.zeros(ctx.data.n_train)
    for model in _early_proxies(ctx):
        logits, _ = forward_train_set(model, ctx.data, device, "fp32")
        el2n_ += el2n_from_logits(logits, ctx.labels)
    return {"el2n": el2n_ / ctx.proxy.n_models}


@register_scorer("grand_run")
def grand_run(ctx: ScoreContext) -> dict[str, np.ndarray]:
    """Full-parameter GraNd at epoch ``ctx.proxy.early_epoch``, averaged over the same ``n_models`` proxies as
    :func:`el2n_run` (same seeds, hence the same models), un-augmented inputs, eval mode, fp32."""
    device = resolve_device(ctx.device)
    grand_ = np.zeros(ctx.data.n_train)
    for model in _early_proxies(ctx):
        grand_ += grand_scores(model.to(memory_format=torch.contiguous_format), ctx.data, ctx.labels, device)
    return {"grand": grand_ / ctx.proxy.n_models}


@register_method("el2n", keeps="hardest", scorer=el2n_run)
def el2n(arrays: dict, labels: np.ndarray, k: int, rng: np.random.Generator,
         class_balanced: bool = False) -> np.ndarray:
    """EL2N (Paul et al., NeurIPS 2021): keeps the k samples with the largest ``||softmax(f(x)) - onehot(y)||_2``.

    Proxy: ``n_models`` proxies (proxy recipe, architecture ``proxy.model`` or the student's), each stopped after
    epoch ``proxy.early_epoch`` of its run, scored un-augmented in eval mode, averaged (Paul et al.'s protocol).
    """
    return keep_high(arrays["el2n"], labels, k, rng, class_balanced)


@register_method("grand", keeps="hardest", scorer=grand_run)
def grand(arrays: dict, labels: np.ndarray, k: int, rng: np.random.Generator,
          class_balanced: bool = False) -> np.ndarray:
    """GraNd (Paul et al., NeurIPS 2021): keeps the k samples with the largest per-sample gradient norm of the loss
    over **all** parameters (torch.func vmap+grad, eval mode; not DeepCore's last-layer version).

    Proxy: as EL2N (the same ``n_models`` proxies at epoch ``proxy.early_epoch``, retrained by its own scorer so
    that EL2N alone does not pay for per-sample gradients), averaged; ``proxy.score_epoch: 0`` gives GraNd at
    initialisation, Paul et al.'s headline protocol.
    """
    return keep_high(arrays["grand"], labels, k, rng, class_balanced)


def forgetting_scores(counts: np.ndarray, ever_learned: np.ndarray, never_learned: str = "max") -> np.ndarray:
    """Forgetting score per sample. ``never_learned="max"`` (Toneva et al.'s official code) ranks samples never
    classified correctly above every learned one (infinitely forgettable); ``"zero"`` (DeepCore, CCS) counts
    them as 0 events, i.e. among the easiest."""
    if never_learned not in NEVER_LEARNED:
        raise ValueError(f"unknown never_learned {never_learned!r}; allowed values: {', '.join(NEVER_LEARNED)}")
    scores = np.asarray(counts, dtype=np.float64).copy()
    ever = np.asarray(ever_learned, dtype=bool)
    scores[~ever] = (scores.max(initial=0.0) + 1.0) if never_learned == "max" else 0.0
    return scores


@register_method("forgetting", keeps="hardest", scorer=proxy_run)
def forgetting(arrays: dict, labels: np.ndarray, k: int, rng: np.random.Generator,
               class_balanced: bool = False) -> np.ndarray:
    """Forgetting events (Toneva et al., ICLR 2019): keeps the k most forgotten samples. A forgetting event is a
    correct-to-wrong transition between consecutive epochs, counted over the full proxy run from a pass over the
    un-augmented training set after each epoch. Never-learned samples count as the most forgettable (the
    official code's choice, which keeps noisy-label samples first); ``forgetting_zero`` is the other convention.

    Proxy: the shared ``proxy_run`` (one full run of the proxy recipe).
    """
    return keep_high(forgetting_scores(arrays["forgetting"], arrays["ever_learned"], "max"), labels, k, rng,
                     class_balanced)


@register_method("forgetting_zero", keeps="hardest", scorer=proxy_run)
def forgetting_zero(arrays: dict, labels: np.ndarray, k: int, rng: np.random.Generator,
                    class_balanced: bool = False) -> np.ndarray:
    """Forgetting events with never-learned samples counted as 0 events (DeepCore's and CCS's convention), so
    they rank with the unforgettable ones and are pruned first. Otherwise identical to ``forgetting``."""
    return keep_high(forgetting_scores(arrays["forgetting"], arrays["ever_learned"], "zero"), labels, k, rng,
                     class_balanced)


def least_confidence_score(probs: np.ndarray) -> np.ndarray:
    """``1 - max_c p_c``: high when the proxy is unsure."""
    return 1.0 - np.asarray(probs).max(1)


def entropy_score(probs: np.ndarray) -> np.ndarray:
    """``-sum_c p_c log p_c``: high when the proxy is unsure."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    return -(p * np.log(p)).sum(1)


def margin_score(probs: np.ndarray) -> np.ndarray:
    """``1 - (p_(1) - p_(2))`` (top-two gap reversed): high when the two most likely classes are close."""
    top2 = np.sort(np.asarray(probs), axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


_UNCERTAINTY_DOC = """Uncertainty sampling (Coleman et al., ICLR 2020, "Selection via Proxy"; as in DeepCore): keeps
    the k samples on which the final proxy is {what}, from its predicted distribution on the un-augmented training
    set in eval mode (the label is not used). High score = uncertain = hard; keeps the hardest.

    Proxy: the shared ``proxy_run`` (one full run of the proxy recipe)."""


def _uncertainty(name: str, score, what: str):
    def select(arrays: dict, labels: np.ndarray, k: int, rng: np.random.Generator,
               class_balanced: bool = False) -> np.ndarray:
        return keep_high(score(softmax_np(arrays["logits"])), labels, k, rng, class_balanced)

    select.__name__ = name
    select.__doc__ = _UNCERTAINTY_DOC.format(what=what)
    return register_method(name, keeps="hardest", scorer=proxy_run)(select)


least_confidence = _uncertainty("least_confidence", least_confidence_score,
                                "least confident (score 1 - max_c p_c)")
entropy = _uncertainty("entropy", entropy_score, "most uncertain (predictive entropy)")
margin = _uncertainty("margin", margin_score, "closest to a tie between its top two classes (score 1 - (p1 - p2))")
