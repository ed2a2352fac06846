import gzip
import re
import struct

import numpy as np
import pytest
import torch

from kdlib import smoke
from kdlib.data import DATASETS, SYSTEM_FASHION_MNIST, ImageData, load_dataset, load_image_folder, read_idx

RNG = np.random.default_rng(0)


# ------------------------------------------------------------------ writers of the real on-disk formats
def write_idx(path, array, compress=True):
    array = np.asarray(array, dtype=np.uint8)
    raw = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def write_fashion(folder, n_train=6, n_test=4, compress=True):
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"train-images-idx3-ubyte": RNG.integers(0, 256, (n_train, 28, 28)),
              "train-labels-idx1-ubyte": np.arange(n_train) % 10,
              "t10k-images-idx3-ubyte": RNG.integers(0, 256, (n_test, 28, 28)),
              "t10k-labels-idx1-ubyte": (np.arange(n_test) + 3) % 10}
    for name, a in arrays.items():
        write_idx(folder / (name + ".gz" if compress else name), a, compress)
    return arrays


def write_cifar10(root, per_batch=3):
    """CIFAR-10's python pickle batches (``kdlib.smoke.write_cifar10``) of random rows; returns what was written."""
    x, y = RNG.integers(0, 256, (5 * per_batch, 3072), dtype=np.uint8), RNG.integers(0, 10, 5 * per_batch)
    xt, yt = RNG.integers(0, 256, (2, 3072), dtype=np.uint8), np.array([7, 1])
    smoke.write_cifar10(root, x, y, xt, yt)
    return x, y, xt, yt


# ------------------------------------------------------------------ readers
def test_read_idx_gzipped_and_plain(tmp_path):
    a = RNG.integers(0, 256, (3, 5, 4))
    write_idx(tmp_path / "a.gz", a)
    write_idx(tmp_path / "a", a, compress=False)
    for p in ("a.gz", "a"):
        out = read_idx(tmp_path / p)
        assert out.dtype == np.uint8 and out.shape == (3, 5, 4) and np.array_equal(out, a)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="not an IDX"):
        read_idx(tmp_path / "bad")


@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_reader(tmp_path, compress):
    arrays = write_fashion(tmp_path / "fashion-mnist", compress=compress)
    d = load_dataset("fashion_mnist", root=tmp_path)
    assert d.x_train.shape == (6, 1, 28, 28) and d.x_test.shape == (4, 1, 28, 28)
    assert d.x_train.dtype == torch.uint8 and d.y_train.dtype == torch.int64
    assert np.array_equal(d.x_train[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert np.array_equal(d.y_test.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert (d.in_channels, d.image_size, d.n_train, d.num_classes) == (1, 28, 6, 10)
    assert d.crop_padding == 2 and d.flip and d.classes[0] == "T-shirt/top"


def test_kdlib_data_env_is_default_root_and_explicit_root_wins(tmp_path, monkeypatch):
    write_fashion(tmp_path / "env" / "fashion-mnist", n_train=5)
    write_fashion(tmp_path / "explicit" / "fashion-mnist", n_train=7)
    monkeypatch.setenv("KDLIB_DATA", str(tmp_path / "env"))
    assert load_dataset("fashion_mnist").n_train == 5
    assert load_dataset("fashion_mnist", root=tmp_path / "explicit").n_train == 7


@pytest.mark.skipif(not (SYSTEM_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_system_dir(tmp_path):
    d = load_dataset("fashion_mnist", root=tmp_path)  # empty root: falls back to /usr/share/datasets
    assert d.x_train.shape == (60000, 1, 28, 28) and d.x_test.shape == (10000, 1, 28, 28)
    assert torch.equal(d.y_train.bincount(), torch.full((10,), 6000))
    assert abs(d.x_train.float().mean().item() / 255 - d.mean[0]) < 1e-3


def test_cifar10_reader(tmp_path):
    x, y, xt, yt = write_cifar10(tmp_path)
    d = load_dataset("cifar10", root=tmp_path)
    assert d.x_train.shape == (15, 3, 32, 32) and d.x_test.shape == (2, 3, 32, 32)
    assert d.x_train.dtype == torch.uint8 and d.y_train.dtype == torch.int64
    assert np.array_equal(d.x_train.numpy().reshape(15, -1), x)  # row-major R plane, G plane, B plane
    assert d.x_train[0, 1, 0, 0] == x[0, 1024] and d.x_train[0, 0, 0, 1] == x[0, 1]
    assert np.array_equal(d.y_train.numpy(), y) and d.y_test.tolist() == list(yt)
    assert d.classes[1] == "automobile" and d.num_classes == 10
    assert (d.crop_padding, d.flip, len(d.mean)) == (4, True, 3)


def test_cifar100_reader(tmp_path):
    x, xt = RNG.integers(0, 256, (4, 3072), dtype=np.uint8), RNG.integers(0, 256, (2, 3072), dtype=np.uint8)
    smoke.write_cifar100(tmp_path, x, [0, 99, 5, 42], xt, [3, 98], names=[f"c{i}" for i in range(100)])
    d = load_dataset("cifar100", root=tmp_path)
    assert d.num_classes == 100 and d.classes[99] == "c99"
    assert d.y_train.tolist() == [0, 99, 5, 42] and d.y_test.tolist() == [3, 98]
    assert np.array_equal(d.x_test.numpy().reshape(2, -1), xt)


def test_svhn_reader_maps_label_10_to_0(tmp_path):
    from scipy.io import loadmat

    images = RNG.integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    smoke.write_svhn(tmp_path, images, [0, 1, 9, 0, 5], images[:2], [0, 1])
    m = loadmat(tmp_path / "svhn" / "train_32x32.mat")
    x, y = m["X"], m["y"]
    assert x.shape == (32, 32, 3, 5) and y.ravel().tolist() == [10, 1, 9, 10, 5]  # SVHN writes the digit 0 as 10
    d = load_dataset("svhn", root=tmp_path)
    assert d.x_train.shape == (5, 3, 32, 32) and d.x_train.dtype == torch.uint8
    assert d.y_train.tolist() == [0, 1, 9, 0, 5] and d.y_test.tolist() == [0, 1]
    assert d.x_train[2, 1, 3, 4] == x[3, 4, 1, 2]  # X[row, col, channel, sample]
    assert (d.crop_padding, d.flip) == (4, False)


def _write_image_tree(root):
    from PIL import Image

    pixels = {}
    for split in ("train", "val"):
        for k, wnid in enumerate(["n01440764", "n01443537"]):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            a = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(a).save(folder / "a.png")
            pixels[split, wnid] = a
            if split == "train":  # a non-square JPEG, resized and centre-cropped
                Image.fromarray(RNG.integers(0, 256, (12, 20, 3), dtype=np.uint8)).save(folder / "b.JPEG")
    return pixels


def test_imagenet_reader_and_image_folder(tmp_path):
    pixels = _write_image_tree(tmp_path / "imagenet")
    d = load_dataset("imagenet", root=tmp_path, image_size=8)
    assert d.x_train.shape == (4, 3, 8, 8) and d.x_test.shape == (2, 3, 8, 8) and d.x_train.dtype == torch.uint8
    assert d.y_train.tolist() == [0, 0, 1, 1] and d.y_test.tolist() == [0, 1]
    assert d.classes == ["n01440764", "n01443537"] and d.num_classes == 2
    assert np.array_equal(d.x_train[0].permute(1, 2, 0).numpy(), pixels["train", "n01440764"])  # PNG: exact
    assert np.array_equal(d.x_test[1].permute(1, 2, 0).numpy(), pixels["val", "n01443537"])
    assert (d.crop_padding, d.flip, d.image_size) == (1, True, 8)
    x, y, names = load_image_folder(tmp_path / "imagenet" / "train", 4)
    assert x.shape == (4, 3, 4, 4) and names == d.classes


def test_digits_split():
    d = load_dataset("digits")
    assert d.x_train.shape == (1437, 1, 8, 8) and d.x_test.shape == (360, 1, 8, 8)
    assert d.x_train.dtype == torch.uint8 and d.y_train.dtype == torch.int64 and d.x_train.max() == 255
    assert set(d.y_train.tolist()) == set(d.y_test.tolist()) == set(range(10))
    assert d.y_test.bincount().min() >= 35  # stratified
    assert abs(d.x_train.float().mean().item() / 255 - d.mean[0]) < 1e-3
    assert abs(d.x_train.float().std().item() / 255 - d.std[0]) < 1e-3
    assert load_dataset("digits") is d  # cached


# ------------------------------------------------------------------ errors
def test_missing_dataset_names_paths_and_remedy(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_dataset("svhn", root=tmp_path)
    assert str(tmp_path / "svhn") in str(e.value) and "http://ufldl.stanford.edu" in str(e.value)
    assert "download=True" in str(e.value)
    with pytest.raises(FileNotFoundError, match="cifar-10-python.tar.gz"):
        load_dataset("cifar10", root=tmp_path)


def test_unknown_name_and_option():
    with pytest.raises(ValueError, match="allowed values.*cifar10.*digits.*fashion_mnist"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="image_size"):
        load_dataset("digits", image_size=8)
    assert {"digits", "fashion_mnist", "cifar10", "cifar100", "svhn", "imagenet"} <= set(DATASETS)


# ------------------------------------------------------------------ ImageData
def _tiny():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 1, 1, 3).repeat(4, 2, 3, 1)
    return ImageData("tiny", x, torch.arange(4), x[:3], torch.arange(3), num_classes=4,
                     mean=(0.2, 0.5), std=(0.5, 0.25), crop_padding=1, flip=True)


def test_normalize_values_and_errors():
    d = _tiny()
    out = d.normalize(d.x_train)
    assert out.dtype == torch.float32
    assert torch.allclose(out[0, 0, 0], torch.tensor([-0.4, 0.0, 1.6]))
    assert torch.allclose(out[0, 1, 0], torch.tensor([-2.0, -1.2, 2.0]))
    with pytest.raises(TypeError):
        d.normalize(d.x_train.float())


def test_train_batch_and_test_batches():
    d = _tiny()
    x, y = d.train_batch(np.array([2, 0]), augment=False)
    assert torch.equal(x, d.normalize(d.x_train[[2, 0]])) and y.tolist() == [2, 0]
    a, _ = d.train_batch([0, 1, 2, 3], torch.Generator().manual_seed(0))
    b, _ = d.train_batch([0, 1, 2, 3], torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == (4, 2, 3, 3)
    batches = list(d.test_batches(2))
    assert [len(bx) for bx, _ in batches] == [2, 1]
    assert torch.equal(torch.cat([by for _, by in batches]), d.y_test)
    assert "tiny" in repr(d) and d.to("cpu").x_train.shape == d.x_train.shape


def test_digits_split_cache_is_written(tmp_path, monkeypatch):
    from kdlib.data import _digits_split

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    _digits_split()
    assert len(list((tmp_path / "kdlib").glob("digits-split-sklearn-*.npz"))) == 1


def test_digits_from_the_cache_equal_a_fresh_split(tmp_path, monkeypatch):
    """The cached split is the scikit-learn split: a second (cached) load gives the same tensors."""
    from kdlib.data import load_dataset

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    fresh, cached = load_dataset("digits"), load_dataset("digits")
    assert all(torch.equal(getattr(fresh, a), getattr(cached, a)) for a in ("x_train", "y_train", "x_test", "y_test"))


def test_digits_split_matches_scikit_learn(tmp_path, monkeypatch):
    from sklearn.model_selection import train_test_split

    from kdlib.data import _digits_split

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    _digits_split()
    x, y, train, test = _digits_split()  # from the cache
    expected, _ = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=0)
    assert np.array_equal(train, np.sort(expected))


@pytest.fixture
def digits_cache(tmp_path, monkeypatch):
    """The digits split cached in a per-user cache under ``tmp_path``: (cache file, the true split)."""
    from kdlib.data import _digits_split

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    split = _digits_split()
    (path,) = (tmp_path / "kdlib").glob("digits-split-sklearn-*.npz")
    return path, split


def _rewrite_split(path, train, test, digest=True):
    """Writes the cache file again with other train/test rows (with its digest recomputed when ``digest``)."""
    from kdlib.data import _split_digest

    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(train=train, test=test)
    if digest:
        arrays["digest"] = _split_digest(arrays["x"], arrays["y"], train, test, str(arrays["source"]))
    np.savez(path, **arrays)


def _same_split(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a, b))


@pytest.mark.parametrize("digest, why", [(True, "not a sorted partition"), (False, "digest does not match")],
                         ids=["digest recomputed", "digest kept"])
def test_a_cached_split_whose_train_rows_include_test_rows_is_ignored(digits_cache, digest, why):
    from kdlib.data import _digits_split

    path, split = digits_cache
    _, _, train, test = split
    _rewrite_split(path, np.union1d(train, test[:40]), test, digest)
    with pytest.warns(UserWarning, match=f"ignoring the per-user cache file {re.escape(str(path))}: .*{why}"):
        assert _same_split(_digits_split(), split)


def test_a_cached_split_with_a_moved_row_is_ignored(digits_cache):
    """A partition that is complete but not stratified (one class's test row moved to train)."""
    from kdlib.data import _digits_split

    path, split = digits_cache
    _, y, train, test = split
    moved = test[y[test] == 0][:3]
    _rewrite_split(path, np.union1d(train, moved), np.setdiff1d(test, moved))
    with pytest.warns(UserWarning, match="test rows are not the stratified 20% of 1797"):
        assert _same_split(_digits_split(), split)


@pytest.mark.parametrize("damage", ["empty", "truncated", "not a zip"])
def test_a_damaged_split_cache_is_ignored_with_a_warning_naming_it(digits_cache, damage):
    from kdlib.data import _digits_split

    path, split = digits_cache
    raw = path.read_bytes()
    path.write_bytes({"empty": b"", "truncated": raw[: len(raw) // 2], "not a zip": b"PK\x03\x04garbage"}[damage])
    with pytest.warns(UserWarning, match=f"ignoring the per-user cache file {re.escape(str(path))}: unreadable"):
        assert _same_split(_digits_split(), split)


def test_a_damaged_split_cache_is_rewritten(digits_cache):
    from kdlib.data import _cached_digits_split, _digits_split, _sklearn_digits_sha256

    path, split = digits_cache
    path.write_bytes(b"")
    with pytest.warns(UserWarning):
        _digits_split()
    assert _same_split(_cached_digits_split(path, _sklearn_digits_sha256()), split)
