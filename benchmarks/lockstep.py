"""Grid-level savings (a) and (b): K students in lockstep against the same K students trained one by one.

    python benchmarks/lockstep.py                  # 4 ResNet-32 students, ResNet-32 teacher, batch 64, precision auto
    python benchmarks/lockstep.py --model resnet8 --steps 2 --repeats 1   # a quick look

Both sides call the real code, on the same random CIFAR-shaped subset with the same seed and a KD loss per
student (alphas spread over (0, 1)), for ``--steps`` optimiser steps each:
  one by one       K calls of ``kdlib.train.train``: K teacher forwards per batch
  lockstep loop:1  ``train_lockstep(mode="loop", threads=1)``: one batch pipeline and one teacher forward per
                   step, students one after another (bit-identical to one by one): saving (a) alone
  lockstep loop    ``mode="loop"``, students on one worker thread per core (the CPU default): (a) + (b)
  lockstep stacked ``mode="stacked"``: the K students as one wide network of grouped convolutions: (a) + (b)
Rounds interleave (A, B, C, D, A, B, ...) and the medians of student-images per second are compared. On a
machine that others load, torch's two-thread ops slow down far more than one-thread ops, which flatters the
threaded mode: read the load average printed first.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved, machine_header, median, random_cifar  # noqa: E402

from kdlib.distill import make_kd_loss  # noqa: E402
from kdlib.lockstep import train_lockstep  # noqa: E402
from kdlib.models import build_model  # noqa: E402
from kdlib.train import TrainConfig, train  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet32")
    ap.add_argument("--teacher", default="resnet32")
    ap.add_argument("--students", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=4, help="optimiser steps per measurement")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"),
                    help="auto: what this machine resolves it to (bf16 only on a CPU with native bf16)")
    ap.add_argument("--modes", default="loop,loop:1,stacked",
                    help="lockstep variants: loop (students on worker threads, one per core), loop:1 (one after "
                         "another in this thread), stacked (one wide network)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: torch's, one per core); 1 is robust when others load the machine")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    k, bs = args.students, args.batch_size
    data = random_cifar(bs * args.steps)
    cfg = TrainConfig(epochs=1, batch_size=bs, lr=0.05, precision=args.precision)
    torch.manual_seed(0)
    teacher = build_model(args.teacher, 10).eval()
    alphas = [round((i + 1) / (k + 1), 3) for i in range(k)]
    losses = [make_kd_loss("kd", a, 4.0) for a in alphas]

    def students():
        torch.manual_seed(1)
        return [build_model(args.model, 10) for _ in range(k)]

    def one_by_one() -> float:
        seconds = 0.0
        for m, fn in zip(students(), losses):
            r = train(m, data, cfg, loss_fn=fn, teacher=teacher, seed=0, progress=False, evaluate_test=False)
            seconds += r.train_seconds
        return k * bs * args.steps / seconds

    def lockstep(spec: str):
        mode, _, threads = spec.partition(":")

        def fn() -> float:
            rs = train_lockstep(students(), data, cfg, loss_fns=losses, teacher=teacher, seed=0, mode=mode,
                                threads=int(threads) if threads else None, progress=False, evaluate_test=False)
            return k * bs * args.steps / rs[0].extra["group_train_seconds"]
        return fn

    fns = {"one by one (train x K)": one_by_one}
    for mode in args.modes.split(","):
        fns[f"lockstep {mode}"] = lockstep(mode)
    print(f"{k} x {args.model} students, teacher {args.teacher}, batch {bs}, {args.precision}, "
          f"{args.steps} steps per measurement\n{machine_header()}")
    print("warm-up ...", flush=True)
    for fn in fns.values():  # first calls build oneDNN kernels; not timed
        fn()
    rates = interleaved(fns, args.repeats)
    base = median(rates["one by one (train x K)"])
    print(f"\nstudent-images/s (median of {args.repeats}):")
    for name, rs in rates.items():
        print(f"  {name:28s} {median(rs):8.1f}   x{median(rs) / base:.2f} vs one by one")


if __name__ == "__main__":
    main()
