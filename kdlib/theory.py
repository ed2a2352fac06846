"""Linear-regression toy of self-distillation on pruned data, exact and simulated (numpy only).

Model. A pool of ``n`` samples ``x ~ N(0, Sigma)`` with ``Sigma = diag(spectrum)`` (trace ``d``) and
``y = x . theta + eps``, ``theta_k = signal / sqrt(d)`` (so ``Var(x . theta) = signal^2``). ``eps_i ~ N(0, s_i^2)``
with ``s_i^2 = sigma^2`` for clean samples and ``sigma^2 + noise_scale^2`` for the ``round(noise_rate * n)``
corrupted ones (label noise = a large extra Gaussian noise on a random subset of the pool).

Sampling model (the paper's: the teacher sees a fraction ``f_t`` of the full data, the student keeps a fraction
``f`` of the full data). Per design, three independent random permutations of the pool are drawn: one picks the
corrupted samples, one the teacher's set ``T`` (its first ``round(f_t * n)`` entries) and one the order used by
random pruning (the student's set ``S`` is its first ``round(f * n)`` entries). ``S`` and ``T`` therefore overlap
(hypergeometrically; ``S`` is inside ``T`` when ``f_t = 1``) and the sets are nested in ``f``, ``f_t`` and
``noise_rate`` for a fixed seed, which gives common random numbers across a sweep.

Estimators. Teacher: ridge ``theta_t = (X_T'X_T + lam_t I)^-1 X_T' y_T``. Student: the minimiser of
``(1-alpha)||y_S - X_S th||^2 + alpha||X_S theta_t - X_S th||^2 + lam||th||^2``, i.e. ridge on the target
``(1-alpha) y_S + alpha X_S theta_t``. Hence ``theta_s(alpha) = (1-alpha) theta_0 + alpha theta_1`` with
``theta_0`` ridge on the labels and ``theta_1`` ridge on the teacher's predictions, and the excess risk
``(theta_s - theta)' Sigma (theta_s - theta)`` is a quadratic in alpha: ``w' G w`` with ``w = (1-alpha, alpha)``
and ``G[i, j] = e_i' Sigma e_j``, ``e_i = theta_i - theta``. Everything below estimates ``G`` (3x3: index 2 is
the teacher itself, ``G[2, 2]`` its risk), then reads off risk(alpha) and the optimal alpha in [0, 1] exactly.
``lam = 0`` means the minimum-norm least-squares solution. The penalty is unnormalised, so the Bayes-optimal ridge
``oracle_lambda = noise variance * d / signal^2`` does not depend on the sample size (the ``Toy`` default). Note
that an under-regularised student with ``f n >= d`` recovers the teacher from ``X_S theta_t`` almost exactly, so
``alpha* = 1`` at every f whenever the teacher saw more data; alpha* is interior only with a real penalty.

Closed form (``closed_form``). With random pruning, ``theta_i = A_i y`` is linear in the pool's labels, so
``E[G_ij | design] = (A_i X theta - theta)' Sigma (A_j X theta - theta) + tr(A_i' Sigma A_j D)``,
``D = diag(s^2)``: a squared-bias part and a variance part. Noise shared by samples in both ``S`` and ``T`` is
accounted for because both maps act on the same pool noise vector.

Noise-dependent pruning. ``hard`` keeps the samples with the largest teacher residual ``|y_i - x_i . theta_t|``
(over the whole pool), ``easy`` the smallest. ``S`` then depends on the noise and, given ``S``, the noise on the
kept samples is no longer zero-mean Gaussian (selection on ``|residual|`` truncates it), so the closed form does
not apply; those settings are evaluated by Monte Carlo over designs and noise only (``closed_form`` refuses).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, fields, replace
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from .registry import Registry
from .validate import check_fraction, check_positive, check_unit_interval

Seed = int | Sequence[int]

SPECTRA: Registry[Callable[[int, float], np.ndarray]] = Registry("covariance spectrum", "spectrum")
PRUNERS: Registry[Callable[[np.ndarray, int, np.ndarray], np.ndarray]] = Registry("toy pruning", "pruning")
NOISE_FREE_PRUNERS = ("random",)  # selections that do not look at the labels: the closed form applies


@SPECTRA.register("isotropic")
def _isotropic(d: int, decay: float) -> np.ndarray:
    return np.ones(d)


@SPECTRA.register("power")
def _power(d: int, decay: float) -> np.ndarray:
    ev = np.arange(1, d + 1, dtype=float) ** -decay
    return ev * d / ev.sum()


@PRUNERS.register("random")
def _keep_random(residual: np.ndarray, m: int, order: np.ndarray) -> np.ndarray:
    return order[:m]


@PRUNERS.register("hard")
def _keep_hard(residual: np.ndarray, m: int, order: np.ndarray) -> np.ndarray:
    return np.argsort(-residual, kind="stable")[:m]


@PRUNERS.register("easy")
def _keep_easy(residual: np.ndarray, m: int, order: np.ndarray) -> np.ndarray:
    return np.argsort(residual, kind="stable")[:m]


@dataclass(frozen=True)
class Toy:
    """One setting of the toy: problem (d .. noise_scale), fits (lam_t, lam, f, f_t, alpha) and pruning."""

    d: int = 50
    n: int = 500
    spectrum: str = "isotropic"
    decay: float = 1.0  # power spectrum: eigenvalues proportional to k^-decay
    signal: float = 1.0  # ||theta||
    sigma: float = 1.0
    noise_rate: float = 0.0
    noise_scale: float = 0.0
    lam_t: float = 50.0  # the defaults are oracle_lambda for the clean isotropic problem
    lam: float = 50.0
    f: float = 0.5
    f_t: float = 1.0
    alpha: float = 0.0
    pruning: str = "random"

    def __post_init__(self) -> None:
        check_positive(self.d, "d", integer=True)
        check_positive(self.n, "n", integer=True)
        SPECTRA.check(self.spectrum)
        PRUNERS.check(self.pruning)
        check_fraction(self.f, "f")
        check_fraction(self.f_t, "f_t")
        check_unit_interval(self.alpha, "alpha")
        check_unit_interval(self.noise_rate, "noise_rate")
        for name in ("signal", "sigma", "noise_scale", "lam_t", "lam"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {getattr(self, name)!r}")

    @property
    def eigenvalues(self) -> np.ndarray:
        return SPECTRA.get(self.spectrum)(self.d, self.decay)

    @property
    def theta(self) -> np.ndarray:
        return np.full(self.d, self.signal / np.sqrt(self.d))


def oracle_lambda(toy: Toy) -> float:
    """``mean noise variance * d / signal^2``: the Bayes ridge penalty for theta ~ N(0, signal^2/d I) on an
    isotropic design (independent of the sample size with this unnormalised penalty)."""
    return (toy.sigma**2 + toy.noise_rate * toy.noise_scale**2) * toy.d / max(toy.signal, 1e-12) ** 2


def budget(n: int, fraction: float) -> int:
    """``round(fraction * n)``, at least 1 (as in ``kdlib.prune``)."""
    return max(1, int(round(fraction * n)))


@dataclass(frozen=True)
class Design:
    """One draw of everything but the label noise: pool inputs, per-sample noise variances, T and the pruning order."""

    X: np.ndarray  # (n, d)
    noise_var: np.ndarray  # (n,)
    teacher_idx: np.ndarray  # (round(f_t n),)
    order: np.ndarray  # (n,) permutation; random pruning keeps its first round(f n) entries


def draw_design(toy: Toy, seed: Seed) -> Design:
    """A design; for a fixed seed, X depends only on (n, d) and the index sets are nested in f_t, noise_rate."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((toy.n, toy.d)) * np.sqrt(toy.eigenvalues)
    noisy, teacher_perm, order = (rng.permutation(toy.n) for _ in range(3))
    noise_var = np.full(toy.n, toy.sigma**2)
    noise_var[noisy[: int(round(toy.noise_rate * toy.n))]] += toy.noise_scale**2
    return Design(X, noise_var, np.sort(teacher_perm[: budget(toy.n, toy.f_t)]), order)


def ridge_map(X: np.ndarray, lam: float) -> np.ndarray:
    """The (d, m) matrix taking targets to the ridge solution ``(X'X + lam I)^-1 X'`` (pseudo-inverse at lam=0)."""
    if lam == 0:
        return np.linalg.pinv(X)
    return np.linalg.solve(X.T @ X + lam * np.eye(X.shape[1]), X.T)


def _se(v: np.ndarray) -> float:
    """Standard error of the mean (nan for one draw)."""
    return float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")


@dataclass(frozen=True)
class RiskSample:
    """Per-draw Gram matrices ``G`` (K, 3, 3): draw k has risk_k(alpha) = w' G_k w, w = (1-alpha, alpha, 0).

    ``bias`` holds the squared-bias part of each ``G_k`` when it is a closed form (else None)."""

    total: np.ndarray
    bias: Optional[np.ndarray] = None

    @staticmethod
    def _w(alpha: float | np.ndarray) -> np.ndarray:
        a = np.atleast_1d(np.asarray(alpha, dtype=float))
        return np.stack([1 - a, a, np.zeros_like(a)], axis=1)

    def per_draw(self, alpha: float | np.ndarray, part: str = "total") -> np.ndarray:
        """(K, len(alpha)) risks (or the ``bias``/``variance`` part) of each draw."""
        w = self._w(alpha)
        g = {"total": self.total, "bias": self.bias,
             "variance": None if self.bias is None else self.total - self.bias}[part]
        if g is None:
            raise ValueError("the bias/variance split needs a closed form (method='closed')")
        return np.einsum("ai,kij,aj->ka", w, g, w)

    def risk(self, alpha: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean risk over draws and its standard error, one entry per alpha."""
        r = self.per_draw(alpha)
        return r.mean(axis=0), np.array([_se(c) for c in r.T])

    def coefficients(self) -> tuple[float, float, float]:
        """(a, b, c) with mean risk(alpha) = a alpha^2 + b alpha + c."""
        g = self.total.mean(axis=0)
        return g[0, 0] - 2 * g[0, 1] + g[1, 1], 2 * (g[0, 1] - g[0, 0]), g[0, 0]

    def alpha_opt(self) -> float:
        """The exact minimiser over [0, 1] of the mean risk quadratic."""
        a, b, _ = self.coefficients()
        if a <= 1e-15 * max(abs(b), 1e-300):
            return 0.0 if b >= 0 else 1.0
        return float(np.clip(-b / (2 * a), 0.0, 1.0))

    def teacher_risk(self) -> tuple[float, float]:
        t = self.total[:, 2, 2]
        return float(t.mean()), _se(t)

    def at(self, alpha: float) -> dict[str, float]:
        """risk, se (and bias2, variance for a closed form) at one alpha."""
        r, se = self.risk(alpha)
        out = {"risk": float(r[0]), "se": float(se[0])}
        if self.bias is not None:
            out["bias2"] = float(self.per_draw(alpha, "bias").mean())
            out["variance"] = float(self.per_draw(alpha, "variance").mean())
        return out


def _gram(E: np.ndarray, ev: np.ndarray) -> np.ndarray:
    """``E Sigma E'`` for rows e_i of E and Sigma = diag(ev)."""
    return (E * ev) @ E.T


def closed_form(toy: Toy, design: Design) -> RiskSample:
    """E[G | design] over the label noise, split into squared bias and variance (random pruning only)."""
    if toy.pruning not in NOISE_FREE_PRUNERS:
        raise ValueError(f"pruning {toy.pruning!r} depends on the label noise: no closed form, use monte_carlo")
    X, T, theta, ev = design.X, design.teacher_idx, toy.theta, toy.eigenvalues
    S = design.order[: budget(toy.n, toy.f)]
    B, M = ridge_map(X[T], toy.lam_t), ridge_map(X[S], toy.lam)
    maps = np.zeros((3, toy.d, toy.n))  # theta_i = maps[i] @ y for i = student on labels, on teacher, teacher
    maps[0][:, S] = M
    maps[1][:, T] = (M @ X[S]) @ B
    maps[2][:, T] = B
    mean_err = maps @ (X @ theta) - theta  # (3, d)
    bias = _gram(mean_err, ev)
    W = (maps * np.sqrt(ev)[:, None] * np.sqrt(design.noise_var)).reshape(3, -1)  # (3, d * n)
    var = W @ W.T
    return RiskSample(total=(bias + var)[None], bias=bias[None])


def fit(toy: Toy, design: Design, eps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(theta_0, theta_1, theta_t) for one draw of the label noise ``eps``: the student ridge on the labels, on
    the teacher's predictions, and the teacher; the KD student is ``(1-alpha) theta_0 + alpha theta_1``."""
    X, T = design.X, design.teacher_idx
    y = X @ toy.theta + eps
    theta_t = ridge_map(X[T], toy.lam_t) @ y[T]
    S = PRUNERS.get(toy.pruning)(np.abs(y - X @ theta_t), budget(toy.n, toy.f), design.order)
    M = ridge_map(X[S], toy.lam)
    return M @ y[S], M @ (X[S] @ theta_t), theta_t


def realized(toy: Toy, design: Design, eps: np.ndarray) -> np.ndarray:
    """The 3x3 Gram of one draw of the label noise ``eps`` (any pruning)."""
    return _gram(np.stack(fit(toy, design, eps)) - toy.theta, toy.eigenvalues)


def _noise(design: Design, seed: Seed) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(len(design.noise_var)) * np.sqrt(design.noise_var)


SELECTION_STREAM = 3  # design seeds [seed, k, 3]: held-out designs; [seed, k, 0] are the designs, 1 and 2 noise


def _design_seed(seed: int, k: int, stream: int = 0) -> list[int]:
    return [seed, k, stream]


def design_average(toy: Toy, draws: int, seed: int = 0, stream: int = 0) -> RiskSample:
    """The closed form on ``draws`` designs (mean over them estimates the expectation over designs too);
    ``stream`` = ``SELECTION_STREAM`` draws designs independent of the default ones for the same seed."""
    parts = [closed_form(toy, draw_design(toy, _design_seed(seed, k, stream))) for k in range(draws)]
    return RiskSample(np.concatenate([p.total for p in parts]), np.concatenate([p.bias for p in parts]))


def held_out_kd_gain(select: RiskSample, test: RiskSample) -> tuple[float, np.ndarray]:
    """(alpha*, per-draw relative risk reduction of KD): alpha* minimises the mean risk of the ``select`` draws,
    and the gain ``(risk(0) - risk(alpha*)) / mean risk(0)`` is measured on the ``test`` draws, which must be other
    draws. Chosen and measured on the same draws, the gain's mean would be >= 0 by construction (a test that cannot
    fail); held out, an alpha* that does not carry over shows as a loss."""
    if select is test:
        raise ValueError("select and test must be different draws: alpha* chosen on the draws it is tested on "
                         "makes the mean gain >= 0 by construction")
    a = select.alpha_opt()
    per = test.per_draw([0.0, a])
    return a, (per[:, 0] - per[:, 1]) / per[:, 0].mean()


def held_out_evaluation(toy: Toy, draws: int, seed: int = 0) -> tuple[float, np.ndarray]:
    """``held_out_kd_gain`` of the closed form: alpha* from ``draws`` designs of ``SELECTION_STREAM``, the gain on
    the ``draws`` designs ``evaluate(toy, draws, seed)`` uses (random pruning only)."""
    check_positive(draws, "draws", integer=True)
    return held_out_kd_gain(design_average(toy, draws, seed, SELECTION_STREAM), design_average(toy, draws, seed))


def monte_carlo(toy: Toy, draws: int, seed: int = 0, design: Optional[Design] = None) -> RiskSample:
    """Monte Carlo over designs and noise (the same designs as ``design_average`` for a seed), or over the noise
    only when ``design`` is given."""
    grams = []
    for k in range(draws):
        dk = design if design is not None else draw_design(toy, _design_seed(seed, k))
        grams.append(realized(toy, dk, _noise(dk, [seed, k, 1 if design is None else 2])))
    return RiskSample(np.stack(grams))


def evaluate(toy: Toy, draws: int, seed: int = 0, method: str = "auto") -> RiskSample:
    """``closed`` (design-averaged closed form), ``mc`` (Monte Carlo), or ``auto`` (closed when it applies)."""
    check_positive(draws, "draws", integer=True)
    if method == "auto":
        method = "closed" if toy.pruning in NOISE_FREE_PRUNERS else "mc"
    if method == "closed":
        return design_average(toy, draws, seed)
    if method == "mc":
        return monte_carlo(toy, draws, seed)
    raise ValueError(f"unknown method {method!r}; allowed values for 'method': auto, closed, mc")


# ----------------------------------------------------------------------------------------------- sweeps
def _grid(toy: Toy, grid: dict[str, Sequence]) -> list[Toy]:
    names = {f.name for f in fields(Toy)}
    for key in grid:
        if key not in names:
            raise ValueError(f"unknown Toy field {key!r}; allowed: {', '.join(sorted(names))}")
    return [replace(toy, **dict(zip(grid, values))) for values in itertools.product(*grid.values())]


def summarise(sample: RiskSample, alpha_fixed: Optional[float] = None) -> dict[str, float]:
    """alpha*, risk at alpha = 0 (no KD), alpha* (KD) and alpha = 1, teacher risk, and the KD gain with paired SE.

    The risk at alpha* plugs in alpha* estimated from the same draws (slightly optimistic for Monte Carlo)."""
    a_opt = sample.alpha_opt()
    r = sample.per_draw([0.0, a_opt, 1.0])
    out = {"alpha_opt": a_opt,
           "risk_no_kd": float(r[:, 0].mean()), "se_no_kd": _se(r[:, 0]),
           "risk_kd": float(r[:, 1].mean()), "se_kd": _se(r[:, 1]),
           "risk_alpha1": float(r[:, 2].mean()), "se_alpha1": _se(r[:, 2]),
           "gain": float((r[:, 0] - r[:, 1]).mean()), "se_gain": _se(r[:, 0] - r[:, 1])}
    out["rel_gain"] = out["gain"] / out["risk_no_kd"]
    out["teacher_risk"], out["se_teacher"] = sample.teacher_risk()
    if alpha_fixed is not None:
        out["risk_fixed"], out["se_fixed"] = (float(v[0]) for v in sample.risk(alpha_fixed))
    return out


def sweep(toy: Toy, draws: int, seed: int = 0, method: str = "auto", **grid: Sequence) -> pd.DataFrame:
    """One row per point of the grid over Toy fields (e.g. ``f=[...], f_t=[...]``) with ``summarise``'s columns
    (risk_fixed at ``toy.alpha``). The same seed gives common random numbers across the grid."""
    rows = []
    for t in _grid(toy, grid):
        rows.append({k: getattr(t, k) for k in grid} | summarise(evaluate(t, draws, seed, method), t.alpha))
    return pd.DataFrame(rows)


def risk_vs_alpha(toy: Toy, fs: Sequence[float], alphas: Sequence[float], draws: int, seed: int = 0,
                  method: str = "auto") -> pd.DataFrame:
    """Risk (with SE, and bias2/variance for the closed form) against alpha for each kept fraction f."""
    rows = []
    for f in fs:
        s = evaluate(replace(toy, f=f), draws, seed, method)
        a_opt = s.alpha_opt()
        for a in sorted(set(map(float, alphas)) | {a_opt}):
            rows.append({"f": f, "alpha": a, "is_opt": a == a_opt} | s.at(a))
    return pd.DataFrame(rows)


def optimal_alpha(toy: Toy, fs: Sequence[float], draws: int, seed: int = 0, method: str = "auto") -> pd.DataFrame:
    """alpha* and the risks at alpha = 0 / alpha* / 1 against f (``sweep`` over f)."""
    return sweep(toy, draws, seed, method, f=list(fs))


def risk_vs_teacher_fraction(toy: Toy, f_ts: Sequence[float], fs: Sequence[float], draws: int, seed: int = 0,
                             method: str = "auto") -> pd.DataFrame:
    """Student risk at alpha* (and at ``toy.alpha``) and teacher risk against f_t, for each f."""
    return sweep(toy, draws, seed, method, f=list(fs), f_t=list(f_ts))


def kd_long(wide: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """A ``sweep`` table in long form: ``keys`` + student in {no KD, KD (alpha*)}, alpha, risk, se."""
    parts = []
    for student, col, se, alpha in (("no KD", "risk_no_kd", "se_no_kd", 0.0),
                                    ("KD (alpha*)", "risk_kd", "se_kd", None)):
        p = wide[keys].copy()
        p["student"] = student
        p["alpha"] = wide["alpha_opt"] if alpha is None else alpha
        p["risk"], p["se"] = wide[col], wide[se]
        parts.append(p)
    return pd.concat(parts, ignore_index=True)


def kd_vs_no_kd(toy: Toy, fs: Sequence[float], draws: int, seed: int = 0, method: str = "auto") -> pd.DataFrame:
    """Long table (f, student in {no KD, KD (alpha*)}, alpha, risk, se) from ``optimal_alpha``."""
    return kd_long(optimal_alpha(toy, fs, draws, seed, method), ["f"])


def pruning_under_label_noise(toy: Toy, fs: Sequence[float], draws: int, seed: int = 0,
                              prunings: Sequence[str] = ("random", "hard", "easy"), method: str = "mc") -> pd.DataFrame:
    """Long table (f, pruning, student, alpha, risk, se): pruning methods with and without KD, by Monte Carlo
    with the same designs and noise for every method (label noise comes from ``toy.noise_rate/noise_scale``)."""
    return kd_long(sweep(toy, draws, seed, method, f=list(fs), pruning=list(prunings)), ["f", "pruning"])


# ----------------------------------------------------------------------------------------------- regimes
REGIME_SCALES = ("lam_scale", "lam_t_scale")


def regime_toy(base: Toy, overrides: Mapping[str, object]) -> Toy:
    """``base`` with Toy-field ``overrides``. Unless ``lam``/``lam_t`` are given, both penalties are re-tuned to
    the regime's ``oracle_lambda`` times ``lam_scale``/``lam_t_scale`` (default 1; 0 gives ridgeless)."""
    if not isinstance(overrides, Mapping):
        raise ValueError(f"a regime must be a mapping of Toy fields (and {', '.join(REGIME_SCALES)}) to values, "
                         f"got {overrides!r}")
    over = dict(overrides)
    scales = {k: over.pop(k, 1.0) for k in REGIME_SCALES}
    for k, v in scales.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise ValueError(f"{k} must be a number >= 0, got {v!r}")
    toy = _grid(base, {k: [v] for k, v in over.items()})[0]
    lam = oracle_lambda(toy)
    return replace(toy, lam=over.get("lam", lam * scales["lam_scale"]),
                   lam_t=over.get("lam_t", lam * scales["lam_t_scale"]))


def _max_rise(values: Sequence[float], relative: bool = True) -> float:
    """Largest increase between consecutive values (0 when non-increasing), relative to the earlier value or
    absolute."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return 0.0
    rise = np.diff(v) / np.maximum(np.abs(v[:-1]), 1e-300) if relative else np.diff(v)
    return float(max(0.0, rise.max()))


def regime_map(base: Toy, regimes: Mapping[str, Mapping[str, object]], fs: Sequence[float],
               f_ts: Sequence[float], f_student: float, draws: int, seed: int = 0,
               tol: float = 1e-3) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Where the theory's statements hold. For each regime (a name -> ``regime_toy`` overrides), with random
    pruning in closed form: alpha* against f (is it non-increasing?); the student's risk at alpha*, at the fixed
    ``base.alpha`` and the teacher's risk against f_t at student fraction ``f_student`` (non-increasing?); and
    KD's relative gain at the smallest and largest f.

    A statement "holds" when no consecutive rise exceeds ``tol`` (relative for risks, absolute for alpha*).
    Returns (summary: one row per regime, alpha* table, f_t table)."""
    check_fraction(f_student, "f_student")
    if not regimes:
        raise ValueError("regimes must name at least one regime, e.g. {'baseline': {}}")
    rows, opts, rfts = [], [], []
    for name, over in regimes.items():
        try:
            toy = replace(regime_toy(base, over), pruning="random")
        except ValueError as err:
            raise ValueError(f"regime {name!r}: {err}") from None
        opt = optimal_alpha(toy, sorted(fs), draws, seed, "closed").assign(regime=name)
        rft = risk_vs_teacher_fraction(toy, sorted(f_ts), [f_student], draws, seed, "closed").assign(regime=name)
        alpha_rise = _max_rise(opt.alpha_opt, relative=False)
        student_rise, teacher_rise, fixed_rise = (_max_rise(rft[c]) for c in ("risk_kd", "teacher_risk", "risk_fixed"))
        rows.append({"regime": name, "sigma": toy.sigma, "lam": toy.lam, "lam_t": toy.lam_t,
                     "alpha_opt_small_f": opt.alpha_opt.iloc[0], "alpha_opt_large_f": opt.alpha_opt.iloc[-1],
                     "alpha_opt_max_rise": alpha_rise, "alpha_opt_non_increasing": alpha_rise <= tol,
                     "student_risk_max_rise": student_rise, "student_risk_non_increasing_in_f_t": student_rise <= tol,
                     "teacher_risk_max_rise": teacher_rise, "teacher_risk_non_increasing_in_f_t": teacher_rise <= tol,
                     "fixed_alpha_risk_max_rise": fixed_rise, "fixed_alpha_risk_non_increasing_in_f_t": fixed_rise <= tol,
                     "kd_rel_gain_small_f": opt.rel_gain.iloc[0], "kd_rel_gain_large_f": opt.rel_gain.iloc[-1]})
        opts.append(opt)
        rfts.append(rft)
    return pd.DataFrame(rows), pd.concat(opts, ignore_index=True), pd.concat(rfts, ignore_index=True)
