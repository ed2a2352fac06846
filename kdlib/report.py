"""Tables from run records: means with spread over seeds, and paired KD-vs-no-KD differences."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from . import stats

from .models import build_model, count_parameters
from .study import Study


def summarize(df: pd.DataFrame, by: Sequence[str], value: str = "final_acc") -> pd.DataFrame:
    """Mean, standard deviation, n and a 95% t-interval half-width of ``value`` over seeds, per ``by`` group."""
    return stats.describe(df[df["status"] == "done"].groupby(list(by), dropna=False)[value])


def paired_difference(df: pd.DataFrame, by: Sequence[str], column: str, treated: object, control: object,
                      value: str = "final_acc") -> pd.DataFrame:
    """Per ``by`` group, the mean over seeds of ``value[treated] - value[control]`` paired by seed, with a
    95% t-interval half-width ``ci95``, the share of seeds where the treated arm wins (``wins``), the two-sided
    paired t-test's ``p`` and its Benjamini-Hochberg ``q`` across the table's groups (``kdlib.stats``)."""
    done = df[df["status"] == "done"]
    wide = done.pivot_table(index=list(by) + ["seed"], columns=column, values=value, aggfunc="mean")
    if treated not in wide.columns or control not in wide.columns:
        raise ValueError(f"{column!r} needs both {treated!r} and {control!r} in the table; has {list(wide.columns)}")
    diff = (wide[treated] - wide[control]).dropna().rename("diff").reset_index()
    return _diff_table(diff, list(by))


def paired_against(df: pd.DataFrame, control: Mapping[str, object], by: Sequence[str], value: str = "final_acc",
                   per_seed: bool = False) -> pd.DataFrame:
    """Every finished row that is not the control, minus the control row of its seed (the control: the rows whose
    columns equal ``control``, e.g. full data without KD), summarised per ``by`` group like ``paired_difference``;
    with ``per_seed`` the paired differences themselves (``by``, seed, ``diff``)."""
    done = df[df["status"] == "done"]
    is_control = np.logical_and.reduce([done[k] == v for k, v in control.items()])
    base = done[is_control].groupby("seed")[value].mean().rename("baseline")
    rest = done[~is_control].merge(base, left_on="seed", right_index=True, how="inner")
    rest = rest.assign(diff=rest[value] - rest["baseline"])
    if per_seed:
        return rest[[*by, "seed", "diff"]].reset_index(drop=True)
    return _diff_table(rest, list(by))


def save_table(df: pd.DataFrame, out_dir: str | Path, name: str) -> Path:
    """Writes ``<out_dir>/<name>.csv`` and returns its path."""
    path = Path(out_dir) / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path


def gain_over_baseline(df: pd.DataFrame, keys: Sequence[str], by: Sequence[str], value: str = "final_acc"
                       ) -> pd.DataFrame:
    """KD rows (alpha > 0) minus the no-KD student (alpha = 0) with the same ``keys`` and seed, summarised per
    ``keys`` + ``by`` (e.g. keys fraction, by teacher): mean_diff, std, n, 95% t-interval half-width ``ci95``,
    ``wins`` (share of seeds where KD is higher), the paired t-test's ``p`` and its Benjamini-Hochberg ``q``."""
    done = df[df["status"] == "done"]
    keys, by = list(keys), [b for b in by if b not in keys]
    base = done[done["alpha"] == 0].groupby(keys + ["seed"])[value].mean().rename("baseline").reset_index()
    kd = done[done["alpha"] > 0].merge(base, on=keys + ["seed"], how="inner")
    kd["diff"] = kd[value] - kd["baseline"]
    return _diff_table(kd, keys + by)


def _diff_table(diff: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per ``by`` group of paired differences (column ``diff``): mean_diff, std, n, ci95, wins, p (two-sided paired
    t-test) and q (Benjamini-Hochberg over the groups)."""
    g = diff.groupby(by)["diff"]
    out = stats.describe(g).rename(columns={"mean": "mean_diff"})
    out["wins"] = g.apply(lambda d: float((d > 0).mean())).to_numpy()
    tests = [stats.paired_test(d, n_boot=0) for _, d in g]
    out["p"] = [t["p_two_sided"] for t in tests]
    out["q"] = stats.bh_adjust(out["p"])
    return out[[*by, "mean_diff", "std", "n", "ci95", "wins", "p", "q"]]


def teacher_sizes(names: Sequence[str], num_classes: int, in_channels: int) -> pd.DataFrame:
    """Parameter count of each model in ``names`` (as built for the dataset's classes and channels)."""
    return pd.DataFrame([{"teacher": n, "teacher_params": count_parameters(build_model(n, num_classes, in_channels))}
                         for n in names])


def noisy_share(df: pd.DataFrame) -> pd.DataFrame:
    """From run records with label noise: one row per (method, fraction, seed) subset with ``share`` =
    noisy_kept / n_train (the subset does not depend on alpha or the teacher, so duplicates are dropped)."""
    done = df[(df["status"] == "done") & df["noisy_kept"].notna()]
    cols = ["method", "fraction", "seed", "label_noise", "noise_seed"]
    out = done.drop_duplicates(cols)[cols + ["n_train", "noisy_kept"]].copy()
    out["share"] = out["noisy_kept"] / out["n_train"]
    return out.sort_values(cols).reset_index(drop=True)


def subset_noisy_share(configs: Sequence, store, data_root: str | None = None, device: str = "auto",
                       progress: bool = False) -> pd.DataFrame:
    """``noisy_share`` without training students: each config's kept subset (its method's scores are computed
    once and cached in ``store``) against the corrupted-label mask. One row per requested method and distinct
    subset (at f = 1 every method keeps everything)."""
    study = Study(store, device, data_root, progress)
    rows, seen = [], set()
    for cfg in configs:
        r = cfg.resolved()
        ident = (cfg.method, r.dataset, r.method, r.fraction, r.seed, r.score_seed, r.class_balanced,
                 r.label_noise, r.noise_seed, repr(r.proxy))
        if ident in seen:
            continue
        seen.add(ident)
        idx = study.subset(r)
        _, mask = study.labels(r)
        rows.append({"dataset": r.dataset, "method": cfg.method, "fraction": r.fraction, "seed": r.seed,
                     "label_noise": r.label_noise, "noise_seed": r.noise_seed, "n_train": len(idx),
                     "noisy_kept": int(mask[idx].sum()), "share": float(mask[idx].mean())})
    return pd.DataFrame(rows)
