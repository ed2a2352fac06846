"""Copies a profile's study outputs that readers need (summary tables, main figures) from ``outputs/<profile>/`` to
``docs/results/<profile>/``, writes the store's run records (and teachers small enough to commit) as archives
beside them, and prints each study's record count, wall time and machine for its README.

    python scripts/publish_results.py --profile cpu [--teacher-mb 2] [--dry-run]

Only files that exist are copied; a study whose notebook has not run is named and skipped. The READMEs' prose is
written by hand from these files: this script never edits a README.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pandas as pd

from kdlib.archive import export_records

# what each study publishes: its summary tables and the figures its README shows (PNG; the PDFs stay behind)
PUBLISHED = {
    "pruning_sweep": ["summary.csv", "kd_gain.csv", "runs.csv", "method_ranking.png", "kd_gain_heatmap.png",
                      "accuracy_vs_fraction.png"],
    "alpha_vs_factor": ["summary.csv", "best_alpha.csv", "alpha_rules.csv", "runs.csv", "accuracy_heatmap.png",
                        "accuracy_vs_alpha.png", "best_alpha_vs_fraction.png"],
    "teacher_capacity": ["summary.csv", "kd_gain.csv", "teachers.csv", "runs.csv", "accuracy_vs_teacher_params_*.png",
                         "accuracy_vs_teacher_acc_*.png"],
    "teacher_fraction": ["summary.csv", "kd_gain.csv", "trend.csv", "teachers.csv", "runs.csv",
                         "accuracy_vs_teacher_fraction_*.png"],
    "noisy_labels": ["summary.csv", "kd_recovery.csv", "best_alpha.csv", "noisy_share.csv", "runs.csv",
                     "noisy_share_vs_fraction.png", "accuracy_vs_alpha.png"],
    "claims": ["verdicts.csv", "verdict_cells.csv", "claim_*.png"],
}


def publish(profile: str, teacher_mb: float, dry_run: bool = False) -> None:
    src, dst = Path("outputs") / profile, Path("docs/results") / profile
    for study, patterns in PUBLISHED.items():
        files = [f for pattern in patterns for f in sorted((src / study).glob(pattern))]
        if not files:
            print(f"{study}: no outputs under {src / study} (notebook not run): skipped")
            continue
        for f in files:
            if not dry_run:
                (dst / study).mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, dst / study / f.name)
        runs = src / study / "runs.csv"
        line = f"{study}: {len(files)} files -> {dst / study}"
        if runs.exists():
            df = pd.read_csv(runs)
            line += f"; {len(df)} runs"
            for col in ("runtime.device", "runtime.cpu_capability", "runtime.device_name"):
                if col in df:
                    counts = {str(k): int(v) for k, v in df[col].fillna("-").value_counts().items()}
                    line += f"; {col.split('.')[1]}: {counts}"
            if "wall_seconds" in df:
                line += f"; run wall time {df['wall_seconds'].sum() / 3600:.1f} h in total"
        print(line)
    store = src / "store"
    if not dry_run:
        (dst / "store").mkdir(parents=True, exist_ok=True)
        n = export_records(store, dst / "store" / "records.jsonl.gz", ["runs", "alpha_rules"])
        t = export_records(store, dst / "store" / "teachers.jsonl.gz", ["teachers"],
                           max_blob_bytes=int(teacher_mb * 2**20))
        print(f"store: {n} run and rule records, {t} teachers (weights under {teacher_mb} MiB) -> {dst / 'store'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--teacher-mb", type=float, default=2.0, help="teachers with larger weights are not archived")
    ap.add_argument("--dry-run", action="store_true", help="print what would be copied, copy nothing")
    args = ap.parse_args()
    if not args.teacher_mb >= 0:
        ap.error(f"--teacher-mb must be a number of MiB >= 0, got {args.teacher_mb}")
    publish(args.profile, args.teacher_mb, args.dry_run)


if __name__ == "__main__":
    main()
