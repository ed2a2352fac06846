"""kdlib.verdict_text: README sentences written from a verdict table, saying nothing the table does not."""
from __future__ import annotations

import pandas as pd
import pytest

from kdlib import verdict_text


def row(claim="kd_improves", verdict="inconclusive", teacher="resnet8", notes="KD at alpha=0.5", holds=0, fails=0,
        inconclusive=3, seeds="3", devices="AMD EPYC", mixed=0, same="inconclusive", **extra):
    return {"claim": claim, "verdict": verdict, "dataset": "fashion_mnist", "model": "resnet8", "teacher": teacher,
            "notes": notes, "cells": holds + fails + inconclusive, "cells_holds": holds, "cells_fails": fails,
            "cells_inconclusive": inconclusive, "seeds": seeds, "seeds_needed": 5, "devices": devices,
            "mixed_device_cells": mixed, "verdict_same_device": same,
            "cells_same_device": f"{holds}/{fails}/{inconclusive}",
            "family": f"{claim}: 1 testable cells in 1 context(s)", "deciding_cells": "random f=0.05: +3.4", **extra}


@pytest.fixture
def table():
    return pd.DataFrame([
        row(),
        row(verdict="holds", notes="label noise 0.2; KD at alpha=1", holds=2, inconclusive=0, seeds="5",
            devices="AMD EPYC; Intel Xeon", mixed=1),
        row(claim="small_teacher", teacher="resnet14, resnet8", notes="teachers by size"),
        {"claim": "theory_kd_improves", "verdict": "holds", "dataset": "theory toy", "teacher": "ridge teacher",
         "notes": "regime: label noise 10%", "cells": 6, "cells_holds": 6, "cells_fails": 0, "cells_inconclusive": 0,
         "seeds": "30"}])


def test_claim_line_counts_contexts_by_verdict(table):
    line = verdict_text.claim_lines(table)[0]
    assert "2 context(s): 1 holds, 0 fails, 1 inconclusive" in line


def test_claim_line_sums_the_cells_of_its_contexts(table):
    assert "cells holds/fails/inconclusive 2/0/3" in verdict_text.claim_lines(table)[0]


def test_claim_line_states_the_seeds_a_cell_needs(table):
    assert "seeds per cell 3-5 (5 needed for a cell to be decidable)" in verdict_text.claim_lines(table)[0]


def test_claim_line_counts_cells_across_devices(table):
    assert "1 cell(s) pairing runs from different devices" in verdict_text.claim_lines(table)[0]


def test_claim_without_a_row_is_not_tested(table):
    assert "**not tested**" in verdict_text.claim_lines(table)[1]  # random_matches has no row


def test_row_line_gives_the_same_device_view(table):
    assert "same-device view: inconclusive (0/0/3)" in verdict_text.row_line(table.iloc[0])


def test_noisy_labels_findings_leave_out_the_theory_regime_named_label_noise(table):
    text = verdict_text.study_findings(table, "noisy_labels")
    bullets = [line for line in text.splitlines() if line.startswith("- ")]
    assert [b.startswith("- **holds**: `kd_improves`") for b in bullets] == [True]


def test_teacher_capacity_findings_take_claim_four(table):
    bullets = [x for x in verdict_text.study_findings(table, "teacher_capacity").splitlines() if x.startswith("- ")]
    assert len(bullets) == 1 and "`small_teacher`" in bullets[0]


def test_unknown_study_is_named():
    with pytest.raises(ValueError, match="allowed values for 'study'"):
        verdict_text.study_findings(pd.DataFrame(), "sweep")


def test_replace_block_replaces_only_between_the_markers():
    begin, end = verdict_text.BEGIN.format(name="x"), verdict_text.END.format(name="x")
    text = f"prose\n{begin}\nold\n{end}\nmore prose\n"
    assert verdict_text.replace_block(text, "x", "new") == f"prose\n{begin}\nnew\n{end}\nmore prose\n"


def test_replace_block_leaves_a_file_without_markers_alone_when_asked():
    assert verdict_text.replace_block("prose\n", "x", "new", append=False) is None


def test_wrap_indents_continuation_lines_under_the_text():
    lines = verdict_text.wrap("1. " + "word " * 40, "  ", width=40).splitlines()
    assert (lines[0][:5], lines[1][:5]) == ("  1. ", "     ")
