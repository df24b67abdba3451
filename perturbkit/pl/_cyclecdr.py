"""Figures for cycleCDR and its baselines (see the cycleCDR methods page).

Each returns a ``go.Figure`` and only reads results.

``results`` is what :func:`perturbkit.tl.evaluate_response` returns, for several models: a dict
``{model name: evaluate_response DataFrame}`` or one long DataFrame with a ``model`` column.
"""

from __future__ import annotations

from collections.abc import Mapping

import anndata as ad
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .._schema import PerturbkitInputError
from ._utils import (
    categories,
    finish,
    hover_data,
    label,
    mean_sd,
    palette,
    require_frame_columns,
    source_scatter,
)

__all__ = ["response_bars", "response_boxes", "prediction_umap"]

RESPONSE_LABELS = {
    "r2": "r² (all genes)",
    "r2_degs": "r² (DEGs)",
    "explained_variance": "explained variance (all genes)",
    "explained_variance_degs": "explained variance (DEGs)",
    "pearson": "Pearson (all genes)",
    "pearson_degs": "Pearson (DEGs)",
    "pearson_delta": "Pearson of deltas",
    "pearson_delta_degs": "Pearson of deltas (DEGs)",
    "squared_pearson": "R² of means (all genes)",
    "squared_pearson_degs": "R² of means (DEGs)",
}
_SOURCE_COLORS = {"measured": "rgba(120, 120, 120, 0.6)", "predicted": "#d62728"}


def _metric_label(name: str) -> str:
    return RESPONSE_LABELS.get(str(name), label(name))


def _long_results(results) -> pd.DataFrame:
    """One long DataFrame with a ``model`` column from a dict of per-model tables or a long table."""
    if isinstance(results, Mapping):
        if not results:
            raise PerturbkitInputError("got an empty dict of results; pass {model name: evaluate_response table}.")
        frames = []
        for name, table in results.items():
            if not isinstance(table, pd.DataFrame):
                raise PerturbkitInputError(
                    f"results[{name!r}] must be an evaluate_response DataFrame, got {type(table).__name__}."
                )
            frames.append(table.drop(columns="model", errors="ignore").assign(model=str(name)))
        return pd.concat(frames, ignore_index=True)
    if isinstance(results, pd.DataFrame):
        frame = results
        if "model" not in frame.columns and frame.index.name == "model":  # e.g. pk.experiments.cyclecdr_ablation
            frame = frame.reset_index()
        return require_frame_columns(frame, ["model"], what="the results")
    raise PerturbkitInputError(
        f"results must be a dict {{model name: evaluate_response DataFrame}} or a DataFrame "
        f"with a 'model' column; got {type(results).__name__}."
    )


def response_bars(
    results, *, metrics=("r2", "r2_degs", "explained_variance", "explained_variance_degs"), title: str | None = None
) -> go.Figure:
    """Grouped bars: the mean of each metric per model, ± sd across groups (all genes solid, DEGs hatched).

    Parameters
    ----------
    results
        ``{model name: evaluate_response DataFrame}`` or a long DataFrame with a ``model`` column (one row per
        group and model; a table with one row per model, such as :func:`perturbkit.experiments.cyclecdr_ablation`'s,
        gives bars without error bars).
    metrics
        The metric columns drawn, one bar colour each. Missing ones are skipped; at least one must be present.
    title
        Overrides the default title.

    Returns
    -------
    A plotly figure.

    Examples
    --------
    >>> pk.pl.response_bars({"cycleCDR": pk.tl.evaluate_response(pred, truth, groupby=["cell_line", "drug"])})
    """
    frame = _long_results(results)
    wanted = [metrics] if isinstance(metrics, str) else list(metrics)
    present = [m for m in wanted if m in frame.columns]
    if not present:
        raise PerturbkitInputError(f"none of the metrics {wanted} is in the results; they have {list(frame.columns)}.")
    data = frame[["model", *present]].copy()
    data[present] = data[present].apply(pd.to_numeric, errors="coerce")
    data["model"] = data["model"].astype(str)
    stats = mean_sd(data, "model", present, None)
    models = categories(frame["model"].astype(str))
    stats = stats.loc[models]
    fig = go.Figure()
    families = list(dict.fromkeys(m.removesuffix("_degs") for m in present))
    colors = dict(zip(families, palette(len(families)), strict=True))
    for metric in present:
        family = metric.removesuffix("_degs")
        mean = stats[("mean", metric)].to_numpy(dtype=float)
        sd = stats[("sd", metric)].to_numpy(dtype=float)
        n = stats[("n", metric)].to_numpy()
        fig.add_trace(
            go.Bar(
                x=models,
                y=mean,
                name=_metric_label(metric),
                error_y=dict(type="data", array=sd, visible=True),
                marker=dict(color=colors[family], pattern=dict(shape="/" if metric.endswith("_degs") else "")),
                customdata=np.column_stack([sd, n]),
                hovertemplate=(
                    f"%{{x}}<br>{_metric_label(metric)}: %{{y:.3f}} ± %{{customdata[0]:.3f}}"
                    f"<br>%{{customdata[1]}} groups<extra></extra>"
                ),
            )
        )
    best_metric = next((m for m in ("r2_degs", "r2") if m in present), present[0])
    best = stats[("mean", best_metric)].astype(float)
    summary = f"best {_metric_label(best_metric)}: {best.idxmax()} ({best.max():.3f})" if best.notna().any() else ""
    default = f"Predicted vs measured responses per model (mean ± sd over groups)<br><sup>{summary}</sup>"
    finish(fig, title=title or default, xlabel="model", ylabel="score", barmode="group", legend_title_text="metric")
    return fig


def response_boxes(
    results, *, metric: str = "r2_degs", by: str = "drug", n_top: int = 10, counts=None, title: str | None = None
) -> go.Figure:
    """Box plots of a per-group metric (default DEG r²) for the ``n_top`` drugs with the most samples, per model.

    Parameters
    ----------
    results
        ``{model name: evaluate_response DataFrame}`` or a long DataFrame with a ``model`` column; the tables
        need columns ``by`` and ``metric`` (one row per group, e.g. cell line × drug).
    metric
        The column drawn.
    by
        The column naming the drug (one box per drug and model: its groups, e.g. its cell lines).
    n_top
        How many drugs: those with the most samples, most first.
    counts
        Samples per drug (a Series indexed by drug). Default: the ``n_truth`` column (measured rows per group)
        summed per drug, taking each group once.
    title
        Overrides the default title.

    Returns
    -------
    A plotly figure.
    """
    frame = _long_results(results)
    require_frame_columns(frame, [by, metric], what="response_boxes")
    frame = frame.assign(**{by: frame[by].astype(str), "model": frame["model"].astype(str)})
    if counts is None:
        if "n_truth" not in frame.columns:
            raise PerturbkitInputError(
                "pass counts= (samples per drug) or results with an 'n_truth' column (pk.tl.evaluate_response adds it)."
            )
        keys = [
            c
            for c in frame.columns
            if c not in ("model", "n_truth", "n_pred") and not pd.api.types.is_float_dtype(frame[c])
        ]
        per_group = frame.drop_duplicates(subset=keys)
        counts = per_group.groupby(by, sort=False)["n_truth"].sum()
    elif not isinstance(counts, pd.Series):
        raise PerturbkitInputError(f"counts must be a pandas Series of samples per drug, got {type(counts).__name__}.")
    counts = counts.copy()
    counts.index = counts.index.astype(str)
    counts = counts[counts.index.isin(set(frame[by]))]
    if counts.empty:
        raise PerturbkitInputError(f"counts names none of the {label(by)}s in the results.")
    order = pd.Series(np.arange(len(counts)), index=counts.index)
    top = counts.to_frame("n").assign(o=order).sort_values(["n", "o"], ascending=[False, True]).index[: int(n_top)]
    top = list(top)
    models = categories(frame["model"])
    colors = dict(zip(models, palette(len(models)), strict=True))
    sub = frame[frame[by].isin(top)]
    rank = {d: i for i, d in enumerate(top)}
    fig = go.Figure()
    for model in models:
        part = sub[sub["model"] == model]
        part = part.iloc[np.argsort(part[by].map(rank).to_numpy(), kind="stable")]
        data, lines = hover_data(part, ["cell_line", "n_truth"])
        fig.add_trace(
            go.Box(
                x=part[by].to_numpy(),
                y=pd.to_numeric(part[metric], errors="coerce").to_numpy(dtype=float),
                name=model,
                marker_color=colors[model],
                boxpoints="all",
                jitter=0.3,
                pointpos=0,
                customdata=data,
                hovertemplate=f"%{{x}}<br>{_metric_label(metric)}: %{{y:.3f}}{lines}<extra>{model}</extra>",
            )
        )
    fig.update_xaxes(
        categoryorder="array", categoryarray=top, ticktext=[f"{d} ({int(counts[d])})" for d in top], tickvals=top
    )
    default = (
        f"{_metric_label(metric)} per {label(by)}, the {len(top)} {label(by)}s with the most samples"
        f"<br><sup>{len(models)} models; each box: the groups of one {label(by)}</sup>"
    )
    finish(
        fig,
        title=title or default,
        xlabel=f"{label(by)} (samples)",
        ylabel=_metric_label(metric),
        boxmode="group",
        legend_title_text="model",
    )
    return fig


def prediction_umap(
    embedding: ad.AnnData, *, color: str = "source", marker_size: float = 6, title: str | None = None
) -> go.Figure:
    """UMAP of predicted and measured profiles, coloured by source (predicted / measured), drug or cell line.

    Parameters
    ----------
    embedding
        The AnnData of :func:`perturbkit.tl.embed_predictions` (``obsm['X_umap']``, obs ``source``).
    color
        obs column colouring the points; when it is not ``source``, the sources keep apart by marker symbol
        (predicted: diamond, measured: circle).
    marker_size
        Marker size in pixels.
    title
        Overrides the default title.

    Returns
    -------
    A plotly figure.

    Examples
    --------
    >>> emb = pk.tl.embed_predictions(pred, truth, n_neighbors=10)
    >>> pk.pl.prediction_umap(emb, color="drug")
    """
    if not (hasattr(embedding, "obsm") and hasattr(embedding, "obs")):
        raise PerturbkitInputError(
            f"prediction_umap needs the AnnData of pk.tl.embed_predictions(pred, truth); got "
            f"{type(embedding).__name__}."
        )
    if "X_umap" not in embedding.obsm:
        raise PerturbkitInputError(
            f"embedding.obsm has no 'X_umap' (it has {list(embedding.obsm.keys())}); compute "
            f"it with pk.tl.embed_predictions."
        )
    coords = np.asarray(embedding.obsm["X_umap"], dtype=float)
    frame = embedding.obs.reset_index(drop=True).assign(
        name=embedding.obs_names.astype(str).to_numpy(), x=coords[:, 0], y=coords[:, 1]
    )
    if color not in frame.columns:
        raise PerturbkitInputError(
            f"no column {color!r} to colour by; the embedding has {list(embedding.obs.columns)}."
        )
    fig, counts = source_scatter(
        frame,
        color=color,
        marker_size=marker_size,
        source_colors=_SOURCE_COLORS,
        hover_columns=["source", "drug", "cell_line", "name", color],
        source_symbols={"predicted": "diamond", "measured": "circle"},
    )
    default = f"UMAP of predicted and measured profiles<br><sup>{counts or f'{len(frame)} points'}</sup>"
    finish(fig, title=title or default, xlabel="UMAP 1", ylabel="UMAP 2", legend_title_text=label(color))
    return fig
