"""Several students trained in lockstep in one process, sharing the data pipeline and the teacher's forward pass.

Students that differ only in their loss (alpha, tau) and share the seed, the kept subset, the labels and the
recipe see exactly the same batches and augmentation when trained alone (``kdlib.train.train`` draws both from a
generator seeded by ``seed`` and the epoch). ``train_lockstep`` therefore gathers, augments and normalises each
batch once, runs each distinct teacher once on it, and trains every student on it. Two ways to run the students:

* ``mode="loop"``: each student's step with the very same operations as ``train``. With ``threads=1`` one
  after another in this thread: bit-identical to training alone (the saving is the shared teacher forward and
  input pipeline). With ``threads=T > 1`` the students are spread over T worker threads that run their ops on
  one core each: on a small CPU that beats two-thread ops on small tensors (~1.25x on 2 cores for ResNet-32 at
  batch 64). Equal to training alone up to float rounding (single-thread kernels sum in another order).
* ``mode="stacked"``: the K students become one *wide* network (``stack_models``): each convolution becomes a
  grouped convolution with K groups, each BatchNorm covers the K students' channels (BatchNorm is per channel,
  so statistics stay per student), each linear layer a batched matmul. SGD with momentum and weight decay is
  elementwise, so one optimiser over the wide parameters is K independent optimisers. One pass then does the
  work of K with K times fewer, bigger kernels (what a GPU wants: ResNet-32 at batch 64 is launch-bound there).
  Equal to training alone up to float rounding (a grouped kernel sums in a different order).

``mode="auto"``: ``loop`` with one worker thread per core (up to K) on CPU, ``stacked`` on CUDA (falling back to
``loop`` when the students cannot be stacked). ``benchmarks/lockstep.py`` measures the modes against training
one by one; ``kdlib.study.run_grid(..., lockstep=True)`` groups a grid's runs and calls ``run_group``.
"""
from __future__ import annotations

import copy
from contextlib import ExitStack
from typing import Iterable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .data import ImageData
from .distill import make_kd_loss
from .models import build_model
from .store import config_key
from .train import (CheckpointSlot, EpochHook, LossFn, MemoryBatches, ModelSteps, Teachers, TrainConfig,
                    TrainingDiverged, TrainResult, autocast_context, cross_entropy_loss, make_optimizer, make_scaler,
                    resolve_device, run_loop)
from .validate import check_choice

MODES = ("auto", "loop", "stacked")
# Modules without parameters that act per channel (or elementwise) and so are valid in a stacked network.
_CHANNELWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish,
                nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Identity)


class StackedLinear(nn.Module):
    """K independent ``nn.Linear`` layers applied to the K blocks of the last dimension: (..., K*in) -> (..., K*out)."""

    def __init__(self, layers: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.k = len(layers)
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in layers]).clone())  # (K, out, in)
        self.bias = None if layers[0].bias is None else nn.Parameter(
            torch.stack([m.bias.detach() for m in layers]).clone())  # (K, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        xk = x.reshape(-1, self.k, self.weight.shape[2]).transpose(0, 1)  # (K, M, in)
        out = torch.bmm(xk, self.weight.transpose(1, 2))  # (K, M, out); autocast runs bmm in bf16 like linear
        if self.bias is not None:
            out = out + self.bias[:, None, :].to(out.dtype)
        return out.transpose(0, 1).reshape(*lead, -1)


def _stack_leaf(mods: Sequence[nn.Module], name: str) -> nn.Module:
    """The wide replacement of K corresponding leaf modules."""
    m0, k = mods[0], len(mods)
    if type(m0) is nn.Conv2d:
        if m0.padding_mode != "zeros":
            raise ValueError(f"cannot stack {name}: padding_mode {m0.padding_mode!r}")
        wide = nn.Conv2d(k * m0.in_channels, k * m0.out_channels, m0.kernel_size, m0.stride, m0.padding,
                         m0.dilation, k * m0.groups, bias=m0.bias is not None)
        with torch.no_grad():
            wide.weight.copy_(torch.cat([m.weight for m in mods]))
            if m0.bias is not None:
                wide.bias.copy_(torch.cat([m.bias for m in mods]))
        return wide
    if type(m0) is nn.BatchNorm2d:
        wide = nn.BatchNorm2d(k * m0.num_features, m0.eps, m0.momentum, m0.affine, m0.track_running_stats)
        with torch.no_grad():
            for attr in ("weight", "bias", "running_mean", "running_var"):
                if getattr(m0, attr) is not None:
                    getattr(wide, attr).copy_(torch.cat([getattr(m, attr) for m in mods]))
            if m0.num_batches_tracked is not None:
                counts = {int(m.num_batches_tracked) for m in mods}
                if len(counts) != 1:
                    raise ValueError(f"cannot stack {name}: BatchNorm counters differ {sorted(counts)}")
                wide.num_batches_tracked.copy_(m0.num_batches_tracked)
        return wide
    if type(m0) is nn.Linear:
        return StackedLinear(mods)
    if isinstance(m0, _CHANNELWISE):
        if isinstance(m0, nn.Flatten) and m0.start_dim != 1:
            raise ValueError(f"cannot stack {name}: Flatten(start_dim={m0.start_dim})")
        return copy.deepcopy(m0)
    raise ValueError(f"cannot stack {name} ({type(m0).__name__}): only Conv2d, BatchNorm2d, Linear and "
                     f"parameter-free channel-wise modules stack; use mode='loop'")


def stack_models(models: Sequence[nn.Module], example: Optional[torch.Tensor] = None) -> nn.Module:
    """One wide network computing the K ``models`` at once: input (N, K*C, H, W), output (N, K*classes).

    The models must share their architecture. Every leaf must be a Conv2d, BatchNorm2d, Linear or a
    parameter-free channel-wise module; other code in ``forward`` must treat channels independently, which is
    checked on ``example`` (a few inputs, (n, C, H, W)) in eval mode when given. Raises ValueError otherwise.
    """
    if len(models) < 1:
        raise ValueError("need at least one model to stack")
    named = [dict(m.named_modules()) for m in models]
    shapes = [{k: v.shape for k, v in m.state_dict().items()} for m in models]
    if any(list(n) != list(named[0]) for n in named[1:]) or any(sh != shapes[0] for sh in shapes[1:]) or \
            any(type(n[k]) is not type(named[0][k]) for n in named[1:] for k in named[0]):
        raise ValueError("cannot stack models of different architectures")
    wide = copy.deepcopy(models[0])
    wide_named = dict(wide.named_modules())
    for name, mod in named[0].items():
        own = list(mod.parameters(recurse=False)) + list(mod.buffers(recurse=False))
        if not own and any(True for _ in mod.children()):
            continue  # a container: its children are replaced below
        new = _stack_leaf([n[name] for n in named], name or type(mod).__name__)
        if name == "":
            wide = new
            break
        parent_name, _, attr = name.rpartition(".")
        setattr(wide_named[parent_name], attr, new)
    if example is not None:
        _check_stacked(models, wide, example)
    return wide


@torch.no_grad()
def _check_stacked(models: Sequence[nn.Module], wide: nn.Module, example: torch.Tensor) -> None:
    """Raises ValueError unless ``wide`` reproduces every model on ``example`` (eval mode, fp32)."""
    k = len(models)
    states = [m.training for m in models] + [wide.training]
    for m in (*models, wide):
        m.eval()
    try:
        dev = next(wide.parameters()).device
        x = example.to(dev, torch.float32)
        ref = torch.stack([m(x.contiguous()) for m in models], 1)  # (n, K, C)
        try:
            out = wide(x.repeat(1, k, 1, 1).contiguous()).reshape(ref.shape)
        except RuntimeError as err:  # e.g. a module reached under a second name was not widened
            raise ValueError(f"the stacked network fails on the example ({err}); use mode='loop'") from err
        scale = ref.nan_to_num(0.0, 0.0, 0.0).abs().max().clamp_min(1.0)
        if not torch.allclose(out, ref, atol=1e-3 * float(scale), rtol=1e-3, equal_nan=True):
            raise ValueError("the stacked network does not reproduce the models (forward mixes channels across "
                             "students); use mode='loop'")
    finally:
        for m, t in zip((*models, wide), states):
            m.train(t)


@torch.no_grad()
def unstack_into(wide: nn.Module, models: Sequence[nn.Module]) -> None:
    """Copies the wide network's parameters and buffers back into the K ``models`` (in place)."""
    k = len(models)
    wide_named = dict(wide.named_modules())
    for m_idx, model in enumerate(models):
        for name, mod in model.named_modules():
            src = wide_named[name]
            for attr, t in list(mod.named_parameters(recurse=False)) + list(mod.named_buffers(recurse=False)):
                s = getattr(src, attr)
                if attr == "num_batches_tracked":
                    t.copy_(s)
                    continue
                t.copy_(s.reshape(k, *t.shape)[m_idx] if s.dim() == t.dim() + 1 else s.chunk(k)[m_idx].view_as(t))


@torch.no_grad()
def _evaluate_stacked(wide: nn.Module, data: ImageData, k: int, device: torch.device, precision: str,
                      memory_format: torch.memory_format, batch_size: int = 1024) -> list[float]:
    """Top-1 test accuracy (percent) of each of the K stacked students."""
    was = wide.training
    wide.eval()
    preds = []
    for s in range(0, len(data.x_test), batch_size):
        xb = data.normalize(data.x_test[s:s + batch_size].to(device))
        xb = xb.repeat(1, k, 1, 1).contiguous(memory_format=memory_format)
        with autocast_context(device, precision):
            preds.append(wide(xb).float().reshape(len(xb), k, -1).argmax(2).cpu())
    wide.train(was)
    hits = (torch.cat(preds) == data.y_test[:, None]).float()
    return [100.0 * hits[:, i].mean().item() for i in range(k)]  # the same float arithmetic as train.evaluate


class StackedSteps:
    """K students as one wide network (``stack_models``) with one optimiser and one loss scaler: one forward and
    backward does the work of K. The K models are written back (``unstack_into``) when the loop closes it."""

    def __init__(self, models: Sequence[nn.Module], wide: nn.Module, loss_fns: Sequence[Optional[LossFn]],
                 teachers: Sequence[Optional[nn.Module]], cfg: TrainConfig, device: torch.device) -> None:
        self.k, self.models, self.wide, self.cfg, self.device = len(models), list(models), wide, cfg, device
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        wide.to(device=device, memory_format=self.memory_format).train()
        self.loss_fns = [fn or cross_entropy_loss for fn in loss_fns]
        self.teachers = Teachers(teachers, device, self.memory_format)
        self.optimizer = make_optimizer(wide, cfg)
        self.scaler = make_scaler(device, cfg.precision)

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step(self, xb: torch.Tensor, yb: torch.Tensor, active: list[int]) -> Iterable[tuple[int, torch.Tensor]]:
        t_logits = self.teachers.logits(xb, self.device, self.cfg.precision)
        with autocast_context(self.device, self.cfg.precision):
            out = self.wide(xb.repeat(1, self.k, 1, 1).contiguous(memory_format=self.memory_format))
        out = out.reshape(len(xb), self.k, -1)
        per = torch.stack([self.loss_fns[i](out[:, i], self.teachers.of(i, t_logits), yb) for i in active])
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(per.sum()).backward()  # a diverged student is left out: its NaN would skip every step
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return zip(active, per.detach())

    def evaluate(self, source, active: list[int]) -> list[float]:
        accs = _evaluate_stacked(self.wide, source.data, self.k, self.device, self.cfg.precision, self.memory_format)
        return [a if i in active else float("nan") for i, a in enumerate(accs)]

    def state_dict(self) -> dict:
        return {"wide": self.wide.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.wide.load_state_dict(state["wide"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])

    def close(self) -> None:
        unstack_into(self.wide, self.models)


def lockstep_steps(models: Sequence[nn.Module], data: ImageData, cfg: TrainConfig,
                   loss_fns: Sequence[Optional[LossFn]], teachers: Sequence[Optional[nn.Module]],
                   device: torch.device, mode: str = "auto", threads: Optional[int] = None
                   ) -> ModelSteps | StackedSteps:
    """The step of K students in ``mode`` ('loop', 'stacked' or 'auto', see the module docstring)."""
    check_choice(mode, "mode", MODES)
    k = len(models)
    if len(loss_fns) != k:
        raise ValueError(f"need one loss_fn per model: {len(loss_fns)} for {k} models")
    if len(teachers) != k:
        raise ValueError(f"need one teacher (or None) per model: {len(teachers)} for {k} models")
    auto = mode == "auto"
    if auto:  # CPU: students on worker threads; GPU: one wide network (K times fewer kernel launches)
        mode = "stacked" if device.type == "cuda" else "loop"
    if mode == "stacked" and k > 1:
        memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        for m in models:
            m.to(device=device, memory_format=memory_format).train()
        try:
            wide = stack_models(models, data.normalize(data.x_test[:2].to(device)))
            return StackedSteps(models, wide, loss_fns, teachers, cfg, device)
        except ValueError:
            if not auto:
                raise
    if threads is None:
        threads = min(k, torch.get_num_threads()) if device.type == "cpu" else 1
    return ModelSteps(models, loss_fns, teachers, cfg, device, threads=threads)


def train_lockstep(
    models: Sequence[nn.Module],
    data: ImageData,
    cfg: TrainConfig,
    *,
    indices: Optional[Sequence[int] | np.ndarray] = None,
    labels: Optional[torch.Tensor] = None,
    loss_fns: Sequence[Optional[LossFn]],
    teacher: Optional[nn.Module] | Sequence[Optional[nn.Module]] = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    mode: str = "auto",
    threads: Optional[int] = None,
    progress: bool = True,
    desc: str = "lockstep",
    evaluate_test: bool = True,
    on_diverge: str = "raise",
    epoch_hook: Optional[EpochHook] = None,
    checkpoint: Optional[CheckpointSlot] = None,
) -> list[TrainResult]:
    """Trains the K ``models`` in place as K calls of ``train(model_k, data, cfg, indices=..., loss_fn=loss_fns[k],
    teacher=teacher_k, seed=seed)`` would, sharing each batch and each distinct teacher's forward pass: the same
    loop (``kdlib.train.run_loop``) with a K-model step.

    ``teacher`` is one teacher for all, or one (or None) per student. ``mode``: 'loop', 'stacked' or 'auto'
    (see the module docstring); ``threads``: worker threads of ``loop`` on CPU (None: one per core, up to K;
    1: this thread only, bit-identical to ``train``). A student whose loss becomes NaN/inf raises ``TrainingDiverged`` when
    ``on_diverge='raise'``; with ``'keep'`` it stops counting, the others go on, and its result has a NaN
    ``final_acc`` and ``extra['diverged']`` set to the message. ``train_seconds`` of each result is the group's
    training time divided by K (``extra['group_train_seconds']`` holds the whole). ``epoch_hook(epoch, models)``
    and ``checkpoint`` work as in ``train``.
    """
    k = len(models)
    if k == 0:
        return []
    teachers = list(teacher) if isinstance(teacher, (list, tuple)) else [teacher] * k
    device = resolve_device(device)
    source = MemoryBatches(data, cfg, seed, device, indices, labels)
    step = lockstep_steps(models, data, cfg, loss_fns, teachers, device, mode, threads)
    results = run_loop(step, source, cfg, evaluate_test=evaluate_test, epoch_hook=epoch_hook,
                       checkpoint=checkpoint, on_diverge=on_diverge, desc=desc, progress=progress, device=device)
    mode = "stacked" if isinstance(step, StackedSteps) else "loop"
    threads = step.threads if isinstance(step, ModelSteps) else 1
    for r in results:
        r.extra.update({"lockstep": k, "lockstep_mode": mode, "lockstep_threads": threads,
                        "group_train_seconds": r.train_seconds * k, "group_wall_seconds": r.wall_seconds * k})
    return results


# --------------------------------------------------------------------------------------------- grids
def group_key(cfg) -> str:
    """What students must share to train in lockstep: ``RunConfig.group_key`` (same key -> same seed, subset,
    labels, model and recipe, hence the same batches)."""
    return cfg.group_key()


def run_group(study, configs: Sequence, mode: str = "auto") -> list[dict]:
    """Records of ``configs`` (all with the same ``group_key``), the unfinished ones trained together by
    ``train_lockstep`` and written to ``study.store`` exactly as ``Study.run`` writes them (``result.extra``
    says ``lockstep``). Finished records are read, never recomputed; every pending run is trained under its
    store lock, so two grids never train the same run twice."""
    if len({group_key(c) for c in configs}) > 1:
        raise ValueError("run_group needs configs that differ only in alpha, tau, kd_loss or teacher")
    resolved = [c.resolved() for c in configs]
    keys = [r.key() for r in resolved]
    records: dict[str, dict] = {k: rec for k in keys if (rec := study.store.done("runs", k)) is not None}
    pending = sorted({k for k in keys if k not in records})
    if not pending:
        return [records[k] for k in keys]
    with ExitStack() as locks:
        for k in pending:  # sorted order: two grids taking overlapping groups cannot deadlock
            locks.enter_context(study.store.lock("runs", k))
        todo = []
        for k in pending:
            rec = study.store.done("runs", k)
            if rec is not None:
                records[k] = rec
            else:
                todo.append(resolved[keys.index(k)])
        if todo:
            records.update(_train_group(study, todo, mode))
    return [records[k] for k in keys]


def _train_group(study, runs: list, mode: str) -> dict[str, dict]:
    """Trains the resolved ``runs`` (pending, one group) in lockstep and writes their records; key -> record."""
    r0 = runs[0]
    out: dict[str, dict] = {}
    try:
        data = study.data(r0.dataset)
        indices = study.subset(r0)
        labels, noisy = study.labels(r0)
    except TrainingDiverged as err:  # a scoring proxy diverged: every run of the group fails as Study.run would
        return {r.key(): study.store.put("runs", r.key(), {"status": "failed", "config": r, "error": str(err)})
                for r in runs}
    teachers: dict[str, tuple] = {}  # teacher key -> (model, record): one model, so one forward per batch
    live = []
    for r in runs:
        if not r.uses_teacher:
            live.append((r, None, None))
            continue
        tcfg = r.teacher_config()
        tkey = tcfg.key()
        try:
            if tkey not in teachers:
                teachers[tkey] = study.teacher(tcfg)
        except TrainingDiverged as err:
            out[r.key()] = study.store.put("runs", r.key(), {"status": "failed", "config": r, "error": str(err)})
            continue
        live.append((r, *teachers[tkey]))
    if not live:
        return out
    models = []
    for r, _, _ in live:
        torch.manual_seed(r.seed)  # the same initial weights as Study.run
        models.append(build_model(r.model, data.num_classes, data.in_channels))
    run_keys = [r.key() for r, _, _ in live]  # the group's checkpoint: these runs, in this order, in this mode
    group = {"runs": run_keys, "mode": mode}
    slot = study.store.checkpoint("groups", config_key(group), group)
    results = train_lockstep(
        models, data, r0.train, indices=indices, labels=labels,
        loss_fns=[make_kd_loss(r.kd_loss, r.alpha, r.tau, r.kd_params) for r, _, _ in live],
        teacher=[t for _, t, _ in live], seed=r0.seed, device=study.device, mode=mode, progress=study.progress,
        desc=f"{r0.method} f={r0.fraction:g} a={','.join(f'{r.alpha:g}' for r, _, _ in live)} s={r0.seed}",
        on_diverge="keep", checkpoint=slot)
    for (r, _, trec), res in zip(live, results):
        if "diverged" in res.extra:
            rec = {"status": "failed", "config": r, "error": res.extra["diverged"]}
        else:
            rec = study.run_record(r, res, data, indices, noisy, trec)
        out[r.key()] = study.store.put("runs", r.key(), rec)
    slot.clear()
    return out
