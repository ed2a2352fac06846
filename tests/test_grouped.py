"""Groups of runs (kdlib.grouped, Study.run_group/run_chunk): each member trains on its own batches, as it would
alone; a failing member costs only its own record; a killed group resumes; grouping changes no key.

Tolerance of a stacked member against its run alone (fp32, CPU): losses within 1e-5 relative (measured: at most
2.4e-7 absolute over 3 epochs), final accuracy within 0.6 points (two of digits' 360 test images), weights within
1e-3 of their scale. The 'loop' mode with one thread is bit-identical."""
import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import kdlib.study as study_module
from grid_helpers import GROUP_RESUME_CONFIGS, tiny_config
from kdlib.data import load_dataset
from kdlib.distill import make_kd_loss
from kdlib.group_size import GroupPlan, choose_group, pick
from kdlib.grouped import GroupBatches, Member, train_group
from kdlib.models import build_model
from kdlib.stack import stack_models, unstack_into
from kdlib.store import Store
from kdlib.study import Study, expand_grid, run_grid
from kdlib.train import MemoryBatches, TrainConfig, inference_copy, train

HERE = Path(__file__).parent
FP32 = TrainConfig(epochs=3, batch_size=64, lr=0.05, schedule="cosine", precision="fp32")


@pytest.fixture(scope="module", autouse=True)
def one_thread_here():
    """One torch thread for the module's fixtures too (a thread count changes the last bits of a sum)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits(one_thread_here):
    """Digits with flips on too, so both augmentations are drawn."""
    return dataclasses.replace(load_dataset("digits"), flip=True)


@pytest.fixture(scope="module")
def teacher(digits):
    torch.manual_seed(9)
    t = build_model("convnet_small", 10, 1)
    train(t, digits, FP32, seed=9, progress=False, evaluate_test=False)
    return t.eval()


def specs(digits):
    """(seed, kept rows, labels, alpha): four members on three streams, one with noisy labels."""
    half = digits.n_train // 2
    rows = np.random.default_rng(5).permutation(digits.n_train)[:half]
    noisy = digits.y_train.clone()
    noisy[:100] = (noisy[:100] + 1) % 10
    return [(0, np.arange(half), None, 0.0), (1, rows, None, 0.5), (0, np.arange(half), None, 0.9),
            (2, np.arange(half), noisy, 0.5)]


def members(digits, teacher):
    out = []
    for seed, rows, labels, alpha in specs(digits):
        torch.manual_seed(seed)
        out.append(Member(build_model("convnet_small", 10, 1), seed, rows, labels, make_kd_loss("kd", alpha, 4.0),
                          teacher if alpha else None))
    return out


@pytest.fixture(scope="module")
def alone(digits, teacher):
    """Each member trained alone by kdlib.train.train: (model, result)."""
    out = []
    for m in members(digits, teacher):
        r = train(m.model, digits, FP32, indices=m.indices, labels=m.labels, loss_fn=m.loss_fn, teacher=m.teacher,
                  seed=m.seed, progress=False)
        out.append((m.model, r))
    return out


def _max_diff(a, b):
    """Largest difference over the float tensors of two state dicts, relative to each tensor's scale (>= 1)."""
    return max(((x - y).abs().max() / x.abs().max().clamp_min(1.0)).item()
               for x, y in zip(a.state_dict().values(), b.state_dict().values()) if x.is_floating_point())


# ----------------------------------------------------------------------------------------------- batches
def test_each_member_draws_the_batches_and_augmentation_of_its_run_alone(digits, teacher):
    group = members(digits, teacher)
    source = GroupBatches(digits, FP32, group, torch.device("cpu"))
    for epoch in (0, 2):
        singles = [list(MemoryBatches(digits, FP32, m.seed, torch.device("cpu"), m.indices, m.labels).epoch(epoch))
                   for m in group]
        for step, (x, y, n) in enumerate(source.epoch(epoch)):
            for k, s in enumerate(source.stream_of):
                xs, ys, _ = singles[k][step]
                assert torch.equal(x[s], xs) and torch.equal(y[s], ys), (epoch, step, k)


def test_members_with_equal_seed_rows_and_labels_share_one_stream(digits, teacher):
    source = GroupBatches(digits, FP32, members(digits, teacher), torch.device("cpu"))
    assert source.stream_of == [0, 1, 0, 2]


def test_members_keeping_different_row_counts_are_refused(digits):
    group = [Member(build_model("convnet_small", 10, 1), 0, range(100)),
             Member(build_model("convnet_small", 10, 1), 1, range(101))]
    with pytest.raises(ValueError, match="same number of rows"):
        GroupBatches(digits, FP32, group, torch.device("cpu"))


# ----------------------------------------------------------------------------------------------- training
def test_a_loop_group_is_bit_identical_to_each_run_alone(digits, teacher, alone):
    group = members(digits, teacher)
    results = train_group(group, digits, FP32, mode="loop", threads=1, progress=False, device="cpu")
    assert [(r.losses, r.curve) for r in results] == [(r.losses, r.curve) for _, r in alone]


@pytest.fixture(scope="module")
def stacked(digits, teacher):
    group = members(digits, teacher)
    return group, train_group(group, digits, FP32, mode="stacked", progress=False, device="cpu")


@pytest.mark.parametrize("k", range(4))
def test_a_stacked_members_losses_match_its_run_alone(stacked, alone, k):
    assert stacked[1][k].losses == pytest.approx(alone[k][1].losses, rel=1e-5)


@pytest.mark.parametrize("k", range(4))
def test_a_stacked_members_final_accuracy_matches_its_run_alone(stacked, alone, k):
    assert stacked[1][k].final_acc == pytest.approx(alone[k][1].final_acc, abs=0.6)


@pytest.mark.parametrize("k", range(4))
def test_a_stacked_members_weights_match_its_run_alone(stacked, alone, k):
    assert _max_diff(alone[k][0], stacked[0][k].model) < 1e-3


def test_a_stacked_group_says_how_it_trained(stacked):
    assert {(r.extra["group"], r.extra["group_mode"], r.extra["group_streams"]) for r in stacked[1]} == \
        {(4, "stacked", 3)}


def test_a_diverging_member_stops_and_the_others_train_on(digits, teacher, alone):
    group = members(digits, teacher)
    calls = {"n": 0}
    inner = group[1].loss_fn

    def blows_up(s, t, y):
        calls["n"] += 1
        loss = inner(s, t, y)
        return loss * float("nan") if calls["n"] > 5 else loss

    group[1].loss_fn = blows_up
    results = train_group(group, digits, FP32, mode="loop", threads=1, progress=False, device="cpu")
    assert "diverged" in results[1].extra and np.isnan(results[1].final_acc)
    assert [r.losses for i, r in enumerate(results) if i != 1] == [r.losses for i, (_, r) in enumerate(alone) if i != 1]


def test_stacked_teachers_give_each_member_its_teachers_logits(digits, teacher):
    from kdlib.train import Teachers

    x = torch.randn(3, 8, 1, 8, 8)
    t2 = build_model("convnet_small", 10, 1).eval()
    bank = Teachers([teacher, teacher, t2, None], torch.device("cpu"), torch.channels_last, [0, 1, 2, 0], stack=True,
                    example=x[0, :2])
    got = bank.logits(x, torch.device("cpu"), "fp32")
    want = [inference_copy(t)(x[s].contiguous(memory_format=torch.channels_last))
            for t, s in ((teacher, 0), (teacher, 1), (t2, 2))]
    assert bank.stacked and got[3] is None
    assert all(torch.allclose(g, w, atol=1e-4) for g, w in zip(got[:3], want))


def test_unstack_returns_each_model_its_own_weights():
    ms = [build_model("resnet8", 10, 3) for _ in range(3)]
    wide = stack_models(ms)
    copies = [build_model("resnet8", 10, 3) for _ in range(3)]
    unstack_into(wide, copies)
    assert all(_max_diff(a, b) == 0.0 for a, b in zip(ms, copies))


# ----------------------------------------------------------------------------------------------- the runner
TINY_FP32 = TrainConfig(epochs=2, batch_size=32, lr=0.05, schedule="cosine", precision="fp32")


def grid():
    """Eight runs of one group key: two methods, two seeds, KD and not."""
    return expand_grid(dict(dataset="digits", model="convnet_small", teacher="convnet_small", teacher_fraction=0.2,
                            train=TINY_FP32, fraction=0.5),
                       {"method": ["random", "el2n"], "alpha": [0.0, 0.5], "seed": [0, 1]})


@pytest.fixture(scope="module")
def grouped_and_alone(tmp_path_factory):
    root = tmp_path_factory.mktemp("grids")
    alone = run_grid(grid(), root / "alone", progress=False, group_size=1)
    together = run_grid(grid(), root / "grouped", progress=False, group_size=8, group_mode="stacked")
    return root, alone, together


def test_a_grouped_grid_writes_the_keys_of_the_ungrouped_one(grouped_and_alone):
    root, _, _ = grouped_and_alone
    assert sorted(r["key"] for r in Store(root / "grouped").records()) == \
        sorted(r["key"] for r in Store(root / "alone").records())


def test_a_grouped_grid_trained_its_runs_as_one_group(grouped_and_alone):
    root, _, _ = grouped_and_alone
    assert {r["result"]["extra"].get("group") for r in Store(root / "grouped").records()} == {8}


def test_a_grouped_grids_accuracies_match_the_ungrouped_ones(grouped_and_alone):
    _, alone, together = grouped_and_alone
    assert together.final_acc.to_numpy() == pytest.approx(alone.final_acc.to_numpy(), abs=1.2)


def test_a_grouped_grid_uses_each_runs_own_subset(grouped_and_alone, monkeypatch, tmp_path):
    """The rows each member trains on are the rows Study.subset gives its run alone."""
    seen = {}
    real = study_module.train_group

    def spy(members, *args, **kw):
        for m in members:
            seen[m.seed, len(seen)] = np.asarray(m.indices)
        return real(members, *args, **kw)

    monkeypatch.setattr(study_module, "train_group", spy)
    configs = grid()
    Study(tmp_path, device="cpu", progress=False).run_chunk(configs, 8, "stacked")
    study = Study(tmp_path, device="cpu", progress=False)
    wanted = sorted(tuple(study.subset(c)) for c in configs)
    assert sorted(tuple(v) for v in seen.values()) == wanted


def test_a_member_that_fails_to_prepare_leaves_the_others_done(monkeypatch, tmp_path):
    real = Study.subset

    def fails_for_seed_1(self, cfg):
        if cfg.seed == 1 and cfg.method == "el2n":
            raise RuntimeError("scorer exploded")
        return real(self, cfg)

    monkeypatch.setattr(Study, "subset", fails_for_seed_1)
    df = run_grid(grid(), tmp_path, progress=False, group_size=8, group_mode="stacked")
    failed = df[df.status != "done"]
    assert sorted(zip(failed.method, failed.seed)) == [("el2n", 1), ("el2n", 1)]
    assert failed.error.str.contains("scorer exploded").all()


def test_a_group_that_raises_trains_its_members_one_by_one(monkeypatch, tmp_path):
    def broken(*args, **kw):
        raise RuntimeError("stacking failed on this device")

    monkeypatch.setattr(study_module, "train_group", broken)
    with pytest.warns(UserWarning, match="train one by one"):
        df = run_grid(grid()[:4], tmp_path, progress=False, group_size=4, group_mode="stacked")
    assert (df.status == "done").all()


def test_a_bad_group_size_is_named(tmp_path):
    with pytest.raises(ValueError, match="group_size must be a positive integer .* or 'auto'"):
        run_grid(grid(), tmp_path, progress=False, group_size=0)


def test_a_bad_group_mode_is_named(tmp_path):
    with pytest.raises(ValueError, match="group_mode.*auto, stacked, loop"):
        run_grid(grid(), tmp_path, progress=False, group_mode="wide")


# ----------------------------------------------------------------------------------------------- resume
@pytest.fixture(scope="module")
def killed_group(tmp_path_factory):
    """A store whose group of two was killed by SIGKILL in its third epoch (in a separate process)."""
    root = tmp_path_factory.mktemp("killed_group")
    proc = subprocess.run([sys.executable, str(HERE / "resume_script.py"), str(root), "3", "group"],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    return root


def test_a_killed_group_leaves_no_record_and_its_second_epochs_checkpoint(killed_group):
    store = Store(killed_group)
    (ckpt,) = store.records("checkpoints/groups")
    assert [store.get("runs", c.key()) for c in GROUP_RESUME_CONFIGS] == [None, None]
    assert store.load_checkpoint("checkpoints/groups", ckpt["key"])["state"]["epoch"] == 2


def test_a_killed_group_resumes_to_the_records_of_an_uninterrupted_one(killed_group, tmp_path):
    whole = Study(tmp_path, device="cpu", progress=False).run_chunk(GROUP_RESUME_CONFIGS, 2, "stacked")
    resumed = Study(killed_group, device="cpu", progress=False).run_chunk(GROUP_RESUME_CONFIGS, 2, "stacked")
    assert [(r["result"]["losses"], r["result"]["curve"]) for r in resumed] == \
        [(r["result"]["losses"], r["result"]["curve"]) for r in whole]


# ----------------------------------------------------------------------------------------------- group size
def test_pick_takes_the_smallest_size_near_the_best_rate():
    curve = [(1, "loop", 100.0), (2, "loop", 180.0), (4, "stacked", 300.0), (8, "stacked", 310.0)]
    assert pick(curve) == GroupPlan(4, "stacked", tuple(curve))


def test_a_fixed_group_size_of_one_is_a_loop_of_one():
    assert choose_group("convnet_small", None, 10, (1, 8, 8), FP32, "cpu", 1) == GroupPlan(1, "loop")


def test_auto_measures_the_curve_once_and_caches_it(monkeypatch, tmp_path):
    import kdlib.group_size as gs

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []

    def fake(model, teacher, classes, shape, cfg, device, k, mode, steps=3, rounds=3):
        calls.append((k, mode))
        return {"loop": 100.0, "stacked": 60.0}[mode] * min(k, 4)

    monkeypatch.setattr(gs, "measure_group_rate", fake)
    first = choose_group("convnet_small", "convnet_small", 10, (1, 8, 8), FP32, "cpu")
    n = len(calls)
    second = choose_group("convnet_small", "convnet_small", 10, (1, 8, 8), FP32, "cpu")
    assert (first.size, first.mode, second == first, len(calls) == n) == (4, "loop", True, True)


def test_a_fraction_too_small_fails_its_runs_and_the_grid_goes_on(tmp_path):
    """Issue 25 item 8: the lockstep grid aborted here; groups write failed records instead."""
    tiny = [tiny_config(fraction=0.001, seed=s, train=TINY_FP32) for s in (0, 1)] + [
        tiny_config(fraction=0.5, train=TINY_FP32)]
    df = run_grid(tiny, tmp_path, progress=False, group_size=4, group_mode="stacked")
    assert df.status.tolist() == ["failed", "failed", "done"]
