"""The comparison figure of :func:`perturbkit.tl.benchmark`: one box (or violin) of per-group scores per method."""

from __future__ import annotations

from typing import Literal

import pandas as pd
import plotly.graph_objects as go

from .._schema import PerturbkitInputError
from ._utils import finish, label, palette, require_frame_columns

__all__ = ["benchmark"]


METRIC_LABELS = {
    "pearson": "Pearson (per profile, all genes)",
    "r2": "r² (all genes)",
    "r2_degs": "r² (DEGs)",
    "squared_pearson": "R² of mean expression (scGen)",
    "squared_pearson_degs": "R² of mean expression, DEGs (scGen)",
    "perturbation_rank": "rank of the true perturbation (0 best)",
    "pearson_delta": "Pearson of deltas",
    "l2": "L2 distance to the measured A|B profile (lower is better)",
}

#: How the methods of :func:`perturbkit.tl.benchmark` are named on the figure.
METHOD_LABELS = {
    "deepcellstate": "DeepCellState",
    "anchor_vae": "anchor VAE",
    "scgen": "scGen",
    "dual_gan": "dual GAN",
    "dnpp": "DNPP",
    "falrtc": "FaLRTC",
    "cyclecdr": "cycleCDR",
    "cyclecdr_gat": "cycleCDR (GAT)",
    "cyclecdr_fingerprint": "cycleCDR (fingerprint)",
    "cpa": "CPA-style",
    "no_change": "no change",
    "mean_response": "mean response",
    "mean_shift": "mean shift",
    "vae_vanilla": "VAE",
    "vae_beta": "β-VAE",
    "vae_mmd": "MMD-VAE",
    "pca": "PCA",
    "original": "original space",
}


def benchmark(
    table: pd.DataFrame,
    *,
    metric: str | None = None,
    kind: Literal["box", "violin"] = "box",
    paper: dict[str, float] | None = None,
    title: str | None = None,
) -> go.Figure:
    """Per-group scores of every method of a :func:`perturbkit.tl.benchmark` table, as boxes or violins.

    Methods are ordered by their mean score (best first); the x labels give each method's mean training time per
    fold. Points are the groups (drugs, profiles, cell type × drug, or A|B), coloured by method; hover shows the
    group and the fold.

    Parameters
    ----------
    table
        The table :func:`perturbkit.tl.benchmark` returns (columns ``method``, ``fold``, ``group``, metrics,
        ``train_seconds``).
    metric
        The score to draw (default: the task's main metric, ``table.attrs["primary_metric"]``).
    kind
        ``"box"`` (with the points) or ``"violin"``, as the papers draw them.
    paper
        ``{method: value}``: numbers a paper reports for the same comparison, drawn as black diamonds.
    title
        Figure title (default: the task and the metric).

    Returns
    -------
    The plotly figure.

    Examples
    --------
    >>> table = pk.tl.benchmark(adata, task="cross_cell")
    >>> pk.pl.benchmark(table, paper={"deepcellstate": 0.61, "anchor_vae": 0.48, "scgen": 0.22, "dual_gan": 0.26})
    """
    require_frame_columns(table, ["method", "fold", "group"], what="pk.pl.benchmark")
    metric = table.attrs.get("primary_metric") if metric is None else metric
    if metric is None or metric not in table.columns:
        scores = [c for c in table.columns if c not in ("task", "method", "fold", "group", "train_seconds")]
        raise PerturbkitInputError(f"metric={metric!r} is not a column of the table; choose one of {scores}.")
    if kind not in ("box", "violin"):
        raise PerturbkitInputError(f"kind={kind!r} is not known; use 'box' or 'violin'.")
    higher = table.attrs.get("higher_is_better", metric not in ("l2", "perturbation_rank", "mse"))
    means = table.groupby("method", sort=False)[metric].mean()
    order = means.sort_values(ascending=not higher).index.tolist()
    seconds = (
        table.groupby(["method", "fold"])["train_seconds"].first().groupby("method").mean()
        if "train_seconds" in table
        else pd.Series(dtype=float)
    )
    names = {m: METHOD_LABELS.get(m, m) + (f"<br>{_duration(seconds[m])}" if m in seconds else "") for m in order}
    fig = go.Figure()
    for method, color in zip(order, palette(len(order)), strict=True):
        rows = table[table["method"] == method]
        common = dict(
            x=[names[method]] * len(rows),
            y=rows[metric],
            name=method,
            marker_color=color,
            text=rows["group"].astype(str) + " (fold " + rows["fold"].astype(str) + ")",
            hovertemplate="%{text}<br>" + label(metric) + " %{y:.3f}<extra>" + method + "</extra>",
        )
        if kind == "box":
            fig.add_trace(go.Box(boxpoints="all", jitter=0.4, pointpos=0, boxmean=True, **common))
        else:
            fig.add_trace(go.Violin(points="all", box_visible=True, meanline_visible=True, **common))
    if paper:
        unknown = sorted(set(paper) - set(order))
        if unknown:
            raise PerturbkitInputError(f"paper= names methods {unknown} that are not in the table; it has {order}.")
        fig.add_trace(
            go.Scatter(
                x=[names[m] for m in paper],
                y=list(paper.values()),
                mode="markers",
                name="paper",
                marker=dict(symbol="diamond", size=12, color="black"),
                hovertemplate="paper: %{y:.2f}<extra></extra>",
            )
        )
    task = table.attrs.get("task") or (table["task"].iloc[0] if "task" in table else "benchmark")
    return finish(
        fig,
        title=title or f"{task}: {METRIC_LABELS.get(metric, label(metric))}",
        xlabel="method (mean training time per fold)",
        ylabel=METRIC_LABELS.get(metric, label(metric)),
        showlegend=bool(paper),
    )


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:.1f} min"
