"""Full-resolution ImageNet streamed from disk, pruned subsets of it, and real images exported in its layout.

The folder layout is ImageNet's: ``root/train/<class>/*.JPEG`` and ``root/val/<class>/*.JPEG`` (classes are the
sorted folder names of ``train``; ``val`` must use the same names). Images are decoded by PIL in DataLoader
workers, transformed as in torchvision's ImageNet reference and handed on as uint8 tensors:

* train: ``RandomResizedCrop(image_size, scale=crop_scale)`` + horizontal flip (torchvision's ImageNet recipe),
* val: ``Resize(round(image_size * 256 / 224))`` + ``CenterCrop(image_size)`` (256 -> 224 at full size).

Batches stay uint8 until they reach the training device, where :meth:`FolderData.normalize` applies the ImageNet
mean/std. This module knows nothing of pruning: a run arrives with the indices of the files it keeps
(``kdlib.study.select_subset``, the rule of every run).

A run names its folder with a :class:`FolderSpec` (``RunConfig(dataset="image_folder", data=FolderSpec(...))``):
its key holds the folder's *content* fingerprint (every file's SHA-256, class names, relative paths), the crop
size and the crop scale, never the path, so a moved folder keeps its keys and a changed image changes them.
:class:`FolderSource` is the training loop's batch source over a folder (``kdlib.train.BatchSource``): this
process's share of the kept files through a ``DistributedSampler`` and DataLoader workers, and sharded exact
evaluation of ``val``.

``export_image_folder`` writes a real in-memory dataset (digits, Fashion-MNIST, ...) as image files in this
layout, so the whole folder pipeline runs offline on real images. Such a folder is *that dataset in ImageNet
folder format*, never ImageNet; a ``SOURCE.txt`` in it says so.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from .data import IMAGE_EXTENSIONS, load_dataset
from .store import file_sha256
from .processes import ProcessGroup
from .seeds import epoch_seed
from .train import TrainConfig, autocast_context, mean_losses
from . import usercache
from .validate import check_positive, from_plain, normalise, optional

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Transform = Callable[[torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------------------------- reading
def scan_folder(root: str | os.PathLike, classes: Optional[Sequence[str]] = None
                ) -> tuple[list[str], np.ndarray, list[str]]:
    """Image files under ``root/<class>/`` (sorted), their int64 labels and the class names.

    Classes are the sorted sub-folder names unless ``classes`` is given; a folder outside ``classes`` is an error.
    Paths are returned relative to ``root``. Files with other extensions are ignored.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    folders = sorted(e.name for e in os.scandir(root) if e.is_dir())
    names = list(classes) if classes is not None else folders
    index = {c: i for i, c in enumerate(names)}
    files: list[str] = []
    labels: list[int] = []
    for name in folders:
        if name not in index:
            raise ValueError(f"{root / name}: class folder {name!r} is not among the {len(names)} known classes")
        found = sorted(e.name for e in os.scandir(root / name)
                       if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS)
        files += [f"{name}/{f}" for f in found]
        labels += [index[name]] * len(found)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}/<class>/")
    return files, np.asarray(labels, dtype=np.int64), names


def open_image(path: str | os.PathLike):
    """An image file decoded by PIL (libjpeg-turbo for JPEG) as an RGB ``PIL.Image`` (grey/CMYK converted)."""
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """An image file as RGB uint8 (3, H, W)."""
    return torch.from_numpy(np.asarray(open_image(path), dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def train_transform(image_size: int, crop_scale: Sequence[float] = (0.08, 1.0)) -> Transform:
    """``RandomResizedCrop(image_size, scale=crop_scale)`` + ``RandomHorizontalFlip()`` on the PIL image, then
    uint8 (3, S, S) tensor (torchvision's ImageNet training transform without the float conversion)."""
    from torchvision.transforms import v2

    return v2.Compose([v2.RandomResizedCrop(image_size, scale=tuple(crop_scale), antialias=True),
                       v2.RandomHorizontalFlip(), v2.PILToTensor()])


def eval_resize(image_size: int) -> int:
    """The shorter side before the center crop: 256 for 224, scaled in proportion for other sizes."""
    return int(round(image_size * 256 / 224))


def eval_transform(image_size: int) -> Transform:
    """``Resize(eval_resize(image_size))`` + ``CenterCrop(image_size)`` on the PIL image, then uint8 tensor."""
    from torchvision.transforms import v2

    return v2.Compose([v2.Resize(eval_resize(image_size), antialias=True), v2.CenterCrop(image_size),
                       v2.PILToTensor()])


class ImageFolder(Dataset):
    """``root/<class>/*`` images as (transformed image, label) pairs, decoded on access (a uint8 (3, H, W)
    tensor when ``transform`` is None; the train/eval transforms take PIL images and return uint8 tensors)."""

    def __init__(self, root: str | os.PathLike, transform: Optional[Transform] = None,
                 classes: Optional[Sequence[str]] = None) -> None:
        self.root = Path(root)
        self.files, self.targets, self.classes = scan_folder(self.root, classes)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path = self.root / self.files[i]
        img = read_image(path) if self.transform is None else self.transform(open_image(path))
        return img, int(self.targets[i])


def find_split_root(root: str | os.PathLike) -> Path:
    """The folder holding ``train/`` and ``val/``: ``root/imagenet`` or ``root`` (as ``kdlib.data`` looks)."""
    root = Path(root).expanduser()
    candidates = [root / "imagenet", root]
    found = next((d for d in candidates if (d / "train").is_dir() and (d / "val").is_dir()), None)
    if found is None:
        looked = "\n".join(f"  {d / s}" for d in candidates for s in ("train", "val"))
        raise FileNotFoundError(f"no ImageNet-layout folder (train/<class>/*, val/<class>/*) found; looked in:\n"
                                f"{looked}\nFor ImageNet, download ILSVRC2012 from https://image-net.org and arrange "
                                f"val into class folders; for an offline stand-in use export_image_folder(...)")
    return found


# ----------------------------------------------------------------------------------------------- identity
def _combine(classes: Sequence[str], files: Sequence[str], digests: Sequence[str]) -> str:
    """The fingerprint (16 hex digits) of class names, relative paths and each file's SHA-256."""
    h = hashlib.sha256()
    h.update("\n".join(classes).encode())
    h.update(b"\0")
    for f, d in zip(files, digests):
        h.update(f"{f}\0{d}\n".encode())
    return h.hexdigest()[:16]


def _hash_files(root: Path, files: Sequence[str]) -> list[str]:
    """Every file's SHA-256, read in threads (hashlib releases the GIL)."""
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda f: file_sha256(root / f), files))


def fingerprint_files(root: str | os.PathLike, classes: Sequence[str], files: Sequence[str]) -> str:
    """SHA-256 (16 hex digits) of the class names, the relative paths and every file's content (read in threads:
    hashlib releases the GIL)."""
    return _combine(classes, files, _hash_files(Path(root), files))


def _folder_files(split_root: Path) -> tuple[list[str], list[str]]:
    """(class names, relative paths of every train and val image) of an ImageNet-layout folder."""
    train_files, _, classes = scan_folder(split_root / "train")
    val_files, _, _ = scan_folder(split_root / "val", classes)
    return classes, [f"train/{f}" for f in train_files] + [f"val/{f}" for f in val_files]


def _file_stat(path: Path) -> list[int]:
    """What tells a file's content changed without reading it: size, mtime, ctime (which no user can set back:
    an image rewritten with its size kept and its mtime restored still changes it) and inode."""
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


FINGERPRINT_CACHE = "folder_fingerprints"  # a folder in the per-user cache (kdlib.usercache): one file per root
FINGERPRINT_CACHE_VERSION = 2
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _fingerprint_cache_name(split_root: Path) -> str:
    return f"{FINGERPRINT_CACHE}/{hashlib.sha256(str(split_root).encode()).hexdigest()[:32]}.json"


def _cached_digests(name: str, split_root: Path, classes: list[str]) -> dict[str, tuple[list[int], str]]:
    """``{relative path: (stat, sha256)}`` from the per-user cache file ``name`` when it verifies (version, its own
    checksum, the resolved root, the classes, every digest 64 hex digits); empty, with a warning naming the file,
    when it does not (it is then rewritten)."""
    entry = usercache.read_json(name)
    if entry is None:
        return {}
    try:
        if not isinstance(entry, dict) or entry.get("version") != FINGERPRINT_CACHE_VERSION:
            raise ValueError(f"not a version-{FINGERPRINT_CACHE_VERSION} folder fingerprint entry")
        body = {k: v for k, v in entry.items() if k != "checksum"}
        if entry.get("checksum") != hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest():
            raise ValueError("its checksum does not match its content")
        if entry["root"] != str(split_root):
            raise ValueError(f"it describes {entry['root']!r}, not {str(split_root)!r}")
        if entry["classes"] != classes:
            return {}  # the class folders changed: every file is read again
        known = {}
        for f, stat, digest in entry["files"]:
            if not (isinstance(f, str) and isinstance(digest, str) and _SHA256.fullmatch(digest)
                    and isinstance(stat, list) and len(stat) == 4 and all(isinstance(s, int) for s in stat)):
                raise ValueError(f"its entry for {f!r} is not (path, stat, SHA-256)")
            known[f] = (stat, digest)
        return known
    except (ValueError, KeyError, TypeError) as err:
        usercache.ignored(name, str(err))
        return {}


def _fingerprint_now(split_root: Path) -> str:
    """The folder's fingerprint from what it holds now: a file whose (size, mtime, ctime, inode) under this same
    resolved root match the per-user cache keeps its cached SHA-256, every other file is read; the cache is
    rewritten when anything was read."""
    classes, files = _folder_files(split_root)
    stats = [_file_stat(split_root / f) for f in files]
    name = _fingerprint_cache_name(split_root)
    known = _cached_digests(name, split_root, classes)
    digests: list[Optional[str]] = [known[f][1] if f in known and known[f][0] == s else None
                                    for f, s in zip(files, stats)]
    stale = [i for i, d in enumerate(digests) if d is None]
    for i, d in zip(stale, _hash_files(split_root, [files[i] for i in stale])):
        digests[i] = d
    if stale or len(known) != len(files):
        body = {"version": FINGERPRINT_CACHE_VERSION, "root": str(split_root), "classes": classes,
                "files": [[f, s, d] for f, s, d in zip(files, stats, digests)]}
        body["checksum"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        usercache.save(name, json.dumps(body).encode())
    return _combine(classes, files, digests)


def folder_fingerprint(root: str | os.PathLike) -> str:
    """The content fingerprint of the ImageNet-layout folder at ``root`` (or ``root/imagenet``): class names,
    relative paths and every file's SHA-256 of ``train`` and ``val``. Every file is read (ImageNet: about
    150 GB, minutes) once; each file's SHA-256 is kept per user (``~/.cache/kdlib/folder_fingerprints/``, one
    checksummed file per resolved root) with its size, mtime, ctime and inode, so later calls only walk the
    metadata (seconds for ImageNet) and read again exactly the files that changed; a copy of the folder elsewhere
    is read in full once. A cache entry that does not verify is ignored with a warning."""
    return _fingerprint_now(find_split_root(root).resolve())


VERIFY_REUSE_S = 60.0  # a folder's fingerprint, once walked, is reused this long to check specs against it
_walked: dict[str, tuple[str, float]] = {}  # resolved split root -> (fingerprint, when it was computed)


def check_folder_fingerprint(root: str | os.PathLike, fingerprint: str, reuse_s: float = VERIFY_REUSE_S) -> None:
    """Raises a ValueError naming both fingerprints when the folder at ``root`` does not hold the content
    ``fingerprint`` stands for. The folder's fingerprint is reused in this process for ``reuse_s`` seconds
    (reading back many records of one folder walks it once), 0: always walk."""
    split_root = str(find_split_root(root).resolve())
    known = _walked.get(split_root)
    if known is not None and time.monotonic() - known[1] < reuse_s:
        actual = known[0]
    else:
        actual = folder_fingerprint(split_root)
        _walked[split_root] = (actual, time.monotonic())
    if actual != fingerprint:
        raise ValueError(f"fingerprint {fingerprint!r} does not match the folder {split_root}, whose content "
                         f"fingerprint is {actual!r}: the spec names another folder's content (leave fingerprint "
                         f"out to key runs by this folder)")


@dataclass(frozen=True)
class FolderSpec:
    """An image folder a run streams (``RunConfig(dataset="image_folder", data=FolderSpec(...))``).

    Keyed (``identity``): ``fingerprint`` (the folder's content, filled in from ``root`` when the spec is built;
    given only when a record is read back, and then checked against the folder where ``root`` exists, or when the
    folder is loaded: a mismatch is a ValueError naming both), ``image_size`` (the training and validation crop,
    224 for ImageNet) and ``crop_scale`` (RandomResizedCrop's area range). Not keyed, they change where and how
    fast, not what:
    ``root`` (the folder with ``train/`` and ``val/``, or its parent), ``workers`` (DataLoader processes per
    training process) and ``eval_batch_size``.
    """

    root: str
    image_size: int = 224
    crop_scale: tuple[float, float] = (0.08, 1.0)
    workers: int = 8
    eval_batch_size: int = 256
    fingerprint: Optional[str] = None

    def __post_init__(self) -> None:
        normalise(self, {
            "root": _check_root,
            "image_size": lambda v, n: check_positive(v, n, integer=True),
            "crop_scale": _check_crop_scale,
            "workers": _check_workers,
            "eval_batch_size": lambda v, n: check_positive(v, n, integer=True),
            "fingerprint": optional(_check_fingerprint),
        })
        if self.fingerprint is None:
            object.__setattr__(self, "fingerprint", folder_fingerprint(self.root))
            _walked[str(find_split_root(self.root).resolve())] = (self.fingerprint, time.monotonic())
        elif _has_split_root(self.root):  # a record read back where its folder is absent is checked when loaded
            check_folder_fingerprint(self.root, self.fingerprint)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FolderSpec":
        """A spec from plain values (YAML/JSON), naming any unknown key."""
        return from_plain(cls, d, {}, "data parameter(s)")

    def identity(self) -> dict:
        """What a run's key holds of its data: the content fingerprint and the crop, not the path or speed knobs."""
        return {"fingerprint": self.fingerprint, "image_size": self.image_size, "crop_scale": list(self.crop_scale)}


def _check_root(value: Any, parameter: str) -> str:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ValueError(f"{parameter} must be the path of a folder holding train/<class>/* and val/<class>/*, "
                         f"got {value!r}")
    return str(value)


def _check_crop_scale(value: Any, parameter: str) -> tuple[float, float]:
    try:
        lo, hi = (float(s) for s in value)
    except (TypeError, ValueError):
        lo, hi = 0.0, -1.0
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"{parameter} must be (low, high) with 0 < low <= high <= 1, got {value!r}")
    return (lo, hi)


def _check_workers(value: Any, parameter: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{parameter} must be an integer >= 0 (DataLoader worker processes), got {value!r}")
    return value


def _check_fingerprint(value: Any, parameter: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{16}", value):
        raise ValueError(f"{parameter} must be 16 hex digits (filled in from the folder; leave it out), got {value!r}")
    return value


@dataclass
class FolderData:
    """A folder-per-class dataset streamed from disk: train/val datasets with their transforms, normalisation."""

    root: Path
    train: ImageFolder
    val: ImageFolder
    image_size: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    source: Optional[str] = field(default=None)
    workers: int = 8
    eval_batch_size: int = 256

    @property
    def classes(self) -> list[str]:
        return self.train.classes

    @property
    def num_classes(self) -> int:
        return len(self.train.classes)

    @property
    def in_channels(self) -> int:
        return 3

    @property
    def n_train(self) -> int:
        return len(self.train)

    @property
    def labels(self) -> np.ndarray:
        """Training labels, known from the folder names without decoding a file."""
        return self.train.targets

    def fingerprint(self) -> str:
        """The folder's content fingerprint (``folder_fingerprint``), what a run's key holds of its data."""
        return folder_fingerprint(self.root)

    def batches(self, cfg: TrainConfig, seed: int, group: ProcessGroup, indices: Optional[Sequence[int]] = None,
                labels: Optional[torch.Tensor] = None) -> "FolderSource":
        """The training loop's batch source over rows ``indices`` (default all) for recipe ``cfg``
        (``kdlib.train.train`` calls it; labels are the folder's, so ``labels`` may only repeat them)."""
        if labels is not None and not np.array_equal(np.asarray(labels), self.labels):
            raise ValueError("labels: an image folder's labels are its class folders (label noise is not supported "
                             "on streamed data)")
        idx = np.arange(self.n_train) if indices is None else np.asarray(indices)
        return FolderSource(self, group, cfg.channels_last).start(idx, cfg, seed)

    def evaluator(self, group: ProcessGroup, channels_last: bool = True) -> "FolderSource":
        """A source that only evaluates (``evaluate(model, precision)`` on ``val``), e.g. for a teacher's accuracy."""
        return FolderSource(self, group, channels_last)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 pixels -> float32 ``(x / 255 - mean) / std`` per channel on ``x``'s device."""
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        return (x.to(torch.float32) / 255.0 - mean) / std


def load_folder_data(root: str | os.PathLike, image_size: int = 224, crop_scale: Sequence[float] = (0.08, 1.0),
                     workers: int = 8, eval_batch_size: int = 256) -> FolderData:
    """The ImageNet-layout folder at ``root`` (or ``root/imagenet``) with train/val transforms for ``image_size``;
    ``workers`` DataLoader processes and ``eval_batch_size`` for the loops that stream it."""
    check_positive(image_size, "image_size", integer=True)
    lo, hi = _check_crop_scale(crop_scale, "crop_scale")
    found = find_split_root(root)
    train = ImageFolder(found / "train", train_transform(image_size, (lo, hi)))
    val = ImageFolder(found / "val", eval_transform(image_size), classes=train.classes)
    source = (found / "SOURCE.txt").read_text().strip() if (found / "SOURCE.txt").is_file() else None
    return FolderData(found, train, val, int(image_size), source=source, workers=_check_workers(workers, "workers"),
                      eval_batch_size=check_positive(eval_batch_size, "eval_batch_size", integer=True))


def _has_split_root(root: str | os.PathLike) -> bool:
    try:
        find_split_root(root)
    except FileNotFoundError:
        return False
    return True


def load_folder_spec(spec: FolderSpec) -> FolderData:
    """The folder a ``FolderSpec`` names, with its crop and loader settings; a ValueError naming both when the
    folder's content does not match the spec's fingerprint (walked again: nothing trains on content changed since
    the spec was built)."""
    check_folder_fingerprint(spec.root, spec.fingerprint, reuse_s=0)
    return load_folder_data(spec.root, spec.image_size, spec.crop_scale, spec.workers, spec.eval_batch_size)


# ----------------------------------------------------------------------------------------------- batch source
class FolderSource:
    """A batch source (``kdlib.train.BatchSource``) of an image folder: this rank's share of the kept subset
    through a ``DistributedSampler`` and DataLoader workers, and exact sharded evaluation of the val split."""

    def __init__(self, folder: FolderData, group: ProcessGroup, channels_last: bool = True) -> None:
        self.folder, self.group = folder, group
        self.n_full = folder.n_train
        self.n_test = len(folder.val)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self._val = None
        self.loader, self.n_kept, self.steps_per_epoch, self.per_rank = None, 0, None, 0

    def per_rank_batch(self, batch_size: int) -> int:
        if batch_size % self.group.world:
            raise ValueError(f"batch_size {batch_size} (total over processes) is not divisible by the "
                             f"{self.group.world} processes")
        return batch_size // self.group.world

    def start(self, indices: np.ndarray, tc: TrainConfig, seed: int) -> "FolderSource":
        """Sets the kept ``indices`` (and the sampler) for a run; returns self."""
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
        workers = self.folder.workers
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
        """This rank's share of the folder's val split (rows ``rank::world``)."""
        if self._val is None:
            from torch.utils.data import DataLoader, Subset

            g, workers = self.group, self.folder.workers
            part = Subset(self.folder.val, range(g.rank, len(self.folder.val), g.world))
            self._val = DataLoader(part, batch_size=self.folder.eval_batch_size, shuffle=False, num_workers=workers,
                                   pin_memory=g.device.type == "cuda", persistent_workers=workers > 0)
        return self._val

    @torch.no_grad()
    def evaluate(self, model: nn.Module, precision: str) -> float:
        """Top-1 accuracy (%) on the val split: each rank scores rows ``rank::world``, counts are summed."""
        import torch.distributed as dist

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


# ----------------------------------------------------------------------------------------------- export
def _folder_name(label: int, name: str) -> str:
    """``NNN_<name>``: sorting the folders reproduces the label order."""
    return f"{label:03d}_{re.sub(r'[^A-Za-z0-9]+', '_', name).strip('_') or 'class'}"


def export_image_folder(dataset_name: str, out_root: str | os.PathLike, per_class: Optional[int] = None,
                        image_size: int = 64, *, val_per_class: Optional[int] = None,
                        data_root: Optional[str] = None, file_format: str = "JPEG", quality: int = 95) -> Path:
    """Writes kdlib dataset ``dataset_name`` as ``out_root/{train,val}/<NNN_class>/*.JPEG`` and returns ``out_root``.

    The first ``per_class`` training images of each class (all when None) go to ``train`` and the first
    ``val_per_class`` (default ``per_class``) test images to ``val``, upsampled to ``image_size`` (bicubic) and
    stored as RGB files (``file_format`` JPEG or PNG). ``SOURCE.txt`` names the source and ``manifest.json``
    the arguments; calling again with the same arguments reuses the folder.
    """
    from PIL import Image

    check_positive(image_size, "image_size", integer=True)
    if per_class is not None:
        check_positive(per_class, "per_class", integer=True)
    val_per_class = per_class if val_per_class is None else check_positive(val_per_class, "val_per_class", True)
    fmt = file_format.upper()
    if fmt not in ("JPEG", "PNG"):
        raise ValueError(f"file_format must be 'JPEG' or 'PNG', got {file_format!r}")
    out = Path(out_root)
    manifest = {"dataset": dataset_name, "per_class": per_class, "val_per_class": val_per_class,
                "image_size": int(image_size), "format": fmt, "quality": int(quality), "version": 1}
    mpath = out / "manifest.json"
    if mpath.is_file() and json.loads(mpath.read_text()) == manifest:
        return out

    if any((out / s).exists() for s in ("train", "val")):
        if not mpath.is_file():
            raise FileExistsError(f"{out} already holds train/ or val/ not written by export_image_folder; "
                                  f"choose another out_root")
        for s in ("train", "val"):  # an earlier export with other arguments: replace it
            shutil.rmtree(out / s, ignore_errors=True)
        mpath.unlink()
    data = load_dataset(dataset_name, data_root)
    names = data.classes or [str(c) for c in range(data.num_classes)]
    ext = ".JPEG" if fmt == "JPEG" else ".png"
    counts = {}
    for split, x, y, cap in (("train", data.x_train, data.y_train, per_class),
                             ("val", data.x_test, data.y_test, val_per_class)):
        y_np = y.numpy()
        n_split = 0
        for c in range(data.num_classes):
            folder = out / split / _folder_name(c, names[c])
            folder.mkdir(parents=True, exist_ok=True)
            rows = np.flatnonzero(y_np == c)[:cap]
            for j, i in enumerate(rows):
                arr = x[i].numpy().transpose(1, 2, 0)
                img = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
                img = img.resize((image_size, image_size), Image.BICUBIC).convert("RGB")
                kwargs = {"quality": quality} if fmt == "JPEG" else {}
                img.save(folder / f"{dataset_name}_{split}_{int(i):06d}{ext}", fmt, **kwargs)
            n_split += len(rows)
        counts[split] = n_split
    (out / "SOURCE.txt").write_text(
        f"{dataset_name} in ImageNet folder format (NOT ImageNet): {counts['train']} train / {counts['val']} val "
        f"images, {data.num_classes} classes, upsampled from {data.image_size}px to {image_size}px, written by "
        f"kdlib.imagenet.export_image_folder\n")
    mpath.write_text(json.dumps(manifest, indent=1))
    return out
