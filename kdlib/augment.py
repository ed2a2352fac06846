"""Batch augmentation on (N, C, H, W) tensors: random crop with zero padding and horizontal flip.

Everything is vectorised over the batch (no per-image loops, no PIL), works on uint8 or float tensors, on any
device and in either memory format (the output keeps the input's format), and is deterministic given the
``torch.Generator``. Random numbers are drawn on the generator's device (the tensor's device when it is None).
Zero padding of uint8 pixels matches torchvision's ``RandomCrop(size, padding=p)`` applied before ``Normalize``.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def _like(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``out`` in the memory format of ``x`` (channels_last stays channels_last, otherwise contiguous)."""
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return out.contiguous(memory_format=torch.channels_last)
    return out.contiguous()


def crop_offsets(n: int, padding: int, generator: Optional[torch.Generator] = None,
                 device: Optional[torch.device] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (row, column) offsets into the padded image, uniform on ``0 .. 2 * padding``."""
    dev = generator.device if generator is not None else (device or torch.device("cpu"))
    off = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=dev)
    return off[0], off[1]


def crop(x: torch.Tensor, padding: int, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Zero-pads ``x`` by ``padding`` on every side and crops HxW at per-sample offsets ``rows``/``cols``."""
    if padding == 0:
        return x
    n, _, h, w = x.shape
    rows = rows.to(x.device)[:, None] + torch.arange(h, device=x.device)  # (N, H) rows of the padded image
    cols = cols.to(x.device)[:, None] + torch.arange(w, device=x.device)  # (N, W)
    padded = F.pad(x, (padding, padding, padding, padding))
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]  # advanced indices first: (N, H, W, C)
    return _like(out.permute(0, 3, 1, 2), x)


def random_crop(x: torch.Tensor, padding: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Zero-pads by ``padding`` and crops back to HxW at a uniformly random offset per sample (identity if 0)."""
    if padding < 0:
        raise ValueError(f"crop padding must be >= 0, got {padding!r}")
    if padding == 0:
        return x
    rows, cols = crop_offsets(x.shape[0], padding, generator, x.device)
    return crop(x, padding, rows, cols)


def flip_mask(n: int, generator: Optional[torch.Generator] = None,
              device: Optional[torch.device] = None) -> torch.Tensor:
    """Boolean (N,) mask, each sample chosen for flipping with probability 0.5."""
    dev = generator.device if generator is not None else (device or torch.device("cpu"))
    return torch.rand(n, generator=generator, device=dev) < 0.5


def random_flip(x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Flips each sample horizontally (last axis) with probability 0.5."""
    mask = flip_mask(x.shape[0], generator, x.device).to(x.device)
    return _like(torch.where(mask[:, None, None, None], x.flip(-1), x), x)


def augment(x: torch.Tensor, crop_padding: int, flip: bool,
            generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Random crop (when ``crop_padding > 0``) followed by a random horizontal flip (when ``flip``)."""
    if crop_padding:
        x = random_crop(x, crop_padding, generator)
    if flip:
        x = random_flip(x, generator)
    return x
