"""An ipywidgets browser over every run record in a store: filters, a plot and a table that update together.

``ResultsBrowser(store_or_frame)`` builds one multi-select per filter column (dataset, model, method, fraction,
alpha, teacher, teacher_fraction, label_noise, seed; an empty selection means "all"), drop-downs for the plotted
value, the line colour (``hue``) and the table kind, a plot (test accuracy against the kept fraction, mean and
standard deviation over seeds) as a PNG in an ``Image`` widget and a table in an ``HTML`` widget. Any change of a widget
value redraws both. It is usable headless: set ``browser.widgets[name].value`` and read ``filtered()``,
``plotted`` (the rows last drawn) and ``table`` (the frame last shown). Filter values are labels: numbers as
``f"{v:g}"`` (``"0.1"``), missing values (no teacher) as ``"none"``.

The plot never averages over a parameter it does not show: when the plotted runs differ in a setting other than
the colour and KD (a second dataset, alpha, teacher, recipe...), each line is split by it (and says so in the
legend); with more than ``MAX_LINES`` lines the plot is refused with a message naming what to select. Lines follow
``kdlib.plots``: no KD solid, KD dashed. Tables hide the columns that hold one value (listed above them).
Importing this module loads neither torch, seaborn nor scipy, so the widgets appear fast.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Sequence

import pandas as pd

from .store import Store

FILTERS = ("dataset", "model", "method", "fraction", "alpha", "teacher", "teacher_fraction", "label_noise", "seed")
HUES = ("method", "alpha", "teacher", "model", "teacher_fraction", "label_noise", "dataset", "kd")
VALUES = ("final_acc", "best_acc")
SUMMARY_BY = ("dataset", "model", "teacher", "teacher_fraction", "label_noise", "method", "alpha", "fraction")
# settings a line could silently pool over besides the filters: the KD temperature and loss, the training recipe
SPLIT_EXTRA = ("tau", "kd_loss", "class_balanced", "alpha_rule")
MAX_LINES = 12
NONE = "none"
HINT = ("<small>Filters: no selection = all values; ctrl/cmd-click or shift-click selects several; "
        "<b>clear filters</b> selects none.</small>")


def label(value: object) -> str:
    """The filter label of a value: ``f"{v:g}"`` for numbers, ``"none"`` for None/NaN, ``str`` otherwise."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NONE
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return f"{value:g}"
    return str(value)


def _sort_key(value: object) -> tuple:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (0, 0.0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, float(value), "")
    return (2, 0.0, str(value))


class ResultsBrowser:
    """Filters, plot and table over run records (a DataFrame as from ``kdlib.study.load_records``, or a store
    folder / ``Store`` whose records are loaded, and re-loaded with the ``reload`` button)."""

    def __init__(self, source: pd.DataFrame | Store | str | Path, filters: Sequence[str] = FILTERS,
                 hue: str = "method", max_rows: int = 200) -> None:
        import ipywidgets as W

        self.source = source
        self.max_rows = max_rows
        self.df = self._load()
        self.plotted = self.df.iloc[:0]
        self.table = pd.DataFrame()
        self.figure = None
        self.filters = [c for c in filters if c in self.df.columns]
        w: dict[str, W.Widget] = {}
        for col in self.filters:
            w[col] = W.SelectMultiple(options=self._options(col), value=(), description=col,
                                      rows=min(10, max(2, len(self._options(col)))),
                                      layout=W.Layout(width="170px"), style={"description_width": "initial"})
        hues = [h for h in HUES if h in self.df.columns] or ["method"]
        w["hue"] = W.Dropdown(options=hues, value=hue if hue in hues else hues[0], description="colour")
        w["value"] = W.Dropdown(options=[v for v in VALUES if v in self.df.columns] or list(VALUES),
                                description="value")
        w["table_kind"] = W.ToggleButtons(options=["summary", "runs"], value="summary", description="table")
        w["reload"] = W.Button(description="reload store", disabled=isinstance(source, pd.DataFrame))
        w["clear"] = W.Button(description="clear filters")
        w["hint"] = W.HTML(HINT)
        w["count"] = W.HTML()
        # an Image, not an Output widget: headless runners (nbclient) mimic Output widgets by sending comm messages
        # on the shell channel, which can swallow the cell's execute reply and stall papermill (nbclient #312)
        w["plot"] = W.Image(format="png", layout=W.Layout(max_width="100%"))
        w["message"] = W.HTML()
        w["table"] = W.HTML()
        self.widgets = w
        for name in self.filters + ["hue", "value", "table_kind"]:
            w[name].observe(self._on_change, names="value")
        w["reload"].on_click(lambda _: self.reload())
        w["clear"].on_click(lambda _: self.clear())
        self.update()

    # --- data ----------------------------------------------------------------------------------------------
    def _load(self) -> pd.DataFrame:
        if isinstance(self.source, pd.DataFrame):
            df = self.source.copy()
        else:
            from .study import load_records  # here: telling current records apart needs the run configs (torch)

            df = load_records(self.source)
        if "status" not in df.columns:
            df["status"] = "done"
        if "alpha" in df.columns and "kd" not in df.columns:
            df["kd"] = df["alpha"].fillna(0) > 0
        return df.reset_index(drop=True)

    def _options(self, col: str) -> list[str]:
        values = sorted(self.df[col].drop_duplicates().tolist(), key=_sort_key) if col in self.df else []
        return list(dict.fromkeys(label(v) for v in values))

    def reload(self) -> None:
        """Re-reads the store, refreshes every filter's options (keeping selections that still exist), redraws."""
        self.df = self._load()
        self._updating = True
        try:
            for col in self.filters:
                sel = self.widgets[col]
                keep = tuple(v for v in sel.value if v in self._options(col))
                sel.value = ()
                sel.options = self._options(col)
                sel.value = keep
        finally:
            self._updating = False
        self.update()

    def selection(self) -> dict[str, tuple[str, ...]]:
        """The non-empty filter selections (column -> labels)."""
        return {c: tuple(self.widgets[c].value) for c in self.filters if self.widgets[c].value}

    def filtered(self) -> pd.DataFrame:
        """The records that pass every filter (all statuses)."""
        mask = pd.Series(True, index=self.df.index)
        for col, chosen in self.selection().items():
            mask &= self.df[col].map(label).isin(chosen)
        return self.df[mask]

    # --- drawing ---------------------------------------------------------------------------------------------
    def _on_change(self, change: dict) -> None:
        if not getattr(self, "_updating", False):
            self.update()

    def clear(self) -> None:
        """Empties every filter (all runs show) and redraws once."""
        self._updating = True
        try:
            for col in self.filters:
                self.widgets[col].value = ()
        finally:
            self._updating = False
        self.update()

    def update(self) -> None:
        """Recomputes the filtered records and redraws the plot and the table."""
        f = self.filtered()
        value = self.widgets["value"].value
        hue = self.widgets["hue"].value
        self.plotted = f[(f["status"] == "done") & f[value].notna()] if value in f else f.iloc[:0]
        self.table = self._table(f, value)
        n_done = int((f["status"] == "done").sum())
        self.widgets["count"].value = (f"<b>{len(f)}</b> of {len(self.df)} runs match ({n_done} finished, "
                                       f"{len(f) - n_done} failed); {len(self.plotted)} plotted")
        self.widgets["table"].value = self._html(self.table)
        self.figure = None
        split = self.split_columns(self.plotted, hue)
        lines = self._line_keys(self.plotted, hue, split)
        if self.plotted.empty:
            self._no_plot("no finished runs match the filters: clear a filter or pick other values")
        elif lines.nunique() > MAX_LINES:
            self._no_plot(f"{lines.nunique()} lines: the runs differ in {', '.join(split)} as well as {hue}; "
                          f"select fewer values of {', '.join(split)} (or colour by one of them) to draw them")
        else:
            import matplotlib.pyplot as plt

            self.widgets["message"].value = (f"lines split by {', '.join(split)} (not averaged over)" if split
                                             else "")
            self.figure = self._draw(self.plotted.assign(_line=lines), value, hue, split)
            png = io.BytesIO()
            self.figure.savefig(png, format="png", dpi=100)
            plt.close(self.figure)
            self.widgets["plot"].layout.display = "block"  # before the image: the layout is a message of its own
            self.widgets["plot"].value = png.getvalue()

    def _no_plot(self, message: str) -> None:
        """No image (not a broken one): the plot is hidden and the message says why."""
        self.widgets["message"].value = f"<b>{message}</b>"
        self.widgets["plot"].value = b""
        self.widgets["plot"].layout.display = "none"

    def split_columns(self, d: pd.DataFrame, hue: str) -> list[str]:
        """Settings other than the colour, f and KD on/off in which the plotted runs differ (for KD settings, among
        the KD runs only: a no-KD run has no teacher)."""
        kd = d[d["alpha"].fillna(0) > 0] if "alpha" in d else d
        cols = [c for c in (*SUMMARY_BY, *SPLIT_EXTRA) if c != "fraction"]
        cols += sorted(c for c in d.columns if c.startswith("train."))
        out = []
        for c in cols:
            if c == hue or c not in d:
                continue
            rows = kd if c in ("alpha", "teacher", "teacher_fraction", "tau", "kd_loss", "alpha_rule") else d
            if rows[c].map(label).nunique() > 1:
                out.append(c)
        return out

    @staticmethod
    def _line_keys(d: pd.DataFrame, hue: str, split: Sequence[str]) -> pd.Series:
        """The label of each run's line: its colour value, then the values of the split columns."""
        keys = d[hue].map(label) if hue in d else pd.Series("all", index=d.index)
        for c in split:
            keys = keys + ", " + c + "=" + d[c].map(label)
        return keys

    def _table(self, f: pd.DataFrame, value: str) -> pd.DataFrame:
        if self.widgets["table_kind"].value == "runs":
            keys = [c for c in (*SUMMARY_BY, "seed") if c in f.columns]
            cols = [c for c in (*keys, value, "status", "teacher_acc", "n_train", "noisy_kept", "alpha_rule", "error",
                                "key") if c in f.columns]
            return f[cols].sort_values(keys, na_position="first", key=lambda s: s.map(_sort_key)).reset_index(drop=True)
        done = f[f["status"] == "done"]
        by = [c for c in SUMMARY_BY if c in done.columns]
        if done.empty or value not in done:
            return pd.DataFrame(columns=by + ["mean", "std", "n"])
        out = done.groupby(by, dropna=False, sort=False)[value].agg(mean="mean", std="std", n="count").reset_index()
        return out.sort_values(by, key=lambda s: s.map(_sort_key)).reset_index(drop=True)

    def _html(self, table: pd.DataFrame) -> str:
        """The table without its single-valued columns (named above it), at most ``max_rows`` rows; nothing when
        empty (the message says why)."""
        if table.empty:
            return ""
        keep = ("mean", "std", "n", "status", "final_acc", "best_acc")
        fixed = [c for c in table.columns if c not in keep and len(table) > 1 and table[c].map(label).nunique() == 1]
        shown = table.drop(columns=fixed)
        head = ""
        if fixed:
            head = "<p><small>same in every row: " + ", ".join(f"{c} = {label(table[c].iloc[0])}" for c in fixed) + \
                   "</small></p>"
        if len(shown) > self.max_rows:
            head += f"<p>first {self.max_rows} of {len(shown)} rows (filter to see the rest)</p>"
        return head + shown.head(self.max_rows).to_html(index=False, float_format=lambda v: f"{v:.2f}", na_rep="",
                                                        border=0)

    @staticmethod
    def _draw(d: pd.DataFrame, value: str, hue: str, split: Sequence[str] = ()):
        """One line per ``_line`` value and KD on/off: no KD solid, KD dashed (``kdlib.plots``); mean and sd band."""
        import matplotlib.pyplot as plt

        from .plots import KD_STYLE, NO_KD_STYLE

        kd = d["alpha"].fillna(0) > 0 if "alpha" in d else pd.Series(False, index=d.index)
        lines = sorted(d["_line"].unique(), key=lambda v: tuple(_sort_key(_number(p)) for p in v.split(", ")))
        colours = plt.get_cmap("tab10" if len(lines) <= 10 else "tab20").colors
        fig, ax = plt.subplots(figsize=(7.5, 4.4))
        for i, line in enumerate(lines):
            for is_kd, ls in ((False, NO_KD_STYLE), (True, KD_STYLE)):
                g = d[(d["_line"] == line) & (kd == is_kd)].groupby("fraction")[value].agg(["mean", "std"])
                if g.empty:
                    continue
                c = colours[i % len(colours)]
                ax.plot(g.index, g["mean"], ls=ls, marker="o", ms=4, color=c,
                        label=f"{line}, {'KD' if is_kd else 'no KD'}")
                ax.fill_between(g.index, g["mean"] - g["std"].fillna(0), g["mean"] + g["std"].fillna(0), color=c,
                                alpha=0.12, lw=0)
        fr = sorted(d["fraction"].unique())
        if len(fr) > 1:
            ax.set_xscale("log")
        ax.set_xticks(fr, [f"{v:g}" for v in fr])
        ax.minorticks_off()
        ax.set_xlabel("fraction of training data kept (f)")
        ax.set_ylabel(f"test accuracy (%) [{value}]")
        ax.grid(alpha=0.3)
        ax.legend(title=", ".join([hue, *split]) + " (no KD solid, KD dashed)", bbox_to_anchor=(1.02, 1),
                  loc="upper left", fontsize=8, title_fontsize=8)
        ax.set_title("mean and sd over seeds", fontsize=9)
        fig.tight_layout()
        return fig

    # --- layout --------------------------------------------------------------------------------------------
    def ui(self):
        """The assembled widget: filters on top, controls, then plot and table side by side."""
        import ipywidgets as W

        w = self.widgets
        filters = W.HBox([w[c] for c in self.filters], layout=W.Layout(flex_flow="row wrap"))
        controls = W.HBox([w["value"], w["hue"], w["table_kind"], w["clear"], w["reload"]],
                          layout=W.Layout(flex_flow="row wrap"))
        table = W.Box([w["table"]], layout=W.Layout(max_height="480px", overflow="auto", width="100%"))
        plot = W.VBox([w["message"], w["plot"]], layout=W.Layout(width="100%"))
        return W.VBox([w["hint"], filters, controls, w["count"], plot, table])

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.ui())


def _number(v: object) -> object:
    """A label back to a number where it is one (for sorting)."""
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None if v == NONE else v
    return v
