"""Tiny, fast configs shared by the executor and fault tests (digits, a small convnet, one or two epochs)."""
from __future__ import annotations

import pytest
import torch

from kdlib.study import RunConfig
from kdlib.train import TrainConfig

# fp32 would do as well: with the same torch thread count bf16 autocast on CPU is bitwise reproducible across
# processes (tests/test_executors.py checks it); a different thread count changes the last bits of the losses.
TINY = TrainConfig(epochs=2, batch_size=32, lr=0.05, schedule="cosine")


def tiny_config(**kw) -> RunConfig:
    """A digits run with a convnet_small student and teacher (the teacher trains on 20% of the data)."""
    base = dict(dataset="digits", model="convnet_small", teacher="convnet_small", teacher_fraction=0.2, train=TINY)
    base.update(kw)
    return RunConfig(**base)


@pytest.fixture
def one_thread():
    """One torch thread: on 2 shared cores, 2 threads per process thrash (a tiny run takes 10x longer)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# A KD run of 4 epochs in fp32 (tests/test_resume.py kills it in its third epoch and resumes it).
RESUME_CONFIG = tiny_config(fraction=0.5, alpha=0.5, train=TrainConfig(epochs=4, batch_size=64, lr=0.05,
                                                                       schedule="cosine", precision="fp32"))
