"""A run killed by SIGKILL mid-way, as a separate process (tests/test_resume.py).

``python tests/resume_script.py STORE KILL_EPOCH`` runs ``RESUME_CONFIG`` through ``Study.run`` on ``STORE`` with one
torch thread and kills itself with SIGKILL in the third step of epoch ``KILL_EPOCH`` (1-based) of the student.
"""
from __future__ import annotations

import os
import signal
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from grid_helpers import RESUME_CONFIG  # noqa: E402

from kdlib import store as store_module  # noqa: E402
from kdlib import train as train_module  # noqa: E402
from kdlib.study import Study  # noqa: E402


def main(store: str, kill_epoch: int) -> None:
    torch.set_num_threads(1)
    saved_epochs: list[int] = []
    save, step = store_module.Store.save_checkpoint, train_module.ModelSteps.step

    def save_and_count(self, kind, key, state, epoch, config=None):
        save(self, kind, key, state, epoch, config)
        if kind == "checkpoints/runs":
            saved_epochs.append(epoch)

    calls = {"n": 0}

    def step_and_die(self, xb, yb, active):
        if saved_epochs and saved_epochs[-1] == kill_epoch - 1:
            calls["n"] += 1
            if calls["n"] == 3:
                os.kill(os.getpid(), signal.SIGKILL)
        return step(self, xb, yb, active)

    store_module.Store.save_checkpoint = save_and_count
    train_module.ModelSteps.step = step_and_die
    Study(store, device="cpu", progress=False, checkpoint_every=0).run(RESUME_CONFIG)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
