"""The streamed ImageNet-layout folder reader, pruned subsets of it, and the real-image exporter."""
import json
import os
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from kdlib.imagenet import (ImageFolder, eval_resize, eval_transform, export_image_folder, load_folder_data,
                            read_image, scan_folder, train_transform)
from kdlib.smoke import write_imagenet_layout

CLASSES = ["n01440764", "n01443537", "n01484850"]  # ImageNet-style wnids, sorted


def test_image_folder_shapes_labels_and_classes(tmp_path):
    root = write_imagenet_layout(tmp_path / "imagenet")
    train = ImageFolder(root / "train", train_transform(32))
    assert train.classes == CLASSES and len(train) == 12
    assert train.targets.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    for i in (0, 1, 2, 5, 11):
        x, y = train[i]
        assert x.shape == (3, 32, 32) and x.dtype == torch.uint8 and y == i // 4
    gray = read_image(root / "train" / CLASSES[0] / f"{CLASSES[0]}_1.JPEG")
    assert gray.shape == (3, 37, 40) and torch.equal(gray[0], gray[1])

    val = ImageFolder(root / "val", eval_transform(32), classes=train.classes)
    assert len(val) == 6 and val.targets.tolist() == [0, 0, 1, 1, 2, 2]
    a, _ = val[3]
    b, _ = val[3]
    assert a.shape == (3, 32, 32) and torch.equal(a, b)  # evaluation is deterministic
    assert eval_resize(224) == 256 and eval_resize(32) == 37


def test_center_crop_keeps_the_middle(tmp_path):
    """Resize(256 * S / 224) + CenterCrop(S): a wide image loses its left and right edges."""
    folder = tmp_path / "val" / "a"
    folder.mkdir(parents=True)
    arr = np.zeros((64, 128, 3), dtype=np.uint8)
    arr[:, 32:96] = 255  # white middle half, black edges
    Image.fromarray(arr).save(folder / "x.png")
    x, _ = ImageFolder(tmp_path / "val", eval_transform(32))[0]
    assert x.shape == (3, 32, 32)
    assert x.float().mean() > 250  # the 37x74 resize's central 32x32 lies inside the white band


def test_load_folder_data_and_fingerprint(tmp_path):
    write_imagenet_layout(tmp_path / "imagenet")
    data = load_folder_data(tmp_path, image_size=24)  # finds root/imagenet like kdlib.data
    assert data.num_classes == 3 and data.n_train == 12 and len(data.val) == 6 and data.source is None
    assert data.labels.tolist() == data.train.targets.tolist()
    fp = data.fingerprint()
    assert fp == load_folder_data(tmp_path / "imagenet", 24).fingerprint()
    Image.new("RGB", (30, 30)).save(tmp_path / "imagenet" / "train" / CLASSES[0] / "extra.JPEG")
    assert load_folder_data(tmp_path, 24).fingerprint() != fp
    x = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    assert torch.allclose(data.normalize(x)[:, 0], torch.tensor((1 - 0.485) / 0.229))

    (tmp_path / "imagenet" / "val" / "n99999999").mkdir()
    with pytest.raises(ValueError, match="n99999999.*not among the 3 known classes"):
        load_folder_data(tmp_path, 24)
    with pytest.raises(FileNotFoundError, match="export_image_folder"):
        load_folder_data(tmp_path / "nowhere", 24)
    with pytest.raises(ValueError, match="crop_scale"):
        load_folder_data(tmp_path, 24, crop_scale=(0.5, 0.1))


def test_scan_folder_requires_images(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("")
    with pytest.raises(FileNotFoundError, match="no images"):
        scan_folder(tmp_path)


def subset_indices(labels, fraction, seed, class_balanced=False):
    """The random subset a streamed run keeps (``kdlib.study.select_subset`` with method 'random')."""
    from kdlib.study import select_subset

    return select_subset("random", {}, labels, fraction, seed, class_balanced)


@pytest.mark.parametrize("n,fraction", [(1000, 0.5), (1000, 0.333), (1281, 0.5), (7, 0.3), (10, 1.0)])
def test_subset_sizes_are_exact(n, fraction):
    labels = np.arange(n) % 10
    idx = subset_indices(labels, fraction, seed=3)
    assert len(idx) == max(1, round(fraction * n)) == len(np.unique(idx))
    assert np.all(np.diff(idx) > 0) and idx.min() >= 0 and idx.max() < n
    assert np.array_equal(idx, subset_indices(labels, fraction, seed=3))


def test_subset_seeds_balance_and_study_agreement(tmp_path):
    labels = np.repeat(np.arange(4), [100, 50, 30, 20])
    a, b = subset_indices(labels, 0.5, 0), subset_indices(labels, 0.5, 1)
    assert not np.array_equal(a, b)
    bal = subset_indices(labels, 0.5, 0, class_balanced=True)
    assert np.bincount(labels[bal]).tolist() == [50, 25, 15, 10]

    from kdlib.data import load_dataset
    from kdlib.study import RunConfig, Study

    digits = load_dataset("digits")
    study = Study(tmp_path / "store", device="cpu", progress=False)
    for seed in (0, 2):
        expected = study.subset(RunConfig(dataset="digits", fraction=0.3, seed=seed))
        assert np.array_equal(subset_indices(digits.y_train.numpy(), 0.3, seed), expected)


def test_export_image_folder_writes_real_images(tmp_path):
    from kdlib.data import load_dataset

    out = export_image_folder("digits", tmp_path / "digits_folder", per_class=3, image_size=16)
    source = (out / "SOURCE.txt").read_text()
    assert "digits in ImageNet folder format (NOT ImageNet)" in source and "30 train / 30 val" in source
    data = load_folder_data(out, 16)
    assert data.num_classes == 10 and data.n_train == 30 and len(data.val) == 30 and data.source == source.strip()
    assert data.classes[:3] == ["000_0", "001_1", "002_2"]
    assert data.labels.tolist() == np.repeat(np.arange(10), 3).tolist()

    # The files hold the real digits: shrunk back to 8x8 they match the originals.
    digits = load_dataset("digits")
    first = np.flatnonzero(digits.y_train.numpy() == 4)[:3]
    for path, i in zip(sorted((out / "train" / "004_4").iterdir()), first):
        back = np.asarray(Image.open(path).convert("L").resize((8, 8), Image.BILINEAR), dtype=float)
        orig = digits.x_train[i, 0].numpy().astype(float)
        assert np.corrcoef(back.ravel(), orig.ravel())[0, 1] > 0.9

    stamp = (out / "train" / "000_0").stat().st_mtime_ns
    assert export_image_folder("digits", out, per_class=3, image_size=16) == out  # reused as is
    assert (out / "train" / "000_0").stat().st_mtime_ns == stamp
    export_image_folder("digits", out, per_class=2, image_size=16, val_per_class=1)  # other arguments: rewritten
    assert load_folder_data(out, 16).n_train == 20 and len(load_folder_data(out, 16).val) == 10
    assert json.loads((out / "manifest.json").read_text())["per_class"] == 2

    foreign = tmp_path / "foreign"
    (foreign / "train").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="not written by export_image_folder"):
        export_image_folder("digits", foreign, per_class=1, image_size=8)


@pytest.fixture
def fingerprinted(tmp_path, monkeypatch):
    """An ImageNet-layout folder, fingerprinted once with the per-user cache in ``tmp_path``."""
    from kdlib.imagenet import folder_fingerprint

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_imagenet_layout(tmp_path / "imagenet")
    return tmp_path / "imagenet", folder_fingerprint(tmp_path / "imagenet")


def test_a_known_folder_is_not_read_again(fingerprinted, monkeypatch):
    import kdlib.imagenet as imagenet

    root, fp = fingerprinted
    monkeypatch.setattr(imagenet, "file_sha256", lambda *a: pytest.fail("the files were read again"))
    assert imagenet.folder_fingerprint(root) == fp


def test_a_changed_file_is_read_again(fingerprinted):
    from kdlib.imagenet import folder_fingerprint

    root, fp = fingerprinted
    Image.new("RGB", (30, 30), "red").save(next((root / "train").glob("*/*")))
    assert folder_fingerprint(root) != fp


def _rewrite_keeping_size_and_mtime(path):
    """Flips the file's last byte in place (same size, same inode) and sets its mtime back."""
    st = path.stat()
    with open(path, "r+b") as fh:
        fh.seek(-1, 2)
        last = fh.read(1)
        fh.seek(-1, 2)
        fh.write(bytes([last[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_an_image_rewritten_with_its_size_and_mtime_kept_is_read_again(fingerprinted):
    from kdlib.imagenet import folder_fingerprint

    root, fp = fingerprinted
    _rewrite_keeping_size_and_mtime(next((root / "train").glob("*/*.JPEG")))
    assert folder_fingerprint(root) != fp


def test_an_edited_copy_of_a_folder_gets_its_own_fingerprint(fingerprinted, tmp_path):
    from kdlib.imagenet import folder_fingerprint

    root, fp = fingerprinted
    copy = shutil.copytree(root, tmp_path / "copy" / "imagenet")  # copy2: sizes and mtimes kept
    _rewrite_keeping_size_and_mtime(next((copy / "train").glob("*/*.JPEG")))
    assert folder_fingerprint(copy) != fp


def _cache_entry(tmp_path):
    (path,) = (tmp_path / "cache" / "kdlib" / "folder_fingerprints").glob("*.json")
    return path, json.loads(path.read_text())


def _poison(tmp_path, edit, checksum=True):
    import hashlib

    path, entry = _cache_entry(tmp_path)
    edit(entry)
    if checksum:
        body = {k: v for k, v in entry.items() if k != "checksum"}
        entry["checksum"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    path.write_text(json.dumps(entry))
    return path


def _set_digests(value):
    def edit(entry):
        for row in entry["files"]:
            row[2] = value
    return edit


@pytest.mark.parametrize("edit, checksum, why", [
    (_set_digests("../../etc"), True, "is not \\(path, stat, SHA-256\\)"),
    (_set_digests("0" * 64), False, "checksum does not match"),
    (lambda e: e.update(root="/elsewhere"), True, "describes '/elsewhere'"),
    (lambda e: e.update(version=1), True, "not a version-2"),
], ids=["digest not hex", "edited without its checksum", "another root", "old version"])
def test_a_cache_entry_that_does_not_verify_is_ignored_with_a_warning(fingerprinted, tmp_path, edit, checksum, why):
    from kdlib.imagenet import folder_fingerprint

    root, fp = fingerprinted
    path = _poison(tmp_path, edit, checksum)
    with pytest.warns(UserWarning, match=f"ignoring the per-user cache file {re.escape(str(path))}: .*{why}"):
        assert folder_fingerprint(root) == fp


def test_a_cache_file_that_is_not_json_is_ignored_with_a_warning(fingerprinted, tmp_path):
    from kdlib.imagenet import folder_fingerprint

    root, fp = fingerprinted
    path, _ = _cache_entry(tmp_path)
    path.write_text('{"version": 2, "fi')
    with pytest.warns(UserWarning, match=f"ignoring the per-user cache file {re.escape(str(path))}: not JSON"):
        assert folder_fingerprint(root) == fp


def test_a_spec_fingerprint_of_another_folder_is_an_error_naming_both(fingerprinted, digits_folder):
    from kdlib.imagenet import FolderSpec

    _, fp = fingerprinted
    with pytest.raises(ValueError, match=f"^fingerprint '{fp}' does not match the folder .*digits, whose "
                                         f"content fingerprint is '[0-9a-f]{{16}}'"):
        FolderSpec(root=str(digits_folder), fingerprint=fp)


def test_a_made_up_spec_fingerprint_is_an_error(fingerprinted):
    from kdlib.imagenet import FolderSpec

    root, _ = fingerprinted
    with pytest.raises(ValueError, match="^fingerprint '0123456789abcdef' does not match the folder"):
        FolderSpec(root=str(root), fingerprint="0123456789abcdef")


def test_a_spec_whose_folder_appears_later_is_checked_when_loaded(fingerprinted, tmp_path):
    from kdlib.imagenet import FolderSpec, load_folder_spec

    root, _ = fingerprinted
    spec = FolderSpec(root=str(tmp_path / "later"), fingerprint="0123456789abcdef")  # a record read back
    shutil.copytree(root, tmp_path / "later")
    with pytest.raises(ValueError, match="^fingerprint '0123456789abcdef' does not match the folder"):
        load_folder_spec(spec)


def test_the_right_spec_fingerprint_is_accepted(fingerprinted):
    from kdlib.imagenet import FolderSpec

    root, fp = fingerprinted
    assert FolderSpec(root=str(root), fingerprint=fp).fingerprint == fp


def test_a_folder_changed_after_its_spec_was_built_is_an_error_when_loaded(fingerprinted):
    from kdlib.imagenet import FolderSpec, load_folder_spec

    root, fp = fingerprinted
    spec = FolderSpec(root=str(root))
    _rewrite_keeping_size_and_mtime(next((root / "train").glob("*/*.JPEG")))
    with pytest.raises(ValueError, match=f"^fingerprint '{fp}' does not match the folder"):
        load_folder_spec(spec)
