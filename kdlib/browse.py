"""An ipywidgets browser over every run record in a store: filters, a plot and a table that update together.

``ResultsBrowser(store_or_frame)`` builds one multi-select per filter column (dataset, model, method, fraction,
alpha, teacher, teacher_fraction, label_noise, seed; an empty selection means "all"), drop-downs for the plotted
value, the line colour (``hue``) and the table kind, a plot (test accuracy against the kept fraction, mean and
standard deviation over seeds) as a PNG in an ``Image`` widget and a table in an ``HTML`` widget. Any change of a widget
value redraws both. It is usable headless: set ``browser.widgets[name].value`` and read ``filtered()``,
``plotted`` (the rows last drawn) and ``table`` (the frame last shown). Filter values are labels: numbers as
``f"{v:g}"`` (``"0.1"``), missing values (no teacher) as ``"none"``.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .store import Store
from .study import load_records

FILTERS = ("dataset", "model", "method", "fraction", "alpha", "teacher", "teacher_fraction", "label_noise", "seed")
HUES = ("method", "alpha", "teacher", "model", "teacher_fraction", "label_noise", "dataset", "kd")
VALUES = ("final_acc", "best_acc")
SUMMARY_BY = ("dataset", "model", "teacher", "teacher_fraction", "label_noise", "method", "alpha", "fraction")
NONE = "none"


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
                                      rows=min(6, max(2, len(self._options(col)))),
                                      layout=W.Layout(width="170px"), style={"description_width": "initial"})
        hues = [h for h in HUES if h in self.df.columns] or ["method"]
        w["hue"] = W.Dropdown(options=hues, value=hue if hue in hues else hues[0], description="colour")
        w["value"] = W.Dropdown(options=[v for v in VALUES if v in self.df.columns] or list(VALUES),
                                description="value")
        w["table_kind"] = W.ToggleButtons(options=["summary", "runs"], value="summary", description="table")
        w["reload"] = W.Button(description="reload store", disabled=isinstance(source, pd.DataFrame))
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
        self.update()

    # --- data ----------------------------------------------------------------------------------------------
    def _load(self) -> pd.DataFrame:
        if isinstance(self.source, pd.DataFrame):
            df = self.source.copy()
        else:
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
        if self.plotted.empty:
            self.widgets["message"].value = "no finished runs match the filters"
            self.widgets["plot"].value = b""
        else:
            self.widgets["message"].value = ""
            self.figure = self._draw(self.plotted, value, hue)
            png = io.BytesIO()
            self.figure.savefig(png, format="png", dpi=100)
            plt.close(self.figure)
            self.widgets["plot"].value = png.getvalue()

    def _table(self, f: pd.DataFrame, value: str) -> pd.DataFrame:
        if self.widgets["table_kind"].value == "runs":
            cols = [c for c in ("key", "status", *SUMMARY_BY, "seed", value, "teacher_acc", "n_train", "noisy_kept",
                                "alpha_rule", "error") if c in f.columns]
            return f[cols].sort_values([c for c in SUMMARY_BY if c in cols] + ["seed"], na_position="first",
                                       key=lambda s: s.map(_sort_key)).reset_index(drop=True)
        done = f[f["status"] == "done"]
        by = [c for c in SUMMARY_BY if c in done.columns]
        if done.empty or value not in done:
            return pd.DataFrame(columns=by + ["mean", "std", "n"])
        out = done.groupby(by, dropna=False, sort=False)[value].agg(mean="mean", std="std", n="count").reset_index()
        return out.sort_values(by, key=lambda s: s.map(_sort_key)).reset_index(drop=True)

    def _html(self, table: pd.DataFrame) -> str:
        more = f"<p>first {self.max_rows} of {len(table)} rows</p>" if len(table) > self.max_rows else ""
        return more + table.head(self.max_rows).to_html(index=False, float_format=lambda v: f"{v:.2f}",
                                                        na_rep="", border=0)

    @staticmethod
    def _draw(d: pd.DataFrame, value: str, hue: str):
        d = d.assign(_hue=d[hue].map(label) if hue in d else "all",
                     _kd=d["alpha"].map(lambda a: "KD" if a > 0 else "no KD") if "alpha" in d else "all")
        order = sorted(d["_hue"].unique(), key=lambda v: _sort_key(_number(v)))
        fig, ax = plt.subplots(figsize=(7, 4.2))
        sns.lineplot(data=d, x="fraction", y=value, hue="_hue", hue_order=order, style="_kd",
                     style_order=[s for s in ("KD", "no KD", "all") if s in set(d["_kd"])], markers=True,
                     errorbar="sd", err_style="band", ax=ax)
        fr = sorted(d["fraction"].unique())
        if len(fr) > 1:
            ax.set_xscale("log")
        ax.set_xticks(fr, [f"{v:g}" for v in fr])
        ax.minorticks_off()
        ax.set_xlabel("fraction of training data kept (f)")
        ax.set_ylabel(f"test accuracy (%) [{value}]")
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        labels = [hue if lab == "_hue" else ("" if lab == "_kd" else lab) for lab in labels]
        ax.legend(handles, labels, bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8)
        fig.tight_layout()
        return fig

    # --- layout --------------------------------------------------------------------------------------------
    def ui(self):
        """The assembled widget: filters on top, controls, then plot and table side by side."""
        import ipywidgets as W

        w = self.widgets
        filters = W.HBox([w[c] for c in self.filters], layout=W.Layout(flex_flow="row wrap"))
        controls = W.HBox([w["value"], w["hue"], w["table_kind"], w["reload"]])
        table = W.Box([w["table"]], layout=W.Layout(max_height="420px", overflow="auto", width="48%"))
        plot = W.VBox([w["message"], w["plot"]], layout=W.Layout(width="52%"))
        return W.VBox([filters, controls, w["count"], W.HBox([plot, table])])

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
