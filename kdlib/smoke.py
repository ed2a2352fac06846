"""Smoke runs: tiny files in the real on-disk formats of CIFAR-10/100 (python pickle batches), SVHN (``.mat``) and
ImageNet (class folders of JPEG/PNG files), and a profile's parameters shrunk to run on a CPU in minutes.

``python -m kdlib.notebooks --profile paper --smoke`` runs every notebook of the paper profile with the same
models, methods, recipes (schedules, precision), executors and the ImageNet torchrun launch, on synthetic data
written in those formats (class-coloured noise, so a model can learn a little) with one epoch per run, two seeds
and fewer grid points. Its store and outputs are ``outputs/<profile>-smoke/`` (never the real study's), with a
``SMOKE.txt`` there saying what the numbers are: nothing about the paper. The writers serve the tests too.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

SMOKE_NOTE = ("SMOKE RUN: every number here comes from a few hundred synthetic images (class-coloured noise) written "
              "in the real file formats of CIFAR-10/100, SVHN and ImageNet, one epoch per run. It checks that every "
              "code path of the profile runs; it says nothing about the paper's claims.\n")
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331", "n01498041", "n01514668",
         "n01514859", "n01518878"]  # the first ImageNet-1k class ids, sorted


# ----------------------------------------------------------------------------------------------- images
def class_images(labels: Sequence[int], num_classes: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """uint8 (N, 3, size, size) images: a colour per class (spread over the hue circle) plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    hue = labels / max(1, num_classes) * 2 * np.pi
    colour = 128 + 90 * np.stack([np.cos(hue), np.cos(hue - 2.1), np.cos(hue + 2.1)], axis=1)
    x = colour[:, :, None, None] + rng.normal(0, 40, (len(labels), 3, size, size))
    return np.clip(x, 0, 255).astype(np.uint8)


def balanced_labels(n: int, num_classes: int, seed: int = 0) -> np.ndarray:
    """``n`` labels, every class as often as possible, shuffled."""
    return np.random.default_rng(seed).permutation(np.arange(n) % num_classes)


# ----------------------------------------------------------------------------------------------- writers
def _pickle(path: Path, obj: Any) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the CIFAR files are protocol-2 pickles with bytes keys


def write_cifar10(root: str | Path, x_train: np.ndarray, y_train: Sequence[int], x_test: np.ndarray,
                  y_test: Sequence[int], batches: int = 5) -> Path:
    """``root/cifar-10-batches-py``: ``data_batch_1..5`` (the training rows split in order), ``test_batch`` and
    ``batches.meta``, as CIFAR-10's python version has them (rows of 3072 bytes: R plane, G plane, B plane)."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rows = np.asarray(x_train, dtype=np.uint8).reshape(len(x_train), -1)
    for i, part in enumerate(np.array_split(np.arange(len(rows)), batches), start=1):
        _pickle(folder / f"data_batch_{i}", {b"batch_label": f"training batch {i} of {batches}".encode(),
                                             b"data": rows[part], b"labels": [int(v) for v in np.asarray(y_train)[part]],
                                             b"filenames": [f"{j}.png".encode() for j in part]})
    _pickle(folder / "test_batch", {b"batch_label": b"testing batch 1 of 1",
                                    b"data": np.asarray(x_test, dtype=np.uint8).reshape(len(x_test), -1),
                                    b"labels": [int(v) for v in y_test], b"filenames": []})
    _pickle(folder / "batches.meta", {b"label_names": [n.encode() for n in CIFAR10_NAMES],
                                      b"num_cases_per_batch": int(np.ceil(len(rows) / batches)), b"num_vis": 3072})
    return folder


def write_cifar100(root: str | Path, x_train: np.ndarray, y_train: Sequence[int], x_test: np.ndarray,
                   y_test: Sequence[int], names: Optional[Sequence[str]] = None) -> Path:
    """``root/cifar-100-python``: ``train``, ``test`` and ``meta`` (fine and coarse labels, coarse = fine // 5)."""
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        fine = [int(v) for v in y]
        _pickle(folder / split, {b"filenames": [], b"batch_label": split.encode(), b"fine_labels": fine,
                                 b"coarse_labels": [v // 5 for v in fine],
                                 b"data": np.asarray(x, dtype=np.uint8).reshape(len(x), -1)})
    names = list(names) if names is not None else [f"class_{i:02d}" for i in range(100)]
    _pickle(folder / "meta", {b"fine_label_names": [n.encode() for n in names],
                              b"coarse_label_names": [f"super_{i:02d}".encode() for i in range(20)]})
    return folder


def write_svhn(root: str | Path, x_train: np.ndarray, y_train: Sequence[int], x_test: np.ndarray,
               y_test: Sequence[int]) -> Path:
    """``root/svhn/{train,test}_32x32.mat`` as SVHN's cropped digits: ``X`` (32, 32, 3, N) uint8, ``y`` (N, 1)
    with label 10 for the digit 0."""
    from scipy.io import savemat

    folder = Path(root) / "svhn"
    folder.mkdir(parents=True, exist_ok=True)
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        y = np.asarray(y, dtype=np.uint8).reshape(-1, 1)
        savemat(folder / f"{split}_32x32.mat", {"X": np.transpose(np.asarray(x, dtype=np.uint8), (2, 3, 1, 0)),
                                                "y": np.where(y == 0, 10, y).astype(np.uint8)})
    return folder


def write_imagenet_layout(root: str | Path, classes: Sequence[str] = WNIDS[:3], n_train: int = 4, n_val: int = 2,
                          seed: int = 0) -> Path:
    """``root/{train,val}/<wnid>/``: colour JPEGs of varying size, and as in ImageNet a few that are not plain RGB
    JPEGs (image 1 of each class greyscale, image 2 a PNG), plus a stray text file the reader must skip."""
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for c, wnid in enumerate(classes):
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                h, w = 30 + 7 * (i % 8), 40 + 5 * (c % 8)
                colour = class_images([c], len(classes), 1, seed)[0, :, 0, 0]
                arr = np.clip(colour[None, None, :].astype(int) + rng.integers(0, 20, (h, w, 3)), 0, 255)
                img = Image.fromarray(arr.astype(np.uint8))
                if i == 1:
                    img.convert("L").save(folder / f"{wnid}_{i}.JPEG", quality=95)
                elif i == 2:
                    img.save(folder / f"{wnid}_{i}.png")
                else:
                    img.save(folder / f"{wnid}_{i}.JPEG", quality=95)
            (folder / "notes.txt").write_text("not an image")
    return root


def write_smoke_data(root: str | Path, n_train: int = 200, n_test: int = 100, seed: int = 0) -> Path:
    """Every smoke dataset under ``root`` (CIFAR-10, CIFAR-100, SVHN, and ImageNet's layout under ``imagenet/``);
    written once (a ``DONE`` file marks a finished set). Returns ``root``."""
    root = Path(root)
    if (root / "DONE").is_file():
        return root
    for i, (name, classes, n) in enumerate((("cifar10", 10, n_train), ("cifar100", 100, n_train),
                                            ("svhn", 10, n_train))):
        y, yt = balanced_labels(n, classes, seed + i), balanced_labels(max(n_test, classes), classes, seed + 10 + i)
        x, xt = class_images(y, classes, 32, seed + i), class_images(yt, classes, 32, seed + 10 + i)
        {"cifar10": write_cifar10, "cifar100": write_cifar100, "svhn": write_svhn}[name](root, x, y, xt, yt)
    write_imagenet_layout(root / "imagenet", WNIDS, n_train=26, n_val=5, seed=seed)
    (root / "SMOKE.txt").write_text(SMOKE_NOTE)
    (root / "DONE").write_text("")
    return root


# ----------------------------------------------------------------------------------------------- parameters
def _thin(values: Sequence[Any], keep: int = 3) -> list:
    """At most ``keep`` values: the first, the middle and the last (in the given order)."""
    values = list(values)
    if len(values) <= keep:
        return values
    picks = sorted({0, len(values) // 2, len(values) - 1}) if keep == 3 else list(range(keep - 1)) + [len(values) - 1]
    return [values[i] for i in picks]


def _recipe(train: Optional[Mapping[str, Any]], epochs: int = 1) -> dict:
    return {**(train or {}), "epochs": epochs}


def smoke_params(name: str, params: Mapping[str, Any], allowed: Sequence[str], data_root: str | Path,
                 store: str | Path, out_dir: str | Path) -> dict:
    """The parameters of notebook ``name`` (``params``, the profile's) for a smoke run: the same models, methods,
    recipes and executors, on the smoke data, one epoch, two seeds, at most three fractions, alphas and teacher
    fractions, fewer bootstrap and Monte Carlo draws; the store and outputs under the smoke folder."""
    p = dict(params)
    set_if = {"store": str(store), "out_dir": str(out_dir), "data_root": str(data_root), "device": "cpu",
              "progress": False}
    p.update({k: v for k, v in set_if.items() if k in allowed})
    if "train" in allowed:
        p["train"] = _recipe(p.get("train"))
    if "teacher_train" in allowed and p.get("teacher_train"):
        p["teacher_train"] = _recipe(p["teacher_train"])
    if "proxy" in allowed:
        proxy = dict(p.get("proxy") or {})
        proxy.update(n_models=min(int(proxy.get("n_models", 1)), 2), score_epoch=1,
                     train={**(proxy.get("train") or {}), "epochs": 2})
        p["proxy"] = proxy
    for key in ("seeds",):
        if key in p:
            p[key] = list(p[key])[:2]
    for key in ("fractions", "alphas", "teacher_fractions", "share_fractions", "theory_fractions",
                "theory_teacher_fractions", "regime_fractions", "regime_teacher_fractions"):
        if key in p and isinstance(p[key], (list, tuple)):
            p[key] = _thin(p[key])
    for key, cap in (("n_boot", 100), ("draws", 4), ("mc_draws", 8), ("regime_draws", 3), ("theory_draws", 3)):
        if key in p:
            p[key] = min(int(p[key]), cap)
    if name == "theory_toy":
        p.update(d=min(int(p.get("d", 20)), 20), n=min(int(p.get("n", 200)), 200))
    if name == "claims" and isinstance(p.get("theory"), Mapping):
        p["theory"] = {**p["theory"], "d": 10, "n": 100}
    if name == "imagenet":  # the ImageNet-layout smoke folder, streamed and launched through torchrun as in the paper
        p.update(export=None, data_root=str(Path(data_root) / "imagenet"), epochs=1, nproc=2,
                 data_label="SMOKE: synthetic images in ImageNet folder format (not ImageNet)",
                 data={**(p.get("data") or {}), "image_size": 32, "workers": 1},
                 train={**(params.get("train") or {}), "batch_size": 16})
    return p
