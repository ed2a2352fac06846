"""kdlib's KD training step against a reference loop written the way RepDistiller and DeepCore train.

    python benchmarks/train_throughput.py            # ResNet-32 student and teacher, batch 64 (the paper recipe)
    python benchmarks/train_throughput.py --quick    # fewer steps and rounds, a smoke test

Both sides train a CIFAR ResNet-32 student with KD from a ResNet-32 teacher (the teacher's forward runs on every
batch), SGD (lr 0.05, momentum 0.9, weight decay 5e-4), batch 64, on random CIFAR-shaped data (32x32x3 uint8,
10 classes), random crop (padding 4) + horizontal flip:

* reference: a torchvision-style Dataset returning PIL images through ``RandomCrop(32, padding=4),
  RandomHorizontalFlip, ToTensor, Normalize``; a ``DataLoader(batch_size=64, shuffle=True, num_workers=2,
  persistent_workers=True)``; fp32, NCHW; KD loss ``CE + KL(log_softmax(s/T), softmax(t/T)) * T^2`` (RepDistiller's
  DistillKL); ``loss.item()`` and top-1/top-5 accuracy every step, as both codebases log them;
* kdlib: ``kdlib.train.train`` on an ``ImageData`` (uint8 tensors in memory, batch augmentation, channels_last,
  no DataLoader, no per-step sync), with ``kdlib.distill.kd_loss`` (alpha 0.5, tau 4), in ``precision="auto"``
  (what this machine resolves it to: bf16 on a CPU with native bf16, else fp32), and side by side the other
  precision, NCHW, batch 256 (not the paper recipe; labelled) and, with ``--compile``, a ``torch.compile``'d student.

Each measurement is one epoch over ``--steps`` batches after a warm-up; rounds interleave and medians are
reported, since the machine is shared and noisy. Also printed: the machine (CPU capability, what auto resolves to,
threads, OpenMP wait policy), a 2048^3 matmul in the resolved precision measured in the same run, the FLOPs per
image of the step (FlopCounterMode: student fwd+bwd + teacher fwd), the fraction of that matmul rate each variant
reaches, and where kdlib's step spends its time (data path, teacher forward, student forward, loss, backward,
optimiser).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (CIFAR_MEAN, CIFAR_STD, interleaved, machine_header, matmul_gflops, median,  # noqa: E402
                    random_cifar)

from kdlib.distill import make_kd_loss  # noqa: E402
from kdlib.models import build_model  # noqa: E402
from kdlib.precision import resolve_precision  # noqa: E402
from kdlib.train import TrainConfig, train  # noqa: E402

LR, MOMENTUM, WD, TAU, ALPHA = 0.05, 0.9, 5e-4, 4.0, 0.5


# ------------------------------------------------------------------------------------------ reference loop
class PILImageDataset(torch.utils.data.Dataset):
    """torchvision.datasets.CIFAR10's access pattern: HWC uint8 array -> PIL image -> transform."""

    def __init__(self, x_hwc: np.ndarray, y: np.ndarray, transform) -> None:
        self.x, self.y, self.transform = x_hwc, y, transform

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        from PIL import Image
        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


def reference_loader(x_nchw: torch.Tensor, y: torch.Tensor, batch_size: int, workers: int):
    import torchvision.transforms as T
    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(CIFAR_MEAN, CIFAR_STD)])
    ds = PILImageDataset(x_nchw.permute(0, 2, 3, 1).contiguous().numpy(), y.numpy(), transform)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                                       persistent_workers=workers > 0, drop_last=False)


def distill_kl(logit_s: torch.Tensor, logit_t: torch.Tensor, T: float) -> torch.Tensor:
    """RepDistiller's DistillKL: KL(softmax(t/T) || softmax(s/T)) * T^2 / batch."""
    p_s = F.log_softmax(logit_s / T, dim=1)
    p_t = F.softmax(logit_t / T, dim=1)
    return F.kl_div(p_s, p_t, reduction="sum") * T ** 2 / logit_s.shape[0]


def accuracy(output: torch.Tensor, target: torch.Tensor, topk=(1, 5)) -> list[torch.Tensor]:
    """RepDistiller/DeepCore-style top-k accuracy, computed every step."""
    maxk = max(topk)
    _, pred = output.topk(maxk, 1, True, True)
    correct = pred.t().eq(target.view(1, -1).expand_as(pred.t()))
    return [correct[:k].reshape(-1).float().sum(0).mul_(100.0 / target.size(0)) for k in topk]


def reference_epoch(student, teacher, optimizer, loader, device: str | torch.device = "cpu",
                    max_steps: int | None = None) -> int:
    """One epoch (or ``max_steps`` batches) of the reference loop; returns the number of images."""
    student.train()
    if teacher is not None:
        teacher.eval()
    n, losses, top1 = 0, [], []
    for step, (x, y) in enumerate(loader):
        if max_steps is not None and step >= max_steps:
            break
        x, y = x.float().to(device), y.to(device)
        logit_s = student(x)
        if teacher is not None:
            with torch.no_grad():
                logit_t = teacher(x)
            loss = (1 - ALPHA) * F.cross_entropy(logit_s, y) + ALPHA * distill_kl(logit_s, logit_t, TAU)
        else:
            loss = F.cross_entropy(logit_s, y)
        acc1, _ = accuracy(logit_s, y)
        losses.append(loss.item())
        top1.append(acc1.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        n += len(x)
    return n


# ------------------------------------------------------------------------------------------ FLOPs
def flops_per_image(batch_size: int = 64) -> float:
    """FLOPs per image of the KD step: student fwd + bwd and teacher fwd (convs and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode
    s, t = build_model("resnet32", 10), build_model("resnet32", 10).eval()
    x = torch.randn(batch_size, 3, 32, 32)
    with FlopCounterMode(display=False) as fc:
        with torch.no_grad():
            t(x)
        s(x).sum().backward()
    return fc.get_total_flops() / batch_size


def phase_profile(data, bs: int, precision: str, steps: int, teacher: torch.nn.Module) -> dict[str, float]:
    """Milliseconds per batch of each part of kdlib's KD step, timed one part at a time with the real functions:
    data (gather, augment, normalise, channels_last), teacher forward (BN folded), student forward, loss,
    backward, optimiser step (fused SGD)."""
    from kdlib.augment import augment
    from kdlib.train import autocast_context, inference_copy, make_optimizer

    device = torch.device("cpu")
    fmt = torch.channels_last
    student = build_model("resnet32", 10).to(memory_format=fmt).train()
    t_fast = inference_copy(teacher.to(memory_format=fmt), fmt)
    opt = make_optimizer(student, TrainConfig(lr=LR, momentum=MOMENTUM, weight_decay=WD))
    loss_fn = make_kd_loss("kd", ALPHA, TAU)
    gen = torch.Generator().manual_seed(0)
    parts = dict.fromkeys(("data", "teacher forward", "student forward", "loss", "backward", "optimizer"), 0.0)
    for step in range(steps + 1):  # the first is a warm-up
        tick = time.perf_counter()
        marks = []
        idx = torch.randint(0, data.n_train, (bs,), generator=gen)
        xb = data.normalize(augment(data.x_train[idx], data.crop_padding, data.flip, gen)).contiguous(memory_format=fmt)
        yb = data.y_train[idx]
        marks.append(time.perf_counter())
        with autocast_context(device, precision):
            with torch.no_grad():
                t_logits = t_fast(xb)
            marks.append(time.perf_counter())
            s_logits = student(xb)
        marks.append(time.perf_counter())
        loss = loss_fn(s_logits, t_logits, yb)
        marks.append(time.perf_counter())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        marks.append(time.perf_counter())
        opt.step()
        marks.append(time.perf_counter())
        if step:
            for name, a, b in zip(parts, [tick] + marks[:-1], marks):
                parts[name] += (b - a) * 1000 / steps
    return parts


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8, help="batches per measured epoch")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    ap.add_argument("--workers", type=int, default=2, help="reference DataLoader workers")
    ap.add_argument("--no-256", action="store_true", help="skip kdlib at batch 256")
    ap.add_argument("--compile", action="store_true", help="also kdlib with torch.compile'd student (minutes to compile)")
    ap.add_argument("--quick", action="store_true", help="3 steps, 1 round: a smoke test")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: torch's, one per core); 1 is robust when others load the machine")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.steps, args.repeats = 3, 1
    bs = 64
    t_start = time.perf_counter()
    auto = resolve_precision("auto", "cpu")
    print(machine_header(), flush=True)
    print(f"ResNet-32 student + ResNet-32 teacher (KD every step), batch {bs}", flush=True)

    data = random_cifar(bs * args.steps)
    torch.manual_seed(0)
    teacher = build_model("resnet32", 10).eval()

    # reference: fp32, NCHW, DataLoader of PIL images
    ref_student = build_model("resnet32", 10)
    ref_teacher = build_model("resnet32", 10)
    ref_teacher.load_state_dict(teacher.state_dict())
    ref_opt = torch.optim.SGD(ref_student.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    loader = reference_loader(data.x_train, data.y_train, bs, args.workers)

    def reference() -> float:
        t0 = time.perf_counter()
        n = reference_epoch(ref_student, ref_teacher, ref_opt, loader)
        return n / (time.perf_counter() - t0)

    loss_fn = make_kd_loss("kd", ALPHA, TAU)

    def kdlib_at(data_, batch: int, precision: str, channels_last: bool = True, compiled: bool = False):
        """The real training loop, one epoch per call; the student carries over between calls."""
        student = build_model("resnet32", 10)
        if compiled:
            student = torch.compile(student)
        cfg = TrainConfig(epochs=1, batch_size=batch, lr=LR, momentum=MOMENTUM, weight_decay=WD, schedule="constant",
                          precision=precision, channels_last=channels_last)

        def fn() -> float:
            return train(student, data_, cfg, loss_fn=loss_fn, teacher=teacher, progress=False,
                         evaluate_test=False).images_per_sec
        return fn

    REF, MAIN = "reference (fp32, DataLoader)", f"kdlib auto (= {auto})"
    fns = {REF: reference, MAIN: kdlib_at(data, bs, "auto")}
    other = "bf16" if auto == "fp32" else "fp32"
    fns[f"kdlib {other}"] = kdlib_at(data, bs, other)
    fns[f"kdlib {auto}, NCHW"] = kdlib_at(data, bs, auto, channels_last=False)
    if args.compile:
        fns[f"kdlib {auto}, torch.compile"] = kdlib_at(data, bs, auto, compiled=True)
    if not args.no_256:
        fns[f"kdlib {auto}, batch 256"] = kdlib_at(random_cifar(256 * max(2, args.steps // 4)), 256, auto)
    print("warm-up (and compilation, where asked) ...", flush=True)
    for fn in fns.values():
        fn()
    rates = {name: median(r) for name, r in interleaved(fns, args.repeats).items()}
    ref = rates[REF]

    dtype = torch.bfloat16 if auto == "bf16" else torch.float32
    peak = matmul_gflops(2048, dtype)
    flops = flops_per_image(bs)
    print(f"\nimages/s, median of {args.repeats} interleaved rounds ({args.steps} batches each):")
    for name, rate in rates.items():
        print(f"  {name:36s} {rate:8.1f}   {rate / ref:5.2f}x reference   "
              f"{rate * flops / 1e9:6.1f} GFLOP/s = {100 * rate * flops / 1e9 / peak:5.1f}% of the matmul rate")
    print(f"\nspeed-up kdlib (auto, batch 64) / reference: {rates[MAIN] / ref:.2f}x")
    print(f"FLOPs per image (student fwd+bwd + teacher fwd, FlopCounterMode): {flops / 1e6:.0f} MFLOP")
    print(f"{'bf16' if auto == 'bf16' else 'fp32'} matmul 2048^3 measured now: {peak:.0f} GFLOP/s")

    parts = phase_profile(data, bs, auto, max(4, args.steps), teacher)
    total = sum(parts.values())
    print(f"\nwhere kdlib's batch-{bs} step spends its time ({auto}, ms per batch, each part timed alone):")
    for name, ms in parts.items():
        print(f"  {name:16s} {ms:7.1f} ms  {100 * ms / total:5.1f}%")
    print(f"  {'total':16s} {total:7.1f} ms  ({bs / total * 1000:.0f} images/s)")
    print(f"\n{machine_header()}; benchmark wall time {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
