"""Aggregate student-images/s of a grid of KD runs: one run at a time, groups of K runs, and P processes.

    python benchmarks/grid_throughput.py                        # both workloads, K = 1, 4, 16, 64
    python benchmarks/grid_throughput.py --workload resnet32 --sizes 1 4 16 --rounds 3
    python benchmarks/grid_throughput.py --quick                # seconds: tiny sizes, checks the script runs

Workloads (KD, alpha 0.5, tau 4, SGD as the paper; each member of a group on its own random subset of 20% of
random uint8 data with its own seed, hence its own batches, augmentation and teacher):
  resnet8    ResNet-8 student and teacher at 28x28x1 (Fashion-MNIST-shaped, the cpu profile), batch 128
  resnet32   ResNet-32 student and teacher at 32x32x3 (CIFAR-shaped, the paper), batch 64
Variants, measured in interleaved rounds (A, B, C, A, B, C, ...), each round at least ``--batches`` member-batches:
  one at a time   ``kdlib.train.train``: kdlib's single-run path (what executor 'local' with group_size=1 runs)
  group K mode    ``kdlib.grouped.train_group`` of K members in 'stacked' (one wide network) or 'loop' mode
  P processes     P spawned processes, each ``train`` one run at a time on cores/P threads (executor 'processes')
Each line prints min/median/max over rounds of student images/s (all members together), the median's ratio to
one at a time, and its share of the matmul rate measured in the same run (student forward+backward = 3x its
forward FLOPs, plus the teacher's forward, against a 2048^3 matmul in the run's precision). A spread (max/min)
over 1.5 is flagged: the machine was busy.
"""
from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_header, matmul_gflops  # noqa: E402

from kdlib.data import ImageData  # noqa: E402
from kdlib.distill import make_kd_loss  # noqa: E402
from kdlib.grouped import Member, train_group  # noqa: E402
from kdlib.models import build_model  # noqa: E402
from kdlib.precision import resolve_precision  # noqa: E402
from kdlib.train import TrainConfig, train  # noqa: E402

WORKLOADS = {"resnet8": ("resnet8", (1, 28, 28), 128), "resnet32": ("resnet32", (3, 32, 32), 64)}
FRACTION = 0.2
SPREAD_WARN = 1.5


def random_data(shape: tuple[int, int, int], n: int, seed: int = 0) -> ImageData:
    g = torch.Generator().manual_seed(seed)
    c = shape[0]
    return ImageData("random", torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g),
                     torch.randint(0, 10, (n,), generator=g), torch.randint(0, 256, (64, *shape), dtype=torch.uint8,
                                                                            generator=g),
                     torch.randint(0, 10, (64,), generator=g), num_classes=10, mean=(0.5,) * c, std=(0.25,) * c,
                     crop_padding=4 if shape[1] == 32 else 2, flip=True)


def recipe(batch: int, steps: int, n_kept: int, precision: str) -> TrainConfig:
    """A constant-rate recipe of ``steps`` optimiser steps over ``n_kept`` rows (one epoch of them)."""
    return TrainConfig(epochs=1, batch_size=batch, lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="constant",
                       precision=precision, min_steps=steps)


def members(model: str, shape, data: ImageData, k: int, n_kept: int, teachers: list) -> list[Member]:
    out = []
    for i in range(k):
        rows = np.sort(np.random.default_rng(100 + i).choice(data.n_train, n_kept, replace=False))
        torch.manual_seed(i)
        out.append(Member(build_model(model, 10, shape[0]), i, rows, None, make_kd_loss("kd", 0.5, 4.0),
                          teachers[i % len(teachers)]))
    return out


def one_at_a_time(model, shape, batch, data, teachers, precision, batches) -> float:
    """Images/s of ``batches`` steps of kdlib's single-run path (several runs when a run has fewer steps)."""
    n_kept = batch * batches
    cfg = recipe(batch, batches, n_kept, precision)
    (m,) = members(model, shape, data, 1, n_kept, teachers)
    r = train(m.model, data, cfg, indices=m.indices, loss_fn=m.loss_fn, teacher=m.teacher, seed=m.seed,
              device="cpu" if not torch.cuda.is_available() else "cuda", progress=False, evaluate_test=False)
    return r.steps * batch / r.train_seconds


def group(model, shape, batch, data, teachers, precision, batches, k, mode, compile=None) -> float:
    steps = max(2, math.ceil(batches / k))
    n_kept = batch * steps
    cfg = recipe(batch, steps, n_kept, precision)
    rs = train_group(members(model, shape, data, k, n_kept, teachers), data, cfg, mode=mode, progress=False,
                     evaluate_test=False, threads=min(k, torch.get_num_threads()),
                     device="cuda" if torch.cuda.is_available() else "cpu", compile=compile)
    return k * rs[0].steps * batch / rs[0].extra["group_train_seconds"]


def _worker(args) -> float:
    model, shape, batch, precision, batches, threads, seed = args
    torch.set_num_threads(threads)
    data = random_data(shape, max(2048, batch * batches * 2))
    torch.manual_seed(1000 + seed)
    teacher = build_model(model, 10, shape[0]).eval()
    return one_at_a_time(model, shape, batch, data, [teacher], precision, batches)


def processes(pool, p: int, model, shape, batch, precision, batches) -> float:
    """The sum of the P processes' own training rates, measured while all P train side by side."""
    threads = max(1, (os.cpu_count() or 1) // p)
    return sum(pool.map(_worker, [(model, shape, batch, precision, batches, threads, i) for i in range(p)]))


def forward_gflop(model: str, shape) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    m = build_model(model, 10, shape[0]).eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        m(torch.randn(1, *shape))
    return fc.get_total_flops() / 1e9


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", choices=[*WORKLOADS, "both"], default="both")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16, 64], help="group sizes K")
    ap.add_argument("--modes", nargs="+", default=None, choices=["stacked", "loop"],
                    help="group modes (default: stacked on CUDA, stacked and loop on a CPU)")
    ap.add_argument("--processes", type=int, nargs="*", default=None, help="P (default: the core count)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batches", type=int, default=20, help="member-batches per round, at least")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--compile", default=None, help="also the largest stacked K with torch.compile in this mode "
                                                     "('default', 'reduce-overhead': CUDA graphs); its compilation "
                                                     "is in the warm-up, not in the rounds")
    ap.add_argument("--quick", action="store_true", help="K 1 and 2, 2 batches, 1 round, resnet8: runs in seconds")
    args = ap.parse_args(argv)
    if args.quick:
        args.workload, args.sizes, args.batches, args.rounds, args.processes = "resnet8", [1, 2], 2, 1, [2]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    modes = args.modes or (["stacked"] if device.type == "cuda" else ["stacked", "loop"])
    procs = args.processes if args.processes is not None else [os.cpu_count() or 1]
    precision = resolve_precision(args.precision, device)
    flags = sorted(f for f in ("avx512_bf16", "amx_bf16") if f in open("/proc/cpuinfo").read())
    print(machine_header(), flush=True)
    print(f"cpu bf16 flags: {', '.join(flags) or 'none'}; device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + f"; precision {args.precision} -> {precision}", flush=True)
    dtype = torch.bfloat16 if precision in ("bf16",) else torch.float32
    peak = matmul_gflops(dtype=dtype) if device.type == "cpu" else None
    if peak:
        print(f"matmul 2048^3 in {dtype}: {peak:.0f} GFLOP/s (this run)", flush=True)
    ctx = multiprocessing.get_context("spawn")
    pool = ctx.Pool(max(procs)) if procs and max(procs) > 1 else None
    for name in (WORKLOADS if args.workload == "both" else [args.workload]):
        model, shape, batch = WORKLOADS[name]
        data = random_data(shape, max(4096, int(batch * args.batches / FRACTION)))
        torch.manual_seed(99)
        teachers = [build_model(model, 10, shape[0]).eval() for _ in range(3)]  # members of three seeds
        fns = {"one at a time": lambda: one_at_a_time(model, shape, batch, data, teachers, precision, args.batches)}
        for k in args.sizes:
            for mode in modes:
                if k == 1 and mode == "stacked":
                    continue
                fns[f"group K={k} {mode}"] = (lambda k=k, mode=mode: group(model, shape, batch, data, teachers,
                                                                        precision, args.batches, k, mode))
        if args.compile and "stacked" in modes:
            k = max(args.sizes)
            fns[f"group K={k} stacked {args.compile}"] = (lambda k=k: group(
                model, shape, batch, data, teachers, precision, args.batches, k, "stacked", args.compile))
        for p in procs:
            if p > 1 and pool is not None:
                fns[f"{p} processes"] = lambda p=p: processes(pool, p, model, shape, batch, precision, args.batches)
        flop = 4 * forward_gflop(model, shape)  # student forward+backward (3x) and the teacher's forward
        print(f"\n{name}: {model} student and teacher, {'x'.join(map(str, shape))}, batch {batch}, KD; "
              f"{flop:.3f} GFLOP per student image; {args.rounds} interleaved rounds", flush=True)
        rates: dict[str, list[float]] = {n: [] for n in fns}
        for fn in fns.values():  # warm-up: oneDNN primitives, allocator, cuDNN autotuning
            fn()
        for r in range(args.rounds):
            for n, fn in fns.items():
                rates[n].append(fn())
        base = float(np.median(rates["one at a time"]))
        print(f"  {'variant':24s} {'min':>9s} {'median':>9s} {'max':>9s}  {'x one':>6s}  matmul share")
        for n, rs in rates.items():
            med = float(np.median(rs))
            share = f"{100 * med * flop / peak:5.1f}%" if peak else "  -"
            warn = "  WIDE SPREAD: machine busy" if max(rs) / max(min(rs), 1e-9) > SPREAD_WARN else ""
            print(f"  {n:24s} {min(rs):9.0f} {med:9.0f} {max(rs):9.0f}  {med / base:5.2f}x  {share}{warn}",
                  flush=True)
    if pool is not None:
        pool.close()


if __name__ == "__main__":
    main()
