"""One spec per artefact owns its key: declared method, scorer and KD-loss hyperparameters are in the run and
score keys (changing one recomputes, never serves the old record); a score cache is named by its declared scorer
name; KD losses are modules built from {type, params}; runs without hyperparameters keep their earlier keys."""
import math

import numpy as np
import pytest
import torch

from grid_helpers import one_thread, tiny_config  # noqa: F401  (one_thread: the fixture used below)
from kdlib.distill import KD_LOSSES, KDLoss, build_kd_loss, dkd_loss, kd_loss, make_kd_loss, register_kd_loss
from kdlib.prune import METHODS, PruningMethod, keep_high, register_scorer
from kdlib.store import Store, canonical, config_key
from kdlib.study import RunConfig, ScoreSpec, Study, TeacherConfig, load_records

pytestmark = pytest.mark.usefixtures("one_thread")


def earlier_identity(cfg: RunConfig) -> dict:
    """What a key hashed before hyperparameters were declared (no method_params / kd_params fields)."""
    d = canonical(cfg.resolved())
    for name in ("alpha_rule", "method_params", "kd_params"):
        d.pop(name, None)
    return d


def earlier_key(cfg: RunConfig) -> str:
    return config_key(earlier_identity(cfg))


# ----------------------------------------------------------------------------------------------- keys
def test_runs_without_declared_hyperparameters_keep_their_earlier_keys():
    for cfg in (RunConfig(model="convnet_small", method="el2n", fraction=0.5, seed=1),
                RunConfig(model="convnet_small", teacher="convnet", fraction=0.3, alpha=0.5, seed=2)):
        assert cfg.key() == earlier_key(cfg)


def test_a_declared_hyperparameter_is_in_the_run_key():
    base = RunConfig(model="convnet_small", method="ccs", fraction=0.5)
    assert base.resolved().method_params["strata"] == 50
    assert base.key() != earlier_key(base)  # the earlier record of a ccs run is not served as today's
    assert RunConfig(model="convnet_small", method="ccs", fraction=0.5, method_params={"strata": 50}).key() == base.key()
    assert RunConfig(model="convnet_small", method="ccs", fraction=0.5, method_params={"strata": 10}).key() != base.key()


def test_a_scorer_hyperparameter_is_in_the_score_key_and_a_selector_one_is_not():
    cal = RunConfig(model="convnet_small", method="cal", fraction=0.5)
    fewer = RunConfig(model="convnet_small", method="cal", fraction=0.5, method_params={"cal_neighbours": 5})
    assert cal.score_spec().params == {"cal_neighbours": 10} and fewer.score_spec().key() != cal.score_spec().key()
    glister = RunConfig(model="convnet_small", method="glister", fraction=0.5, method_params={"rounds": 8})
    assert glister.score_spec() == cal.score_spec()  # the same proxy run: only the selection differs
    assert glister.key() != RunConfig(model="convnet_small", method="glister", fraction=0.5).key()


@pytest.mark.parametrize("params, match", [({"strata": 2.5}, "method_params.strata.*integer"),
                                           ({"stratta": 3}, r"not hyperparameters of method 'ccs'; allowed: "
                                                            r"cal_neighbours, strata"),
                                           ({"strata": float("nan")}, "finite")])
def test_bad_method_params_are_named(params, match):
    with pytest.raises(ValueError, match=match):
        RunConfig(method="ccs", fraction=0.5, method_params=params)


def test_a_group_spans_losses_seeds_methods_noise_and_teachers():
    a = RunConfig(model="convnet_small", teacher="convnet", fraction=0.5, alpha=0.5, kd_loss="dkd")
    others = [dict(alpha=0.9, kd_params={"beta": 2.0}), dict(seed=3), dict(method="el2n"), dict(label_noise=0.2),
              dict(teacher="resnet8", teacher_fraction=0.5), dict(alpha=0.0, teacher=None)]
    keys = {RunConfig(**{**dict(model="convnet_small", teacher="convnet", fraction=0.5, alpha=0.5, kd_loss="dkd"),
                         **o}).group_key() for o in others}
    assert keys == {a.group_key()}


@pytest.mark.parametrize("change", [dict(fraction=0.3), dict(model="convnet"), dict(dataset="fashion_mnist"),
                                    dict(train={"epochs": 3})], ids=["fraction", "model", "dataset", "recipe"])
def test_a_group_shares_data_student_recipe_and_fraction(change):
    base = dict(model="convnet_small", teacher="convnet", fraction=0.5, alpha=0.5)
    assert RunConfig(**base).group_key() != RunConfig(**{**base, **change}).group_key()


def test_teacher_and_score_specs_own_their_keys():
    cfg = RunConfig(model="convnet_small", teacher="convnet", method="el2n", fraction=0.5, alpha=0.5)
    assert TeacherConfig.of(cfg).key() == config_key(TeacherConfig.of(cfg))
    assert ScoreSpec.of(cfg).identity()["scorer"] == "el2n_run" and "params" not in ScoreSpec.of(cfg).identity()
    assert ScoreSpec.of(RunConfig(fraction=1.0, method="el2n")) is None


# ----------------------------------------------------------------------------------------------- the store
@pytest.fixture
def tunable(monkeypatch):
    """A throwaway method: a scorer with a declared 'power' (score = pixel sum ** power) and a selector with a
    declared 'skip' (keeps the highest scores after skipping the top ``skip``). Returns (set_defaults, calls)."""
    calls = []

    @register_scorer("pixel_power", power=1.0)
    def pixel_power(ctx):
        calls.append(ctx.params["power"])
        return {"score": ctx.data.x_train.float().sum((1, 2, 3)).numpy() ** ctx.params["power"]}

    def select(arrays, labels, k, rng, class_balanced, skip=0):
        order = np.argsort(-arrays["score"], kind="stable")
        return order[skip:skip + k]

    def set_defaults(power=1.0, skip=0):
        pixel_power.scorer_params = {"power": power}
        monkeypatch.setitem(METHODS._items, "tunable", PruningMethod("tunable", select, "hardest", pixel_power,
                                                                     params={"skip": skip}))

    set_defaults()
    return set_defaults, calls


def test_changing_a_declared_default_recomputes_and_never_serves_the_old_record(tmp_path, tunable):
    set_defaults, calls = tunable
    cfg = tiny_config(method="tunable", fraction=0.2, alpha=0.0)
    study = Study(tmp_path, progress=False)
    first = study.run(cfg)
    assert study.run(cfg)["written"] == first["written"]  # unchanged: read, not recomputed
    set_defaults(skip=5)  # the selector's default changes: a new run, trained now
    second = study.run(cfg)
    assert second["key"] != first["key"] and second["config"].method_params == {"power": 1.0, "skip": 5}
    assert calls == [1.0]  # the scores did not change: their cache was reused
    set_defaults(power=2.0, skip=5)  # the scorer's default changes: new scores, a new run
    third = study.run(cfg)
    assert calls == [1.0, 2.0] and third["key"] not in (first["key"], second["key"])
    assert len(Store(tmp_path).records("runs")) == 3


def test_scores_are_cached_under_the_declared_scorer_name(tmp_path, tunable):
    cfg = tiny_config(method="tunable", fraction=0.2)
    Study(tmp_path, progress=False).scores(cfg)
    (rec,) = Store(tmp_path).records("scores")
    assert rec["config"]["scorer"] == "pixel_power" and rec["key"] == cfg.score_spec().key()


def test_an_unregistered_scorer_is_cached_under_its_methods_name_not_its_functions():
    def proxy_run(ctx):  # the __name__ of a registered scorer: it must not share that scorer's cache
        return {}

    assert PruningMethod("x", keep_high, "hardest", proxy_run).scorer_key == "x"
    assert PruningMethod("x", keep_high, "hardest", proxy_run, scorer_name="mine").scorer_key == "mine"


def test_load_records_leaves_out_records_made_under_earlier_keys(tmp_path, tunable):
    cfg = tiny_config(method="tunable", fraction=0.2)
    rec = Study(tmp_path, progress=False).run(cfg)
    store = Store(tmp_path)
    stale = {k: v for k, v in store.get("runs", rec["key"]).items() if k not in ("key", "format", "written")}
    stale["config"] = {k: v for k, v in canonical(stale["config"]).items() if k != "method_params"}
    stale.pop("ident", None)
    store.put("runs", earlier_key(cfg), stale, ident=earlier_identity(cfg))  # what an earlier kdlib wrote
    with pytest.warns(UserWarning, match="1 run record.*left out"):
        df = load_records(store)
    assert df["key"].tolist() == [rec["key"]]


# ----------------------------------------------------------------------------------------------- KD losses
S, T, Y = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[0.0, 4.0, 0.0]]), torch.tensor([0])


def softmax(v, tau):
    e = [math.exp(x / tau) for x in v]
    return [x / sum(e) for x in e]


def kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q))


def test_dkd_matches_hand_computation():
    tau, alpha, w, beta = 4.0, 0.3, 1.5, 8.0
    ps, pt = softmax([2.0, 0.0, -1.0], tau), softmax([0.0, 4.0, 0.0], tau)
    tckd = kl([pt[0], 1 - pt[0]], [ps[0], 1 - ps[0]])
    nckd = kl(softmax([4.0, 0.0], tau), softmax([0.0, -1.0], tau))
    ce = -math.log(math.exp(2.0) / (math.exp(2.0) + 1 + math.exp(-1.0)))
    expected = (1 - alpha) * ce + alpha * tau ** 2 * (w * tckd + beta * nckd)
    assert dkd_loss(S, T, Y, alpha, tau, tckd_weight=w, beta=beta).item() == pytest.approx(expected, rel=1e-6)


def test_dkd_golden_value_at_its_defaults():
    loss = build_kd_loss({"type": "dkd", "params": {}}, 0.3, 4.0)
    assert isinstance(loss, KDLoss) and loss(S, T, Y).item() == pytest.approx(3.2064847376362615, rel=1e-6)


def test_dkd_alpha_zero_is_cross_entropy_and_equal_logits_cost_nothing():
    assert torch.equal(dkd_loss(S, None, Y, 0.0), torch.nn.functional.cross_entropy(S, Y))
    assert dkd_loss(S, S.clone(), Y, 1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_kd_module_is_the_kd_function():
    assert torch.equal(make_kd_loss("kd", 0.3, 4.0)(S, T, Y), kd_loss(S, T, Y, 0.3, 4.0))


def test_kd_params_are_checked_and_keyed():
    with pytest.raises(ValueError, match=r"kd_params \['gamma'\].*allowed: beta, tckd_weight"):
        make_kd_loss("dkd", 0.5, 4.0, {"gamma": 1.0})
    with pytest.raises(ValueError, match="kd_params.*not hyperparameters of kd_loss 'kd'; allowed: none"):
        RunConfig(teacher="convnet", alpha=0.5, kd_params={"beta": 1.0})
    dkd = RunConfig(teacher="convnet", alpha=0.5, kd_loss="dkd")
    assert dkd.key() != RunConfig(teacher="convnet", alpha=0.5, kd_loss="dkd", kd_params={"beta": 4.0}).key()
    assert RunConfig(kd_loss="dkd", kd_params={"beta": 4.0}).key() == RunConfig().key()  # no KD: loss irrelevant


def test_a_new_loss_is_one_function_and_one_registry_line(monkeypatch):
    monkeypatch.setattr(KD_LOSSES, "_items", dict(KD_LOSSES._items))

    @register_kd_loss("scaled_kd", scale=1.0)
    def scaled_kd(s, t, y, alpha, tau, scale=1.0):
        return scale * kd_loss(s, t, y, alpha, tau)

    cfg = RunConfig(teacher="convnet", alpha=0.5, kd_loss="scaled_kd", kd_params={"scale": 2.0})
    loss = make_kd_loss(cfg.kd_loss, cfg.alpha, cfg.tau, cfg.kd_params)
    assert loss(S, T, Y).item() == pytest.approx(2 * kd_loss(S, T, Y, 0.5, 4.0).item())
    assert cfg.key() != RunConfig(teacher="convnet", alpha=0.5, kd_loss="scaled_kd").key()


def test_hyperparameters_get_their_own_table_columns(tmp_path, tunable):
    from kdlib.study import flatten

    key = Study(tmp_path, progress=False).run(tiny_config(method="tunable", fraction=0.2,
                                                          method_params={"skip": 3}))["key"]
    row = flatten(Store(tmp_path).get("runs", key))
    assert (row["method_params.skip"], row["method_params.power"]) == (3, 1.0)
