"""How many runs a group trains at once on this device, and how: chosen from memory and a throughput curve.

``choose_group`` times kdlib's real group step (``kdlib.grouped``: K students, each on its own stream, each
distilling from a teacher, the KD loss, SGD) at K = 1, 2, 4, ... in each mode the device offers ('stacked'
everywhere, 'loop' on a CPU), stops where the rate stops growing or memory would run out, and keeps the smallest K
within ``TOLERANCE`` of the best rate: smaller groups lose less to a failure or a kill. The curve is measured once
per (device, torch, architectures, input shape, batch, precision, threads) and kept in the per-user cache; the
plan never changes what a run computes, only how many train side by side.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from .distill import make_kd_loss
from .models import build_model
from .precision import cpu_name
from .train import TrainConfig, resolve_device
from .usercache import read_map, remember
from .validate import check_choice, check_positive

GROUP_SIZES = (1, 2, 4, 8, 16, 32, 64)
TOLERANCE = 0.05  # the smallest K whose rate is within 5% of the best rate measured
MEMORY_SHARE = 0.6  # a group may take at most this share of the device's free memory
PROBE_CACHE = "group_size.json"
PLAN_MODES = ("auto", "stacked", "loop")
MIN_ROUND_SECONDS = 0.25  # a round of a tiny model's steps lasts at least this long (timer and scheduler noise)


@dataclass(frozen=True)
class GroupPlan:
    """A group size and mode, with the curve it was chosen from: ((K, mode, images/s of all members), ...)."""

    size: int
    mode: str
    curve: tuple[tuple[int, str, float], ...] = ()


def device_name(device: torch.device) -> str:
    """The device's model: the GPU's name, or the CPU's (with torch's capability string)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} [{torch.backends.cpu.get_cpu_capability()}]"


def _memory_budget(device: torch.device) -> Optional[float]:
    """Bytes a group may use: a share of the free device memory (CUDA) or of the available RAM (CPU)."""
    try:
        if device.type == "cuda":
            return MEMORY_SHARE * torch.cuda.mem_get_info(device)[0]
        with open("/proc/meminfo") as fh:
            info = dict(line.split(":", 1) for line in fh)
        return MEMORY_SHARE * int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError, RuntimeError):
        return None


def _activation_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the module outputs of one forward of ``model`` on ``x``: about what backward keeps per member."""
    total = 0

    def hook(_m, _i, out):  # noqa: ANN001
        nonlocal total
        if isinstance(out, torch.Tensor):
            total += out.numel() * out.element_size()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return 2 * total  # the outputs and their gradients


def measure_group_rate(model: str, teacher: Optional[str], num_classes: int, shape: Sequence[int], cfg: TrainConfig,
                       device: torch.device, k: int, mode: str, steps: int = 3, rounds: int = 3) -> float:
    """Student images/s of all K members of kdlib's group step (``kdlib.grouped``) on random inputs: each member
    on its own stream, distilling from a teacher of architecture ``teacher`` (cross-entropy only when None).
    The median of ``rounds`` rounds of at least ``steps`` steps and ``MIN_ROUND_SECONDS``, after a warm-up step."""
    from .grouped import Member, group_steps

    c, h, w = shape
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(k, cfg.batch_size, c, h, w, generator=gen).to(device)
    y = torch.randint(0, num_classes, (k, cfg.batch_size), generator=gen).to(device)
    t = build_model(teacher, num_classes, c) if teacher else None
    members = [Member(build_model(model, num_classes, c), i, None, None,
                      make_kd_loss("kd", 0.5 if t is not None else 0.0, 4.0), t) for i in range(k)]
    step = group_steps(members, list(range(k)), cfg, device, mode, threads=min(k, torch.get_num_threads()),
                       example=x[0, :2])
    active = list(range(k))
    try:
        step.set_lr(cfg.lr)
        step.step(x, y, active)
        t0 = time.perf_counter()
        float(step.step(x, y, active).sum())
        steps = max(steps, min(500, math.ceil(MIN_ROUND_SECONDS / max(time.perf_counter() - t0, 1e-6))))
        rates = []
        for _ in range(rounds):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                loss = step.step(x, y, active)
            float(loss.sum())  # waits for the device
            rates.append(k * cfg.batch_size * steps / (time.perf_counter() - t0))
    finally:
        step.close()
    return statistics.median(rates)


def _probe_key(model: str, teacher: Optional[str], num_classes: int, shape: Sequence[int], cfg: TrainConfig,
               device: torch.device, modes: Sequence[str], max_size: int) -> str:
    return (f"{device_name(device)}|torch {torch.__version__}|threads {torch.get_num_threads()}|{model}|"
            f"teacher {teacher}|{'x'.join(map(str, shape))}|{num_classes} classes|batch {cfg.batch_size}|"
            f"{cfg.precision}|channels_last {cfg.channels_last}|{'+'.join(modes)}|max {max_size}")


def measure_curve(model: str, teacher: Optional[str], num_classes: int, shape: Sequence[int], cfg: TrainConfig,
                  device: torch.device, modes: Sequence[str], max_size: int = GROUP_SIZES[-1],
                  steps: int = 3) -> list[tuple[int, str, float]]:
    """(K, mode, images/s) for K = 1, 2, 4, ... up to ``max_size`` in each mode, stopping a mode where its rate
    has not grown by ``TOLERANCE`` over two doublings or where K more members would not fit in memory."""
    budget = _memory_budget(device)
    per_member = _activation_bytes(build_model(model, num_classes, shape[0]).to(device),
                                   torch.zeros(cfg.batch_size, *shape, device=device))
    curve = []
    for mode in modes:
        best, stale = 0.0, 0
        for k in (s for s in GROUP_SIZES if s <= max_size):
            if k > 1 and budget is not None and 2 * k * per_member > budget:  # members and their teachers
                break
            try:
                rate = measure_group_rate(model, teacher, num_classes, shape, cfg, device, k, mode, steps)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                break
            curve.append((k, mode, rate))
            stale = 0 if rate > best * (1 + TOLERANCE) else stale + 1
            best = max(best, rate)
            if stale >= 2:
                break
    return curve


def pick(curve: Sequence[tuple[int, str, float]]) -> GroupPlan:
    """The smallest K (then 'stacked' before 'loop' at equal K) whose rate is within ``TOLERANCE`` of the best."""
    best = max(r for _, _, r in curve)
    k, mode, _ = min((p for p in curve if p[2] >= (1 - TOLERANCE) * best), key=lambda p: (p[0], p[1] != "stacked"))
    return GroupPlan(k, mode, tuple(curve))


def choose_group(model: str, teacher: Optional[str], num_classes: int, shape: Sequence[int], cfg: TrainConfig,
                 device: str | torch.device = "auto", size: int | str = "auto", mode: str = "auto",
                 max_size: int = GROUP_SIZES[-1]) -> GroupPlan:
    """The group plan for runs of ``model`` (distilling from ``teacher``) on inputs of ``shape`` with recipe
    ``cfg`` on ``device``: ``size`` and ``mode`` as given, or 'auto' from the cached (or now measured) curve.
    A fixed size with mode 'auto' takes 'stacked' on CUDA and the curve's better mode at that size elsewhere."""
    device = resolve_device(device)
    check_choice(mode, "group_mode", PLAN_MODES)
    if size != "auto":
        size = check_positive(size, "group_size", integer=True)
        if mode != "auto" or size == 1 or device.type == "cuda":
            return GroupPlan(size, "loop" if size == 1 else ("stacked" if mode == "auto" else mode))
        max_size = size
    modes = ("stacked",) if device.type == "cuda" else ("loop", "stacked")
    modes = modes if mode == "auto" else (mode,)
    key = _probe_key(model, teacher, num_classes, shape, cfg, device, modes, max_size)
    known = read_map(PROBE_CACHE).get(key)
    curve = None
    if isinstance(known, list) and known and all(isinstance(p, list) and len(p) == 3 for p in known):
        curve = [(int(k), str(m), float(r)) for k, m, r in known]
    if curve is None:
        curve = measure_curve(model, teacher, num_classes, shape, cfg, device, modes, max_size)
        remember(PROBE_CACHE, key, [list(p) for p in curve])
    if size != "auto":
        at = [p for p in curve if p[0] == size] or curve
        return GroupPlan(size, max(at, key=lambda p: p[2])[1], tuple(curve))
    return pick(curve)
