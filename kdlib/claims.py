"""Verdicts on the paper's claims from any store: holds, fails or inconclusive, each with its evidence.

``runs_table(store)`` reads every finished run. A claim is tested within a *context*: runs that agree on every
setting the claim does not vary (dataset, student model, training recipe and budget rule, label noise, ... and,
for KD runs, the teacher, its data fraction and recipe, tau and the KD weight), so no verdict ever pools unlike
runs. Within a context a claim compares *cells* (a method at a kept fraction, say) by a paired difference over
seeds, and each cell is decided by one of three tests, all the exact paired sign-flip permutation test
(``kdlib.stats.sign_flip_test``) against a threshold:

- ``greater`` (the claim: difference > 0): fails when the difference is shown < 0, or when it is shown to lie
  within +-``margin`` (two one-sided tests: equivalence, no gain worth the name, checked *before* the gain: a
  significant gain below the margin fails); otherwise holds when it is shown > 0;
- ``at_least`` ("matches or beats", difference >= -margin): fails when shown < -margin, holds when shown > -margin;
- ``at_most`` ("does not help", difference <= +margin): fails when shown > +margin, holds when shown < +margin.

"Shown" means the Benjamini-Hochberg q-value is below ``q``. The family (``FAMILY``) is one claim: all its cells
across all its contexts, each of the three tests corrected over that family; cells whose seeds cannot reach ``q``
at all are left out of it (whether they can depends on n alone: Tarone's screening). The t-interval (at 1 - 2q), the
t-test's and Wilcoxon's p and a percentile bootstrap interval are shown beside each cell and decide nothing: at 3
seeds the bootstrap has 10 distinct resamples and is narrower than the t-interval. The sign-flip test's smallest
one-sided p is ``1 / 2^n``, so a cell needs at least ``stats.seeds_needed(q)`` paired seeds (5 at q = 0.05) to be
decidable at all; with fewer it is inconclusive, and says so. A cell with fewer than ``min_seeds`` paired seeds is
inconclusive by rule. A context's verdict is "holds" when every cell holds, "fails" when any cell fails, else
"inconclusive"; the verdict names the deciding cells (the failing ones, or the weakest holding one, or the
undecided ones), the devices its runs ran on and how many cells pair runs from different devices
(``verdicts(..., same_device=True)`` keeps only same-device seed pairs). KD contexts that share one no-KD
baseline (the alphas of an alpha grid) say so: their verdicts are not independent pieces of evidence.

The claims (``CLAIMS``), after Ben-Baruch et al. (ICML 2025); all but claim 5 use teachers trained on the full data:
1. ``kd_improves``: KD improves every pruning method at every kept fraction f < 1 (KD minus no KD, same seed);
2. ``random_matches``: with KD, random pruning matches or beats every other method at every f < 1;
3. ``alpha_grows``: the best alpha grows as f shrinks (per seed: the slope of the argmax alpha against -ln f);
4. ``small_teacher``: at small f (<= ``small_fraction``) a larger teacher does not help (larger minus smaller);
5. ``teacher_data``: the student improves as the teacher's data fraction f_t grows (largest minus smallest f_t
   is > 0, and no step up in f_t loses more than the margin);
6. ``half_beats_full``: KD on a random ``half_fraction`` (50%) matches or beats the full data without KD.
The theory toy's statements (``theory_verdicts``) are checked on ``kdlib.theory`` regimes.

``frontier`` answers "how far can I prune?": per method, the smallest kept fraction whose accuracy is within
``tolerance`` points of the full-data model without KD (at that f and every larger one), without KD and with KD
at the best alpha, with the range the seeds allow, and the data saved that KD buys.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from . import stats
from .registry import Registry
from .validate import check_fraction, check_positive

VERDICTS = ("holds", "fails", "inconclusive")
KINDS = ("greater", "at_least", "at_most")
RESULT_COLUMNS = {"key", "status", "final_acc", "best_acc", "best_epoch", "wall_seconds", "train_seconds",
                  "images_per_sec", "epochs", "steps", "n_train", "n_full", "noisy_kept", "teacher_acc", "error", "kd",
                  "n_test", "data_source"}
# columns that never define a setting: what the claims vary, provenance, and speed-only knobs
RUN_AXES = ("method", "fraction", "alpha", "seed", "score_seed", "alpha_rule", "workers", "eval_batch_size",
            "proxy_recipe",  # the scoring proxy belongs to the method (random has none): see prepare
            "data.root", "data.workers", "data.eval_batch_size", "teacher_checkpoint.path",  # not keyed
            "run_device")  # where a run ran (``device_label``): evidence, not a setting
METHOD_PARAMS = "method_params."  # flattened method hyperparameters: part of the method, like its proxy
KD_SIDE = ("teacher", "teacher_fraction", "teacher_recipe", "teacher_checkpoint", "teacher_checkpoint.sha256", "tau",
           "kd_loss")


@dataclass(frozen=True)
class ClaimConfig:
    """How verdicts are reached. ``margin`` (points) is what "matches" tolerates and what a gain must beat to
    count; ``q`` the false discovery rate (Benjamini-Hochberg, one family per claim across all its contexts);
    ``min_seeds`` the fewest paired seeds a cell needs (the exact sign-flip test needs 5 to reach 0.05 anyway);
    ``small_fraction`` the largest f claim 4 calls small; ``half_fraction`` claim 6's subset; ``tolerance``
    (points) the frontier's distance to the full-data model; ``value`` the accuracy column; ``n_boot`` the
    bootstrap resamples of the (displayed, not deciding) percentile interval; ``n_perm`` the random sign patterns of
    the sign-flip test above ``kdlib.stats.EXACT_MAX`` values (exact below)."""

    margin: float = 0.5
    q: float = 0.05
    min_seeds: int = 3
    small_fraction: float = 0.2
    half_fraction: float = 0.5
    tolerance: float = 1.0
    value: str = "final_acc"
    n_boot: int = 2000
    n_perm: int = 20000
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.margin, bool) or not isinstance(self.margin, (int, float)) or not self.margin >= 0:
            raise ValueError(f"margin must be a number >= 0 (points), got {self.margin!r}")
        if isinstance(self.q, bool) or not isinstance(self.q, (int, float)) or not 0 < self.q < 0.5:
            raise ValueError(f"q must lie in (0, 0.5), got {self.q!r}")
        check_positive(self.min_seeds, "min_seeds", integer=True)
        if self.min_seeds < 2:
            raise ValueError(f"min_seeds must be at least 2 (a paired test needs two seeds), got {self.min_seeds!r}")
        check_fraction(self.small_fraction, "small_fraction")
        check_fraction(self.half_fraction, "half_fraction")
        check_positive(self.tolerance, "tolerance")
        check_positive(self.n_boot, "n_boot", integer=True)
        check_positive(self.n_perm, "n_perm", integer=True)
        if self.value not in ("final_acc", "best_acc"):
            raise ValueError(f"unknown value {self.value!r}; allowed values for 'value': final_acc, best_acc")


# ------------------------------------------------------------------------------------------------ run tables
def _recipe(cfg: Optional[Mapping]) -> Optional[str]:
    """A short hash naming a nested recipe (teacher_train, proxy), or None."""
    if not cfg:
        return None
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:8]


def runs_table(store) -> pd.DataFrame:
    """Every finished run of a store (folder or ``Store``) as one row: config columns, ``train.*``, recipe hashes
    of the teacher's training and the scoring proxy, and the results."""
    from .records import flatten
    from .store import Store
    from .study import current

    st = store if isinstance(store, Store) else Store(store)
    rows = []
    for rec in st.records("runs"):
        if rec.get("status") != "done" or not current(rec):  # a record under an earlier kdlib's key is left out
            continue
        row = flatten(rec)
        cfg = rec.get("config") or {}
        row["teacher_recipe"] = _recipe(cfg.get("teacher_train")) if (cfg.get("alpha") or 0) > 0 else None
        row["proxy_recipe"] = _recipe(cfg.get("proxy"))
        rows.append(row)
    return pd.DataFrame(rows)


def _blank(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _key(values: Iterable) -> str:
    return json.dumps(["" if _blank(v) else v for v in values], default=str)


def prepare(df: pd.DataFrame, value: str = "final_acc") -> pd.DataFrame:
    """Finished runs with ``value`` and three context keys: ``setting`` (all a no-KD baseline shares with its KD
    runs), ``kd_setting`` (teacher, its data fraction and recipe, tau, KD loss) and ``kd_weight`` ('alpha=0.5', or
    'alpha: auto' for runs whose alpha came from a rule)."""
    d = df.copy()
    if "status" in d:
        d = d[d["status"] == "done"]
    d = d[d[value].notna()].copy() if value in d else d.iloc[:0].copy()
    for col, default in (("alpha", 0.0), ("method", "random"), ("fraction", 1.0), ("seed", 0)):
        if col not in d:
            d[col] = default
    d["alpha"] = d["alpha"].astype(float)
    d["fraction"] = d["fraction"].astype(float)
    d.loc[d["fraction"] >= 1.0, "method"] = "random"  # every method keeps everything at f = 1
    d["run_device"] = [device_label(r) for r in d.to_dict("records")] if len(d) else []
    if "proxy_recipe" in d:  # a method scored by two proxy recipes is two methods, named apart
        n_recipes = d.groupby("method")["proxy_recipe"].transform(lambda s: s.dropna().nunique())
        several = n_recipes > 1
        d.loc[several, "method"] = d.loc[several, "method"] + " [proxy " + d.loc[several, "proxy_recipe"].fillna("none") + "]"
    params = sorted(c for c in d.columns if c.startswith(METHOD_PARAMS))
    if params and len(d):  # a method's hyperparameters belong to it (CCS's strata, DeepFool's overshoot), not to
        # the setting; a method run with two sets of them is two methods, named apart
        recipe = pd.Series([_key(r) for r in d[params].itertuples(index=False)], index=d.index)
        several = recipe.groupby(d["method"]).transform("nunique") > 1
        d.loc[several, "method"] = d.loc[several, "method"] + " [params " + recipe[several].map(
            lambda k: hashlib.sha256(k.encode()).hexdigest()[:6]) + "]"
    # what ran (runtime.*: device, threads, versions) does not define a setting, except the resolved precision
    setting_cols = sorted(c for c in d.columns if c not in RESULT_COLUMNS and c not in RUN_AXES
                          and not c.startswith(METHOD_PARAMS) and c not in KD_SIDE
                          and c not in ("setting", "kd_setting", "kd_weight")
                          and (not c.startswith("runtime.") or c == "runtime.precision"))
    kd_cols = [c for c in KD_SIDE if c in d.columns]
    d["setting"] = [_key(r) for r in d[setting_cols].itertuples(index=False)] if len(d) else []
    d["kd_setting"] = [_key(r) for r in d[kd_cols].itertuples(index=False)] if len(d) and kd_cols else ""
    auto = d["alpha_rule"].notna() if "alpha_rule" in d else pd.Series(False, index=d.index)
    d["kd_weight"] = np.where(d["alpha"] <= 0, "no KD",
                              np.where(auto, "alpha: auto", d["alpha"].map(lambda a: f"alpha={a:g}")))
    d.attrs["setting_columns"] = setting_cols
    return d


def describe_context(rows: pd.DataFrame, extra: Sequence[str] = ()) -> dict:
    """Names what a context fixes: dataset, student model, teacher(s), budget rule, seeds and anything unusual."""
    def one(col: str, fmt: Callable = str) -> str:
        if col not in rows:
            return ""
        vals = [v for v in rows[col].drop_duplicates() if not _blank(v)]
        return ", ".join(sorted(fmt(v) for v in vals))

    budget = one("train.budget") or "epochs"
    epochs = one("train.epochs", lambda v: f"{v:g}")
    min_steps = one("train.min_steps", lambda v: f"{v:g}")
    rule = f"{budget} ({epochs} epochs" + (f", at least {min_steps} steps" if min_steps not in ("", "0") else "") + ")"
    out = {"dataset": one("dataset"), "model": one("model"), "teacher": one("teacher") or "none",
           "budget": rule, "setting_id": hashlib.sha256(rows["setting"].iloc[0].encode()).hexdigest()[:6]}
    notes = []
    if "teacher_fraction" in rows:
        kd_ft = rows.loc[rows["alpha"] > 0, "teacher_fraction"].dropna() if "alpha" in rows else rows["teacher_fraction"]
        if len(kd_ft) and (kd_ft != 1.0).any():
            notes.append("teacher on f_t = " + ", ".join(f"{v:g}" for v in sorted(kd_ft.unique())))
    if "label_noise" in rows and rows["label_noise"].fillna(0).max() > 0:
        notes.append(f"label noise {one('label_noise', lambda v: f'{v:g}')}")
    if "class_balanced" in rows and rows["class_balanced"].fillna(False).astype(bool).any():
        notes.append("class-balanced")
    notes += list(extra)
    out["notes"] = "; ".join(notes)
    return out


# ------------------------------------------------------------------------------------------------ deciding
@dataclass
class Cell:
    """One comparison: ``diff`` (seed -> difference, points or alpha units) tested by ``kind``; ``devices`` (seed ->
    (devices of one arm's runs, devices of the other's), each a '; '-joined name list) when known."""

    name: str
    kind: str
    diff: pd.Series
    detail: dict
    devices: Optional[pd.DataFrame] = None

    def same_device(self) -> "Cell":
        """The cell restricted to the seeds whose runs, in both arms, ran on one and the same device."""
        if self.devices is None:
            return self
        dev = self.devices.reindex(self.diff.index)
        same = (dev["a"] == dev["b"]) & ~dev["a"].fillna(";").str.contains(";")
        return replace(self, diff=self.diff[same.to_numpy()], devices=dev[same.to_numpy()])


def device_label(row: Mapping) -> str:
    """A run's device for the evidence: its ``runtime.device_name`` (CPU model or GPU), else ``runtime.device``,
    without trademark signs and trailing 'Processor'/'CPU' ('Intel(R) Xeon(R) Processor' -> 'Intel Xeon')."""
    name = row.get("runtime.device_name")
    name = row.get("runtime.device") if _blank(name) or not str(name).strip() else name
    if _blank(name) or not str(name).strip():
        return "unknown"
    text = str(name).replace("(R)", "").replace("(TM)", "").replace("(r)", "")
    for tail in (" Processor", " CPU"):
        text = text[: -len(tail)] if text.endswith(tail) else text
    return " ".join(text.split())


def _seed_devices(rows: pd.DataFrame) -> pd.Series:
    """Per seed: the devices its runs ran on, '; '-joined."""
    if "run_device" not in rows:
        return pd.Series(dtype=object)
    return rows.groupby("seed")["run_device"].agg(lambda s: "; ".join(sorted(set(s.astype(str)))))


def _paired(a: pd.DataFrame, b: pd.DataFrame, value: str) -> pd.Series:
    """``a - b`` of ``value`` paired by seed (seeds present in both)."""
    x = a.groupby("seed")[value].mean()
    y = b.groupby("seed")[value].mean()
    return (x - y).dropna()


def _pair(name: str, kind: str, a: pd.DataFrame, b: pd.DataFrame, value: str, detail: dict) -> Cell:
    """The cell ``a - b`` paired by seed, with the devices each arm's runs of every seed ran on."""
    diff = _paired(a, b, value)
    dev = pd.DataFrame({"a": _seed_devices(a), "b": _seed_devices(b)}).reindex(diff.index)
    return Cell(name, kind, diff, detail, dev if "run_device" in a else None)


def _device_summary(cell: Cell) -> tuple[str, int]:
    """(the devices of a cell's paired runs, '; '-joined; the number of seeds whose two arms ran on different
    devices, or one arm on several)."""
    if cell.devices is None or not len(cell.diff):
        return "", 0
    dev = cell.devices.reindex(cell.diff.index)
    names = sorted({n for col in ("a", "b") for v in dev[col].dropna() for n in str(v).split("; ")})
    mixed = int(((dev["a"] != dev["b"]) | dev["a"].fillna(";").str.contains(";")).sum())
    return "; ".join(names), mixed


def test_cells(cells: Sequence[Cell], cfg: ClaimConfig) -> pd.DataFrame:
    """One row per cell with its uncorrected tests: ``p_hold``, ``p_fail`` and (kind ``greater`` with a margin)
    ``p_equiv`` from the exact sign-flip test (``kdlib.stats.sign_flip_test``), the smallest p its ``n`` can reach
    (``p_min``), the mean, sd and t-interval at 1 - 2q, the t-test's and Wilcoxon's p and the percentile bootstrap
    interval (shown, never deciding), and the devices of its runs (``devices``, ``mixed_device_seeds``)."""
    rows = []
    conf = 1 - 2 * cfg.q  # a two-sided interval at 1 - 2q mirrors each one-sided test at level q
    m = cfg.margin
    for c in cells:
        if c.kind not in KINDS:
            raise ValueError(f"unknown test kind {c.kind!r}; allowed values for 'kind': {', '.join(KINDS)}")
        x = c.diff.dropna().to_numpy(dtype=float)
        hold_at = {"greater": 0.0, "at_least": -m, "at_most": m}[c.kind]
        t = stats.paired_test(x, hold_at, confidence=conf, n_boot=cfg.n_boot, seed=cfg.seed)

        def exact(threshold: float, side: str) -> float:
            return stats.sign_flip_test(x, threshold, side, n_perm=cfg.n_perm, seed=cfg.seed)

        devices, mixed = _device_summary(c)
        row = {"cell": c.name, "kind": c.kind, **c.detail, "n": t["n"], "mean": t["mean"], "sd": t["sd"],
               "ci_lo": t["ci_lo"], "ci_hi": t["ci_hi"], "boot_lo": t["boot_lo"], "boot_hi": t["boot_hi"],
               "devices": devices, "mixed_device_seeds": mixed}
        hold_side, fail_side = ("less", "greater") if c.kind == "at_most" else ("greater", "less")
        row["p_hold"], row["p_fail"] = exact(hold_at, hold_side), exact(hold_at, fail_side)
        row["p_t_hold"] = t[f"p_{hold_side}"]
        row["p_wilcoxon"] = t[f"p_wilcoxon_{hold_side}"]
        row["p_equiv"] = math.nan
        if c.kind == "greater" and m > 0 and t["n"] >= 1:  # two one-sided tests: the difference lies within +-m
            row["p_equiv"] = max(exact(-m, "greater"), exact(m, "less"))
        row["p_min"] = stats.smallest_p(t["n"])
        if t["n"] < cfg.min_seeds:
            row["p_hold"] = row["p_fail"] = row["p_equiv"] = math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def judge(tested: pd.DataFrame, cfg: ClaimConfig) -> pd.DataFrame:
    """q-values and verdicts for ``test_cells`` rows: the rows passed are one Benjamini-Hochberg family (each of the
    three tests, hold, fail and equivalence, corrected over them; a cell whose ``n`` cannot reach ``q`` is left
    out, ``in_family`` False). Per cell, in this order: fewer than
    ``min_seeds`` seeds: inconclusive; the opposite side shown (q_fail < q): fails; for kind ``greater`` with a
    margin, the difference shown within +-margin (q_equiv < q): fails as equivalent (a significant gain below the
    margin is no gain worth the name); the claimed side shown (q_hold < q): holds; else inconclusive, saying when
    ``n`` seeds cannot reach q at all."""
    out = tested.copy()
    if out.empty:
        return out
    # a cell whose n cannot reach q at all (smallest exact p >= q) is left out of the family: that depends on n
    # alone, not on the data (Tarone's screening for discrete tests), so the family stays valid and is not diluted
    testable = out["p_min"].to_numpy(dtype=float) < cfg.q
    out["in_family"] = testable & np.isfinite(out["p_hold"].to_numpy(dtype=float))
    for fam in ("hold", "fail", "equiv"):
        p = out[f"p_{fam}"].to_numpy(dtype=float)
        out[f"q_{fam}"] = stats.bh_adjust(np.where(testable, p, np.nan))
    verdicts, why = [], []
    for r in out.itertuples(index=False):
        if r.n < cfg.min_seeds:
            verdicts.append("inconclusive")
            why.append(f"too few seeds ({r.n} < {cfg.min_seeds})")
        elif r.q_fail < cfg.q:
            verdicts.append("fails")
            why.append(f"opposite side, q={r.q_fail:.3g}")
        elif r.q_equiv < cfg.q:
            verdicts.append("fails")
            why.append(f"equivalent: within +-{cfg.margin:g}, q={r.q_equiv:.3g}")
        elif r.q_hold < cfg.q:
            verdicts.append("holds")
            why.append(f"q={r.q_hold:.3g}")
        else:
            verdicts.append("inconclusive")
            why.append(f"{r.n} seeds cannot reach q < {cfg.q:g} (smallest exact p {r.p_min:.3g})"
                       if r.p_min >= cfg.q else "neither side significant")
    out["verdict"], out["why"] = verdicts, why
    return out


def decide(cells: Sequence[Cell], cfg: ClaimConfig) -> pd.DataFrame:
    """``judge(test_cells(cells))``: the cells passed are one Benjamini-Hochberg family."""
    return judge(test_cells(cells, cfg), cfg)


def _summarise(claim: str, cells: pd.DataFrame, ctx: dict, cfg: ClaimConfig, unit: str = "points") -> dict:
    """A verdict row from decided cells: the verdict, cell counts, seeds, the seeds a cell needs to be decidable
    (``seeds_needed``), the Benjamini-Hochberg family, the devices and the deciding cells."""
    counts = {v: int((cells["verdict"] == v).sum()) for v in VERDICTS}
    if counts["fails"]:
        verdict, deciding = "fails", cells[cells["verdict"] == "fails"]
    elif counts["holds"] == len(cells):
        verdict = "holds"
        deciding = cells.loc[[cells["q_hold"].astype(float).idxmax()]]  # the weakest cell
    else:
        verdict, deciding = "inconclusive", cells[cells["verdict"] == "inconclusive"]

    def fmt(r) -> str:
        ci = "" if pd.isna(r["ci_lo"]) else f" [{r['ci_lo']:+.2f}, {r['ci_hi']:+.2f}]"  # one seed: no interval
        n_mixed = int(r.get("mixed_device_seeds") or 0)
        mixed = f", {n_mixed} of its seed pairs across devices" if n_mixed else ""
        return f"{r['cell']}: {r['mean']:+.2f}{ci} (n={r['n']}, {r['why']}{mixed})"

    shown = [fmt(r) for _, r in deciding.head(4).iterrows()]
    more = f"; ... {len(deciding) - 4} more" if len(deciding) > 4 else ""
    seeds = cells["n"]
    listed = cells["devices"].dropna() if "devices" in cells else []
    devices = sorted({n for v in listed for n in str(v).split("; ") if n})
    mixed = int((cells["mixed_device_seeds"] > 0).sum()) if "mixed_device_seeds" in cells else 0
    return {"claim": claim, "statement": CLAIMS.get(claim).statement, **ctx, "verdict": verdict,
            "cells": len(cells), **{f"cells_{v}": counts[v] for v in VERDICTS},
            "seeds": f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}",
            "seeds_needed": max(cfg.min_seeds, stats.seeds_needed(cfg.q)),
            "family": str(cells["family"].iloc[0]) if "family" in cells else "",
            "devices": "; ".join(devices), "mixed_device_cells": mixed,
            "deciding_cells": "; ".join(shown) + more, "margin": cfg.margin, "q": cfg.q, "unit": unit}


# ------------------------------------------------------------------------------------------------ the claims
@dataclass(frozen=True)
class Claim:
    """A claim's statement and the function that builds its cells per context: ``cells(prepared, cfg)`` yields
    (context rows, list of Cell, extra notes)."""

    statement: str
    cells: Callable[[pd.DataFrame, ClaimConfig], Iterable[tuple[pd.DataFrame, list, list]]]
    unit: str = "points"
    margin: Optional[float] = None  # overrides ClaimConfig.margin (claims not measured in accuracy points)


CLAIMS: Registry[Claim] = Registry("claim", "claim")


def _label(v: float) -> str:
    return f"{v:g}"


def _full_teacher(d: pd.DataFrame) -> pd.DataFrame:
    """The paper's claims 1-4 and 6 are about a teacher trained on the full data: runs with a teacher on a fraction
    f_t < 1 are claim 5's (no-KD runs are kept)."""
    if "teacher_fraction" not in d:
        return d
    return d[(d["alpha"] <= 0) | d["teacher_fraction"].isna() | (d["teacher_fraction"] >= 1.0)]


def _kd_contexts(d: pd.DataFrame):
    kd = _full_teacher(d)
    kd = kd[kd["alpha"] > 0]
    return kd.groupby(["setting", "kd_setting", "kd_weight"], sort=True)


def _cells_kd_improves(d: pd.DataFrame, cfg: ClaimConfig):
    base = d[d["alpha"] == 0]
    groups = list(_kd_contexts(d))
    # KD contexts of one setting (the alphas of an alpha grid, say) compare with the same no-KD runs: their
    # verdicts are not independent pieces of evidence, and the row says so
    sharing = pd.Series([k[0] for k, kd in groups if (kd["fraction"] < 1).any()]).value_counts()
    for (setting, _, weight), kd in groups:
        kd = kd[kd["fraction"] < 1]
        b = base[base["setting"] == setting]
        cells = []
        for (method, f), g in kd.groupby(["method", "fraction"], sort=True):
            ref = b[(b["method"] == method) & (b["fraction"] == f)]
            if len(ref):
                cells.append(_pair(f"{method} f={_label(f)}", "greater", g, ref, cfg.value,
                                   {"method": method, "fraction": f, "kd_weight": weight,
                                    "alpha": float(g["alpha"].iloc[0]) if weight != "alpha: auto" else math.nan,
                                    "teacher": ", ".join(sorted(g["teacher"].dropna().astype(str).unique()))
                                    if "teacher" in g else ""}))
        if cells:
            others = int(sharing.get(setting, 1)) - 1
            shared = [f"no-KD baseline shared with {others} other KD context(s)"] if others > 0 else []
            yield pd.concat([kd, b]), cells, [f"KD at {weight}"] + shared


def _cells_random_matches(d: pd.DataFrame, cfg: ClaimConfig):
    for _, kd in _kd_contexts(d):
        kd = kd[kd["fraction"] < 1]
        rnd = kd[kd["method"] == "random"]
        cells = []
        for (method, f), g in kd[kd["method"] != "random"].groupby(["method", "fraction"], sort=True):
            ref = rnd[rnd["fraction"] == f]
            if len(ref):
                cells.append(_pair(f"random - {method} f={_label(f)}", "at_least", ref, g, cfg.value,
                                   {"method": method, "fraction": f}))
        if cells:
            yield kd, cells, [f"KD at {kd['kd_weight'].iloc[0]}; difference = random minus the method"]


def _best_alpha_slope(g: pd.DataFrame, value: str) -> tuple[pd.Series, float]:
    """Per seed: the slope of the argmax alpha against -ln f (positive: the best alpha grows as f shrinks); and the
    share of (seed, f) whose best alpha is the grid's largest (a grid that may stop too early)."""
    out, edge = {}, []
    for seed, s in g.groupby("seed"):
        wide = s.pivot_table(index="fraction", columns="alpha", values=value, aggfunc="mean").dropna()
        if len(wide) < 2 or wide.shape[1] < 3:
            continue
        alphas = wide.columns.to_numpy(dtype=float)
        best = alphas[np.argmax(wide.to_numpy(), axis=1)]
        edge += list(best == alphas.max())
        out[seed] = float(np.polyfit(-np.log(wide.index.to_numpy(dtype=float)), best, 1)[0])
    return pd.Series(out, dtype=float), float(np.mean(edge)) if edge else math.nan


def _cells_alpha_grows(d: pd.DataFrame, cfg: ClaimConfig):
    fixed = _full_teacher(d)
    fixed = fixed[fixed["kd_weight"] != "alpha: auto"]  # a rule-chosen alpha is not a grid to take the argmax over
    base = fixed[fixed["alpha"] == 0]
    for (setting, _), kd in fixed[fixed["alpha"] > 0].groupby(["setting", "kd_setting"], sort=True):
        if kd["alpha"].nunique() < 2:
            continue
        b = base[base["setting"] == setting]
        cells = []
        for method in sorted(kd.loc[kd["fraction"] < 1, "method"].unique()):
            # f = 1 keeps everything: its runs (method 'random') belong to every method's curve
            mine = lambda x: x[(x["method"] == method) | (x["fraction"] == 1.0)]  # noqa: E731
            g = pd.concat([mine(kd), mine(b)])
            g = g[g["fraction"].isin(mine(kd)["fraction"].unique())]
            if g["fraction"].nunique() >= 2:
                slope, edge = _best_alpha_slope(g, cfg.value)
                name = method + (f" (best alpha at the grid's top in {edge:.0%} of seed x f)" if edge > 0.5 else "")
                dev = _seed_devices(g).reindex(slope.index)
                cells.append(Cell(name, "greater", slope, {"method": method, "best_at_grid_top": edge,
                                  "fractions": ",".join(_label(f) for f in sorted(g["fraction"].unique()))},
                                  pd.DataFrame({"a": dev, "b": dev})))
        if cells:
            yield pd.concat([kd, b]), cells, ["difference = per-seed slope of the argmax alpha against -ln f "
                                              "(alpha per unit ln f); the margin applies in these units"]


def teacher_size(name: str) -> int:
    """Parameters of a model (built for 10 classes, 3 channels: only the order of sizes matters here)."""
    from .models import build_model, count_parameters

    return count_parameters(build_model(name, 10, 3))


def _cells_small_teacher(d: pd.DataFrame, cfg: ClaimConfig):
    kd = _full_teacher(d)
    kd = kd[(kd["alpha"] > 0) & (kd["fraction"] < 1) & (kd["fraction"] <= cfg.small_fraction)]
    if kd.empty or "teacher" not in kd:
        return
    other = [c for c in ("teacher_fraction", "teacher_recipe", "tau", "kd_loss") if c in kd]
    kd = kd.assign(_ctx=[_key(r) for r in kd[other].itertuples(index=False)])
    for _, g in kd.groupby(["setting", "_ctx", "kd_weight"], sort=True):
        teachers = sorted(g["teacher"].dropna().unique(), key=teacher_size)
        if len(teachers) < 2:
            continue
        cells = []
        for (method, f), h in g.groupby(["method", "fraction"], sort=True):
            for i, small in enumerate(teachers):
                for large in teachers[i + 1:]:
                    a, b = h[h["teacher"] == large], h[h["teacher"] == small]
                    if len(a) and len(b):
                        cells.append(_pair(f"{method} f={_label(f)}: {large} - {small}", "at_most",
                                           a, b, cfg.value, {"method": method, "fraction": f,
                                                                     "larger": large, "smaller": small}))
        if cells:
            sizes = ", ".join(f"{t} ({teacher_size(t) / 1e3:.0f}k)" for t in teachers)
            yield g, cells, [f"teachers by size: {sizes}; difference = larger minus smaller teacher"]


def _cells_teacher_data(d: pd.DataFrame, cfg: ClaimConfig):
    kd = d[(d["alpha"] > 0) & (d["fraction"] < 1)]
    if kd.empty or "teacher_fraction" not in kd:
        return
    other = [c for c in ("teacher", "teacher_recipe", "tau", "kd_loss") if c in kd]
    kd = kd.assign(_ctx=[_key(r) for r in kd[other].itertuples(index=False)])
    for _, g in kd.groupby(["setting", "_ctx", "kd_weight"], sort=True):
        fts = sorted(g["teacher_fraction"].dropna().unique())
        if len(fts) < 2:
            continue
        cells = []
        for (method, f), h in g.groupby(["method", "fraction"], sort=True):
            at = {ft: h[h["teacher_fraction"] == ft] for ft in fts}
            cells.append(_pair(f"{method} f={_label(f)}: f_t {_label(fts[-1])} - {_label(fts[0])}", "greater",
                               at[fts[-1]], at[fts[0]], cfg.value, {"method": method, "fraction": f}))
            for lo, hi in zip(fts, fts[1:]):
                cells.append(_pair(f"{method} f={_label(f)}: f_t {_label(hi)} - {_label(lo)}", "at_least",
                                   at[hi], at[lo], cfg.value, {"method": method, "fraction": f}))
        yield g, cells, []  # describe_context names the teacher data fractions


def _cells_half_beats_full(d: pd.DataFrame, cfg: ClaimConfig):
    full = d[(d["alpha"] == 0) & (d["fraction"] == 1.0)]
    kd = _full_teacher(d)
    kd = kd[(kd["alpha"] > 0) & (kd["method"] == "random") & np.isclose(kd["fraction"], cfg.half_fraction)]
    for setting, g in kd.groupby("setting", sort=True):
        ref = full[full["setting"] == setting]
        if ref.empty:
            continue
        cells = [_pair(f"random f={_label(cfg.half_fraction)}, KD at {w}, T={h['teacher'].iloc[0]} - full no KD",
                       "at_least", h, ref, cfg.value, {"kd_weight": w, "teacher": h["teacher"].iloc[0]})
                 for (w, _), h in g.groupby(["kd_weight", "kd_setting"], sort=True)]
        yield pd.concat([g, ref]), cells, ["difference = pruned with KD minus full data without KD"]


for _name, _statement, _fn, _unit, _margin in (
        ("kd_improves", "KD improves every pruning method at every kept fraction f < 1", _cells_kd_improves, "points", None),
        ("random_matches", "with KD, random pruning matches or beats every other method at every f < 1",
         _cells_random_matches, "points", None),
        ("alpha_grows", "the best alpha grows as the kept fraction f shrinks", _cells_alpha_grows, "alpha per ln f", 0.0),
        ("small_teacher", "at small f a larger teacher does not help", _cells_small_teacher, "points", None),
        ("teacher_data", "the student improves as the teacher's data fraction f_t grows", _cells_teacher_data,
         "points", None),
        ("half_beats_full", "KD on a random half of the data matches or beats the full data without KD",
         _cells_half_beats_full, "points", None)):
    CLAIMS.add(_name, Claim(_statement, _fn, _unit, _margin))


def verdicts(df: pd.DataFrame, cfg: Optional[ClaimConfig] = None, claims: Optional[Sequence[str]] = None,
             same_device: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(verdict table: one row per claim and context; cell table: every decided cell) from a run table
    (``runs_table`` or ``kdlib.study.load_records``). A claim no context can test gets one inconclusive row.

    Each claim is one Benjamini-Hochberg family: its cells across all its contexts (``FAMILY``). With
    ``same_device`` every cell keeps only the seeds whose paired runs ran on one device (a cell left with none is
    inconclusive, n = 0): the same-device view of the evidence."""
    cfg = cfg or ClaimConfig()
    d = prepare(df, cfg.value)
    rows, all_cells = [], []
    for name in claims or CLAIMS_ORDER:
        claim = CLAIMS.get(name)
        ccfg = cfg if claim.margin is None else replace(cfg, margin=claim.margin)
        parts = []
        for ctx_rows, cells, notes in claim.cells(d, cfg):
            cells = [c for c in cells if len(c.diff.dropna())]  # a comparison with no common seed is no cell
            if same_device:
                cells = [c.same_device() for c in cells]
            if cells:
                parts.append((describe_context(ctx_rows, notes), test_cells(cells, ccfg)))
        if not parts:
            rows.append({"claim": name, "statement": claim.statement, "verdict": "inconclusive", "cells": 0,
                         "deciding_cells": "no runs in this store can test it", "margin": ccfg.margin, "q": cfg.q,
                         "unit": claim.unit})
            continue
        family = pd.concat([t.assign(_part=i) for i, (_, t) in enumerate(parts)], ignore_index=True)
        family = judge(family, ccfg)
        family["family"] = f"{name}: {int(family['in_family'].sum())} testable cells in {len(parts)} context(s)"
        for i, (ctx, _) in enumerate(parts):
            decided = family[family["_part"] == i].drop(columns="_part").reset_index(drop=True)
            rows.append(_summarise(name, decided, ctx, ccfg, claim.unit))
            context = f"[{ctx['setting_id']}] {ctx['dataset']}, {ctx['model']}, T={ctx['teacher']}, {ctx['notes']}"
            all_cells.append(decided.assign(claim=name, context=context[:70], context_notes=ctx["notes"],
                                            **{k: ctx[k] for k in ("dataset", "model", "setting_id")}))
    cells = pd.concat(all_cells, ignore_index=True) if all_cells else pd.DataFrame()
    return pd.DataFrame(rows), cells


def setting_ids(runs: pd.DataFrame, value: str = "final_acc") -> set[str]:
    """The ``setting_id`` of every context the runs of ``runs`` (a ``runs_table`` subset) belong to."""
    d = prepare(runs, value)
    return {hashlib.sha256(k.encode()).hexdigest()[:6] for k in d["setting"].unique()}


KD_GAIN_COLUMNS = ["setting_id", "teacher", "kd_weight", "alpha", "context_notes", "method", "fraction", "mean_diff",
                   "ci_lo", "ci_hi", "n", "p", "q", "verdict", "why", "devices", "mixed_device_seeds", "family"]


def kd_gain_table(cells: pd.DataFrame, settings: Optional[Iterable[str]] = None) -> pd.DataFrame:
    """KD's gain over no KD per context, method and kept fraction, from the cell table of ``verdicts``: claim 1's
    cells as decided (``p``/``q``: the exact one-sided sign-flip test of gain > 0 and its Benjamini-Hochberg q in
    the claim's family; ``ci_lo``/``ci_hi``: the t-interval at 1 - 2q), so a table or heatmap drawn from it says
    what the verdicts say. ``settings``: keep only these ``setting_id`` values."""
    if cells.empty or "claim" not in cells:
        return pd.DataFrame(columns=KD_GAIN_COLUMNS)
    c = cells[cells["claim"] == "kd_improves"].rename(columns={"mean": "mean_diff", "p_hold": "p", "q_hold": "q"})
    if settings is not None:
        c = c[c["setting_id"].isin(set(settings))]
    return c.reindex(columns=KD_GAIN_COLUMNS).reset_index(drop=True)


FAMILY = ("one Benjamini-Hochberg family per claim: all of the claim's cells across all its contexts (the hold, "
          "fail and equivalence tests each corrected over that family), less the cells whose number of seeds cannot "
          "reach q at all")


def with_same_device(table: pd.DataFrame, same: pd.DataFrame) -> pd.DataFrame:
    """``table`` (``verdicts``) with the same-device view (``verdicts(..., same_device=True)``) beside it:
    ``verdict_same_device`` and ``cells_same_device`` (holds/fails/inconclusive), matched by claim and context."""
    keys = [k for k in ("claim", "setting_id", "teacher", "notes") if k in table and k in same]
    s = same.copy()
    s["cells_same_device"] = [f"{_n(r.get('cells_holds'))}/{_n(r.get('cells_fails'))}/"
                              f"{_n(r.get('cells_inconclusive'))}" for _, r in s.iterrows()]
    s = s[keys + ["verdict", "cells_same_device"]].rename(columns={"verdict": "verdict_same_device"})
    fill = {k: "" for k in keys}
    t, s = table.fillna(fill).reset_index(drop=True), s.fillna(fill).reset_index(drop=True)
    if len(t) == len(s) and t[keys].astype(str).equals(s[keys].astype(str)):  # the same contexts in the same order
        return t.assign(verdict_same_device=s["verdict_same_device"], cells_same_device=s["cells_same_device"])
    return t.merge(s.drop_duplicates(keys), on=keys, how="left")  # never duplicates a row of ``table``


def _n(v: object) -> str:
    return "-" if _blank(v) else str(int(v))


CLAIMS_ORDER = ("kd_improves", "random_matches", "alpha_grows", "small_teacher", "teacher_data", "half_beats_full")


# ------------------------------------------------------------------------------------------------ theory toy
def theory_verdicts(base, regimes: Mapping[str, Mapping], fs: Sequence[float], f_ts: Sequence[float],
                    f_student: float, draws: int, seed: int = 0, cfg: Optional[ClaimConfig] = None,
                    tol: float = 1e-3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The theory toy's statements per regime (``kdlib.theory.regime_map``): alpha* grows as f shrinks and the
    student's risk at alpha* falls as f_t grows (tolerance checks on the design-averaged closed form: no step rises
    by more than ``tol``), and KD lowers the risk at every f < f_t: alpha* is chosen on ``draws`` held-out designs
    and the paired test runs over ``draws`` other designs of risk(no KD) - risk(alpha*) (the sign-flip test, one
    BH family over every regime's cells; risks are relative to the no-KD risk, so the margin is ignored). Chosen
    on the designs it is tested on, the gain could not be negative."""
    from . import theory as th

    cfg = cfg or ClaimConfig()
    tcfg = replace(cfg, margin=0.0)
    summary, opt, _ = th.regime_map(base, regimes, fs, f_ts, f_student, draws, seed, tol)
    rows, all_cells, parts = [], [], []
    for r in summary.itertuples(index=False):
        toy = replace(th.regime_toy(base, regimes[r.regime]), pruning="random")
        ctx = {"dataset": "theory toy", "model": f"ridge student (lam {r.lam:.3g})",
               "teacher": f"ridge teacher (lam_t {r.lam_t:.3g}, f_t {toy.f_t:g})", "budget": "closed form",
               "notes": f"regime: {r.regime}", "seeds": str(draws)}
        a_small, a_large = r.alpha_opt_small_f, r.alpha_opt_large_f
        for name, ok, text in (
                ("theory_alpha_grows", r.alpha_opt_non_increasing,
                 f"alpha* {a_small:.3f} at f={min(fs):g}, {a_large:.3f} at f={max(fs):g}; largest rise as f grows "
                 f"{r.alpha_opt_max_rise:.3g} (tolerance {tol:g})"),
                ("theory_teacher_data", r.student_risk_non_increasing_in_f_t,
                 f"largest relative rise of the student's risk at alpha* as f_t grows: {r.student_risk_max_rise:.3g} "
                 f"(tolerance {tol:g}; f = {f_student:g})")):
            rows.append({"claim": name, "statement": THEORY_STATEMENTS[name], **ctx,
                         "verdict": "holds" if ok else "fails", "cells": 1, "cells_holds": int(ok),
                         "cells_fails": int(not ok), "cells_inconclusive": 0, "deciding_cells": text, "margin": 0.0,
                         "q": math.nan, "unit": "tolerance check"})
        cells = [theory_kd_cell(f, *th.held_out_evaluation(replace(toy, f=f), draws, seed))
                 for f in fs if f < toy.f_t]  # at f = f_t the teacher adds nothing: KD is exactly no KD
        if cells:
            parts.append((r.regime, ctx, test_cells(cells, tcfg)))
    if parts:  # one family: the statement's cells across every regime
        family = pd.concat([t.assign(_part=i) for i, (_, _, t) in enumerate(parts)], ignore_index=True)
        family = judge(family, tcfg)
        family["family"] = (f"theory_kd_improves: {int(family['in_family'].sum())} testable cells in "
                            f"{len(parts)} regime(s)")
        for i, (regime, ctx, _) in enumerate(parts):
            decided = family[family["_part"] == i].drop(columns="_part").reset_index(drop=True)
            rows.append(_summarise("theory_kd_improves", decided, ctx | {"setting_id": ""}, tcfg,
                                   "relative risk reduction"))
            all_cells.append(decided.assign(claim="theory_kd_improves", regime=regime, context=regime))
    return pd.DataFrame(rows), pd.concat(all_cells, ignore_index=True) if all_cells else pd.DataFrame()


def theory_kd_cell(f: float, alpha: float, gain: np.ndarray) -> Cell:
    """The theory toy's KD cell at kept fraction ``f``: the per-draw relative risk reduction at ``alpha``, chosen
    on held-out draws (``kdlib.theory.held_out_kd_gain``), tested > 0."""
    return Cell(f"f={_label(f)} (alpha* {alpha:.2f}, chosen on held-out draws)", "greater", pd.Series(gain),
                {"fraction": f, "alpha_selected": alpha})


THEORY_STATEMENTS = {
    "theory_alpha_grows": "theory toy: the optimal alpha grows as f shrinks",
    "theory_teacher_data": "theory toy: the student's risk at alpha* falls as the teacher's f_t grows",
    "theory_kd_improves": "theory toy: KD at alpha* lowers the risk at every f below the teacher's f_t",
}
for _name, _statement in THEORY_STATEMENTS.items():
    CLAIMS.add(_name, Claim(_statement, lambda d, cfg: iter(()), "theory"))


# ------------------------------------------------------------------------------------------------ frontier
def _smallest_within(fr: Sequence[float], ok: Sequence[bool]) -> float:
    """The smallest f such that it and every larger f are ok (NaN when the largest is not)."""
    best = math.nan
    for f, good in sorted(zip(fr, ok), reverse=True):
        if not good:
            break
        best = f
    return best


def frontier(df: pd.DataFrame, cfg: Optional[ClaimConfig] = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """How far can I prune? Per context (setting and teacher) and method: the smallest f within ``tolerance``
    points of the full-data no-KD model, without KD and with KD at the best alpha of each f (highest seed mean),
    judged on the paired difference to the full-data model of the same seed: ``f_*`` by its mean, ``f_*_safe`` by
    its 95% t-interval's lower bound, ``f_*_hopeful`` by its upper bound; ``saved_by_kd`` = f_no_kd - f_kd.
    Returns (frontier table, per-f curve table)."""
    cfg = cfg or ClaimConfig()
    d = prepare(df, cfg.value)
    full = d[(d["alpha"] == 0) & (d["fraction"] == 1.0)]
    rows, curves = [], []
    kd_groups = {k: g for k, g in d[d["alpha"] > 0].groupby(["setting", "kd_setting"], sort=True)}
    for setting, ref in full.groupby("setting", sort=True):
        runs = d[d["setting"] == setting]
        # a KD setting tried at one fraction only (a teacher-size study, say) has no frontier of its own
        kd_keys = [k for k in kd_groups if k[0] == setting and kd_groups[k]["fraction"].nunique() > 1]
        kd_keys = kd_keys or [(setting, None)]
        for _, kd_setting in kd_keys:
            kd = kd_groups.get((setting, kd_setting), d.iloc[:0])
            methods = sorted(set(runs.loc[runs["fraction"] < 1, "method"]) | {"random"})
            for method in methods:
                curve = []
                for f in sorted(runs["fraction"].unique()):
                    sel = (runs["fraction"] == f) & ((runs["method"] == method) | (f == 1.0))
                    no_kd = runs[sel & (runs["alpha"] == 0)]
                    k = kd[(kd["fraction"] == f) & ((kd["method"] == method) | (f == 1.0))]
                    for arm, rows_f, alpha in (("no KD", no_kd, 0.0), ("KD", *(_best(k, cfg.value)))):
                        if rows_f is None or rows_f.empty:
                            continue
                        t = stats.paired_test(_paired(rows_f, ref, cfg.value).to_numpy(), n_boot=0)
                        curve.append({"method": method, "fraction": f, "arm": arm, "alpha": alpha,
                                      "acc": rows_f[cfg.value].mean(), "gap": t["mean"], "gap_lo": t["ci_lo"],
                                      "gap_hi": t["ci_hi"], "n": t["n"]})
                c = pd.DataFrame(curve)
                if c.empty or (c["fraction"] < 1).sum() == 0:
                    continue
                ctx = describe_context(pd.concat([ref, kd]) if len(kd) else ref)
                row = {**ctx, "method": method, "tolerance": cfg.tolerance,
                       "full_no_kd_acc": ref[cfg.value].mean(), "seeds": int(c["n"].min())}
                for arm, tag in (("no KD", "no_kd"), ("KD", "kd")):
                    a = c[c["arm"] == arm]
                    tol = -cfg.tolerance
                    row[f"f_{tag}"] = _smallest_within(a["fraction"], a["gap"] >= tol)
                    row[f"f_{tag}_safe"] = _smallest_within(a["fraction"], a["gap_lo"].fillna(-np.inf) >= tol)
                    row[f"f_{tag}_hopeful"] = _smallest_within(a["fraction"], a["gap_hi"].fillna(np.inf) >= tol)
                    if arm == "KD" and not a.empty:
                        at = a[a["fraction"] == row["f_kd"]]
                        row["kd_alpha_at_f"] = at["alpha"].iloc[0] if len(at) else math.nan
                row["saved_by_kd"] = row["f_no_kd"] - row["f_kd"]
                rows.append(row)
                curves.append(c.assign(setting_id=ctx["setting_id"], teacher=ctx["teacher"]))
    table = pd.DataFrame(rows)
    return table, (pd.concat(curves, ignore_index=True) if curves else pd.DataFrame())


def _best(k: pd.DataFrame, value: str) -> tuple[Optional[pd.DataFrame], float]:
    """The KD runs at the alpha with the highest seed mean (and that alpha)."""
    if k.empty:
        return None, math.nan
    means = k.groupby("alpha")[value].mean()
    a = float(means.idxmax())
    return k[k["alpha"] == a], a

