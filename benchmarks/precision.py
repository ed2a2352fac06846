"""precision="auto" against fp32 and bf16 autocast, side by side, for a ResNet-8 and a ResNet-32 training step.

    python benchmarks/precision.py            # 3 interleaved rounds per model
    python benchmarks/precision.py --quick    # 1 round, fewer steps

Each measurement is one epoch of ``kdlib.train.train`` (plain CE, batch 128 for ResNet-8 on 28x28x1 images,
batch 64 for ResNet-32 on 32x32x3, channels_last, augmentation on) over ``--steps`` batches. Rounds interleave
(auto, fp32, bf16, auto, ...) and medians are compared. The check: auto is within 5% of the faster of fp32 and
bf16 on this machine. The header names the machine: the answer differs between CPU kinds (AVX2 vs AVX-512 BF16).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved, machine_header, median, random_cifar  # noqa: E402

from kdlib.data import ImageData  # noqa: E402
from kdlib.models import build_model  # noqa: E402
from kdlib.train import TrainConfig, predict_logits, train  # noqa: E402


def random_fashion(n_train: int, seed: int = 0) -> ImageData:
    """Random uint8 28x28x1 images with Fashion-MNIST's shape and augmentation spec (padding 2, flip)."""
    g = torch.Generator().manual_seed(seed)
    return ImageData("random_fashion", torch.randint(0, 256, (n_train, 1, 28, 28), dtype=torch.uint8, generator=g),
                     torch.randint(0, 10, (n_train,), generator=g),
                     torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8, generator=g),
                     torch.randint(0, 10, (64,), generator=g), num_classes=10, mean=(0.286,), std=(0.353,),
                     crop_padding=2, flip=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4, help="batches per measured epoch")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--quick", action="store_true", help="2 steps, 1 round: a smoke test")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.steps, args.repeats = 2, 1
    print(machine_header(), flush=True)
    cases = {"resnet8 (28x28x1, batch 128)": ("resnet8", 128, random_fashion(128 * args.steps)),
             "resnet32 (32x32x3, batch 64)": ("resnet32", 64, random_cifar(64 * args.steps))}
    verdicts = []
    for label, (name, bs, data) in cases.items():
        print(f"\n{label}", flush=True)
        models = {p: build_model(name, data.num_classes, data.in_channels) for p in ("auto", "fp32", "bf16")}

        def step(precision: str):
            cfg = TrainConfig(epochs=1, batch_size=bs, lr=0.05, schedule="constant", precision=precision)
            return lambda: train(models[precision], data, cfg, progress=False, evaluate_test=False).images_per_sec

        fns = {p: step(p) for p in models}
        for fn in fns.values():  # warm-up
            fn()
        rates = {p: median(r) for p, r in interleaved(fns, args.repeats).items()}
        best = max(rates["fp32"], rates["bf16"])
        ratio = rates["auto"] / best
        ok = ratio >= 0.95
        verdicts.append(ok)
        print(f"  images/s (median of {args.repeats}): auto {rates['auto']:.1f}, fp32 {rates['fp32']:.1f}, "
              f"bf16 {rates['bf16']:.1f}; bf16/fp32 {rates['bf16'] / rates['fp32']:.2f}x; "
              f"auto / faster = {ratio:.2f} -> {'OK' if ok else 'SLOWER THAN 5%'}")
    print("\nevaluation pass (predict_logits, resnet8, 28x28x1, auto precision), images/s by batch size:")
    data = random_fashion(64, seed=1)
    data = ImageData(data.name, data.x_train, data.y_train, torch.randint(0, 256, (4096, 1, 28, 28), dtype=torch.uint8),
                     torch.randint(0, 10, (4096,)), num_classes=10, mean=data.mean, std=data.std)
    model = build_model("resnet8", 10, 1)

    def eval_at(bs: int):
        def fn() -> float:
            t0 = time.perf_counter()
            predict_logits(model, data, "test", batch_size=bs)
            return 4096 / (time.perf_counter() - t0)
        return fn

    fns = {f"eval batch {bs}": eval_at(bs) for bs in (256, 1024, 4096)}
    for fn in fns.values():
        fn()
    for name, r in interleaved(fns, args.repeats).items():
        print(f"  {name:16s} {median(r):8.1f}")
    print(f"\n{machine_header()}")
    print("auto within 5% of the faster precision for every model:", all(verdicts))


if __name__ == "__main__":
    main()
