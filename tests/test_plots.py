"""kdlib.plots: figures that order or label what they draw, checked on a small table."""
import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from kdlib import plots  # noqa: E402


@pytest.fixture
def one_fraction():
    """Three methods at f = 0.05, no KD and KD at alpha 0.5, two seeds; with KD, random best and el2n worst."""
    kd = {"random": 86.0, "moderate": 84.0, "el2n": 60.0}
    rows = [dict(method=m, fraction=0.05, alpha=a, seed=s, status="done", dataset="fashion_mnist", model="resnet8",
                 label_noise=0.0, teacher="resnet8", teacher_fraction=1.0, tau=4.0,
                 final_acc=(acc if a else acc - 5) + s)
            for m, acc in kd.items() for a in (0.0, 0.5) for s in (0, 1)]
    return pd.DataFrame(rows)


def test_method_ranking_puts_the_best_kd_method_on_top(one_fraction):
    ax = plots.method_ranking(one_fraction).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()][-1] == "random (2)"


def test_method_ranking_puts_the_worst_kd_method_at_the_bottom(one_fraction):
    ax = plots.method_ranking(one_fraction).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "el2n (2)"


def test_method_ranking_draws_one_panel_per_fraction(one_fraction):
    two = pd.concat([one_fraction, one_fraction.assign(fraction=0.3)], ignore_index=True)
    assert len(plots.method_ranking(two).axes) == 2


def test_kd_gain_heatmap_draws_gains_without_q_values():
    gain = pd.DataFrame({"method": ["random", "el2n"], "fraction": [0.05, 0.05], "mean_diff": [3.0, 12.0],
                         "q": [float("nan")] * 2, "alpha": [0.5, 0.5]})  # one seed: no test, no q
    texts = [t.get_text() for t in plots.kd_gain_heatmap(gain).axes[0].texts]
    assert texts == ["+12.0", "+3.0"]


def test_kd_gain_heatmap_stars_a_cell_the_verdicts_call_holding():
    # old rule: a star for a two-sided q below 0.05 (0.052: none) although the verdict held; the star is the verdict
    gain = pd.DataFrame({"method": ["forgetting_zero"], "fraction": [0.05], "mean_diff": [8.3], "q": [0.052],
                         "alpha": [0.5], "verdict": ["holds"]})
    assert [t.get_text() for t in plots.kd_gain_heatmap(gain).axes[0].texts] == ["+8.3*"]


def test_kd_gain_heatmap_does_not_star_an_inconclusive_cell_with_a_small_q():
    gain = pd.DataFrame({"method": ["el2n"], "fraction": [0.05], "mean_diff": [29.9], "q": [0.01], "alpha": [0.5],
                         "verdict": ["inconclusive"]})
    assert [t.get_text() for t in plots.kd_gain_heatmap(gain).axes[0].texts] == ["+29.9"]
