"""Tests of the linear-regression toy (kdlib.theory): closed form vs Monte Carlo, ridge at alpha=0, monotonicity."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from kdlib import theory as th

ROOT = Path(__file__).resolve().parents[1]
# label noise and a teacher that sees only part of the pool, so S and T overlap partially and share noise
NOISY = th.Toy(d=12, n=80, sigma=0.8, noise_rate=0.2, noise_scale=3.0, lam=3.0, lam_t=1.5, f=0.4, f_t=0.6)
ALPHAS = np.linspace(0, 1, 6)


def test_closed_form_matches_monte_carlo_on_a_fixed_design():
    design = th.draw_design(NOISY, 1)
    exact = th.closed_form(NOISY, design)
    mc = th.monte_carlo(NOISY, 3000, seed=2, design=design)
    mean, se = mc.risk(ALPHAS)
    z = (mean - exact.risk(ALPHAS)[0]) / se
    assert np.all(np.abs(z) < 4), z
    g_se = mc.total.std(axis=0, ddof=1) / np.sqrt(len(mc.total))
    assert np.all(np.abs(mc.total.mean(axis=0) - exact.total[0]) < 4 * g_se + 1e-12)


def test_design_average_matches_monte_carlo_over_designs_and_noise():
    toy = replace(NOISY, spectrum="power", decay=1.0)
    exact, mc = th.design_average(toy, 300, seed=5), th.monte_carlo(toy, 300, seed=5)  # the same designs
    diff = exact.per_draw(ALPHAS) - mc.per_draw(ALPHAS)
    z = diff.mean(axis=0) / (diff.std(axis=0, ddof=1) / np.sqrt(len(diff)))
    assert np.all(np.abs(z) < 4), z


def test_bias_and_variance_sum_to_total_and_bias_is_the_noiseless_risk():
    design = th.draw_design(NOISY, 3)
    exact = th.closed_form(NOISY, design)
    for a in ALPHAS:
        at = exact.at(a)
        assert at["bias2"] + at["variance"] == pytest.approx(at["risk"], rel=1e-12)
        assert at["bias2"] >= 0 and at["variance"] >= 0
    noiseless = th.realized(NOISY, design, np.zeros(NOISY.n))
    np.testing.assert_allclose(exact.bias[0], noiseless, rtol=1e-9, atol=1e-12)


def test_student_is_plain_ridge_at_alpha_zero_and_solves_the_mixed_objective():
    design = th.draw_design(NOISY, 4)
    eps = np.random.default_rng(0).standard_normal(NOISY.n) * np.sqrt(design.noise_var)
    theta0, theta1, theta_t = th.fit(NOISY, design, eps)
    S = design.order[: th.budget(NOISY.n, NOISY.f)]
    X, y = design.X[S], design.X[S] @ NOISY.theta + eps[S]
    ridge = np.linalg.solve(X.T @ X + NOISY.lam * np.eye(NOISY.d), X.T @ y)
    np.testing.assert_allclose(theta0, ridge, rtol=1e-10)
    exact = th.closed_form(NOISY, design)  # closed-form ridge risk: bias lam^2 th'K^-1 S K^-1 th + noise term
    K_inv = np.linalg.inv(X.T @ X + NOISY.lam * np.eye(NOISY.d))
    ev, th_star = NOISY.eigenvalues, NOISY.theta
    M = K_inv @ X.T
    ridge_risk = NOISY.lam**2 * (K_inv @ th_star) @ (ev * (K_inv @ th_star)) + np.sum(ev[:, None] * M**2 * design.noise_var[S])
    assert exact.at(0.0)["risk"] == pytest.approx(ridge_risk, rel=1e-9)
    for a in (0.3, 1.0):  # augmented least squares on the KD objective
        A = np.vstack([np.sqrt(1 - a) * X, np.sqrt(a) * X, np.sqrt(NOISY.lam) * np.eye(NOISY.d)])
        b = np.concatenate([np.sqrt(1 - a) * y, np.sqrt(a) * X @ theta_t, np.zeros(NOISY.d)])
        np.testing.assert_allclose((1 - a) * theta0 + a * theta1, np.linalg.lstsq(A, b, rcond=None)[0], rtol=1e-8)


def test_optimal_alpha_is_the_exact_minimiser_of_the_quadratic():
    s = th.design_average(NOISY, 5, seed=0)
    grid = np.linspace(0, 1, 2001)
    assert s.alpha_opt() == pytest.approx(grid[np.argmin(s.risk(grid)[0])], abs=1e-3)


@pytest.mark.parametrize("kw", [dict(), dict(sigma=2.0), dict(spectrum="power", decay=1.0),
                                dict(noise_rate=0.1, noise_scale=3.0)])
def test_optimal_alpha_is_non_increasing_in_f(kw):
    # oracle ridge penalty and a teacher on the full pool: the regime of the paper's claim (with a much smaller
    # penalty alpha* sits near 1 for every f and wobbles; see the report)
    toy = replace(th.Toy(d=20, n=200, f_t=1.0), **kw)
    lam = th.oracle_lambda(toy)
    toy = replace(toy, lam=lam, lam_t=lam)
    df = th.optimal_alpha(toy, [0.1, 0.3, 0.5, 0.7, 1.0], draws=30)  # robust over 30 seeds tried
    assert np.all(np.diff(df.alpha_opt) <= 1e-9), df.alpha_opt.tolist()
    assert np.all(df.gain >= -1e-12)


@pytest.mark.parametrize("kw", [dict(), dict(lam_t=5.0), dict(spectrum="power", decay=1.0)])
def test_risk_is_non_increasing_in_teacher_fraction(kw):
    # common random numbers: the teacher's sets are nested in f_t for each design
    toy = replace(th.Toy(d=20, n=200, sigma=1.0, lam=20.0, lam_t=20.0), **kw)
    df = th.risk_vs_teacher_fraction(toy, [0.2, 0.3, 0.5, 0.7, 1.0], [0.2, 0.5], draws=20)
    for _, g in df.groupby("f"):
        assert np.all(np.diff(g.risk_kd) <= 1e-12), g.risk_kd.tolist()
        assert np.all(np.diff(g.teacher_risk) <= 1e-12), g.teacher_risk.tolist()


def test_noise_dependent_pruning_has_no_closed_form_and_hard_keeps_noisy_samples():
    toy = replace(NOISY, pruning="hard", noise_rate=0.1, noise_scale=10.0, f=0.1, f_t=1.0)
    with pytest.raises(ValueError, match="monte_carlo"):
        th.closed_form(toy, th.draw_design(toy, 0))
    with pytest.raises(ValueError, match="pruning"):
        replace(toy, pruning="nope")
    df = th.pruning_under_label_noise(toy, [0.1], draws=30, prunings=["random", "hard"])
    risk = df.set_index(["pruning", "student"]).risk
    assert risk["hard", "no KD"] > risk["random", "no KD"]  # the hardest samples are the corrupted ones
    assert risk["hard", "KD (alpha*)"] < risk["hard", "no KD"]


def test_regime_toy_retunes_the_penalties_to_the_regimes_oracle():
    base = th.Toy(d=20, n=200, lam=20.0, lam_t=20.0)
    loud = th.regime_toy(base, {"sigma": 3.0})
    assert loud.lam == loud.lam_t == pytest.approx(9 * 20.0)
    assert th.regime_toy(base, {"lam_t_scale": 0}).lam_t == 0 and th.regime_toy(base, {"lam_scale": 0.5}).lam == 10
    assert th.regime_toy(base, {"sigma": 3.0, "lam": 1.0}).lam == 1.0  # an explicit penalty wins
    with pytest.raises(ValueError, match="unknown Toy field 'sigmaa'"):
        th.regime_toy(base, {"sigmaa": 3.0})
    with pytest.raises(ValueError, match="lam_t_scale must be a number >= 0"):
        th.regime_toy(base, {"lam_t_scale": -1})
    with pytest.raises(ValueError, match="lam_scale must be a number >= 0, got 'big'"):
        th.regime_toy(base, {"lam_scale": "big"})
    with pytest.raises(ValueError, match="a regime must be a mapping of Toy fields"):
        th.regime_toy(base, "sigma")
    with pytest.raises(ValueError, match="draws must be a positive integer, got 0"):
        th.optimal_alpha(base, [0.5], draws=0)


def test_regime_map_finds_where_the_statements_fail():
    base = th.Toy(d=20, n=200, lam=20.0, lam_t=20.0, alpha=0.5)
    regimes = {"baseline": {}, "ridgeless teacher": {"lam_t_scale": 0}, "strong student ridge": {"lam_scale": 10}}
    summary, opt, rft = th.regime_map(base, regimes, [0.05, 0.1, 0.3, 0.5, 1.0], [0.05, 0.1, 0.2, 0.5, 1.0],
                                      0.2, draws=20)
    s = summary.set_index("regime")
    checks = ["alpha_opt_non_increasing", "student_risk_non_increasing_in_f_t", "teacher_risk_non_increasing_in_f_t",
              "fixed_alpha_risk_non_increasing_in_f_t"]
    assert s.loc["baseline", checks].all()
    # a ridgeless teacher interpolates at f_t n = d: its risk spikes there, and a student that keeps alpha = 0.5
    # inherits the spike, while alpha* (which can drop to 0) only limits the damage
    ridgeless = rft[rft.regime == "ridgeless teacher"].set_index("f_t")
    assert ridgeless.teacher_risk[0.1] > 100 * ridgeless.teacher_risk[0.05]
    assert not s.loc["ridgeless teacher", "teacher_risk_non_increasing_in_f_t"]
    assert s.loc["ridgeless teacher", "fixed_alpha_risk_max_rise"] > 10
    assert s.loc["ridgeless teacher", "student_risk_max_rise"] < s.loc["ridgeless teacher", "fixed_alpha_risk_max_rise"]
    # an over-regularised student gains nothing from the teacher: alpha* = 0 at every f (monotone, but vacuous)
    assert (opt[opt.regime == "strong student ridge"].alpha_opt == 0).all()
    assert s.loc["strong student ridge", "kd_rel_gain_small_f"] == 0 < 0.05 < s.loc["baseline", "kd_rel_gain_small_f"]
    with pytest.raises(ValueError, match="f_student"):
        th.regime_map(base, regimes, [0.1], [0.5], 1.5, draws=2)
    with pytest.raises(ValueError, match="regime 'loud': unknown Toy field 'sigmaa'"):
        th.regime_map(base, {"loud": {"sigmaa": 3.0}}, [0.1], [0.5], 0.5, draws=2)
