import pytest
import torch
import torch.nn.functional as F

from kdlib.augment import augment, crop, crop_offsets, flip_mask, random_crop, random_flip


def _images(n=16, c=3, h=7, w=9, dtype=torch.uint8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, c, h, w), generator=g)
    return x.to(dtype)


def _gen(seed=1):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_crop_padding_zero_is_identity(dtype):
    x = _images(dtype=dtype)
    assert torch.equal(random_crop(x, 0, _gen()), x)
    assert torch.equal(augment(x, 0, False, _gen()), x)


def test_crop_matches_manual_pad_and_slice():
    x, p = _images(), 3
    rows, cols = crop_offsets(len(x), p, _gen())
    assert rows.min() >= 0 and rows.max() <= 2 * p and len(set(rows.tolist())) > 1
    out = random_crop(x, p, _gen())
    padded = F.pad(x, (p, p, p, p))
    expected = torch.stack([padded[i, :, r:r + x.shape[2], c:c + x.shape[3]] for i, (r, c) in enumerate(zip(rows, cols))])
    assert torch.equal(out, expected)
    assert torch.equal(crop(x, p, rows, cols), expected)


def test_crop_centre_offset_is_identity_and_corner_shifts_in_zeros():
    x, p = _images(n=2), 2
    full = torch.full((2,), p)
    assert torch.equal(crop(x, p, full, full), x)
    zero = torch.zeros(2, dtype=torch.long)
    out = crop(x, p, zero, zero)  # shifted down-right by p: top rows and left columns are padding
    assert (out[:, :, :p] == 0).all() and (out[:, :, :, :p] == 0).all()
    assert torch.equal(out[:, :, p:, p:], x[:, :, :-p, :-p])


def test_flip_flips_exactly_the_chosen_samples():
    x = _images(n=32)
    mask = flip_mask(len(x), _gen())
    assert 0 < mask.sum() < len(x)
    out = random_flip(x, _gen())
    for i in range(len(x)):
        assert torch.equal(out[i], x[i].flip(-1) if mask[i] else x[i])


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("channels_last", [False, True])
def test_augment_deterministic_and_preserves_shape_dtype_format(dtype, channels_last):
    x = _images(n=8, c=3, h=8, w=8, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    a, b = augment(x, 2, True, _gen(5)), augment(x, 2, True, _gen(5))
    assert torch.equal(a, b)
    assert not torch.equal(a, augment(x, 2, True, _gen(6)))
    assert a.shape == x.shape and a.dtype == dtype
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert a.is_contiguous(memory_format=fmt)
    # channels_last input gives the same values as the standard layout
    assert torch.equal(a, augment(x.contiguous(), 2, True, _gen(5)))


def test_augment_is_crop_then_flip():
    x, g = _images(), _gen(3)
    expected = random_flip(random_crop(x, 2, g), g)
    assert torch.equal(augment(x, 2, True, _gen(3)), expected)
