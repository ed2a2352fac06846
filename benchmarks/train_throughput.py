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
* kdlib: ``kdlib.train.train`` on an ``ImageData`` (uint8 tensors in memory, batch augmentation, bf16 autocast,
  channels_last, no DataLoader, no per-step sync), with ``kdlib.distill.kd_loss`` (alpha 0.5, tau 4).

Each measurement is one epoch over ``--steps`` batches after a warm-up; rounds interleave (ref, kdlib, kdlib-256,
ref, kdlib, kdlib-256, ...) and medians are reported, since the machine is shared and noisy. Also printed: a 2048^3 bf16 matmul
measured in the same run, the FLOPs per image of the step (FlopCounterMode: student fwd+bwd + teacher fwd) and
the fraction of that matmul rate kdlib's step reaches; and, labelled as such, kdlib at batch 256.
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
from common import CIFAR_MEAN, CIFAR_STD, interleaved, load_note, matmul_gflops, median, random_cifar  # noqa: E402

from kdlib.distill import make_kd_loss  # noqa: E402
from kdlib.models import build_model  # noqa: E402
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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8, help="batches per measured epoch")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    ap.add_argument("--workers", type=int, default=2, help="reference DataLoader workers")
    ap.add_argument("--no-256", action="store_true", help="skip kdlib at batch 256")
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
    print(f"ResNet-32 student + ResNet-32 teacher (KD every step), batch {bs}; {load_note()}", flush=True)

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

    # kdlib: the real training loop (one epoch per call); the student carries over between calls
    kd_student = build_model("resnet32", 10)
    cfg = TrainConfig(epochs=1, batch_size=bs, lr=LR, momentum=MOMENTUM, weight_decay=WD, schedule="constant")
    loss_fn = make_kd_loss("kd", ALPHA, TAU)

    def kdlib_at(cfg_: TrainConfig, data_):
        def fn() -> float:
            r = train(kd_student, data_, cfg_, loss_fn=loss_fn, teacher=teacher, progress=False,
                      evaluate_test=False)
            return r.images_per_sec
        return fn

    fns = {"reference (fp32, DataLoader)": reference, "kdlib (bf16, batch 64)": kdlib_at(cfg, data)}
    if not args.no_256:
        data256 = random_cifar(256 * max(2, args.steps // 4))
        cfg256 = TrainConfig(epochs=1, batch_size=256, lr=LR, momentum=MOMENTUM, weight_decay=WD,
                             schedule="constant")
        fns["kdlib (bf16, batch 256)"] = kdlib_at(cfg256, data256)
    print("warm-up ...", flush=True)
    for fn in fns.values():
        fn()
    rates = interleaved(fns, args.repeats)
    ref, kd = median(rates["reference (fp32, DataLoader)"]), median(rates["kdlib (bf16, batch 64)"])
    kd256 = median(rates["kdlib (bf16, batch 256)"]) if not args.no_256 else None

    peak = matmul_gflops(2048, torch.bfloat16)
    flops = flops_per_image(bs)
    print(f"\nimages/s, median of {args.repeats} interleaved rounds ({args.steps} batches of {bs} each):")
    print(f"  reference loop (fp32, NCHW, PIL + DataLoader, {args.workers} workers) {ref:8.1f}")
    print(f"  kdlib.train.train (bf16 autocast, channels_last, tensors)        {kd:8.1f}")
    print(f"  speed-up kdlib / reference                                       {kd / ref:8.2f}x")
    if kd256 is not None:
        print(f"  kdlib at batch 256 (not the paper recipe; for reference)         {kd256:8.1f}"
              f"   ({kd256 / ref:.2f}x the batch-64 reference)")
    print(f"\nFLOPs per image (student fwd+bwd + teacher fwd, FlopCounterMode): {flops / 1e6:.0f} MFLOP")
    print(f"bf16 matmul 2048^3 measured now: {peak:.0f} GFLOP/s")
    print(f"kdlib batch 64 reaches {kd * flops / 1e9:.0f} GFLOP/s = {100 * kd * flops / 1e9 / peak:.1f}% of it"
          + (f"; batch 256: {kd256 * flops / 1e9:.0f} GFLOP/s = {100 * kd256 * flops / 1e9 / peak:.1f}%"
             if kd256 is not None else ""))
    print(f"reference reaches {ref * flops / 1e9:.0f} GFLOP/s = {100 * ref * flops / 1e9 / peak:.1f}% of it")
    print(f"({load_note()}; benchmark wall time {time.perf_counter() - t_start:.0f} s)")


if __name__ == "__main__":
    main()
