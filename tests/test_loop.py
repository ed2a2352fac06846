"""The one loop (kdlib.train.run_loop): every path (single, group loop/threads/stacked, DDP) steps through the
loss scaler, a group of one is train() bit for bit, and groups resume from their checkpoint."""
import pytest
import torch
import torch.distributed as dist

import kdlib.grouped as grouped_module
import kdlib.train as train_module
from grid_helpers import one_thread  # noqa: F401  (one_thread: the fixture used below)
from kdlib.data import load_dataset
from kdlib.distill import make_kd_loss
from kdlib.distributed import free_port
from kdlib.grouped import Member, train_group
from kdlib.models import build_model
from kdlib.processes import ProcessGroup
from kdlib.train import FileCheckpoint, TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")
FP32 = TrainConfig(epochs=2, batch_size=64, lr=0.05, schedule="cosine", precision="fp32")
# fp16 needs CUDA (kdlib.precision); on CPU the spy scaler below shows every path steps through the scaler that
# make_scaler(device, precision) gives it, and make_scaler enables it exactly for fp16 on CUDA.
SCALED = TrainConfig(epochs=1, batch_size=128, lr=0.05, schedule="cosine", precision="fp32")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def models(k, seed=0):
    out = []
    for _ in range(k):
        torch.manual_seed(seed)
        out.append(build_model("convnet_small", 10, 1))
    return out


def group(ms, seed=0, indices=None, loss_fns=None):
    """Members for ``ms``, all on one stream (seed, rows) unless the caller varies them."""
    loss_fns = loss_fns or [None] * len(ms)
    return [Member(m, seed, indices, None, fn) for m, fn in zip(ms, loss_fns)]


def test_a_group_of_one_student_is_train_bit_for_bit(digits):
    (m_alone,) = models(1)
    alone = train(m_alone, digits, FP32, indices=range(0, digits.n_train, 2), seed=4, progress=False)
    (m_lock,) = models(1)
    (lock,) = train_group(group([m_lock], 4, range(0, digits.n_train, 2)), digits, FP32, mode="loop", threads=1,
                          progress=False)
    assert (lock.losses, lock.curve, lock.steps) == (alone.losses, alone.curve, alone.steps)
    assert all(torch.equal(a, b) for a, b in zip(m_alone.state_dict().values(), m_lock.state_dict().values()))


class SpyScaler:
    """A pass-through loss scaler that counts its calls (an fp16 GradScaler is enabled only on CUDA)."""

    def __init__(self, device, precision):
        self.device, self.precision, self.calls = device, precision, {"scale": 0, "step": 0, "update": 0}
        self.inner = torch.amp.GradScaler("cpu", enabled=False)

    def scale(self, loss):
        self.calls["scale"] += 1
        return loss

    def step(self, optimizer):
        self.calls["step"] += 1
        optimizer.step()

    def update(self):
        self.calls["update"] += 1

    def state_dict(self):
        return {}


@pytest.fixture
def scalers(monkeypatch):
    made = []

    def make(device, precision):
        made.append(SpyScaler(device, precision))
        return made[-1]

    monkeypatch.setattr(train_module, "make_scaler", make)
    monkeypatch.setattr(grouped_module, "make_scaler", make)
    return made


@pytest.fixture
def gloo_group():
    """A one-process gloo group: the DDP path (model wrapped, gradients all-reduced) in this process."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    yield ProcessGroup(backend="gloo")
    dist.destroy_process_group()


def _single(digits, group=None):
    (m,) = models(1)
    return [train(m, digits, SCALED, indices=range(256), seed=0, progress=False, evaluate_test=False, group=group)]


def _group(digits, mode, threads=None):
    return train_group(group(models(2), 0, range(256), [None, make_kd_loss("kd", 0, 4.0)]), digits, SCALED,
                       mode=mode, threads=threads, progress=False, evaluate_test=False)


@pytest.mark.parametrize("path", ["single", "group loop", "group threads", "group stacked"])
def test_every_path_steps_through_a_loss_scaler_made_for_its_precision(digits, scalers, path):
    results = {"single": lambda: _single(digits), "group loop": lambda: _group(digits, "loop", 1),
               "group threads": lambda: _group(digits, "loop", 2),
               "group stacked": lambda: _group(digits, "stacked")}[path]()
    steps = results[0].steps
    assert steps == 2 and scalers and all(s.precision == SCALED.precision for s in scalers)
    assert sum(s.calls["scale"] for s in scalers) == steps * (1 if path in ("single", "group stacked") else 2)
    assert all(s.calls["scale"] == s.calls["step"] == s.calls["update"] for s in scalers)


def test_the_ddp_path_steps_through_a_loss_scaler(digits, scalers, gloo_group):
    (result,) = _single(digits, gloo_group)
    assert [(s.precision, s.calls["scale"]) for s in scalers] == [(SCALED.precision, result.steps)]


def test_the_scaler_every_path_makes_is_enabled_for_fp16_on_cuda():
    from kdlib.precision import needs_loss_scaler

    assert needs_loss_scaler("fp16", torch.device("cuda", 0))
    assert not needs_loss_scaler("bf16", torch.device("cuda", 0)) and not needs_loss_scaler("fp32", "cpu")


def test_ddp_path_of_one_process_is_train_bit_for_bit(digits, gloo_group):
    (m_ddp,) = models(1)
    ddp = train(m_ddp, digits, FP32, indices=range(0, digits.n_train, 2), seed=4, progress=False, group=gloo_group)
    (m_alone,) = models(1)
    alone = train(m_alone, digits, FP32, indices=range(0, digits.n_train, 2), seed=4, progress=False)
    assert (ddp.losses, ddp.curve) == (alone.losses, alone.curve)


@pytest.mark.parametrize("mode", ["loop", "stacked"])
def test_a_group_resumes_from_its_checkpoint_exactly(digits, tmp_path, mode):
    cfg = TrainConfig(epochs=3, batch_size=64, lr=0.05, precision="fp32")

    def run(**kw):  # two members on two streams (seeds 1 and 2, other rows)
        ms = models(2)
        members = [Member(ms[0], 1, range(600)), Member(ms[1], 2, range(100, 700), None, make_kd_loss("kd", 0, 4.0))]
        return train_group(members, digits, cfg, mode=mode, threads=1, progress=False, **kw)

    whole = run()
    slot = FileCheckpoint(tmp_path / "group.pt")

    def stop(epoch, _):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(checkpoint=slot, epoch_hook=stop)
    resumed = run(checkpoint=slot)
    assert [(r.losses, r.curve) for r in resumed] == [(r.losses, r.curve) for r in whole]
