"""Multi-process training with DistributedDataParallel, launched by torchrun, recorded in the kdlib Store.

Launch (one node, N processes; NCCL on CUDA, gloo on CPU)::

    python -m torch.distributed.run --nproc_per_node=N -m kdlib.distributed --config run.yaml [--store DIR]

or, without torchrun, ``train_distributed(cfg, store)`` (one process) or ``launch(configs, store, nproc)``
(torchrun in a subprocess when ``nproc > 1``). The config file (YAML or JSON) is a mapping of
:class:`DistConfig` fields plus ``store`` / ``progress`` / ``device``, optionally with ``runs: [...]``, a list of
field mappings each laid over the top-level fields; the runs execute in order in one process group.

Data: ``dataset="image_folder"`` streams ``data_root/{train,val}/<class>/*`` (full-resolution ImageNet or an
``export_image_folder`` stand-in) through DataLoader workers with a ``DistributedSampler``; any other name is a
``kdlib.data`` dataset held in memory (digits, CIFAR, ...) and sharded the same way, augmented on the device.

Recipe (``DistConfig.train``, a ``kdlib.train.TrainConfig``): default the paper's ImageNet recipe, SGD lr 0.1,
momentum 0.9, weight decay 5e-4, cosine schedule, **batch 128 in total**: each of the N processes takes
``batch_size // N`` samples per step (``batch_size`` must divide evenly), so lr and schedule do not depend on
N. BatchNorm statistics are per process (no SyncBN), as in torchvision's reference scripts. Training runs in
bf16 autocast (``precision="auto"``; fp16 uses a GradScaler) with channels_last. Trailing partial batches are
dropped. ``budget="epochs"`` trains ``epochs`` passes over the kept subset (the paper's rule).

KD: the teacher (``teacher`` architecture trained here on the full data with the same seed and
``teacher_train`` recipe, or the state dict at ``teacher_checkpoint``) runs in eval mode on the same augmented
batch. A full-data run without KD saves its weights in the store, so it *is* the teacher of the matching KD
runs (same architecture, seed and recipe) and is trained once.

Evaluation is sharded over the processes without padding and the correct counts are summed, so the accuracy is
exact; rank 0 alone writes the run record (``status``, ``config``, ``result`` with ``final_acc``, ``best_acc``,
``curve``, ``wall_seconds``, ``images_per_sec`` ...) under ``runs/<config key>.json`` and a checkpoint each
epoch under ``checkpoints/`` (resumed after an interruption, deleted at the end). The key hashes the resolved
config with the data's identity (file list fingerprint) in place of ``data_root`` and without ``workers`` or the
process count, so a finished run is read, never recomputed, whatever the launch.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .data import DATASETS, ImageData, load_dataset
from .distill import KD_LOSSES, make_kd_loss
from .imagenet import FolderData, load_folder_data, subset_indices
from .models import MODELS, build_model
from .prune import METHODS
from .store import Store, canonical, config_key
from .train import (TrainConfig, TrainResult, TrainingDiverged, autocast_context, kd_step, lr_factor, make_optimizer,
                    make_scaler, total_steps)
from .validate import check_fraction, check_positive, check_unit_interval, from_plain

FOLDER = "image_folder"
IMAGENET_RECIPE = TrainConfig(epochs=90, batch_size=128, lr=0.1, momentum=0.9, weight_decay=5e-4,
                              schedule="cosine", precision="auto", channels_last=True)
NOT_KEYED = ("data_root", "workers", "eval_batch_size", "teacher_checkpoint")


# ----------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class DistConfig:
    """One run. ``dataset`` is ``"image_folder"`` (streamed from ``data_root``) or a ``kdlib.data`` name.

    ``image_size`` is the crop size of folder data (224 for ImageNet) or the ``imagenet`` reader's size;
    ``crop_scale`` the RandomResizedCrop area range. ``fraction`` is the share of training data kept by
    ``method`` (random by default) with ``seed``; ``alpha`` weighs the KD term, ``tau`` its temperature.
    ``workers`` (DataLoader processes per rank) and ``eval_batch_size`` change speed, not results.
    """

    dataset: str = FOLDER
    data_root: Optional[str] = None
    image_size: Optional[int] = 224
    crop_scale: tuple[float, float] = (0.08, 1.0)
    model: str = "resnet50"
    teacher: Optional[str] = None
    teacher_checkpoint: Optional[str] = None
    method: str = "random"
    fraction: float = 1.0
    alpha: float = 0.0
    tau: float = 4.0
    kd_loss: str = "kd"
    seed: int = 0
    class_balanced: bool = False
    train: TrainConfig = IMAGENET_RECIPE
    teacher_train: Optional[TrainConfig] = None
    workers: int = 8
    eval_batch_size: int = 256

    def __post_init__(self) -> None:
        if self.dataset != FOLDER:
            DATASETS.check(self.dataset)
        MODELS.check(self.model)
        METHODS.check(self.method)
        KD_LOSSES.check(self.kd_loss)
        if self.teacher is not None:
            MODELS.check(self.teacher)
        check_fraction(self.fraction, "fraction")
        check_unit_interval(self.alpha, "alpha")
        check_positive(self.tau, "tau")
        check_positive(self.eval_batch_size, "eval_batch_size", integer=True)
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise ValueError(f"workers must be an integer >= 0, got {self.workers!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if self.image_size is not None:
            check_positive(self.image_size, "image_size", integer=True)
        if self.dataset == FOLDER and (self.data_root is None or self.image_size is None):
            raise ValueError("dataset='image_folder' needs data_root (the folder with train/ and val/) and image_size")
        lo, hi = (float(s) for s in self.crop_scale)
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"crop_scale must be (low, high) with 0 < low <= high <= 1, got {self.crop_scale!r}")
        object.__setattr__(self, "crop_scale", (lo, hi))
        if self.alpha > 0 and self.teacher is None and self.teacher_checkpoint is None:
            raise ValueError(f"alpha={self.alpha} > 0 needs a teacher: set teacher (one of: "
                             f"{', '.join(MODELS.names())}) or teacher_checkpoint")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DistConfig":
        """Builds a config from plain values (YAML/JSON), naming any unknown key."""
        if d.get("crop_scale") is not None:
            d = {**d, "crop_scale": tuple(d["crop_scale"])}
        return from_plain(cls, d, {"train": TrainConfig, "teacher_train": TrainConfig})

    def to_dict(self) -> dict:
        """Plain values (for a config file); ``from_dict(to_dict())`` gives an equal config."""
        return canonical(self)

    @property
    def uses_teacher(self) -> bool:
        return self.alpha > 0

    def resolved(self) -> "DistConfig":
        """Irrelevant fields normalised so equal runs share a record (as ``kdlib.study.RunConfig.resolved``)."""
        ch: dict[str, Any] = {"fraction": float(self.fraction), "alpha": float(self.alpha), "tau": float(self.tau)}
        if not self.uses_teacher:
            ch.update(teacher=None, teacher_checkpoint=None, teacher_train=None, tau=4.0, kd_loss="kd")
        else:
            if self.teacher is None:
                ch["teacher"] = self.model  # a checkpoint of the student's architecture
            if self.teacher_checkpoint is not None or self.teacher_train is None:
                ch["teacher_train"] = None if self.teacher_checkpoint is not None else self.train
        if self.fraction == 1.0:
            ch.update(method="random", class_balanced=False)
        if self.dataset != FOLDER:
            ch["crop_scale"] = (0.08, 1.0)
            if self.dataset != "imagenet":
                ch["image_size"] = None
        return dataclasses.replace(self, **ch)

    def teacher_config(self) -> "DistConfig":
        """The full-data, no-KD run that trains this run's teacher (same data, seed, architecture ``teacher``)."""
        r = self.resolved()
        if not r.uses_teacher or r.teacher_checkpoint is not None:
            raise ValueError("this run trains no teacher (alpha == 0 or teacher_checkpoint given)")
        return dataclasses.replace(r, model=r.teacher, fraction=1.0, alpha=0.0, train=r.teacher_train,
                                   teacher=None, teacher_train=None, method="random", class_balanced=False)

    def identity(self, data_id: str) -> dict:
        """What the run's key hashes: the resolved config without paths or speed knobs, plus the data's
        identity and the teacher checkpoint's SHA-256."""
        r = self.resolved()
        ident = {k: v for k, v in canonical(r).items() if k not in NOT_KEYED}
        ident["data_id"] = data_id
        if r.uses_teacher and r.teacher_checkpoint is not None:
            ident["teacher_checkpoint_sha256"] = _file_sha256(r.teacher_checkpoint)
        return ident


def _file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------- process group
@dataclass
class Dist:
    """This process's place in the job: rank, world size, device; the collectives are no-ops alone."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: Optional[str] = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def setup(cls, device: str = "auto") -> "Dist":
        """Reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) and joins the process group when
        WORLD_SIZE > 1 (NCCL on CUDA, gloo on CPU); a plain process is rank 0 of 1."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = torch.cuda.is_available() if device == "auto" else str(device).startswith("cuda")
        if use_cuda:
            dev = torch.device("cuda", local)
            torch.cuda.set_device(dev)
            torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels
        else:
            dev = torch.device("cpu")
        backend = None
        if world > 1:
            backend = "nccl" if dev.type == "cuda" else "gloo"
            if not dist.is_initialized():
                dist.init_process_group(backend=backend, device_id=dev if dev.type == "cuda" else None)
        return cls(rank, world, local, dev, backend)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


# ----------------------------------------------------------------------------------------------- data
class Batches:
    """Training batches (uint8 x, labels) of one rank's share of the kept subset, and exact sharded evaluation."""

    def __init__(self, cfg: DistConfig, ctx: Dist) -> None:
        self.cfg, self.ctx = cfg, ctx
        if cfg.dataset == FOLDER:
            self.folder: Optional[FolderData] = load_folder_data(cfg.data_root, cfg.image_size, cfg.crop_scale)
            self.memory: Optional[ImageData] = None
            self.labels = self.folder.labels
            self.num_classes, self.in_channels = self.folder.num_classes, 3
            self.data_id = f"{FOLDER}:{self.folder.fingerprint()}"
            self.source = self.folder.source
        else:
            opts = {"image_size": cfg.image_size} if cfg.dataset == "imagenet" else {}
            self.folder, self.memory = None, load_dataset(cfg.dataset, cfg.data_root, **opts)
            self.labels = self.memory.y_train.numpy()
            self.num_classes, self.in_channels = self.memory.num_classes, self.memory.in_channels
            self.data_id = cfg.dataset
            self.source = None
        self.n_full = len(self.labels)
        self.n_test = len(self.folder.val) if self.folder is not None else len(self.memory.y_test)
        self._val = None

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (self.folder if self.folder is not None else self.memory).normalize(x)

    @staticmethod
    def reuse_key(cfg: DistConfig) -> tuple:
        """Runs whose configs agree on this tuple can share one ``Batches`` (file listing, val workers)."""
        r = cfg.resolved()
        return (r.dataset, r.data_root, r.image_size, tuple(r.crop_scale), r.workers, r.eval_batch_size)

    def per_rank_batch(self, batch_size: int) -> int:
        if batch_size % self.ctx.world:
            raise ValueError(f"batch_size {batch_size} (total over processes) is not divisible by the "
                             f"{self.ctx.world} processes")
        return batch_size // self.ctx.world

    def trainer(self, indices: np.ndarray, batch_size: int, seed: int, augment: bool = True) -> "TrainStream":
        return TrainStream(self, indices, self.per_rank_batch(batch_size), seed, augment)

    def _val_loader(self):
        """This rank's share of the folder's val split (rows ``rank::world``), loaded by persistent workers."""
        if self._val is None:
            from torch.utils.data import DataLoader, Subset

            ctx, workers = self.ctx, self.cfg.workers
            part = Subset(self.folder.val, range(ctx.rank, len(self.folder.val), ctx.world))
            self._val = DataLoader(part, batch_size=self.cfg.eval_batch_size, shuffle=False, num_workers=workers,
                                   pin_memory=ctx.device.type == "cuda", persistent_workers=workers > 0)
        return self._val

    @torch.no_grad()
    def evaluate(self, model: nn.Module, precision: str, memory_format: torch.memory_format) -> float:
        """Top-1 accuracy (%) on the test/val split: each rank scores rows ``rank::world``, counts are summed."""
        ctx, bs = self.ctx, self.cfg.eval_batch_size
        was = model.training
        model.eval()
        correct = torch.zeros(2, dtype=torch.float64, device=ctx.device)
        if self.folder is not None:
            batches: Iterator = iter(self._val_loader())
        else:
            rows = torch.arange(ctx.rank, self.n_test, ctx.world)
            batches = ((self.memory.x_test[rows[s:s + bs]], self.memory.y_test[rows[s:s + bs]])
                       for s in range(0, len(rows), bs))
        for x, y in batches:
            x = self.normalize(x.to(ctx.device, non_blocking=True)).contiguous(memory_format=memory_format)
            y = y.to(ctx.device, non_blocking=True)
            with autocast_context(ctx.device, precision):
                pred = model(x).argmax(1)
            correct[0] += (pred == y).sum()
            correct[1] += len(y)
        ctx.all_sum(correct)
        model.train(was)
        return 100.0 * float(correct[0] / correct[1].clamp_min(1))


class TrainStream:
    """One rank's training batches: a DistributedSampler over the kept subset, ``per_rank`` samples a step."""

    def __init__(self, src: Batches, indices: np.ndarray, per_rank: int, seed: int, augment: bool = True) -> None:
        from torch.utils.data import DataLoader, DistributedSampler, Subset

        if src.folder is not None and not augment:
            raise ValueError("augment=False is not supported for image_folder data (RandomResizedCrop is the "
                             "recipe's training transform)")
        self.src, self.per_rank, self.seed, self.augment = src, per_rank, seed, augment
        ctx = src.ctx
        self.indices = torch.as_tensor(indices, dtype=torch.long)
        self.sampler = DistributedSampler(range(len(indices)), num_replicas=ctx.world, rank=ctx.rank,
                                          shuffle=True, seed=seed, drop_last=False)
        self.steps_per_epoch = len(self.sampler) // per_rank
        if self.steps_per_epoch < 1:
            raise ValueError(f"{len(indices)} kept samples over {ctx.world} processes are fewer than one batch of "
                             f"{per_rank} per process; lower batch_size")
        self.loader = None
        if src.folder is not None:
            workers = src.cfg.workers
            gen = torch.Generator().manual_seed(seed * 1_000_003 + ctx.rank)
            self.loader = DataLoader(Subset(src.folder.train, indices.tolist()), batch_size=per_rank,
                                     sampler=self.sampler, num_workers=workers, drop_last=True,
                                     pin_memory=ctx.device.type == "cuda", persistent_workers=workers > 0,
                                     prefetch_factor=4 if workers > 0 else None, generator=gen)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(uint8 x on device, augmented; y on device) for every step of ``epoch``."""
        from .augment import augment

        ctx = self.src.ctx
        self.sampler.set_epoch(epoch)
        if self.loader is not None:
            for x, y in self.loader:
                yield x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
            return
        mem = self.src.memory
        gen = torch.Generator(device=ctx.device).manual_seed((self.seed * 1_000_003 + epoch) * 1009 + ctx.rank)
        rows = self.indices[torch.as_tensor(list(iter(self.sampler)), dtype=torch.long)]
        for s in range(self.steps_per_epoch):
            idx = rows[s * self.per_rank:(s + 1) * self.per_rank]
            x = mem.x_train[idx].to(ctx.device)
            if self.augment:
                x = augment(x, mem.crop_padding, mem.flip, gen)
            yield x, mem.y_train[idx].to(ctx.device)


# ----------------------------------------------------------------------------------------------- training
def load_teacher_state(path: str | os.PathLike, model: nn.Module) -> None:
    """Loads a kdlib state dict, or a torchvision ResNet one (``fc.*`` -> ``head.*``, the rest -> ``body.*``)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]
    keys = set(model.state_dict())
    if not set(state) & keys and hasattr(model, "body"):
        state = {(f"head.{k[3:]}" if k.startswith("fc.") else f"body.{k}"): v for k, v in state.items()}
    model.load_state_dict(state)


def _train_loop(cfg: DistConfig, ctx: Dist, src: Batches, store: Store, key: str, indices: np.ndarray,
                teacher: Optional[nn.Module], progress: bool, desc: str) -> tuple[TrainResult, nn.Module]:
    tc = cfg.train
    wall0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, src.num_classes, src.in_channels)
    memory_format = torch.channels_last if tc.channels_last else torch.contiguous_format
    model.to(device=ctx.device, memory_format=memory_format).train()
    torch.manual_seed(cfg.seed * 1009 + ctx.rank)  # per-rank augmentation stream in the main process
    net: nn.Module = model
    if ctx.world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda"
                                                  else None)
    if teacher is not None:
        teacher.to(device=ctx.device, memory_format=memory_format).eval()
    optimizer = make_optimizer(model, tc)
    scaler = make_scaler(ctx.device, tc.precision)
    loss_fn = make_kd_loss(cfg.kd_loss, cfg.alpha, cfg.tau)
    stream = src.trainer(indices, tc.batch_size, cfg.seed, tc.augment)
    n_epochs, n_steps = total_steps(tc, len(indices), src.n_full, stream.steps_per_epoch)

    ckpt = store.path("checkpoints", key, ".pt")
    state = {"epoch": 0, "step": 0, "curve": [], "losses": [], "train_seconds": 0.0, "eval_seconds": 0.0,
             "images": 0}
    if ckpt.exists():
        saved = torch.load(ckpt, map_location=ctx.device, weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scaler.load_state_dict(saved["scaler"])
        state = saved["state"]

    bar = None
    if progress and ctx.main:
        from tqdm.auto import tqdm
        bar = tqdm(total=n_epochs, initial=state["epoch"], desc=desc, leave=False)
    for epoch in range(state["epoch"], n_epochs):
        t0 = time.perf_counter()
        loss_sum = torch.zeros(2, dtype=torch.float64, device=ctx.device)
        for x, y in stream.epoch(epoch):
            for group in optimizer.param_groups:
                group["lr"] = tc.lr * lr_factor(tc, state["step"], n_steps)
            x = src.normalize(x).contiguous(memory_format=memory_format)
            loss_sum[0] += kd_step(net, teacher, x, y, loss_fn, optimizer, scaler, ctx.device, tc.precision)
            loss_sum[1] += 1
            state["step"] += 1
            state["images"] += len(y) * ctx.world
        ctx.all_sum(loss_sum)
        if ctx.device.type == "cuda":
            torch.cuda.synchronize(ctx.device)
        state["train_seconds"] += time.perf_counter() - t0
        mean_loss = float(loss_sum[0] / loss_sum[1].clamp_min(1))
        if not math.isfinite(mean_loss):
            if bar is not None:
                bar.close()
            raise TrainingDiverged(f"{desc}: loss became {mean_loss} in epoch {epoch + 1} (lr={tc.lr}); stopping")
        state["losses"].append(mean_loss)
        state["epoch"] = epoch + 1
        last = epoch + 1 == n_epochs
        if (epoch + 1) % tc.eval_every == 0 or last:
            t1 = time.perf_counter()
            for b in model.buffers():  # BN running statistics: rank 0's, on every rank
                if ctx.world > 1:
                    dist.broadcast(b, 0)
            acc = src.evaluate(model, tc.precision, memory_format)
            state["eval_seconds"] += time.perf_counter() - t1
            state["curve"].append((epoch + 1, acc))
            if bar is not None:
                bar.set_postfix(loss=f"{mean_loss:.3f}", acc=f"{acc:.2f}")
        if ctx.main and not last:
            tmp = ckpt.with_suffix(".tmp")
            tmp.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scaler": scaler.state_dict(), "state": state}, tmp)
            tmp.replace(ckpt)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    ctx.barrier()
    if ctx.main:
        ckpt.unlink(missing_ok=True)

    curve = [(int(e), float(a)) for e, a in state["curve"]]
    best_epoch, best_acc = max(curve, key=lambda c: c[1]) if curve else (0, float("nan"))
    result = TrainResult(
        final_acc=curve[-1][1] if curve else float("nan"), best_acc=best_acc, best_epoch=best_epoch, curve=curve,
        losses=state["losses"], epochs=n_epochs, steps=state["step"], train_seconds=state["train_seconds"],
        wall_seconds=time.perf_counter() - wall0,
        images_per_sec=state["images"] / max(1e-9, state["train_seconds"]),
        extra={"eval_seconds": state["eval_seconds"], "steps_per_epoch": stream.steps_per_epoch,
               "per_rank_batch": stream.per_rank, "world_size": ctx.world})
    return result, model


def _run(cfg: DistConfig, ctx: Dist, store: Store, progress: bool, src: Optional[Batches] = None) -> dict:
    """Every rank calls this; rank 0 decides (done already?) and writes; the record is returned on every rank."""
    r = cfg.resolved()
    src = src or Batches(r, ctx)
    ident = r.identity(src.data_id)
    key = config_key(ident)
    lock = store.lock("runs", key) if ctx.main else contextlib.nullcontext()
    with lock:
        rec = ctx.broadcast(store.done("runs", key) if ctx.main else None)
        if rec is not None:
            return {**rec, "reused": True}
        teacher, teacher_rec = None, None
        if r.uses_teacher:
            teacher = build_model(r.teacher, src.num_classes, src.in_channels)
            if r.teacher_checkpoint is not None:
                load_teacher_state(r.teacher_checkpoint, teacher)
            else:
                teacher_rec = _run(r.teacher_config(), ctx, store, progress, src)
                if teacher_rec.get("status") != "done":
                    raise RuntimeError(f"teacher run {teacher_rec['key']} failed: {teacher_rec.get('error')}")
                state = store.load_state("runs", teacher_rec["key"], teacher_rec["sha256"])
                if state is None:
                    raise RuntimeError(f"teacher weights of run {teacher_rec['key']} are missing or corrupt in "
                                       f"{store.root}; delete runs/{teacher_rec['key']}.json to retrain it")
                teacher.load_state_dict(state)
            teacher.eval()
        indices = subset_indices(src.labels, r.fraction, r.seed, r.method, r.class_balanced)
        desc = f"{r.model} f={r.fraction:g} a={r.alpha:g} s={r.seed}"
        try:
            result, model = _train_loop(r, ctx, src, store, key, indices, teacher, progress, desc)
        except TrainingDiverged as err:
            rec = None
            if ctx.main:
                rec = canonical(store.put("runs", key, {"status": "failed", "config": ident, "error": str(err)}))
            return ctx.broadcast(rec)
        rec = None
        if ctx.main:
            record = {
                "status": "done", "config": ident, "result": result.to_dict(), "n_train": int(len(indices)),
                "n_full": int(src.n_full), "n_test": int(src.n_test),
                "teacher_acc": None if teacher_rec is None else teacher_rec["result"]["final_acc"],
                "teacher_key": None if teacher_rec is None else teacher_rec["key"],
                "teacher_checkpoint": r.teacher_checkpoint, "data_root": r.data_root, "data_source": src.source,
                "world_size": ctx.world, "backend": ctx.backend, "device": str(ctx.device),
                "gpu": torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else None,
                "torch": torch.__version__,
            }
            if r.fraction == 1.0 and not r.uses_teacher:  # a potential teacher: keep its weights
                record["sha256"] = store.save_state("runs", key, {k: v.detach().cpu()
                                                                  for k, v in model.state_dict().items()})
            rec = canonical(store.put("runs", key, record))  # the same plain form as a record read back
        return ctx.broadcast(rec)


def run_all(configs: Sequence[DistConfig], ctx: Dist, store: Store, progress: bool = True,
            on_record: Optional[Callable[[dict], None]] = None) -> list[dict]:
    """Runs ``configs`` in order in this process group, sharing the data of runs on the same data;
    ``on_record(record)`` is called as each run finishes."""
    shared: dict[tuple, Batches] = {}
    records = []
    for cfg in configs:
        k = Batches.reuse_key(cfg)
        if k not in shared:
            shared[k] = Batches(cfg.resolved(), ctx)
        records.append(_run(cfg, ctx, store, progress, shared[k]))
        if on_record is not None:
            on_record(records[-1])
    return records


def summary_line(rec: dict) -> str:
    """One JSON line naming a run and its outcome (what ``main`` prints on rank 0)."""
    res, cfg = rec.get("result") or {}, rec["config"]
    return json.dumps({"key": rec["key"], "status": rec["status"], "reused": rec.get("reused", False),
                       "model": cfg["model"], "fraction": cfg["fraction"], "alpha": cfg["alpha"], "seed": cfg["seed"],
                       "final_acc": res.get("final_acc"), "images_per_sec": res.get("images_per_sec"),
                       "wall_seconds": res.get("wall_seconds"), "world_size": rec.get("world_size")})


def train_distributed(cfg: DistConfig | Mapping[str, Any], store: Store | str | os.PathLike,
                      progress: bool = True, device: str = "auto") -> dict:
    """Trains (or reads) one run in this process group and returns its record (on every rank).

    Called under torchrun it joins the group from the environment; called plainly it is one process.
    """
    cfg = cfg if isinstance(cfg, DistConfig) else DistConfig.from_dict(cfg)
    store = store if isinstance(store, Store) else Store(store)
    ctx = Dist.setup(device)
    return _run(cfg, ctx, store, progress)


# ----------------------------------------------------------------------------------------------- launching
OPERATIONAL = ("store", "progress", "device", "runs")


def parse_launch(spec: Mapping[str, Any]) -> tuple[list[DistConfig], dict]:
    """A launch mapping -> (run configs, options). Top-level run fields are defaults for every entry of ``runs``."""
    shared = {k: v for k, v in spec.items() if k not in OPERATIONAL}
    runs = spec.get("runs") or [{}]
    configs = [DistConfig.from_dict({**shared, **item}) for item in runs]
    options = {"store": spec.get("store"), "progress": bool(spec.get("progress", True)),
               "device": spec.get("device", "auto")}
    return configs, options


def load_launch(path: str | os.PathLike) -> dict:
    """A YAML or JSON launch file as a mapping."""
    import yaml

    spec = yaml.safe_load(Path(path).read_text())
    if not isinstance(spec, dict):
        raise ValueError(f"{path} must hold a mapping of run fields (and store/progress/device/runs)")
    return spec


def free_port() -> int:
    """A TCP port free on this host right now (for torchrun's --master_port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_command(config_path: str | os.PathLike, nproc: int, port: Optional[int] = None,
                     results: Optional[str | os.PathLike] = None) -> list[str]:
    """The command that runs a launch file on ``nproc`` local processes."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           f"--master_port={port or free_port()}", "-m", "kdlib.distributed", "--config", str(config_path)]
    return cmd + (["--results", str(results)] if results else [])


def launch(configs: Sequence[DistConfig | Mapping[str, Any]], store: str | os.PathLike, nproc: int = 1,
           progress: bool = True, device: str = "auto", echo: bool = True) -> list[dict]:
    """Runs ``configs`` in order and returns their records: in this process when ``nproc <= 1``, else through
    ``torchrun --nproc_per_node=nproc`` in a subprocess (its output streamed here when ``echo``)."""
    configs = [c if isinstance(c, DistConfig) else DistConfig.from_dict(c) for c in configs]
    if nproc <= 1:
        return run_all(configs, Dist.setup(device), Store(store), progress)
    Path(store).mkdir(parents=True, exist_ok=True)
    spec = {"store": str(store), "progress": progress, "device": device, "runs": [c.to_dict() for c in configs]}
    with tempfile.TemporaryDirectory(prefix="kdlib-launch-") as tmp:
        cfg_path, res_path = Path(tmp) / "launch.json", Path(tmp) / "results.json"
        cfg_path.write_text(json.dumps(spec))
        cmd = torchrun_command(cfg_path, nproc, results=res_path)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        tail: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            tail = (tail + [line])[-60:]
            if echo:
                print(line, end="", flush=True)
        if proc.wait() != 0 or not res_path.exists():
            raise RuntimeError(f"torchrun exited with status {proc.returncode}: {' '.join(cmd)}\n{''.join(tail)}")
        return json.loads(res_path.read_text())


def main(argv: Optional[Sequence[str]] = None) -> None:
    """``python -m torch.distributed.run --nproc_per_node=N -m kdlib.distributed --config FILE``."""
    parser = argparse.ArgumentParser(description="kdlib distributed training (run under torchrun)")
    parser.add_argument("--config", required=True, help="YAML/JSON launch file: DistConfig fields, store, runs")
    parser.add_argument("--store", help="run store folder (overrides the file's store)")
    parser.add_argument("--results", help="rank 0 writes the records of the runs here as JSON")
    parser.add_argument("--device", help="auto, cpu or cuda (overrides the file's device)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    configs, opts = parse_launch(load_launch(args.config))
    store_root = args.store or opts["store"]
    if not store_root:
        parser.error("no store: give --store or set store in the config file")
    ctx = Dist.setup(args.device or opts["device"])
    try:
        records = run_all(configs, ctx, Store(store_root), opts["progress"] and not args.no_progress,
                          on_record=(lambda rec: print(summary_line(rec), flush=True)) if ctx.main else None)
        if ctx.main and args.results:
            Path(args.results).write_text(json.dumps(canonical(records)))
    finally:
        ctx.close()


if __name__ == "__main__":
    main()
