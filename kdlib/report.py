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


def _md(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return "\n".join(lines + ["| " + " | ".join(str(v) for v in r) + " |" for r in rows]) + "\n"


def _mean_sd(x: pd.Series) -> str:
    x = x.dropna()
    if not len(x):
        return "-"
    return f"{x.mean():.2f} ± {x.std():.2f}" if len(x) > 1 else f"{x.mean():.2f}"


def verdict_markdown(verdicts: pd.DataFrame) -> str:
    """The claims notebook's ``verdicts.csv`` as a markdown table: one row per claim and context, the verdict in
    bold, cells holding / failing / inconclusive, the same-device view (when the table has it), seeds (and the seeds
    a cell needs), the devices of the runs (and how many cells pair runs from different devices) and the deciding
    cells."""
    def n(v: object) -> str:
        return "-" if pd.isna(v) else str(int(v))

    def text(r: pd.Series, col: str) -> str:
        v = r.get(col)
        return "" if v is None or pd.isna(v) else str(v)

    same = "verdict_same_device" in verdicts
    rows = []
    for _, r in verdicts.iterrows():
        context = ", ".join(str(r[c]) for c in ("dataset", "model", "teacher", "budget", "notes")
                            if c in r and not pd.isna(r[c]) and str(r[c]))
        seeds = "-" if pd.isna(r.get("seeds")) else str(r.get("seeds"))
        if text(r, "seeds_needed"):
            seeds += f" ({n(r['seeds_needed'])} needed)"
        devices = text(r, "devices")
        if devices and not pd.isna(r.get("mixed_device_cells")) and int(r["mixed_device_cells"]):
            devices += f" ({n(r['mixed_device_cells'])} cells across devices)"
        row = [r["claim"], context or "no runs", f"**{r['verdict']}**",
               f"{n(r.get('cells_holds'))}/{n(r.get('cells_fails'))}/{n(r.get('cells_inconclusive'))}"]
        if same:
            row.append(f"{text(r, 'verdict_same_device')} {text(r, 'cells_same_device')}".strip() or "-")
        row += [seeds, devices.replace("|", "/"), text(r, "deciding_cells").replace("|", "/")]
        rows.append(row)
    header = ["claim", "context", "verdict", "cells holds/fails/inconclusive"]
    header += ["same device only"] if same else []
    return _md(rows, header + ["seeds", "devices", "deciding cells"])


def _device(row: Mapping) -> str:
    """A run's device for a table: its name (``kdlib.claims.device_label``) where recorded, else its kind (cpu,
    cuda)."""
    from .claims import device_label

    name = row.get("runtime.device_name")
    if isinstance(name, str) and name.strip():
        return device_label(row)
    kind = row.get("runtime.device")
    return str(kind).split(":")[0] if isinstance(kind, str) else ""


def method_markdown(runs: pd.DataFrame, cells: pd.DataFrame, fraction: float, alpha: float = 0.5) -> str:
    """Every method at one kept ``fraction``, sorted by its KD accuracy: accuracy without KD and with KD at
    ``alpha`` (mean ± sd over seeds), and the claims notebook's cells (``verdict_cells.csv`` rows already chosen for
    one context) for KD's gain and for random + KD minus the method + KD, each with its 90% interval and verdict,
    and the devices the method's runs ran on (names where recorded).
    ``runs``: one setting's runs (``claims.runs_table`` filtered by the caller to one teacher, noise level...)."""
    at = runs[np.isclose(runs["fraction"], fraction)]
    mine = cells[np.isclose(cells["fraction"].astype(float), fraction)]

    def cell(claim: str, method: str) -> tuple[str, str]:
        c = mine[(mine["claim"] == claim) & (mine["method"] == method)]
        if not len(c):
            return "-", ""
        c = c.iloc[0]
        ci = "" if pd.isna(c["ci_lo"]) else f" [{c['ci_lo']:+.2f}, {c['ci_hi']:+.2f}]"
        return f"{c['mean']:+.2f}{ci}", str(c["verdict"])

    rows = []
    for method, g in at.groupby("method"):
        no, kd = g[g["alpha"] == 0]["final_acc"], g[np.isclose(g["alpha"], alpha)]["final_acc"]
        gain, gain_v = cell("kd_improves", method)
        diff, diff_v = ("(reference)", "") if method == "random" else cell("random_matches", method)
        devices = ", ".join(sorted({_device(r) for r in g.to_dict("records")} - {""}))
        rows.append((kd.mean() if len(kd) else -np.inf,
                     [method, _mean_sd(no), _mean_sd(kd), gain, gain_v, diff, diff_v, f"{len(no)}/{len(kd)}",
                      devices]))
    rows = [r for _, r in sorted(rows, key=lambda t: -t[0])]
    return _md(rows, ["method", "no KD (%)", f"KD, alpha {alpha:g} (%)", "KD gain, points [90% CI]", "verdict",
                      "random+KD minus method+KD [90% CI]", "verdict", "seeds (no KD/KD)", "device"])
