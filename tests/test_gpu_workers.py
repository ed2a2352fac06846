"""GPUs on one machine: the processes executor gives each worker its own device (round-robin over the GPUs, at most
``runs_per_gpu`` per GPU) and opens the worker's Study on it; a Ray task asks for ``num_gpus``. No GPU is needed:
the device lists are fake and the workers' studies (``RecordingStudy``) only record the device they were given."""
import sys
from collections import Counter
from types import SimpleNamespace

import pytest
import torch

from grid_helpers import RecordingStudy, tiny_config
from kdlib.executors import gpu_devices, run_parallel, worker_devices
from kdlib.study import run_grid


def spread(tmp_path, n_runs, **kw):
    """The records of ``n_runs`` runs through the processes executor, each run held until every worker is busy."""
    (tmp_path / "rendezvous").write_text(str(n_runs))
    configs = [tiny_config(seed=s) for s in range(n_runs)]
    return run_parallel(configs, tmp_path / "store", progress=False, executor="processes",
                        study_class=RecordingStudy, **kw)


def test_four_workers_on_four_gpus_get_one_gpu_each(tmp_path):
    recs = spread(tmp_path, 4, devices=["cuda:0", "cuda:1", "cuda:2", "cuda:3"])
    assert sorted({r["pid"]: r["device"] for r in recs}.values()) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]


def test_two_runs_per_gpu_put_two_of_four_workers_on_each_gpu(tmp_path):
    recs = spread(tmp_path, 4, devices=["cuda:0", "cuda:1"], runs_per_gpu=2)
    assert Counter(r["device"] for r in recs) == {"cuda:0": 2, "cuda:1": 2}


def test_devices_are_dealt_round_robin():
    assert worker_devices(4, ["cuda:0", "cuda:1"], runs_per_gpu=2) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]


def test_more_workers_than_gpu_slots_names_runs_per_gpu(tmp_path):
    with pytest.raises(ValueError, match=r"workers=3 is more than 1 GPU\(s\) x runs_per_gpu=2"):
        run_grid([tiny_config()], tmp_path, executor="processes", workers=3, devices=["cuda:0"], runs_per_gpu=2)


@pytest.mark.parametrize("bad", [0, 1.5, "2"])
def test_a_bad_runs_per_gpu_is_named(tmp_path, bad):
    with pytest.raises(ValueError, match="runs_per_gpu must be"):
        run_grid([tiny_config()], tmp_path, executor="processes", runs_per_gpu=bad)


def test_devices_with_a_cpu_device_is_refused(tmp_path):
    with pytest.raises(ValueError, match="it needs device='auto' or 'cuda', not 'cpu'"):
        run_grid([tiny_config()], tmp_path, device="cpu", executor="processes", devices=["cuda:0"])


def test_without_a_visible_gpu_auto_spreads_over_no_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_devices("auto", None) == []


class Finished:
    """A task's handle (hashable, as Ray's object refs are) holding its result."""

    def __init__(self, value):
        self.value = value


class FakeRay:
    """Ray's face as ``kdlib.executors._RayPool`` uses it: tasks run at once, in this process."""

    def __init__(self):
        self.options = None

    def is_initialized(self):
        return True

    def remote(self, fn):
        def options(**kw):
            self.options = kw
            return SimpleNamespace(remote=lambda *args: Finished(fn(*args)))

        return SimpleNamespace(options=options)

    def wait(self, handles, num_returns=1):
        return handles[:num_returns], handles[num_returns:]

    def get(self, handle):
        return handle.value

    def cancel(self, handle):
        pass


def test_a_ray_task_asks_for_a_share_of_a_gpu_and_opens_its_study_on_auto(tmp_path, monkeypatch):
    ray = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", ray)
    (rec,) = run_parallel([tiny_config()], tmp_path / "store", progress=False, executor="ray", num_cpus=2,
                          num_gpus=0.5, study_class=RecordingStudy)
    assert (ray.options, rec["device"]) == ({"num_cpus": 2, "num_gpus": 0.5}, "auto")


def test_a_ray_task_without_gpus_opens_its_study_on_the_cpu(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", FakeRay())
    (rec,) = run_parallel([tiny_config()], tmp_path / "store", progress=False, executor="ray",
                          study_class=RecordingStudy)
    assert rec["device"] == "cpu"


def test_a_negative_ray_gpu_request_is_named(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", FakeRay())
    with pytest.raises(ValueError, match="num_gpus must be a number >= 0"):
        run_parallel([tiny_config()], tmp_path / "store", progress=False, executor="ray", num_gpus=-1,
                     study_class=RecordingStudy)
