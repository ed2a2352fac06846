"""Statistics over seeds, in one place: t-intervals, the exact paired sign-flip permutation test, a paired
bootstrap and the Benjamini-Hochberg correction (``scipy.stats`` and numpy).

Every interval and test in kdlib's tables and verdicts comes from here: ``describe`` (mean, sd, n and the 95%
t-interval half-width per group), ``t_halfwidth`` (the same from sd and n), ``sign_flip_test`` (the exact paired
permutation test of a mean difference against a threshold: every one of the ``2^n`` sign patterns for
``n <= EXACT_MAX`` seeds, a seeded Monte Carlo sample of them above), ``smallest_p`` and ``seeds_needed`` (what p
``n`` seeds can reach at all, and the ``n`` a level needs), ``paired_test`` (the sign-flip tests, the t-tests and
t-interval, the Wilcoxon signed-rank test and a percentile bootstrap interval, for display) and ``bh_adjust``
(Benjamini-Hochberg q-values, NaN-aware).

Why the sign-flip test decides. With a handful of seeds, normality cannot be checked, so the t-test's p leans on
an assumption the data cannot support, and the percentile bootstrap of 3 values (only 10 distinct resamples) is
narrower than the t-interval: neither is an independent check. The sign-flip test needs only that, under the null
hypothesis, each seed's difference (minus the threshold) is as likely positive as negative (a symmetric
distribution); it is exact, and it is honest about small n: its smallest one-sided p is ``1 / 2^n`` (3 seeds:
0.125, 4: 0.0625, 5: 0.03125), so a one-sided test at level 0.05 needs at least 5 paired seeds.
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
import pandas as pd

CONFIDENCE = 0.95
EXACT_MAX = 16  # up to this many paired values the sign-flip test enumerates all 2^n sign patterns
ALTERNATIVES = ("greater", "less", "two-sided")


def _check_confidence(confidence: float) -> float:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    return float(confidence)


def t_halfwidth(sd: np.ndarray | pd.Series | float, n: np.ndarray | pd.Series | int,
                confidence: float = CONFIDENCE) -> np.ndarray:
    """Half-width of the two-sided t-interval of a mean, ``t_{(1+c)/2, n-1} sd / sqrt(n)``; NaN where n < 2."""
    from scipy import stats

    c = _check_confidence(confidence)
    sd, n = np.asarray(sd, dtype=float), np.asarray(n, dtype=float)
    t = stats.t.ppf((1 + c) / 2, np.maximum(n - 1, 1))
    return np.where(n > 1, t * sd / np.sqrt(np.maximum(n, 1)), np.nan)


def describe(grouped, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Per group of a pandas ``SeriesGroupBy``: ``mean``, ``std``, ``n`` and ``ci95`` (the t-interval half-width at
    ``confidence``), with the group keys as columns."""
    out = grouped.agg(mean="mean", std="std", n="count").reset_index()
    out["ci95"] = t_halfwidth(out["std"], out["n"], confidence)
    return out


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, lower, upper): the two-sided t-interval of the mean of ``values`` (NaN bounds when fewer than 2)."""
    x = _finite(values)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    h = float(t_halfwidth(x.std(ddof=1), len(x), confidence))
    return mean, mean - h, mean + h


def bh_adjust(p: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values) of a family; NaN entries stay NaN and are not counted."""
    from scipy import stats

    p = np.asarray(p, dtype=float)
    q = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        q[ok] = stats.false_discovery_control(np.clip(p[ok], 0.0, 1.0), method="bh")
    return q


def bootstrap_ci(values: Sequence[float], confidence: float = CONFIDENCE, n_boot: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (two-sided, ``confidence``); the value itself when all values are
    equal, NaN when fewer than 2."""
    from scipy import stats

    c = _check_confidence(confidence)
    x = _finite(values)
    if len(x) < 2:
        return math.nan, math.nan
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])
    res = stats.bootstrap((x,), np.mean, confidence_level=c, n_resamples=n_boot, method="percentile",
                          rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _check_alternative(alternative: str) -> str:
    if alternative not in ALTERNATIVES:
        raise ValueError(f"unknown alternative {alternative!r}; allowed values for 'alternative': "
                         f"{', '.join(ALTERNATIVES)}")
    return alternative


def sign_flip_test(diff: Sequence[float], threshold: float = 0.0, alternative: str = "greater",
                   n_perm: int = 20000, seed: int = 0) -> float:
    """p-value of the paired sign-flip permutation test of ``mean(diff) - threshold``.

    The statistic is ``sum(diff - threshold)``; under the null each sign is flipped with probability 1/2. For
    ``n <= EXACT_MAX`` values the p-value is exact (all ``2^n`` patterns, the observed one included); above, it is
    ``(1 + hits) / (1 + n_perm)`` over ``n_perm`` seeded random patterns. ``alternative``: ``greater`` (mean >
    threshold), ``less`` or ``two-sided``. NaN with no finite value; values equal to the threshold weigh nothing
    (all equal: p = 1)."""
    _check_alternative(alternative)
    if isinstance(n_perm, bool) or not isinstance(n_perm, (int, np.integer)) or n_perm < 1:
        raise ValueError(f"n_perm must be a positive integer, got {n_perm!r}")
    d = _finite(diff) - float(threshold)
    n = len(d)
    if n == 0:
        return math.nan
    scale = float(np.abs(d).sum())
    d = np.where(np.abs(d) <= 1e-12 * max(1.0, abs(float(threshold))), 0.0, d)  # float noise at the threshold: a tie
    if n <= EXACT_MAX:
        signs = ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1) * 2 - 1
    else:
        signs = np.random.default_rng(seed).integers(0, 2, size=(n_perm, n)) * 2 - 1
    sums = signs @ d
    obs = float(d.sum())
    tol = 1e-9 * max(1.0, scale)  # the observed pattern and its ties count as at least as extreme
    if alternative == "greater":
        hits = sums >= obs - tol
    elif alternative == "less":
        hits = sums <= obs + tol
    else:
        hits = np.abs(sums) >= abs(obs) - tol
    if n <= EXACT_MAX:
        return float(hits.mean())
    return float((1 + hits.sum()) / (1 + n_perm))


def smallest_p(n: int, alternative: str = "greater") -> float:
    """The smallest p-value the exact sign-flip test can give with ``n`` paired values (1 with none): ``1 / 2^n``
    one-sided, ``2 / 2^n`` two-sided."""
    _check_alternative(alternative)
    if n < 1:
        return 1.0
    return min(1.0, (2.0 if alternative == "two-sided" else 1.0) / 2.0 ** n)


def seeds_needed(level: float, alternative: str = "greater") -> int:
    """The fewest paired seeds with which the exact sign-flip test can reach a p-value below ``level`` (one-sided
    at 0.05: 5 seeds, since 1/32 < 0.05 <= 1/16; two-sided: 6)."""
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    n = 1
    while smallest_p(n, alternative) >= level:
        n += 1
    return n


def paired_test(diff: Sequence[float], threshold: float = 0.0, confidence: float = CONFIDENCE,
                n_boot: int = 2000, seed: int = 0) -> dict:
    """Tests of a paired difference (one value per seed) against ``threshold``.

    Returns ``n``, ``mean``, ``sd``, ``ci_lo``/``ci_hi`` (two-sided t-interval of the mean at ``confidence``),
    ``p_greater``/``p_less`` (one-sided one-sample t-tests of mean > threshold / mean < threshold),
    ``p_two_sided`` (the two-sided t-test of mean = threshold), ``p_exact_greater``/``p_exact_less``/
    ``p_exact_two_sided`` (the exact sign-flip test of the same, ``sign_flip_test``: the one kdlib decides with),
    ``p_wilcoxon_greater``/``p_wilcoxon_less`` (the signed-rank test of the same, exact for small n; NaN when every
    difference equals the threshold) and ``boot_lo``/``boot_hi`` (percentile bootstrap interval of the mean at
    ``confidence``; skipped when ``n_boot`` is 0). With zero spread the t-tests are decided by the mean alone
    (p = 0 or 1)."""
    from scipy import stats

    _check_confidence(confidence)
    x = _finite(diff)
    n = len(x)
    out = {"n": n, "mean": float(x.mean()) if n else math.nan, "sd": float(x.std(ddof=1)) if n > 1 else math.nan,
           "ci_lo": math.nan, "ci_hi": math.nan, "p_greater": math.nan, "p_less": math.nan, "p_two_sided": math.nan,
           "p_wilcoxon_greater": math.nan, "p_wilcoxon_less": math.nan, "boot_lo": math.nan, "boot_hi": math.nan}
    for side in ALTERNATIVES:
        out[f"p_exact_{side.replace('-', '_')}"] = sign_flip_test(x, threshold, side, seed=seed) if n else math.nan
    if n < 2:
        return out
    _, out["ci_lo"], out["ci_hi"] = mean_ci(x, confidence)
    if out["sd"] <= 1e-12 * max(1.0, abs(out["mean"])):  # no spread: decided by the mean (float noise is a tie)
        tie = math.isclose(out["mean"], threshold, rel_tol=1e-9, abs_tol=1e-12)
        out["p_greater"] = 0.0 if out["mean"] > threshold and not tie else 1.0
        out["p_less"] = 0.0 if out["mean"] < threshold and not tie else 1.0
        out["p_two_sided"] = 1.0 if tie else 0.0
    else:
        for side, key in (("greater", "p_greater"), ("less", "p_less"), ("two-sided", "p_two_sided")):
            out[key] = float(stats.ttest_1samp(x, threshold, alternative=side).pvalue)
    if np.any(x != threshold):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns that exact p-values are unavailable with ties/zeros
            for side in ("greater", "less"):
                out[f"p_wilcoxon_{side}"] = float(stats.wilcoxon(x - threshold, alternative=side).pvalue)
    if n_boot:
        out["boot_lo"], out["boot_hi"] = bootstrap_ci(x, confidence, n_boot, seed)
    return out


def _finite(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    return x[np.isfinite(x)]
