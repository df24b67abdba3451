"""Helpers shared by the plotting functions: column checks, labels, colours, profile look-up."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from .._schema import OBS_KEYS, PerturbkitInputError, UnknownCategoryError

TEMPLATE = "plotly_white"

#: Colour of reference lines (y = x, no gain, chance) and of baselines.
GREY = "rgba(110, 110, 110, 0.9)"

LABELS = {
    "pcc": "DeepCellState PCC",
    "baseline_pcc": "baseline PCC (input profile)",
    "ridge_pcc": "ridge PCC",
    "fraction": "fraction of training data",
    "latent_dim": "latent size",
    "variant": "variant",
    "removed": "profiles removed",
    "moa": "MOA",
    "cell_line": "cell line",
    "drug": "drug",
    "fold": "fold",
}

SHORT = {"pcc": "model", "baseline_pcc": "baseline", "ridge_pcc": "ridge"}

SYMBOLS = [
    "circle",
    "square",
    "diamond",
    "cross",
    "x",
    "triangle-up",
    "triangle-down",
    "star",
    "pentagon",
    "hexagon",
    "triangle-left",
    "triangle-right",
    "hourglass",
    "bowtie",
]


def label(name) -> str:
    """A readable axis label for a column name."""
    return LABELS.get(str(name), str(name).replace("_", " "))


def short(name) -> str:
    """A short name for a score column, for titles (``pcc`` → model, ``baseline_pcc`` → baseline)."""
    return SHORT.get(str(name), str(name).replace("_", " "))


def palette(n: int) -> list[str]:
    """``n`` qualitative colours (cycling when there are more categories than colours)."""
    colors = qualitative.Plotly if n <= 10 else qualitative.Dark24 if n <= 24 else qualitative.Alphabet
    return [colors[i % len(colors)] for i in range(n)]


def require_frame_columns(df, columns, *, what: str) -> pd.DataFrame:
    """``df`` as a DataFrame; raise naming the missing columns and those available."""
    if not isinstance(df, pd.DataFrame):
        raise PerturbkitInputError(f"{what} needs a pandas DataFrame, got {type(df).__name__}.")
    missing = [c for c in columns if c is not None and c not in df.columns]
    if missing:
        raise PerturbkitInputError(f"{what} needs the column(s) {missing}; the DataFrame has {list(df.columns)}.")
    if len(df) == 0:
        raise PerturbkitInputError(f"{what} got an empty DataFrame.")
    return df


def finish(fig: go.Figure, *, title: str, xlabel: str | None = None, ylabel: str | None = None, **layout) -> go.Figure:
    """Apply the shared look: template, title, axis labels."""
    fig.update_layout(template=TEMPLATE, title=dict(text=title, x=0.01, xanchor="left"), **layout)
    if xlabel is not None:
        fig.update_xaxes(title_text=xlabel)
    if ylabel is not None:
        fig.update_yaxes(title_text=ylabel)
    return fig


def identity_line(fig: go.Figure, low: float, high: float) -> go.Figure:
    """Add the dashed grey reference line y = x from ``low`` to ``high`` (no hover) to ``fig``."""
    return fig.add_trace(
        go.Scatter(
            x=[low, high],
            y=[low, high],
            mode="lines",
            name="y = x",
            hoverinfo="skip",
            line=dict(color=GREY, dash="dash", width=1),
        )
    )


def is_categorical(values: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values))


def categories(values: pd.Series) -> list:
    """Categories in their categorical order, else in order of first appearance."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return [c for c in values.cat.categories if (values == c).any()]
    return list(pd.unique(values.astype(str)))


def repeat_column(df: pd.DataFrame, repeat) -> str | None:
    """The column that numbers repeated runs (``"auto"``: the first of repeat, seed, run present)."""
    if repeat == "auto":
        return next((c for c in ("repeat", "seed", "run") if c in df.columns), None)
    if repeat is not None and repeat not in df.columns:
        raise PerturbkitInputError(f"no column {repeat!r} numbering the repeats; the DataFrame has {list(df.columns)}.")
    return repeat


def mean_sd(df: pd.DataFrame, by: str, values: list[str], repeat: str | None) -> pd.DataFrame:
    """Mean, sd and count of ``values`` per ``by``; with ``repeat``, over the per-repeat means (rows: ``by``)."""
    data = df[[by, *values] + ([repeat] if repeat else [])]
    if repeat:
        data = data.groupby([by, repeat], sort=False, observed=True)[values].mean().reset_index()
    grouped = data.groupby(by, sort=False, observed=True)[values]
    out = pd.concat({"mean": grouped.mean(), "sd": grouped.std(ddof=1).fillna(0.0), "n": grouped.count()}, axis=1)
    return out


# ------------------------------------------------------------------------------------------- profile look-up
def profile_of(
    obj,
    drug,
    *,
    what: str,
    genes: pd.Index | None = None,
    position: int | None = None,
    drug_key: str = OBS_KEYS.drug_key,
    cell_key: str = OBS_KEYS.cell_key,
) -> tuple[np.ndarray, pd.Index | None, dict]:
    """One drug's profile from an AnnData / DataFrame / Series / array; returns (values, genes or None, info).

    AnnData rows are found by ``obs_names`` first, then by ``obs[drug_key]``; several rows of one drug (doses,
    times) are averaged, but rows from several cell lines are refused. A DataFrame is looked up by its index. A
    1-D array or Series is the profile itself; a 2-D array is read at row ``position`` (the drug's row in the
    predictions). With ``genes``, the profile is reordered to those genes. For an AnnData or DataFrame,
    ``info["position"]`` is the first matching row (to read a parallel 2-D array of another profile set).
    """
    info: dict = {}
    names = None
    if hasattr(obj, "obs") and hasattr(obj, "var_names"):  # AnnData
        names = pd.Index(obj.var_names.astype(str))
        rows = np.flatnonzero(obj.obs_names.astype(str) == str(drug))
        if len(rows) == 0 and drug_key in obj.obs:
            rows = np.flatnonzero(obj.obs[drug_key].astype(str).to_numpy() == str(drug))
        if len(rows) == 0:
            known = pd.unique(obj.obs[drug_key].astype(str)) if drug_key in obj.obs else obj.obs_names
            raise UnknownCategoryError(
                f"drug {drug!r} is not in the {what} profiles; they have e.g. {list(known[:8])} ({len(known)} in all)."
            )
        if cell_key in obj.obs:
            cells = pd.unique(obj.obs[cell_key].iloc[rows].astype(str))
            if len(cells) > 1:
                raise PerturbkitInputError(
                    f"the {what} profiles hold {drug!r} in several cell lines {list(cells)}; pass one cell line, "
                    f"e.g. adata[adata.obs[{cell_key!r}] == {cells[0]!r}]."
                )
            info["cell_line"] = str(cells[0])
        X = obj.X[rows]
        X = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
        values = np.asarray(X, dtype=np.float64).mean(axis=0)
        info["n_rows"] = len(rows)
        info["position"] = int(rows[0])
        for key in ("sources", "target"):
            if key in obj.obs:
                info[key] = str(obj.obs[key].iloc[rows[0]])
    elif isinstance(obj, pd.DataFrame):
        if str(drug) not in obj.index.astype(str):
            raise UnknownCategoryError(
                f"drug {drug!r} is not in the index of the {what} profiles; it has e.g. {list(obj.index[:8])}."
            )
        hit = obj.index.astype(str) == str(drug)
        info["position"] = int(np.flatnonzero(hit)[0])
        values = obj.loc[hit].to_numpy(dtype=np.float64).mean(axis=0)
        names = pd.Index(obj.columns.astype(str))
    elif isinstance(obj, pd.Series):
        values, names = obj.to_numpy(dtype=np.float64), pd.Index(obj.index.astype(str))
    else:
        arr = np.asarray(obj, dtype=np.float64)
        if arr.ndim == 1:
            values = arr
        elif arr.ndim == 2:
            if position is None:
                raise PerturbkitInputError(
                    f"the {what} profiles are a 2-D array without drug names; pass an AnnData "
                    f"or DataFrame indexed by drug, or the drug's 1-D profile."
                )
            if position >= len(arr):
                raise PerturbkitInputError(f"the {what} array has {len(arr)} rows, fewer than the predictions.")
            values = arr[position]
        else:
            raise PerturbkitInputError(f"the {what} profiles must be 1-D or 2-D, got shape {arr.shape}.")
    if genes is not None:
        if names is not None:
            pos = names.get_indexer(genes)
            if (pos < 0).any():
                raise PerturbkitInputError(
                    f"the {what} profiles lack {int((pos < 0).sum())} of the genes, e.g. {list(genes[pos < 0][:5])}."
                )
            values, names = values[pos], genes
        elif len(values) != len(genes):
            raise PerturbkitInputError(f"the {what} profile has {len(values)} values but there are {len(genes)} genes.")
        else:
            names = genes
    return values, names, info


def hover_data(df: pd.DataFrame, columns) -> tuple[np.ndarray | None, str]:
    """Customdata and hovertemplate lines for the columns of ``df`` that exist."""
    present = [c for c in dict.fromkeys(columns) if c is not None and c in df.columns]
    if not present:
        return None, ""
    data = np.column_stack([df[c].astype(str).to_numpy() for c in present])
    lines = "".join(f"<br>{label(c)}: %{{customdata[{i}]}}" for i, c in enumerate(present))
    return data, lines


def source_scatter(
    frame: pd.DataFrame,
    *,
    color: str,
    marker_size: float,
    hover_columns,
    source_colors=None,
    source_symbols=None,
    axis_name: str = "UMAP",
    max_traces: int = 60,
) -> tuple[go.Figure, str]:
    """Scatter of ``frame.x`` / ``frame.y`` (point ``ids``: ``frame.index``) coloured by ``color``.

    Numeric ``color``: a colour scale; categorical: one trace per value, missing values as a grey "no …" trace.
    When ``color`` is not ``source``, a ``source`` column keeps its groups apart by marker symbol
    (``source_symbols``, or one shape per source in order). A categorical column with more than ``max_traces``
    values (e.g. hundreds of drugs) is drawn as one trace coloured by category code, without a legend (the value
    shows on hover). Returns the figure and a "count source, …" summary for the title.
    """
    custom, lines = hover_data(frame, hover_columns)
    template = f"{axis_name} %{{x:.2f}}, %{{y:.2f}}{lines}<extra></extra>"
    ids = frame.index.astype(str).to_numpy()
    source = frame["source"].astype(str) if "source" in frame.columns else None
    fig = go.Figure()
    categorical = is_categorical(frame[color])
    n_values = frame[color].nunique() if categorical else 0
    many = categorical and n_values > max_traces
    if many or not categorical:
        values = pd.factorize(frame[color].astype(str))[0] if many else frame[color].to_numpy(dtype=float)
        fig.add_trace(
            go.Scatter(
                x=frame["x"],
                y=frame["y"],
                mode="markers",
                customdata=custom,
                hovertemplate=template,
                name=f"{n_values} {label(color)} values" if many else "profiles",
                ids=ids,
                marker=dict(
                    size=marker_size,
                    color=values,
                    colorscale="Turbo" if many else "Viridis",
                    showscale=not many,
                    colorbar=None if many else dict(title=label(color)),
                    opacity=0.8,
                    line=dict(width=0),
                ),
            )
        )
    else:
        groups = categories(frame[color])
        colors = dict(zip(groups, palette(len(groups)), strict=True))
        if color == "source" and source_colors:
            colors.update({g: source_colors[g] for g in groups if g in source_colors})
        missing = frame[color].isna().to_numpy()
        if missing.any():  # e.g. simulated profiles have no drug or MOA
            groups = [g for g in groups if str(g) != "nan"] + [None]
            colors[None] = "rgba(170, 170, 170, 0.5)"
        symbol = None
        if color != "source" and source is not None:
            shapes = source_symbols or dict(
                zip(categories(source), ["circle", "diamond", "x", "square", "triangle-up"], strict=False)
            )
            symbol = source.map(shapes).fillna("circle").to_numpy()
        labels = frame[color].astype(str).to_numpy()
        present = ~missing
        x, y = frame["x"].to_numpy(), frame["y"].to_numpy()
        for g in groups:
            mask = missing if g is None else (labels == str(g)) & present
            if not mask.any():
                continue
            fig.add_trace(
                go.Scatter(
                    x=x[mask],
                    y=y[mask],
                    mode="markers",
                    ids=ids[mask],
                    name=f"{g if g is not None else 'no ' + label(color)} ({int(mask.sum())})",
                    customdata=None if custom is None else custom[mask],
                    hovertemplate=template,
                    marker=dict(
                        size=marker_size,
                        color=colors[g],
                        opacity=0.75,
                        line=dict(width=0),
                        symbol=None if symbol is None else symbol[mask],
                    ),
                )
            )
    counts = ""
    if source is not None:
        counts = ", ".join(f"{int((source == s).sum())} {s}" for s in categories(source))
    return fig, counts
