"""What every panel shares: the container class, timing of redraws, and small building blocks."""

from __future__ import annotations

import time
from contextlib import contextmanager

import ipywidgets as widgets
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .._schema import DEFAULT_KEYS, PerturbkitInputError
from ..pl._utils import TEMPLATE, palette

#: obs columns shown on hover when present (drug, MOA, dose, cell line, time).
HOVER_KEYS = tuple(DEFAULT_KEYS[k] for k in ("drug_key", "moa_key", "dose_key", "cell_key", "time_key"))

ORDERS = ("feature order", "sorted", "grouped")


class Panel(widgets.VBox):
    """An interactive panel: an ipywidgets ``VBox`` to display.

    It has its plotly ``figure`` (a ``FigureWidget``), its ``controls`` (name → widget) and ``last_update_s``, the
    Python time of the latest redraw.
    """

    #: True while the panel sets several controls from code: their observers must not redraw (see :meth:`_muted`).
    _muting = False

    def __init__(self, children, *, figure: go.FigureWidget, controls: dict):
        super().__init__(children)
        self.figure = figure
        self.controls = controls
        self.status = next((c for c in children if isinstance(c, widgets.HTML)), None)
        self.last_update_s: float | None = None

    @contextmanager
    def _muted(self):
        """Set controls from code without each change redrawing; the caller redraws once afterwards."""
        self._muting = True
        try:
            yield
        finally:
            self._muting = False

    @contextmanager
    def _timed(self):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.last_update_s = time.perf_counter() - start


FIGURE_WIDTH = 1000


def figure_widget(fig: go.Figure, *, height: int, width: int = FIGURE_WIDTH) -> go.FigureWidget:
    """``fig`` as a FigureWidget with the house template and a fixed size."""
    margin = dict(l=60, r=20, t=60, b=40) | fig.layout.margin.to_plotly_json()  # keep margins set already
    fig.update_layout(template=TEMPLATE, height=height, width=width, margin=margin)
    return go.FigureWidget(fig)


def set_profile_trace(trace, values: np.ndarray, names: np.ndarray, order: np.ndarray) -> None:
    """Put a profile on a trace in the given feature order.

    x is the position (so every trace of the plot shares one order, whatever order they had before), ``text`` the
    feature name shown on hover.
    """
    trace.x, trace.y, trace.text = np.arange(len(order)), np.asarray(values)[order], np.asarray(names)[order]


def label_features(axis, names) -> None:
    """Tick labels of an axis of :func:`set_profile_trace` traces: the feature names, when there are at most 60."""
    few = len(names) <= 60
    axis.showticklabels = few
    axis.tickmode = "array" if few else "auto"
    axis.tickvals, axis.ticktext = (np.arange(len(names)), np.asarray(names)) if few else (None, None)


def legend_right(fig) -> None:
    """Legend to the right of the plots, clear of titles."""
    fig.update_layout(legend=dict(x=1.01, y=1.0, xanchor="left", yanchor="top"), margin=dict(r=160))


def dropdown(description: str, options, value=None, **kwargs) -> widgets.Dropdown:
    options = list(options)
    return widgets.Dropdown(
        description=description,
        options=options,
        value=value if value is not None else (options[0] if options else None),
        style={"description_width": "initial"},
        **kwargs,
    )


def message(html: str = "") -> widgets.HTML:
    return widgets.HTML(value=html)


def present_keys(obs: pd.DataFrame, keys) -> list[str]:
    """The keys that are columns of ``obs``, in order, without repeats."""
    return [k for k in dict.fromkeys(keys) if k is not None and k in obs.columns]


def feature_groups(var: pd.DataFrame | None, groupby) -> np.ndarray | None:
    """One group label per feature from a var column (``"auto"``: ``"group"`` when present), else None."""
    if var is None or groupby is None:
        return None
    if groupby == "auto":
        groupby = "group" if "group" in var.columns else None
        if groupby is None:
            return None
    if groupby not in var.columns:
        raise PerturbkitInputError(
            f"var_groupby={groupby!r} is not a var column; the features have {list(var.columns)}."
        )
    return var[groupby].astype(str).to_numpy()


def feature_order(values: np.ndarray, order: str, groups: np.ndarray | None) -> np.ndarray:
    """Positions of the features for a profile plot: as given, sorted by value (descending) or by group."""
    if order == "feature order" or (order == "grouped" and groups is None):
        return np.arange(len(values))
    if order == "sorted":
        return np.argsort(-values, kind="stable")
    if order == "grouped":
        return np.lexsort((np.arange(len(values)), groups))
    raise PerturbkitInputError(f"order must be one of {ORDERS}, got {order!r}.")


def group_colors(groups: np.ndarray | None, n: int, default: str = "#4C78A8"):
    """One bar colour per feature (by group when there are groups)."""
    if groups is None:
        return [default] * n
    names = list(pd.unique(groups))
    lookup = dict(zip(names, palette(len(names)), strict=True))
    return [lookup[g] for g in groups]


def row_means(X: np.ndarray, labels: np.ndarray, label) -> np.ndarray:
    """Mean of the rows of ``X`` whose label is ``label``."""
    rows = np.flatnonzero(labels == label)
    if len(rows) == 0:
        raise PerturbkitInputError(f"no row is labelled {label!r}.")
    return X[rows].mean(axis=0)
