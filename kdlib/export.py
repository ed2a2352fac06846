"""Exports a store's run records to MLflow (the optional ``mlflow`` extra): ``to_mlflow(store, tracking_uri)``.

Each finished run becomes one MLflow run, once: its store key is the tag ``kdlib.key``, and a record whose key is
already in the experiment is skipped, so a second export logs only what finished since. Parameters: the run's
config flattened with dots (``train.lr``, ``method_params.k``). Metrics: ``final_acc`` (the headline), ``best_acc``
and, where present, ``teacher_acc``; the per-epoch test accuracy as the history of ``test_acc`` and the epoch's
mean training loss as that of ``train_loss`` (step = epoch). Tags: the key, the record's ``runtime`` (the code's
commit, device, precision; not part of the key) and the torch version. Failed runs and records written under keys
that no longer name their config are not exported (a failed run recomputed later keeps its key). The key tag is
written last, so an export interrupted inside a run leaves that MLflow run unfinished and without the tag, and the
next export logs the record again.
"""
from __future__ import annotations

import os
import time
from typing import Any, Iterable, Iterator

from .store import Store

KEY_TAG = "kdlib.key"
MAX_PARAMS, MAX_METRICS, MAX_TAGS = 100, 1000, 100  # MLflow's limits for one log_batch call


def _mlflow():
    try:
        import mlflow  # noqa: F401
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ImportError("kdlib.export.to_mlflow needs MLflow, which kdlib does not require: "
                          "pip install 'kdlib[mlflow]' (or pip install mlflow)") from None
    return MlflowClient, Metric, Param, RunTag


def flatten_config(config: dict, prefix: str = "") -> dict[str, str]:
    """A nested config as flat ``{"a.b": "value"}`` strings (lists and tuples as their text, None as "None")."""
    out: dict[str, str] = {}
    for k, v in config.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_config(v, name + "."))
        else:
            out[name] = str(list(v) if isinstance(v, tuple) else v)
    return out


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _logged_keys(client: Any, experiment_id: str) -> set[str]:
    """The ``kdlib.key`` tags of every run already in the experiment (all pages)."""
    keys: set[str] = set()
    token = None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        keys.update(r.data.tags[KEY_TAG] for r in page if KEY_TAG in r.data.tags)
        token = page.token
        if not token:
            return keys


def _run_name(cfg: dict) -> str:
    return (f"{cfg.get('dataset')} {cfg.get('model')} {cfg.get('method')} f={cfg.get('fraction')} "
            f"a={cfg.get('alpha')} s={cfg.get('seed')}")


def _exportable(records: Iterable[dict]) -> list[dict]:
    from .study import current

    return [r for r in records if r.get("status") == "done" and current(r)]


def to_mlflow(store: Store | str | os.PathLike, tracking_uri: str, experiment: str = "kdlib") -> dict[str, int]:
    """Logs every finished, current run record of ``store`` to the MLflow ``experiment`` (created when missing) at
    ``tracking_uri`` (``sqlite:///mlflow.db``, ``http://host:5000``, ...), each record once.
    Returns ``{"logged": n, "already": m, "left_out": k}`` (left out: failed, unfinished or stale records)."""
    MlflowClient, Metric, Param, RunTag = _mlflow()
    if not isinstance(tracking_uri, str) or not tracking_uri:
        raise ValueError(f"tracking_uri must be a non-empty string (say 'sqlite:///mlflow.db'), got {tracking_uri!r}")
    store = store if isinstance(store, Store) else Store(store)
    records = store.records("runs")
    todo = _exportable(records)
    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    exp_id = found.experiment_id if found is not None else client.create_experiment(experiment)
    done = _logged_keys(client, exp_id)
    logged = 0
    for rec in todo:
        if rec["key"] in done:
            continue
        cfg, res = rec["config"], rec.get("result") or {}
        now = int(time.time() * 1000)
        tags = {"kdlib.store": str(store.root), "torch": str(rec.get("torch"))}
        tags.update({f"runtime.{k}": str(v) for k, v in (rec.get("runtime") or {}).items()})
        tags[KEY_TAG] = rec["key"]
        metrics = [Metric(k, float(v), now, 0) for k, v in
                   (("final_acc", res.get("final_acc")), ("best_acc", res.get("best_acc")),
                    ("teacher_acc", rec.get("teacher_acc"))) if v is not None]
        metrics += [Metric("test_acc", float(acc), now, int(epoch)) for epoch, acc in res.get("curve") or []]
        metrics += [Metric("train_loss", float(loss), now, i + 1) for i, loss in enumerate(res.get("losses") or [])]
        rid = client.create_run(exp_id, run_name=_run_name(cfg)).info.run_id
        params = [Param(k, v) for k, v in flatten_config(cfg).items()]
        tag_list = [RunTag(k, v) for k, v in tags.items()]  # the key tag last: an interrupted run is redone
        for part in _chunks(params, MAX_PARAMS):
            client.log_batch(rid, params=part)
        for part in _chunks(metrics, MAX_METRICS):
            client.log_batch(rid, metrics=part)
        for part in _chunks(tag_list, MAX_TAGS):
            client.log_batch(rid, tags=part)
        client.set_terminated(rid, "FINISHED")
        done.add(rec["key"])
        logged += 1
    return {"logged": logged, "already": len(todo) - logged, "left_out": len(records) - len(todo)}
