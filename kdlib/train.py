"""The one training loop of kdlib and its parts, for teachers, students, pruning proxies, groups and DDP runs.

``run_loop`` owns the schedule, the epoch's losses, divergence detection, evaluation, ``epoch_hook`` and
checkpoint/resume; what varies is plugged in: a *batch source* (``MemoryBatches``: in-memory uint8 tensors
gathered, augmented and normalised as whole batches on the device, optionally sharded over DDP processes;
``kdlib.imagenet.FolderSource``: a DataLoader over an image folder; ``kdlib.grouped.GroupBatches``: each member of a
group on its own stream) and a *step* (``ModelSteps``: one model, or K models each with its optimiser and loss
scaler, teachers as BatchNorm-folded inference copies; ``kdlib.grouped.StackedSteps``: K models as one wide
network). ``train`` is the single-model case.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from functools import partial
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .augment import augment
from .data import ImageData
from .precision import PRECISIONS, needs_loss_scaler, resolve_precision, set_math_mode
from .processes import ProcessGroup
from .seeds import epoch_generator
from .stack import stack_inputs, stack_models
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
EpochHook = Callable[[int, Any], None]


def diverged_message(desc: str, loss: float, epoch: int, lr: float) -> str:
    """The one wording of a diverged run (``epoch`` is 1-based)."""
    return f"{desc}: loss became {loss} in epoch {epoch} (lr={lr}); stopping"


def cross_entropy_loss(s: torch.Tensor, t: Optional[torch.Tensor], y: torch.Tensor) -> torch.Tensor:
    """The default loss: plain cross-entropy in fp32 (the teacher's logits are ignored)."""
    return F.cross_entropy(s.float(), y)


# ----------------------------------------------------------------------------------------------- checkpoints
class CheckpointSlot(Protocol):
    """Where the loop keeps its state between epochs: tensors and plain values only (``weights_only`` loads)."""

    def load(self, map_location: Any) -> Optional[dict]: ...

    def save(self, state: dict, epoch: int) -> None: ...

    def clear(self) -> None: ...


@dataclass
class FileCheckpoint:
    """A checkpoint in one file, replaced atomically each epoch and loaded with ``weights_only=True``."""

    path: Path

    def load(self, map_location: Any) -> Optional[dict]:
        path = Path(self.path)
        return torch.load(path, map_location=map_location, weights_only=True) if path.exists() else None

    def save(self, state: dict, epoch: int) -> None:
        tmp = Path(self.path).with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.path)

    def clear(self) -> None:
        Path(self.path).unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------- batch sources
class BatchSource(Protocol):
    """Where a loop's batches come from: ``epoch(e)`` yields (normalised x, y, images in the global batch);
    ``evaluate`` scores a model on the test split; ``mean_losses`` turns this process's per-student loss sums
    into epoch means (summed over processes under DDP)."""

    n_kept: int
    n_full: int
    steps_per_epoch: Optional[int]

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]: ...

    def evaluate(self, model: nn.Module, precision: str) -> float: ...

    def mean_losses(self, loss_sum: torch.Tensor, n_batches: int) -> list[float]: ...


class MemoryBatches:
    """Batches of an in-memory ``ImageData``: the kept rows shuffled, augmented and normalised as whole batches
    on the device (``kdlib.augment``), from a generator seeded per epoch (``kdlib.seeds.epoch_generator``).

    With ``world > 1`` (DDP) every process draws the same global batch and keeps rows ``rank::world``, so the
    processes together see exactly the batches one process would, and batches too small to share are skipped.
    """

    def __init__(self, data: ImageData, cfg: TrainConfig, seed: int, device: torch.device,
                 indices: Optional[Sequence[int] | np.ndarray] = None, labels: Optional[torch.Tensor] = None,
                 rank: int = 0, world: int = 1) -> None:
        if world > 1 and cfg.batch_size % world:
            raise ValueError(f"batch_size {cfg.batch_size} (total over processes) is not divisible by the "
                             f"{world} processes")
        self.data, self.cfg, self.seed, self.device, self.rank, self.world = data, cfg, seed, device, rank, world
        self.idx, self.x_train, self.y_train = training_tensors(data, indices, labels, device)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.n_kept, self.n_full = len(self.idx), data.n_train
        self.per_rank = cfg.batch_size // world
        self.steps_per_epoch = None  # ceil(n_kept / batch_size), the budget rule's default
        if world > 1:
            gen = epoch_generator(seed, 0, device)
            self.steps_per_epoch = sum(len(b) >= world for b in epoch_batches(self.idx, cfg.batch_size, gen))
            if self.steps_per_epoch < 1:
                raise ValueError(f"{self.n_kept} kept samples are fewer than one batch over {world} processes")

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        gen = epoch_generator(self.seed, epoch, self.device)
        data = self.data
        for batch in epoch_batches(self.idx, self.cfg.batch_size, gen):
            if len(batch) < self.world:
                continue
            xb = self.x_train[batch]
            if self.cfg.augment:
                xb = augment(xb, data.crop_padding, data.flip, gen)
            yb = self.y_train[batch]
            if self.world > 1:
                xb, yb = xb[self.rank::self.world], yb[self.rank::self.world]
            yield data.normalize(xb).contiguous(memory_format=self.memory_format), yb, len(batch)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, precision: str) -> float:
        if self.world == 1:
            return evaluate(model, self.data, self.device, precision, self.cfg.channels_last)
        for b in model.buffers():  # BatchNorm statistics are per process: rank 0's are the model's
            torch.distributed.broadcast(b, 0)
        rows = torch.arange(self.rank, len(self.data.y_test), self.world)
        logits = predict_logits(model, _rows_of_test(self.data, rows), "test", device=self.device,
                                precision=precision, channels_last=self.cfg.channels_last)
        counts = torch.tensor([(logits.argmax(1) == self.data.y_test[rows]).sum().item(), len(rows)],
                              dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(counts)
        return 100.0 * float(counts[0] / counts[1].clamp_min(1))

    def mean_losses(self, loss_sum: torch.Tensor, n_batches: int) -> list[float]:
        return mean_losses(loss_sum, n_batches, self.world)


def batch_source(data: Any, cfg: TrainConfig, seed: int, group: ProcessGroup,
                 indices: Optional[Sequence[int] | np.ndarray] = None,
                 labels: Optional[torch.Tensor] = None) -> BatchSource:
    """The batches of ``data`` for a run: ``MemoryBatches`` for an in-memory ``ImageData``; a streamed dataset
    (``kdlib.imagenet.FolderData``) brings its own (``data.batches``)."""
    if isinstance(data, ImageData):
        return MemoryBatches(data, cfg, seed, group.device, indices, labels, group.rank, group.world)
    return data.batches(cfg, seed, group, indices, labels)


def held_out_accuracy(model: nn.Module, data: Any, group: ProcessGroup, precision: str = "auto") -> float:
    """Top-1 accuracy (%) of ``model`` on the test split of ``data`` (in memory, or a streamed folder's val)."""
    model.to(group.device)
    if isinstance(data, ImageData):
        return evaluate(model, data, group.device, precision)
    return data.evaluator(group).evaluate(model, precision)


def _rows_of_test(data: ImageData, rows: torch.Tensor) -> ImageData:
    """``data`` with only the test rows ``rows`` (a view for sharded evaluation)."""
    return dataclasses.replace(data, x_test=data.x_test[rows], y_test=data.y_test[rows])


def mean_losses(loss_sum: torch.Tensor, n_batches: int, world: int = 1) -> list[float]:
    """Epoch means of per-student loss sums; under DDP the sums and counts of every process are added first."""
    if world == 1:
        return (loss_sum / max(1, n_batches)).tolist()
    both = torch.cat([loss_sum.double(), torch.tensor([float(n_batches)], dtype=torch.float64,
                                                      device=loss_sum.device)])
    torch.distributed.all_reduce(both)
    return (both[:-1] / both[-1].clamp_min(1)).tolist()


# ----------------------------------------------------------------------------------------------- steps
class Step(Protocol):
    """How one optimiser step is taken on a batch for K students (K = 1 for a single run); ``step`` returns the
    losses of the ``active`` students, in that order."""

    k: int
    models: list[nn.Module]

    def set_lr(self, lr: float) -> None: ...

    def step(self, xb: Any, yb: Any, active: list[int]) -> torch.Tensor: ...

    def evaluate(self, source: BatchSource, active: list[int]) -> list[float]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...

    def close(self) -> None: ...


class Teachers:
    """The teachers of K students as forward-only inference copies (BatchNorm folded), each run once a batch per
    distinct (teacher, stream) pair: student i reads stream ``stream_of[i]`` (default: all one stream, as in a
    single run or DDP). With ``stack`` the pairs of one architecture run as one wide network (``kdlib.stack``;
    ``example``: a few inputs it is checked on). ``models`` are the distinct teachers' inference copies."""

    def __init__(self, teachers: Sequence[Optional[nn.Module]], device: torch.device,
                 memory_format: torch.memory_format, stream_of: Optional[Sequence[int]] = None, stack: bool = False,
                 example: Optional[torch.Tensor] = None) -> None:
        self.memory_format = memory_format
        stream_of = [0] * len(teachers) if stream_of is None else stream_of
        distinct: list[nn.Module] = []
        pairs: list[tuple[int, int]] = []
        self.pair_of: list[Optional[int]] = []
        for t, s in zip(teachers, stream_of):
            if t is None:
                self.pair_of.append(None)
                continue
            tid = next((i for i, d in enumerate(distinct) if d is t), None)
            if tid is None:
                tid = len(distinct)
                distinct.append(t)
            if (tid, s) not in pairs:
                pairs.append((tid, s))
            self.pair_of.append(pairs.index((tid, s)))
        self.models = copies = [inference_copy(t.to(device=device, memory_format=memory_format), memory_format)
                                for t in distinct]
        # runs: (wide network or None, [pair indices], [streams]); a wide one covers pairs of one architecture
        self.runs: list[tuple[nn.Module, list[int], list[int]]] = []
        by_arch: dict[tuple, list[int]] = {}
        for p, (tid, _) in enumerate(pairs):
            arch = tuple((k, tuple(v.shape)) for k, v in distinct[tid].state_dict().items())
            by_arch.setdefault((type(distinct[tid]), arch), []).append(p)
        for members in by_arch.values():
            nets = [copies[pairs[p][0]] for p in members]
            wide = None
            if stack and len(members) > 1:
                for candidates in (nets, [distinct[pairs[p][0]].eval() for p in members]):  # folded, else as is
                    try:
                        wide = stack_models(candidates, example).to(device=device, memory_format=memory_format)
                        break
                    except (ValueError, RuntimeError, AttributeError, TypeError):
                        wide = None
            if wide is not None:
                self.runs.append((wide.eval(), members, [pairs[p][1] for p in members]))
            else:
                self.runs += [(nets[j], [p], [pairs[p][1]]) for j, p in enumerate(members)]
        self.n_pairs = len(pairs)
        self.stacked = any(len(m) > 1 for _, m, _ in self.runs)

    def logits(self, x: torch.Tensor, device: torch.device, precision: str) -> list[Optional[torch.Tensor]]:
        """Each student's teacher logits on its stream's batch ``x[stream]`` (None for a student without one);
        ``x`` is (S, N, C, H, W), one batch per stream."""
        if not self.runs:
            return [None] * len(self.pair_of)
        out: list[Optional[torch.Tensor]] = [None] * self.n_pairs
        with autocast_context(device, precision), torch.no_grad():
            for net, members, streams in self.runs:
                if len(members) == 1:
                    out[members[0]] = net(x[streams[0]].contiguous(memory_format=self.memory_format))
                    continue
                logits = net(stack_inputs(x, streams, self.memory_format)).reshape(x.shape[1], len(members), -1)
                for j, p in enumerate(members):
                    out[p] = logits[:, j]
        return [None if p is None else out[p] for p in self.pair_of]


class ModelSteps:
    """K models, each with its own optimiser and loss scaler, stepped one after another on each batch (in this
    thread, or spread over ``threads`` worker threads running one-core ops). ``nets`` are the modules that run
    the forward pass: ``wrap(model)`` (a DDP wrapper that all-reduces the gradients; default the model itself)."""

    def __init__(self, models: Sequence[nn.Module], loss_fns: Sequence[Optional[LossFn]],
                 teachers: Sequence[Optional[nn.Module]], cfg: TrainConfig, device: torch.device, threads: int = 1,
                 wrap: Optional[Callable[[nn.Module], nn.Module]] = None,
                 stream_of: Optional[Sequence[int]] = None) -> None:
        self.k, self.models, self.cfg, self.device = len(models), list(models), cfg, device
        if len(loss_fns) != self.k:
            raise ValueError(f"need one loss_fn per model: {len(loss_fns)} for {self.k} models")
        if len(teachers) != self.k:
            raise ValueError(f"need one teacher (or None) per model: {len(teachers)} for {self.k} models")
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        for m in self.models:
            m.to(device=device, memory_format=self.memory_format).train()
        self.nets = [wrap(m) for m in self.models] if wrap is not None else self.models
        self.loss_fns = [fn or cross_entropy_loss for fn in loss_fns]
        self.teachers = Teachers(teachers, device, self.memory_format, stream_of)
        self.optimizers = [make_optimizer(m, cfg) for m in self.models]
        self.scalers = [make_scaler(device, cfg.precision) for _ in self.models]
        self.threads = max(1, min(int(threads), self.k))
        self.pool = None
        if self.threads > 1:  # each worker runs its students' ops on one core: better than 2-thread small ops
            from concurrent.futures import ThreadPoolExecutor

            self.outer_threads = torch.get_num_threads()
            self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="kdlib-step",
                                           initializer=torch.set_num_threads, initargs=(1,))

    def set_lr(self, lr: float) -> None:
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = lr

    def step_one(self, i: int, xb: torch.Tensor, t_logits: Optional[torch.Tensor], yb: torch.Tensor) -> torch.Tensor:
        """Model i's optimiser step on its batch (and its teacher's logits); its loss, detached."""
        with autocast_context(self.device, self.cfg.precision):  # autocast state is per thread
            s_logits = self.nets[i](xb)
        loss = self.loss_fns[i](s_logits, t_logits, yb)
        self.optimizers[i].zero_grad(set_to_none=True)
        scaler = self.scalers[i]
        scaler.scale(loss).backward()
        scaler.step(self.optimizers[i])
        scaler.update()
        return loss.detach()

    def map(self, one: Callable[[int], torch.Tensor], active: list[int]) -> torch.Tensor:
        """``one(i)`` for each active model (on the worker threads when there are some), as one tensor."""
        return torch.stack(list(self.pool.map(one, active) if self.pool else map(one, active)))

    def step(self, xb: torch.Tensor, yb: torch.Tensor, active: list[int]) -> torch.Tensor:
        t_logits = self.teachers.logits(xb[None], self.device, self.cfg.precision)  # one stream
        return self.map(lambda i: self.step_one(i, xb, t_logits[i], yb), active)

    def evaluate(self, source: BatchSource, active: list[int]) -> list[float]:
        return [source.evaluate(m, self.cfg.precision) if i in active else float("nan")
                for i, m in enumerate(self.models)]

    def state_dict(self) -> dict:
        return {"models": [m.state_dict() for m in self.models],
                "optimizers": [o.state_dict() for o in self.optimizers],
                "scalers": [s.state_dict() for s in self.scalers]}

    def load_state_dict(self, state: dict) -> None:
        for m, o, s, ms, os_, ss in zip(self.models, self.optimizers, self.scalers, state["models"],
                                        state["optimizers"], state["scalers"]):
            m.load_state_dict(ms)
            o.load_state_dict(os_)
            if ss:
                s.load_state_dict(ss)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            torch.set_num_threads(self.outer_threads)  # the workers lowered torch's default for new threads
            self.pool = None


# ----------------------------------------------------------------------------------------------- the loop
def run_loop(step: Step, source: BatchSource, cfg: TrainConfig, *, evaluate_test: bool = True,
             epoch_hook: Optional[EpochHook] = None, checkpoint: Optional[CheckpointSlot] = None,
             on_diverge: str = "raise", desc: str = "train", progress: bool = True, main: bool = True,
             device: torch.device = torch.device("cpu")) -> list[TrainResult]:
    """Trains the step's K students for the recipe's budget on the source's batches; one result per student.

    Each epoch: the learning rate of the schedule, one step per batch, the epoch's mean losses, divergence
    detection, evaluation every ``cfg.eval_every`` epochs (and after the last), ``epoch_hook(epoch, model)``
    (``model`` is the list of models when K > 1) and the checkpoint (``main`` process only). A student whose
    loss becomes NaN/inf raises ``TrainingDiverged`` (``on_diverge='raise'``), or with ``'keep'`` stops while
    the others go on (NaN ``final_acc``, ``extra['diverged']``). A checkpoint found at the start is resumed.
    """
    check_choice(on_diverge, "on_diverge", ("raise", "keep"))
    set_math_mode(device, cfg.precision)  # fp32 means fp32 on CUDA too (no TF32); the record says what ran
    wall0 = time.perf_counter()
    k = step.k
    n_epochs, n_steps = total_steps(cfg, source.n_kept, source.n_full, source.steps_per_epoch)
    state: dict[str, Any] = {"epoch": 0, "step": 0, "curves": [[] for _ in range(k)],
                             "losses": [[] for _ in range(k)], "diverged": [None] * k, "train_seconds": 0.0,
                             "eval_seconds": 0.0, "images": 0}
    saved = checkpoint.load(device) if checkpoint is not None else None
    if saved is not None:
        step.load_state_dict(saved["step"])
        state = saved["state"]
    hook_model = (lambda: step.models[0]) if k == 1 else (lambda: step.models)
    bar = tqdm(total=n_epochs, initial=state["epoch"], desc=desc, disable=not (progress and main), leave=False)
    try:
        for epoch in range(state["epoch"], n_epochs):
            t0 = time.perf_counter()
            loss_sum = torch.zeros(k, device=device)
            n_batches = 0
            active = [i for i in range(k) if state["diverged"][i] is None]
            active_idx = torch.tensor(active, dtype=torch.long, device=device)
            for xb, yb, n_images in source.epoch(epoch):
                if state["step"] >= n_steps:
                    break
                step.set_lr(cfg.lr * lr_factor(cfg, state["step"], n_steps))
                loss_sum[active_idx] += step.step(xb, yb, active)
                n_batches += 1
                state["step"] += 1
                state["images"] += n_images
            means = source.mean_losses(loss_sum, n_batches)
            state["train_seconds"] += time.perf_counter() - t0
            for i in active:
                if not math.isfinite(means[i]):
                    msg = diverged_message(desc if k == 1 else f"{desc}[{i}]", means[i], epoch + 1, cfg.lr)
                    if on_diverge == "raise":
                        raise TrainingDiverged(msg)
                    state["diverged"][i] = msg
                else:
                    state["losses"][i].append(means[i])
            state["epoch"] = epoch + 1
            active = [i for i in range(k) if state["diverged"][i] is None]
            if evaluate_test and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == n_epochs):
                t1 = time.perf_counter()
                accs = step.evaluate(source, active)
                state["eval_seconds"] += time.perf_counter() - t1
                for i in active:
                    state["curves"][i].append((epoch + 1, float(accs[i])))
                bar.set_postfix(loss=" ".join(f"{means[i]:.3f}" for i in active),
                                acc=" ".join(f"{accs[i]:.2f}" for i in active))
            if epoch_hook is not None:
                epoch_hook(epoch + 1, hook_model())
            if checkpoint is not None and main:
                checkpoint.save({"step": step.state_dict(), "state": state}, epoch + 1)
            bar.update(1)
            if not active:
                break
    finally:
        bar.close()
        step.close()
    wall = time.perf_counter() - wall0
    results = []
    for i in range(k):
        curve = [(int(e), float(a)) for e, a in state["curves"][i]]
        diverged = state["diverged"][i]
        best_epoch, best_acc = max(curve, key=lambda c: c[1]) if curve else (0, float("nan"))
        results.append(TrainResult(
            final_acc=curve[-1][1] if curve and diverged is None else float("nan"), best_acc=best_acc,
            best_epoch=best_epoch, curve=curve, losses=list(state["losses"][i]), epochs=n_epochs,
            steps=state["step"], train_seconds=state["train_seconds"] / k, wall_seconds=wall / k,
            images_per_sec=state["images"] * k / max(1e-9, state["train_seconds"]),
            extra={} if diverged is None else {"diverged": diverged}))
    return results


def train(
    model: nn.Module,
    data: ImageData | Any,
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
    checkpoint: Optional[Path | CheckpointSlot] = None,
    group: Optional[ProcessGroup] = None,
) -> TrainResult:
    """Trains ``model`` in place on ``data`` (rows ``indices``, default all) and returns what it measured.
    ``data`` is an in-memory ``ImageData`` or a streamed image folder (``kdlib.imagenet.FolderData``).

    ``loss_fn(student_logits, teacher_logits, y)`` defaults to cross-entropy; the teacher (an inference copy,
    BatchNorm folded) runs on the same augmented batch only when given. ``labels`` overrides ``data.y_train``
    (label noise). ``epoch_hook(epoch, model)`` runs after each epoch (proxy scoring). ``checkpoint`` (a file,
    or a slot such as ``kdlib.study``'s store checkpoint) is saved each epoch and resumed from when present; a
    file is removed at the end, a slot is cleared by its owner once the result is recorded. Under a DDP
    ``group`` (``kdlib.processes``) each process takes its share of every batch, the model is wrapped so that
    gradients are all-reduced, and only rank 0 saves checkpoints; ``device`` is then the group's.
    """
    group = group or ProcessGroup(device=resolve_device(device))
    device = group.device
    slot = FileCheckpoint(Path(checkpoint)) if isinstance(checkpoint, (str, os.PathLike)) else checkpoint
    source = batch_source(data, cfg, seed, group, indices, labels)
    step = ModelSteps([model], [loss_fn], [teacher], cfg, device, wrap=group.wrap)
    (result,) = run_loop(step, source, cfg, evaluate_test=evaluate_test, epoch_hook=epoch_hook, checkpoint=slot,
                         desc=desc, progress=progress, main=group.main, device=device)
    if group.world > 1:
        result.extra.update(world_size=group.world, per_rank_batch=source.per_rank)
    if slot is not None and slot is not checkpoint:
        slot.clear()
    return result
