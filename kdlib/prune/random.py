"""Random pruning: the paper's strongest baseline once the student distils from a full-data teacher."""
from __future__ import annotations

import numpy as np

from .base import register_method
from .selection import keep_random


@register_method("random", keeps="random")
def random_pruning(arrays: dict, labels: np.ndarray, k: int, rng: np.random.Generator,
                   class_balanced: bool = False) -> np.ndarray:
    """Uniform random subset of size k (class-proportional when class_balanced). No proxy model, no scores."""
    return keep_random(labels, k, rng, class_balanced)
