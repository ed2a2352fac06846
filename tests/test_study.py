import numpy as np
import pytest

from kdlib.study import RunConfig, Study, expand_grid, noisy_labels, run_grid, sweep_grid
from kdlib.train import TrainConfig

TINY = TrainConfig(epochs=2, batch_size=64, lr=0.05, schedule="cosine")


def tiny(**kw):
    base = dict(dataset="digits", model="convnet_small", teacher="convnet_small", train=TINY)
    base.update(kw)
    return RunConfig(**base)


@pytest.mark.parametrize("field,value,pattern", [
    ("dataset", "mnist", "dataset.*digits"),
    ("model", "vgg", "model.*resnet32"),
    ("teacher", "vgg", "teacher.*resnet32"),
    ("method", "magic", "method.*random"),
    ("fraction", 0.0, r"fraction must lie in \(0, 1\]"),
    ("fraction", 1.5, r"fraction must lie in \(0, 1\]"),
    ("alpha", -0.5, r"alpha must lie in \[0, 1\]"),
    ("alpha", 1.2, r"alpha must lie in \[0, 1\]"),
    ("teacher_fraction", 0, "teacher_fraction"),
])
def test_bad_parameters_fail_at_once(field, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        tiny(**{field: value})


def test_unknown_keys_are_named():
    with pytest.raises(ValueError, match="unknown run parameter.*fractoin"):
        RunConfig.from_dict({"fractoin": 0.5})
    with pytest.raises(ValueError, match="unknown train parameter.*epoch"):
        RunConfig.from_dict({"train": {"epoch": 3}})
    with pytest.raises(ValueError, match="schedule.*cosine"):
        TrainConfig(schedule="linear")
    with pytest.raises(ValueError, match="unknown grid axis"):
        expand_grid({}, {"alpah": [0.1]})


def test_sweep_grid_gives_named_methods_their_own_seeds():
    base = dict(dataset="digits", model="convnet_small", teacher="convnet_small", train=TINY)
    axes = {"fraction": [0.1, 0.5], "alpha": [0.0, 0.5]}
    cfgs = sweep_grid(base, ["random", "el2n"], axes, [0, 1], {"random": [0, 1, 2, 3]})
    seeds = {m: sorted({c.seed for c in cfgs if c.method == m}) for m in ("random", "el2n")}
    assert seeds == {"random": [0, 1, 2, 3], "el2n": [0, 1]}
    assert len(cfgs) == 4 * 4 + 4 * 2 and len({c for c in cfgs}) == len(cfgs)
    assert sweep_grid(base, ["random"], axes, [0, 1]) == expand_grid(base, {"method": ["random"], **axes, "seed": [0, 1]})
    with pytest.raises(ValueError, match=r"seeds_by_method names \['ccs'\].*allowed: random, el2n"):
        sweep_grid(base, ["random", "el2n"], axes, [0], {"ccs": [0]})
    with pytest.raises(ValueError, match="seeds_by_method.random must be a non-empty list"):
        sweep_grid(base, ["random"], axes, [0], {"random": []})
    with pytest.raises(ValueError, match="seeds_by_method must map method names to lists of seeds"):
        sweep_grid(base, ["random"], axes, [0], ["random"])


def test_resolution_shares_equivalent_runs():
    assert tiny(alpha=0.0).key() == tiny(alpha=0.0, teacher=None).key()
    assert tiny(fraction=1.0, method="random").key() == tiny(fraction=1.0, class_balanced=True).key()
    assert tiny(alpha=0.5).key() != tiny(alpha=0.0).key()


def test_noisy_labels_exact_rate_and_always_wrong():
    import torch
    y = torch.arange(1000) % 10
    yn, mask = noisy_labels(y, 0.2, 10, seed=0)
    assert mask.sum() == 200
    assert bool((yn[mask] != y[mask]).all()) and bool((yn[~mask] == y[~mask]).all())


def test_grid_resumes_and_shares_teacher(tmp_path, monkeypatch):
    configs = expand_grid(tiny(), {"fraction": [0.2, 1.0], "alpha": [0.0, 0.5], "seed": [0]})
    df = run_grid(configs, tmp_path, progress=False)
    assert (df.status == "done").all() and len(df) == 4
    assert len(list((tmp_path / "teachers").glob("*.json"))) == 1
    assert sorted(df.n_train) == [287, 287, 1437, 1437]
    kd = df[df.alpha > 0]
    assert kd.teacher_acc.notna().all()

    import kdlib.study as study
    calls = []
    monkeypatch.setattr(study, "train", lambda *a, **k: calls.append(1))
    again = run_grid(configs, tmp_path, progress=False)
    assert calls == []  # nothing recomputed
    assert np.allclose(again.final_acc, df.final_acc)


def test_interrupted_grid_resumes_where_it_stopped(tmp_path, monkeypatch):
    configs = expand_grid(tiny(), {"fraction": [0.2, 0.5], "seed": [0, 1]})
    import kdlib.study as study
    real_train, count = study.train, []

    def flaky(*a, **k):
        if len(count) == 2:
            raise KeyboardInterrupt
        count.append(1)
        return real_train(*a, **k)

    monkeypatch.setattr(study, "train", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_grid(configs, tmp_path, progress=False, group_size=1)
    assert len(list((tmp_path / "runs").glob("*.json"))) == 2
    count.clear()
    monkeypatch.setattr(study, "train", lambda *a, **k: (count.append(1), real_train(*a, **k))[1])
    df = run_grid(configs, tmp_path, progress=False, group_size=1)
    assert len(count) == 2 and (df.status == "done").all()


def test_same_config_same_subset_and_accuracy(tmp_path):
    cfg = tiny(fraction=0.3, seed=5)
    s1, s2 = Study(tmp_path / "a", progress=False), Study(tmp_path / "b", progress=False)
    assert np.array_equal(s1.subset(cfg), s2.subset(cfg))
    r1, r2 = s1.run(cfg), s2.run(cfg)
    assert r1["result"]["final_acc"] == r2["result"]["final_acc"]


def test_diverging_run_is_recorded_as_failed(tmp_path):
    cfg = tiny(fraction=0.5, train=TrainConfig(epochs=1, lr=1e6, batch_size=64, schedule="constant"))
    rec = Study(tmp_path, progress=False).run(cfg)
    assert rec["status"] == "failed" and "loss became" in rec["error"]


def test_budget_rules_and_min_steps():
    from kdlib.train import total_steps
    cfg = TrainConfig(epochs=10, batch_size=64)
    assert total_steps(cfg, 640, 6400) == (10, 100)                      # epochs on the subset
    steps = TrainConfig(epochs=10, batch_size=64, budget="steps")
    assert total_steps(steps, 640, 6400)[1] == 1000                      # as many steps as the full data
    floor = TrainConfig(epochs=10, batch_size=64, min_steps=150)
    assert total_steps(floor, 640, 6400) == (15, 150)                    # floor in whole epochs
    assert total_steps(floor, 6400, 6400) == (10, 1000)                  # no effect above the floor
    with pytest.raises(ValueError, match="min_steps"):
        TrainConfig(min_steps=-1)


def test_train_resumes_from_its_checkpoint_exactly(tmp_path):
    """An interrupted train() resumes from its per-epoch checkpoint (model, optimizer, loss scaler, counters) and
    ends where an uninterrupted run ends."""
    import torch

    from kdlib.data import load_dataset
    from kdlib.models import build_model
    from kdlib.train import train

    torch.set_num_threads(1)
    data = load_dataset("digits")
    cfg = TrainConfig(epochs=3, batch_size=64, lr=0.05, precision="fp32")

    def run(**kw):
        torch.manual_seed(0)
        return train(build_model("convnet_small", 10, 1), data, cfg, seed=0, progress=False, **kw)

    whole = run()
    ckpt = tmp_path / "run.pt"

    def stop_in_second(epoch, model):  # the hook runs before the epoch's checkpoint: epoch 1 is saved, 2 is not
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(checkpoint=ckpt, epoch_hook=stop_in_second)
    saved = torch.load(ckpt, weights_only=True)  # tensors and plain values only: no code in a checkpoint
    assert set(saved) == {"step", "state"} and saved["state"]["epoch"] == 1
    resumed = run(checkpoint=ckpt)
    assert resumed.final_acc == whole.final_acc and resumed.losses == whole.losses
    assert not ckpt.exists()  # removed once the run is done


# --- grid axes (issue 12, case 7) --------------------------------------------------------------------------------
def test_empty_grid_axis_is_an_error_naming_it():
    with pytest.raises(ValueError, match="grid axis 'fraction' is empty"):
        expand_grid({}, {"fraction": [], "seed": [0]})


@pytest.mark.parametrize("value", ["0.1", 0.1], ids=["string", "scalar"])
def test_grid_axis_must_be_a_list(value):
    with pytest.raises(ValueError, match=r"grid axis 'fraction' must be a list of values, got .*; write \[.*\]"):
        expand_grid({}, {"fraction": value})


def test_huge_grid_warns_before_building(monkeypatch):
    import kdlib.study

    monkeypatch.setattr(kdlib.study, "GRID_WARN", 3)
    with pytest.warns(UserWarning, match=r"expand_grid builds 4 configs \(2 fraction x 2 seed\)"):
        expand_grid({}, {"fraction": [0.1, 0.2], "seed": [0, 1]})


def test_equal_runs_written_as_int_or_float_share_one_record(tmp_path):
    cfgs = expand_grid(tiny(fraction=0.2), {"label_noise": [0, 0.0]})
    df = run_grid(cfgs, tmp_path, progress=False)
    assert df.key.nunique() == 1 and len(list((tmp_path / "runs").glob("*.json"))) == 1


def test_a_teacher_state_of_another_architecture_is_quarantined_and_retrained(tmp_path):
    """A stored teacher whose SHA-256 verifies but whose weights are another model's is set aside, not fatal."""
    from kdlib.models import build_model
    from kdlib.study import TeacherConfig

    cfg = tiny(teacher="convnet_small", alpha=0.5, fraction=0.5)
    study = Study(tmp_path, progress=False)
    tcfg = TeacherConfig.of(cfg)
    _, rec = study.teacher(tcfg)
    wrong = {k: v for k, v in build_model("convnet", 10, 1).state_dict().items()}
    sha = study.store.save_state("teachers", tcfg.key(), wrong)
    study.store.put("teachers", tcfg.key(), {**{k: v for k, v in rec.items() if k not in ("key", "checksum", "ident",
                                                                                        "format")}, "sha256": sha})
    model, again = Study(tmp_path, progress=False).teacher(tcfg)
    assert again["sha256"] != sha and list((tmp_path / "teachers").glob("*.corrupt"))
