"""Projected GPU-hours of the paper's full CIFAR grid, from measured ResNet-32 epochs (kdlib vs reference loop).

    python benchmarks/gpu_projection.py            # on a CUDA machine: full 50,000-image epochs, batch 64
    python benchmarks/gpu_projection.py --small    # anywhere (CPU too): 512 images, a smoke test of the script

Measured (one epoch each, after a warm-up epoch; CIFAR-shaped random data, 50,000 images, batch 64, ResNet-32):
  kdlib CE   ``kdlib.train.train`` without a teacher (alpha = 0 students, teachers, scoring proxies)
  kdlib KD   the same with a ResNet-32 teacher forward on every batch (alpha > 0 students)
  kdlib lockstep      ``kdlib.lockstep.train_lockstep`` of all the grid's alphas on one subset (alpha 0 included,
                      teacher forward shared by the KD ones), group time / number of students
  ref CE / ref KD     the RepDistiller / DeepCore style loop of ``benchmarks/train_throughput.py``: PIL
                      Dataset + DataLoader(num_workers=2), fp32, cudnn.benchmark, loss.item() every step.
The grid (defaults = the paper's CIFAR setting as ``params/paper/pruning_sweep.yaml`` runs it; change with flags):
  3 datasets (CIFAR-10 50,000, CIFAR-100 50,000, SVHN 73,257 training images) x methods x pruned fractions x
  alphas x seeds, every student 240 epochs over its subset (the paper's budget); the full-data students (f = 1)
  are shared by all methods; one ResNet-32 teacher per (dataset, seed), 240 full-data epochs; one scoring proxy
  per (dataset, scored method, seed) of ``--proxy-epochs`` full-data epochs (kdlib's ProxyConfig default: 10).
Hours = sum over the grid of (measured epoch seconds) x (epochs) x (subset size / 50,000). Evaluation passes,
the scoring passes themselves and start-up are left out (a few percent).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_note, machine_header, random_cifar  # noqa: E402
from train_throughput import LR, MOMENTUM, TAU, WD, reference_epoch, reference_loader  # noqa: E402

from kdlib.distill import make_kd_loss  # noqa: E402
from kdlib.lockstep import train_lockstep  # noqa: E402
from kdlib.models import build_model  # noqa: E402
from kdlib.train import TrainConfig, train  # noqa: E402

DATASETS = {"cifar10": 50_000, "cifar100": 50_000, "svhn": 73_257}
EPOCHS = 240


def measure(device: torch.device, n: int, bs: int, alphas: list[float], workers: int) -> dict[str, float]:
    """Seconds per epoch of ``n`` images (after one warm-up epoch) for each variant, scaled to 50,000 images."""
    data = random_cifar(n)
    torch.manual_seed(0)
    teacher = build_model("resnet32", 10).eval()
    cfg = TrainConfig(epochs=1, batch_size=bs, lr=LR, momentum=MOMENTUM, weight_decay=WD, schedule="constant")
    kd_alphas = [a for a in alphas if a > 0] or [0.5]
    alphas = alphas if len(alphas) > 1 else [0.0, kd_alphas[0]]
    scale = 50_000 / n
    out: dict[str, float] = {}

    def kdlib(with_teacher: bool) -> float:
        s = build_model("resnet32", 10)
        fn = make_kd_loss("kd", kd_alphas[0] if with_teacher else 0.0, TAU)
        t = teacher if with_teacher else None
        train(s, data, cfg, loss_fn=fn, teacher=t, device=device, progress=False, evaluate_test=False)  # warm-up
        r = train(s, data, cfg, loss_fn=fn, teacher=t, device=device, progress=False, evaluate_test=False)
        return r.train_seconds

    def lockstep(mode: str) -> float:
        def once() -> float:  # every alpha of one subset in one group, as run_grid(lockstep=True) trains them
            ms = [build_model("resnet32", 10) for _ in alphas]
            rs = train_lockstep(ms, data, cfg, loss_fns=[make_kd_loss("kd", a, TAU) for a in alphas],
                                teacher=[teacher if a > 0 else None for a in alphas], device=device, mode=mode,
                                progress=False, evaluate_test=False)
            return rs[0].train_seconds  # the group's time divided by the number of students
        once()
        return once()

    def reference(with_teacher: bool) -> float:
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        s = build_model("resnet32", 10).to(device)
        t = build_model("resnet32", 10).to(device) if with_teacher else None
        if t is not None:
            t.load_state_dict(teacher.state_dict())
        opt = torch.optim.SGD(s.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
        loader = reference_loader(data.x_train, data.y_train, bs, workers)
        reference_epoch(s, t, opt, loader, device)  # warm-up (workers start, cudnn picks its kernels)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        reference_epoch(s, t, opt, loader, device)
        return time.perf_counter() - t0

    for name, fn in (("kdlib CE", lambda: kdlib(False)), ("kdlib KD", lambda: kdlib(True)),
                     ("kdlib lockstep loop", lambda: lockstep("loop")),
                     ("kdlib lockstep stacked", lambda: lockstep("stacked")),
                     ("ref CE", lambda: reference(False)), ("ref KD", lambda: reference(True))):
        out[name] = fn() * scale
        print(f"  {name:26s} {out[name]:9.1f} s per 50,000-image epoch ({50_000 / out[name]:7.0f} img/s)", flush=True)
    return out


def grid_hours(ce: float, kd: float, methods: list[str], fractions: list[float], alphas: list[float],
               seeds: int, proxy_epochs: int, lockstep: float | None = None) -> tuple[float, dict[str, int]]:
    """GPU-hours of the grid given seconds per 50,000-image epoch without (``ce``) and with (``kd``) a teacher;
    ``lockstep``: seconds per student of an all-alphas lockstep group, which then prices every student."""
    pruned = [f for f in fractions if f < 1.0]
    scored = [m for m in methods if m != "random"]
    seconds, counts = 0.0, {"teachers": 0, "proxies": 0, "students": 0}
    for n in DATASETS.values():
        r = n / 50_000
        for _ in range(seeds):
            seconds += EPOCHS * ce * r  # teacher
            seconds += len(scored) * proxy_epochs * ce * r  # scoring proxies
            counts["teachers"] += 1
            counts["proxies"] += len(scored)
            for a in alphas:
                per_epoch = (lockstep if lockstep is not None else kd if a > 0 else ce) * r
                seconds += len(methods) * sum(EPOCHS * f * per_epoch for f in pruned)
                counts["students"] += len(methods) * len(pruned)
                if 1.0 in fractions:  # full data: one run shared by every method
                    seconds += EPOCHS * per_epoch
                    counts["students"] += 1
    return seconds / 3600, counts


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="512 images instead of 50,000 (CPU smoke test)")
    ap.add_argument("--images", type=int, default=None, help="images per measured epoch (default 50,000)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--methods", default="random,el2n,grand,forgetting")
    ap.add_argument("--fractions", default="0.1,0.2,0.3,0.5,0.7,1.0")
    ap.add_argument("--alphas", default="0.0,0.5")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--proxy-epochs", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2, help="reference DataLoader workers")
    args = ap.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    n = args.images or (512 if args.small else 50_000)
    methods = args.methods.split(",")
    fractions = [float(f) for f in args.fractions.split(",")]
    alphas = [float(a) for a in args.alphas.split(",")]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({load_note()})"
    print(machine_header(), flush=True)
    print(f"ResNet-32, batch 64, {n} CIFAR-shaped images per measured epoch on {name}", flush=True)
    if device.type != "cuda" and not args.small:
        print("  (no CUDA device: this measures the CPU; use --small for a quick check)")
    t = measure(device, n, 64, alphas, args.workers)

    print(f"\nGrid: {len(DATASETS)} datasets ({', '.join(f'{k} {v}' for k, v in DATASETS.items())}) x "
          f"{len(methods)} methods ({', '.join(methods)}) x fractions {fractions} x alphas {alphas} x "
          f"{args.seeds} seeds x {EPOCHS} epochs over each subset;")
    print(f"      + a teacher per (dataset, seed) ({EPOCHS} full-data epochs) + a scoring proxy per (dataset, scored "
          f"method, seed) ({args.proxy_epochs} full-data epochs); f = 1 students shared by all methods.")
    rows = [("reference loop", t["ref CE"], t["ref KD"], None), ("kdlib", t["kdlib CE"], t["kdlib KD"], None),
            ("kdlib + lockstep loop (alphas together)", t["kdlib CE"], t["kdlib KD"], t["kdlib lockstep loop"]),
            ("kdlib + lockstep stacked (alphas together)", t["kdlib CE"], t["kdlib KD"],
             t["kdlib lockstep stacked"])]
    base = None
    for label, ce, kd, lock in rows:
        hours, counts = grid_hours(ce, kd, methods, fractions, alphas, args.seeds, args.proxy_epochs, lock)
        base = base or hours
        print(f"  {label:46s} {hours:9.1f} {'GPU' if device.type == 'cuda' else 'CPU'}-hours "
              f"(x{base / hours:.2f} vs reference)")
    print(f"  runs: {counts['students']} students, {counts['teachers']} teachers, {counts['proxies']} scoring proxies")
    print(f"  lockstep groups: the {len(alphas)} alphas of each subset train together (run_grid(lockstep=True))")


if __name__ == "__main__":
    main()
