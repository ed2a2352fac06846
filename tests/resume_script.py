"""A run or a group killed by SIGKILL mid-way, as a separate process (tests/test_resume.py, tests/test_grouped.py).

``python tests/resume_script.py STORE KILL_EPOCH`` runs ``RESUME_CONFIG`` through ``Study.run`` on ``STORE`` with one
torch thread and kills itself with SIGKILL in the third step of epoch ``KILL_EPOCH`` (1-based) of the student.
``python tests/resume_script.py STORE KILL_EPOCH group`` does the same to ``GROUP_RESUME_CONFIGS`` trained as one
stacked group (``Study.run_chunk``).
"""
from __future__ import annotations

import os
import signal
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from grid_helpers import GROUP_RESUME_CONFIGS, RESUME_CONFIG  # noqa: E402

from kdlib import store as store_module  # noqa: E402
from kdlib import grouped as grouped_module  # noqa: E402
from kdlib import train as train_module  # noqa: E402
from kdlib.study import Study  # noqa: E402


def main(store: str, kill_epoch: int, what: str = "run") -> None:
    torch.set_num_threads(1)
    saved_epochs: list[int] = []
    steps = grouped_module.StackedSteps if what == "group" else train_module.ModelSteps
    save, step = store_module.Store.save_checkpoint, steps.step

    def save_and_count(self, kind, key, state, epoch, config=None):
        save(self, kind, key, state, epoch, config)
        if kind == f"checkpoints/{what}s":
            saved_epochs.append(epoch)

    calls = {"n": 0}

    def step_and_die(self, xb, yb, active):
        if saved_epochs and saved_epochs[-1] == kill_epoch - 1:
            calls["n"] += 1
            if calls["n"] == 3:
                os.kill(os.getpid(), signal.SIGKILL)
        return step(self, xb, yb, active)

    store_module.Store.save_checkpoint = save_and_count
    steps.step = step_and_die
    study = Study(store, device="cpu", progress=False, checkpoint_every=0)
    if what == "group":
        study.run_chunk(GROUP_RESUME_CONFIGS, 2, "stacked")
    else:
        study.run(RESUME_CONFIG)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), *sys.argv[3:])
