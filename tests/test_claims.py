"""kdlib.claims: verdicts on constructed run tables whose answer is known."""

import numpy as np
import pandas as pd
import pytest

from kdlib import claims

BASE = {"dataset": "digits", "model": "convnet_small", "status": "done", "train.budget": "epochs",
        "train.epochs": 15, "label_noise": 0.0, "teacher_fraction": 1.0, "tau": 4.0, "kd_loss": "kd"}


def runs(cells, seeds=range(5), noise=0.1, rng_seed=0, **extra):
    """Rows for ``cells``: (method, fraction, alpha, teacher, mean accuracy[, teacher_fraction]); per-seed noise of
    sd ``noise`` shared by every cell of a seed (as a seed's data order would be) plus a small private part."""
    rng = np.random.default_rng(rng_seed)
    shared = {s: rng.normal(0, noise) for s in seeds}
    rows = []
    for cell in cells:
        method, f, alpha, teacher, acc, *ft = cell
        for s in seeds:
            rows.append({**BASE, **extra, "method": method, "fraction": f, "alpha": alpha,
                         "teacher": teacher if alpha > 0 else None, "seed": s,
                         "teacher_fraction": ft[0] if ft else 1.0,
                         "final_acc": acc + shared[s] + rng.normal(0, noise / 3)})
    return pd.DataFrame(rows)


def sweep(kd_shift, seeds=range(5), noise=0.1, fractions=(0.1, 0.5), methods=("random", "el2n")):
    cells = [("random", 1.0, 0.0, None, 95.0), ("random", 1.0, 0.5, "t", 95.0 + kd_shift)]
    for m in methods:
        for f in fractions:
            cells += [(m, f, 0.0, None, 80 + 10 * f), (m, f, 0.5, "t", 80 + 10 * f + kd_shift)]
    return runs(cells, seeds, noise)


def verdict(df, claim, **cfg):
    table, _ = claims.verdicts(df, claims.ClaimConfig(**cfg), [claim])
    return table["verdict"].tolist()


def test_clear_gain_holds():
    assert verdict(sweep(+2.0), "kd_improves") == ["holds"]


def test_clear_loss_fails():
    assert verdict(sweep(-2.0), "kd_improves") == ["fails"]


def test_tie_fails_a_claim_of_improvement_within_the_margin():
    assert verdict(sweep(0.0, seeds=range(8)), "kd_improves", margin=0.5) == ["fails"]


def test_tie_with_noise_is_inconclusive():
    assert verdict(sweep(0.0, noise=3.0), "kd_improves") == ["inconclusive"]


def test_too_few_seeds_is_inconclusive():
    assert verdict(sweep(+2.0, seeds=range(2)), "kd_improves") == ["inconclusive"]


def test_too_few_seeds_is_named_in_the_cells():
    _, cells = claims.verdicts(sweep(+2.0, seeds=range(2)), claims=["kd_improves"])
    assert cells["why"].str.startswith("too few seeds").all()


def test_tie_matches_for_random_against_other_methods():
    assert verdict(sweep(+2.0, seeds=range(8)), "random_matches") == ["holds"]


def test_random_clearly_worse_fails():
    df = sweep(+2.0)
    df.loc[(df.method == "el2n") & (df.alpha > 0), "final_acc"] += 3.0
    assert verdict(df, "random_matches") == ["fails"]


def test_one_failing_cell_fails_the_claim_and_is_named():
    df = sweep(+2.0)
    df.loc[(df.method == "el2n") & (df.fraction == 0.5) & (df.alpha > 0), "final_acc"] -= 4.0
    table, _ = claims.verdicts(df, claims=["kd_improves"])
    assert table["deciding_cells"].iloc[0].startswith("el2n f=0.5")


def test_unlike_runs_are_not_pooled():
    # 8 seeds: the two contexts are one BH family of 8 cells, 4 of them null for each side
    other = sweep(-2.0, seeds=range(8)).assign(**{"train.epochs": 30})
    assert sorted(verdict(pd.concat([sweep(+2.0, seeds=range(8)), other]), "kd_improves")) == ["fails", "holds"]


def test_benjamini_hochberg_spares_no_cell():
    # 20 cells: 19 with no gain and one with a modest one; its uncorrected p is below 0.05, its q is not
    rng = np.random.default_rng(1)
    cells = []
    for i in range(20):
        gain = 0.6 if i == 0 else 0.0
        cells.append(claims.Cell(f"c{i}", "greater", pd.Series(gain + rng.normal(0, 0.5, 6)), {}))
    out = claims.decide(cells, claims.ClaimConfig(margin=0.0))
    assert out.loc[0, "p_hold"] < 0.05 and out.loc[0, "q_hold"] > 0.05


def test_half_with_kd_matching_full_data_holds():
    df = runs([("random", 1.0, 0.0, None, 95.0), ("random", 0.5, 0.5, "t", 95.1)], seeds=range(6))
    assert verdict(df, "half_beats_full") == ["holds"]


def test_half_with_kd_far_below_full_data_fails():
    df = runs([("random", 1.0, 0.0, None, 95.0), ("random", 0.5, 0.5, "t", 92.0)], seeds=range(6))
    assert verdict(df, "half_beats_full") == ["fails"]


def test_larger_teacher_that_helps_fails_claim_four():
    df = runs([("random", 0.1, 0.5, "convnet_small", 80.0), ("random", 0.1, 0.5, "convnet_large", 84.0)])
    assert verdict(df, "small_teacher") == ["fails"]


def test_larger_teacher_that_ties_holds_claim_four():
    df = runs([("random", 0.1, 0.5, "convnet_small", 80.0), ("random", 0.1, 0.5, "convnet_large", 80.0)],
              seeds=range(6))
    assert verdict(df, "small_teacher") == ["holds"]


def test_more_teacher_data_helps_holds_claim_five():
    df = runs([("random", 0.1, 0.5, "t", 80.0, 0.25), ("random", 0.1, 0.5, "t", 82.0, 0.5),
               ("random", 0.1, 0.5, "t", 84.0, 1.0)])
    assert verdict(df, "teacher_data") == ["holds"]


def test_best_alpha_growing_as_f_shrinks_holds_claim_three():
    # at f = 0.1 the best alpha is 0.9, at f = 0.5 it is 0.3, at f = 1 it is 0.3
    peak = {0.1: 0.9, 0.5: 0.3, 1.0: 0.3}
    cells = [("random", f, a, "t" if a else None, 90 - 10 * abs(a - peak[f])) for f in peak for a in (0, 0.3, 0.6, 0.9)]
    assert verdict(runs(cells, noise=0.05), "alpha_grows") == ["holds"]


def test_claim_no_store_can_test_is_inconclusive():
    assert verdict(sweep(+2.0), "teacher_data") == ["inconclusive"]


def test_verdict_names_dataset_model_budget_and_seeds():
    row = claims.verdicts(sweep(+2.0), claims=["kd_improves"])[0].iloc[0]
    assert (row["dataset"], row["model"], row["teacher"], row["budget"], row["seeds"]) == (
        "digits", "convnet_small", "t", "epochs (15 epochs)", "5")


def test_bad_margin_is_named():
    with pytest.raises(ValueError, match="margin must be a number >= 0"):
        claims.ClaimConfig(margin=-1)


def frontier_table():
    # full data 90; without KD within 1 point down to f = 0.5, with KD down to f = 0.3
    cells = [("random", 1.0, 0.0, None, 90.0), ("random", 1.0, 0.5, "t", 90.5),
             ("random", 0.5, 0.0, None, 89.5), ("random", 0.5, 0.5, "t", 89.8),
             ("random", 0.3, 0.0, None, 87.0), ("random", 0.3, 0.5, "t", 89.6),
             ("random", 0.1, 0.0, None, 80.0), ("random", 0.1, 0.5, "t", 85.0)]
    return claims.frontier(runs(cells, noise=0.05))[0].iloc[0]


def test_frontier_without_kd():
    assert frontier_table()["f_no_kd"] == 0.5


def test_frontier_with_kd():
    assert frontier_table()["f_kd"] == 0.3


def test_frontier_data_saved_by_kd():
    assert frontier_table()["saved_by_kd"] == pytest.approx(0.2)


def test_theory_statements_hold_in_the_baseline_regime():
    from kdlib import theory as th

    base = th.Toy(d=10, n=100, lam=10.0, lam_t=10.0)
    table, _ = claims.theory_verdicts(base, {"baseline": {}}, [0.2, 0.5, 1.0], [0.3, 1.0], 0.2, draws=8)
    assert dict(zip(table["claim"], table["verdict"])) == {
        "theory_alpha_grows": "holds", "theory_teacher_data": "holds", "theory_kd_improves": "holds"}


def test_methods_with_and_without_a_proxy_share_a_context():
    df = sweep(+2.0)
    df["proxy_recipe"] = np.where(df.method == "el2n", "abcd1234", None)
    assert verdict(df, "random_matches") != ["inconclusive"] and len(verdict(df, "kd_improves")) == 1


def test_runtime_threads_do_not_split_a_context():
    df = sweep(+2.0)
    df["runtime.threads"] = np.arange(len(df)) % 2 + 1
    assert verdict(df, "kd_improves") == ["holds"]


def test_a_teacher_on_part_of_the_data_is_left_to_claim_five():
    df = pd.concat([sweep(+2.0), sweep(-2.0).assign(teacher_fraction=0.1).query("alpha > 0")])
    assert verdict(df, "kd_improves") == ["holds"]


def test_frontier_counts_the_seeds_of_the_pruned_runs():
    assert frontier_table()["seeds"] == 5


def test_methods_with_their_own_hyperparameters_share_a_context():
    df = sweep(+2.0)
    df["method_params.strata"] = np.where(df.method == "el2n", 50.0, np.nan)  # declared by one method only
    assert len(verdict(df, "kd_improves")) == 1


def test_random_is_compared_with_a_method_that_has_hyperparameters():
    df = sweep(+2.0)
    df["method_params.strata"] = np.where(df.method == "el2n", 50.0, np.nan)
    assert verdict(df, "random_matches") != ["inconclusive"]


def test_a_method_run_with_two_hyperparameter_sets_is_two_methods():
    df = sweep(+2.0, methods=("random", "el2n", "ccs"))
    df["method_params.strata"] = np.where(df.method == "el2n", np.where(df.seed % 2 == 0, 50.0, 10.0), np.nan)
    names = claims.prepare(df)["method"].unique()
    assert sum(n.startswith("el2n [params ") for n in names) == 2


# ------------------------------------------------------------------------ rule changes (issue 24): old vs new
def cell_table(diffs, kind="greater", **cfg):
    """One cell per list of per-seed differences, decided as one family."""
    cells = [claims.Cell(f"c{i}", kind, pd.Series(d, dtype=float), {}) for i, d in enumerate(diffs)]
    return claims.decide(cells, claims.ClaimConfig(**cfg))


def test_three_seeds_all_positive_are_inconclusive_under_the_exact_test():
    # old rule: one-sided t-test p = 0.002 and a bootstrap interval above 0: holds; the exact test's p is 1/8
    assert cell_table([[3.0, 3.5, 4.0]])["verdict"].tolist() == ["inconclusive"]


def test_three_seeds_name_the_smallest_p_they_can_reach():
    assert cell_table([[3.0, 3.5, 4.0]])["why"].iloc[0].startswith("3 seeds cannot reach q < 0.05")


def test_the_t_test_alone_would_have_called_the_three_seed_cell():
    assert cell_table([[3.0, 3.5, 4.0]])["p_t_hold"].iloc[0] < 0.01


def test_one_seed_against_the_others_keeps_five_seeds_inconclusive():
    # old rule: t-test p = 0.015 (mean 2.3, sd 1.6) and a bootstrap agreeing: holds; the sign-flip p is 2/32
    assert cell_table([[3.0, 3.0, 3.0, 3.0, -0.5]])["verdict"].tolist() == ["inconclusive"]


def test_five_positive_seeds_hold_under_the_exact_test():
    assert cell_table([[3.0, 3.0, 3.2, 2.9, 3.1]])["verdict"].tolist() == ["holds"]


def test_a_significant_gain_below_the_margin_is_equivalent_not_holding():
    # old rule checked "holds" first (q_hold = 1/256 < 0.05): holds; equivalence comes first now
    out = cell_table([[0.2, 0.21, 0.19, 0.2, 0.22, 0.18, 0.2, 0.21]], margin=0.5)
    assert (out["verdict"].iloc[0], out["why"].iloc[0].split(":")[0]) == ("fails", "equivalent")


def two_context_table():
    """Context A (15 epochs): one cell, +2 at all 5 seeds; context B (30 epochs): one cell whose seeds disagree."""
    a = runs([("random", 0.1, 0.0, None, 80.0), ("random", 0.1, 0.5, "t", 82.0)], noise=0.01)
    b = runs([("random", 0.1, 0.0, None, 80.0), ("random", 0.1, 0.5, "t", 80.0)], noise=0.01)
    b.loc[b["alpha"] > 0, "final_acc"] += [1.0, -1.0, 1.0, -1.0, 0.2]
    return pd.concat([a, b.assign(**{"train.epochs": 30})])


def test_benjamini_hochberg_family_is_the_claim_across_its_contexts():
    # old rule: BH per context: A's q = 1/32 holds alone; as one family with B's cell its q is 2/32
    table, _ = claims.verdicts(two_context_table(), claims=["kd_improves"])
    assert table["verdict"].tolist() == ["inconclusive", "inconclusive"]


def test_the_family_is_named_in_every_cell():
    _, cells = claims.verdicts(two_context_table(), claims=["kd_improves"])
    assert set(cells["family"]) == {"kd_improves: 2 testable cells in 2 context(s)"}


def test_cells_whose_seeds_cannot_reach_q_leave_the_family():
    # one 5-seed cell at p = 1/32 and three 3-seed cells at p = 1/8: kept in the family they would raise its q to
    # 1/8 (every cell inconclusive); left out (their n alone rules them out), the 5-seed cell holds
    out = cell_table([[3.0, 3.1, 2.9, 3.0, 3.2], [1.0, 1.1, 0.9], [1.0, 1.2, 0.8], [1.0, 1.1, 1.2]])
    assert out["verdict"].tolist() == ["holds", "inconclusive", "inconclusive", "inconclusive"]


# ------------------------------------------------------------------------------------------ devices in evidence
def device_sweep(devices_kd, devices_no_kd):
    """random at f = 0.1, KD +2 points, 5 seeds; the runs of each arm on the devices given per seed."""
    df = runs([("random", 0.1, 0.0, None, 80.0), ("random", 0.1, 0.5, "t", 82.0)], noise=0.01)
    df.loc[df["alpha"] > 0, "runtime.device_name"] = devices_kd
    df.loc[df["alpha"] == 0, "runtime.device_name"] = devices_no_kd
    return df


def test_a_verdict_names_the_devices_of_its_runs():
    df = device_sweep(["Intel(R) Xeon(R) Processor"] * 5, ["AMD EPYC"] * 5)
    assert claims.verdicts(df, claims=["kd_improves"])[0]["devices"].iloc[0] == "AMD EPYC; Intel Xeon"


def test_a_cell_pairing_different_devices_counts_its_seeds():
    df = device_sweep(["AMD EPYC"] * 3 + ["NVIDIA H200"] * 2, ["AMD EPYC"] * 5)
    assert claims.verdicts(df, claims=["kd_improves"])[1]["mixed_device_seeds"].iloc[0] == 2


def test_a_verdict_counts_its_cells_across_devices():
    df = device_sweep(["AMD EPYC"] * 3 + ["NVIDIA H200"] * 2, ["AMD EPYC"] * 5)
    assert claims.verdicts(df, claims=["kd_improves"])[0]["mixed_device_cells"].iloc[0] == 1


def test_the_deciding_cells_say_when_seeds_pair_devices():
    df = device_sweep(["AMD EPYC"] * 3 + ["NVIDIA H200"] * 2, ["AMD EPYC"] * 5)
    deciding = claims.verdicts(df, claims=["kd_improves"])[0]["deciding_cells"].iloc[0]
    assert "2 of its seed pairs across devices" in deciding


def test_same_device_view_keeps_only_same_device_seed_pairs():
    # all 5 seeds: holds; the same-device view keeps 3 seeds, which cannot reach q
    df = device_sweep(["AMD EPYC"] * 3 + ["NVIDIA H200"] * 2, ["AMD EPYC"] * 5)
    table = claims.with_same_device(claims.verdicts(df, claims=["kd_improves"])[0],
                                    claims.verdicts(df, claims=["kd_improves"], same_device=True)[0])
    assert (table["verdict"].iloc[0], table["verdict_same_device"].iloc[0]) == ("holds", "inconclusive")


def test_same_device_view_of_a_cell_with_no_same_device_pair_has_no_seed():
    df = device_sweep(["Intel Xeon"] * 5, ["AMD EPYC"] * 5)
    assert claims.verdicts(df, claims=["kd_improves"], same_device=True)[1]["n"].iloc[0] == 0


def test_device_label_drops_trademarks_and_processor():
    assert claims.device_label({"runtime.device_name": "Intel(R) Xeon(R) Processor"}) == "Intel Xeon"


def test_device_label_falls_back_to_the_device():
    assert claims.device_label({"runtime.device": "cuda:0"}) == "cuda:0"


def test_kd_contexts_sharing_a_no_kd_baseline_say_so():
    df = runs([("random", 0.1, 0.0, None, 80.0), ("random", 0.1, 0.5, "t", 82.0), ("random", 0.1, 0.9, "t", 82.0)])
    notes = claims.verdicts(df, claims=["kd_improves"])[0]["notes"].tolist()
    assert all("no-KD baseline shared with 1 other KD context" in n for n in notes)


def test_a_verdict_row_states_the_seeds_a_cell_needs():
    assert claims.verdicts(sweep(+2.0), claims=["kd_improves"])[0]["seeds_needed"].iloc[0] == 5


# ------------------------------------------------------------------------------- theory: the check can fail
def gram(diag_kd, k=12, spread=0.05, seed=0):
    """k draws of a 3x3 Gram: risk(0) = 1, the KD route's risk ``diag_kd`` (uncorrelated), with per-draw noise."""
    from kdlib import theory as th

    rng = np.random.default_rng(seed)
    g = np.zeros((k, 3, 3))
    g[:, 0, 0] = 1.0 + rng.normal(0, spread, k)
    g[:, 1, 1] = diag_kd + rng.normal(0, spread, k)
    return th.RiskSample(g)


def theory_cell_verdict(select, test):
    from kdlib import theory as th

    cell = claims.theory_kd_cell(0.1, *th.held_out_kd_gain(select, test))
    return claims.decide([cell], claims.ClaimConfig(margin=0.0))["verdict"].iloc[0]


def test_theory_kd_check_fails_when_the_held_out_alpha_does_not_carry_over():
    # selection draws: KD's route is 10x better (alpha* = 0.91); test draws: it is 4x worse, so KD at 0.91 loses
    assert theory_cell_verdict(gram(0.1, seed=1), gram(4.0, seed=2)) == "fails"


def test_theory_kd_check_chosen_in_sample_could_not_fail():
    # the old rule: alpha* chosen on the test draws themselves (0.2 here) never loses on average
    test = gram(4.0, seed=2)
    per = test.per_draw([0.0, test.alpha_opt()])
    assert (per[:, 0] - per[:, 1]).mean() >= 0


def test_theory_held_out_gain_refuses_the_same_draws():
    from kdlib import theory as th

    s = gram(1.0)
    with pytest.raises(ValueError, match="different draws"):
        th.held_out_kd_gain(s, s)


def test_theory_selection_draws_are_not_the_test_draws():
    from kdlib import theory as th

    toy = th.Toy(d=5, n=50, f=0.3)
    a = th.design_average(toy, 2, 0, th.SELECTION_STREAM).total
    assert not np.allclose(a, th.design_average(toy, 2, 0).total)


def test_kd_gain_table_carries_the_verdicts_of_claim_one():
    _, cells = claims.verdicts(sweep(+2.0), claims=["kd_improves"])
    assert claims.kd_gain_table(cells)["verdict"].tolist() == cells["verdict"].tolist()


def test_kd_gain_table_q_is_the_one_sided_q_of_the_verdicts():
    _, cells = claims.verdicts(sweep(+2.0), claims=["kd_improves"])
    assert claims.kd_gain_table(cells)["q"].tolist() == cells["q_hold"].tolist()


def test_kd_gain_table_keeps_the_settings_asked_for():
    _, cells = claims.verdicts(sweep(+2.0), claims=["kd_improves"])
    assert claims.kd_gain_table(cells, settings=["nope"]).empty


def test_same_device_columns_never_duplicate_a_verdict_row():
    table = pd.DataFrame([{"claim": "kd_improves", "setting_id": "a", "teacher": "t", "notes": "n",
                           "verdict": "holds"}] * 2)
    same = table.assign(verdict="inconclusive", cells_holds=0, cells_fails=0, cells_inconclusive=1).iloc[::-1]
    assert len(claims.with_same_device(table, same.iloc[:1])) == 2
