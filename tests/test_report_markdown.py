"""kdlib.report's markdown tables for the results READMEs: the verdict table and the per-method table."""
from __future__ import annotations

import pandas as pd
import pytest

from kdlib.report import method_markdown, verdict_markdown


@pytest.fixture
def verdict_table() -> str:
    rows = [{"claim": "kd_improves", "dataset": "fashion_mnist", "model": "resnet8", "teacher": "resnet8",
             "budget": "20 epochs", "notes": "KD at alpha=0.5", "verdict": "holds", "cells_holds": 2.0,
             "cells_fails": 0.0, "cells_inconclusive": 1.0, "seeds": "3", "deciding_cells": "random f=0.05: +3.8"},
            {"claim": "half_beats_full", "dataset": None, "model": None, "teacher": None, "budget": None,
             "notes": None, "verdict": "inconclusive", "cells_holds": None, "cells_fails": None,
             "cells_inconclusive": None, "seeds": None, "deciding_cells": None}]
    return verdict_markdown(pd.DataFrame(rows))


def test_verdict_row_bolds_the_verdict(verdict_table):
    assert "| **holds** |" in verdict_table.splitlines()[2]


def test_verdict_row_counts_cells(verdict_table):
    assert "| 2/0/1 |" in verdict_table.splitlines()[2]


def test_verdict_row_names_the_context(verdict_table):
    assert "fashion_mnist, resnet8, resnet8, 20 epochs, KD at alpha=0.5" in verdict_table.splitlines()[2]


def test_verdict_row_without_runs_says_so(verdict_table):
    assert verdict_table.splitlines()[3].startswith("| half_beats_full | no runs | **inconclusive** | -/-/- |")


@pytest.fixture
def method_table() -> list[str]:
    runs = pd.DataFrame([
        *({"method": "random", "fraction": 0.1, "alpha": a, "seed": s, "final_acc": 80 + 5 * a + s,
           "runtime.device": "cuda:0"} for a in (0.0, 0.5) for s in (0, 1, 2)),
        *({"method": "el2n", "fraction": 0.1, "alpha": a, "seed": s, "final_acc": 60 + 20 * a,
           "runtime.device": "cpu"} for a in (0.0, 0.5) for s in (0, 1, 2)),
        {"method": "el2n", "fraction": 0.3, "alpha": 0.5, "seed": 0, "final_acc": 99.0, "runtime.device": "cpu"}])
    cells = pd.DataFrame([
        {"claim": "kd_improves", "method": "el2n", "fraction": 0.1, "mean": 10.0, "ci_lo": 9.0, "ci_hi": 11.0,
         "verdict": "holds"},
        {"claim": "random_matches", "method": "el2n", "fraction": 0.1, "mean": 12.5, "ci_lo": None, "ci_hi": None,
         "verdict": "inconclusive"}])
    return method_markdown(runs, cells, 0.1).splitlines()


def test_method_table_sorts_by_kd_accuracy(method_table):
    assert [r.split(" | ")[0] for r in method_table[2:]] == ["| random", "| el2n"]


def test_method_table_gives_mean_and_sd(method_table):
    assert "| 83.50 ± 1.00 |" in method_table[2]


def test_method_table_keeps_to_its_fraction(method_table):
    assert "| 70.00 ± 0.00 |" in method_table[3]


def test_method_table_quotes_the_gain_cell(method_table):
    assert "| +10.00 [+9.00, +11.00] | holds |" in method_table[3]


def test_method_table_omits_a_missing_interval(method_table):
    assert "| +12.50 | inconclusive |" in method_table[3]


def test_method_table_names_the_device_kind(method_table):
    assert method_table[2].endswith("| 3/3 | cuda |")


def test_method_table_names_the_device_where_recorded():
    runs = pd.DataFrame([{"method": "random", "fraction": 0.1, "alpha": a, "seed": 0, "final_acc": 80.0,
                          "runtime.device": "cpu", "runtime.device_name": "Intel(R) Xeon(R) Processor"}
                         for a in (0.0, 0.5)])
    assert method_markdown(runs, pd.DataFrame(columns=["claim", "method", "fraction"]), 0.1).splitlines()[2].endswith(
        "| Intel Xeon |")


def test_verdict_table_has_the_same_device_view():
    table = verdict_markdown(pd.DataFrame([{"claim": "kd_improves", "verdict": "holds", "cells_holds": 1,
                                            "cells_fails": 0, "cells_inconclusive": 0, "seeds": "5",
                                            "verdict_same_device": "inconclusive", "cells_same_device": "0/0/1"}]))
    assert "| **holds** | 1/0/0 | inconclusive 0/0/1 |" in table
