"""Multi-process training with DistributedDataParallel, launched by torchrun, recorded in the kdlib Store.

Launch (one node, N processes; NCCL on CUDA, gloo on CPU)::

    python -m torch.distributed.run --nproc_per_node=N -m kdlib.distributed --config run.yaml [--store DIR]

or ``launch(configs, store, nproc)`` (in this process when ``nproc <= 1``, else torchrun in a subprocess). The
config file (YAML or JSON) is a mapping of run fields plus ``store`` / ``progress`` / ``device``, optionally with
``runs: [...]``, a list of field mappings each laid over the top-level fields; the runs execute in order in one
process group. Nothing here trains: every run goes through the one loop (``kdlib.train.run_loop``).

* A run on an in-memory dataset (digits, CIFAR, ...) is a ``kdlib.study.RunConfig`` and goes through
  ``kdlib.study.Study`` with the job's process group: the same key, teacher (under ``teachers/``), scores and
  record as in a single process; each process takes rows ``rank::world`` of every batch.
* A run on an image folder (``dataset="image_folder"``: ``data_root/{train,val}/<class>/*``, full-resolution
  ImageNet or an ``export_image_folder`` stand-in) is a :class:`DistConfig`, streamed through DataLoader workers
  with a ``DistributedSampler``. Its key hashes the resolved config with the data's identity (file list
  fingerprint) in place of ``data_root`` and without ``workers`` or the process count. Its teacher is the
  full-data no-KD run of the same architecture, seed and recipe (its weights kept in the store), or the state
  dict at ``teacher_checkpoint``.

Recipe (``DistConfig.train``): default the paper's ImageNet recipe, SGD lr 0.1, momentum 0.9, weight decay 5e-4,
cosine schedule, **batch 128 in total**: each of the N processes takes ``batch_size // N`` samples per step
(``batch_size`` must divide evenly), so lr and schedule do not depend on N. BatchNorm statistics are per process
(no SyncBN), as in torchvision's reference scripts. Evaluation is sharded over the processes and the correct
counts summed, so the accuracy is exact; rank 0 alone writes records and checkpoints (``checkpoints/`` in the
store, resumed after an interruption, deleted once the record is written).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .distill import KD_LOSSES, make_kd_loss
from .imagenet import FolderData, load_folder_data
from .models import MODELS, build_model
from .processes import ProcessGroup
from .seeds import epoch_seed
from .store import Store, canonical, config_key
from .executors import free_port, run_torchrun, torchrun_command  # noqa: F401  (re-exported)
from .study import RunConfig, Study, select_subset
from .train import (ModelSteps, TrainConfig, TrainingDiverged, autocast_context, mean_losses, run_loop)
from .validate import check_fraction, check_positive, check_unit_interval, from_plain

FOLDER = "image_folder"
IMAGENET_RECIPE = TrainConfig(epochs=90, batch_size=128, lr=0.1, momentum=0.9, weight_decay=5e-4,
                              schedule="cosine", precision="auto", channels_last=True)
NOT_KEYED = ("data_root", "workers", "eval_batch_size", "teacher_checkpoint")
RANDOM = "random"  # the only selection streamed data allow (a scorer needs the whole dataset in memory)

# ----------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class DistConfig:
    """One run on an image folder streamed from ``data_root`` (runs on in-memory datasets are ``RunConfig``s).

    ``image_size`` is the crop size (224 for ImageNet);
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
            raise ValueError(f"DistConfig is for dataset={FOLDER!r} (streamed image folders); a run on the in-memory "
                             f"dataset {self.dataset!r} is a kdlib.study.RunConfig (launch() takes either)")
        MODELS.check(self.model)
        if self.method != RANDOM:
            raise ValueError(f"method must be {RANDOM!r} on streamed data (a scorer needs the whole dataset in "
                             f"memory), got {self.method!r}")
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



# ----------------------------------------------------------------------------------------------- data
class FolderSource:
    """A batch source (``kdlib.train.BatchSource``) of an image folder: this rank's share of the kept subset
    through a ``DistributedSampler`` and DataLoader workers, and exact sharded evaluation of the val split."""

    def __init__(self, cfg: DistConfig, group: ProcessGroup, folder: Optional[FolderData] = None) -> None:
        self.cfg, self.group = cfg, group
        self.folder = folder or load_folder_data(cfg.data_root, cfg.image_size, cfg.crop_scale)
        self.labels = self.folder.labels
        self.num_classes, self.in_channels = self.folder.num_classes, 3
        self.data_id = f"{FOLDER}:{self.folder.fingerprint()}"
        self.n_full = len(self.labels)
        self.n_test = len(self.folder.val)
        self.memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
        self._val = None
        self.loader, self.n_kept, self.steps_per_epoch, self.per_rank = None, 0, None, 0

    @staticmethod
    def reuse_key(cfg: DistConfig) -> tuple:
        """Runs whose configs agree on this tuple can share one source (file listing, val workers)."""
        r = cfg.resolved()
        return (r.dataset, r.data_root, r.image_size, tuple(r.crop_scale), r.workers, r.eval_batch_size)

    def per_rank_batch(self, batch_size: int) -> int:
        if batch_size % self.group.world:
            raise ValueError(f"batch_size {batch_size} (total over processes) is not divisible by the "
                             f"{self.group.world} processes")
        return batch_size // self.group.world

    def start(self, indices: np.ndarray, tc: TrainConfig, seed: int) -> "FolderSource":
        """Sets the kept ``indices`` (and the sampler) for the next run; returns self."""
        from torch.utils.data import DataLoader, DistributedSampler, Subset

        if not tc.augment:
            raise ValueError("augment=False is not supported for image_folder data (RandomResizedCrop is the "
                             "recipe's training transform)")
        g = self.group
        self.per_rank = self.per_rank_batch(tc.batch_size)
        self.sampler = DistributedSampler(range(len(indices)), num_replicas=g.world, rank=g.rank, shuffle=True,
                                          seed=seed, drop_last=False)
        self.steps_per_epoch = len(self.sampler) // self.per_rank
        if self.steps_per_epoch < 1:
            raise ValueError(f"{len(indices)} kept samples over {g.world} processes are fewer than one batch of "
                             f"{self.per_rank} per process; lower batch_size")
        self.n_kept = len(indices)
        workers = self.cfg.workers
        self.loader = DataLoader(Subset(self.folder.train, np.asarray(indices).tolist()), batch_size=self.per_rank,
                                 sampler=self.sampler, num_workers=workers, drop_last=True,
                                 pin_memory=g.device.type == "cuda", persistent_workers=workers > 0,
                                 prefetch_factor=4 if workers > 0 else None,
                                 generator=torch.Generator().manual_seed(epoch_seed(seed, g.rank)))
        return self

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        dev = self.group.device
        self.sampler.set_epoch(epoch)
        for x, y in self.loader:
            x = self.folder.normalize(x.to(dev, non_blocking=True)).contiguous(memory_format=self.memory_format)
            yield x, y.to(dev, non_blocking=True), len(y) * self.group.world

    def _val_loader(self):
        """This rank's share of the folder's val split (rows ``rank::world``), loaded by persistent workers."""
        if self._val is None:
            from torch.utils.data import DataLoader, Subset

            g, workers = self.group, self.cfg.workers
            part = Subset(self.folder.val, range(g.rank, len(self.folder.val), g.world))
            self._val = DataLoader(part, batch_size=self.cfg.eval_batch_size, shuffle=False, num_workers=workers,
                                   pin_memory=g.device.type == "cuda", persistent_workers=workers > 0)
        return self._val

    @torch.no_grad()
    def evaluate(self, model: nn.Module, precision: str) -> float:
        """Top-1 accuracy (%) on the val split: each rank scores rows ``rank::world``, counts are summed."""
        g = self.group
        if g.backend is not None:
            for b in model.buffers():  # BN running statistics: rank 0's, on every rank
                dist.broadcast(b, 0)
        was = model.training
        model.eval()
        correct = torch.zeros(2, dtype=torch.float64, device=g.device)
        for x, y in self._val_loader():
            x = self.folder.normalize(x.to(g.device, non_blocking=True)).contiguous(memory_format=self.memory_format)
            with autocast_context(g.device, precision):
                pred = model(x).argmax(1)
            correct[0] += (pred == y.to(g.device, non_blocking=True)).sum()
            correct[1] += len(y)
        if g.backend is not None:
            dist.all_reduce(correct)
        model.train(was)
        return 100.0 * float(correct[0] / correct[1].clamp_min(1))

    def mean_losses(self, loss_sum: torch.Tensor, n_batches: int) -> list[float]:
        return mean_losses(loss_sum, n_batches, self.group.world if self.group.backend is not None else 1)


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


def _run(cfg: DistConfig, group: ProcessGroup, store: Store, progress: bool,
         src: Optional[FolderSource] = None) -> dict:
    """Every rank calls this; rank 0 decides (done already?) and writes; the record is returned on every rank."""
    r = cfg.resolved()
    src = src or FolderSource(r, group)
    ident = r.identity(src.data_id)
    key = config_key(ident)
    lock = store.lock("runs", key) if group.main else contextlib.nullcontext()
    with lock:
        rec = group.broadcast(store.done("runs", key) if group.main else None)
        if rec is not None:
            return {**rec, "reused": True}
        teacher, teacher_rec = None, None
        if r.uses_teacher:
            teacher = build_model(r.teacher, src.num_classes, src.in_channels)
            if r.teacher_checkpoint is not None:
                load_teacher_state(r.teacher_checkpoint, teacher)
            else:
                teacher_rec = _run(r.teacher_config(), group, store, progress, src)
                if teacher_rec.get("status") != "done":
                    raise RuntimeError(f"teacher run {teacher_rec['key']} failed: {teacher_rec.get('error')}")
                state = store.load_state("runs", teacher_rec["key"], teacher_rec["sha256"])
                if state is None:
                    raise RuntimeError(f"teacher weights of run {teacher_rec['key']} are missing or corrupt in "
                                       f"{store.root}; delete runs/{teacher_rec['key']}.json to retrain it")
                teacher.load_state_dict(state)
        indices = select_subset(r.method, {}, src.labels, r.fraction, r.seed, r.class_balanced)
        desc = f"{r.model} f={r.fraction:g} a={r.alpha:g} s={r.seed}"
        slot = store.checkpoint("runs", key, ident)
        torch.manual_seed(r.seed)
        model = build_model(r.model, src.num_classes, src.in_channels)
        try:
            step = ModelSteps([model], [make_kd_loss(r.kd_loss, r.alpha, r.tau)], [teacher], r.train, group.device,
                              wrap=group.wrap)
            (result,) = run_loop(step, src.start(indices, r.train, r.seed), r.train, checkpoint=slot, desc=desc,
                                 progress=progress, main=group.main, device=group.device)
        except TrainingDiverged as err:
            rec = None
            if group.main:
                rec = canonical(store.put("runs", key, {"status": "failed", "config": ident, "error": str(err)}))
                slot.clear()
            return group.broadcast(rec)
        result.extra.update(steps_per_epoch=src.steps_per_epoch, per_rank_batch=src.per_rank,
                            world_size=group.world, eval_seconds=result.extra.get("eval_seconds"))
        rec = None
        if group.main:
            record = {
                "status": "done", "config": ident, "result": result.to_dict(), "n_train": int(len(indices)),
                "n_full": int(src.n_full), "n_test": int(src.n_test),
                "teacher_acc": None if teacher_rec is None else teacher_rec["result"]["final_acc"],
                "teacher_key": None if teacher_rec is None else teacher_rec["key"],
                "teacher_checkpoint": r.teacher_checkpoint, "data_root": r.data_root, "data_source": src.folder.source,
                "world_size": group.world, "backend": group.backend, "device": str(group.device),
                "gpu": torch.cuda.get_device_name(group.device) if group.device.type == "cuda" else None,
                "torch": torch.__version__,
            }
            if r.fraction == 1.0 and not r.uses_teacher:  # a potential teacher: keep its weights
                record["sha256"] = store.save_state("runs", key, {k: v.detach().cpu()
                                                                  for k, v in model.state_dict().items()})
            rec = canonical(store.put("runs", key, record))  # the same plain form as a record read back
            slot.clear()
        return group.broadcast(rec)


def run_all(configs: Sequence[DistConfig | RunConfig], group: ProcessGroup, store: Store, progress: bool = True,
            on_record: Optional[Callable[[dict], None]] = None) -> list[dict]:
    """Runs ``configs`` in order in this process group (``RunConfig``s through ``Study``, image folders sharing
    the sources of runs on the same folder); ``on_record(record)`` is called as each run finishes."""
    study = Study(store, progress=progress, group=group)
    shared: dict[tuple, FolderSource] = {}
    records = []
    for cfg in configs:
        if isinstance(cfg, RunConfig):
            rec = canonical(study.run(cfg))
        else:
            k = FolderSource.reuse_key(cfg)
            if k not in shared:
                shared[k] = FolderSource(cfg.resolved(), group)
            rec = _run(cfg, group, store, progress, shared[k])
        records.append(rec)
        if on_record is not None:
            on_record(rec)
    return records


def as_config(d: DistConfig | RunConfig | Mapping[str, Any]) -> DistConfig | RunConfig:
    """A run config from plain values: a ``DistConfig`` for ``dataset: image_folder``, else a ``RunConfig``."""
    if isinstance(d, (DistConfig, RunConfig)):
        return d
    return DistConfig.from_dict(d) if d.get("dataset") == FOLDER else RunConfig.from_dict(d)


def summary_line(rec: dict) -> str:
    """One JSON line naming a run and its outcome (what ``main`` prints on rank 0)."""
    res, cfg = rec.get("result") or {}, rec["config"]
    return json.dumps({"key": rec["key"], "status": rec["status"], "reused": rec.get("reused", False),
                       "model": cfg["model"], "fraction": cfg["fraction"], "alpha": cfg["alpha"], "seed": cfg["seed"],
                       "final_acc": res.get("final_acc"), "images_per_sec": res.get("images_per_sec"),
                       "wall_seconds": res.get("wall_seconds"), "world_size": rec.get("world_size")})


def train_distributed(cfg: DistConfig | RunConfig | Mapping[str, Any], store: Store | str | os.PathLike,
                      progress: bool = True, device: str = "auto") -> dict:
    """Trains (or reads) one run in this process group and returns its record (on every rank).

    Called under torchrun it joins the group from the environment; called plainly it is one process.
    """
    store = store if isinstance(store, Store) else Store(store)
    return run_all([as_config(cfg)], ProcessGroup.from_env(device), store, progress)[0]


# ----------------------------------------------------------------------------------------------- launching
OPERATIONAL = ("store", "progress", "device", "runs")


def parse_launch(spec: Mapping[str, Any]) -> tuple[list[DistConfig | RunConfig], dict]:
    """A launch mapping -> (run configs, options). Top-level run fields are defaults for every entry of ``runs``."""
    shared = {k: v for k, v in spec.items() if k not in OPERATIONAL}
    runs = spec.get("runs") or [{}]
    configs = [as_config({**shared, **item}) for item in runs]
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


def launch(configs: Sequence[DistConfig | RunConfig | Mapping[str, Any]], store: str | os.PathLike, nproc: int = 1,
           progress: bool = True, device: str = "auto", echo: bool = True) -> list[dict]:
    """Runs ``configs`` in order and returns their records: in this process when ``nproc <= 1``, else through
    ``torchrun --nproc_per_node=nproc`` in a subprocess (``kdlib.executors.run_torchrun``; its output streamed
    here when ``echo``)."""
    configs = [as_config(c) for c in configs]
    if nproc <= 1:
        return run_all(configs, ProcessGroup.from_env(device), Store(store), progress)
    return run_torchrun(configs, store, nproc, progress, device, echo)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """``python -m torch.distributed.run --nproc_per_node=N -m kdlib.distributed --config FILE``."""
    parser = argparse.ArgumentParser(description="kdlib distributed training (run under torchrun)")
    parser.add_argument("--config", required=True, help="YAML/JSON launch file: run fields, store, runs")
    parser.add_argument("--store", help="run store folder (overrides the file's store)")
    parser.add_argument("--results", help="rank 0 writes the records of the runs here as JSON")
    parser.add_argument("--device", help="auto, cpu or cuda (overrides the file's device)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    configs, opts = parse_launch(load_launch(args.config))
    store_root = args.store or opts["store"]
    if not store_root:
        parser.error("no store: give --store or set store in the config file")
    group = ProcessGroup.from_env(args.device or opts["device"])
    try:
        records = run_all(configs, group, Store(store_root), opts["progress"] and not args.no_progress,
                          on_record=(lambda rec: print(summary_line(rec), flush=True)) if group.main else None)
        if group.main and args.results:
            Path(args.results).write_text(json.dumps(canonical(records)))
    finally:
        group.close()


if __name__ == "__main__":
    main()
