"""Full-resolution ImageNet streamed from disk, pruned subsets of it, and real images exported in its layout.

The folder layout is ImageNet's: ``root/train/<class>/*.JPEG`` and ``root/val/<class>/*.JPEG`` (classes are the
sorted folder names of ``train``; ``val`` must use the same names). Images are decoded by PIL in DataLoader
workers, transformed as in torchvision's ImageNet reference and handed on as uint8 tensors:

* train: ``RandomResizedCrop(image_size, scale=crop_scale)`` + horizontal flip (torchvision's ImageNet recipe),
* val: ``Resize(round(image_size * 256 / 224))`` + ``CenterCrop(image_size)`` (256 -> 224 at full size).

Batches stay uint8 until they reach the training device, where :meth:`FolderData.normalize` applies the ImageNet
mean/std. This module knows nothing of pruning: a run arrives with the indices of the files it keeps
(``kdlib.study.select_subset``, the rule of every run).

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .data import IMAGE_EXTENSIONS, load_dataset
from .validate import check_fraction, check_positive

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

    def fingerprint(self) -> str:
        """SHA-256 (16 hex digits) of the class names and relative file paths: the split's identity."""
        h = hashlib.sha256()
        h.update("\n".join(self.classes).encode())
        h.update(b"\0")
        h.update("\n".join(self.files).encode())
        return h.hexdigest()[:16]


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
        """Identity of the data (class names and every train/val file path), for run keys."""
        return hashlib.sha256((self.train.fingerprint() + self.val.fingerprint()).encode()).hexdigest()[:16]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 pixels -> float32 ``(x / 255 - mean) / std`` per channel on ``x``'s device."""
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        return (x.to(torch.float32) / 255.0 - mean) / std


def load_folder_data(root: str | os.PathLike, image_size: int = 224,
                     crop_scale: Sequence[float] = (0.08, 1.0)) -> FolderData:
    """The ImageNet-layout folder at ``root`` (or ``root/imagenet``) with train/val transforms for ``image_size``."""
    check_positive(image_size, "image_size", integer=True)
    lo, hi = (float(s) for s in crop_scale)
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"crop_scale must be (low, high) with 0 < low <= high <= 1, got {tuple(crop_scale)!r}")
    found = find_split_root(root)
    train = ImageFolder(found / "train", train_transform(image_size, (lo, hi)))
    val = ImageFolder(found / "val", eval_transform(image_size), classes=train.classes)
    source = (found / "SOURCE.txt").read_text().strip() if (found / "SOURCE.txt").is_file() else None
    return FolderData(found, train, val, int(image_size), source=source)


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
