"""Markdown tables for a results README, from the claims notebook's CSVs and the profile's store.

    python scripts/results_tables.py --profile cpu verdicts
    python scripts/results_tables.py --profile cpu methods --fraction 0.05 [--alpha 0.5] [--teacher resnet8]

``verdicts``: ``outputs/<profile>/claims/verdicts.csv`` as a table. ``methods``: every method at one kept
fraction with the same-architecture, full-data teacher on clean labels (no KD, KD, KD's gain and random's margin,
with the claims' verdicts). Run the claims notebook first (``python -m kdlib.notebooks --profile <p> --only claims``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from kdlib.claims import runs_table
from kdlib.report import verdict_markdown
from kdlib.verdict_text import method_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    sub = ap.add_subparsers(dest="table", required=True)
    sub.add_parser("verdicts")
    m = sub.add_parser("methods")
    m.add_argument("--fraction", type=float, required=True)
    m.add_argument("--alpha", type=float, default=0.5)
    m.add_argument("--teacher", default=None, help="default: the student's own architecture")
    args = ap.parse_args()
    claims = Path("outputs") / args.profile / "claims"
    if not (claims / "verdicts.csv").exists():
        ap.error(f"{claims / 'verdicts.csv'} not found: run the claims notebook first")
    if args.table == "verdicts":
        print(verdict_markdown(pd.read_csv(claims / "verdicts.csv")), end="")
        return
    runs = runs_table(Path("outputs") / args.profile / "store")
    try:
        print(method_table(runs, pd.read_csv(claims / "verdict_cells.csv"), args.fraction, args.alpha, args.teacher),
              end="")
    except ValueError as err:
        ap.error(f"--fraction: {err}")


if __name__ == "__main__":
    main()
