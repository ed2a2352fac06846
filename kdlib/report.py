"""Tables from run records: means with spread over seeds, and paired KD-vs-no-KD differences."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats


def summarize(df: pd.DataFrame, by: Sequence[str], value: str = "final_acc") -> pd.DataFrame:
    """Mean, standard deviation, n and a 95% t-interval half-width of ``value`` over seeds, per ``by`` group."""
    g = df[df["status"] == "done"].groupby(list(by), dropna=False)[value]
    out = g.agg(mean="mean", std="std", n="count").reset_index()
    t = stats.t.ppf(0.975, np.maximum(out["n"] - 1, 1))
    out["ci95"] = np.where(out["n"] > 1, t * out["std"] / np.sqrt(out["n"]), np.nan)
    return out


def paired_difference(df: pd.DataFrame, by: Sequence[str], column: str, treated: object, control: object,
                      value: str = "final_acc") -> pd.DataFrame:
    """Per ``by`` group, the mean over seeds of ``value[treated] - value[control]`` paired by seed, with a
    95% t-interval and the share of seeds where the treated arm wins."""
    done = df[df["status"] == "done"]
    wide = done.pivot_table(index=list(by) + ["seed"], columns=column, values=value, aggfunc="mean")
    if treated not in wide.columns or control not in wide.columns:
        raise ValueError(f"{column!r} needs both {treated!r} and {control!r} in the table; has {list(wide.columns)}")
    diff = (wide[treated] - wide[control]).dropna().rename("diff").reset_index()
    out = diff.groupby(list(by))["diff"].agg(mean_diff="mean", std="std", n="count",
                                             wins=lambda d: float((d > 0).mean())).reset_index()
    t = stats.t.ppf(0.975, np.maximum(out["n"] - 1, 1))
    out["ci95"] = np.where(out["n"] > 1, t * out["std"] / np.sqrt(out["n"]), np.nan)
    return out


def save_table(df: pd.DataFrame, out_dir: str | Path, name: str) -> Path:
    """Writes ``<out_dir>/<name>.csv`` and returns its path."""
    path = Path(out_dir) / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path
