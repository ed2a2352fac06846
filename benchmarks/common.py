"""Shared helpers of the benchmarks: random CIFAR-shaped data, interleaved timing, medians, matmul peak."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

from kdlib.data import ImageData

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def random_cifar(n_train: int, n_test: int = 256, num_classes: int = 10, seed: int = 0) -> ImageData:
    """Random uint8 32x32x3 images with CIFAR's normalisation and augmentation spec (padding 4, flip)."""
    g = torch.Generator().manual_seed(seed)
    return ImageData(
        "random_cifar",
        torch.randint(0, 256, (n_train, 3, 32, 32), dtype=torch.uint8, generator=g),
        torch.randint(0, num_classes, (n_train,), generator=g),
        torch.randint(0, 256, (n_test, 3, 32, 32), dtype=torch.uint8, generator=g),
        torch.randint(0, num_classes, (n_test,), generator=g),
        num_classes=num_classes, mean=CIFAR_MEAN, std=CIFAR_STD, crop_padding=4, flip=True,
    )


def interleaved(fns: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Calls each function in turn (A, B, A, B, ...) ``repeats`` times; each returns a rate. Rates per name."""
    out: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(repeats):
        for name, fn in fns.items():
            out[name].append(fn())
            print(f"  round {r + 1}: {name:28s} {out[name][-1]:9.1f}", flush=True)
    return out


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def matmul_gflops(n: int = 2048, dtype: torch.dtype = torch.bfloat16, repeats: int = 5) -> float:
    """Median GFLOP/s of an n^3 matmul in ``dtype`` on the CPU (what this machine's peak looks like now)."""
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        rates.append(2 * n ** 3 / (time.perf_counter() - t0) / 1e9)
    return median(rates)


def machine_header() -> str:
    """The machine a number comes from: CPU, torch's capability string, what precision='auto' resolves to,
    threads and the OpenMP wait policy. Every benchmark prints it first."""
    import os

    from kdlib.precision import cpu_name, resolve_precision

    return (f"machine: {cpu_name()}; torch {torch.__version__}; cpu capability "
            f"{torch.backends.cpu.get_cpu_capability()}; oneDNN bf16 "
            f"{bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())}; precision auto -> "
            f"{resolve_precision('auto', 'cpu')} on cpu; torch threads {torch.get_num_threads()}; "
            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(default)')}; {load_note()}")


def load_note() -> str:
    """The 1-minute load average against the core count: the machine is shared, numbers move with it."""
    try:
        import os
        return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    except OSError:
        return ""
