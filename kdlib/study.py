"""Runs and grids: a frozen ``RunConfig`` per student, teachers and scores shared through the store."""
from __future__ import annotations

import dataclasses
import itertools
import time
import traceback
import warnings
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import DATASETS, ImageData, load_dataset
from .imagenet import FolderData, FolderSpec, find_split_root, load_folder_spec
from .distill import KD_LOSSES, make_kd_loss
from .models import MODELS, build_model
from .prune import METHODS, ProxyConfig, ScoreContext
from .registry import Params
from .records import flatten
from .store import OMIT_IF_NONE, Store, canonical, config_key
from .precision import runtime_info
from .processes import ProcessGroup
from .seeds import subset_rng, teacher_subset_rng
from .train import TrainConfig, TrainingDiverged, held_out_accuracy, resolve_device, train
from .validate import (check_bool, check_choice, check_config, check_fraction, check_name, check_number,
                       check_positive, check_seed, check_unit_interval, from_plain, normalise, optional)
from .weights import WeightsFile
from .alpha_rule import check_alpha, resolve_alpha
from .executors import check_executor, chunk_runs, run_parallel, run_torchrun
from .grouped import Member, train_group
from .group_size import PLAN_MODES, GroupPlan, choose_group

if TYPE_CHECKING:  # pandas is imported where tables are built, so a grid worker never loads it
    import pandas as pd


def _check_params(value: Any, parameter: str, owner: Any) -> Params:
    """Hyperparameter overrides of a method or KD loss (``owner.hyperparameters`` checks names and values)."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{parameter} must be a mapping of hyperparameter names to values, got {value!r}")
    return Params(owner.hyperparameters(value) if value else {})


FOLDER = "image_folder"  # the dataset of runs that stream an image folder (``data``: a FolderSpec)
STREAMED_METHOD = "random"  # the only selection streamed data allow (a scorer needs the whole dataset in memory)


def _check_dataset(value: Any, parameter: str) -> str:
    if value == FOLDER or (isinstance(value, str) and value in DATASETS.names()):
        return value
    raise ValueError(f"unknown {parameter} {value!r}; allowed values for {parameter!r}: "
                     f"{', '.join(sorted([*DATASETS.names(), FOLDER]))}")


def _check_weights(value: Any, parameter: str) -> WeightsFile:
    if isinstance(value, WeightsFile):
        return value
    try:
        return WeightsFile.from_dict(value)
    except ValueError as err:
        raise ValueError(f"{parameter}: {err}" if not str(err).startswith(parameter) else str(err)) from None


def _spec_identities(d: dict, cfg: Any, names: Sequence[str]) -> dict:
    """``d`` with each set field of ``names`` replaced by its spec's identity (content hashes, not paths); unset,
    they are already left out of the canonical form (``OMIT_IF_NONE``), so earlier keys stay."""
    for name in names:
        if getattr(cfg, name) is not None:
            d[name] = getattr(cfg, name).identity()
    return d


@dataclass(frozen=True)
class RunConfig:
    """One student run. ``fraction`` is the fraction of the training set kept; ``alpha`` weighs the KD term.

    ``teacher`` is the teacher's architecture (trained on ``teacher_fraction`` of the data, random subset,
    with ``teacher_train``, default the student's recipe); ``label_noise`` is the rate of symmetric label noise
    injected (with seed ``noise_seed``) into the training labels that teacher, scorer and student all see.
    ``alpha_rule`` names the rule that chose ``alpha`` when the grid asked for ``alpha: "auto"``
    (``kdlib.alpha_rule``); it is provenance only and not part of the run's key. ``method_params`` and
    ``kd_params`` override hyperparameters the pruning method (and its scorer) and the KD loss declare when they
    register; the resolved config holds every declared value, so each is part of the run's key.

    ``dataset="image_folder"`` streams the image folder ``data`` names (a ``kdlib.imagenet.FolderSpec``: the
    key holds its content fingerprint and crop, not its path or loader speed knobs); such runs keep a random
    subset (``method`` must be ``"random"``) and take no label noise. ``teacher_checkpoint`` (a path, or a
    ``kdlib.weights.WeightsFile``) distils from a state-dict file instead of training the teacher; keyed by the
    file's SHA-256. Both fields are left out of the key when unset, so in-memory runs keep their keys.
    """

    dataset: str = "digits"
    model: str = "convnet"
    teacher: Optional[str] = None
    method: str = "random"
    fraction: float = 1.0
    alpha: float = 0.0
    tau: float = 4.0
    kd_loss: str = "kd"
    seed: int = 0
    score_seed: Optional[int] = None
    class_balanced: bool = False
    teacher_fraction: float = 1.0
    label_noise: float = 0.0
    noise_seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)
    teacher_train: Optional[TrainConfig] = None
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    alpha_rule: Optional[str] = None
    method_params: Mapping[str, Any] = field(default_factory=Params)
    kd_params: Mapping[str, Any] = field(default_factory=Params)
    data: Optional[FolderSpec] = field(default=None, metadata={OMIT_IF_NONE: True})
    teacher_checkpoint: Optional[WeightsFile] = field(default=None, metadata={OMIT_IF_NONE: True})

    def __post_init__(self) -> None:
        if check_alpha(self.alpha) == "auto":
            raise ValueError("alpha='auto' is resolved before a RunConfig is built: use expand_grid(base, axes, "
                             "store=...) or kdlib.alpha_rule.resolve_auto_alpha(configs, store)")
        normalise(self, {
            "dataset": _check_dataset,
            "model": MODELS.check,
            "teacher": optional(MODELS.check),
            "method": METHODS.check,
            "fraction": check_fraction,
            "alpha": check_unit_interval,
            "tau": check_positive,
            "kd_loss": KD_LOSSES.check,
            "seed": check_seed,
            "score_seed": optional(check_seed),
            "class_balanced": check_bool,
            "teacher_fraction": check_fraction,
            "label_noise": partial(check_number, low=0, high=1, high_open=True),
            "noise_seed": check_seed,
            "train": partial(check_config, config=TrainConfig),
            "teacher_train": optional(partial(check_config, config=TrainConfig)),
            "proxy": partial(check_config, config=ProxyConfig),
            "alpha_rule": optional(check_name),
            "method_params": lambda v, n: _check_params(v, n, METHODS.get(self.method)),
            "kd_params": lambda v, n: _check_params(v, n, KD_LOSSES.get(self.kd_loss)),
            "data": optional(partial(check_config, config=FolderSpec)),
            "teacher_checkpoint": optional(_check_weights),
        })
        if self.alpha > 0 and self.teacher is None:
            raise ValueError(f"alpha={self.alpha} > 0 needs a teacher; set teacher to one of: {', '.join(MODELS.names())}")
        if (self.dataset == FOLDER) != (self.data is not None):
            raise ValueError(f"data (a FolderSpec: root, image_size, crop_scale, ...) is set exactly when "
                             f"dataset={FOLDER!r}; got dataset={self.dataset!r}, data={self.data!r}")
        if self.data is not None:
            if self.method != STREAMED_METHOD:
                raise ValueError(f"method must be {STREAMED_METHOD!r} for dataset={FOLDER!r} (streamed data: a "
                                 f"scorer needs the whole dataset in memory), got {self.method!r}")
            if self.label_noise:
                raise ValueError(f"label_noise must be 0 for dataset={FOLDER!r} (its labels are its class "
                                 f"folders), got {self.label_noise!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunConfig":
        """Builds a config from flat parameters (as in a YAML file), naming any unknown key."""
        return from_plain(cls, d, {"train": TrainConfig, "teacher_train": TrainConfig, "proxy": ProxyConfig,
                                   "data": FolderSpec})

    @property
    def uses_teacher(self) -> bool:
        return self.alpha > 0

    def resolved(self) -> "RunConfig":
        """The config that decides the result: irrelevant fields are normalised so equal runs share a record
        (no teacher when alpha is 0; no method, scores or class balance when everything is kept)."""
        changes: dict[str, Any] = {"fraction": float(self.fraction), "alpha": float(self.alpha),
                                   "teacher_fraction": float(self.teacher_fraction)}
        if not self.uses_teacher:
            changes.update(teacher=None, teacher_fraction=1.0, teacher_train=None, tau=4.0, kd_loss="kd",
                           kd_params={}, teacher_checkpoint=None)
        else:
            changes["kd_params"] = KD_LOSSES.get(self.kd_loss).hyperparameters(self.kd_params)
            if self.teacher_checkpoint is not None:  # loaded, not trained
                changes.update(teacher_fraction=1.0, teacher_train=None)
            elif self.teacher_train is None:
                changes["teacher_train"] = self.train
        if self.fraction == 1.0:
            changes.update(method="random", class_balanced=False, method_params={})
        else:
            changes["method_params"] = METHODS.get(self.method).hyperparameters(self.method_params)
        if self.fraction == 1.0 or METHODS.get(self.method).scorer is None:
            changes.update(proxy=ProxyConfig(), score_seed=None)
        elif self.score_seed is None:
            changes["score_seed"] = self.seed
        return dataclasses.replace(self, **changes)

    def identity(self) -> dict:
        """What the run's key hashes (and its record carries): the resolved config, in canonical form, without
        provenance (``alpha_rule``); hyperparameter fields only when the method or loss declares some, so a run
        without any keeps its earlier key."""
        r = self.resolved()
        d = canonical(r)
        d.pop("alpha_rule", None)
        for name in ("method_params", "kd_params"):
            if not d[name]:
                d.pop(name)
        return _spec_identities(d, r, ("data", "teacher_checkpoint"))

    def key(self) -> str:
        """The run's store key: the hash of ``identity()``."""
        return config_key(self.identity())

    def teacher_config(self) -> "TeacherConfig":
        """The teacher this run distils from (``TeacherConfig.of``)."""
        return TeacherConfig.of(self)

    def score_spec(self) -> Optional["ScoreSpec"]:
        """The score cache this run selects from, or None (``ScoreSpec.of``)."""
        return ScoreSpec.of(self)

    def group_key(self) -> str:
        """What runs must share to train as one group (``kdlib.grouped``): the identity without what each member
        has on its own (``MEMBER_FIELDS``: seed, selection, labels, loss, teacher), so the data, the student, the
        recipe and the kept fraction (hence equal batches and steps). Not part of any key: a run's record is the
        same whichever group trained it."""
        d = self.identity()
        for name in MEMBER_FIELDS:
            d.pop(name, None)
        return config_key(d)


MEMBER_FIELDS = ("seed", "method", "method_params", "score_seed", "class_balanced", "proxy", "label_noise",
                 "noise_seed", "alpha", "tau", "kd_loss", "kd_params", "teacher", "teacher_fraction", "teacher_train",
                 "teacher_checkpoint")


@dataclass(frozen=True)
class TeacherConfig:
    """A teacher: trained once per (dataset, model, seed, recipe, data fraction, label noise) and reused, under
    ``teachers/`` in the store. ``data`` names a streamed image folder (``dataset="image_folder"``);
    ``checkpoint`` a state-dict file the teacher is loaded from instead of trained (``train`` is then None)."""

    dataset: str
    model: str
    seed: int
    train: Optional[TrainConfig]
    fraction: float = 1.0
    label_noise: float = 0.0
    noise_seed: int = 0
    data: Optional[FolderSpec] = field(default=None, metadata={OMIT_IF_NONE: True})
    checkpoint: Optional[WeightsFile] = field(default=None, metadata={OMIT_IF_NONE: True})

    def __post_init__(self) -> None:
        normalise(self, {
            "dataset": _check_dataset,
            "model": MODELS.check,
            "seed": check_seed,
            "train": optional(partial(check_config, config=TrainConfig)),
            "fraction": check_fraction,
            "label_noise": partial(check_number, low=0, high=1, high_open=True),
            "noise_seed": check_seed,
            "data": optional(partial(check_config, config=FolderSpec)),
            "checkpoint": optional(_check_weights),
        })
        if (self.train is None) == (self.checkpoint is None):
            raise ValueError("a teacher is trained (train: a TrainConfig) or loaded (checkpoint: a WeightsFile), "
                             "exactly one of the two")
        if (self.dataset == FOLDER) != (self.data is not None):
            raise ValueError(f"data is set exactly when dataset={FOLDER!r}")

    @classmethod
    def of(cls, run: RunConfig) -> "TeacherConfig":
        r = run.resolved()
        assert r.teacher is not None and (r.teacher_train is not None or r.teacher_checkpoint is not None)
        return cls(r.dataset, r.teacher, r.seed, r.teacher_train, r.teacher_fraction, r.label_noise, r.noise_seed,
                   r.data, r.teacher_checkpoint)

    def identity(self) -> dict:
        """What the key hashes: the fields, with ``data`` and ``checkpoint`` as their content identities, each
        left out when unset (a teacher on in-memory data keeps its earlier key)."""
        return _spec_identities(canonical(self), self, ("data", "checkpoint"))

    def key(self) -> str:
        """The teacher's store key (under ``teachers/``)."""
        return config_key(self.identity())


@dataclass(frozen=True)
class ScoreSpec:
    """A score cache: a scorer (by its declared name, with its hyperparameters) run on a dataset with a proxy
    recipe, proxy architecture, seed and label noise; shared by every method and fraction that uses it."""

    dataset: str
    scorer: str
    proxy: ProxyConfig
    model: str
    seed: int
    label_noise: float
    noise_seed: int
    params: Mapping[str, Any] = field(default_factory=Params)

    @classmethod
    def of(cls, run: RunConfig) -> Optional["ScoreSpec"]:
        """The scores ``run`` selects from, or None (everything kept, or a method without a scorer)."""
        r = run.resolved()
        method = METHODS.get(r.method)
        if r.fraction == 1.0 or method.scorer is None:
            return None
        return cls(r.dataset, method.scorer_key, r.proxy, r.proxy.model or r.model, int(r.score_seed),
                   r.label_noise, r.noise_seed, Params(method.score_params(r.method_params)))

    def identity(self) -> dict:
        """What the key hashes (no ``params`` entry for a scorer without hyperparameters: its earlier key)."""
        d = canonical(self)
        if not d["params"]:
            d.pop("params")
        return d

    def key(self) -> str:
        return config_key(self.identity())


def noisy_labels(labels: torch.Tensor, rate: float, num_classes: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """Symmetric label noise: a ``rate`` share of samples (exactly round(rate*N)) get a different, uniformly
    drawn label. Returns the new labels and the boolean mask of corrupted samples."""
    n = len(labels)
    rng = np.random.default_rng(seed)
    mask = np.zeros(n, dtype=bool)
    if rate > 0:
        mask[rng.choice(n, size=int(round(rate * n)), replace=False)] = True
    y = labels.clone()
    shift = torch.as_tensor(rng.integers(1, num_classes, size=int(mask.sum())), dtype=y.dtype)
    y[torch.as_tensor(mask)] = (y[torch.as_tensor(mask)] + shift) % num_classes
    return y, mask


def subset_size(n: int, fraction: float, parameter: str = "fraction") -> int:
    """``round(fraction * n)``, the size of a subset of ``n`` samples; a ValueError naming ``parameter`` when that
    is below 2 (training, with BatchNorm, needs at least two samples)."""
    k = int(round(fraction * n))
    if k < 2:
        raise ValueError(f"{parameter}={fraction:g} keeps round({fraction:g} * {n}) = {k} of the {n} training "
                         f"samples; training needs at least 2: use {parameter} >= {2 / n:.3g}")
    return k


def error_summary(err: BaseException, frames: int = 4) -> str:
    """The last ``frames`` frames of ``err``'s traceback, innermost first: ``file:line in function <- ...``."""
    tb = traceback.extract_tb(err.__traceback__)[-frames:]
    return " <- ".join(f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in reversed(tb))


def check_device(device: str | torch.device) -> torch.device:
    """The device ``device`` names ('auto' resolved); a ValueError when it is not a device name or this machine
    lacks it (``cuda`` without a CUDA device), so a grid fails at once instead of at its first run."""
    try:
        dev = resolve_device(device)
    except (RuntimeError, TypeError, ValueError) as err:
        raise ValueError(f"unknown device {device!r} ({err}); use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={str(device)!r} but this machine has no CUDA device torch can use "
                             f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); use device='auto' or 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={str(device)!r} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={str(device)!r} but MPS is not available here; use device='auto' or 'cpu'")
    return dev


def select_subset(method: str, scores: Mapping[str, np.ndarray], labels: np.ndarray, fraction: float, seed: int,
                  class_balanced: bool = False, params: Optional[Mapping[str, Any]] = None) -> np.ndarray:
    """Sorted indices kept by ``method`` (its selector on ``scores``, with its hyperparameters at their defaults
    or ``params``): exactly round(f*N), drawn from the run's subset stream (``kdlib.seeds.subset_rng``); every
    index when ``fraction == 1``."""
    labels = np.asarray(labels)
    if fraction == 1.0:
        return np.arange(len(labels), dtype=np.int64)
    k = subset_size(len(labels), fraction, "fraction")
    m = METHODS.get(method)
    idx = m.select(dict(scores), labels, k, subset_rng(seed), class_balanced,
                   **m.selector_params(m.hyperparameters(params)))
    if len(idx) != k or len(np.unique(idx)) != k:
        raise RuntimeError(f"method {method!r} returned {len(np.unique(idx))} distinct indices, expected {k}")
    return np.sort(np.asarray(idx, dtype=np.int64))


@dataclass
class Prepared:
    """What a run trains with (``Study._prepare``)."""

    data: Any
    indices: np.ndarray
    labels: torch.Tensor
    noisy: np.ndarray
    teacher: Optional[torch.nn.Module]
    teacher_rec: Optional[dict]
    model: torch.nn.Module


def _split_groups(keys: Sequence[str], size: int, mode: str, store: Store) -> list[list[str]]:
    """``keys`` (pending runs of one group key) in groups of at most ``size``; a group the store holds a checkpoint
    of (same members, same mode) is kept whole and comes first, so a killed group resumes instead of restarting."""
    left = list(keys)
    groups = []
    for rec in store.records("checkpoints/groups"):
        ident = rec.get("config") or {}
        members = ident.get("runs") if isinstance(ident, dict) else None
        if ident.get("mode") == mode and isinstance(members, list) and len(members) > 1 and set(members) <= set(left):
            groups.append(list(members))
            left = [k for k in left if k not in members]
    return groups + [left[i:i + size] for i in range(0, len(left), size)]


# Seconds between in-run checkpoints: a checkpoint is an fsync'd write of the model and optimiser, which costs more
# than a whole epoch of the quick profile's tiny runs (75 two-step epochs at f=0.05: measured 0.5 s of a 1.6 s run
# when saved every epoch), while a 240-epoch CIFAR run saves about once a minute.
CHECKPOINT_EVERY = 60.0

class Study:
    """Runs configs against a store, sharing loaded data, teachers and scores within the process.

    Under a DDP ``group`` (``kdlib.processes.ProcessGroup``; every process of the job calls the same methods
    in the same order) teachers and students train over the group's processes, scores are computed by rank 0
    alone, and only rank 0 takes store locks and writes; every rank returns the same records.
    """

    def __init__(self, store: Store | str, device: str = "auto", data_root: Optional[str] = None,
                 progress: bool = True, group: Optional[ProcessGroup] = None,
                 checkpoint_every: float = CHECKPOINT_EVERY) -> None:
        """``checkpoint_every``: the least seconds between two in-run checkpoints of a run or teacher (0: every
        epoch). Not part of any key: it decides how much an interrupted run repeats, not what it computes."""
        self.store = store if isinstance(store, Store) else Store(store)
        self.checkpoint_every = check_number(checkpoint_every, "checkpoint_every", low=0.0)
        self.group = group or ProcessGroup(device=check_device(device))
        self.device = self.group.device
        self.data_root = data_root
        self.progress = progress
        self._folders: dict[FolderSpec, FolderData] = {}

    # --- the process group: rank 0 decides and writes, every rank gets the answer --------------------------
    def _lock(self, kind: str, key: str):
        return self.store.lock(kind, key) if self.group.main else nullcontext()

    def _done(self, kind: str, key: str) -> Optional[dict]:
        return self.group.broadcast(self.store.done(kind, key) if self.group.main else None)

    def _put(self, kind: str, key: str, record: dict) -> dict:
        if self.group.backend is None:
            return self.store.put(kind, key, record)
        return self.group.broadcast(canonical(self.store.put(kind, key, record)) if self.group.main else None)

    # --- inputs ---------------------------------------------------------------------------------------------
    def data(self, source: str | RunConfig | TeacherConfig) -> ImageData | FolderData:
        """A dataset by name (in memory), or the data of a run or teacher: its streamed folder (listed once per
        study) when it has one."""
        spec = None if isinstance(source, str) else source.data
        if spec is None:
            return load_dataset(source if isinstance(source, str) else source.dataset, self.data_root)
        if spec not in self._folders:
            self._folders[spec] = load_folder_spec(spec)
        return self._folders[spec]

    def labels(self, cfg: RunConfig | TeacherConfig) -> tuple[torch.Tensor, np.ndarray]:
        data = self.data(cfg)
        if isinstance(data, FolderData):  # no label noise on streamed data (RunConfig checks)
            return torch.as_tensor(data.labels), np.zeros(data.n_train, dtype=bool)
        return noisy_labels(data.y_train, cfg.label_noise, data.num_classes, cfg.noise_seed)

    def scores(self, cfg: RunConfig) -> dict[str, np.ndarray]:
        """The method's per-sample arrays, computed once per ``ScoreSpec`` (dataset, scorer and its
        hyperparameters, proxy, seed, noise); under DDP by rank 0 while the others wait, then read by every rank."""
        spec = ScoreSpec.of(cfg)
        if spec is None:
            return {}
        if self.group.backend is not None:
            try:
                if self.group.main:
                    Study(self.store, str(self.device), self.data_root, self.progress).scores(cfg)
            finally:
                self.group.barrier()
        key = spec.key()
        with self.store.lock("scores", key):
            rec = self.store.done("scores", key)
            if rec is not None:
                arrays = self.store.load_arrays("scores", key, rec["sha256"])
                if arrays is not None:
                    return arrays
            labels, _ = self.labels(cfg)
            t0 = time.perf_counter()
            ctx = ScoreContext(self.data(spec.dataset), labels, spec.proxy, spec.model, spec.seed, str(self.device),
                               self.progress, dict(spec.params))
            arrays = {k: np.asarray(v) for k, v in METHODS.get(cfg.method).scorer(ctx).items()}
            sha = self.store.save_arrays("scores", key, arrays)
            self.store.put("scores", key, {"status": "done", "config": spec.identity(), "sha256": sha,
                                           "seconds": time.perf_counter() - t0})
            return arrays

    def subset(self, cfg: RunConfig) -> np.ndarray:
        """Indices kept by the run's method: exactly round(f*N), reproducible from the seed."""
        r = cfg.resolved()
        data = self.data(r)
        if r.fraction == 1.0:
            return np.arange(data.n_train)
        labels, _ = self.labels(r)
        return select_subset(r.method, self.scores(r), labels.numpy(), r.fraction, r.seed, r.class_balanced,
                             r.method_params)

    def teacher(self, cfg: TeacherConfig) -> tuple[torch.nn.Module, dict]:
        """The trained teacher and its record, from the store or trained now (once, under a lock); a teacher
        with a ``checkpoint`` is loaded from its file (and its accuracy measured) instead."""
        key = cfg.key()
        data = self.data(cfg)
        with self._lock("teachers", key):
            rec = self._done("teachers", key)
            torch.manual_seed(cfg.seed)  # the initial weights must not depend on what ran before in this process
            model = build_model(cfg.model, data.num_classes, data.in_channels)
            if rec is not None:  # a state that does not load into the architecture is quarantined and retrained
                state = self.store.load_state("teachers", key, rec["sha256"], into=model)
                if self.group.broadcast(state is not None):
                    return model.eval(), rec
                torch.manual_seed(cfg.seed)
                model = build_model(cfg.model, data.num_classes, data.in_channels)  # a failed load may fill part
            if cfg.checkpoint is not None:
                return self._loaded_teacher(cfg, key, model, data)
            labels, _ = self.labels(cfg)
            torch.manual_seed(cfg.seed)
            idx = None
            if cfg.fraction < 1.0:
                rng = teacher_subset_rng(cfg.seed)
                idx = np.sort(rng.choice(data.n_train, size=subset_size(data.n_train, cfg.fraction, "teacher_fraction"),
                                         replace=False))
            slot = self.store.checkpoint("teachers", key, cfg, self.checkpoint_every)
            result = train(model, data, cfg.train, indices=idx, labels=labels, seed=cfg.seed, progress=self.progress,
                           desc=f"teacher {cfg.model}", checkpoint=slot, group=self.group)
            sha = None
            if self.group.main:
                sha = self.store.save_state("teachers", key, {k: v.cpu() for k, v in model.state_dict().items()})
            rec = self._put("teachers", key, {"status": "done", "config": cfg, "sha256": sha,
                                              "result": result.to_dict(),
                                              "runtime": runtime_info(self.device, cfg.train.precision)})
            if self.group.main:
                slot.clear()
            return model.eval(), rec

    def _loaded_teacher(self, cfg: TeacherConfig, key: str, model: torch.nn.Module,
                        data: ImageData | FolderData) -> tuple[torch.nn.Module, dict]:
        """A teacher from its state-dict file (SHA-256 checked), its test accuracy measured, kept under
        ``teachers/`` like a trained one."""
        cfg.checkpoint.load_into(model)
        acc = held_out_accuracy(model, data, self.group)
        sha = None
        if self.group.main:
            sha = self.store.save_state("teachers", key, {k: v.cpu() for k, v in model.state_dict().items()})
        rec = self._put("teachers", key, {"status": "done", "config": cfg, "sha256": sha,
                                          "source": cfg.checkpoint.path, "result": {"final_acc": acc}})
        return model.eval(), rec

    # --- runs ---------------------------------------------------------------------------------------------
    def run(self, cfg: RunConfig) -> dict:
        """The run's record: read from the store when finished, else computed and written (a group of one,
        ``run_group``). Any error inside the run (a diverging loss, a fraction too small for the dataset, a failing
        scorer...) becomes a ``failed`` record with the error and a short traceback summary, so a grid goes on; a
        Ctrl-C is not caught."""
        return self.run_group([cfg])[0]

    def run_group(self, configs: Sequence[RunConfig], mode: str = "stacked",
                  threads: Optional[int] = None) -> list[dict]:
        """The records of ``configs``: finished ones read, the others trained together as one group
        (``kdlib.grouped``, ``mode`` 'stacked' or 'loop') under their store locks, so two grids never train the
        same run twice. Every member is prepared as a single run is (subset, labels, teacher, initial weights from
        its seed) and recorded as one; a member that fails or diverges gets a failed record and the others go on.
        Runs that cannot share batches (another group key, a streamed folder, a DDP group) train one by one."""
        resolved = [c.resolved() for c in configs]
        keys = [r.key() for r in resolved]
        records: dict[str, dict] = {}
        for k in dict.fromkeys(keys):
            rec = self._done("runs", k)
            if rec is not None:
                records[k] = rec
        pending = sorted({k for k in keys if k not in records})
        if pending:
            with ExitStack() as locks:
                for k in pending:  # sorted order: two grids taking overlapping groups cannot deadlock
                    locks.enter_context(self._lock("runs", k))
                todo = []
                for k in pending:
                    rec = self._done("runs", k)
                    if rec is not None:
                        records[k] = rec
                    else:
                        todo.append(resolved[keys.index(k)])
                if todo:
                    records.update(self._train(todo, mode, threads))
        return [records[k] for k in keys]

    def _train(self, runs: list[RunConfig], mode: str, threads: Optional[int]) -> dict[str, dict]:
        """Trains the pending resolved ``runs`` and writes their records; key -> record."""
        out: dict[str, dict] = {}
        ready: list[tuple[RunConfig, Prepared]] = []
        teachers: dict[str, tuple] = {}  # one model per teacher key: one forward per batch and stream
        for r in runs:
            try:
                ready.append((r, self._prepare(r, teachers)))
            except Exception as err:  # noqa: BLE001 - one bad member must not stop the others
                out[r.key()] = self._failed(r, err)
        together = len(ready) > 1 and self.group.world == 1 and all(isinstance(p.data, ImageData) for _, p in ready) \
            and len({r.group_key() for r, _ in ready}) == 1
        if together:
            try:
                out.update(self._train_together(ready, mode, threads))
                return out
            except Exception as err:  # noqa: BLE001 - the group's own failure: each member alone finds its cause
                warnings.warn(f"a group of {len(ready)} runs failed ({type(err).__name__}: {err}); its members "
                              f"train one by one", stacklevel=2)
                for r, p in ready:  # their initial weights again: the group trained them in place
                    torch.manual_seed(r.seed)
                    p.model = build_model(r.model, p.data.num_classes, p.data.in_channels)
        for r, p in ready:
            out[r.key()] = self._train_alone(r, p)
        return out

    def _prepare(self, r: RunConfig, teachers: dict[str, tuple]) -> "Prepared":
        """What a run trains with: data, kept rows, labels, teacher, and the student initialised from its seed."""
        data = self.data(r)
        indices = self.subset(r)
        labels, noisy = self.labels(r)
        teacher, teacher_rec = (None, None)
        if r.uses_teacher:
            tcfg = TeacherConfig.of(r)
            tkey = tcfg.key()
            if tkey not in teachers:
                teachers[tkey] = self.teacher(tcfg)
            teacher, teacher_rec = teachers[tkey]
        torch.manual_seed(r.seed)  # the initial weights must not depend on what ran before in this process
        model = build_model(r.model, data.num_classes, data.in_channels)
        return Prepared(data, indices, labels, noisy, teacher, teacher_rec, model)

    def _failed(self, r: RunConfig, err: BaseException) -> dict:
        """Writes and returns the failed record of ``r`` for ``err``."""
        if isinstance(err, TrainingDiverged):
            return self._put("runs", r.key(), {"status": "failed", "config": r, "error": str(err)})
        return self._put("runs", r.key(), {"status": "failed", "config": r, "error": f"{type(err).__name__}: {err}",
                                          "traceback": error_summary(err)})

    def _train_alone(self, r: RunConfig, p: "Prepared") -> dict:
        key = r.key()
        slot = self.store.checkpoint("runs", key, r, self.checkpoint_every)  # an interrupted run resumes from its last epoch
        try:
            result = train(p.model, p.data, r.train, indices=p.indices, labels=p.labels,
                           loss_fn=make_kd_loss(r.kd_loss, r.alpha, r.tau, r.kd_params), teacher=p.teacher, seed=r.seed,
                           progress=self.progress, desc=f"{r.method} f={r.fraction:g} a={r.alpha:g} s={r.seed}",
                           checkpoint=slot, group=self.group)
        except Exception as err:  # noqa: BLE001 - one bad run must not stop the grid; the record says what failed
            rec = self._failed(r, err)
        else:
            rec = self._put("runs", key, self.run_record(r, result, p.data, p.indices, p.noisy, p.teacher_rec))
        if self.group.main:
            slot.clear()  # only once the record is written
        return rec

    def _train_together(self, ready: list[tuple[RunConfig, "Prepared"]], mode: str,
                        threads: Optional[int]) -> dict[str, dict]:
        """Trains the prepared runs as one group (``kdlib.grouped.train_group``), checkpointed under
        ``checkpoints/groups`` by its members' keys and mode, and writes each member's record."""
        runs = [r for r, _ in ready]
        ident = {"runs": [r.key() for r in runs], "mode": mode}
        slot = self.store.checkpoint("groups", config_key(ident), ident, self.checkpoint_every)
        members = [Member(p.model, r.seed, p.indices, p.labels, make_kd_loss(r.kd_loss, r.alpha, r.tau, r.kd_params),
                          p.teacher) for r, p in ready]
        r0 = runs[0]
        desc = f"group of {len(runs)}: {r0.model} f={r0.fraction:g} ({', '.join(sorted({r.method for r in runs}))})"
        results = train_group(members, ready[0][1].data, r0.train, device=self.device, mode=mode, threads=threads,
                              progress=self.progress, desc=desc, on_diverge="keep", checkpoint=slot)
        out = {}
        for (r, p), res in zip(ready, results):
            if "diverged" in res.extra:
                out[r.key()] = self._failed(r, TrainingDiverged(res.extra["diverged"]))
            else:
                out[r.key()] = self._put("runs", r.key(), self.run_record(r, res, p.data, p.indices, p.noisy,
                                                                          p.teacher_rec))
        slot.clear()  # only once every record is written
        return out

    def run_chunk(self, configs: Sequence[RunConfig], size: int | str = "auto", mode: str = "auto") -> list[dict]:
        """The records of ``configs`` (runs that may share a group: one ``group_key``), the pending ones trained
        in groups of ``size`` runs in ``mode`` (each 'auto': chosen for this device by
        ``kdlib.group_size.choose_group``). A group whose checkpoint the store holds is formed again first, so a
        killed chunk resumes where it stopped."""
        resolved = [c.resolved() for c in configs]
        pending = list(dict.fromkeys(r.key() for r in resolved if self.store.done("runs", r.key()) is None))
        by_key = {r.key(): r for r in resolved}
        if len(pending) > 1 and self.group.world == 1 and configs[0].data is None:
            plan = self.group_plan(by_key[pending[0]], size, mode, len(pending))
            for group in _split_groups(pending, plan.size, plan.mode, self.store):
                self.run_group([by_key[k] for k in group], plan.mode,
                               threads=min(len(group), torch.get_num_threads()) if plan.mode == "loop" else None)
        return [self.run(c) for c in configs]  # every record, read (a run that failed to group trains alone here)

    def group_plan(self, cfg: RunConfig, size: int | str = "auto", mode: str = "auto",
                   n: Optional[int] = None) -> GroupPlan:
        """The group size and mode for runs like ``cfg`` on this study's device (``choose_group``), at most ``n``."""
        data = self.data(cfg)
        shape = tuple(data.x_test.shape[1:])
        teacher = cfg.teacher if cfg.resolved().uses_teacher else None
        plan = choose_group(cfg.model, teacher, data.num_classes, shape, cfg.train, self.device, size, mode)
        if n is not None and plan.size > n:
            plan = dataclasses.replace(plan, size=n)
        return plan

    def run_record(self, r: RunConfig, result: Any, data: ImageData, indices: np.ndarray, noisy: np.ndarray,
                   teacher_rec: Optional[dict]) -> dict:
        """The record of a finished run, trained alone or in a group (the record does not say which but in
        ``result.extra``)."""
        return {
            "status": "done", "config": r, "result": result.to_dict(), "n_train": int(len(indices)),
            "n_full": int(data.n_train), "noisy_kept": int(noisy[indices].sum()),
            "teacher_acc": None if teacher_rec is None else teacher_rec["result"]["final_acc"],
            "teacher_key": None if teacher_rec is None else teacher_rec["key"],
            "device": str(self.device), "torch": torch.__version__, "world_size": self.group.world,
            "runtime": runtime_info(self.device, r.train.precision),
            **({"n_test": len(data.val), "data_source": data.source} if isinstance(data, FolderData) else {}),
        }


GRID_AXES = tuple(RunConfig.__dataclass_fields__)
RUN_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConfig) if f.default is not dataclasses.MISSING}
GRID_WARN = 10_000  # expand_grid warns above this many configs (each one a training run)


def _unquoted(value: Any) -> str:
    """``value`` as it belongs in a list: a string that reads as a number without its quotes."""
    if isinstance(value, str):
        try:
            return repr(float(value)) if any(c in value for c in ".eE") else repr(int(value))
        except ValueError:
            pass
    return repr(value)


def check_axes(axes: Mapping[str, Iterable[Any]]) -> dict[str, list]:
    """Each grid axis as a non-empty list; a ValueError naming the axis when it is empty, a string or a scalar
    (a string would be iterated character by character)."""
    if not isinstance(axes, Mapping):
        raise ValueError(f"grid axes must map RunConfig fields to lists of values, got {axes!r}")
    unknown = set(axes) - set(GRID_AXES)
    if unknown:
        raise ValueError(f"unknown grid axis {sorted(unknown)}; allowed: {', '.join(GRID_AXES)}")
    out = {}
    for name, values in axes.items():
        if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
            raise ValueError(f"grid axis {name!r} must be a list of values, got {values!r}; write "
                             f"[{_unquoted(values)}] for a single value")
        out[name] = list(values)
        if not out[name]:
            raise ValueError(f"grid axis {name!r} is empty: give at least one value (the grid would have no runs)")
    return out


def expand_grid(base: RunConfig | Mapping[str, Any], axes: Mapping[str, Iterable[Any]],
                store: Store | str | None = None) -> list[RunConfig]:
    """Every combination of ``axes`` (names of RunConfig fields -> values) applied to ``base``; all validated.
    ``alpha: "auto"`` takes the alpha rule saved in ``store`` (or the default rule): ``kdlib.alpha_rule``."""
    base_dict = dict(base) if isinstance(base, Mapping) else {f: getattr(base, f) for f in GRID_AXES}
    axes = check_axes(axes)
    names = list(axes)
    size = int(np.prod([len(v) for v in axes.values()], dtype=object))
    if size > GRID_WARN:
        warnings.warn(f"expand_grid builds {size} configs ({' x '.join(f'{len(v)} {n}' for n, v in axes.items())}), "
                      f"each a training run; check the axes", stacklevel=2)
    configs = []
    for values in itertools.product(*(axes[n] for n in names)):
        configs.append(RunConfig.from_dict(resolve_alpha({**base_dict, **dict(zip(names, values))}, store,
                                                         RUN_DEFAULTS)))
    return configs


def seeded_grid(base: RunConfig | Mapping[str, Any], axis: str, values: Sequence[Any],
                axes: Mapping[str, Iterable[Any]], seeds: Sequence[Any],
                seeds_by: Optional[Mapping[str, Sequence[Any]]] = None,
                store: Store | str | None = None, varied: str = "seed") -> list[RunConfig]:
    """``expand_grid`` over ``axes`` for each value of ``axis`` (say, each method) with ``seeds``; ``seeds_by``
    gives the values it names their own seeds (more repeats of a cheap baseline, or of the teachers that fit).
    ``varied`` names the axis given per value (default ``seed``; ``fraction``: each method at its own fractions)."""
    name = f"{varied}s_by_{axis}"
    if seeds_by is not None and not isinstance(seeds_by, Mapping):
        raise ValueError(f"{name} must map {axis} names to lists of {varied}s, e.g. "
                         f"{{{str(values[0])!r}: {list(seeds)[:3]}}}, got {seeds_by!r}")
    seeds_by = dict(seeds_by or {})
    unknown = sorted(set(seeds_by) - set(values))
    if unknown:
        raise ValueError(f"{name} names {unknown}, which are not in {axis}s; allowed: {', '.join(map(str, values))}")
    configs = []
    for value in values:
        own = seeds_by.get(value, seeds)
        if isinstance(own, (str, int, float)) or not list(own):
            kind = "integers" if varied == "seed" else "values"
            raise ValueError(f"{varied}s{'_by_' + axis + '.' + str(value) if value in seeds_by else ''} must be a "
                             f"non-empty list of {kind}, got {own!r}")
        configs += expand_grid(base, {axis: [value], **axes, varied: list(own)}, store)
    return configs


def sweep_grid(base: RunConfig | Mapping[str, Any], methods: Sequence[str], axes: Mapping[str, Iterable[Any]],
               seeds: Sequence[int], seeds_by_method: Optional[Mapping[str, Sequence[int]]] = None,
               store: Store | str | None = None) -> list[RunConfig]:
    """``seeded_grid`` over the methods: ``seeds_by_method`` gives the methods it names their own seeds (say,
    more repeats of the cheap random baseline than of the methods that need scoring)."""
    return seeded_grid(base, "method", methods, axes, seeds, seeds_by_method, store)


EMPTY_COLUMNS = ("key", "status", "final_acc", "best_acc", "error")


def preflight(configs: Sequence[RunConfig], store: Store | str, device: str = "auto", data_root: Optional[str] = None,
              check_data: bool = True) -> Store:
    """Checks, before anything trains, what would fail every run: configs that are not RunConfigs, a store that
    is a file or not writable, a device this machine lacks, a dataset that is missing (``check_data``). Returns
    the store."""
    if isinstance(configs, (str, bytes, Mapping)) or not isinstance(configs, Sequence):
        raise ValueError(f"configs must be a list of RunConfig (from expand_grid or sweep_grid), got {type(configs).__name__}")
    bad = [i for i, c in enumerate(configs) if not isinstance(c, RunConfig)]
    if bad:
        raise ValueError(f"configs[{bad[0]}] is a {type(configs[bad[0]]).__name__}, not a RunConfig; build configs "
                         f"with expand_grid, sweep_grid or RunConfig.from_dict")
    store = store if isinstance(store, Store) else Store(store)
    store.check_writable()
    check_device(device)
    if check_data:
        for name in sorted({c.dataset for c in configs if c.data is None}):
            load_dataset(name, data_root)  # a FileNotFoundError that says where it looked and how to download
        for root in sorted({c.data.root for c in configs if c.data is not None}):
            find_split_root(root)  # the folder of a streamed run: a FileNotFoundError saying where it looked
    return store


def run_grid(configs: Sequence[RunConfig], store: Store | str, device: str = "auto",
             data_root: Optional[str] = None, progress: bool = True, executor: str = "local",
             workers: Optional[int] = None, address: Optional[str] = None, num_cpus: float = 1,
             num_gpus: float = 0, group_size: int | str = "auto", group_mode: str = "auto", nproc: int = 1,
             runs_per_gpu: int = 1, devices: Optional[Sequence[str]] = None,
             slurm: Optional[Mapping[str, Any]] = None) -> pd.DataFrame:
    """Runs every config (finished ones are read, not recomputed) and returns one row per requested config.

    Runs that share data, student, recipe and kept fraction (``RunConfig.group_key``) train as *groups*
    (``kdlib.grouped``): each member on its own subset, batches, augmentation, labels, loss and teacher, the
    students stacked into one network. ``group_size`` (runs per group) and ``group_mode`` ('stacked' or 'loop')
    are chosen for the device from a measured throughput curve when 'auto' (``kdlib.group_size``); 1 trains one
    run at a time. Grouping is not keyed: a record is the same (up to float rounding) whichever group trained it.
    A run that fails (its loss diverges, or any other error inside it) is recorded as failed, with its error, and
    the grid goes on; errors that would fail every run (a store that is a file or not writable, a missing dataset,
    a device this machine lacks) are raised before anything trains (``preflight``). A Ctrl-C stops the grid with
    every finished record kept.
    ``executor`` is 'local' (this process), 'processes' (a pool of ``workers`` processes, spread over the visible
    GPUs or ``devices`` with at most ``runs_per_gpu`` workers per GPU), 'ray' (one Ray task per chunk of groups
    asking ``num_cpus``/``num_gpus``, on the cluster at ``address`` or a local instance), 'slurm' (one SLURM job
    per chunk of groups, in job arrays, asking what the ``slurm`` mapping says: ``kdlib.slurm``) or 'torchrun'
    (every run trained alone with DDP over ``nproc`` processes, ``kdlib.distributed``): see ``kdlib.executors``.
    Every executor writes the same records to the same store; ``workers``, ``nproc``, the group size and the rest
    are not part of any key.
    """
    import pandas as pd

    check_executor(executor)
    check_group_options(group_size, group_mode)
    store = preflight(configs, store, device if executor not in ("ray", "slurm") else "cpu", data_root,
                      check_data=executor != "ray" or address is None)
    if not configs:
        return pd.DataFrame(columns=list(EMPTY_COLUMNS))
    if executor != "local":
        if executor == "torchrun":  # one DDP job of nproc processes over the runs, in order
            recs = run_torchrun(configs, store, nproc, progress, device)
            return pd.DataFrame([flatten(rec, cfg) for rec, cfg in zip(recs, configs)])
        recs = run_parallel(configs, store, device, data_root, progress, executor, workers, address, num_cpus,
                            num_gpus, study_class=Study, runs_per_gpu=runs_per_gpu, devices=devices, slurm=slurm,
                            group_size=group_size, group_mode=group_mode)
        return pd.DataFrame([flatten(rec, cfg) for rec, cfg in zip(recs, configs)])
    study = Study(store, device, data_root, progress)
    records: dict[str, dict] = {}
    with tqdm(total=len(configs), desc="grid", disable=not progress) as bar:
        for chunk in chunk_runs(configs, group_size):
            for cfg, rec in zip(chunk, study.run_chunk(chunk, group_size, group_mode)):
                records[cfg.key()] = rec
            bar.update(len(chunk))
    return pd.DataFrame([flatten(records[c.key()], c) for c in configs])


def check_group_options(group_size: Any, group_mode: Any) -> None:
    """``group_size`` is a positive integer or 'auto'; ``group_mode`` one of 'auto', 'stacked', 'loop'."""
    if group_size != "auto":
        try:
            check_positive(group_size, "group_size", integer=True)
        except ValueError:
            raise ValueError(f"group_size must be a positive integer (runs trained as one group; 1: one at a time) "
                             f"or 'auto' (chosen for the device), got {group_size!r}") from None
    check_choice(group_mode, "group_mode", PLAN_MODES)


GRID_OWN_ARGUMENTS = ("configs", "store", "device", "data_root", "progress", "executor")


def check_executor_options(options: Any, parameter: str = "executor_options") -> dict:
    """A notebook's ``executor_options``: ``run_grid``'s executor arguments (workers, runs_per_gpu, slurm, ...) by
    name; a ValueError names an unknown one and the allowed ones (their values are checked by ``run_grid``)."""
    import inspect

    allowed = [n for n in inspect.signature(run_grid).parameters if n not in GRID_OWN_ARGUMENTS]
    if not isinstance(options, Mapping):
        raise ValueError(f"{parameter} must be a mapping of run_grid arguments ({', '.join(allowed)}), got {options!r}")
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {parameter} {unknown}; allowed: {', '.join(allowed)}")
    return dict(options)


def current(record: dict) -> bool:
    """Whether a run record is still its config's record under today's keys. A record written before a change
    of what a key holds (say, a pruning method that now declares a hyperparameter) is not: it is never served
    for a run (its key is no longer asked for) and ``load_records`` leaves it out."""
    try:
        return RunConfig.from_dict(record["config"]).key() == record["key"]
    except (ValueError, TypeError, KeyError, OSError):
        return False


def load_records(store: Store | str) -> pd.DataFrame:
    """Every current run record in the store as a table (one row per distinct run); records made under other
    keys by an earlier kdlib are left out with a warning saying how many."""
    import pandas as pd

    store = store if isinstance(store, Store) else Store(store)
    records = store.records("runs")
    kept = [rec for rec in records if current(rec)]
    if len(kept) < len(records):
        warnings.warn(f"{len(records) - len(kept)} run record(s) in {store.root} were written under keys that "
                      f"no longer name their config (an earlier kdlib); they are left out", stacklevel=2)
    return pd.DataFrame([flatten(rec) for rec in kept])
