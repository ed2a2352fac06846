"""Knowledge-distillation losses, as modules built from ``{"type": name, "params": {...}}`` (torchdistill style).

A loss is one function ``f(student_logits, teacher_logits, targets, alpha, tau, **params)`` registered with its
own hyperparameters and their defaults by ``@register_kd_loss(name, **params)``; ``build_kd_loss`` /
``make_kd_loss`` bind ``alpha``, ``tau`` and the params into a ``KDLoss`` module. The params are part of the run's
key (``RunConfig.kd_params`` overrides them). ``alpha`` keeps the project's convention on every loss: it weighs
the distillation term against cross-entropy, ``(1 - alpha) * CE + alpha * <distillation term>``, and the term
carries ``tau^2`` (unlike torchdistill, which puts alpha on CE).

* ``kd``: the paper's loss (Hinton et al. 2015, Ben-Baruch et al. 2025, Eq. 1):
  ``(1 - alpha) * CE(y, s) + alpha * tau^2 * KL(softmax(t / tau) || softmax(s / tau))``.
* ``dkd``: Decoupled KD (Zhao et al., CVPR 2022), see :func:`dkd_loss`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .registry import Registry, resolve_params
from .validate import check_positive, check_unit_interval

LossFunction = Callable[..., torch.Tensor]  # (s_logits, t_logits, targets, alpha, tau, **params) -> loss


@dataclass(frozen=True)
class KDLossSpec:
    """A registered KD loss: its function and its declared hyperparameters (defaults)."""

    name: str
    fn: LossFunction
    params: Mapping[str, Any] = field(default_factory=dict)
    doc: str = ""

    def hyperparameters(self, overrides: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
        """Every declared hyperparameter at its default or at ``overrides``."""
        return resolve_params("kd_params", f"kd_loss {self.name!r}", self.params, overrides)


KD_LOSSES: Registry[KDLossSpec] = Registry("KD loss", "kd_loss")


def register_kd_loss(name: str, **params: Any) -> Callable[[LossFunction], LossFunction]:
    """Decorator: registers the loss function under ``name`` with its hyperparameters' defaults."""
    def add(fn: LossFunction) -> LossFunction:
        KD_LOSSES.add(name, KDLossSpec(name, fn, dict(params), (fn.__doc__ or "").strip()))
        return fn

    return add


class KDLoss(nn.Module):
    """A registered loss with ``alpha``, ``tau`` and its hyperparameters bound: ``loss(s_logits, t_logits, y)``."""

    def __init__(self, spec: KDLossSpec, alpha: float, tau: float, params: Mapping[str, Any]) -> None:
        super().__init__()
        self.spec, self.alpha, self.tau, self.params = spec, alpha, tau, dict(params)

    def forward(self, student_logits: torch.Tensor, teacher_logits: Optional[torch.Tensor],
                targets: torch.Tensor) -> torch.Tensor:
        return self.spec.fn(student_logits, teacher_logits, targets, self.alpha, self.tau, **self.params)

    def extra_repr(self) -> str:
        return f"{self.spec.name}, alpha={self.alpha}, tau={self.tau}, params={self.params}"


def build_kd_loss(spec: Mapping[str, Any], alpha: float, tau: float) -> KDLoss:
    """The loss module of ``{"type": name, "params": {...}}`` with ``alpha`` and ``tau``, after validating them."""
    unknown = sorted(set(spec) - {"type", "params"})
    if unknown:
        raise ValueError(f"a KD loss spec has keys 'type' and 'params', got also {unknown}")
    entry = KD_LOSSES.get(spec.get("type", "kd"))
    alpha = check_unit_interval(alpha, "alpha")
    tau = check_positive(tau, "tau")
    return KDLoss(entry, alpha, tau, entry.hyperparameters(spec.get("params") or {}))


def make_kd_loss(name: str, alpha: float, tau: float, params: Optional[Mapping[str, Any]] = None) -> KDLoss:
    """The loss ``name`` with alpha, tau and ``params`` (overriding its declared defaults) bound."""
    return build_kd_loss({"type": name, "params": dict(params or {})}, alpha, tau)


def soft_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """Mean over the batch of ``KL(softmax(t/tau) || softmax(s/tau))`` (in fp32)."""
    log_p_s = F.log_softmax(student_logits.float() / tau, dim=1)
    log_p_t = F.log_softmax(teacher_logits.float() / tau, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)


def _mix(student_logits: torch.Tensor, targets: torch.Tensor, alpha: float, term: torch.Tensor) -> torch.Tensor:
    """``(1 - alpha) * CE + alpha * term`` (the term alone when alpha is 1)."""
    if alpha == 1.0:
        return term
    return (1.0 - alpha) * F.cross_entropy(student_logits.float(), targets) + alpha * term


def _needs_teacher(name: str, teacher_logits: Optional[torch.Tensor]) -> torch.Tensor:
    if teacher_logits is None:
        raise ValueError(f"{name} with alpha > 0 needs teacher_logits")
    return teacher_logits


@register_kd_loss("kd")
def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: Optional[torch.Tensor],
    targets: torch.Tensor,
    alpha: float,
    tau: float = 4.0,
) -> torch.Tensor:
    """``(1-alpha)*CE + alpha*tau^2*KL``; with ``alpha == 0`` it is exactly cross-entropy and needs no teacher."""
    if alpha == 0.0:
        return F.cross_entropy(student_logits.float(), targets)
    kd = soft_kl(student_logits, _needs_teacher("kd_loss", teacher_logits), tau) * tau * tau
    return _mix(student_logits, targets, alpha, kd)


@register_kd_loss("dkd", tckd_weight=1.0, beta=8.0)
def dkd_loss(
    student_logits: torch.Tensor,
    teacher_logits: Optional[torch.Tensor],
    targets: torch.Tensor,
    alpha: float,
    tau: float = 4.0,
    tckd_weight: float = 1.0,
    beta: float = 8.0,
) -> torch.Tensor:
    """Decoupled KD (Zhao et al., CVPR 2022): ``(1-alpha)*CE + alpha*tau^2*(tckd_weight*TCKD + beta*NCKD)``.

    TCKD is the KL divergence between teacher and student binary distributions (target class vs all others) and
    NCKD the KL divergence between their distributions over the non-target classes, all at temperature ``tau``.
    ``tckd_weight`` and ``beta`` are the paper's alpha and beta (CIFAR defaults 1 and 8; the paper's ``alpha`` is
    renamed so that ``alpha`` keeps its project meaning, the weight of the distillation term against CE). The
    paper adds its terms to a full-weight CE: its loss is ours at ``alpha=0.5`` times 2 (a doubled learning rate).
    Not included: the paper's linear warm-up of the distillation weight over the first 20 epochs.
    """
    if alpha == 0.0:
        return F.cross_entropy(student_logits.float(), targets)
    t = _needs_teacher("dkd_loss", teacher_logits).float() / tau
    s = student_logits.float() / tau
    target = F.one_hot(targets, s.shape[1]).bool()
    p_s, p_t = F.softmax(s, 1), F.softmax(t, 1)
    b_s = torch.stack([p_s[target], 1.0 - p_s[target]], 1).clamp_min(1e-12)
    b_t = torch.stack([p_t[target], 1.0 - p_t[target]], 1).clamp_min(1e-12)
    tckd = (b_t * (b_t.log() - b_s.log())).sum(1).mean()
    masked = torch.finfo(torch.float32).min
    log_q_s = F.log_softmax(s.masked_fill(target, masked), 1).masked_fill(target, 0.0)
    log_q_t = F.log_softmax(t.masked_fill(target, masked), 1).masked_fill(target, 0.0)
    nckd = (log_q_t.exp() * (log_q_t - log_q_s)).sum(1).mean()
    return _mix(student_logits, targets, alpha, tau * tau * (tckd_weight * tckd + beta * nckd))


def kd_loss_stacked(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                    alpha: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """``kd_loss`` of K students at once: logits (N, K, C), targets (N, K), alpha and tau (K,); one loss per
    student (K,), each equal to ``kd_loss`` of its slices up to float rounding. A student with alpha 0 gets
    cross-entropy (its teacher logits are ignored: any finite values)."""
    s = student_logits.float()
    ce = F.cross_entropy(s.permute(0, 2, 1), targets, reduction="none").mean(0)
    t = tau.to(s)[None, :, None]
    log_p_s = F.log_softmax(s / t, dim=2)
    log_p_t = F.log_softmax(teacher_logits.float() / t, dim=2)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(2).mean(0) * tau.to(s) ** 2
    a = alpha.to(s)
    return torch.where(a == 0, ce, torch.where(a == 1, kl, (1 - a) * ce + a * kl))
