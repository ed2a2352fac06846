"""kdlib.plan: a profile's grids as the notebooks run them, and the compute still to do."""
from __future__ import annotations

import pytest

from kdlib.group_size import GroupPlan
from kdlib.plan import GRID_STUDIES, Throughput, estimate, rate_at, study_grid, study_params
from kdlib.study import RunConfig, TeacherConfig
from kdlib.train import total_steps

# one run alone at 1000 images/s, groups of 4 at 3000 (all members), eval forwards at 4000
CURVE = ((1, "stacked", 1000.0), (4, "stacked", 3000.0))
SPEED = Throughput(groups={("convnet_small", None): GroupPlan(4, "stacked", CURVE),
                           ("convnet_small", "convnet_small"): GroupPlan(4, "stacked", CURVE)},
                   train={"convnet_small": 1000.0}, forward={"convnet_small": 4000.0})
RECIPE = {"epochs": 3, "batch_size": 32}


def run(**kw) -> RunConfig:
    return RunConfig(dataset="digits", model="convnet_small", train=RECIPE, **kw)


@pytest.fixture(scope="module")
def quick_sweep():
    p = study_params("pruning_sweep", "quick")
    return p, study_grid("pruning_sweep", p)


def test_sweep_covers_every_method(quick_sweep):
    p, configs = quick_sweep
    assert {c.method for c in configs if c.fraction < 1} == set(p["methods"])


def test_sweep_gives_a_method_its_own_seeds(quick_sweep):
    p, configs = quick_sweep
    assert {c.seed for c in configs if c.method == "random"} == set(p["seeds_by_method"]["random"])


@pytest.fixture(scope="module")
def capacity_by_teacher():
    """The quick teacher-capacity grid at seed 0, its middle teacher given seeds 0-2."""
    p = {**study_params("teacher_capacity", "quick"), "seeds": [0], "seeds_by_teacher": {"convnet": [0, 1, 2]}}
    return study_grid("teacher_capacity", p)


def test_capacity_gives_a_teacher_its_own_seeds(capacity_by_teacher):
    assert {c.seed for c in capacity_by_teacher if c.teacher == "convnet"} == {0, 1, 2}


def test_capacity_keeps_the_other_teachers_at_seeds(capacity_by_teacher):
    assert {c.seed for c in capacity_by_teacher if c.teacher == "convnet_large"} == {0}


def test_capacity_runs_the_baseline_at_every_teachers_seeds(capacity_by_teacher):
    assert {c.seed for c in capacity_by_teacher if c.alpha == 0} == {0, 1, 2}


def test_capacity_names_an_unknown_teacher_in_seeds_by_teacher():
    p = {**study_params("teacher_capacity", "quick"), "seeds_by_teacher": {"resnet99": [0]}}
    with pytest.raises(ValueError, match=r"seeds_by_teacher names \['resnet99'\].*allowed: convnet_small"):
        study_grid("teacher_capacity", p)


@pytest.fixture(scope="module")
def alpha_by_method():
    """The quick alpha study with EL2N at f = 0.3 only."""
    p = {**study_params("alpha_vs_factor", "quick"), "fractions_by_method": {"el2n": [0.3]}}
    return p, study_grid("alpha_vs_factor", p)


def test_alpha_study_gives_a_method_its_own_fractions(alpha_by_method):
    _, configs = alpha_by_method
    assert {c.fraction for c in configs if c.method == "el2n"} == {0.3}


def test_alpha_study_keeps_the_other_methods_at_fractions(alpha_by_method):
    p, configs = alpha_by_method
    assert {c.fraction for c in configs if c.method == "random"} == set(p["fractions"])


def test_alpha_study_rejects_a_bare_number_as_fractions():
    p = {**study_params("alpha_vs_factor", "quick"), "fractions_by_method": {"el2n": 0.3}}
    with pytest.raises(ValueError, match="fractions_by_method.el2n must be a non-empty list of values, got 0.3"):
        study_grid("alpha_vs_factor", p)


@pytest.mark.parametrize("study", GRID_STUDIES)
def test_every_grid_study_of_the_quick_profile_builds(study):
    assert study_grid(study, study_params(study, "quick"))


def test_unknown_study_names_the_allowed_ones():
    with pytest.raises(ValueError, match="pruning_sweep"):
        study_grid("sweep", {})


def test_a_pending_run_counts_its_training_images(store):
    cfg = run(fraction=0.5)
    _, steps = total_steps(cfg.train, 100, 200)
    assert estimate([cfg], store, 200, SPEED)["images"] == steps * 32


def test_a_finished_run_is_not_pending(store, put_record):
    cfg = run(fraction=0.5)
    store.put("runs", cfg.key(), {"status": "done", "config": cfg})
    assert estimate([cfg, run(fraction=0.2)], store, 200, SPEED)["pending"] == 1


def test_a_kd_run_adds_its_teacher(store):
    cfg = run(alpha=0.5, teacher="convnet_small")
    assert estimate([cfg], store, 200, SPEED)["teachers"] == 1


def test_a_stored_teacher_is_not_counted(store):
    cfg = run(alpha=0.5, teacher="convnet_small")
    t = TeacherConfig.of(cfg)
    store.put("teachers", t.key(), {"status": "done", "config": t})
    assert estimate([cfg], store, 200, SPEED)["teachers"] == 0


def test_methods_sharing_a_scorer_count_one_score_cache(store):
    configs = [run(fraction=0.5, method=m) for m in ("forgetting", "kcenter")]
    assert estimate(configs, store, 200, SPEED)["scores"] == 1


def test_seconds_are_images_over_throughput(store):
    cfg = run(fraction=0.5)
    est = estimate([cfg], store, 200, SPEED)
    assert est["device_seconds"] == pytest.approx(est["images"] / 1000.0)


def test_runs_of_one_group_key_are_priced_at_their_groups_rate(store):
    configs = [run(fraction=0.5, seed=s) for s in range(4)]
    est = estimate(configs, store, 200, SPEED)
    assert (est["groups"], est["device_seconds"]) == (1, pytest.approx(est["images"] / 3000.0))


def test_evaluation_passes_are_priced(store):
    cfg = run(fraction=0.5)  # 3 epochs, evaluated after each
    with_eval = estimate([cfg], store, 200, SPEED, n_test=100)["device_seconds"]
    assert with_eval - estimate([cfg], store, 200, SPEED)["device_seconds"] == pytest.approx(3 * 100 / 4000.0)


def test_a_group_between_measured_sizes_is_priced_between_their_rates():
    assert rate_at(CURVE, 2, "stacked") == pytest.approx(1000.0 + 2000.0 / 3)


def test_deepfool_prices_one_full_proxy_run(store):
    cfg = run(fraction=0.5, method="deepfool", proxy={"n_models": 3, "score_epoch": 1,
                                                      "train": {"epochs": 4, "batch_size": 32}})
    plain = estimate([run(fraction=0.5)], store, 200, SPEED)["images"]
    assert estimate([cfg], store, 200, SPEED)["images"] - plain == 4 * 200


def test_notebook_defaults_match_papermill():
    import ast

    import papermill as pm

    from kdlib.notebooks import ROOT
    from kdlib.plan import notebook_defaults

    seen = {k: ast.literal_eval(v["default"])
            for k, v in pm.inspect_notebook(str(ROOT / "notebooks" / "pruning_sweep.ipynb")).items()}
    assert notebook_defaults("pruning_sweep") == seen
