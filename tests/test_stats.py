"""kdlib.stats: golden values on tiny arrays, checked against scipy.stats and by hand."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from kdlib import report, stats

X = [1.0, 2.0, 3.0]  # mean 2, sd 1, n 3: t_{0.975, 2} = 4.302653, half-width 4.302653 / sqrt(3) = 2.484138


def test_t_halfwidth_golden_value():
    assert float(stats.t_halfwidth(1.0, 3)) == pytest.approx(2.4841377117503)


def test_t_halfwidth_matches_scipy_interval():
    ci = sps.ttest_1samp(X, 0.0).confidence_interval(0.95)
    assert float(stats.t_halfwidth(1.0, 3)) == pytest.approx((ci.high - ci.low) / 2)


def test_t_halfwidth_is_nan_for_one_seed():
    assert math.isnan(float(stats.t_halfwidth(1.0, 1)))


def test_mean_ci_golden_values():
    assert stats.mean_ci(X) == pytest.approx((2.0, -0.4841377117503, 4.4841377117503))


def test_paired_test_one_sided_t_golden_value():
    # t = 2 / (1 / sqrt(3)) = 3.4641 with 2 degrees of freedom
    assert stats.paired_test(X)["p_greater"] == pytest.approx(0.0370899501137)


def test_paired_test_threshold_matches_scipy():
    expected = sps.ttest_1samp(X, 0.5, alternative="greater").pvalue
    assert stats.paired_test(X, threshold=0.5)["p_greater"] == pytest.approx(expected)


def test_paired_test_wilcoxon_exact_golden_value():
    # three positive differences: the all-positive sign pattern has probability 1/8 under the null
    assert stats.paired_test(X)["p_wilcoxon_greater"] == pytest.approx(0.125)


def test_paired_test_bootstrap_is_within_the_range_of_the_seeds():
    t = stats.paired_test(X)
    assert (t["boot_lo"], t["boot_hi"]) == (1.0, 3.0)


def test_paired_test_without_spread_is_decided_by_the_mean():
    t = stats.paired_test([0.5, 0.5, 0.5])
    assert (t["p_greater"], t["p_less"]) == (0.0, 1.0)


def test_paired_test_with_one_seed_has_no_p_value():
    assert math.isnan(stats.paired_test([1.0])["p_greater"])


def test_bh_adjust_golden_values():
    # sorted 0.01, 0.03, 0.04, 0.2 -> 0.04, 0.06, 0.0533, 0.2 -> step-up minimum 0.04, 0.0533, 0.0533, 0.2
    q = stats.bh_adjust([0.01, 0.04, 0.03, 0.2])
    assert q == pytest.approx([0.04, 0.16 / 3, 0.16 / 3, 0.2])


def test_bh_adjust_ignores_nan():
    q = stats.bh_adjust([0.01, math.nan, 0.02])
    assert np.isnan(q[1]) and q[[0, 2]] == pytest.approx([0.02, 0.02])


def test_bad_confidence_is_named():
    with pytest.raises(ValueError, match="confidence must lie in"):
        stats.t_halfwidth(1.0, 3, confidence=95)


def test_report_summary_uses_the_t_interval():
    df = pd.DataFrame({"status": "done", "g": ["a"] * 3, "final_acc": X})
    assert report.summarize(df, ["g"])["ci95"].iloc[0] == pytest.approx(2.4841377117503)


def test_report_paired_difference_has_bh_q_values():
    rows = [{"status": "done", "g": g, "seed": s, "arm": arm, "final_acc": v}
            for g, d in (("a", X), ("b", [0.1, -0.1, 0.05])) for s, x in enumerate(d)
            for arm, v in (("t", 10 + x), ("c", 10.0))]
    out = report.paired_difference(pd.DataFrame(rows), ["g"], "arm", "t", "c")
    p = [sps.ttest_1samp(X, 0).pvalue, sps.ttest_1samp([0.1, -0.1, 0.05], 0).pvalue]
    assert out["q"].tolist() == pytest.approx(list(sps.false_discovery_control(p)))


def test_paired_test_treats_float_noise_around_the_threshold_as_a_tie():
    t = stats.paired_test([-1e-17, -1e-17, -1e-17])
    assert (t["p_greater"], t["p_less"]) == (1.0, 1.0)


# ---------------------------------------------------------------------------------------- exact sign-flip test
def test_sign_flip_three_positive_differences_reach_one_eighth():
    assert stats.sign_flip_test([1.0, 2.0, 3.0]) == 0.125


def test_sign_flip_golden_value_counted_by_hand():
    # obs = 11 of |d| total 15: a pattern reaches it when the flipped |d| sum to <= 2: {}, {1}, {2}: 3 of 32
    assert stats.sign_flip_test([1.0, -2.0, 3.0, 4.0, 5.0]) == pytest.approx(3 / 32)


def test_sign_flip_two_sided_doubles_the_one_sided_extreme():
    assert stats.sign_flip_test([1.0, 2.0, 3.0], alternative="two-sided") == 0.25


def test_sign_flip_less_mirrors_greater():
    assert stats.sign_flip_test([-1.0, -2.0, -3.0, -4.0], alternative="less") == 1 / 16


def test_sign_flip_against_a_threshold_shifts_the_differences():
    # 1, 2, 3 against 1.5: -0.5, 0.5, 1.5; sum 1.5 reached by 3 of 8 patterns (+-0.5 either way with +1.5)
    assert stats.sign_flip_test([1.0, 2.0, 3.0], threshold=1.5) == pytest.approx(3 / 8)


def test_sign_flip_all_at_the_threshold_is_one():
    assert stats.sign_flip_test([0.5, 0.5, 0.5], threshold=0.5) == 1.0


def test_sign_flip_above_the_exact_limit_is_monte_carlo_with_the_observed_pattern_counted():
    assert stats.sign_flip_test(np.ones(stats.EXACT_MAX + 4), n_perm=999) == pytest.approx(1 / 1000)


def test_sign_flip_unknown_alternative_is_named():
    with pytest.raises(ValueError, match="allowed values for 'alternative'"):
        stats.sign_flip_test([1.0, 2.0], alternative="bigger")


def test_sign_flip_bad_n_perm_is_named():
    with pytest.raises(ValueError, match="n_perm"):
        stats.sign_flip_test([1.0, 2.0], n_perm=0)


def test_smallest_p_of_three_seeds_is_one_eighth():
    assert stats.smallest_p(3) == 0.125


def test_five_seeds_are_needed_one_sided_at_five_percent():
    assert stats.seeds_needed(0.05) == 5


def test_six_seeds_are_needed_two_sided_at_five_percent():
    assert stats.seeds_needed(0.05, "two-sided") == 6


def test_seeds_needed_bad_level_is_named():
    with pytest.raises(ValueError, match="level"):
        stats.seeds_needed(1.5)


def test_paired_test_reports_the_exact_p_beside_the_t_test():
    assert stats.paired_test(X)["p_exact_greater"] == 0.125
