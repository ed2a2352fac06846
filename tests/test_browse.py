"""The results browser driven headless: set widget values, check what is plotted and tabled."""
import itertools

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from kdlib.browse import ResultsBrowser, label  # noqa: E402


def records() -> pd.DataFrame:
    rows = []
    grid = itertools.product(["digits", "fashion_mnist"], ["random", "el2n"], [0.1, 0.5, 1.0], [0.0, 0.5],
                             [0, 1])
    for i, (dataset, method, f, alpha, seed) in enumerate(grid):
        rows.append(dict(key=f"k{i}", status="done", dataset=dataset, model="convnet_small", method=method,
                         fraction=f, alpha=alpha, teacher="convnet" if alpha > 0 else None, teacher_fraction=1.0,
                         label_noise=0.0, seed=seed, final_acc=50 + 40 * f + 5 * alpha + seed,
                         best_acc=60 + 30 * f, n_train=int(1437 * f), noisy_kept=0, teacher_acc=None))
    rows.append(dict(key="bad", status="failed", dataset="digits", model="convnet_small", method="random",
                     fraction=0.1, alpha=0.5, teacher="convnet", teacher_fraction=1.0, label_noise=0.0, seed=2,
                     final_acc=None, best_acc=None, error="loss became nan"))
    return pd.DataFrame(rows)


def test_widgets_exist_and_everything_shows_by_default():
    b = ResultsBrowser(records())
    for name in ("dataset", "method", "fraction", "alpha", "teacher", "seed", "hue", "plot", "table"):
        assert name in b.widgets
    assert b.widgets["fraction"].options == ("0.1", "0.5", "1")
    assert b.widgets["teacher"].options == ("none", "convnet")
    assert len(b.filtered()) == 49 and len(b.plotted) == 48  # the failed run is listed, not drawn
    assert b.figure is not None
    assert bytes(b.widgets["plot"].value).startswith(b"\x89PNG")  # drawn into an Image widget, not an Output widget
    assert b.table["n"].sum() == 48
    assert "48 plotted" in b.widgets["count"].value


def test_filters_drive_plot_and_table_together():
    b = ResultsBrowser(records())
    b.widgets["dataset"].value = ("digits",)
    b.widgets["method"].value = ("el2n",)
    b.widgets["fraction"].value = ("0.1", "1")
    for frame in (b.plotted, b.table):
        assert set(frame["dataset"]) == {"digits"} and set(frame["method"]) == {"el2n"}
        assert set(frame["fraction"]) == {0.1, 1.0}
    assert len(b.plotted) == 2 * 2 * 2  # fractions x alphas x seeds
    assert len(b.table) == 4 and (b.table["n"] == 2).all()
    expected = records().query("dataset == 'digits' and method == 'el2n' and fraction in (0.1, 1.0)")
    assert sorted(b.plotted["key"]) == sorted(expected["key"])
    row = b.table[(b.table.fraction == 0.1) & (b.table.alpha == 0.5)].iloc[0]
    assert row["mean"] == pytest.approx(expected.query("fraction == 0.1 and alpha == 0.5").final_acc.mean())
    assert "el2n" in b.widgets["table"].value and "fashion_mnist" not in b.widgets["table"].value
    b.widgets["teacher"].value = ("none",)  # no-KD runs: teacher is missing
    assert set(b.plotted["alpha"]) == {0.0} and b.plotted["teacher"].isna().all()
    b.widgets["method"].value = ()  # an empty selection means all
    assert set(b.plotted["method"]) == {"random", "el2n"}


def test_no_match_clears_plot_and_table():
    b = ResultsBrowser(records())
    b.widgets["dataset"].value = ("fashion_mnist",)
    b.widgets["seed"].value = ("2",) if "2" in b.widgets["seed"].options else ()
    b.widgets["fraction"].value = ("0.5",)
    b.widgets["alpha"].value = ("0.5",)
    b.widgets["teacher"].value = ("none",)
    assert b.filtered().empty and b.plotted.empty and b.table.empty and b.figure is None
    assert bytes(b.widgets["plot"].value) == b"" and "no finished runs" in b.widgets["message"].value


def test_runs_table_hue_and_value_switch():
    b = ResultsBrowser(records())
    b.widgets["table_kind"].value = "runs"
    assert len(b.table) == 49 and "failed" in set(b.table.status) and "error" in b.table
    b.widgets["seed"].value = ("2",)
    assert list(b.table.key) == ["bad"] and b.plotted.empty
    b.widgets["seed"].value = ()
    b.widgets["hue"].value = "alpha"
    b.widgets["value"].value = "best_acc"
    legend = [t.get_text() for t in b.figure.axes[0].get_legend().get_texts()]
    assert {t.split(",")[0] for t in legend} == {"0", "0.5"}
    assert b.figure.axes[0].get_ylabel().endswith("[best_acc]")


def test_browser_reads_and_reloads_a_store(tmp_path):
    from kdlib.study import expand_grid, run_grid
    from kdlib.train import TrainConfig

    base = dict(dataset="digits", model="convnet_small", teacher="convnet_small",
                train=TrainConfig(epochs=1, batch_size=64, lr=0.05, schedule="cosine", eval_every=1))
    run_grid(expand_grid(base, {"fraction": [0.1, 0.2], "seed": [0]}), tmp_path, progress=False)
    b = ResultsBrowser(tmp_path)
    assert sorted(b.plotted.fraction) == [0.1, 0.2]
    b.widgets["fraction"].value = ("0.2",)
    run_grid(expand_grid(base, {"fraction": [0.2], "seed": [1]}), tmp_path, progress=False)
    b.widgets["reload"].click()
    assert b.widgets["fraction"].value == ("0.2",)  # kept across the reload
    assert sorted(b.plotted.seed) == [0, 1] and set(b.table.fraction) == {0.2}
    assert "of 3 runs" in b.widgets["count"].value  # the count follows the reload


def test_empty_store_and_labels(tmp_path):
    b = ResultsBrowser(tmp_path)
    assert b.plotted.empty and b.table.empty and b.figure is None
    assert label(None) == label(np.nan) == "none" and label(0.10) == "0.1" and label(3) == "3"


def test_plot_splits_lines_by_settings_it_does_not_show():
    b = ResultsBrowser(records())  # two datasets, colour = method: a line per method and dataset, never pooled
    assert b.split_columns(b.plotted, "method") == ["dataset"]
    legend = [t.get_text() for t in b.figure.axes[0].get_legend().get_texts()]
    assert "el2n, dataset=digits, KD" in legend


def test_plot_is_refused_when_splitting_would_draw_too_many_lines():
    df = records().assign(model=[f"m{i % 13}" for i in range(49)])
    b = ResultsBrowser(df)
    assert b.figure is None and "select fewer values" in b.widgets["message"].value


def test_kd_is_dashed_and_no_kd_solid():
    b = ResultsBrowser(records())
    styles = {line.get_label().rsplit(", ", 1)[1]: line.get_linestyle() for line in b.figure.axes[0].get_lines()}
    assert styles == {"KD": "--", "no KD": "-"}


def test_no_match_hides_the_image_instead_of_a_broken_one():
    b = ResultsBrowser(records())
    b.widgets["seed"].value = ("2",)  # only the failed run
    assert b.widgets["plot"].layout.display == "none"


def test_clear_button_empties_every_filter():
    b = ResultsBrowser(records())
    b.widgets["method"].value = ("el2n",)
    b.widgets["seed"].value = ("0",)
    b.widgets["clear"].click()
    assert all(b.widgets[c].value == () for c in b.filters) and len(b.plotted) == 48


def test_multi_selects_show_up_to_ten_rows():
    df = records().assign(seed=[i % 10 for i in range(49)])
    assert ResultsBrowser(df).widgets["seed"].rows == 10


def test_table_hides_single_valued_columns_and_names_them():
    b = ResultsBrowser(records())
    html = b.widgets["table"].value
    assert "same in every row: model = convnet_small" in html and "<th>model</th>" not in html


def test_importing_the_browser_loads_no_torch_seaborn_or_scipy():
    import subprocess
    import sys

    code = "import sys, kdlib.browse; print(sorted(m for m in ('torch', 'seaborn', 'scipy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
