"""One training loop for teachers, students and pruning proxies.

Data stay in memory as uint8 tensors on the training device; each batch is gathered, augmented and normalised
as a whole (``kdlib.augment``), so there is no DataLoader, no PIL and no worker process.
"""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from functools import partial
from typing import Callable, Iterable, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .augment import augment
from .data import ImageData
from .precision import PRECISIONS, needs_loss_scaler, resolve_precision
from .validate import check_bool, check_choice, check_fields, check_number, check_positive, normalise

SCHEDULES = ("step", "cosine", "onecycle", "constant")
BUDGETS = ("epochs", "steps")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run stops instead of reporting a garbage accuracy."""


@dataclass(frozen=True)
class TrainConfig:
    """A training recipe. The defaults are the paper's CIFAR recipe (Ben-Baruch et al. 2025, Sec. 5).

    ``milestones`` are fractions of the run (150/180/210 of 240 epochs), so the step schedule scales with
    ``epochs``. ``budget="epochs"`` trains ``epochs`` passes over the kept subset (the paper's rule);
    ``budget="steps"`` trains as many optimiser steps as ``epochs`` passes over the full training set.
    ``min_steps`` (default 0) is a floor on the optimiser steps under either rule, in whole epochs over the
    subset: scaled-down recipes otherwise give a tiny subset a handful of steps, far from the paper's regime where
    240 epochs fit even a 10% subset.
    """

    epochs: int = 240
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "step"
    milestones: tuple[float, ...] = (150 / 240, 180 / 240, 210 / 240)
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    budget: str = "epochs"
    min_steps: int = 0
    precision: str = "auto"
    channels_last: bool = True
    augment: bool = True
    eval_every: int = 1

    def __post_init__(self) -> None:
        normalise(self, {
            "epochs": partial(check_positive, integer=True),
            "batch_size": partial(check_positive, integer=True),
            "lr": check_positive,
            "momentum": partial(check_number, low=0),
            "weight_decay": partial(check_number, low=0),
            "nesterov": check_bool,
            "schedule": partial(check_choice, allowed=SCHEDULES),
            "milestones": _check_milestones,
            "gamma": check_positive,
            "warmup_epochs": partial(check_number, low=0),
            "budget": partial(check_choice, allowed=BUDGETS),
            "min_steps": partial(check_number, integer=True, low=0),
            "precision": partial(check_choice, allowed=PRECISIONS),
            "channels_last": check_bool,
            "augment": check_bool,
            "eval_every": partial(check_positive, integer=True),
        })
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0 (Nesterov momentum without momentum is undefined), "
                             "got momentum=0.0")

    @classmethod
    def from_dict(cls, d: Mapping) -> "TrainConfig":
        """Builds a recipe from a plain dict, naming any unknown key."""
        if not isinstance(d, Mapping):
            raise ValueError(f"train parameters must be a mapping of names to values, got {d!r}")
        check_fields(d, cls, "train parameter(s)")
        return cls(**d)


def _check_milestones(value: object, parameter: str) -> tuple[float, ...]:
    """Fractions of the run in (0, 1), as a sorted tuple of floats (the step schedule does not depend on order)."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise ValueError(f"{parameter} must be a list of fractions of the run in (0, 1), got {value!r}")
    try:
        return tuple(sorted(check_number(m, parameter, low=0, high=1, low_open=True, high_open=True) for m in value))
    except ValueError:
        raise ValueError(f"{parameter} must be fractions of the run in (0, 1), got {value!r}") from None


@dataclass
class TrainResult:
    """What one training run measured. ``final_acc`` is the headline (no selection on the test set)."""

    final_acc: float
    best_acc: float
    best_epoch: int
    curve: list[tuple[int, float]]
    losses: list[float]
    epochs: int
    steps: int
    train_seconds: float
    wall_seconds: float
    images_per_sec: float
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` means CUDA when available, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast_context(device: torch.device, precision: str):
    """Autocast for the precision the run resolves to on ``device`` (``kdlib.precision``): bf16 on a CPU that
    computes it natively (``auto``) or when asked, bf16/fp16 AMP on CUDA, nothing for fp32."""
    resolved = resolve_precision(precision, device)
    if resolved == "fp32" or device.type not in ("cpu", "cuda"):
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if resolved == "fp16" else torch.bfloat16)


def make_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A loss scaler, enabled only when the run resolves to fp16 on CUDA (a pass-through otherwise)."""
    return torch.amp.GradScaler("cuda", enabled=needs_loss_scaler(precision, device))


def kd_step(model: nn.Module, teacher: Optional[nn.Module], x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn,
            optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, device: torch.device,
            precision: str) -> torch.Tensor:
    """One optimiser step on a batch: the teacher's forward (when given, without gradients), the student's, the
    loss, backward and the update; returns the detached loss."""
    with autocast_context(device, precision):
        t_logits = None
        if teacher is not None:
            with torch.no_grad():
                t_logits = teacher(x)
        s_logits = model(x)
    loss = loss_fn(s_logits, t_logits, y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def total_steps(cfg: TrainConfig, n_subset: int, n_full: int,
                steps_per_epoch: Optional[int] = None) -> tuple[int, int]:
    """(epochs over the subset, optimiser steps) under the recipe's budget rule and ``min_steps`` floor.

    ``steps_per_epoch`` defaults to ``ceil(n_subset / batch_size)`` (a loader that drops the last batch passes its own).
    """
    steps_per_epoch = steps_per_epoch or max(1, math.ceil(n_subset / cfg.batch_size))
    if cfg.budget == "epochs":
        epochs, steps = cfg.epochs, cfg.epochs * steps_per_epoch
    else:
        steps = cfg.epochs * max(1, math.ceil(n_full / cfg.batch_size))
        epochs = math.ceil(steps / steps_per_epoch)
    if steps < cfg.min_steps:
        epochs = math.ceil(cfg.min_steps / steps_per_epoch)
        steps = epochs * steps_per_epoch
    return epochs, steps


def lr_factor(cfg: TrainConfig, step: int, n_steps: int) -> float:
    """Multiplier of the base learning rate at ``step`` of ``n_steps`` (with optional linear warm-up)."""
    t = step / max(1, n_steps)
    warm = cfg.warmup_epochs / max(1, cfg.epochs)
    if warm > 0 and t < warm:
        return (step + 1) / max(1.0, warm * n_steps)
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "step":
        return cfg.gamma ** sum(t >= m for m in cfg.milestones)
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    # one-cycle: linear up to the peak over the first 30%, then linear down to zero
    return t / 0.3 if t < 0.3 else max(0.0, (1.0 - t) / 0.7)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with momentum; weight decay on every parameter, as in the paper's recipe.

    Uses the fused kernel (one pass over all parameters instead of a few small ops per tensor; the same update
    up to float rounding) where this torch build has one for the parameters' device, else the default.
    """
    params = list(model.parameters())
    kwargs = dict(lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    try:
        return torch.optim.SGD(params, fused=True, **kwargs)
    except (RuntimeError, ValueError, TypeError):
        return torch.optim.SGD(params, **kwargs)


def inference_copy(model: nn.Module, memory_format: torch.memory_format = torch.contiguous_format) -> nn.Module:
    """A forward-only, eval-mode copy of ``model`` with each BatchNorm folded into the convolution before it
    (``torch.fx`` conv-BN fusion): the same function up to float rounding, ~1.6x faster as a CPU teacher.
    ``model`` itself (in eval mode) when it cannot be traced. ``model`` is never modified beyond ``.eval()``.
    """
    model.eval()
    try:
        from torch.fx.experimental.optimization import fuse

        fused = fuse(model, inplace=False)
    except Exception:  # not symbolically traceable: run it as it is
        return model
    return fused.to(memory_format=memory_format).eval()


def epoch_batches(indices: torch.Tensor, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled batches of ``indices``; a trailing batch of one sample is folded into the previous one (BatchNorm)."""
    perm = indices[torch.randperm(len(indices), generator=generator, device=indices.device)]
    starts = list(range(0, len(perm), batch_size))
    if len(starts) > 1 and len(perm) - starts[-1] == 1:
        starts.pop()
    for i, s in enumerate(starts):
        e = starts[i + 1] if i + 1 < len(starts) else len(perm)
        yield perm[s:e]


@torch.no_grad()
def predict_logits(model: nn.Module, data: ImageData, split: str = "test", indices: Optional[np.ndarray] = None,
                   batch_size: int = 1024, device: str | torch.device = "auto", precision: str = "auto",
                   channels_last: bool = True) -> torch.Tensor:
    """Logits (fp32, on CPU) of un-augmented inputs in eval mode for ``split`` ('train' or 'test')."""
    device = resolve_device(device)
    x_all = data.x_train if split == "train" else data.x_test
    idx = torch.arange(len(x_all)) if indices is None else torch.as_tensor(indices)
    was_training = model.training
    model.eval()
    out = []
    for s in range(0, len(idx), batch_size):
        xb = data.normalize(x_all[idx[s:s + batch_size]].to(device))
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with autocast_context(device, precision):
            out.append(model(xb).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, data.num_classes)


def evaluate(model: nn.Module, data: ImageData, device: str | torch.device = "auto", precision: str = "auto",
             channels_last: bool = True) -> float:
    """Top-1 test accuracy in percent."""
    logits = predict_logits(model, data, "test", device=device, precision=precision, channels_last=channels_last)
    return 100.0 * (logits.argmax(1) == data.y_test).float().mean().item()


def training_tensors(data: ImageData, indices: Optional[Sequence[int] | np.ndarray],
                     labels: Optional[torch.Tensor], device: torch.device
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(kept indices, uint8 images, labels) on ``device``: ``indices`` default to every training sample and
    ``labels`` (e.g. noisy ones) to ``data.y_train``; fewer than 2 samples is an error (BatchNorm)."""
    idx = torch.arange(data.n_train) if indices is None else torch.as_tensor(np.asarray(indices), dtype=torch.long)
    if len(idx) < 2:
        raise ValueError(f"need at least 2 training samples, got {len(idx)}")
    y = data.y_train if labels is None else labels
    return idx.to(device), data.x_train.to(device), y.to(device)


LossFn = Callable[[torch.Tensor, Optional[torch.Tensor], torch.Tensor], torch.Tensor]
EpochHook = Callable[[int, nn.Module], None]


def train(
    model: nn.Module,
    data: ImageData,
    cfg: TrainConfig,
    *,
    indices: Optional[Sequence[int] | np.ndarray] = None,
    labels: Optional[torch.Tensor] = None,
    loss_fn: Optional[LossFn] = None,
    teacher: Optional[nn.Module] = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: bool = True,
    desc: str = "train",
    evaluate_test: bool = True,
    epoch_hook: Optional[EpochHook] = None,
    checkpoint: Optional[Path] = None,
) -> TrainResult:
    """Trains ``model`` in place on ``data`` (rows ``indices``, default all) and returns what it measured.

    ``loss_fn(student_logits, teacher_logits, y)`` defaults to cross-entropy; the teacher's forward pass runs
    on the same augmented batch only when ``teacher`` is given. ``labels`` overrides ``data.y_train`` (label
    noise). ``epoch_hook(epoch, model)`` runs after each epoch (proxy scoring). ``checkpoint`` is a file where
    the loop saves its state each epoch and from which an interrupted run resumes.
    """
    from .distill import kd_loss  # local import keeps the module graph acyclic

    wall0 = time.perf_counter()
    device = resolve_device(device)
    loss_fn = loss_fn or (lambda s, t, y: kd_loss(s, t, y, 0.0))
    idx, x_train, y_train = training_tensors(data, indices, labels, device)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(device=device, memory_format=memory_format).train()
    if teacher is not None:  # BatchNorm folded into the convolutions: a cheaper teacher forward, same outputs
        teacher = inference_copy(teacher.to(device=device, memory_format=memory_format), memory_format)
    optimizer = make_optimizer(model, cfg)
    scaler = make_scaler(device, cfg.precision)
    n_epochs, n_steps = total_steps(cfg, len(idx), data.n_train)

    state = {"epoch": 0, "step": 0, "curve": [], "losses": [], "train_seconds": 0.0, "images": 0}
    if checkpoint is not None and Path(checkpoint).exists():
        saved = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if "scaler" in saved:  # the fp16 loss scale goes on from where it was, as in the DDP loop
            scaler.load_state_dict(saved["scaler"])
        state = saved["state"]

    bar = tqdm(total=n_epochs, initial=state["epoch"], desc=desc, disable=not progress, leave=False)
    for epoch in range(state["epoch"], n_epochs):
        gen = torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch)
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        n_batches = 0
        for batch in epoch_batches(idx, cfg.batch_size, gen):
            step = state["step"]
            if step >= n_steps:
                break
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * lr_factor(cfg, step, n_steps)
            xb = x_train[batch]
            if cfg.augment:
                xb = augment(xb, data.crop_padding, data.flip, gen)
            xb = data.normalize(xb).contiguous(memory_format=memory_format)
            yb = y_train[batch]
            loss_sum += kd_step(model, teacher, xb, yb, loss_fn, optimizer, scaler, device, cfg.precision)
            n_batches += 1
            state["step"] = step + 1
            state["images"] += len(batch)
        mean_loss = (loss_sum / max(1, n_batches)).item()
        state["train_seconds"] += time.perf_counter() - t0
        if not math.isfinite(mean_loss):
            bar.close()
            raise TrainingDiverged(f"{desc}: loss became {mean_loss} in epoch {epoch + 1} (lr={cfg.lr}); stopping")
        state["losses"].append(mean_loss)
        state["epoch"] = epoch + 1
        last = epoch + 1 == n_epochs
        if evaluate_test and ((epoch + 1) % cfg.eval_every == 0 or last):
            acc = evaluate(model, data, device, cfg.precision, cfg.channels_last)
            state["curve"].append((epoch + 1, acc))
            bar.set_postfix(loss=f"{mean_loss:.3f}", acc=f"{acc:.2f}")
        if epoch_hook is not None:
            epoch_hook(epoch + 1, model)
        if checkpoint is not None and not last:
            tmp = Path(checkpoint).with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scaler": scaler.state_dict(), "state": state}, tmp)
            tmp.replace(checkpoint)
        bar.update(1)
    bar.close()
    if checkpoint is not None and Path(checkpoint).exists():
        Path(checkpoint).unlink()

    curve = [(int(e), float(a)) for e, a in state["curve"]]
    final_acc = curve[-1][1] if curve else float("nan")
    best_epoch, best_acc = max(curve, key=lambda c: c[1]) if curve else (0, float("nan"))
    return TrainResult(
        final_acc=final_acc, best_acc=best_acc, best_epoch=best_epoch, curve=curve, losses=state["losses"],
        epochs=n_epochs, steps=state["step"], train_seconds=state["train_seconds"],
        wall_seconds=time.perf_counter() - wall0,
        images_per_sec=state["images"] / max(1e-9, state["train_seconds"]),
    )
