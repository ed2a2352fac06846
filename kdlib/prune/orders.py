"""A bounded memo of greedy selection orders.

Greedy selectors (herding, k-center, facility location, graph cut, OMP) pick one sample per step, and the first
``k`` picks do not depend on ``k``. A grid asks for the same order several times (once per alpha) and for
growing prefixes (one per fraction), so the orders are memoised per process, keyed by a digest of the inputs:
a cached order is returned as is, and a resumable greedy (``keep_state=True``) continues where it stopped. The
memo only saves time: a selector returns the same indices with or without it. It holds at most
``MAX_ENTRIES`` orders; generators that hold a large matrix are not kept (``keep_state=False``).
"""
from __future__ import annotations

import hashlib
import itertools
from collections import OrderedDict
from typing import Callable, Hashable, Iterator, Optional

import numpy as np

MAX_ENTRIES = 32


def digest(*arrays: np.ndarray) -> str:
    """A content digest of arrays (dtype, shape and bytes)."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()


class OrderMemo:
    """Orders (lists of positions) produced by greedy generators, with their generators when resumable."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[list[int], Optional[Iterator[int]]]] = OrderedDict()

    def clear(self) -> None:
        self._entries.clear()

    def prefix(self, key: Hashable, k: int, start: Callable[[], Iterator[int]], keep_state: bool = True) -> np.ndarray:
        """The first ``k`` picks of the greedy ``start()`` identified by ``key`` (cached, resumed or computed)."""
        order, gen = self._entries.pop(key, ([], None))
        if len(order) < k:
            if gen is None:
                gen = start()
                order = []
            order.extend(itertools.islice(gen, k - len(order)))
        self._entries[key] = (order, gen if keep_state else None)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return np.asarray(order[:k], dtype=np.int64)


ORDERS = OrderMemo()
