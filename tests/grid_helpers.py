"""Tiny, fast configs shared by the executor and fault tests (digits, a small convnet, one or two epochs)."""
from __future__ import annotations

import pytest
import torch

from kdlib.study import RunConfig, Study
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
# Two runs of one group key on their own streams (seeds 0 and 1, random and EL2N subsets, KD and not).
GROUP_RESUME_CONFIGS = [RESUME_CONFIG, tiny_config(fraction=0.5, alpha=0.0, method="el2n", seed=1,
                                                   train=RESUME_CONFIG.train)]


class RecordingStudy:
    """A stand-in for ``Study`` in grid workers (tests/test_gpu_workers.py, tests/test_slurm.py): it trains
    nothing; a run's record names the device its worker opened the study on and the worker's pid. When the file
    ``<store>/../rendezvous`` holds a number n, each run first waits (up to 2 min) until n workers are busy at
    once, so that n runs land on n distinct workers."""

    def __init__(self, store, device="auto", data_root=None, progress=False, checkpoint_every=None):
        from kdlib.store import Store

        self.store = Store(store)
        self.device = device

    def teacher(self, cfg):
        return None, {}

    def scores(self, cfg):
        return {}

    def run_chunk(self, configs, size="auto", mode="auto"):
        return [self.run(c) for c in configs]

    def run(self, cfg):
        import os
        import time

        rendezvous = self.store.root.parent / "rendezvous"
        if rendezvous.exists():
            busy = self.store.root.parent / "busy"
            busy.mkdir(exist_ok=True)
            (busy / str(os.getpid())).touch()
            deadline = time.monotonic() + 120
            while len(list(busy.iterdir())) < int(rendezvous.read_text()) and time.monotonic() < deadline:
                time.sleep(0.05)
        r = cfg.resolved()
        return self.store.put("runs", r.key(), {"status": "done", "config": r, "device": str(self.device),
                                                "pid": os.getpid()})


class PreemptedOnceStudy(Study):
    """A Study whose first attempt at a run sends itself submitit's preemption signal (USR2) in the third step
    of the run's third epoch, once the checkpoint of its second epoch is saved (tests/test_slurm.py). A later
    attempt (the requeued job) writes the epoch of the checkpoint its training loop resumes from (0: none) to
    ``<store>/../resumed_from``."""

    def run(self, cfg):
        import os
        import signal

        from kdlib.store import Store, StoreCheckpoint
        from kdlib.train import ModelSteps

        marker = self.store.root.parent / "preempted"
        if marker.exists():
            load = StoreCheckpoint.load

            def load_and_tell(slot, map_location="cpu"):
                saved = load(slot, map_location)
                if slot.kind == "checkpoints/runs":
                    (self.store.root.parent / "resumed_from").write_text(str(saved["state"]["epoch"] if saved else 0))
                return saved

            StoreCheckpoint.load = load_and_tell  # this job process only
            return super().run(cfg)
        save, step = Store.save_checkpoint, ModelSteps.step
        saved_epochs, calls = [], [0]

        def save_and_count(store, kind, key, state, epoch, config=None):
            save(store, kind, key, state, epoch, config)
            if kind == "checkpoints/runs":
                saved_epochs.append(epoch)

        def step_and_preempt(steps, xb, yb, active):
            if saved_epochs and saved_epochs[-1] == 2:
                calls[0] += 1
                if calls[0] == 3:
                    marker.touch()
                    os.kill(os.getpid(), signal.SIGUSR2)  # submitit's handler requeues the job and exits
            return step(steps, xb, yb, active)

        Store.save_checkpoint, ModelSteps.step = save_and_count, step_and_preempt  # this job process only
        return super().run(cfg)
