"""Missing values (e.g. in mass-spectrometry proteomics): drop the features or samples that have them, or impute."""

from __future__ import annotations

from typing import Literal

import anndata as ad
import numpy as np
import scipy.sparse as sp

from .._schema import OBS_KEYS, PerturbkitInputError, modifiable, storable, stored_matrix
from ._normalize import sample_mask


def _matrix(adata, layer: str | None):
    X = stored_matrix(adata, layer)
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise PerturbkitInputError(f"adata is empty ({adata.n_obs} × {adata.n_vars}); load profiles into it first.")
    if hasattr(X, "to_memory"):  # sparse matrix of a backed AnnData
        X = X.to_memory()
    return X


def _missing_mask(X) -> np.ndarray | sp.csr_matrix:
    """Boolean mask of NaN/±inf entries (sparse for sparse X: implicit zeros are not missing)."""
    if sp.issparse(X):
        X = sp.csr_matrix(X)
        bad = ~np.isfinite(X.data)
        return sp.csr_matrix((bad, X.indices, X.indptr), shape=X.shape)
    X = np.asarray(X)
    return ~np.isfinite(X) if X.dtype.kind in "fc" else np.zeros(X.shape, dtype=bool)


def drop_missing(
    adata,
    *,
    axis: Literal["features", "samples"] = "features",
    max_fraction: float = 0.0,
    layer: str | None = None,
    copy: bool = False,
) -> ad.AnnData | None:
    """Drop the features (or samples) with missing values, and record which.

    A value is missing when it is NaN or infinite. A feature (with ``axis="samples"``: a sample) is dropped when
    its fraction of missing values exceeds ``max_fraction``; the default 0 drops every one with any missing value.

    Parameters
    ----------
    adata
        AnnData of profiles (observations × features).
    axis
        ``"features"`` drops columns (keeps every sample), ``"samples"`` drops rows (keeps every feature).
    max_fraction
        Largest tolerated fraction of missing values, in [0, 1).
    layer
        Look for missing values in ``adata.layers[layer]`` instead of X.
    copy
        Return a new AnnData and leave ``adata`` untouched; otherwise subset ``adata`` in place and return None
        (a view or a backed AnnData is refused: pass ``copy=True``).

    Returns
    -------
    The subset AnnData if ``copy=True``, else None. ``uns['drop_missing']`` records the settings, the dropped
    names with their missing counts, the counts before and after, and how many missing values remain.

    Examples
    --------
    >>> plate = pk.io.read_gct("P100_P-0029_MCF7_3h.gct.gz")
    >>> pk.pp.drop_missing(plate)                     # drop every phosphosite with a missing value
    >>> plate.uns["drop_missing"]["dropped"]
    """
    if axis not in ("features", "samples"):
        raise PerturbkitInputError(f"axis={axis!r} is not known; use 'features' (columns) or 'samples' (rows).")
    if not 0 <= max_fraction < 1:
        raise PerturbkitInputError(
            f"max_fraction={max_fraction!r} must be in [0, 1); 0 drops every one with a missing value."
        )
    adata = modifiable(adata, copy=copy, caller="pk.pp.drop_missing")
    missing = _missing_mask(_matrix(adata, layer))
    along = 0 if axis == "features" else 1  # features: count down each column
    counts = np.asarray(missing.sum(axis=along)).ravel().astype(np.int64)
    length = missing.shape[along]
    drop = counts / length > max_fraction
    names = np.asarray(adata.var_names if axis == "features" else adata.obs_names)
    if drop.all():
        raise PerturbkitInputError(
            f"drop_missing would drop all {len(drop)} {axis}: each has more than max_fraction={max_fraction:g} of "
            f"its values missing. Raise max_fraction, use axis={'samples' if axis == 'features' else 'features'!r}, "
            f"or impute with pk.pp.impute(adata)."
        )
    kept_missing = int(counts[~drop].sum())
    record = storable(
        {
            "axis": axis,
            "max_fraction": float(max_fraction),
            "layer": layer,
            "n_missing_before": int(counts.sum()),
            "n_missing_after": kept_missing,
            f"n_{axis}_before": int(len(drop)),
            f"n_{axis}_after": int((~drop).sum()),
            "dropped": names[drop].tolist(),
            "dropped_missing_counts": counts[drop].tolist(),
        }
    )
    if axis == "features":
        adata._inplace_subset_var(~drop)
    else:
        adata._inplace_subset_obs(~drop)
    adata.uns["drop_missing"] = record
    return adata if copy else None


def impute(
    adata,
    *,
    method: Literal["median", "mean", "zero", "constant"] = "median",
    samples: Literal["all", "control"] | str | np.ndarray = "all",
    control_key: str = OBS_KEYS.control_key,
    fill_value: float | None = None,
    layer: str | None = None,
    copy: bool = False,
) -> ad.AnnData | None:
    """Replace missing (NaN or infinite) values, feature by feature, and record where and with what.

    Parameters
    ----------
    adata
        AnnData of profiles (observations × features).
    method
        ``"median"`` or ``"mean"`` of the feature's finite values among ``samples``; ``"zero"``; or
        ``"constant"`` (``fill_value``).
    samples
        The rows the median or mean is computed from: ``"all"``, ``"control"`` (rows where ``obs[control_key]``
        is True, e.g. fill with the DMSO median), a boolean array, or a query on ``adata.obs``.
    control_key
        obs column flagging controls, for ``samples="control"``.
    fill_value
        The value for ``method="constant"``.
    layer
        Impute ``adata.layers[layer]`` instead of X (the result stays in that layer).
    copy
        Return a new AnnData and leave ``adata`` untouched; otherwise modify ``adata`` and return None (a view or
        a backed AnnData is refused: pass ``copy=True``).

    Returns
    -------
    The imputed AnnData if ``copy=True``, else None. ``uns['impute']`` records the settings, the number of
    imputed values, and per imputed feature its name, how many values were filled and the fill value.

    Examples
    --------
    >>> pk.pp.impute(plate, method="median", samples="control")   # fill with the DMSO wells' median
    >>> plate.uns["impute"]["features"], plate.uns["impute"]["counts"]
    """
    methods = ("median", "mean", "zero", "constant")
    if method not in methods:
        raise PerturbkitInputError(f"method={method!r} is not known; use one of {', '.join(map(repr, methods))}.")
    if method == "constant":
        if fill_value is None or not np.isfinite(fill_value):
            raise PerturbkitInputError("method='constant' needs a finite fill_value=, e.g. fill_value=0.0.")
    elif fill_value is not None:
        raise PerturbkitInputError(f"fill_value= is only used with method='constant' (method={method!r}).")
    adata = modifiable(adata, copy=copy, caller="pk.pp.impute")
    X = _matrix(adata, layer)
    mask, samples_description = sample_mask(adata, samples, control_key=control_key)
    missing = _missing_mask(X)
    counts = np.asarray(missing.sum(axis=0)).ravel().astype(np.int64)
    cols = np.flatnonzero(counts)
    names = np.asarray(adata.var_names)

    if method in ("median", "mean"):
        block = X[:, cols]
        block = block.toarray() if sp.issparse(block) else np.asarray(block)
        block = np.where(np.isfinite(block), block, np.nan).astype(np.float64)[mask]
        empty = np.isnan(block).all(axis=0)
        if empty.any():
            raise PerturbkitInputError(
                f"{int(empty.sum())} features have no finite value among the {int(mask.sum())} rows of "
                f"samples={samples_description!r} (e.g. {names[cols][empty][:5].tolist()}), so their {method} is "
                f"undefined. Drop them with pk.pp.drop_missing(adata, max_fraction=...), or use samples='all' or "
                f"method='zero'."
            )
        values = np.nanmedian(block, axis=0) if method == "median" else np.nanmean(block, axis=0)
    else:
        values = np.full(len(cols), 0.0 if method == "zero" else float(fill_value))

    target = adata.X if layer is None else adata.layers[layer]
    if sp.issparse(target):
        target = sp.csr_matrix(target, copy=True)
        bad = ~np.isfinite(target.data)
        lookup = np.zeros(adata.n_vars)
        lookup[cols] = values
        target.data[bad] = lookup[target.indices[bad]]
    else:
        target = np.array(target, copy=True)
        if target.dtype.kind != "f":
            target = target.astype(np.float32)
        rows_idx, col_idx = np.nonzero(~np.isfinite(target))
        lookup = np.zeros(adata.n_vars)
        lookup[cols] = values
        target[rows_idx, col_idx] = lookup[col_idx]
    if layer is None:
        adata.X = target
    else:
        adata.layers[layer] = target
    adata.uns["impute"] = storable(
        {
            "method": method,
            "samples": samples_description,
            "fill_value": fill_value,
            "layer": layer,
            "n_imputed": int(counts.sum()),
            "n_rows_imputed": int(np.asarray(missing.sum(axis=1)).ravel().astype(bool).sum()),
            "features": names[cols].tolist(),
            "counts": counts[cols].tolist(),
            "values": [float(v) for v in values],
        }
    )
    return adata if copy else None
