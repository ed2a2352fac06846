"""The GPU check (``benchmarks/gpu_check.sh`` runs it): the paper's ResNet-32 KD step with kdlib and with the
reference loop, in bf16 and fp16, groups of runs, and the projected GPU-hours of the paper's CIFAR grid.

    benchmarks/gpu_check.sh              # on a CUDA machine: a few minutes
    benchmarks/gpu_check.sh --dry-run    # anywhere: CPU, ResNet-8, a few tiny batches; checks the script runs

Measured on CIFAR-shaped random data (32x32x3 uint8, 10 classes; padding-4 crop + flip), batch 64, SGD lr 0.05,
momentum 0.9, wd 5e-4, each an epoch of ``--images`` images after a warm-up epoch, rounds interleaved, medians:
  kdlib KD / CE   ``kdlib.train.train`` with a ResNet-32 teacher forward on every batch (alpha 0.5, tau 4) / without
                  (alpha 0 students, teachers, scoring proxies), in each ``--precisions`` (bf16, fp16 with a scaler)
  reference KD / CE  the RepDistiller/DeepCore-style loop of ``benchmarks/train_throughput.py`` (PIL Dataset +
                  DataLoader(num_workers=2), fp32, NCHW, ``loss.item()`` and top-k every step), cudnn.benchmark on
  group K         ``kdlib.group_size.measure_group_rate``: kdlib's real group step (as ``run_grid`` trains a grid)
                  of K students, each on its own stream and distilling from its own teacher, K = 1, 4, 16, 64
                  ('stacked' on CUDA, also 'loop' on a CPU), in the first precision: images/s of all K together
The grid: every training run of ``params/paper/{pruning_sweep,alpha_vs_factor,noisy_labels,teacher_capacity,
teacher_fraction}.yaml``, built by the notebooks' own grid function (``kdlib.plan.study_grid``, the notebook's
defaults for what a file leaves out), the pruning sweep on CIFAR-10, CIFAR-100 and SVHN and the alpha sweep on
CIFAR-10 and CIFAR-100 (as the files' headers say), then deduplicated by store key as the store does: distinct
student runs, distinct teachers (``RunConfig.teacher_config``) and distinct score caches (``RunConfig.score_spec``).
Costs: a student trains ``epochs`` x its subset (``budget: epochs``; ``steps``: the full data); a teacher ``epochs``
x its fraction of the data; a score cache its proxy's epochs on the full data (``el2n_run``/``grand_run``:
``n_models`` x the early epoch; ``proxy_run``/``deepfool_run``: the whole proxy run). Other models than ResNet-32
are priced by their forward FLOPs relative to ResNet-32 (teachers of the capacity sweep; the student's part and the
teacher's forward of a KD step separately). Grouped, the students of one group key (``RunConfig.group_key``) train in
groups of the best measured K (``kdlib.group_size.pick``), each group priced at the curve's rate for its size;
evaluation (``eval_every``) over the test split and the scorers' extra passes (``kdlib.plan.SCORING_PASSES``) are
priced at the forward rate. Left out: start-up, data loading, checkpoints.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from typing import Optional, Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved, machine_header, median, random_cifar  # noqa: E402
from train_throughput import LR, MOMENTUM, TAU, WD, reference_epoch, reference_loader  # noqa: E402

from kdlib.distill import make_kd_loss  # noqa: E402
from kdlib.group_size import measure_group_rate, pick  # noqa: E402
from kdlib.models import build_model  # noqa: E402
from kdlib.plan import GRID_STUDIES, SCORING_PASSES, rate_at, study_grid, study_params  # noqa: E402
from kdlib.study import RunConfig  # noqa: E402
from kdlib.train import TrainConfig, total_steps, train  # noqa: E402

TRAIN_SIZE = {"cifar10": 50_000, "cifar100": 50_000, "svhn": 73_257}
TEST_SIZE = {"cifar10": 10_000, "cifar100": 10_000, "svhn": 26_032}
CLASSES = {"cifar10": 10, "cifar100": 100, "svhn": 10}
# The datasets each notebook runs on in the paper's grid (the files' headers: "For CIFAR-100 ... set dataset").
DATASETS = {"pruning_sweep": ("cifar10", "cifar100", "svhn"), "alpha_vs_factor": ("cifar10", "cifar100")}
GROUP_SIZES = (1, 4, 16, 64)
ALPHA = 0.5
EARLY_SCORERS = ("el2n_run", "grand_run")


# ------------------------------------------------------------------------------------------ the grid
def paper_grid() -> tuple[dict[str, RunConfig], dict[str, int]]:
    """Distinct runs of the paper's CIFAR grid by store key, and the number each notebook requests: the notebooks'
    own grids (``kdlib.plan.study_grid``) on the paper profile's parameters (``kdlib.plan.study_params``)."""
    runs: dict[str, RunConfig] = {}
    requested: dict[str, int] = {}
    for name in GRID_STUDIES:
        p = study_params(name, "paper")
        for ds in DATASETS.get(name, (p["dataset"],)):
            configs = study_grid(name, {**p, "dataset": ds})
            requested[f"{name} ({ds})"] = len(configs)
            runs.update((c.key(), c) for c in configs)
    return runs, requested


def images(tc: TrainConfig, fraction: float, n: int) -> int:
    """Images a run of recipe ``tc`` trains on over a ``fraction`` of ``n`` samples (its budget rule)."""
    kept = max(1, round(fraction * n))
    return total_steps(tc, kept, n)[0] * kept


def forward_flops(model: str, classes: int) -> float:
    """FLOPs of one 32x32x3 image's forward pass (convolutions and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    m = build_model(model, classes).eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        m(torch.randn(1, 3, 32, 32))
    return fc.get_total_flops()


def grid_cost(runs: dict[str, RunConfig], group_size: int = 1) -> dict:
    """The grid's work in ResNet-32-equivalent image passes: student passes of CE runs, of KD runs and their
    teachers' forwards, teacher training, score proxies, evaluation and scoring forwards; the student passes again
    by group size when the runs of a group key train in groups of ``group_size``; and the counts."""
    flops: dict[tuple[str, int], float] = {}

    def factor(model: str, dataset: str) -> float:  # cost of this model relative to a ResNet-32
        k = CLASSES[dataset]
        for m in (model, "resnet32"):
            if (m, k) not in flops:
                flops[(m, k)] = forward_flops(m, k)
        return flops[(model, k)] / flops[("resnet32", k)]

    def evals(tc: TrainConfig, fraction: float, n: int) -> int:
        epochs = total_steps(tc, max(1, round(fraction * n)), n)[0]
        return -(-epochs // tc.eval_every) + (epochs % tc.eval_every != 0)

    work: Counter = Counter()  # ResNet-32 image passes per kind of work
    teachers, scores, groups = {}, {}, {}
    for key, c in runs.items():
        r = c.resolved()
        im = images(r.train, r.fraction, TRAIN_SIZE[r.dataset])
        work["student_ce" if r.alpha == 0 else "student_kd"] += im * factor(r.model, r.dataset)
        work["eval_forward"] += evals(r.train, r.fraction, TRAIN_SIZE[r.dataset]) * TEST_SIZE[r.dataset] * factor(
            r.model, r.dataset)
        if r.alpha > 0:
            work["teacher_forward"] += im * factor(r.teacher, r.dataset)
            t = r.teacher_config()
            teachers[t.key()] = t
        s = r.score_spec()
        if s is not None:
            scores[s.key()] = s
        groups.setdefault(c.group_key(), []).append(r)
    for t in teachers.values():
        work["teachers"] += images(t.train, t.fraction, TRAIN_SIZE[t.dataset]) * factor(t.model, t.dataset)
        work["eval_forward"] += evals(t.train, t.fraction, TRAIN_SIZE[t.dataset]) * TEST_SIZE[t.dataset] * factor(
            t.model, t.dataset)
    for s in scores.values():
        early = s.scorer in EARLY_SCORERS
        models = s.proxy.n_models if early else 1
        epochs = models * s.proxy.early_epoch if early else s.proxy.train.epochs
        work["proxies"] += epochs * TRAIN_SIZE[s.dataset] * factor(s.model, s.dataset)
        work["scoring_forward"] += models * (1 + SCORING_PASSES.get(s.scorer, 0.0)) * TRAIN_SIZE[s.dataset] * factor(
            s.model, s.dataset)
    grouped: Counter = Counter()  # student image passes (ResNet-32 equivalents) by the size of their group
    for members in groups.values():
        for i in range(0, len(members), group_size):
            chunk = members[i:i + group_size]
            r = chunk[0]
            grouped[len(chunk)] += len(chunk) * images(r.train, r.fraction, TRAIN_SIZE[r.dataset]) * factor(
                r.model, r.dataset)
    counts = {"students": len(runs), "KD students": sum(c.resolved().alpha > 0 for c in runs.values()),
              "teachers": len(teachers), "score caches": len(scores), "group keys": len(groups),
              "groups": sum(-(-len(m) // group_size) for m in groups.values())}
    return {"work": dict(work), "groups": dict(grouped), "counts": counts}


def hours(cost: dict, ce: float, kd: float, curve: Optional[Sequence] = None, mode: str = "stacked") -> float:
    """Device-hours given seconds per ResNet-32 image of a CE step (``ce``) and a KD step (``kd``); a forward
    costs ``kd - ce``. With a group ``curve`` ((K, mode, images/s of all K), ...), students train in the groups of
    ``cost['groups']``, each image at the curve's rate for its group's size (KD students and CE alike)."""
    w = cost["work"]
    fwd = max(kd - ce, 0.0)  # a forward pass, per image
    seconds = (w.get("teachers", 0) + w.get("proxies", 0)) * ce
    seconds += (w.get("eval_forward", 0) + w.get("scoring_forward", 0)) * fwd
    if curve is None:
        seconds += (w.get("student_ce", 0) + w.get("student_kd", 0)) * ce + w.get("teacher_forward", 0) * fwd
    else:
        seconds += sum(im / rate_at(curve, k, mode) for k, im in cost["groups"].items())
    return seconds / 3600


# ------------------------------------------------------------------------------------------ measurements
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(device: torch.device, model: str, n: int, bs: int, precisions: list[str], workers: int,
            repeats: int, sizes: Sequence[int] = GROUP_SIZES) -> dict[str, float]:
    """Images per second of each variant (median of ``repeats`` interleaved rounds after a warm-up)."""
    data = random_cifar(n)
    torch.manual_seed(0)
    teacher = build_model(model, 10).eval()

    def kdlib(precision: str, kd: bool):
        cfg = TrainConfig(epochs=1, batch_size=bs, lr=LR, momentum=MOMENTUM, weight_decay=WD, schedule="constant",
                          precision=precision)
        student = build_model(model, 10)
        loss = make_kd_loss("kd", ALPHA if kd else 0.0, TAU)

        def fn() -> float:
            r = train(student, data, cfg, loss_fn=loss, teacher=teacher if kd else None, device=device,
                      progress=False, evaluate_test=False)
            return n / r.train_seconds
        return fn

    def reference(kd: bool):
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        s = build_model(model, 10).to(device)
        t = build_model(model, 10).to(device).eval() if kd else None
        if t is not None:
            t.load_state_dict(teacher.state_dict())
        opt = torch.optim.SGD(s.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
        loader = reference_loader(data.x_train, data.y_train, bs, workers)

        def fn() -> float:
            sync(device)
            t0 = time.perf_counter()
            images = reference_epoch(s, t, opt, loader, device)
            sync(device)
            return images / (time.perf_counter() - t0)
        return fn

    def group(k: int, mode: str, precision: str):
        cfg = TrainConfig(epochs=1, batch_size=bs, lr=LR, momentum=MOMENTUM, weight_decay=WD, schedule="constant",
                          precision=precision)
        steps = max(2, -(-n // bs) // k)

        def fn() -> float:  # images/s of all K members
            return measure_group_rate(model, model, 10, (3, 32, 32), cfg, device, k, mode, steps=steps, rounds=1)
        return fn

    fns = {"reference fp32 KD": reference(True), "reference fp32 CE": reference(False)}
    for p in precisions:
        fns[f"kdlib {p} KD"] = kdlib(p, True)
        fns[f"kdlib {p} CE"] = kdlib(p, False)
    for mode in (("stacked",) if device.type == "cuda" else ("stacked", "loop")):
        for k in sizes:
            if not (k == 1 and mode == "stacked" and device.type != "cuda"):
                fns[f"kdlib {precisions[0]} group K={k} {mode}"] = group(k, mode, precisions[0])
    print("warm-up (cuDNN autotuning, DataLoader workers) ...", flush=True)
    for fn in fns.values():
        fn()
    return {name: median(r) for name, r in interleaved(fns, repeats).items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true",
                    help="CPU, ResNet-8, 2 batches of 8, 1 round: checks the script end to end (numbers meaningless)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--images", type=int, default=6400, help="images per measured epoch")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    ap.add_argument("--precisions", default=None, help="default: bf16,fp16 on CUDA; bf16,fp32 on a CPU")
    ap.add_argument("--workers", type=int, default=2, help="the reference loop's DataLoader workers")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    model, bs = "resnet32", 64
    if args.dry_run:
        args.device, args.images, args.repeats, model, bs = "cpu", 16, 1, "resnet8", 8
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    precisions = (args.precisions or ("bf16,fp16" if device.type == "cuda" else "bf16,fp32")).split(",")

    print(machine_header(), flush=True)
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        print(f"gpu: {p.name}, {p.total_memory / 2**30:.0f} GiB, compute capability {p.major}.{p.minor}, "
              f"{p.multi_processor_count} SMs; CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}; "
              f"bf16 {torch.cuda.is_bf16_supported()}", flush=True)
    else:
        print("gpu: none; measuring the CPU" + (" (dry run: ResNet-8, tiny sizes; the numbers mean nothing)"
                                              if args.dry_run else ""), flush=True)
    print(f"{model} student and teacher, batch {bs}, {args.images} CIFAR-shaped images per measured epoch, "
          f"{args.repeats} interleaved round(s), precisions {precisions}", flush=True)
    sizes = (1, 2) if args.dry_run else GROUP_SIZES
    rates = measure(device, model, args.images, bs, precisions, args.workers, args.repeats, sizes)
    print("\nimages/s (median; groups: images of all K members per second):")
    ref = rates["reference fp32 KD"]
    for name, rate in rates.items():
        print(f"  {name:36s} {rate:10.1f}" + (f"   {rate / ref:5.2f}x reference KD" if " KD" in name else ""))

    curve = [(int(name.split("K=")[1].split()[0]), name.split()[-1], rate) for name, rate in rates.items()
             if " group K=" in name]
    plan = pick(curve)
    print(f"group plan: K={plan.size} {plan.mode} (the smallest K within 5% of the best measured rate)")
    t_grid = time.perf_counter()
    runs, requested = paper_grid()
    cost = grid_cost(runs, plan.size)
    print(f"\nThe paper's CIFAR grid from params/paper/*.yaml (kdlib's grid expansion, "
          f"{time.perf_counter() - t_grid:.1f} s):")
    for name, k in requested.items():
        print(f"  {name:34s} {k:6d} runs requested")
    print("  distinct: " + ", ".join(f"{v} {k}" for k, v in cost["counts"].items()))
    w = cost["work"]
    print("  work in millions of ResNet-32 image passes: " + ", ".join(f"{k} {v / 1e6:.1f}" for k, v in w.items()))
    unit = "GPU" if device.type == "cuda" else "CPU"
    rows = [("reference loop, fp32", 1 / rates["reference fp32 CE"], 1 / rates["reference fp32 KD"], None)]
    for p in precisions:
        rows.append((f"kdlib, {p}, one run at a time", 1 / rates[f"kdlib {p} CE"], 1 / rates[f"kdlib {p} KD"], None))
    rows.append((f"kdlib, {precisions[0]}, groups of {plan.size} ({plan.mode})", 1 / rates[f"kdlib {precisions[0]} CE"],
                 1 / rates[f"kdlib {precisions[0]} KD"], curve))
    print(f"\nprojected {unit}-hours of the grid" + (" (dry run: CPU rates of ResNet-8, not a projection)"
                                                     if args.dry_run else "") + ":")
    base = None
    for label, ce, kd, crv in rows:
        h = hours(cost, ce, kd, crv, plan.mode)
        base = base or h
        print(f"  {label:44s} {h:12.1f} {unit}-hours  (x{base / h:.2f} vs reference)")
    print(f"\ngpu_check finished in {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
