"""Figures for the VAE family and latent space arithmetic (see the VAE methods page). Each returns a ``go.Figure``.

They only read results (training histories, projections, correlation and traversal tables, LSA tables); they
never train or change data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .._schema import PerturbkitInputError
from .._stats import pearson_rows
from ._utils import categories, finish, identity_line, label, palette, require_frame_columns, source_scatter

__all__ = [
    "training_curves",
    "projection",
    "latent_correlation_heatmap",
    "traversal_heatmap",
    "l2_distributions",
    "zscore_scatter",
]

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf", re.IGNORECASE)
_SPLIT_DASH = {"train": "solid", "validation": "dash", "valid": "dash", "val": "dash", "test": "dot"}
_SOURCE_COLORS = {"original": "rgba(120, 120, 120, 0.55)", "reconstructed": "#1f77b4", "simulated": "#d62728"}


# ------------------------------------------------------------------------------------------ training curves
def _history_frames(obj) -> pd.DataFrame:
    """One long DataFrame from a history frame, a model with ``history_frame``, or a dict of either (→ ``run``)."""
    if isinstance(obj, pd.DataFrame):
        return obj
    if hasattr(obj, "history_frame"):
        frame = obj.history_frame
        return frame() if callable(frame) else frame
    if isinstance(obj, Mapping):
        if not obj:
            raise PerturbkitInputError("training_curves got an empty dict of histories.")
        return (
            pd.concat({str(k): _history_frames(v) for k, v in obj.items()}, names=["run", None])
            .reset_index(level=0)
            .reset_index(drop=True)
        )
    raise PerturbkitInputError(
        f"training_curves needs a history DataFrame (model.history_frame), the frame of "
        f"pk.experiments.vae_shuffled_control, a model, or a dict of them; got "
        f"{type(obj).__name__}."
    )


def _split_of(column: str) -> tuple[str, str]:
    """``"validation_loss"`` → ("validation", "loss"); ``"train_kl"`` → ("train", "kl"); other → ("", column)."""
    for prefix in ("train", "validation", "valid", "val", "test"):
        if column.startswith(prefix + "_"):
            return prefix, column[len(prefix) + 1 :]
    return "", column


def training_curves(
    history_or_frames,
    *,
    y=("train_loss", "validation_loss"),
    by: str | None = "data",
    x: str = "epoch",
    log_y: bool = False,
    title: str | None = None,
) -> go.Figure:
    """Loss against epoch: one line per split (``y`` column) and, with ``by``, per group (real vs shuffled).

    Parameters
    ----------
    history_or_frames
        ``model.history_frame`` (columns ``stage``, ``epoch``, ``train_loss``, ``validation_loss``, ...), the
        frame of :func:`perturbkit.experiments.vae_shuffled_control` (adds ``data`` ∈ real / shuffled), a model
        with a ``history_frame``, or a dict ``{name: frame or model}`` (the names go in a ``run`` column, used as
        ``by`` when ``by`` is absent from the frames).
    y
        The column(s) to draw (a name or several). Missing ones are skipped; at least one must be present.
        Training columns are solid, validation columns dashed.
    by
        Column giving one colour per group (default ``data``; ignored when absent; ``None``: one colour).
        Repeated rows of one group and epoch (several seeds) are averaged.
    x
        The epoch column.
    log_y
        Logarithmic y axis.
    title
        Overrides the default title.

    Returns
    -------
    A plotly figure.

    Examples
    --------
    >>> pk.pl.training_curves(model.history_frame)
    >>> pk.pl.training_curves(pk.experiments.vae_shuffled_control(adata, kind="beta"))
    """
    frame = _history_frames(history_or_frames)
    ys = [y] if isinstance(y, str) else list(y)
    if by is not None and by not in frame.columns:
        if by != "data":
            raise PerturbkitInputError(f"no column {by!r} to group by; the history has {list(frame.columns)}.")
        by = "run" if "run" in frame.columns else None
    present = [c for c in ys if c in frame.columns]
    if not present:
        raise PerturbkitInputError(f"none of the columns {ys} is in the history; it has {list(frame.columns)}.")
    frame = require_frame_columns(frame, [x], what="training_curves")
    stages = categories(frame["stage"]) if "stage" in frame.columns else [None]
    groups = [None] if by is None else categories(frame[by].astype(str))
    colors = dict(zip(groups, palette(len(groups)), strict=True))
    fig = go.Figure()
    finals = []
    for g in groups:
        part = frame if g is None else frame[frame[by].astype(str) == g]
        for s in stages:
            sub = part if s is None else part[part["stage"] == s]
            for col in present:
                values = sub[[x, col]].astype(float).dropna()
                if values.empty:
                    continue
                curve = values.groupby(x, sort=True)[col].mean()
                split, what = _split_of(col)
                pieces = [str(v) for v in (g, s if len(stages) > 1 else None, label(col)) if v is not None]
                fig.add_trace(
                    go.Scatter(
                        x=curve.index.to_numpy(),
                        y=curve.to_numpy(),
                        mode="lines+markers",
                        name=", ".join(pieces),
                        legendgroup=str(g),
                        line=dict(color=colors[g], dash=_SPLIT_DASH.get(split, "solid"), width=2),
                        marker=dict(size=4),
                        hovertemplate=f"{', '.join(pieces)}<br>{label(x)} %{{x}}<br>%{{y:.4g}}<extra></extra>",
                    )
                )
                if col == present[-1] and s == stages[-1]:
                    finals.append((g, label(col), float(curve.iloc[-1])))
    if not fig.data:
        raise PerturbkitInputError(f"the columns {present} hold no finite values.")
    summary = "; ".join(f"{g + ' ' if g is not None else ''}{v:.4g}" for g, _, v in finals)
    default = f"Training curves ({', '.join(label(c) for c in present)})<br><sup>final {finals[-1][1]}: {summary}</sup>"
    finish(
        fig,
        title=title or default,
        xlabel=label(x),
        ylabel="loss" if not log_y else "loss (log scale)",
        legend_title_text=label(by) if by else None,
    )
    if log_y:
        fig.update_yaxes(type="log")
    return fig


# --------------------------------------------------------------------------------------------- projection
def _projection_frame(proj, basis: str) -> tuple[pd.DataFrame, dict]:
    """Columns ``x``, ``y`` plus the annotation; from an AnnData (``obsm[basis]``) or a DataFrame."""
    if hasattr(proj, "obsm") and hasattr(proj, "obs"):
        key = basis if basis in proj.obsm else f"X_{basis}"
        if key not in proj.obsm:
            raise PerturbkitInputError(
                f"proj.obsm has no {basis!r} (it has {list(proj.obsm.keys())}); compute it "
                f"with pk.tl.project_reconstructions."
            )
        coords = np.asarray(proj.obsm[key], dtype=float)
        frame = proj.obs.reset_index(drop=True).assign(
            name=proj.obs_names.astype(str).to_numpy(), x=coords[:, 0], y=coords[:, 1]
        )
        return frame, dict(proj.uns.get("project_reconstructions", {}))
    if isinstance(proj, pd.DataFrame):
        for cx, cy in (("x", "y"), ("umap1", "umap2"), ("UMAP1", "UMAP2"), ("umap_1", "umap_2"), ("UMAP_1", "UMAP_2")):
            if cx in proj.columns and cy in proj.columns:
                return proj.rename(columns={cx: "x", cy: "y"}), dict(proj.attrs.get("project_reconstructions", {}))
        raise PerturbkitInputError(
            f"the projection DataFrame needs coordinate columns ('umap1', 'umap2') or "
            f"('x', 'y'); it has {list(proj.columns)}."
        )
    raise PerturbkitInputError(
        f"projection needs an AnnData from pk.tl.project_reconstructions or a DataFrame; got {type(proj).__name__}."
    )


def projection(
    proj, *, color: str = "source", basis: str = "X_umap", marker_size: float = 6, title: str | None = None
) -> go.Figure:
    """The paper's UMAP: original profiles, their reconstructions and prior simulations.

    All are placed in a UMAP fitted on the original data (from :func:`perturbkit.tl.project_reconstructions`).

    Parameters
    ----------
    proj
        AnnData with ``obsm[basis]`` and obs ``source`` (original / reconstructed / simulated), or a DataFrame with
        coordinate columns ``umap1``, ``umap2`` (or ``x``, ``y``) and the annotation.
    color
        Column colouring the points (default ``source``; any categorical or numeric column, e.g. ``moa``).
    basis
        The ``obsm`` key of the coordinates.
    marker_size
        Marker size in pixels.
    title
        Overrides the default title.

    Returns
    -------
    A plotly figure.

    Examples
    --------
    >>> pk.pl.projection(pk.tl.project_reconstructions(test, model=model), color="source")
    """
    frame, info = _projection_frame(proj, basis)
    if color not in frame.columns:
        raise PerturbkitInputError(f"no column {color!r} to colour by; the projection has {list(frame.columns)}.")
    frame = frame[np.isfinite(frame["x"].astype(float)) & np.isfinite(frame["y"].astype(float))]
    if frame.empty:
        raise PerturbkitInputError("the projection has no finite coordinates.")
    fig, counts = source_scatter(
        frame,
        color=color,
        marker_size=marker_size,
        source_colors=_SOURCE_COLORS,
        hover_columns=["source", "name", "drug", "moa", "dose", color],
    )
    kind = f" {info['kind']}" if info.get("kind") else ""
    mse = f"; reconstruction MSE {info['reconstruction_mse']:.4g}" if "reconstruction_mse" in info else ""
    default = (
        f"UMAP fitted on the original profiles, {kind.strip() + ' ' if kind else ''}model outputs projected"
        f"<br><sup>{counts or f'{len(frame)} points'}{mse}</sup>"
    )
    finish(fig, title=title or default, xlabel="UMAP 1", ylabel="UMAP 2", legend_title_text=label(color))
    return fig


# ------------------------------------------------------------------------------------------------ heatmaps
def latent_correlation_heatmap(corr: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """Heatmap of a latent × latent correlation matrix (from :func:`perturbkit.tl.vae_latent_correlation`).

    On a fixed −1..1 diverging scale; small off-diagonal values mean disentangled latent features.

    Parameters
    ----------
    corr
        A square latent × latent correlation DataFrame.
    title
        Overrides the default title.

    Returns
    -------
    A plotly figure.
    """
    if not isinstance(corr, pd.DataFrame):
        corr = pd.DataFrame(np.asarray(corr, dtype=float))
    if corr.shape[0] != corr.shape[1] or corr.shape[0] == 0:
        raise PerturbkitInputError(
            f"latent_correlation_heatmap needs a square, non-empty latent × latent matrix; got shape {corr.shape}."
        )
    values = corr.to_numpy(dtype=float)
    n = len(values)
    off = values[~np.eye(n, dtype=bool)]
    off = off[np.isfinite(off)]
    names_x = [str(c) for c in corr.columns]
    names_y = [str(i) for i in corr.index]
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=names_x,
            y=names_y,
            colorscale="RdBu_r",
            zmid=0,
            zmin=-1,
            zmax=1,
            colorbar=dict(title="r"),
            hovertemplate="%{y} × %{x}<br>r = %{z:.3f}<extra></extra>",
        )
    )
    stats = (
        f"mean |r| off the diagonal {np.abs(off).mean():.3f}, max {np.abs(off).max():.3f}"
        if off.size
        else "one latent feature"
    )
    default = f"Latent feature correlation ({n} latent features)<br><sup>{stats}</sup>"
    finish(
        fig,
        title=title or default,
        xlabel="latent feature",
        ylabel="latent feature",
        height=max(400, min(1000, 14 * n + 160)),
    )
    fig.update_yaxes(autorange="reversed", scaleanchor="x", scaleratio=1)
    fig.update_xaxes(showticklabels=n <= 60)
    fig.update_yaxes(showticklabels=n <= 60)
    return fig


def _leaf_order(values: np.ndarray, method: str, metric: str) -> np.ndarray:
    """Leaf order of a hierarchical clustering of the rows (identity for fewer than 3 rows)."""
    from scipy.cluster.hierarchy import leaves_list, linkage

    if len(values) < 3:
        return np.arange(len(values))
    if metric == "correlation":
        flat = np.isclose(values.std(axis=1), 0)
        if flat.any():  # a constant row has no correlation; cluster those by euclidean distance instead
            metric = "euclidean"
    return leaves_list(linkage(values, method=method, metric=metric, optimal_ordering=len(values) <= 300))


def traversal_heatmap(
    contributions: pd.DataFrame,
    *,
    cluster: bool = True,
    method: Literal["single", "complete", "average", "weighted", "centroid", "median", "ward"] = "average",
    metric: str = "euclidean",
    title: str | None = None,
) -> go.Figure:
    """Heatmap of latent-traversal contributions (latent features × feature groups).

    Rows and columns are ordered by hierarchical clustering.

    Parameters
    ----------
    contributions
        From :func:`perturbkit.tl.traversal_contributions`: rows latent features, columns feature groups
        (compartment × channel), values the mean |decode(+3) − decode(−3)|. PCA loadings averaged by group can be
        shown the same way.
    cluster
        Order rows and columns by the leaves of ``scipy.cluster.hierarchy.linkage`` (``method``, ``metric``);
        ``False`` keeps the input order.
    method
        The linkage method.
    metric
        The distance metric of the linkage (any ``scipy.spatial.distance.pdist`` metric).
    title
        Overrides the default title.

    Returns
    -------
    A plotly figure.

    Examples
    --------
    >>> pk.pl.traversal_heatmap(pk.tl.traversal_contributions(model, groupby="group"))
    """
    if not isinstance(contributions, pd.DataFrame) or contributions.empty:
        raise PerturbkitInputError("traversal_heatmap needs a non-empty DataFrame (latent features × feature groups).")
    data = contributions.apply(pd.to_numeric, errors="coerce")
    values = data.to_numpy(dtype=float)
    if not np.isfinite(values).all():
        bad = data.columns[~np.isfinite(values).all(axis=0)]
        raise PerturbkitInputError(f"the contributions have missing or non-numeric values in columns {list(bad[:5])}.")
    if cluster:
        rows = _leaf_order(values, method, metric)
        cols = _leaf_order(values.T, method, metric)
        data = data.iloc[rows, cols]
    values = data.to_numpy(dtype=float)
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=[str(c) for c in data.columns],
            y=[str(i) for i in data.index],
            colorscale="Viridis",
            colorbar=dict(title="mean |Δ|"),
            hovertemplate="latent %{y}<br>group %{x}<br>mean |Δ| = %{z:.4g}<extra></extra>",
        )
    )
    r, c = np.unravel_index(np.argmax(values), values.shape)
    order = f"rows and columns clustered ({method}, {metric})" if cluster else "input order"
    default = (
        f"Latent traversal contributions: {values.shape[0]} latent features × {values.shape[1]} feature groups"
        f"<br><sup>{order}; largest: {data.index[r]} → {data.columns[c]} ({values[r, c]:.3g})</sup>"
    )
    finish(
        fig,
        title=title or default,
        xlabel="feature group",
        ylabel="latent feature",
        height=max(400, min(1200, 16 * values.shape[0] + 200)),
    )
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category", tickangle=-45)
    return fig


# ----------------------------------------------------------------------------------------- LSA results
def _shuffled_values(column: pd.Series) -> np.ndarray:
    """All shuffled L2s of a results column holding lists / arrays (or their string form after a CSV trip)."""
    out = []
    for v in column:
        if isinstance(v, str):  # "[1.2, 1.3]" or "[np.float64(1.2), ...]" after a CSV round trip
            v = [float(t) for t in _NUMBER.findall(v.replace("np.float64", "").replace("np.float32", ""))]
        if v is None:
            continue
        arr = np.atleast_1d(np.asarray(v, dtype=float))
        out.append(arr[np.isfinite(arr)])
    return np.concatenate(out) if out else np.array([], dtype=float)


def l2_distributions(
    results, *, kind: Literal["violin", "histogram"] = "violin", normalise: bool = True, title: str | None = None
) -> go.Figure:
    """Per model, the L2 distances of the real LSA predictions against the pooled shuffled-label L2s.

    Parameters
    ----------
    results
        ``{model name: pk.tl.latent_arithmetic(...) DataFrame}`` (columns ``l2`` and ``l2_shuffled``), or one such
        DataFrame. Models whose table is empty (no eligible A|B group) are left out and named in the title.
    kind
        ``"violin"`` (one split violin per model: real on the left, shuffled on the right) or ``"histogram"``
        (overlaid densities, a real and a shuffled histogram per model on the shared normalised axis).
    normalise
        Zero-one normalise per model: (v − min) / (max − min) over that model's real and shuffled values together,
        so models with different L2 scales share one axis (the paper's figure). The title gives the raw means.
    title
        Overrides the default title.

    Returns
    -------
    A plotly figure.
    """
    if kind not in ("violin", "histogram"):
        raise PerturbkitInputError(f"kind must be 'violin' or 'histogram', got {kind!r}.")
    if isinstance(results, pd.DataFrame):
        results = {"model": results}
    if not isinstance(results, Mapping) or not results:
        raise PerturbkitInputError("l2_distributions needs a non-empty dict {model name: latent_arithmetic result}.")
    data, empty = {}, []
    for name, df in results.items():
        df = require_frame_columns(df, ["l2", "l2_shuffled"], what=f"l2_distributions ({name})") if len(df) else df
        if len(df) == 0:
            empty.append(str(name))
            continue
        real = df["l2"].to_numpy(dtype=float)
        real = real[np.isfinite(real)]
        shuffled = _shuffled_values(df["l2_shuffled"])
        if real.size == 0:
            empty.append(str(name))
            continue
        raw_mean = (float(real.mean()), float(shuffled.mean()) if shuffled.size else float("nan"))
        if normalise:
            both = np.concatenate([real, shuffled])
            low, span = float(both.min()), float(both.max() - both.min())
            real = (real - low) / span if span > 0 else np.zeros_like(real)
            shuffled = (shuffled - low) / span if span > 0 else np.zeros_like(shuffled)
        data[str(name)] = (real, shuffled, raw_mean)
    if not data:
        raise PerturbkitInputError(
            f"no model has an LSA result with finite L2s (empty: {empty}); no A|B group was "
            f"eligible for latent arithmetic."
        )
    colors = {"real": palette(2)[0], "shuffled": "rgba(150, 150, 150, 0.9)"}
    fig = go.Figure()
    what = "zero-one normalised L2" if normalise else "L2"
    for i, (name, (real, shuffled, _)) in enumerate(data.items()):
        for which, values, side in (("real", real, "negative"), ("shuffled", shuffled, "positive")):
            if values.size == 0:
                continue
            common = dict(name=which, legendgroup=which, showlegend=i == 0, marker_color=colors[which])
            if kind == "violin":
                fig.add_trace(
                    go.Violin(
                        x=[name] * values.size,
                        y=values,
                        side=side,
                        scalegroup=name,
                        points=False,
                        meanline_visible=True,
                        line_color=colors[which],
                        hoveron="violins",
                        **common,
                        hovertemplate=f"{name}, {which}<br>{what} %{{y:.3f}}<extra></extra>",
                    )
                )
            else:
                fig.add_trace(
                    go.Histogram(
                        x=values,
                        histnorm="probability density",
                        opacity=0.55,
                        nbinsx=30,
                        name=f"{name}, {which}",
                        legendgroup=f"{name}, {which}",
                        marker_color=palette(len(data))[i] if which == "real" else colors["shuffled"],
                        hovertemplate=f"{name}, {which}<br>{what} %{{x}}<br>density %{{y:.3f}}<extra></extra>",
                    )
                )
    summary = "; ".join(f"{n} {m[0]:.3g} ({m[1]:.3g})" for n, (_, _, m) in data.items())
    skipped = f"; no eligible A|B for {', '.join(empty)}" if empty else ""
    default = f"LSA L2 distance, real vs shuffled MOA labels<br><sup>mean L2 real (shuffled): {summary}{skipped}</sup>"
    if kind == "violin":
        finish(
            fig,
            title=title or default,
            xlabel="model",
            ylabel=what,
            violinmode="overlay",
            legend_title_text="MOA labels",
        )
    else:
        finish(fig, title=title or default, xlabel=what, ylabel="density", barmode="overlay")
    return fig


def _by_group(df: pd.DataFrame, on: str, value: str, what: str) -> pd.Series:
    if on not in df.columns and on == "group" and {"A", "B"} <= set(df.columns):
        df = df.assign(group=df["A"].astype(str) + "|" + df["B"].astype(str))
    df = require_frame_columns(df, [on, value], what=what)
    return (
        df.assign(**{value: pd.to_numeric(df[value], errors="coerce")})
        .groupby(df[on].astype(str), sort=False)[value]
        .mean()
    )


def zscore_scatter(
    a: pd.DataFrame,
    b: pd.DataFrame,
    *,
    labels=("L1000", "Cell Painting"),
    on: str = "group",
    value: str = "z",
    title: str | None = None,
) -> go.Figure:
    """Per-MOA-group LSA z-scores of two data types against each other (joined on ``group``).

    The plot shows the line y = x and has the Pearson correlation in its title.

    Parameters
    ----------
    a, b
        :func:`perturbkit.tl.latent_arithmetic` results of two data types (``group`` is rebuilt from ``A`` and
        ``B`` when absent). Only groups present with a finite value in both are shown; repeated groups are averaged.
    labels
        Names of the two data types (x axis, y axis).
    on, value
        The join column and the plotted column.
    title
        Overrides the default title.

    Returns
    -------
    A plotly figure.
    """
    la, lb = (str(v) for v in labels)
    za = _by_group(a, on, value, f"zscore_scatter ({la})")
    zb = _by_group(b, on, value, f"zscore_scatter ({lb})")
    joined = pd.concat({"a": za, "b": zb}, axis=1, join="inner").dropna()
    joined = joined[np.isfinite(joined["a"]) & np.isfinite(joined["b"])]
    if joined.empty:
        raise PerturbkitInputError(
            f"no {on!r} has a finite {value!r} in both {la} ({len(za)} groups) and {lb} ({len(zb)} groups)."
        )
    xa, yb = joined["a"].to_numpy(dtype=float), joined["b"].to_numpy(dtype=float)
    r = float(pearson_rows(xa, yb)[0]) if len(joined) > 2 else float("nan")  # NaN for zero variance
    low, high = float(min(xa.min(), yb.min())), float(max(xa.max(), yb.max()))
    pad = 0.05 * (high - low or 1.0)
    fig = go.Figure()
    identity_line(fig, low - pad, high + pad)
    fig.add_hline(y=0, line=dict(color="rgba(160,160,160,0.6)", width=1, dash="dot"))
    fig.add_vline(x=0, line=dict(color="rgba(160,160,160,0.6)", width=1, dash="dot"))
    fig.add_trace(
        go.Scatter(
            x=xa,
            y=yb,
            mode="markers",
            name="MOA groups",
            text=list(joined.index),
            marker=dict(color=palette(1)[0], size=8, opacity=0.85),
            hovertemplate=f"%{{text}}<br>{la} {value} %{{x:.3f}}<br>{lb} {value} %{{y:.3f}}<extra></extra>",
        )
    )
    both_neg = int(((xa < 0) & (yb < 0)).sum())
    r_text = f"r = {r:.3f}" if np.isfinite(r) else "r undefined"
    default = (
        f"LSA {value}-scores per MOA group: {lb} vs {la}, {r_text}<br><sup>{len(joined)} groups in both; "
        f"{both_neg} negative in both (better than shuffled labels)</sup>"
    )
    finish(fig, title=title or default, xlabel=f"{la} {value}-score", ylabel=f"{lb} {value}-score", showlegend=False)
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig
