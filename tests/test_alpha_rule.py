import json

import numpy as np
import pandas as pd
import pytest

from kdlib.alpha_rule import (DEFAULT_RULE, AlphaRule, best_alpha, fit_alpha_rule, fit_rules, fit_study_rules,
                              load_rules, resolve_alpha, resolve_auto_alpha, rule_for, rules_path, save_rules)
from kdlib.study import RunConfig, expand_grid
from kdlib.train import TrainConfig

TINY = TrainConfig(epochs=2, batch_size=64, lr=0.05, schedule="cosine")
BASE = dict(dataset="digits", model="convnet_small", teacher="convnet_small", train=TINY)


def test_default_rule_is_the_documented_heuristic():
    assert DEFAULT_RULE(1.0) == 0.5
    assert DEFAULT_RULE(0.1) == 0.9 and DEFAULT_RULE(0.01) == 0.9  # capped
    assert DEFAULT_RULE(0.5) == round(0.5 - 0.4 * np.log10(0.5), 3)
    f = np.array([0.01, 0.05, 0.1, 0.3, 0.7, 1.0])
    assert np.all(np.diff(DEFAULT_RULE.evaluate(f)) <= 0)  # larger alpha for smaller f
    with pytest.raises(ValueError, match=r"fraction must lie in \(0, 1\]"):
        DEFAULT_RULE(0.0)


def test_loglinear_fit_recovers_a_line_in_log_f_and_clips():
    f = np.array([0.05, 0.1, 0.2, 0.5, 1.0])
    y = 0.3 - 0.2 * np.log(f)
    rule = fit_alpha_rule(f, np.clip(y, 0, 1), dataset="digits", model="m", method="random")
    assert rule.kind == "loglinear"
    assert rule.a == pytest.approx(0.3, abs=1e-9) and rule.b == pytest.approx(-0.2, abs=1e-9)
    assert rule.fit["rmse"] == pytest.approx(0.0, abs=1e-9)
    assert rule(0.001) == 1.0 and 0 <= rule(1.0) <= 1  # clipped to [0, 1]
    assert "fit digits/m/random" in rule.label


def test_weights_follow_the_uncertainty_and_one_fraction_is_constant():
    f, y = [0.1, 0.5, 1.0], [0.9, 0.5, 0.0]
    sure_small = fit_alpha_rule(f, y, sd=[0.0, 0.5, 0.5])
    sure_large = fit_alpha_rule(f, y, sd=[0.5, 0.5, 0.0])
    assert abs(sure_small(0.1) - 0.9) < abs(sure_large(0.1) - 0.9)
    const = fit_alpha_rule([0.2, 0.2], [0.4, 0.6])
    assert const.b == 0 and const(0.01) == const(1.0) == 0.5


def test_logistic_fit_is_monotone_and_bounded():
    f = np.array([0.05, 0.1, 0.2, 0.5, 1.0])
    y = np.array([1.0, 0.9, 0.7, 0.3, 0.1])
    rule = fit_alpha_rule(f, y, kind="logistic")
    vals = rule.evaluate(f)
    assert np.all(np.diff(vals) < 0) and np.all((vals >= 0) & (vals <= 1))
    assert np.max(np.abs(vals - y)) < 0.15
    with pytest.raises(ValueError, match="kind.*loglinear, logistic"):
        fit_alpha_rule(f, y, kind="spline")


def _grid_frame():
    """Synthetic runs: accuracy peaks at alpha 0.8 for f=0.1 and at 0.2 for f=1, with seed noise."""
    rng = np.random.default_rng(0)
    rows = []
    for f, peak in ((0.1, 0.8), (0.3, 0.5), (1.0, 0.2)):
        for seed in range(3):
            for a in np.round(np.linspace(0, 1, 11), 1):
                rows.append(dict(method="random", fraction=f, alpha=a, seed=seed, status="done",
                                 final_acc=90 - 20 * (a - peak) ** 2 + rng.normal(0, 0.05)))
    return pd.DataFrame(rows)


def test_best_alpha_per_fraction_with_bootstrap_uncertainty():
    best = best_alpha(_grid_frame(), n_boot=200)
    assert list(best.fraction) == [0.1, 0.3, 1.0]
    assert list(best.best_alpha) == [0.8, 0.5, 0.2]
    assert (best.n_seeds == 3).all()
    assert (best.boot_lo <= best.best_alpha).all() and (best.best_alpha <= best.boot_hi).all()
    assert (best.boot_sd < 0.1).all() and best.acc_at_0.notna().all()
    noisy = _grid_frame()
    noisy.loc[noisy.seed == 1, "final_acc"] += np.where(noisy.loc[noisy.seed == 1, "alpha"] == 0.0, 50, 0)
    assert best_alpha(noisy, n_boot=200).boot_sd.max() > 0  # a seed that disagrees shows as spread


def test_rules_save_load_merge_and_lookup(tmp_path):
    best = pd.concat([best_alpha(_grid_frame()).assign(method=m) for m in ("random", "el2n")])
    rules = fit_rules(best, "digits", "convnet_small")
    assert set(rules) == {"random", "el2n", "*"}
    path, = save_rules(rules, tmp_path)
    assert path == rules_path(tmp_path, "digits") == tmp_path / "alpha_rules" / "digits.json"
    assert set(json.loads(path.read_text())["rules"]) == {"convnet_small/random", "convnet_small/el2n",
                                                          "convnet_small/*"}
    other = fit_rules(best[best.method == "random"], "digits", "convnet")
    save_rules(other, tmp_path)  # merged, not overwritten
    loaded = load_rules(tmp_path, "digits")
    assert set(loaded) == {"convnet_small/random", "convnet_small/el2n", "convnet_small/*", "convnet/random"}
    assert loaded["convnet_small/random"] == rules["random"]
    assert rule_for(tmp_path, "digits", "convnet_small", "random") == rules["random"]
    assert rule_for(tmp_path, "digits", "convnet_small", "forgetting") == rules["*"]  # pooled fallback
    assert rule_for(tmp_path, "digits", "resnet8", "random") is DEFAULT_RULE
    assert rule_for(tmp_path, "fashion_mnist", "convnet_small", "random") is DEFAULT_RULE
    assert rule_for(None, "digits", "convnet_small", "random") is DEFAULT_RULE
    assert rules["random"](0.1) > rules["random"](1.0)


def test_auto_alpha_resolves_from_the_store_and_falls_back(tmp_path):
    # no fit: the default rule, named in the config
    cfgs = expand_grid(BASE, {"fraction": [0.1, 1.0], "alpha": [0.0, "auto"]}, store=tmp_path)
    auto = [c for c in cfgs if c.alpha_rule is not None]
    assert [c.alpha for c in auto] == [DEFAULT_RULE(0.1), DEFAULT_RULE(1.0)]
    assert all(c.alpha_rule.startswith("default") for c in auto)
    assert [c.alpha for c in cfgs if c.alpha_rule is None] == [0.0, 0.0]
    # a fitted rule for this dataset/model/method wins
    rule = AlphaRule("loglinear", 0.2, -0.1, dataset="digits", model="convnet_small", method="random")
    save_rules({"random": rule}, tmp_path)
    cfg, = expand_grid(BASE, {"fraction": [0.2], "alpha": ["auto"]}, store=tmp_path)
    assert cfg.alpha == rule(0.2) and cfg.alpha_rule == rule.label
    # the numeric alpha decides the run: the same run asked for by value shares its key
    assert cfg.key() == RunConfig(**BASE, fraction=0.2, alpha=rule(0.2)).key()
    assert resolve_auto_alpha([{**BASE, "fraction": 0.5, "alpha": 0.3}], tmp_path)[0]["alpha"] == 0.3


@pytest.mark.parametrize("bad", ["autoo", "AUTO", "", None, True])
def test_bad_alpha_values_are_named(bad, tmp_path):
    with pytest.raises(ValueError, match=r"alpha must be a number in \[0, 1\] or 'auto'"):
        expand_grid(BASE, {"alpha": [bad]}, store=tmp_path)
    with pytest.raises(ValueError, match=r"alpha must be a number in \[0, 1\] or 'auto'"):
        resolve_alpha({**BASE, "alpha": bad})


def test_auto_cannot_reach_a_run_config_unresolved():
    with pytest.raises(ValueError, match="alpha='auto' is resolved before.*resolve_auto_alpha"):
        RunConfig.from_dict({**BASE, "alpha": "auto"})
    with pytest.raises(ValueError, match="alpha.*needs a teacher"):
        expand_grid({**BASE, "teacher": None}, {"alpha": ["auto"]})


def test_records_hold_numeric_alpha_and_rule(tmp_path):
    from kdlib.study import load_records, run_grid

    cfgs = expand_grid({**BASE, "train": TrainConfig(epochs=1, batch_size=64, lr=0.05, schedule="cosine")},
                       {"fraction": [0.1], "alpha": ["auto"]}, store=tmp_path)
    df = run_grid(cfgs, tmp_path, progress=False)
    assert df.alpha.tolist() == [DEFAULT_RULE(0.1)] and df.alpha_rule.str.startswith("default").all()
    rec = load_records(tmp_path)
    assert rec.alpha.tolist() == [DEFAULT_RULE(0.1)] and rec.alpha_rule.str.startswith("default").all()


STUDY_PARAMS = dict(dataset="digits", model="convnet_small", teacher="convnet", tau=4.0, seeds=[0, 1, 2],
                    alphas=[round(a, 1) for a in np.linspace(0, 1, 11)], n_boot=200, rule_kind="loglinear")


def test_study_rules_follow_the_best_alpha_across_fractions():
    _, rules = fit_study_rules(_grid_frame(), STUDY_PARAMS)
    assert rules["random"](0.1) > rules["random"](1.0)


def test_study_best_alpha_carries_the_gain_over_no_kd():
    best, _ = fit_study_rules(_grid_frame(), STUDY_PARAMS)
    assert np.allclose(best["gain"], best["best_acc"] - best["acc_at_0"])
