"""A group of K runs trained at once: each member on its own batches, the K students as one stacked network.

A *member* is one run's student: its initial model, its seed (batch order and augmentation), its kept rows, its
labels, its loss and its teacher. The members of a group share the in-memory data, the recipe and the number of
kept rows, so each step has one batch of the same size per member and one learning-rate schedule.
``GroupBatches`` draws a member's batch from the member's own generator exactly as ``kdlib.train.MemoryBatches``
draws a single run's, so its batch order and augmentation are bit-identical to the run trained alone. Members with
the same seed, rows and labels (runs that differ only in their loss) share one *stream*: one gather, one
augmentation and one forward of each teacher per batch.

Two ways to step the K students (``MODES``):

* ``stacked``: the K students as one wide network (``kdlib.stack``), member k's batch in channel block k: one
  forward and one backward for the group, with K times fewer and K times bigger kernels (what a launch-bound GPU
  wants). Teachers of one architecture are stacked the same way. Equal to training alone up to float rounding.
* ``loop``: each student's own step, one after another in this thread (bit-identical to training alone) or on
  ``threads`` worker threads running one-core ops (on a small CPU, faster than two-thread ops on small tensors).

``train_group`` runs either through the one loop of kdlib (``kdlib.train.run_loop``): the same schedule, epoch
means, divergence handling (a diverged member stops, the others go on), evaluation cadence and checkpoints.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .augment import crop, crop_offsets, flip_mask
from .data import ImageData
from .distill import KDLoss, kd_loss_stacked
from .seeds import epoch_generator
from .stack import stack_inputs, stack_models, unstack_into
from .train import (CheckpointSlot, EpochHook, LossFn, ModelSteps, Teachers, TrainConfig, TrainResult,
                    autocast_context, cross_entropy_loss, epoch_batches, evaluate, make_optimizer, make_scaler,
                    mean_losses, resolve_device, run_loop)
from .validate import check_choice

MODES = ("stacked", "loop")


@dataclass
class Member:
    """One run of a group: the student (initialised), the seed of its batch stream, its kept rows (None: all),
    its training labels (None: the data's), its loss (None: cross-entropy) and its teacher (None: none)."""

    model: nn.Module
    seed: int
    indices: Optional[Sequence[int] | np.ndarray] = None
    labels: Optional[torch.Tensor] = None
    loss_fn: Optional[LossFn] = None
    teacher: Optional[nn.Module] = None


# ----------------------------------------------------------------------------------------------- batches
class GroupBatches:
    """Each member's batches of an in-memory ``ImageData``, drawn as ``MemoryBatches`` draws a single run's.

    ``epoch(e)`` yields ``(x, y, n)``: ``x`` (S, N, C, H, W) normalised float images and ``y`` (S, N) labels of
    the S distinct streams; ``stream_of[k]`` is member k's stream.
    """

    def __init__(self, data: ImageData, cfg: TrainConfig, members: Sequence[Member], device: torch.device) -> None:
        self.data, self.cfg, self.device = data, cfg, device
        self.x_train = data.x_train.to(device)  # the data stay on the device: batches are gathered there
        self.x_test = data.x_test.to(device)
        base_y = data.y_train.to(device)
        self.streams: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (seed, kept rows, labels)
        self.stream_of: list[int] = []
        for k, m in enumerate(members):
            idx = torch.arange(data.n_train) if m.indices is None else torch.as_tensor(np.asarray(m.indices),
                                                                                       dtype=torch.long)
            if len(idx) < 2:
                raise ValueError(f"member {k} keeps {len(idx)} training samples; training needs at least 2")
            idx = idx.to(device)
            y = base_y if m.labels is None else m.labels.to(device)
            for s, (seed, s_idx, s_y) in enumerate(self.streams):
                if seed == int(m.seed) and torch.equal(s_idx, idx) and (s_y is y or torch.equal(s_y, y)):
                    self.stream_of.append(s)
                    break
            else:
                self.stream_of.append(len(self.streams))
                self.streams.append((int(m.seed), idx, y))
        sizes = sorted({len(idx) for _, idx, _ in self.streams})
        if len(sizes) > 1:
            raise ValueError(f"the members of a group keep the same number of rows (equal batches at every step); "
                             f"got {sizes}")
        self.n_kept, self.n_full = sizes[0], data.n_train
        self.steps_per_epoch = None  # ceil(n_kept / batch_size), the budget rule's default

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        data, cfg = self.data, self.cfg
        gens = [epoch_generator(seed, epoch, self.device) for seed, _, _ in self.streams]
        orders = [epoch_batches(idx, cfg.batch_size, g) for (_, idx, _), g in zip(self.streams, gens)]
        for batches in zip(*orders):
            n = len(batches[0])
            xb = self.x_train[torch.cat(batches)]
            if cfg.augment:  # each stream's draws from its own generator, in the order kdlib.augment draws them
                offsets = [crop_offsets(n, data.crop_padding, g) for g in gens] if data.crop_padding else None
                flips = [flip_mask(n, g) for g in gens] if data.flip else None
                if offsets is not None:
                    xb = crop(xb, data.crop_padding, torch.cat([r for r, _ in offsets]),
                              torch.cat([c for _, c in offsets]))
                if flips is not None:
                    xb = torch.where(torch.cat(flips).to(xb.device)[:, None, None, None], xb.flip(-1), xb)
            yb = torch.stack([y[b] for (_, _, y), b in zip(self.streams, batches)])
            x = data.normalize(xb.contiguous())
            yield x.reshape(len(self.streams), n, *x.shape[1:]), yb, n

    def evaluate(self, model: nn.Module, precision: str) -> float:
        return evaluate(model, self.data, self.device, precision, self.cfg.channels_last)

    def mean_losses(self, loss_sum: torch.Tensor, n_batches: int) -> list[float]:
        return mean_losses(loss_sum, n_batches)


# ----------------------------------------------------------------------------------------------- steps
class StackedSteps:
    """K students as one wide network with one optimiser and one loss scaler; member k trains on its stream's
    batch. The K models are written back (``unstack_into``) when the loop closes it."""

    def __init__(self, models: Sequence[nn.Module], loss_fns: Sequence[Optional[LossFn]],
                 teachers: Sequence[Optional[nn.Module]], stream_of: Sequence[int], cfg: TrainConfig,
                 device: torch.device, example: Optional[torch.Tensor] = None, compile: Optional[str] = None) -> None:
        self.k, self.models, self.cfg, self.device = len(models), list(models), cfg, device
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        for m in self.models:
            m.to(device=device, memory_format=self.memory_format).train()
        self.wide = stack_models(self.models, example).to(device=device, memory_format=self.memory_format).train()
        self.stream_of = list(stream_of)
        self.loss_fns = [fn or cross_entropy_loss for fn in loss_fns]
        self.teachers = Teachers(teachers, device, self.memory_format, stream_of, stack=True, example=example)
        self.optimizer = make_optimizer(self.wide, cfg)
        self.scaler = make_scaler(device, cfg.precision)
        self.stacked_kd = _stacked_kd_params(self.loss_fns, device)  # (alpha, tau), or None: one loss per member
        # torch.compile of the wide network's forward (and so its backward), a torch.compile mode such as 'default'
        # or 'reduce-overhead' (CUDA graphs); off unless asked: benchmarks/grid_throughput.py --compile measures it
        self.forward = self.wide if compile is None else torch.compile(self.wide, mode=compile)

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step(self, x: torch.Tensor, y: torch.Tensor, active: list[int]) -> torch.Tensor:
        t_logits = self.teachers.logits(x, self.device, self.cfg.precision)
        with autocast_context(self.device, self.cfg.precision):
            out = self.forward(stack_inputs(x, self.stream_of, self.memory_format))
        out = out.reshape(x.shape[1], self.k, -1)
        if self.stacked_kd is not None:  # the paper's loss for every member: a few kernels for all K, not K x ten
            alpha, tau = self.stacked_kd
            idx = torch.as_tensor(active, device=out.device)
            t = torch.stack([out.new_zeros(out[:, 0].shape) if t_logits[i] is None else t_logits[i].to(out.dtype)
                             for i in active], 1)
            labels = y[torch.as_tensor([self.stream_of[i] for i in active], device=y.device)].t()
            per = kd_loss_stacked(out[:, idx], t, labels, alpha[idx], tau[idx])
        else:
            per = torch.stack([self.loss_fns[i](out[:, i], t_logits[i], y[self.stream_of[i]]) for i in active])
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(per.sum()).backward()  # a diverged member is left out: its NaN would spoil every step
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return per.detach()

    @torch.no_grad()
    def evaluate(self, source: GroupBatches, active: list[int], batch_size: int = 1024) -> list[float]:
        """Top-1 test accuracy (%) of each student, the K evaluated together (NaN for an inactive one)."""
        data, wide = source.data, self.wide
        x_test = getattr(source, "x_test", data.x_test)
        wide.eval()
        preds = []
        for s in range(0, len(x_test), batch_size):
            xb = data.normalize(x_test[s:s + batch_size].to(self.device))
            with autocast_context(self.device, self.cfg.precision):
                out = wide(stack_inputs(xb[None], [0] * self.k, self.memory_format))
            preds.append(out.float().reshape(len(xb), self.k, -1).argmax(2).cpu())
        wide.train()
        hits = (torch.cat(preds) == data.y_test[:, None]).float()
        return [100.0 * hits[:, i].mean().item() if i in active else float("nan") for i in range(self.k)]

    def state_dict(self) -> dict:
        return {"wide": self.wide.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.wide.load_state_dict(state["wide"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])

    def close(self) -> None:
        unstack_into(self.wide, self.models)


def _stacked_kd_params(loss_fns: Sequence[LossFn], device: torch.device
                       ) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """(alpha, tau) per member when every loss is the paper's ``kd`` (cross-entropy counts as alpha 0), so the K
    losses can be computed at once (``kdlib.distill.kd_loss_stacked``); None otherwise."""
    alphas, taus = [], []
    for fn in loss_fns:
        if fn is cross_entropy_loss:
            alphas.append(0.0)
            taus.append(4.0)
        elif isinstance(fn, KDLoss) and fn.spec.name == "kd" and not fn.params:
            alphas.append(float(fn.alpha))
            taus.append(float(fn.tau))
        else:
            return None
    return torch.tensor(alphas, device=device), torch.tensor(taus, device=device)


class LoopSteps(ModelSteps):
    """K students, each with its own optimiser, stepped one after another (or on worker threads), member k on its
    stream's batch; teachers run once per (teacher, stream)."""

    def __init__(self, models: Sequence[nn.Module], loss_fns: Sequence[Optional[LossFn]],
                 teachers: Sequence[Optional[nn.Module]], stream_of: Sequence[int], cfg: TrainConfig,
                 device: torch.device, threads: int = 1) -> None:
        super().__init__(models, loss_fns, teachers, cfg, device, threads=threads, stream_of=stream_of)
        self.stream_of = list(stream_of)

    def step(self, x: torch.Tensor, y: torch.Tensor, active: list[int]) -> torch.Tensor:
        xs = [x[s].contiguous(memory_format=self.memory_format) for s in range(x.shape[0])]
        t_logits = self.teachers.logits(x, self.device, self.cfg.precision)
        return self.map(lambda i: self.step_one(i, xs[self.stream_of[i]], t_logits[i], y[self.stream_of[i]]),
                        active)


def group_steps(members: Sequence[Member], stream_of: Sequence[int], cfg: TrainConfig, device: torch.device,
                mode: str = "stacked", threads: Optional[int] = None, compile: Optional[str] = None,
                example: Optional[torch.Tensor] = None) -> StackedSteps | LoopSteps:
    """The step of the members (member k on stream ``stream_of[k]``) in ``mode`` ('stacked' or 'loop';
    ``threads``: loop's worker threads, default 1; ``compile``: a ``torch.compile`` mode for the stacked network;
    ``example``: a few normalised inputs the stacked networks are checked on). A group of one is a loop of one."""
    check_choice(mode, "mode", MODES)
    models = [m.model for m in members]
    loss_fns = [m.loss_fn for m in members]
    teachers = [m.teacher for m in members]
    if mode == "stacked" and len(members) > 1:
        return StackedSteps(models, loss_fns, teachers, stream_of, cfg, device, example, compile)
    return LoopSteps(models, loss_fns, teachers, stream_of, cfg, device, threads=threads or 1)


def train_group(members: Sequence[Member], data: ImageData, cfg: TrainConfig, *, device: str | torch.device = "auto",
                mode: str = "stacked", threads: Optional[int] = None, progress: bool = True, desc: str = "group",
                evaluate_test: bool = True, on_diverge: str = "keep", epoch_hook: Optional[EpochHook] = None,
                checkpoint: Optional[CheckpointSlot] = None, compile: Optional[str] = None) -> list[TrainResult]:
    """Trains the members' students in place, each as ``kdlib.train.train(model, data, cfg, indices=...,
    labels=..., loss_fn=..., teacher=..., seed=...)`` would, and returns one result per member.

    ``mode``: 'stacked' or 'loop' (module docstring). A member whose loss becomes NaN/inf stops with
    ``extra['diverged']`` and a NaN ``final_acc`` while the others go on (``on_diverge='keep'``), or raises
    ``TrainingDiverged`` (``'raise'``). ``compile``: a ``torch.compile`` mode for the stacked network (off by
    default: it pays only where a measurement says so). ``train_seconds`` of a result is the group's divided by K
    (``extra['group_train_seconds']`` holds the whole); ``checkpoint`` is saved as the loop saves any.
    """
    k = len(members)
    if k == 0:
        return []
    device = resolve_device(device)
    source = GroupBatches(data, cfg, members, device)
    step = group_steps(members, source.stream_of, cfg, device, mode, threads, compile,
                       example=data.normalize(source.x_test[:2]))
    results = run_loop(step, source, cfg, evaluate_test=evaluate_test, epoch_hook=epoch_hook, checkpoint=checkpoint,
                       on_diverge=on_diverge, desc=desc, progress=progress, device=device)
    ran = "stacked" if isinstance(step, StackedSteps) else "loop"
    for r in results:
        r.extra.update({"group": k, "group_mode": ran, "group_streams": len(source.streams),
                        "group_threads": step.threads if isinstance(step, LoopSteps) else 1,
                        "group_train_seconds": r.train_seconds * k, "group_wall_seconds": r.wall_seconds * k})
    return results
