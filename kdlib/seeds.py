"""Every seed stream of kdlib, named in one place.

A run's randomness comes from its ``seed`` combined with one of these constants, so two streams never collide
and a stream does not depend on what ran before in the process. Changing a value changes results (and is a
change of every stored record that used it).
"""
from __future__ import annotations

import numpy as np
import torch

SUBSET_STREAM = 7919             # second word of the generator that selects a run's kept subset
TEACHER_SUBSET_STREAM = 104729   # second word of the generator that draws a teacher's random data fraction
EPOCH_STRIDE = 1_000_003         # an epoch's batch order and augmentation: seed * EPOCH_STRIDE + epoch
PROXY_STREAM = 0x9E3779B1        # second word of the seed sequence of the i-th scoring proxy


def subset_rng(seed: int) -> np.random.Generator:
    """The generator a pruning method's selector draws from for the run with ``seed``."""
    return np.random.default_rng([int(seed), SUBSET_STREAM])


def teacher_subset_rng(seed: int) -> np.random.Generator:
    """The generator that draws the random data fraction a teacher trains on."""
    return np.random.default_rng([int(seed), TEACHER_SUBSET_STREAM])


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of the generator of epoch ``epoch`` (0-based): batch order, then augmentation."""
    return int(seed) * EPOCH_STRIDE + int(epoch)


def epoch_generator(seed: int, epoch: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh generator on ``device`` seeded with ``epoch_seed(seed, epoch)``."""
    return torch.Generator(device=device).manual_seed(epoch_seed(seed, epoch))


def proxy_seed(seed: int, index: int) -> int:
    """The torch seed of the ``index``-th scoring proxy model of a score computation with ``seed``."""
    return int(np.random.SeedSequence([int(seed), PROXY_STREAM, int(index)]).generate_state(1)[0] % (2**31 - 1))
