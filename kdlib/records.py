"""Run records as table rows, without importing torch: ``flatten`` one record, ``load_records`` a whole store
(``kdlib.study`` re-exports both)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from .store import Store, canonical

if TYPE_CHECKING:  # pandas is imported where tables are built, so a grid worker never loads it
    import pandas as pd


def flatten(record: dict, requested: Optional[Any] = None) -> dict:
    """One table row: the requested config's fields (method, teacher... as asked), then results."""
    cfg = canonical(requested) if requested is not None else record["config"]
    row = {k: v for k, v in cfg.items() if not isinstance(v, (dict, list))}
    row.update({f"train.{k}": v for k, v in (cfg.get("train") or {}).items() if not isinstance(v, list)})
    row["key"] = record["key"]
    row["status"] = record["status"]
    res = record.get("result") or {}
    for k in ("final_acc", "best_acc", "best_epoch", "wall_seconds", "train_seconds", "images_per_sec", "epochs", "steps"):
        row[k] = res.get(k)
    for k in ("n_train", "n_full", "noisy_kept", "teacher_acc", "error"):
        row[k] = record.get(k)
    row["kd"] = cfg.get("alpha", 0) > 0
    for k, v in (record.get("runtime") or {}).items():  # what ran (precision, device, CPU, threads): not keyed
        row[f"runtime.{k}"] = v
    return row


def load_records(store: Store | str) -> pd.DataFrame:
    """Every run record in the store as a table (one row per distinct run)."""
    import pandas as pd

    store = store if isinstance(store, Store) else Store(store)
    return pd.DataFrame([flatten(rec) for rec in store.records("runs")])
