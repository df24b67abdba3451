"""Figures for DeepCellState's evaluation and interpretation (see the DeepCellState methods page).

Each returns a ``go.Figure``. They only read results (cross-validation tables, predictions, embeddings); they never
train or change data.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .._schema import OBS_KEYS, PerturbkitInputError
from .._stats import pearson_rows
from ._utils import (
    GREY,
    SYMBOLS,
    categories,
    finish,
    hover_data,
    identity_line,
    is_categorical,
    label,
    mean_sd,
    palette,
    profile_of,
    repeat_column,
    require_frame_columns,
    short,
)

__all__ = [
    "pcc_scatter",
    "fold_change_distribution",
    "profile",
    "gene_scatter",
    "evaluation_curve",
    "ablation",
    "embedding",
    "latent_correlation",
    "gene_importance",
]


# ---------------------------------------------------------------------------------------------- evaluation
def pcc_scatter(
    cv: pd.DataFrame, *, x: str = "baseline_pcc", y: str = "pcc", color: str | None = "moa", title: str | None = None
) -> go.Figure:
    """Per-drug PCC of the model against the baseline, one point per drug, with the line y = x.

    Parameters
    ----------
    cv
        A cross-validation table: one row per test drug with columns such as ``fold``, ``drug``, ``moa``, ``pcc``,
        ``baseline_pcc``, ``ridge_pcc``.
    x, y
        The columns on the axes (e.g. ``x="ridge_pcc"`` to compare with the ridge map).
    color
        Column colouring the points (default ``moa``; ignored when absent; ``None`` for one colour).
    title
        Overrides the default title, which gives both means and how many drugs lie above the diagonal.

    Returns
    -------
    A plotly figure.

    Examples
    --------
    >>> cv = pk.tl.cross_validate_deepcellstate(adata, source="PC3", target="MCF7")
    >>> pk.pl.pcc_scatter(cv)
    """
    cv = require_frame_columns(cv, [x, y], what="pcc_scatter")
    if color is not None and color not in cv.columns:
        if color != "moa":
            raise PerturbkitInputError(f"no column {color!r} to colour by; the table has {list(cv.columns)}.")
        color = None
    data = cv[np.isfinite(cv[x].astype(float)) & np.isfinite(cv[y].astype(float))]
    if len(data) == 0:
        raise PerturbkitInputError(f"no row has finite values in both {x!r} and {y!r}.")
    mean_x, mean_y = float(data[x].mean()), float(data[y].mean())
    above = int((data[y] > data[x]).sum())
    fig = go.Figure()
    low = float(min(data[x].min(), data[y].min()))
    high = float(max(data[x].max(), data[y].max()))
    identity_line(fig, low, high)
    groups = (
        [(None, data)]
        if color is None
        else [(c, data[data[color].astype(str) == str(c)]) for c in categories(data[color].astype(str))]
    )
    colors = palette(len(groups))
    for (name, part), col in zip(groups, colors, strict=True):
        custom, lines = hover_data(part, ["drug", "moa", "fold"])
        fig.add_trace(
            go.Scatter(
                x=part[x].to_numpy(dtype=float),
                y=part[y].to_numpy(dtype=float),
                mode="markers",
                name="drugs" if name is None else str(name),
                customdata=custom,
                marker=dict(color=col, size=7, opacity=0.8),
                hovertemplate=f"{label(x)}: %{{x:.3f}}<br>{label(y)}: %{{y:.3f}}{lines}<extra></extra>",
            )
        )
    default = (
        f"Per-drug PCC: {short(y)} {mean_y:.3f} vs {short(x)} {mean_x:.3f}<br><sup>means over {len(data)} "
        f"drugs; {above} of them above the diagonal (better than the {short(x)})</sup>"
    )
    finish(
        fig, title=title or default, xlabel=label(x), ylabel=label(y), legend_title_text=label(color) if color else None
    )
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig


def fold_change_distribution(
    cv: pd.DataFrame,
    *,
    model: str = "pcc",
    baseline: str = "baseline_pcc",
    min_baseline: float = 0.05,
    nbins: int = 40,
    title: str | None = None,
) -> go.Figure:
    """Histogram of the per-drug fold increase ``model PCC / baseline PCC``.

    A ratio is only meaningful when the baseline PCC is clearly positive, so drugs whose baseline PCC is at most
    ``min_baseline`` are left out of the histogram (their number is given in the title). The dashed line marks the
    mean fold increase as the paper reports it — the mean model PCC over the mean baseline PCC, over all drugs
    (0.60 / 0.28 = 2.14 for MCF-7 from PC-3) — and the dotted line the median of the per-drug ratios shown; a grey
    line marks 1 (no gain).

    Parameters
    ----------
    cv
        A cross-validation table with one row per drug.
    model, baseline
        The columns compared.
    min_baseline
        Drugs with a baseline PCC at or below this are not shown.
    nbins
        Number of histogram bins.
    title
        Overrides the default title.

    Returns
    -------
    A plotly figure.
    """
    cv = require_frame_columns(cv, [model, baseline], what="fold_change_distribution")
    m = cv[model].to_numpy(dtype=float)
    b = cv[baseline].to_numpy(dtype=float)
    finite = np.isfinite(m) & np.isfinite(b)
    shown = finite & (b > min_baseline)
    if not shown.any():
        raise PerturbkitInputError(
            f"no drug has a baseline PCC above min_baseline={min_baseline}; lower it or use pcc_scatter to compare."
        )
    ratio = m[shown] / b[shown]
    mean_fold = float(m[finite].mean() / b[finite].mean())
    median_ratio = float(np.median(ratio))
    fig = go.Figure(
        go.Histogram(
            x=ratio,
            nbinsx=nbins,
            name="drugs",
            marker_color=palette(1)[0],
            opacity=0.85,
            hovertemplate="fold increase %{x}<br>%{y} drugs<extra></extra>",
        )
    )
    fig.add_vline(x=1.0, line=dict(color=GREY, width=1), annotation_text="no gain", annotation_position="top left")
    fig.add_vline(
        x=mean_fold,
        line=dict(color="crimson", dash="dash", width=2),
        annotation_text=f"mean {mean_fold:.2f}×",
        annotation_position="top right",
    )
    fig.add_vline(
        x=median_ratio,
        line=dict(color="black", dash="dot", width=1.5),
        annotation_text=f"median {median_ratio:.2f}×",
        annotation_position="bottom right",
    )
    left_out = int(finite.sum() - shown.sum())
    default = (
        f"Fold increase over the {short(baseline)}: mean {mean_fold:.2f}×<br><sup>mean PCC "
        f"{m[finite].mean():.3f} / {b[finite].mean():.3f}; median per drug {median_ratio:.2f}×; "
        f"{int(shown.sum())} drugs shown, {left_out} with baseline PCC ≤ {min_baseline:g} left out</sup>"
    )
    return finish(
        fig,
        title=title or default,
        xlabel=f"fold increase ({short(model)} PCC / {short(baseline)} PCC)",
        ylabel="drugs",
        showlegend=False,
        bargap=0.05,
    )


def _predicted_profile(predicted, drug, drug_key, cell_key) -> tuple[np.ndarray, pd.Index, dict]:
    """The drug's predicted profile, its genes (``gene_<i>`` when unnamed) and profile_of's info."""
    pred, genes, info = profile_of(predicted, drug, what="predicted", drug_key=drug_key, cell_key=cell_key)
    if genes is None:
        genes = pd.Index([f"gene_{i}" for i in range(len(pred))])
    return pred, genes, info


def _profile_frame(predicted, drug, measured, inputs, drug_key, cell_key) -> pd.DataFrame:
    """Rows: input profile(s), predicted, measured (those given); columns: genes."""
    pred, genes, info = _predicted_profile(predicted, drug, drug_key, cell_key)
    position = info.get("position")
    rows = {}
    if inputs is not None:
        rows.update(_input_rows(inputs, drug, genes, position, drug_key, cell_key, info.get("sources")))
    target = info.get("target")
    rows[f"predicted ({target})" if target else "predicted"] = pred
    if measured is not None:
        values, _, m_info = profile_of(
            measured, drug, what="measured", genes=genes, position=position, drug_key=drug_key, cell_key=cell_key
        )
        cell = m_info.get("cell_line") or target
        rows[f"measured ({cell})" if cell else "measured"] = values
    return pd.DataFrame(rows, index=genes).T


def _input_rows(inputs, drug, genes, position, drug_key, cell_key, sources) -> dict:
    """One row per source cell line when ``inputs`` is an AnnData holding several, else one ``input`` row."""
    if hasattr(inputs, "obs") and cell_key in inputs.obs and drug_key in inputs.obs:
        hit = inputs.obs[drug_key].astype(str).to_numpy() == str(drug)
        cells = pd.unique(inputs.obs[cell_key].astype(str)[hit])
        if len(cells) > 1:
            out = {}
            for cell in cells:
                sub = inputs[hit & (inputs.obs[cell_key].astype(str).to_numpy() == cell)]
                out[f"input ({cell})"] = profile_of(
                    sub, drug, what="input", genes=genes, drug_key=drug_key, cell_key=cell_key
                )[0]
            return out
    values, _, info = profile_of(
        inputs, drug, what="input", genes=genes, position=position, drug_key=drug_key, cell_key=cell_key
    )
    cell = info.get("cell_line") or sources
    return {f"input ({cell})" if cell else "input": values}


def profile(
    predicted,
    *,
    drug,
    measured=None,
    inputs=None,
    kind: Literal["bars", "heatmap"] = "bars",
    genes=None,
    n_genes: int = 50,
    drug_key: str = OBS_KEYS.drug_key,
    cell_key: str = OBS_KEYS.cell_key,
    title: str | None = None,
) -> go.Figure:
    """One drug's input, predicted and measured profiles, as grouped bars or as a heatmap.

    Parameters
    ----------
    predicted
        Predictions (an AnnData from ``model.predict`` with one row per drug, a DataFrame indexed by drug, or the
        drug's 1-D profile).
    drug
        The drug to show.
    measured, inputs
        The drug's measured profile in the target cell line and its input profile(s), in the same forms (an AnnData
        of raw rows is fine: the drug's rows are averaged; an ``inputs`` AnnData with several cell lines gives one
        row per cell line).
    kind
        ``"bars"`` (grouped bars per gene) or ``"heatmap"`` (profiles × genes).
    genes
        The genes to show; default the ``n_genes`` with the largest ``|measured|`` (``|predicted|`` without a
        measured profile), ordered by that profile's value.
    n_genes
        How many genes to show when ``genes`` is not given.
    drug_key, cell_key
        obs columns of the drug and the cell line in AnnData inputs.
    title
        Overrides the default title.

    Returns
    -------
    A plotly figure.

    Examples
    --------
    >>> pred = model.predict(test, target="MCF7", sources=["PC3"])
    >>> pk.pl.profile(pred, drug="vorinostat", measured=test[test.obs.cell_line == "MCF7"], kind="heatmap")
    """
    if kind not in ("bars", "heatmap"):
        raise PerturbkitInputError(f"kind must be 'bars' or 'heatmap', got {kind!r}.")
    frame = _profile_frame(predicted, drug, measured, inputs, drug_key, cell_key)
    predicted_row = next(r for r in frame.index if r.startswith("predicted"))
    ranking_row = frame.index[-1] if measured is not None else predicted_row
    pcc_text = ""
    if measured is not None:
        pcc = float(pearson_rows(frame.loc[predicted_row], frame.loc[ranking_row])[0])
        pcc_text = f": PCC predicted vs measured {pcc:.3f} ({frame.shape[1]} genes)"
    if genes is not None:
        chosen = pd.Index([str(g) for g in np.atleast_1d(genes)])
        missing = chosen.difference(frame.columns)
        if len(missing):
            raise PerturbkitInputError(
                f"genes {list(missing[:5])} are not in the profiles; they have e.g. {list(frame.columns[:8])}."
            )
        which = f"{len(chosen)} genes asked for"
    else:
        ranking = frame.loc[ranking_row]
        chosen = ranking.abs().sort_values(ascending=False, kind="stable").index[:n_genes]
        chosen = ranking[chosen].sort_values(ascending=False, kind="stable").index
        which = f"{len(chosen)} genes with the largest |{ranking_row.split(' ')[0]}|"
    shown = frame[chosen]
    fig = go.Figure()
    if kind == "bars":
        for name, col in zip(shown.index, palette(len(shown)), strict=True):
            fig.add_trace(
                go.Bar(
                    x=list(shown.columns),
                    y=shown.loc[name].to_numpy(),
                    name=name,
                    marker_color=col,
                    hovertemplate=f"{name}<br>%{{x}}: %{{y:.3f}}<extra></extra>",
                )
            )
        fig.update_layout(barmode="group", bargap=0.2)
        xlabel, ylabel = "gene", "value (the data's units)"
    else:
        limit = float(np.nanmax(np.abs(shown.to_numpy()))) or 1.0
        fig.add_trace(
            go.Heatmap(
                z=shown.to_numpy(),
                x=list(shown.columns),
                y=list(shown.index),
                colorscale="RdBu_r",
                zmid=0,
                zmin=-limit,
                zmax=limit,
                colorbar=dict(title="value"),
                hovertemplate="%{y}<br>%{x}: %{z:.3f}<extra></extra>",
            )
        )
        fig.update_yaxes(autorange="reversed")
        xlabel, ylabel = "gene", None
    default = f"{drug}{pcc_text or ': profiles'}<br><sup>showing the {which}</sup>"
    return finish(fig, title=title or default, xlabel=xlabel, ylabel=ylabel)


def gene_scatter(
    predicted,
    measured,
    *,
    drug,
    drug_key: str = OBS_KEYS.drug_key,
    cell_key: str = OBS_KEYS.cell_key,
    title: str | None = None,
) -> go.Figure:
    """Predicted against measured value of every gene for one drug, with y = x and the PCC in the title.

    Parameters
    ----------
    predicted
        An AnnData with one row per drug (``obs_names`` or ``obs[drug_key]``), a DataFrame indexed by drug, or the
        drug's 1-D profile.
    measured
        The same forms, or a 2-D array whose rows follow ``predicted``'s rows.
    drug
        The drug to show.
    drug_key, cell_key
        obs columns of the drug and the cell line in AnnData inputs.
    title
        Overrides the default title.

    Returns
    -------
    A plotly figure.
    """
    pred, genes, info = _predicted_profile(predicted, drug, drug_key, cell_key)
    meas, _, m_info = profile_of(
        measured,
        drug,
        what="measured",
        genes=genes,
        position=info.get("position"),
        drug_key=drug_key,
        cell_key=cell_key,
    )
    pcc = float(pearson_rows(pred, meas)[0])
    low, high = float(min(pred.min(), meas.min())), float(max(pred.max(), meas.max()))
    fig = go.Figure()
    identity_line(fig, low, high)
    fig.add_trace(
        go.Scatter(
            x=meas,
            y=pred,
            mode="markers",
            name="genes",
            text=list(genes),
            marker=dict(color=palette(1)[0], size=6, opacity=0.75),
            hovertemplate="%{text}<br>measured %{x:.3f}<br>predicted %{y:.3f}<extra></extra>",
        )
    )
    cell = m_info.get("cell_line") or info.get("target")
    where = f" in {cell}" if cell else ""
    source = f" from {info['sources']}" if info.get("sources") else ""
    default = f"{drug}: predicted vs measured, PCC {pcc:.3f}<br><sup>{len(genes)} genes{where}{source}</sup>"
    finish(fig, title=title or default, xlabel="measured", ylabel="predicted", showlegend=False)
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig


def evaluation_curve(
    df: pd.DataFrame,
    *,
    x: str,
    y: str = "pcc",
    baseline: str | None = "baseline_pcc",
    repeat: Literal["auto"] | str | None = "auto",
    log_x: bool | None = None,
    title: str | None = None,
) -> go.Figure:
    """Mean ± sd of the PCC against a numeric setting.

    The training-size curve (``x="fraction"``) or the latent-size sweep (``x="latent_dim"``).

    Parameters
    ----------
    df
        One row per drug (or per run) with columns ``x``, ``y`` and optionally ``baseline``.
    x, y, baseline
        The setting, the model's score, and the baseline's score (``None`` or absent: not drawn).
    repeat
        Column numbering repeated runs. With it, ``y`` is first averaged within each run and the error bars are the
        sd of the run means; without it, the sd over rows. ``"auto"`` uses ``repeat``, ``seed`` or ``run`` if
        present.
    log_x
        Logarithmic x axis; default only for ``latent_dim``.
    title
        Overrides the default title.

    Returns
    -------
    A plotly figure.

    Examples
    --------
    >>> curve = pk.experiments.deepcellstate_training_size_curve(adata, source="PC3", target="MCF7")
    >>> pk.pl.evaluation_curve(curve, x="fraction")
    """
    df = require_frame_columns(df, [x, y], what="evaluation_curve")
    values = [y] + ([baseline] if baseline is not None and baseline in df.columns else [])
    rep = repeat_column(df, repeat)
    stats = mean_sd(df, x, values, rep).sort_index()
    xs = stats.index.to_numpy()
    fig = go.Figure()
    styles = {y: dict(color=palette(1)[0], width=2), baseline: dict(color=GREY, dash="dash", width=1.5)}
    for v in values:
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=stats[("mean", v)].to_numpy(),
                mode="lines+markers",
                name=label(v),
                line=styles[v],
                error_y=dict(type="data", array=stats[("sd", v)].to_numpy(), visible=True),
                customdata=stats[("n", v)].to_numpy(),
                hovertemplate=f"{label(x)} %{{x}}<br>{label(v)} %{{y:.3f}} ± %{{error_y.array:.3f}}"
                f"<br>n = %{{customdata}}<extra></extra>",
            )
        )
    n_rep = df[rep].nunique() if rep else 0
    spread = f"mean ± sd over {n_rep} repeats" if n_rep > 1 else "one run" if rep else "mean ± sd over rows"
    finish(fig, title=title or f"{label(y)} by {label(x)} ({spread})", xlabel=label(x), ylabel="PCC")
    if log_x if log_x is not None else x == "latent_dim":
        fig.update_xaxes(type="log", tickvals=list(xs), ticktext=[f"{v:g}" for v in xs])
    return fig


def ablation(
    df: pd.DataFrame,
    *,
    x: str = "variant",
    y: str = "pcc",
    baseline: str | None = "baseline_pcc",
    repeat: Literal["auto"] | str | None = "auto",
    order=None,
    title: str | None = None,
) -> go.Figure:
    """Bars of the mean PCC (± sd) per variant, beside the baseline's.

    Used for the ablation (``x="variant"``: full model, no dropout / L1 / skip, ...) and for the "70% fewer
    profiles" experiment (``x="removed"``).

    Parameters
    ----------
    df
        One row per condition (and repeat), e.g. from :func:`perturbkit.experiments.deepcellstate_ablation`.
    x, y, baseline
        The condition column, the model's score, and the baseline's score (``None`` or absent: not drawn).
    repeat
        Column numbering repeated runs, as in :func:`evaluation_curve`.
    order
        The order of the bars (default: first appearance).
    title
        Overrides the default title.

    Returns
    -------
    A plotly figure.

    Examples
    --------
    >>> pk.pl.ablation(pk.experiments.deepcellstate_ablation(adata, source="PC3", target="MCF7"))
    """
    df = require_frame_columns(df, [x, y], what="ablation")
    values = [y] + ([baseline] if baseline is not None and baseline in df.columns else [])
    data = df.assign(**{x: df[x].astype(str)})
    stats = mean_sd(data, x, values, repeat_column(df, repeat))
    names = list(stats.index) if order is None else [str(o) for o in order]
    missing = [n for n in names if n not in stats.index]
    if missing:
        raise PerturbkitInputError(f"order names {missing}, which are not in column {x!r} ({list(stats.index)}).")
    stats = stats.loc[names]
    fig = go.Figure()
    colors = {y: palette(1)[0], baseline: "rgba(150, 150, 150, 0.8)"}
    for v in values:
        means = stats[("mean", v)].to_numpy()
        fig.add_trace(
            go.Bar(
                x=names,
                y=means,
                name=label(v),
                marker_color=colors[v],
                text=[f"{m:.3f}" for m in means],
                textposition="outside",
                error_y=dict(type="data", array=stats[("sd", v)].to_numpy(), visible=True),
                customdata=stats[("n", v)].to_numpy(),
                hovertemplate=f"%{{x}}<br>{label(v)} %{{y:.3f}} ± %{{error_y.array:.3f}}<br>n = %{{customdata}}"
                f"<extra></extra>",
            )
        )
    summary = ", ".join(f"{n} {m:.3f}" for n, m in zip(names[:8], stats[("mean", y)], strict=False))
    more = ", …" if len(names) > 8 else ""
    finish(
        fig,
        title=title or f"Mean {label(y)} by {label(x)}<br><sup>{summary}{more}</sup>",
        xlabel=label(x),
        ylabel="mean PCC (± sd)",
        barmode="group",
    )
    return fig


# ------------------------------------------------------------------------------------------ interpretation
_BASIS_NAMES = {"X_umap": "UMAP", "X_tsne": "t-SNE", "X_pca": "PC", "X_draw_graph_fa": "FA"}


def embedding(
    emb,
    *,
    basis: Literal["X_umap", "X_tsne", "X_pca", "X_input", "X"] | str = "X_umap",
    color: str | None = "cell_line",
    symbol: str | None = None,
    connect_pairs: bool = False,
    components=(0, 1),
    drug_key: str | None = None,
    marker_size: float = 7,
    title: str | None = None,
) -> go.Figure:
    """2-D scatter of an embedding of profiles, e.g. from :func:`perturbkit.tl.latent_embeddings`.

    Parameters
    ----------
    emb
        AnnData whose ``obsm[basis]`` holds the coordinates (computed beforehand; nothing is computed here).
    basis
        An ``obsm`` key (``"X_umap"``, ``"X_tsne"``, ``"X_pca"``, ``"X_input"``, …; ``"umap"`` means ``"X_umap"``)
        or ``"X"``.
    color, symbol
        obs columns for the colour (categorical or numeric) and the marker symbol (categorical).
    connect_pairs
        Draw a faint line between the points of the same drug (e.g. one drug from two cell lines).
    components
        Which two columns of the basis to plot.
    drug_key
        The drug column (default: recorded by ``latent_embeddings``, else ``drug``).
    marker_size
        Marker size in pixels.
    title
        Overrides the default title.

    Returns
    -------
    A plotly figure.

    Examples
    --------
    >>> emb = pk.tl.latent_embeddings(adata, model=model)
    >>> pk.tl.embed(emb, use_rep="X")
    >>> pk.pl.embedding(emb, color="cell_line", connect_pairs=True)
    """
    coords, basis_key = _basis(emb, basis)
    cx, cy = components
    if coords.shape[1] <= max(cx, cy):
        raise PerturbkitInputError(
            f"{basis_key} has {coords.shape[1]} columns; components={components} is out of range."
        )
    xy = coords[:, [cx, cy]].astype(float)
    stored = emb.uns.get("latent_embeddings", {}) if hasattr(emb, "uns") else {}
    drug_key = drug_key or stored.get("drug_key", "drug")
    cell_key = stored.get("cell_key", "cell_line")
    moa_key = stored.get("moa_key") or "moa"
    obs = emb.obs
    for name, key in (("color", color), ("symbol", symbol)):
        if key is not None and key not in obs:
            raise PerturbkitInputError(f"{name}={key!r} is not a column of emb.obs; it has {list(obs.columns)}.")
    fig = go.Figure()
    if connect_pairs:
        if drug_key not in obs:
            raise PerturbkitInputError(f"connect_pairs needs the drug column {drug_key!r} in emb.obs; pass drug_key=.")
        lx, ly = _pair_segments(obs[drug_key].astype(str).to_numpy(), xy)
        fig.add_trace(
            go.Scatter(
                x=lx,
                y=ly,
                mode="lines",
                name="same drug",
                hoverinfo="skip",
                line=dict(color="rgba(120, 120, 120, 0.3)", width=1),
            )
        )
    custom, lines = hover_data(obs, [drug_key, cell_key, moa_key, color, symbol])
    template = f"{lines[4:]}<extra></extra>" if lines else "%{x:.2f}, %{y:.2f}<extra></extra>"
    numeric_color = color is not None and not is_categorical(obs[color])
    color_groups = [None] if color is None or numeric_color else categories(obs[color])
    symbol_groups = [None] if symbol is None else categories(obs[symbol])
    colors = dict(zip(color_groups, palette(len(color_groups)), strict=True))
    symbols = {s: SYMBOLS[i % len(SYMBOLS)] for i, s in enumerate(symbol_groups)}
    color_labels = None if color is None or numeric_color else obs[color].astype(str).to_numpy()
    color_values = obs[color].to_numpy(dtype=float) if numeric_color else None
    symbol_labels = None if symbol is None else obs[symbol].astype(str).to_numpy()
    for c in color_groups:
        color_mask = np.ones(len(obs), dtype=bool) if c is None else color_labels == str(c)
        for s in symbol_groups:
            mask = color_mask if s is None else color_mask & (symbol_labels == str(s))
            if not mask.any():
                continue
            marker = dict(size=marker_size, opacity=0.85, symbol=symbols[s], line=dict(width=0))
            if numeric_color:
                marker.update(
                    color=color_values[mask], colorscale="Viridis", showscale=True, colorbar=dict(title=label(color))
                )
            elif c is not None:
                marker["color"] = colors[c]
            name = ", ".join(str(v) for v in (c, s) if v is not None) or "profiles"
            fig.add_trace(
                go.Scatter(
                    x=xy[mask, 0],
                    y=xy[mask, 1],
                    mode="markers",
                    name=name,
                    marker=marker,
                    customdata=None if custom is None else custom[mask],
                    hovertemplate=template,
                )
            )
    axis = _BASIS_NAMES.get(basis_key, basis_key)
    n_drugs = obs[drug_key].nunique() if drug_key in obs else None
    default = f"{axis} of {len(obs)} profiles" + (f" ({n_drugs} drugs)" if n_drugs else "")
    if color is not None:
        default += f", coloured by {label(color)}"
    finish(
        fig,
        title=title or default,
        xlabel=f"{axis} {cx + 1}",
        ylabel=f"{axis} {cy + 1}",
        legend_title_text=label(color) if color and not numeric_color else None,
    )
    return fig


def _basis(emb, basis: str) -> tuple[np.ndarray, str]:
    if basis == "X":
        X = emb.X
        return np.asarray(X.toarray() if hasattr(X, "toarray") else X), "X"
    for key in (basis, f"X_{basis}"):
        if key in emb.obsm:
            return np.asarray(emb.obsm[key]), key
    raise PerturbkitInputError(
        f"emb.obsm has no {basis!r} (it has {list(emb.obsm.keys())}). Compute the embedding first, e.g. "
        f"sc.pp.neighbors(emb, use_rep='X'); sc.tl.umap(emb) for 'X_umap', sc.tl.tsne(emb, use_rep='X') for "
        f"'X_tsne', sc.pp.pca(emb) for 'X_pca' (use_rep='X_input' for the input space), or pk.tl.embed(emb); then "
        f"pass basis='X_umap'."
    )


def _pair_segments(drugs: np.ndarray, xy: np.ndarray) -> tuple[list, list]:
    """Polyline through each drug's points, drugs separated by None (one trace draws them all)."""
    xs: list = []
    ys: list = []
    order = np.argsort(drugs, kind="stable")
    bounds = np.flatnonzero(drugs[order][1:] != drugs[order][:-1]) + 1
    for group in np.split(order, bounds):
        if len(group) > 1:
            xs += [*xy[group, 0].tolist(), None]
            ys += [*xy[group, 1].tolist(), None]
    return xs, ys


def latent_correlation(corr: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """Heatmap of a drug × drug latent correlation matrix (from :func:`perturbkit.tl.latent_correlation`).

    Rows are drugs encoded from the first cell line, columns from the second; a strong diagonal means each drug
    lands at the same place in latent space from either cell line.

    Parameters
    ----------
    corr
        A square drug × drug DataFrame (its index and column names name the cell lines).
    title
        Overrides the default title.

    Returns
    -------
    A plotly figure.
    """
    if not isinstance(corr, pd.DataFrame) or corr.shape[0] != corr.shape[1] or corr.shape[0] == 0:
        raise PerturbkitInputError("latent_correlation needs a square, non-empty drug × drug DataFrame.")
    a = corr.index.name or "cell line A"
    b = corr.columns.name or "cell line B"
    values = corr.to_numpy(dtype=float)
    if "mean_diagonal" in corr.attrs and "mean_off_diagonal" in corr.attrs:
        diag, off = corr.attrs["mean_diagonal"], corr.attrs["mean_off_diagonal"]
    else:
        diag = float(np.nanmean(np.diag(values)))
        off = float(np.nanmean(values[~np.eye(len(values), dtype=bool)])) if len(values) > 1 else float("nan")
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=[str(c) for c in corr.columns],
            y=[str(i) for i in corr.index],
            colorscale="RdBu_r",
            zmid=0,
            zmin=-1,
            zmax=1,
            colorbar=dict(title="r"),
            hovertemplate=f"{a}: %{{y}}<br>{b}: %{{x}}<br>r = %{{z:.3f}}<extra></extra>",
        )
    )
    default = (
        f"Latent correlation, {a} × {b}<br><sup>{len(values)} drugs; mean diagonal {diag:.3f}, "
        f"off-diagonal {off:.3f}</sup>"
    )
    finish(fig, title=title or default, xlabel=f"drug (latent code from {b})", ylabel=f"drug (latent code from {a})")
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(showticklabels=len(values) <= 60)
    fig.update_yaxes(showticklabels=len(values) <= 60)
    return fig


def gene_importance(df: pd.DataFrame, *, n: int = 30, value: str = "frequency", title: str | None = None) -> go.Figure:
    """Horizontal bars of the ``n`` most important genes (from :func:`perturbkit.tl.gene_importance`).

    The most frequent gene is at the top; a dotted line marks the frequency a gene of no importance would have.

    Parameters
    ----------
    df
        One row per gene with columns ``gene`` and ``value`` (and ``count``).
    n
        How many genes.
    value
        The column drawn.
    title
        Overrides the default title.

    Returns
    -------
    A plotly figure.
    """
    df = require_frame_columns(df, ["gene", value], what="gene_importance")
    top = df.sort_values(value, ascending=False, kind="stable").head(int(n))
    counts = top["count"].to_numpy() if "count" in top else np.full(len(top), np.nan)
    fig = go.Figure(
        go.Bar(
            x=top[value].to_numpy(dtype=float),
            y=top["gene"].astype(str).tolist(),
            orientation="h",
            marker_color=palette(1)[0],
            customdata=counts,
            hovertemplate=f"%{{y}}<br>{label(value)} %{{x:.3f}}<br>count %{{customdata}}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", type="category")
    chance = df.attrs.get("expected_frequency")
    if chance is not None and value == "frequency":
        fig.add_vline(
            x=float(chance),
            line=dict(color=GREY, dash="dot"),
            annotation_text="chance",
            annotation_position="bottom right",
        )
    attrs = df.attrs
    what = (
        f" for predicting {attrs['target']} from {attrs['source']}" if "target" in attrs and "source" in attrs else ""
    )
    extra = f" ({attrs['n_profiles']} profiles)" if "n_profiles" in attrs else ""
    finish(
        fig,
        title=title or f"Top {len(top)} genes{what}{extra}",
        xlabel=label(value),
        ylabel="gene",
        height=max(300, 18 * len(top) + 120),
    )
    return fig
