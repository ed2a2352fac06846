"""Figures drawn from run tables with matplotlib and seaborn; every figure is saved as PNG and PDF.

One line-style convention everywhere (figures here and the results browser): **no KD is a solid line, KD a dashed
one** (``NO_KD_STYLE``, ``KD_STYLE``); several KD weights are told apart by shade, never averaged together. Bands
and error bars are one standard deviation over seeds unless a caption says otherwise. seaborn is imported inside
the functions that use it, so importing this module stays cheap.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

NO_KD_STYLE = "-"
KD_STYLE = "--"
VERDICT_COLOURS = {"holds": "#1a9850", "fails": "#d73027", "inconclusive": "#969696"}


def save_figure(fig: matplotlib.figure.Figure, out_dir: str | Path, name: str) -> list[Path]:
    """Saves ``fig`` as ``<out_dir>/<name>.png`` (150 dpi) and ``.pdf``; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for p in paths:
        fig.savefig(p, bbox_inches="tight", dpi=150)
    return paths


def _refuse_pooling(d: pd.DataFrame, columns: tuple[str, ...], figure: str) -> None:
    """A figure that does not show a parameter must not average over it: a ValueError naming the column."""
    for col in columns:
        if col in d and d[col].dropna().nunique() > 1:
            raise ValueError(f"{figure} would average over {col} ({sorted(map(str, d[col].dropna().unique()))}); "
                             f"select one {col} first")


def accuracy_vs_fraction(df: pd.DataFrame, value: str = "final_acc", reference: str = "random",
                         title: Optional[str] = None, ncols: int = 3) -> matplotlib.figure.Figure:
    """Small multiples of test accuracy against the kept fraction: one panel per method, no KD solid and KD dashed
    (one line per alpha, darker for larger alpha, never pooled), the ``reference`` method's curves faint grey in
    every other panel. Points are means over seeds, bands one standard deviation; the f = 1 runs (the full data,
    the same for every method) end every panel's curves."""
    d = df[(df["status"] == "done") & df[value].notna()]
    _refuse_pooling(d[d["alpha"] > 0], ("teacher", "teacher_fraction", "tau"), "accuracy_vs_fraction")
    _refuse_pooling(d, ("dataset", "model", "label_noise"), "accuracy_vs_fraction")
    methods = sorted(d.loc[d["fraction"] < 1, "method"].unique(), key=lambda m: (m != reference, m)) or [reference]
    alphas = sorted(a for a in d["alpha"].unique() if a > 0)
    shades = plt.get_cmap("Oranges")(np.linspace(0.55, 0.95, max(1, len(alphas))))
    styles = [(0.0, "no KD", "#08306b", NO_KD_STYLE)] + [(a, f"KD, alpha={a:g}", shades[i], KD_STYLE)
                                                        for i, a in enumerate(alphas)]
    ncols = max(1, min(ncols, len(methods)))
    nrows = -(-len(methods) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.7 * ncols + 0.6, 3.0 * nrows + 0.9), sharex=True,
                             sharey=True, squeeze=False)
    fr = sorted(d["fraction"].unique())

    def curves(ax, rows: pd.DataFrame, faint: bool) -> None:
        for a, lab, colour, ls in styles:
            g = rows[rows["alpha"] == a].groupby("fraction")[value].agg(["mean", "std"])
            if g.empty:
                continue
            if faint:
                ax.plot(g.index, g["mean"], ls=ls, color="0.6", lw=1.0, alpha=0.8, zorder=1)
                continue
            ax.plot(g.index, g["mean"], ls=ls, marker="o", ms=3.5, color=colour, lw=1.8, label=lab, zorder=3)
            ax.fill_between(g.index, g["mean"] - g["std"].fillna(0), g["mean"] + g["std"].fillna(0), color=colour,
                            alpha=0.15, lw=0, zorder=2)

    for ax, m in zip(axes.flat, methods):
        full = d["fraction"] == 1.0
        if m != reference:
            curves(ax, d[(d["method"] == reference) | full], faint=True)
        mine = d[(d["method"] == m) | full]
        curves(ax, mine, faint=False)
        n = mine.loc[mine["fraction"] < 1, "seed"].nunique()
        ax.set_title(f"{m} ({n} seeds)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.set_xscale("log")
        ax.set_xticks(fr, [f"{f:g}" for f in fr], fontsize=8)
        ax.minorticks_off()
    for ax in axes.flat[len(methods):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("test accuracy (%)" + (" [final epoch]" if value == "final_acc" else ""), fontsize=9)
    for ax in axes[-1, :]:
        ax.set_xlabel("kept fraction f", fontsize=9)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if len(methods) > 1:
        handles.append(matplotlib.lines.Line2D([], [], color="0.6", lw=1.0))
        labels.append(f"{reference} (reference; same styles)")
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=9, frameon=False)
    fig.suptitle((title + "\n" if title else "") + "mean and sd over seeds; no KD solid, KD dashed", fontsize=11)
    fig.tight_layout(rect=(0, 0.06 if nrows > 1 else 0.1, 1, 1))
    return fig


def method_ranking(df: pd.DataFrame, value: str = "final_acc", title: Optional[str] = None) -> matplotlib.figure.Figure:
    """One panel per kept fraction f < 1: every method's accuracy without KD (circles) and with KD (one triangle per
    alpha, darker for larger alpha), mean over seeds with a one-sd bar and each seed a faint dot, methods sorted by
    their best KD mean (best on top). Readable where ``accuracy_vs_fraction`` has too few fractions for curves."""
    d = df[(df["status"] == "done") & df[value].notna() & (df["fraction"] < 1)]
    _refuse_pooling(d[d["alpha"] > 0], ("teacher", "teacher_fraction", "tau"), "method_ranking")
    _refuse_pooling(d, ("dataset", "model", "label_noise"), "method_ranking")
    fr = sorted(d["fraction"].unique())
    alphas = sorted(d["alpha"].unique())
    kd = [a for a in alphas if a > 0]
    shades = plt.get_cmap("Oranges")(np.linspace(0.55, 0.95, max(1, len(kd))))
    colour = {0.0: "#08306b", **{a: shades[i] for i, a in enumerate(kd)}}
    n_methods = d["method"].nunique()
    fig, axes = plt.subplots(1, len(fr), figsize=(4.2 * len(fr) + 1.5, 0.32 * n_methods + 1.8), squeeze=False)
    for ax, f in zip(axes[0], fr):
        sub = d[d["fraction"] == f]
        stats = sub.groupby(["method", "alpha"])[value].agg(["mean", "std", "count"]).reset_index()
        rank = stats[stats["alpha"] > 0] if kd else stats
        order = rank.groupby("method")["mean"].max().sort_values().index.tolist()
        y = {m: i for i, m in enumerate(order)}
        for j, a in enumerate(alphas):
            off = (j - (len(alphas) - 1) / 2) * 0.22
            s = stats[stats["alpha"] == a]
            ys = s["method"].map(y) + off
            ax.errorbar(s["mean"], ys, xerr=s["std"].fillna(0), fmt="o" if a == 0 else "^", color=colour[a], ms=4,
                        capsize=2, lw=1, label="no KD" if a == 0 else f"KD, alpha={a:g}")
            pts = sub[sub["alpha"] == a]
            ax.plot(pts[value], pts["method"].map(y) + off, ".", color=colour[a], alpha=0.35, ms=3)
        ax.set_yticks(range(len(order)), [f"{m} ({int(stats[stats.method == m]['count'].max())})" for m in order],
                      fontsize=8)
        ax.set_title(f"f = {f:g}", fontsize=10)
        ax.set_xlabel("test accuracy (%)" + (" [final epoch]" if value == "final_acc" else ""), fontsize=9)
        ax.grid(alpha=0.3, axis="x")
    axes[0][0].legend(fontsize=8, loc="lower right")
    fig.suptitle((title + "\n" if title else "") + "mean and sd over seeds (seeds in brackets), seeds as dots; "
                 "sorted by the best KD mean", fontsize=10)
    fig.tight_layout()
    return fig


def kd_gain_heatmap(gain: pd.DataFrame, q: float = 0.05, title: Optional[str] = None,
                    label: str = "KD gain over no KD (points)") -> matplotlib.figure.Figure:
    """Method x kept fraction heatmap of a paired gain, one panel per alpha when the table has several; the number is
    the mean gain over seeds. With a ``verdict`` column (``kdlib.claims.kd_gain_table``: claim 1's cells as the
    verdicts decided them) a star marks a cell that holds, so the stars say what the verdict table says; without
    one (``report.paired_difference``/``gain_over_baseline``) a star marks a q below ``q``."""
    g = gain.copy()
    if "alpha" not in g:
        g["alpha"] = np.nan
    g["alpha"] = g["alpha"].astype(float)
    by_verdict = "verdict" in g
    g["_star"] = (g["verdict"] == "holds") if by_verdict else (g["q"].astype(float) < q)  # NaN q: no star
    panels = sorted(g["alpha"].unique(), key=lambda a: (np.isnan(a), a))
    lim = max(1e-6, float(np.nanmax(np.abs(g["mean_diff"].to_numpy(dtype=float)))) if len(g) else 1.0)
    methods = sorted(g["method"].unique())
    fr = sorted(g["fraction"].unique())
    fig, axes = plt.subplots(1, len(panels), figsize=(0.9 * len(fr) * len(panels) + 2.8, 0.42 * len(methods) + 2.0),
                             squeeze=False, layout="constrained")
    for ax, a in zip(axes[0], panels):
        sub = g[g["alpha"] == a] if not np.isnan(a) else g[g["alpha"].isna()]
        mean = sub.pivot_table(index="method", columns="fraction", values="mean_diff").reindex(index=methods,
                                                                                             columns=fr)
        sig = sub.pivot_table(index="method", columns="fraction", values="_star", aggfunc="max").reindex(
            index=methods, columns=fr).fillna(False).astype(bool)
        im = ax.imshow(mean.to_numpy(dtype=float), cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
        for i in range(len(methods)):
            for j in range(len(fr)):
                v = mean.iloc[i, j]
                if np.isfinite(v):
                    ax.text(j, i, f"{v:+.1f}" + ("*" if sig.iloc[i, j] else ""), ha="center", va="center",
                            fontsize=8, color="white" if abs(v) > 0.6 * lim else "black")
        ax.set_xticks(range(len(fr)), [f"{f:g}" for f in fr], fontsize=8)
        ax.set_yticks(range(len(methods)), methods if ax is axes[0][0] else [""] * len(methods), fontsize=8)
        ax.set_xlabel("kept fraction f", fontsize=9)
        ax.set_title(f"alpha = {a:g}" if not np.isnan(a) else "", fontsize=10)
    fig.colorbar(im, ax=axes[0].tolist(), label=label, shrink=0.9)
    star = ("* : the cell holds in the verdicts (exact one-sided sign-flip test, Benjamini-Hochberg across the "
            "claim's cells)" if by_verdict else
            f"* : Benjamini-Hochberg q < {q:g} (two-sided paired t-test over seeds)")
    fig.suptitle((title + "\n" if title else "") + star, fontsize=10)
    return fig


def claim_cells(cells: pd.DataFrame, margin: float = 0.0, unit: str = "points", level: float = 0.9,
                title: Optional[str] = None) -> matplotlib.figure.Figure:
    """A forest plot of a claim's cells (``kdlib.claims.verdicts``' cell table): the mean paired difference and its
    t-interval (two-sided at ``level``, 1 - 2q: each side is the one-sided test at q) per cell, coloured by the
    cell's verdict, with zero (solid) and +-``margin`` (dotted)."""
    c = cells.reset_index(drop=True)
    label = c["cell"] if "context" not in c else c["context"] + " | " + c["cell"]
    fig, ax = plt.subplots(figsize=(10, 0.28 * len(c) + 1.6))
    y = np.arange(len(c))[::-1]
    for v, colour in VERDICT_COLOURS.items():
        s = c["verdict"] == v
        if s.any():
            lo = (c.loc[s, "mean"] - c.loc[s, "ci_lo"]).fillna(0).clip(lower=0)
            hi = (c.loc[s, "ci_hi"] - c.loc[s, "mean"]).fillna(0).clip(lower=0)
            ax.errorbar(c.loc[s, "mean"], y[s.to_numpy()], xerr=[lo, hi], fmt="o", color=colour, capsize=2,
                        ms=4, label=f"cell {v} ({int(s.sum())})")
    ax.axvline(0, color="black", lw=0.8)
    if margin > 0:
        for x in (-margin, margin):
            ax.axvline(x, color="black", lw=0.8, ls=":")
    ax.set_yticks(y, label, fontsize=7)
    ax.set_xlabel(f"paired difference ({unit}): mean and {level:.0%} t-interval over seeds", fontsize=9)
    return _finish(fig, ax, title, rows=True)


def frontier(table: pd.DataFrame, title: Optional[str] = None) -> matplotlib.figure.Figure:
    """How far can I prune: per method (and context), the smallest kept fraction within the tolerance of the
    full-data no-KD model, without KD (open circle) and with KD at the best alpha (filled), each with the range the
    seeds allow (from the safe to the hopeful estimate) and an arrow for the data KD saves."""
    t = table.reset_index(drop=True)
    lab = t["method"] + ("" if t["setting_id"].nunique() <= 1 else " [" + t["setting_id"] + ", " + t["teacher"] + "]")
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(t) + 1.8))
    y = np.arange(len(t))[::-1]
    for tag, dy, style in (("no_kd", 0.12, dict(mfc="white", color="#08306b", label="no KD")),
                           ("kd", -0.12, dict(color="#e6550d", label="KD at the best alpha"))):
        x = t[f"f_{tag}"].to_numpy(dtype=float)
        lo = t[f"f_{tag}_hopeful"].to_numpy(dtype=float)
        hi = t[f"f_{tag}_safe"].to_numpy(dtype=float)
        xerr = [np.nan_to_num(x - lo), np.nan_to_num(hi - x)]
        ax.errorbar(x, y + dy, xerr=np.clip(xerr, 0, None), fmt="o", capsize=3, ms=7, **style)
    for yi, (a, b) in zip(y, zip(t["f_no_kd"], t["f_kd"])):
        if np.isfinite(a) and np.isfinite(b) and b < a:
            ax.annotate("", xy=(b, yi), xytext=(a, yi), arrowprops=dict(arrowstyle="->", color="0.4"))
            ax.text(np.sqrt(a * b), yi + 0.25, f"saves {a - b:.0%}", ha="center", fontsize=7, color="0.3")
    ax.set_xscale("log")
    fr = sorted(set(t[["f_no_kd", "f_kd"]].stack().dropna()) | {1.0})
    ax.set_xticks(fr, [f"{f:g}" for f in fr], fontsize=8)
    ax.minorticks_off()
    ax.set_yticks(y, lab, fontsize=8)
    ax.set_xlabel(f"smallest kept fraction f within {t['tolerance'].iloc[0]:g} point(s) of the full data without KD"
                  "\n(bars: from the hopeful to the safe estimate over seeds)", fontsize=9)
    return _finish(fig, ax, title, rows=True)


def message_figure(message: str, title: Optional[str] = None) -> matplotlib.figure.Figure:
    """A small figure that states why there is nothing to draw (instead of an empty or broken one)."""
    fig, ax = plt.subplots(figsize=(6, 1.6))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=10, wrap=True)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def _finish(fig: matplotlib.figure.Figure, ax: matplotlib.axes.Axes, title: Optional[str],
            rows: bool = False) -> matplotlib.figure.Figure:
    """The common finish of a one-panel figure: a light grid, the legend outside on the right, the title.
    ``rows``: a chart of one row per cell (claims, frontier): grid lines along x only, the legend inside, a smaller
    title."""
    ax.grid(alpha=0.3, **({"axis": "x"} if rows else {}))
    if rows:
        ax.legend(fontsize=8, loc="best")
    else:
        ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8)
    if title:
        ax.set_title(title, **({"fontsize": 10} if rows else {}))
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
    import seaborn as sns
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
    over seeds as error bars, the fitted rules (solid, same colour) and the default rule (dotted grey).
    ``best`` is a ``kdlib.alpha_rule.best_alpha`` table; ``rules`` maps method -> AlphaRule."""
    import seaborn as sns

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
        ax.plot(grid, default_rule.evaluate(grid), color="grey", ls=":", lw=1.4, label="default rule (heuristic)")
    _log_fraction_axis(ax, fr)
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel("best alpha")
    return _finish(fig, ax, title)


def accuracy_vs_alpha(df: pd.DataFrame, value: str = "final_acc", hue: str = "method", col: str = "fraction",
                      title: Optional[str] = None) -> matplotlib.figure.Figure:
    """``value`` against alpha, one panel per ``col`` value and one line per ``hue``; means over seeds, bands
    one standard deviation."""
    import seaborn as sns

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
    students' ``value`` (mean, sd band; dashed, the KD style) with each hue's no-KD baseline as a solid line; right the paired gain over the
    no-KD student (``gain``: a ``kdlib.report.gain_over_baseline`` table with ``x``, ``hue``, mean_diff, std), mean
    and sd over seeds (the table's ci95, a t-interval, is very wide with two or three seeds)."""
    import seaborn as sns

    d = df[df["status"] == "done"]
    kd, base = d[d["alpha"] > 0], d[d["alpha"] == 0]
    levels = sorted(d[hue].unique())
    colours = dict(zip(levels, sns.color_palette(n_colors=max(1, len(levels)))))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for lv in levels:
        k = kd[kd[hue] == lv].groupby(x)[value].agg(["mean", "std"]).reset_index()
        lab = f"{hue} = {lv:g}" if isinstance(lv, float) else f"{hue} = {lv}"
        a1.plot(k[x], k["mean"], marker="o", ls=KD_STYLE, color=colours[lv], label=f"{lab}, KD")
        a1.fill_between(k[x], k["mean"] - k["std"].fillna(0), k["mean"] + k["std"].fillna(0), color=colours[lv],
                        alpha=0.15)
        b = base[base[hue] == lv][value]
        if len(b):
            a1.axhline(b.mean(), color=colours[lv], ls=NO_KD_STYLE, lw=1, label=f"{lab}, no KD")
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
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(data=share, x="fraction", y="share", hue="method", marker="o", errorbar="sd", ax=ax,
                 hue_order=sorted(share["method"].unique()))
    ax.axhline(noise_rate, color="black", ls=":", lw=1.2, label=f"noise rate {noise_rate:g}")
    _log_fraction_axis(ax, share["fraction"].unique())
    ax.set_ylabel("share of kept samples with a corrupted label")
    ax.set_ylim(0, min(1.0, max(share["share"].max(), noise_rate) * 1.15 + 0.02))
    return _finish(fig, ax, title)
