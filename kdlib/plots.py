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
    """Test accuracy against the kept fraction, one line per ``hue``, solid without KD and dashed with it;
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
    return _finish(fig, ax, title)


def _finish(fig: matplotlib.figure.Figure, ax: matplotlib.axes.Axes, title: Optional[str]) -> matplotlib.figure.Figure:
    """The common finish of a one-panel figure: a light grid, the legend outside on the right, the title."""
    ax.grid(alpha=0.3)
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------------------
# Studies: KD weight against the kept fraction, teacher capacity, teacher data fraction, label noise
# ---------------------------------------------------------------------------------------------------------------
def _log_fraction_axis(ax: matplotlib.axes.Axes, fractions, label: str = "fraction of training data kept (f)") -> None:
    fr = sorted(set(float(f) for f in fractions))
    ax.set_xscale("log")
    ax.set_xticks(fr, [f"{f:g}" for f in fr])
    ax.minorticks_off()
    ax.set_xlabel(label)


def alpha_heatmaps(df: pd.DataFrame, value: str = "final_acc", methods: Optional[list] = None,
                   title: Optional[str] = None) -> matplotlib.figure.Figure:
    """One heatmap per method over (fraction, alpha): colour is the seed-mean ``value`` minus that fraction's
    alpha = 0 mean (the KD gain, points), the number in each cell is the mean accuracy, the boxed cell is the
    fraction's best alpha."""
    import numpy as np
    from matplotlib.patches import Rectangle

    d = df[df["status"] == "done"]
    methods = methods or sorted(d["method"].unique())
    mean = d.groupby(["method", "fraction", "alpha"])[value].mean()
    tables = {m: mean.loc[m].unstack("alpha").sort_index(ascending=False) for m in methods if m in mean.index}
    gains = {m: t.sub(t[0.0] if 0.0 in t.columns else t.min(axis=1), axis=0) for m, t in tables.items()}
    lim = max([float(np.nanmax(np.abs(g.to_numpy()))) for g in gains.values()] + [1e-6])
    n = len(tables)
    fig, axes = plt.subplots(1, n, figsize=(0.55 * max(6, len(d["alpha"].unique())) * n + 1.5,
                                             0.5 * max(3, len(d["fraction"].unique())) + 1.6), squeeze=False)
    for ax, (m, t) in zip(axes[0], tables.items()):
        g = gains[m]
        sns.heatmap(g, ax=ax, cmap="RdBu", center=0.0, vmin=-lim, vmax=lim, annot=t.to_numpy(), fmt=".1f",
                    annot_kws={"fontsize": 7}, cbar=ax is axes[0][-1],
                    cbar_kws={"label": f"{value} gain over alpha=0 (points)"},
                    xticklabels=[f"{a:g}" for a in t.columns], yticklabels=[f"{f:g}" for f in t.index])
        for i, (_, row) in enumerate(t.iterrows()):
            if row.notna().any():
                ax.add_patch(Rectangle((int(np.nanargmax(row.to_numpy())), i), 1, 1, fill=False, lw=2, ec="black"))
        ax.set_xlabel("alpha (KD weight)")
        ax.set_ylabel("kept fraction f" if ax is axes[0][0] else "")
        ax.set_title(str(m))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def best_alpha_vs_fraction(best: pd.DataFrame, rules: Optional[dict] = None, default_rule=None,
                           title: Optional[str] = None) -> matplotlib.figure.Figure:
    """Best alpha (argmax of the seed-mean accuracy) against f per method, with the 5-95% bootstrap interval
    over seeds as error bars, the fitted rules (solid, same colour) and the default rule (dashed grey).
    ``best`` is a ``kdlib.alpha_rule.best_alpha`` table; ``rules`` maps method -> AlphaRule."""
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4.5))
    methods = sorted(best["method"].unique())
    colours = dict(zip(methods, sns.color_palette(n_colors=max(1, len(methods)))))
    fr = sorted(best["fraction"].unique())
    grid = np.geomspace(min(fr), max(fr), 100) if len(fr) > 1 else np.array(fr)
    for i, m in enumerate(methods):
        b = best[best["method"] == m].sort_values("fraction")
        shift = (1.0 + 0.04 * (i - (len(methods) - 1) / 2))
        yerr = np.vstack([b["best_alpha"] - b["boot_lo"], b["boot_hi"] - b["best_alpha"]]).clip(0)
        ax.errorbar(b["fraction"] * shift, b["best_alpha"], yerr=yerr, fmt="o", capsize=3, color=colours[m],
                    label=f"{m}: best alpha (5-95% bootstrap)")
        if rules and m in rules:
            ax.plot(grid, rules[m].evaluate(grid), color=colours[m], lw=1.5, label=f"{m}: fitted rule")
    if rules and "*" in rules:
        ax.plot(grid, rules["*"].evaluate(grid), color="black", lw=1.5, label="all methods: fitted rule")
    if default_rule is not None:
        ax.plot(grid, default_rule.evaluate(grid), color="grey", ls="--", lw=1.2, label="default rule (heuristic)")
    _log_fraction_axis(ax, fr)
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel("best alpha")
    return _finish(fig, ax, title)


def accuracy_vs_alpha(df: pd.DataFrame, value: str = "final_acc", hue: str = "method", col: str = "fraction",
                      title: Optional[str] = None) -> matplotlib.figure.Figure:
    """``value`` against alpha, one panel per ``col`` value and one line per ``hue``; means over seeds, bands
    one standard deviation."""
    d = df[df["status"] == "done"]
    cols = sorted(d[col].unique())
    fig, axes = plt.subplots(1, len(cols), figsize=(3.6 * len(cols) + 1.5, 3.8), squeeze=False, sharey=False)
    for ax, c in zip(axes[0], cols):
        sns.lineplot(data=d[d[col] == c], x="alpha", y=value, hue=hue, marker="o", errorbar="sd", ax=ax,
                     hue_order=sorted(d[hue].unique()), legend=ax is axes[0][-1])
        ax.set_title(f"{col} = {c:g}" if isinstance(c, float) else f"{col} = {c}")
        ax.set_xlabel("alpha (KD weight)")
        ax.set_ylabel("test accuracy (%)" if ax is axes[0][0] else "")
        ax.grid(alpha=0.3)
    if axes[0][-1].get_legend() is not None:
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def kd_against(df: pd.DataFrame, x: str, gain: pd.DataFrame, value: str = "final_acc", hue: str = "fraction",
               xlabel: Optional[str] = None, logx: bool = False, xticklabels: Optional[dict] = None,
               title: Optional[str] = None) -> matplotlib.figure.Figure:
    """Two panels against ``x`` (e.g. teacher size or teacher data fraction), one line per ``hue``: left the KD
    students' ``value`` (mean, sd band) with each hue's no-KD baseline dashed; right the paired gain over the
    no-KD student (``gain``: a ``kdlib.report.gain_over_baseline`` table with ``x``, ``hue``, mean_diff, std), mean
    and sd over seeds (the table's ci95, a t-interval, is very wide with two or three seeds)."""
    d = df[df["status"] == "done"]
    kd, base = d[d["alpha"] > 0], d[d["alpha"] == 0]
    levels = sorted(d[hue].unique())
    colours = dict(zip(levels, sns.color_palette(n_colors=max(1, len(levels)))))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for lv in levels:
        k = kd[kd[hue] == lv].groupby(x)[value].agg(["mean", "std"]).reset_index()
        lab = f"{hue} = {lv:g}" if isinstance(lv, float) else f"{hue} = {lv}"
        a1.plot(k[x], k["mean"], "o-", color=colours[lv], label=f"{lab}, KD")
        a1.fill_between(k[x], k["mean"] - k["std"].fillna(0), k["mean"] + k["std"].fillna(0), color=colours[lv],
                        alpha=0.15)
        b = base[base[hue] == lv][value]
        if len(b):
            a1.axhline(b.mean(), color=colours[lv], ls="--", lw=1, label=f"{lab}, no KD")
        g = gain[gain[hue] == lv].sort_values(x)
        a2.errorbar(g[x], g["mean_diff"], yerr=g["std"].fillna(0), fmt="o-", capsize=3, color=colours[lv],
                    label=lab)
    a2.axhline(0, color="black", lw=0.8)
    for ax in (a1, a2):
        if logx:
            ax.set_xscale("log")
            ax.minorticks_off()
        if xticklabels:
            ax.set_xticks(list(xticklabels), list(xticklabels.values()), fontsize=8)
        ax.set_xlabel(xlabel or x)
        ax.grid(alpha=0.3)
    a1.set_ylabel("test accuracy (%)")
    a2.set_ylabel("gain over no KD (points, mean ± sd)")
    a1.legend(fontsize=7)
    a2.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def noisy_share_vs_fraction(share: pd.DataFrame, noise_rate: float, title: Optional[str] = None
                            ) -> matplotlib.figure.Figure:
    """Share of kept samples whose label is corrupted against f, one line per method (mean, sd band over seeds),
    with the injected noise rate dotted: above it a method favours noisy samples, below it avoids them.
    ``share`` has columns method, fraction, seed, share."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(data=share, x="fraction", y="share", hue="method", marker="o", errorbar="sd", ax=ax,
                 hue_order=sorted(share["method"].unique()))
    ax.axhline(noise_rate, color="black", ls=":", lw=1.2, label=f"noise rate {noise_rate:g}")
    _log_fraction_axis(ax, share["fraction"].unique())
    ax.set_ylabel("share of kept samples with a corrupted label")
    ax.set_ylim(0, min(1.0, max(share["share"].max(), noise_rate) * 1.15 + 0.02))
    return _finish(fig, ax, title)
