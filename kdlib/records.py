"""Run records as table rows: ``flatten`` one record, importing neither torch nor pandas (``kdlib.study`` re-exports
it; ``kdlib.study.load_records`` reads a whole store, keeping the records that are current under today's keys)."""
from __future__ import annotations

from typing import Any, Optional

from .store import canonical


def flatten(record: dict, requested: Optional[Any] = None) -> dict:
    """One table row: the requested config's fields (method, teacher... as asked), then results."""
    cfg = canonical(requested) if requested is not None else record["config"]
    row = {k: v for k, v in cfg.items() if not isinstance(v, (dict, list))}
    row.update({f"train.{k}": v for k, v in (cfg.get("train") or {}).items() if not isinstance(v, list)})
    for name in ("method_params", "kd_params", "data", "teacher_checkpoint"):  # one column per entry
        row.update({f"{name}.{k}": v for k, v in (cfg.get(name) or {}).items() if not isinstance(v, (dict, list))})
    row["key"] = record["key"]
    row["status"] = record["status"]
    res = record.get("result") or {}
    for k in ("final_acc", "best_acc", "best_epoch", "wall_seconds", "train_seconds", "images_per_sec", "epochs", "steps"):
        row[k] = res.get(k)
    for k in ("n_train", "n_full", "noisy_kept", "teacher_acc", "error"):
        row[k] = record.get(k)
    row.update({k: record[k] for k in ("n_test", "data_source") if k in record})  # streamed folders' records
    row["kd"] = cfg.get("alpha", 0) > 0
    for k, v in (record.get("runtime") or {}).items():  # what ran (precision, device, CPU, threads): not keyed
        row[f"runtime.{k}"] = v
    return row
