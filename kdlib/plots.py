"""Figures drawn from run tables with seaborn; every figure is saved as PNG and PDF."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import matplotlib

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns


def save_figure(fig: matplotlib.figure.Figure, out_dir: str | Path, name: str) -> list[Path]:
    """Saves ``fig`` as ``<out_dir>/<name>.png`` (150 dpi) and ``.pdf``; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for p in paths:
        fig.savefig(p, bbox_inches="tight", dpi=150)
    return paths


def accuracy_vs_fraction(df: pd.DataFrame, value: str = "final_acc", hue: str = "method",
                         title: Optional[str] = None) -> matplotlib.figure.Figure:
    """Test accuracy against the kept fraction, one line per ``hue``, solid with KD and dashed without;
    points are means over seeds and bands one standard deviation."""
    d = df[df["status"] == "done"].copy()
    d["KD"] = d["alpha"].map(lambda a: f"KD (alpha={a:g})" if a > 0 else "no KD")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(data=d, x="fraction", y=value, hue=hue, style="KD", markers=True, errorbar="sd",
                 err_style="band", ax=ax, style_order=sorted(d["KD"].unique(), key=lambda s: s != "no KD"))
    ax.set_xscale("log")
    fr = sorted(d["fraction"].unique())
    ax.set_xticks(fr, [f"{f:g}" for f in fr])
    ax.minorticks_off()
    ax.set_xlabel("fraction of training data kept (f)")
    ax.set_ylabel("test accuracy (%)" + (" [final epoch]" if value == "final_acc" else ""))
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig
