"""A rule alpha*(f) for the KD weight as a function of the kept fraction: fit, save, load, evaluate, resolve.

``alpha_vs_factor.ipynb`` measures the best alpha per fraction (``best_alpha``), fits a rule (``fit_alpha_rule``:
``alpha(f) = clip(a + b ln f, 0, 1)`` by weighted least squares, or a logistic in ``ln f``) and saves it in the
study's store (``save_rules``: ``<store>/alpha_rules/<dataset>.json``, one rule per ``<model>/<method>`` plus a
pooled ``<model>/*``). A run config may then say ``alpha: "auto"``: ``resolve_auto_alpha`` replaces it, before the
``RunConfig`` is built, with the rule's value at the run's fraction (looked up for its dataset, student model and
method, then the pooled rule of that model), or with ``DEFAULT_RULE`` when the store holds no fit. The run keeps
the numeric alpha and names the rule in ``RunConfig.alpha_rule``.

``DEFAULT_RULE`` is a heuristic, not a fit: ``alpha(f) = min(0.9, 0.5 - 0.4 log10 f)`` (0.5 on the full data,
0.62 at f=0.5, 0.78 at f=0.2, 0.9 from f=0.1 down). It encodes the paper's qualitative observation that the
optimal KD weight grows as the kept fraction shrinks (Ben-Baruch et al., ICML 2025, Sec. 5: "a crucial connection
between the pruning factor and the optimal knowledge distillation weight"); the 0.9 cap keeps some weight on the
labels. Its numbers are ours, chosen to be a sensible start, not values from the paper.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from .store import Store
from .validate import check_fields, check_fraction

if TYPE_CHECKING:  # imported where tables are built: a grid worker that resolves alphas never loads pandas
    import pandas as pd

AUTO = "auto"
RULE_KINDS = ("loglinear", "logistic", "default")
POOLED = "*"  # method name of the rule fitted on every method together
RULES_KIND = "alpha_rules"  # the store folder


@dataclass(frozen=True)
class AlphaRule:
    """``alpha(f)`` clipped to [0, 1]. ``kind``: 'loglinear' (``a + b ln f``), 'logistic'
    (``1 / (1 + exp(-(a + b ln f)))``) or 'default' (``min(cap, a + b log10 f)``, the heuristic).
    ``dataset``/``model``/``method`` say what it was fitted on; ``fit`` holds the points and residuals."""

    kind: str
    a: float
    b: float
    cap: float = 1.0
    dataset: Optional[str] = None
    model: Optional[str] = None
    method: Optional[str] = None
    fit: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in RULE_KINDS:
            raise ValueError(f"unknown alpha rule kind {self.kind!r}; allowed values for 'kind': {', '.join(RULE_KINDS)}")

    def evaluate(self, fraction: float | Sequence[float] | np.ndarray) -> np.ndarray:
        """The rule's alpha at each fraction (in (0, 1]), in [0, 1]."""
        f = np.asarray(fraction, dtype=float)
        if np.any((f <= 0) | (f > 1)):
            raise ValueError(f"fraction must lie in (0, 1] (the fraction of data kept), got {fraction!r}")
        if self.kind == "loglinear":
            raw = self.a + self.b * np.log(f)
        elif self.kind == "logistic":
            raw = 1.0 / (1.0 + np.exp(-(self.a + self.b * np.log(f))))
        else:
            raw = self.a + self.b * np.log10(f)
        return np.clip(raw, 0.0, min(1.0, self.cap))

    def __call__(self, fraction: float) -> float:
        """alpha at one fraction, rounded to 3 decimals (so equal requests give equal run keys)."""
        return round(float(self.evaluate(float(fraction))), 3)

    @property
    def label(self) -> str:
        """Names the rule in a run config (``RunConfig.alpha_rule``) and in legends."""
        if self.kind == "default":
            return f"default: min({self.cap:g}, {self.a:g} {_sign(self.b)} {abs(self.b):g} log10 f)"
        what = "/".join(str(x) for x in (self.dataset, self.model, self.method))
        lin = f"{self.a:.4f} {_sign(self.b)} {abs(self.b):.4f} ln f"
        formula = lin if self.kind == "loglinear" else f"logistic({lin})"
        return f"fit {what}: {formula}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AlphaRule":
        check_fields(d, cls, "alpha rule field(s)")
        return cls(**dict(d))


def _sign(b: float) -> str:
    return "-" if b < 0 else "+"


DEFAULT_RULE = AlphaRule("default", a=0.5, b=-0.4, cap=0.9)


# --------------------------------------------------------------------------------------------- best alpha
def best_alpha(df: pd.DataFrame, by: Sequence[str] = ("method", "fraction"), value: str = "final_acc",
               n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per ``by`` group, the alpha with the highest mean ``value`` over seeds and its uncertainty.

    Columns: ``best_alpha`` (argmax of the seed-mean curve), ``best_acc``, ``acc_at_0`` (alpha = 0, if run),
    ``boot_mean``/``boot_sd``/``boot_lo``/``boot_hi`` (mean, sd, 5% and 95% quantiles of the argmax over
    ``n_boot`` bootstrap resamples of the seeds), ``seed_mean``/``seed_sd`` (mean and sd of each seed's own
    argmax) and ``n_seeds``. Seeds missing an alpha are dropped from that group.
    """
    import pandas as pd

    done = df[df["status"] == "done"] if "status" in df else df
    rng = np.random.default_rng(seed)
    rows = []
    for key, g in done.groupby(list(by), sort=True):
        wide = g.pivot_table(index="seed", columns="alpha", values=value, aggfunc="mean").dropna()
        if wide.empty:
            continue
        alphas = wide.columns.to_numpy(dtype=float)
        acc = wide.to_numpy(dtype=float)
        mean = acc.mean(0)
        i = int(np.argmax(mean))
        boot = rng.integers(0, len(acc), size=(n_boot, len(acc)))
        boot_best = alphas[np.argmax(acc[boot].mean(1), axis=1)]
        seed_best = alphas[np.argmax(acc, axis=1)]
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        row.update(best_alpha=float(alphas[i]), best_acc=float(mean[i]),
                   acc_at_0=float(mean[alphas == 0.0][0]) if (alphas == 0.0).any() else np.nan,
                   boot_mean=float(boot_best.mean()), boot_sd=float(boot_best.std(ddof=0)),
                   boot_lo=float(np.quantile(boot_best, 0.05)), boot_hi=float(np.quantile(boot_best, 0.95)),
                   seed_mean=float(seed_best.mean()), seed_sd=float(seed_best.std(ddof=1)) if len(acc) > 1 else np.nan,
                   n_seeds=int(len(acc)))
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------- fitting
def fit_alpha_rule(fractions: Sequence[float], alphas: Sequence[float], sd: Optional[Sequence[float]] = None,
                   kind: str = "loglinear", sd_floor: float = 0.1, **meta: Any) -> AlphaRule:
    """Fits ``alpha(f)`` to best-alpha points by weighted least squares in ``ln f``.

    Weights are ``1 / (sd^2 + sd_floor^2)`` (``sd``: e.g. the bootstrap sd of each best alpha; ``sd_floor``, one
    alpha grid step by default, keeps a point whose seeds all agree from dominating). One distinct fraction gives
    a constant rule. ``meta`` (dataset, model, method) labels the rule.
    """
    if kind not in ("loglinear", "logistic"):
        raise ValueError(f"unknown alpha rule kind {kind!r} to fit; allowed values for 'kind': loglinear, logistic")
    f = np.asarray(fractions, dtype=float)
    y = np.asarray(alphas, dtype=float)
    if len(f) == 0 or len(f) != len(y):
        raise ValueError(f"need as many best alphas as fractions (at least one), got {len(f)} and {len(y)}")
    if np.any((f <= 0) | (f > 1)) or np.any((y < 0) | (y > 1)):
        raise ValueError("fractions must lie in (0, 1] and alphas in [0, 1]")
    s = np.zeros_like(f) if sd is None else np.nan_to_num(np.asarray(sd, dtype=float))
    w = 1.0 / (s ** 2 + sd_floor ** 2)
    x = np.log(f)
    if len(np.unique(f)) < 2:
        a, b = float(np.average(y, weights=w)), 0.0
    else:
        X = np.stack([np.ones_like(x), x], 1) * np.sqrt(w)[:, None]
        a, b = (float(v) for v in np.linalg.lstsq(X, y * np.sqrt(w), rcond=None)[0])
    if kind == "logistic":
        from scipy.optimize import least_squares

        def resid(p: np.ndarray) -> np.ndarray:
            return np.sqrt(w) * (1.0 / (1.0 + np.exp(-(p[0] + p[1] * x))) - y)

        # start from the log-linear fit: same value and slope at the data's mean ln f
        mid = float(np.clip(a + b * x.mean(), 0.05, 0.95))
        slope = b / (mid * (1 - mid))
        p0 = np.clip([math.log(mid / (1 - mid)) - slope * x.mean(), slope], -20, 20)
        a, b = (float(v) for v in least_squares(resid, p0, bounds=([-20, -20], [20, 20])).x)
    rule = AlphaRule(kind, a, b, **{k: meta.get(k) for k in ("dataset", "model", "method")})
    pred = rule.evaluate(f)
    fit = {"fractions": f.tolist(), "best_alphas": y.tolist(), "weights": w.tolist(),
           "rmse": float(np.sqrt(np.average((pred - y) ** 2, weights=w))), "fitted_at": time.time(),
           **{k: v for k, v in meta.items() if k not in ("dataset", "model", "method")}}
    return AlphaRule(kind, a, b, dataset=rule.dataset, model=rule.model, method=rule.method, fit=fit)


def fit_rules(best: pd.DataFrame, dataset: str, model: str, kind: str = "loglinear", sd: str = "boot_sd",
              pooled: bool = True, **meta: Any) -> dict[str, AlphaRule]:
    """One rule per method of a ``best_alpha`` table (columns method, fraction, best_alpha, ``sd``), plus the
    pooled rule ``'*'`` fitted on every method's points when ``pooled``. Keys are method names."""
    rules = {}
    for method, g in best.groupby("method", sort=True):
        rules[str(method)] = fit_alpha_rule(g["fraction"], g["best_alpha"], g[sd] if sd in g else None, kind,
                                            dataset=dataset, model=model, method=str(method), **meta)
    if pooled and len(rules) > 1:
        rules[POOLED] = fit_alpha_rule(best["fraction"], best["best_alpha"], best[sd] if sd in best else None,
                                       kind, dataset=dataset, model=model, method=POOLED, **meta)
    return rules


def fit_study_rules(df: pd.DataFrame, p: Mapping[str, Any]) -> tuple[pd.DataFrame, dict[str, AlphaRule]]:
    """The alpha_vs_factor study's fit for its runs ``df`` and parameters ``p`` (dataset, model, teacher, tau,
    seeds, alphas, n_boot, rule_kind): the best alpha per (method, fraction), with its gain over alpha = 0, and
    one rule per method (``fit_rules``). The notebook and ``scripts/fill_store.py`` both fit through here."""
    best = best_alpha(df, ["method", "fraction"], n_boot=p["n_boot"])
    best["gain"] = best["best_acc"] - best["acc_at_0"]
    rules = fit_rules(best, p["dataset"], p["model"], kind=p["rule_kind"], teacher=p["teacher"], tau=p["tau"],
                      seeds=list(p["seeds"]), alpha_grid=list(p["alphas"]))
    return best, rules


# --------------------------------------------------------------------------------------------- store
def _store(store: Store | str | Path) -> Store:
    return store if isinstance(store, Store) else Store(store)


def rules_path(store: Store | str | Path, dataset: str) -> Path:
    """``<store>/alpha_rules/<dataset>.json``."""
    return _store(store).path(RULES_KIND, dataset)


def save_rules(rules: Mapping[str, AlphaRule], store: Store | str | Path) -> list[Path]:
    """Merges ``rules`` into the store, keyed by dataset then ``<model>/<method>`` (a rule replaces an earlier
    one with the same key; others are kept). Returns the files written."""
    st = _store(store)
    by_dataset: dict[str, dict[str, AlphaRule]] = {}
    for name, rule in rules.items():
        if rule.dataset is None or rule.model is None:
            raise ValueError(f"rule {name!r} lacks its dataset or model; fit it with dataset= and model=")
        by_dataset.setdefault(rule.dataset, {})[f"{rule.model}/{rule.method or name}"] = rule
    paths = []
    for dataset, new in by_dataset.items():
        with st.lock(RULES_KIND, dataset):
            rec = st.get(RULES_KIND, dataset) or {}
            merged = dict(rec.get("rules", {}))
            merged.update({k: r.to_dict() for k, r in new.items()})
            st.put(RULES_KIND, dataset, {"status": "done", "dataset": dataset, "rules": merged})
        paths.append(rules_path(st, dataset))
    return paths


def load_rules(store: Store | str | Path, dataset: str) -> dict[str, AlphaRule]:
    """Every rule saved for ``dataset``, keyed ``<model>/<method>`` (empty when none)."""
    st = _store(store)
    if not st.path(RULES_KIND, dataset).exists():
        return {}
    rec = st.get(RULES_KIND, dataset) or {}
    return {k: AlphaRule.from_dict(v) for k, v in rec.get("rules", {}).items()}


def rule_for(store: Store | str | Path | None, dataset: str, model: str, method: str) -> AlphaRule:
    """The rule for a run: the fit for (dataset, model, method), else the pooled fit of (dataset, model), else
    ``DEFAULT_RULE``."""
    if store is not None:
        rules = load_rules(store, dataset)
        for k in (f"{model}/{method}", f"{model}/{POOLED}"):
            if k in rules:
                return rules[k]
    return DEFAULT_RULE


# --------------------------------------------------------------------------------------------- auto alpha
def check_alpha(value: Any) -> Any:
    """``value`` if it is a number or 'auto'; a ValueError naming alpha and its allowed values otherwise."""
    if isinstance(value, str) and value != AUTO:
        raise ValueError(f"alpha must be a number in [0, 1] or {AUTO!r} (the fitted alpha rule), got {value!r}")
    if value is None or isinstance(value, bool):
        raise ValueError(f"alpha must be a number in [0, 1] or {AUTO!r} (the fitted alpha rule), got {value!r}")
    return value


def resolve_alpha(config: Mapping[str, Any], store: Store | str | Path | None = None,
                  defaults: Optional[Mapping[str, Any]] = None) -> dict:
    """A copy of the flat run parameters ``config`` with ``alpha: 'auto'`` replaced by the rule's value at the
    run's fraction and ``alpha_rule`` set to the rule's label; other values pass through (bad ones raise).
    ``defaults`` give the dataset, model, method and fraction a config leaves out (``kdlib.study`` passes the
    ``RunConfig`` defaults); without them those fields must be present."""
    d = dict(config)
    alpha = check_alpha(d.get("alpha", 0.0))
    if alpha != AUTO:
        return d

    def get(k: str) -> Any:
        if k in d:
            return d[k]
        if defaults is None or k not in defaults:
            raise ValueError(f"alpha='auto' needs the run's {k} (or defaults for it)")
        return defaults[k]

    fraction = check_fraction(get("fraction"))
    rule = rule_for(store, get("dataset"), get("model"), get("method"))
    d["alpha"] = rule(fraction)
    d["alpha_rule"] = rule.label
    return d


def resolve_auto_alpha(configs: Iterable[Mapping[str, Any]], store: Store | str | Path | None = None,
                       defaults: Optional[Mapping[str, Any]] = None) -> list[dict]:
    """``resolve_alpha`` on each of ``configs`` (flat run parameters)."""
    return [resolve_alpha(c, store, defaults) for c in configs]
