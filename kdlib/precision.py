"""Which precision a run computes in, decided per device from what the hardware does natively, and a description
of the machine a run ran on (recorded beside every result, outside its key).

``precision="auto"`` resolves to:

* CUDA: ``bf16`` where the run's GPU computes it natively (compute capability >= 8.0: Ampere and later; what
  ``torch.cuda.is_bf16_supported(including_emulation=False)`` answers, asked of the run's device, not the current
  one), else ``fp16`` with the loss scaler (a V100 or T4 emulates bf16, which its default answer counts);
* CPU: ``bf16`` only where the CPU computes it natively (AVX-512 BF16 or AMX on x86; the ``bf16`` extension on
  Arm), else ``fp32``. On an AVX2-only CPU oneDNN emulates bf16 and a ResNet step runs ~9x slower than in fp32.

The CPU answer comes from ``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` (False: no bf16 kernels at all) and
the CPU's feature flags (``/proc/cpuinfo``). Where the flags cannot be read (no ``/proc``), a one-off timed probe
(a small conv net's training step in both precisions) decides, and its answer is cached per machine in
``~/.cache/kdlib/cpu_precision.json`` (``$XDG_CACHE_HOME`` respected). Explicit ``bf16``/``fp16``/``fp32`` mean
exactly that; ``fp16`` needs CUDA.
"""
from __future__ import annotations

import functools
import platform
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from .usercache import ignored, read_map, remember

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})  # x86 AVX-512 BF16 / AMX; Arm's bf16 extension
PROBE_MARGIN = 1.1  # bf16 must beat fp32 by 10% in the probe to be chosen
BF16_MIN_CAPABILITY = 8  # CUDA compute capability (major) from which bf16 is native (Ampere)


def cuda_bf16_native(device: torch.device | str) -> bool:
    """True when the CUDA ``device`` computes bf16 natively: compute capability >= 8.0, never emulation (torch's
    ``is_bf16_supported()`` counts emulated bf16 by default and asks the current device); a ROCm GPU answers
    ``is_bf16_supported(including_emulation=False)``."""
    if torch.version.hip:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    major, _ = torch.cuda.get_device_capability(torch.device(device))
    return major >= BF16_MIN_CAPABILITY


def cpu_flags() -> Optional[frozenset[str]]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (x86 ``flags``, Arm ``Features``), or None where unreadable."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return None


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else ``platform.processor()``, else the machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def choose_cpu_precision(mkldnn_bf16: bool, flags: Optional[frozenset[str]],
                         probe: Callable[[], bool]) -> str:
    """``bf16`` or ``fp32`` for ``precision="auto"`` on a CPU: no oneDNN bf16 -> fp32; readable flags decide
    (native bf16 -> bf16); otherwise ``probe()`` (True when bf16 measured faster) decides."""
    if not mkldnn_bf16:
        return "fp32"
    if flags is not None:
        return "bf16" if flags & NATIVE_BF16_FLAGS else "fp32"
    return "bf16" if probe() else "fp32"


def _probe_step_seconds(dtype: Optional[torch.dtype], reps: int = 3) -> float:
    """Best-of-``reps`` seconds of one training step of a small conv net at batch 32 on 32x32 inputs."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(),
                              torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 10))
    net = net.to(memory_format=torch.channels_last)
    x = torch.randn(32, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (32,))
    best = float("inf")
    for _ in range(reps + 1):  # the first is a warm-up
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        best = min(best, time.perf_counter() - t0)
    return best


def probe_bf16_faster() -> bool:
    """Times the probe step in fp32 and bf16 autocast; True when bf16 is faster by ``PROBE_MARGIN``."""
    return _probe_step_seconds(None) > PROBE_MARGIN * _probe_step_seconds(torch.bfloat16)


PROBE_CACHE = "cpu_precision.json"  # in the per-user cache (kdlib.usercache)
PROBE_VERSION = 2  # of the probe and its cache entries: {"version": 2, "bf16_faster": bool}


def cached_probe() -> bool:
    """``probe_bf16_faster()``, measured once per (CPU, torch version) and kept in the per-user cache file; an
    entry of another probe version or shape is ignored with a warning naming the file, and measured again."""
    ident = f"{cpu_name()}|{platform.machine()}|torch {torch.__version__}"
    known = read_map(PROBE_CACHE).get(ident)
    if isinstance(known, dict) and known.get("version") == PROBE_VERSION and isinstance(known.get("bf16_faster"),
                                                                                        bool):
        return known["bf16_faster"]
    if known is not None:
        ignored(PROBE_CACHE, f"its entry for {ident!r} is not a version-{PROBE_VERSION} probe answer: {known!r}")
    answer = probe_bf16_faster()
    remember(PROBE_CACHE, ident, {"version": PROBE_VERSION, "bf16_faster": answer})
    return answer


@functools.lru_cache(maxsize=None)
def cpu_auto_precision() -> str:
    """What ``precision="auto"`` means on this process's CPU (decided once per process)."""
    return choose_cpu_precision(bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()), cpu_flags(), cached_probe)


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """The precision a run on ``device`` actually computes in: ``bf16``, ``fp16`` or ``fp32``."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; allowed values for 'precision': {', '.join(PRECISIONS)}")
    device = torch.device(device)
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision 'fp16' needs a CUDA device (it trains with a loss scaler), got device "
                         f"{str(device)!r}; allowed values on {device.type}: auto, bf16, fp32")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if cuda_bf16_native(device) else "fp16"
    if device.type == "cpu":
        return cpu_auto_precision()
    return "fp32"


def needs_loss_scaler(precision: str, device: torch.device | str) -> bool:
    """True when a run on ``device`` resolves to fp16, which trains with a loss scaler."""
    return resolve_precision(precision, device) == "fp16"


def runtime_info(device: torch.device | str, precision: str) -> dict:
    """What actually ran and which code ran it: resolved precision, device name, CPU capability, torch threads and
    version, and ``kdlib.provenance.code_info()`` (kdlib version, git commit, dirty tree, source hash)."""
    from .provenance import code_info

    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {"precision": resolve_precision(precision, device), "device": str(device), "device_name": name,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, **math_mode(device), **code_info()}


def set_math_mode(device: torch.device | str, precision: str) -> None:
    """The CUDA math a run's precision means, set before it trains: ``fp32`` is IEEE fp32 (TF32 off for matmuls and
    convolutions; PyTorch's default lets cuDNN convolutions use TF32), bf16/fp16 keep TF32 for their fp32 parts;
    cuDNN picks its fastest kernels (``cudnn.benchmark``). Nothing to set on a CPU."""
    if torch.device(device).type != "cuda":
        return
    tf32 = resolve_precision(precision, device) != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True


def math_mode(device: torch.device | str) -> dict:
    """Which math ran on CUDA (for the record): TF32 in matmuls and in cuDNN convolutions, cuDNN autotuning."""
    if torch.device(device).type != "cuda":
        return {}
    return {"tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
            "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32), "cudnn_benchmark": bool(torch.backends.cudnn.benchmark)}
