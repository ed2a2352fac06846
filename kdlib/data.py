"""Image datasets held in memory as uint8 tensors, with their normalisation and augmentation spec.

``load_dataset(name, root=None, download=False, **options)`` returns an :class:`ImageData`. The data root is
``root`` when given, else ``$KDLIB_DATA``, else ``~/.cache/kdlib/data``; downloads go there. Loaded datasets are
cached in memory (a bounded LRU keyed by name, root and options), so treat the returned tensors as read-only.

| name | source | train / test | padding | flip | mean / std |
| --- | --- | --- | --- | --- | --- |
| digits | scikit-learn ``load_digits`` (8x8, 0..16 scaled to 0..255) | 1437 / 360 | 1 | no | train-split statistics |
| fashion_mnist | IDX files (also ``/usr/share/datasets/fashion-mnist``) | 60000 / 10000 | 2 | yes | 0.2860 / 0.3530 |
| cifar10, cifar100 | python pickle batches | 50000 / 10000 | 4 | yes | standard per-channel |
| svhn | ``train_32x32.mat`` / ``test_32x32.mat`` (label 10 -> 0) | 73257 / 26032 | 4 | no | standard per-channel |
| imagenet | ``train/<wnid>/*``, ``val/<wnid>/*`` resized to ``image_size`` | ~1.28M / 50000 | size//8 | yes | ImageNet |

Means and stds are per channel in [0, 1] pixel units and fixed constants (so a subset keeps the full set's
normalisation). Augmentation zero-pads uint8 pixels before normalising, like torchvision's ``RandomCrop(padding=p)``.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import inspect
import io
import os
import pickle
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch

from . import augment as _augment
from .registry import Registry
from . import usercache
from .usercache import cache_path, save
from .validate import check_positive

Reader = Callable[..., "ImageData"]
DATASETS: Registry[Reader] = Registry("dataset", "dataset")
DEFAULT_ROOT = Path("~/.cache/kdlib/data")
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True, eq=False)
class ImageData:
    """A labelled image dataset in memory: uint8 images (N, C, H, W), int64 labels, normalisation, augmentation."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int = 0
    flip: bool = False
    classes: Optional[list[str]] = None

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[-1])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    def __repr__(self) -> str:
        return (f"ImageData({self.name!r}, train={tuple(self.x_train.shape)}, test={tuple(self.x_test.shape)}, "
                f"num_classes={self.num_classes}, crop_padding={self.crop_padding}, flip={self.flip})")

    def to(self, device: torch.device | str) -> "ImageData":
        """A copy with the four tensors on ``device`` (e.g. to augment and normalise batches on the GPU)."""
        move = {k: getattr(self, k).to(device) for k in ("x_train", "y_train", "x_test", "y_test")}
        return dataclasses.replace(self, **move)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 pixels -> float32 ``(x / 255 - mean) / std`` per channel, on ``x``'s device and memory format."""
        if x.dtype != torch.uint8:
            raise TypeError(f"normalize expects uint8 pixels, got {x.dtype}")
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        return (x.to(torch.float32) / 255.0 - mean) / std

    def train_batch(self, idx: torch.Tensor | np.ndarray | Sequence[int], generator: Optional[torch.Generator] = None,
                    augment: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Training samples ``idx``: gathered, augmented (when ``augment``) and normalised; returns (x, y)."""
        idx = torch.as_tensor(idx, dtype=torch.long).to(self.x_train.device)
        x = self.x_train[idx]
        if augment:
            x = _augment.augment(x, self.crop_padding, self.flip, generator)
        return self.normalize(x), self.y_train[idx]

    def test_batches(self, batch_size: int = 1000) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The test set in order, as normalised (x, y) batches."""
        for i in range(0, len(self.x_test), batch_size):
            yield self.normalize(self.x_test[i:i + batch_size]), self.y_test[i:i + batch_size]


def resolve_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``$KDLIB_DATA``, else ``~/.cache/kdlib/data``."""
    return Path(root or os.environ.get("KDLIB_DATA") or DEFAULT_ROOT).expanduser()


def load_dataset(name: str, root: str | os.PathLike | None = None, download: bool = False, **options) -> ImageData:
    """Loads (and caches in memory) dataset ``name``; ``download=True`` fetches missing files into the root.

    ``options`` go to the reader (only ``imagenet`` takes one: ``image_size``). A missing dataset raises a
    FileNotFoundError naming every path searched and how to obtain the data.
    """
    reader = DATASETS.get(name)
    allowed = [p for p in inspect.signature(reader).parameters if p not in ("root", "download")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"dataset {name!r} takes no option(s) {unknown}; allowed options: {allowed or 'none'}")
    key = (name, str(resolve_root(root)), tuple(sorted(options.items())))
    try:
        return _load_cached(*key)
    except FileNotFoundError:
        if not download:
            raise
    # Downloads, then reads; the next call reads the now present files into the cache.
    return reader(root=resolve_root(root), download=True, **options)


@lru_cache(maxsize=4)
def _load_cached(name: str, root: str, options: tuple) -> ImageData:
    return DATASETS.get(name)(root=Path(root), download=False, **dict(options))


def _missing(name: str, looked: Sequence[Path], how: str) -> FileNotFoundError:
    paths = "\n".join(f"  {p}" for p in looked)
    return FileNotFoundError(f"dataset {name!r} not found; looked in:\n{paths}\nTo obtain it: {how}")


def _first_dir(candidates: Sequence[Path], needed: Sequence[str]) -> Optional[Path]:
    """The first directory holding every file in ``needed`` (a ``.gz`` name also matches its un-gzipped twin)."""
    def has(d: Path, f: str) -> bool:
        return (d / f).is_file() or (f.endswith(".gz") and (d / f[:-3]).is_file())
    return next((d for d in candidates if all(has(d, f) for f in needed)), None)


def _tensors(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray):
    """(x_train, y_train, x_test, y_test) as writable uint8 image and int64 label tensors."""
    def images(x: np.ndarray) -> torch.Tensor:
        x = np.ascontiguousarray(x, dtype=np.uint8)
        return torch.from_numpy(x if x.flags.writeable else x.copy())

    def labels(y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(y, dtype=np.int64).ravel())

    return images(x_train), labels(y_train), images(x_test), labels(y_test)


# ----------------------------------------------------------------------------------------------- digits
DIGITS_TEST_SIZE = 0.2


def _sklearn_digits_sha256() -> Optional[str]:
    """SHA-256 of scikit-learn's bundled ``digits.csv.gz`` (found without importing scikit-learn), or None."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() if path is not None else None
    except OSError:
        return None


def _split_digest(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, source: str) -> str:
    """SHA-256 of the split's arrays (dtype, shape, bytes) and of the scikit-learn data they came from."""
    h = hashlib.sha256(source.encode())
    for a in (x, y, train, test):
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _check_digits_split(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray) -> None:
    """Raises a ValueError unless ``train``/``test`` are sorted, disjoint rows covering every image, with the
    stratified 80/20 sizes of every class."""
    n = len(y)
    if x.shape != (n, 1, 8, 8) or x.dtype != np.uint8 or y.ndim != 1:
        raise ValueError(f"images {x.shape} {x.dtype} do not match {n} labels of 8x8 uint8 digits")
    rows = np.concatenate([train, test])
    if not (np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
            and np.array_equal(np.sort(rows), np.arange(n))):
        raise ValueError("its train and test rows are not a sorted partition of the images (train rows overlap "
                         "test rows, or rows are missing)")
    per_class = np.bincount(y[test], minlength=10)
    if len(test) != int(np.ceil(DIGITS_TEST_SIZE * n)) or np.any(np.abs(per_class - DIGITS_TEST_SIZE
                                                                         * np.bincount(y, minlength=10)) > 1):
        raise ValueError(f"its {len(test)} test rows are not the stratified {DIGITS_TEST_SIZE:.0%} of {n}")


def _cached_digits_split(cache: Path, source: Optional[str]):
    """The split from the cache file when it verifies (its digest, the scikit-learn data it was made from, a
    stratified partition); None when absent, or, with a warning naming the file, when it does not verify."""
    try:
        with np.load(cache) as z:
            if "digest" not in z.files:
                usercache.ignored(cache.name, "written without a digest (by an older kdlib)")
                return None
            x, y, train, test = z["x"], z["y"], z["train"], z["test"]
            digest, made_from = str(z["digest"]), str(z["source"])
    except FileNotFoundError:
        return None
    except Exception as err:  # noqa: BLE001 - empty, truncated (EOFError, BadZipFile), old format: only time lost
        usercache.ignored(cache.name, f"unreadable ({type(err).__name__}: {err})")
        return None
    try:
        if source is None or made_from != source:
            raise ValueError("it was made from other scikit-learn digits data")
        if digest != _split_digest(x, y, train, test, made_from):
            raise ValueError("its digest does not match its arrays")
        _check_digits_split(x, y, train, test)
    except ValueError as err:
        usercache.ignored(cache.name, str(err))
        return None
    return x, y, train, test


def _digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(uint8 images, labels, sorted train rows, sorted test rows) of the digits split, read from a per-user cache
    (``~/.cache/kdlib``, keyed by the scikit-learn version) after the first call: importing scikit-learn costs a
    fresh process (a grid worker) several seconds. The cache is verified (its arrays' digest, the SHA-256 of
    scikit-learn's digits file it was made from, a stratified partition of the rows); a cache file that is
    damaged, unreadable or does not verify is ignored with a warning naming it and the split is recomputed."""
    import importlib.metadata

    cache = cache_path(f"digits-split-sklearn-{importlib.metadata.version('scikit-learn')}.npz")
    source = _sklearn_digits_sha256()
    cached = _cached_digits_split(cache, source)
    if cached is not None:
        return cached
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = np.round(d.images * 255.0 / 16.0).astype(np.uint8)[:, None]  # (1797, 1, 8, 8)
    y = d.target
    train, test = train_test_split(np.arange(len(y)), test_size=DIGITS_TEST_SIZE, stratify=y, random_state=0)
    train, test = np.sort(train), np.sort(test)
    if source is not None:
        buf = io.BytesIO()
        np.savez(buf, x=x, y=y, train=train, test=test, source=source,
                 digest=_split_digest(x, y, train, test, source))
        save(cache.name, buf.getvalue())
    return x, y, train, test


@DATASETS.register("digits")
def load_digits_data(root: Optional[Path] = None, download: bool = False) -> ImageData:
    """scikit-learn's bundled 8x8 digits (1797 images); values 0..16 -> uint8 ``round(v * 255 / 16)``.

    Split: ``train_test_split(test_size=0.2, stratify=y, random_state=0)``, i.e. a fixed stratified 80/20 split,
    1437 train / 360 test, each kept in the original order. Mean/std are the train split's pixel statistics.
    """
    x, y, train, test = _digits_split()
    return ImageData("digits", *_tensors(x[train], y[train], x[test], y[test]), num_classes=10,
                     mean=(0.3054,), std=(0.3760,), crop_padding=1, flip=False, classes=[str(i) for i in range(10)])


# ----------------------------------------------------------------------------------------------- IDX / Fashion-MNIST
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file (gzipped or not): magic ``00 00 <dtype> <ndim>``, big-endian uint32 dims, big-endian data."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (magic {raw[:4].hex()})")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = int(np.prod(dims))
    body = raw[4 + 4 * ndim:]
    if len(body) != count * dtype.itemsize:
        raise ValueError(f"{path}: expected {count * dtype.itemsize} data bytes for dims {dims}, found {len(body)}")
    return np.frombuffer(body, dtype=dtype).astype(dtype.newbyteorder("="), copy=False).reshape(dims)


FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                       "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


@DATASETS.register("fashion_mnist")
def load_fashion_mnist(root: Path, download: bool = False) -> ImageData:
    """Fashion-MNIST (28x28 grey) from its four IDX files; crop padding 2 (milder than CIFAR's 4/32), flip on.

    Searched: ``root/fashion-mnist``, ``root/fashion_mnist``, ``root``, then ``/usr/share/datasets/fashion-mnist``
    (Debian's ``dataset-fashion-mnist``); ``download=True`` fetches the official files into ``root/fashion-mnist``.
    """
    candidates = [root / "fashion-mnist", root / "fashion_mnist", root, SYSTEM_FASHION_MNIST]
    found = _first_dir(candidates, FASHION_MNIST_FILES)
    if found is None and download:
        from torchvision.datasets.utils import download_url

        found = candidates[0]
        for f in FASHION_MNIST_FILES:
            download_url(FASHION_MNIST_URL + f, str(found), filename=f)
    if found is None:
        raise _missing("fashion_mnist", candidates,
                       f"`apt-get install dataset-fashion-mnist`, the files {', '.join(FASHION_MNIST_FILES)} from "
                       f"{FASHION_MNIST_URL} placed in {candidates[0]}, or load_dataset(..., download=True)")

    def read(f: str) -> np.ndarray:
        return read_idx(found / f if (found / f).is_file() else found / f[:-3])

    x_train, y_train, x_test, y_test = (read(f) for f in FASHION_MNIST_FILES)
    return ImageData("fashion_mnist", *_tensors(x_train[:, None], y_train, x_test[:, None], y_test), num_classes=10,
                     mean=(0.2860,), std=(0.3530,), crop_padding=2, flip=True, classes=list(FASHION_MNIST_CLASSES))


# ----------------------------------------------------------------------------------------------- CIFAR
CIFAR = {  # name: (folder, archive URL, md5, train files, test file, meta file, label key, names key, mean, std)
    "cifar10": ("cifar-10-batches-py", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "c58f30108f718f92721af3b95e74349a", [f"data_batch_{i}" for i in range(1, 6)], "test_batch",
                "batches.meta", "labels", "label_names", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ("cifar-100-python", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                 "eb9058c3a382ffc7106e4002c42a8d85", ["train"], "test", "meta", "fine_labels", "fine_label_names",
                 (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def _unpickle(path: Path) -> dict[str, object]:
    """A CIFAR pickle with its bytes keys decoded to str."""
    with open(path, "rb") as f:
        d = pickle.load(f, encoding="bytes")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}


def _load_cifar(name: str, root: Path, download: bool) -> ImageData:
    folder, url, md5, train_files, test_file, meta_file, label_key, names_key, mean, std = CIFAR[name]
    candidates = [root / folder, root / name / folder, root]
    needed = [*train_files, test_file, meta_file]
    found = _first_dir(candidates, needed)
    if found is None and download:
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(url, str(root), md5=md5)
        found = _first_dir(candidates, needed)
    if found is None:
        raise _missing(name, candidates, f"download and extract {url} into {root}, or load_dataset(..., download=True)")

    def read(files: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        batches = [_unpickle(found / f) for f in files]
        x = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches]).reshape(-1, 3, 32, 32)
        return x, np.concatenate([np.asarray(b[label_key]) for b in batches])

    (x_train, y_train), (x_test, y_test) = read(train_files), read([test_file])
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in _unpickle(found / meta_file)[names_key]]
    return ImageData(name, *_tensors(x_train, y_train, x_test, y_test), num_classes=len(names), mean=mean, std=std,
                     crop_padding=4, flip=True, classes=names)


@DATASETS.register("cifar10")
def load_cifar10(root: Path, download: bool = False) -> ImageData:
    """CIFAR-10 from ``cifar-10-batches-py`` (data_batch_1..5, test_batch, batches.meta); padding 4, flip on."""
    return _load_cifar("cifar10", root, download)


@DATASETS.register("cifar100")
def load_cifar100(root: Path, download: bool = False) -> ImageData:
    """CIFAR-100 (100 fine labels) from ``cifar-100-python`` (train, test, meta); padding 4, flip on."""
    return _load_cifar("cifar100", root, download)


# ----------------------------------------------------------------------------------------------- SVHN
SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
SVHN_FILES = {"train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373", "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3"}


@DATASETS.register("svhn")
def load_svhn(root: Path, download: bool = False) -> ImageData:
    """SVHN cropped digits (train + test ``.mat``, no ``extra``); label 10 means digit 0. Padding 4, no flip."""
    from scipy.io import loadmat

    candidates = [root / "svhn", root]
    found = _first_dir(candidates, list(SVHN_FILES))
    if found is None and download:
        from torchvision.datasets.utils import download_url

        found = candidates[0]
        for f, md5 in SVHN_FILES.items():
            download_url(SVHN_URL + f, str(found), filename=f, md5=md5)
    if found is None:
        raise _missing("svhn", candidates, f"the files {', '.join(SVHN_FILES)} from {SVHN_URL} placed in "
                                           f"{candidates[0]}, or load_dataset(..., download=True)")

    def read(f: str) -> tuple[np.ndarray, np.ndarray]:
        m = loadmat(found / f)
        return np.transpose(m["X"], (3, 2, 0, 1)), np.asarray(m["y"]).ravel() % 10  # (32,32,3,N) -> (N,3,32,32)

    (x_train, y_train), (x_test, y_test) = read("train_32x32.mat"), read("test_32x32.mat")
    return ImageData("svhn", *_tensors(x_train, y_train, x_test, y_test), num_classes=10,
                     mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970), crop_padding=4, flip=False,
                     classes=[str(i) for i in range(10)])


# ----------------------------------------------------------------------------------------------- ImageNet
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp")


def _load_image(path: Path, image_size: int) -> np.ndarray:
    """RGB image: shorter side resized to ``image_size`` (bilinear, antialiased), then center-cropped; (3, S, S)."""
    from PIL import Image

    with Image.open(path) as img:
        img.draft("RGB", (image_size, image_size))  # JPEG: decode at a reduced scale when possible (fast)
        img = img.convert("RGB")
        w, h = img.size
        scale = image_size / min(w, h)
        nw, nh = max(image_size, round(w * scale)), max(image_size, round(h * scale))
        img = img.resize((nw, nh), Image.BILINEAR, reducing_gap=None)
        left, top = (nw - image_size) // 2, (nh - image_size) // 2
        img = img.crop((left, top, left + image_size, top + image_size))
        return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


def load_image_folder(root: str | os.PathLike, image_size: int,
                      classes: Optional[Sequence[str]] = None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Images under ``root/<class>/*`` as uint8 (N, 3, S, S), int64 labels and the class names.

    Classes are the sorted sub-folder names unless ``classes`` is given (folders not in it are an error).
    """
    root = Path(root)
    names = list(classes) if classes is not None else sorted(d.name for d in root.iterdir() if d.is_dir())
    index = {c: i for i, c in enumerate(names)}
    files, labels = [], []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        if d.name not in index:
            raise ValueError(f"{d}: class folder {d.name!r} is not among the {len(names)} known classes")
        found = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        files += found
        labels += [index[d.name]] * len(found)
    x = np.empty((len(files), 3, image_size, image_size), dtype=np.uint8)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # PIL releases the GIL
        for i, img in enumerate(pool.map(lambda p: _load_image(p, image_size), files)):
            x[i] = img
    return torch.from_numpy(x), torch.tensor(labels, dtype=torch.int64), names


@DATASETS.register("imagenet")
def load_imagenet(root: Path, download: bool = False, image_size: int = 64) -> ImageData:
    """ImageNet-1k from ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG``, held in memory at ``image_size``.

    Each image's shorter side is resized to ``image_size``, then center-cropped (64 -> ~16 GB of uint8 for the
    1.28M training images). Full-resolution ImageNet (~190 GB as uint8 at 224) does not fit in memory and needs a
    streaming loader, which issue 5 adds. No download (licence): get it from https://image-net.org and arrange
    ``val`` into class folders. Crop padding ``image_size // 8``, flip on.
    """
    check_positive(image_size, "image_size", integer=True)
    candidates = [root / "imagenet", root]
    found = next((d for d in candidates if (d / "train").is_dir() and (d / "val").is_dir()), None)
    if found is None:
        raise _missing("imagenet", [d / s for d in candidates for s in ("train", "val")],
                       "download ILSVRC2012 from https://image-net.org (registration required; no automatic "
                       "download) and arrange it as train/<wnid>/*.JPEG and val/<wnid>/*.JPEG")
    x_train, y_train, names = load_image_folder(found / "train", image_size)
    x_test, y_test, _ = load_image_folder(found / "val", image_size, classes=names)
    return ImageData("imagenet", x_train, y_train, x_test, y_test, num_classes=len(names),
                     mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), crop_padding=image_size // 8, flip=True,
                     classes=names)
