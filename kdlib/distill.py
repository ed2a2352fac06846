"""Knowledge-distillation losses.

The paper's loss (Hinton et al. 2015, Ben-Baruch et al. 2025, Eq. 1):
``(1 - alpha) * CE(y, s) + alpha * tau^2 * KL(softmax(t / tau) || softmax(s / tau))``.
``alpha`` always multiplies the KD term, always with ``tau^2`` (unlike torchdistill, which puts alpha on CE).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from .registry import Registry
from .validate import check_positive, check_unit_interval

KDLoss = Callable[[torch.Tensor, Optional[torch.Tensor], torch.Tensor, float, float], torch.Tensor]
KD_LOSSES: Registry[KDLoss] = Registry("KD loss", "kd_loss")


def soft_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """Mean over the batch of ``KL(softmax(t/tau) || softmax(s/tau))`` (in fp32)."""
    log_p_s = F.log_softmax(student_logits.float() / tau, dim=1)
    log_p_t = F.log_softmax(teacher_logits.float() / tau, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)


@KD_LOSSES.register("kd")
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
    if teacher_logits is None:
        raise ValueError("kd_loss with alpha > 0 needs teacher_logits")
    kd = soft_kl(student_logits, teacher_logits, tau) * tau * tau
    if alpha == 1.0:
        return kd
    return (1.0 - alpha) * F.cross_entropy(student_logits.float(), targets) + alpha * kd


def make_kd_loss(name: str, alpha: float, tau: float) -> Callable[[torch.Tensor, Optional[torch.Tensor], torch.Tensor], torch.Tensor]:
    """The loss ``name`` with alpha and tau bound, after validating them."""
    fn = KD_LOSSES.get(name)
    alpha = check_unit_interval(alpha, "alpha")
    tau = check_positive(tau, "tau")
    return lambda s, t, y: fn(s, t, y, alpha, tau)
