"""Grid executors: a local process pool and a local Ray instance give the same records as the in-process loop."""
import os

import numpy as np
import pytest
import torch

from grid_helpers import tiny_config
from kdlib import executors
from kdlib.store import Store
from kdlib.study import expand_grid, run_grid
from kdlib.train import TrainConfig

DIVERGING = TrainConfig(epochs=1, batch_size=32, lr=1e6, schedule="constant")


def grid_configs():
    """Four runs on one teacher (one of them twice, as a duplicate) and a run that diverges."""
    configs = expand_grid(tiny_config(seed=1), {"fraction": [0.1, 0.2], "alpha": [0.0, 0.5]})
    return configs + [configs[0], tiny_config(seed=1, fraction=0.1, train=DIVERGING)]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """The grid run by the local executor with ``threads`` torch threads (the count a worker will use):
    results are bitwise reproducible across processes only at the same thread count."""
    cache = {}

    def get(threads: int):
        if threads not in cache:
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                store = tmp_path_factory.mktemp(f"local{threads}")
                cache[threads] = (run_grid(grid_configs(), store, progress=False, group_size=1), Store(store))
            finally:
                torch.set_num_threads(before)
        return cache[threads]

    return get


def assert_same_records(df, store, ref_df, ref_store):
    assert df.key.tolist() == ref_df.key.tolist()
    assert df.status.tolist() == ["done"] * 5 + ["failed"]
    assert "loss became nan" in df.error.iloc[-1] and "lr=1000000.0" in df.error.iloc[-1]
    done = df.status == "done"
    assert np.array_equal(df.final_acc[done], ref_df.final_acc[done])
    for key in df.key[done]:
        got, ref = store.get("runs", key)["result"], ref_store.get("runs", key)["result"]
        assert got["losses"] == ref["losses"] and got["curve"] == ref["curve"]
    assert len(list((store.root / "teachers").glob("*.json"))) == 1
    assert len(list((store.root / "runs").glob("*.json"))) == 5  # the duplicate ran once
    assert not list(store.root.rglob("*.corrupt"))


def test_unknown_executor_is_named(tmp_path):
    with pytest.raises(ValueError, match="unknown executor 'dask'; allowed values for 'executor': local, processes, ray"):
        run_grid([tiny_config()], tmp_path, executor="dask")


def test_processes_executor_matches_local(baseline, tmp_path, monkeypatch):
    workers = 2
    threads = max(1, (os.cpu_count() or 1) // workers)  # the rule kdlib.executors uses
    df = run_grid(grid_configs(), tmp_path, progress=False, executor="processes", workers=workers, group_size=1)
    assert_same_records(df, Store(tmp_path), *baseline(threads))
    # a finished grid starts no pool: every record is read back from the store (failed runs are retried)
    monkeypatch.setattr(executors, "_ProcessPool", None)
    with pytest.raises(TypeError):
        run_grid(grid_configs(), tmp_path, progress=False, executor="processes")
    again = run_grid(grid_configs()[:-1], tmp_path, progress=False, executor="processes")
    assert again.key.tolist() == df.key.tolist()[:-1] and (again.status == "done").all()


def test_processes_executor_trains_groups_with_the_records_of_single_runs(baseline, tmp_path):
    """Chunks of two runs per worker, trained as loop groups on one thread: bit for bit the runs alone."""
    threads = max(1, (os.cpu_count() or 1) // 2)
    df = run_grid(grid_configs(), tmp_path, progress=False, executor="processes", workers=2, group_size=2,
                  group_mode="loop")
    assert_same_records(df, Store(tmp_path), *baseline(threads))
    assert {r["result"]["extra"].get("group") for r in Store(tmp_path).records() if r["status"] == "done"} == {2}


# in the default suite (CI installs ray through the test extra): starting Ray takes 30-45 s on 2 busy cores
def test_ray_executor_matches_local(baseline, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        df = run_grid(grid_configs(), tmp_path, progress=False, executor="ray", num_cpus=1, group_size=1)
        assert ray.is_initialized()  # an instance the caller started is left running
    finally:
        ray.shutdown()
    assert_same_records(df, Store(tmp_path), *baseline(1))  # a Ray task with num_cpus=1 uses one torch thread
