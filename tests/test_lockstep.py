"""Lockstep training equals training alone (fp32, same seed), and lockstep grids write the same records."""
import copy

import pytest
import torch

from kdlib.data import load_dataset
from kdlib.distill import make_kd_loss
from kdlib.lockstep import group_key, stack_models, train_lockstep, unstack_into
from kdlib.models import build_model
from kdlib.store import Store
from kdlib.study import RunConfig, expand_grid, run_grid
from kdlib.train import TrainConfig, inference_copy, train

FP32 = TrainConfig(epochs=2, batch_size=64, lr=0.05, schedule="cosine", precision="fp32")
ALPHAS = (0.0, 0.5, 0.9)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def teacher(digits):
    torch.manual_seed(1)
    t = build_model("convnet_small", 10, 1)
    train(t, digits, FP32, seed=5, progress=False, evaluate_test=False)
    return t.eval()


@pytest.fixture(scope="module")
def alone(digits, teacher):
    """Each alpha trained alone by kdlib.train.train: (model, result)."""
    out = []
    for a in ALPHAS:
        torch.manual_seed(0)
        m = build_model("convnet_small", 10, 1)
        r = train(m, digits, FP32, indices=range(0, digits.n_train, 3), loss_fn=make_kd_loss("kd", a, 4.0),
                  teacher=teacher if a > 0 else None, seed=3, progress=False)
        out.append((m, r))
    return out


def _lockstep(digits, teacher, mode, threads=None):
    models = []
    for _ in ALPHAS:
        torch.manual_seed(0)
        models.append(build_model("convnet_small", 10, 1))
    results = train_lockstep(models, digits, FP32, indices=range(0, digits.n_train, 3),
                             loss_fns=[make_kd_loss("kd", a, 4.0) for a in ALPHAS],
                             teacher=[teacher if a > 0 else None for a in ALPHAS], seed=3, mode=mode,
                             threads=threads, progress=False)
    return models, results


def _max_diff(a, b):
    """Largest difference over the float tensors of two state dicts, relative to each tensor's scale (>= 1)."""
    return max(((x - y).abs().max() / x.abs().max().clamp_min(1.0)).item()
               for x, y in zip(a.state_dict().values(), b.state_dict().values()) if x.is_floating_point())


def test_loop_lockstep_is_bit_identical_to_training_alone(digits, teacher, alone):
    models, results = _lockstep(digits, teacher, "loop", threads=1)
    for (m0, r0), m, r in zip(alone, models, results):
        assert r.final_acc == r0.final_acc and r.curve == r0.curve and r.losses == r0.losses
        assert r.steps == r0.steps and r.extra["lockstep"] == 3 and r.extra["lockstep_mode"] == "loop"
        assert _max_diff(m0, m) == 0.0


@pytest.mark.parametrize("mode,threads", [("stacked", None), ("loop", 2)])
def test_stacked_and_threaded_lockstep_match_training_alone(digits, teacher, alone, mode, threads):
    threads_before = torch.get_num_threads()
    models, results = _lockstep(digits, teacher, mode, threads)
    assert torch.get_num_threads() == threads_before
    for (m0, r0), m, r in zip(alone, models, results):
        assert r.extra["lockstep_mode"] == mode
        assert r.final_acc == pytest.approx(r0.final_acc, abs=0.6)  # at most two of 360 test images
        assert r.losses == pytest.approx(r0.losses, rel=1e-4)
        assert _max_diff(m0, m) < 1e-3  # other kernels (grouped, 1-thread) round differently
        for x, y in zip(m0.state_dict().values(), m.state_dict().values()):  # BN counters too
            if not x.is_floating_point():
                assert torch.equal(x, y)


def test_stack_unstack_round_trip_and_resnet_forward():
    torch.manual_seed(0)
    models = [build_model("resnet8", 10) for _ in range(3)]
    x = torch.randn(4, 3, 32, 32)
    wide = stack_models(models, x)
    for m in models:
        m.eval()
    wide.eval()
    ref = torch.stack([m(x) for m in models], 1)
    assert torch.allclose(wide(x.repeat(1, 3, 1, 1)).reshape(ref.shape), ref, atol=1e-4)
    copies = [copy.deepcopy(m) for m in models]
    for c in copies:
        for t in c.state_dict().values():
            t.zero_()
    unstack_into(wide, copies)
    assert all(_max_diff(a, b) == 0.0 for a, b in zip(models, copies))


def test_stacking_refuses_mixed_architectures():
    with pytest.raises(ValueError, match="different architectures"):
        stack_models([build_model("resnet8", 10), build_model("resnet14", 10)])


def test_inference_copy_folds_batchnorm_without_changing_the_teacher(teacher, digits):
    x = digits.normalize(digits.x_test[:32])
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    fast = inference_copy(teacher)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    with torch.no_grad():
        assert torch.allclose(fast(x), teacher(x), atol=1e-4)
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())


def test_lockstep_grid_records_equal_sequential_ones(tmp_path):
    base = dict(dataset="digits", model="convnet_small", teacher="convnet_small", method="random",
                fraction=0.3, train=TrainConfig(epochs=2, batch_size=64, lr=0.05, schedule="cosine",
                                                precision="fp32"))
    assert len({group_key(c) for c in expand_grid(base, {"alpha": [0.0, 0.5, 1.0], "seed": [0, 1]})}) == 2
    configs = expand_grid(base, {"alpha": [0.0, 0.5, 1.0, 0.5]})  # one group; a duplicate is trained once
    seq = run_grid(configs, tmp_path / "seq", progress=False)
    lock = run_grid(configs, tmp_path / "lock", progress=False, lockstep=True)
    assert (seq.status == "done").all() and (lock.status == "done").all()
    assert list(seq.key) == list(lock.key)
    for col in ("n_train", "noisy_kept", "teacher_acc", "epochs", "steps"):
        assert seq[col].equals(lock[col]), col
    assert lock.final_acc.tolist() == pytest.approx(seq.final_acc.tolist(), abs=0.6)
    for key in seq.key:  # the stored records: same fields and values but timings, accuracies up to rounding
        a, b = Store(tmp_path / "seq").get("runs", key), Store(tmp_path / "lock").get("runs", key)
        assert set(a) == set(b) and set(a["result"]) == set(b["result"])
        for field in set(a) - {"result", "written", "checksum"}:
            assert a[field] == b[field], field
        assert b["result"]["extra"]["lockstep"] == 3 and a["result"]["extra"] == {}
        assert b["result"]["losses"] == pytest.approx(a["result"]["losses"], rel=1e-4)
    # a second call reads every record back and trains nothing
    again = run_grid(configs, tmp_path / "lock", progress=False, lockstep=True)
    assert list(again.train_seconds) == list(lock.train_seconds)


def test_lockstep_grid_only_runs_locally(tmp_path):
    with pytest.raises(ValueError, match="local executor"):
        run_grid([RunConfig(dataset="digits")], tmp_path, progress=False, executor="processes", lockstep=True)


def test_stacking_refuses_same_names_different_widths():
    with pytest.raises(ValueError, match="different architectures"):
        stack_models([build_model("convnet_small", 10, 1), build_model("convnet", 10, 1)])


@pytest.mark.parametrize("mode", ["loop", "stacked"])
def test_a_diverging_student_fails_alone(digits, mode):
    from kdlib.train import TrainingDiverged

    cfg = TrainConfig(epochs=1, batch_size=64, lr=0.05, precision="fp32")
    ce = make_kd_loss("kd", 0.0, 4.0)
    fns = [ce, lambda s, t, y: ce(s, t, y) * float("nan")]
    models = [build_model("convnet_small", 10, 1) for _ in fns]
    res = train_lockstep(models, digits, cfg, indices=range(200), loss_fns=fns, mode=mode, progress=False,
                         on_diverge="keep")
    assert "diverged" not in res[0].extra and res[0].final_acc == res[0].final_acc
    assert "loss became nan" in res[1].extra["diverged"] and res[1].final_acc != res[1].final_acc
    with pytest.raises(TrainingDiverged, match="loss became nan"):
        train_lockstep(models, digits, cfg, indices=range(200), loss_fns=fns, mode=mode, progress=False)
