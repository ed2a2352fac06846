"""kdlib.export.to_mlflow: each finished record logged once, its config as parameters, its accuracies as metrics
and its curve as a metric history. Skipped where MLflow is not installed (the `mlflow` extra; `make test` has it)."""
from __future__ import annotations

import importlib.util
import sys

import pytest
from grid_helpers import tiny_config

from kdlib.export import KEY_TAG, flatten_config, to_mlflow
from kdlib.store import Store
from kdlib.study import run_grid


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A store with two finished runs (no KD, KD) and one failed record, exported once to a fresh tracking URI:
    (client, experiment id, {key: record}, what to_mlflow returned, the store, the URI)."""
    mlflow = pytest.importorskip("mlflow")
    import torch

    tmp = tmp_path_factory.mktemp("export")
    with pytest.MonkeyPatch.context() as mp:
        if importlib.util.find_spec("sqlalchemy") is not None:
            uri = f"sqlite:///{tmp / 'mlflow.db'}"
        else:  # mlflow-skinny: the file store, which MLflow 3 only opens when asked to
            mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = (tmp / "mlruns").as_uri()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            df = run_grid([tiny_config(fraction=0.5), tiny_config(fraction=0.5, alpha=0.5)], tmp / "store",
                          device="cpu", progress=False)
        finally:
            torch.set_num_threads(threads)
        assert (df.status == "done").all(), df.error.tolist()
        store = Store(tmp / "store")
        failed = tiny_config(fraction=0.3)
        store.put("runs", failed.key(), {"status": "failed", "config": failed, "error": "RuntimeError: boom"})
        result = to_mlflow(store, uri)
        client = mlflow.tracking.MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name("kdlib").experiment_id
        records = {r["key"]: r for r in store.records("runs") if r["status"] == "done"}
        yield client, exp, records, result, store, uri


def _runs(client, exp):
    return {r.data.tags[KEY_TAG]: r for r in client.search_runs([exp])}


def test_first_export_logs_every_finished_run(exported):
    _, _, records, result, _, _ = exported
    assert result["logged"] == len(records) == 2


def test_failed_record_is_left_out(exported):
    assert exported[3]["left_out"] == 1


def test_one_mlflow_run_per_record_tagged_with_its_key(exported):
    client, exp, records, *_ = exported
    assert sorted(_runs(client, exp)) == sorted(records)


def test_second_export_logs_nothing_new(exported):
    client, exp, records, _, store, uri = exported
    again = to_mlflow(store, uri)
    assert (again["logged"], len(client.search_runs([exp]))) == (0, len(records))


def test_config_is_flattened_into_parameters(exported):
    client, exp, records, *_ = exported
    key, rec = next(iter(records.items()))
    assert _runs(client, exp)[key].data.params == flatten_config(rec["config"])


def test_final_and_best_accuracy_are_metrics(exported):
    client, exp, records, *_ = exported
    key, rec = next(iter(records.items()))
    m = _runs(client, exp)[key].data.metrics
    assert (m["final_acc"], m["best_acc"]) == pytest.approx((rec["result"]["final_acc"], rec["result"]["best_acc"]))


def test_curve_is_the_test_acc_history(exported):
    client, exp, records, *_ = exported
    key, rec = next(iter(records.items()))
    history = client.get_metric_history(_runs(client, exp)[key].info.run_id, "test_acc")
    assert sorted((h.step, h.value) for h in history) == [tuple(c) for c in rec["result"]["curve"]]


def test_teacher_accuracy_is_logged_for_the_kd_run(exported):
    client, exp, records, *_ = exported
    key = next(k for k, r in records.items() if r["config"]["alpha"] > 0)
    assert _runs(client, exp)[key].data.metrics["teacher_acc"] == pytest.approx(records[key]["teacher_acc"])


def test_flatten_config_joins_nested_names_with_dots():
    assert flatten_config({"a": 1, "train": {"lr": 0.1, "milestones": (0.5, 0.75)}}) == {
        "a": "1", "train.lr": "0.1", "train.milestones": "[0.5, 0.75]"}


def test_without_mlflow_the_error_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    with pytest.raises(ImportError, match=r"kdlib\[mlflow\]"):
        to_mlflow(tmp_path / "store", "sqlite:///x.db")
