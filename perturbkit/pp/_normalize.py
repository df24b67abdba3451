"""Per-plate normalisation of profiles, as pycytominer's ``normalize`` and LINCS's robust z-score (level 3 → 4)."""

from __future__ import annotations

import warnings
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._schema import (
    OBS_KEYS,
    EmptyGroupError,
    NonFiniteError,
    PerturbkitInputError,
    check_positive_int,
    control_mask,
    modifiable,
    require_columns,
    storable,
    stored_matrix,
)
from . import _chunked

METHODS = ("standardize", "robustize", "mad_robustize", "spherize", "robust_zscore")
SPHERIZE_METHODS = ("ZCA-cor", "ZCA", "PCA-cor", "PCA")
MAD_TO_SD = 1.4826  # MAD × 1.4826 estimates the standard deviation of normal data

Method = Literal["standardize", "robustize", "mad_robustize", "spherize", "robust_zscore"]
SpherizeMethod = Literal["ZCA-cor", "ZCA", "PCA-cor", "PCA"]


# ------------------------------------------------------------------------------------------------ shared helpers
def sample_mask(
    adata, samples, *, control_key: str = OBS_KEYS.control_key, argument: str = "samples"
) -> tuple[np.ndarray, str]:
    """Boolean mask of the rows ``samples`` selects, and a short description of it for ``uns``.

    ``samples`` is ``"all"``, ``"control"`` (the True rows of ``obs[control_key]``), a boolean array with one entry
    per row, or a query on ``adata.obs`` written as for :meth:`pandas.DataFrame.query` (pycytominer's form, e.g.
    ``"Metadata_broad_sample_type == 'control'"``).
    """
    n = adata.n_obs
    if isinstance(samples, str):
        if samples == "all":
            return np.ones(n, dtype=bool), "all"
        if samples == "control":
            return control_mask(adata, control_key), f"control ({control_key})"
        try:
            mask = adata.obs.eval(samples)
        except Exception as err:  # pandas raises many types for a bad expression
            raise PerturbkitInputError(
                f"{argument}={samples!r} is not 'all', 'control' or a valid query on adata.obs ({err}). Pass "
                f"'all', 'control' (rows where obs[{control_key!r}] is True), a boolean array with one entry per "
                f"row, or a query such as \"moa == 'DMSO'\"."
            ) from None
        description = samples
    else:
        mask = samples
        description = "mask"
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != (n,):
        raise PerturbkitInputError(
            f"{argument}= must select rows: 'all', 'control', a query on adata.obs, or a boolean array of length "
            f"{n} (adata.n_obs); got {mask.dtype} values of shape {mask.shape}."
        )
    if not mask.any():
        raise EmptyGroupError(f"{argument}={description!r} selects no rows of adata; select at least one row.")
    return mask, description


def float_matrix(adata, layer: str | None, *, allow_nan: bool) -> tuple[np.ndarray, str]:
    """X (or a layer) as a dense float64 array; infinite values (and NaN unless ``allow_nan``) raise."""
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    X = stored_matrix(adata, layer)
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise EmptyGroupError(f"adata is empty ({adata.n_obs} × {adata.n_vars}); load profiles into it first.")
    if hasattr(X, "to_memory"):  # sparse matrix of a backed AnnData
        X = X.to_memory()
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    dtype = X.dtype
    X = np.array(X, dtype=np.float64)
    n_inf = int(np.isinf(X).sum())
    n_nan = int(np.isnan(X).sum())
    if n_inf or (n_nan and not allow_nan):
        raise NonFiniteError(
            f"{where} holds {n_nan} NaN and {n_inf} infinite values. "
            + ("Infinite values cannot be normalised; " if n_inf else "This method needs finite values; ")
            + "drop or impute them first with pk.pp.drop_missing(adata) or pk.pp.impute(adata)."
        )
    return X, "float64" if dtype == np.float64 else "float32"


# ------------------------------------------------------------------------------------------------ fitting
def _standard_params(F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population SD per column (NaN ignored); a constant column gets scale 1, as in scikit-learn."""
    n = np.sum(~np.isnan(F), axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(F, axis=0)
        var = np.nanvar(F, axis=0)
    return mean, _standard_scale(n, mean, var)


def _standard_scale(n, mean, var) -> np.ndarray:
    """The SD, or 1 where the variance is within rounding error of a constant feature's."""
    eps = np.finfo(np.float64).eps
    constant = var <= n * eps * var + (n * mean * eps) ** 2
    return np.where(constant, 1.0, np.sqrt(var))


def _nanmedian(F: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(F, axis=0)


def _fit_per_feature(F: np.ndarray, method: str, *, mad_epsilon: float, min_mad: float) -> dict:
    if method == "standardize":
        center, scale = _standard_params(F)
    elif method == "robustize":
        center = _nanmedian(F)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            q25, q75 = np.nanpercentile(F, [25, 75], axis=0)
        scale = q75 - q25
        scale = np.where(scale < 10 * np.finfo(np.float64).eps, 1.0, scale)
    else:
        center = _nanmedian(F)
        mad = _nanmedian(np.abs(F - center))
        if method == "mad_robustize":
            scale = mad / (1 / MAD_TO_SD) + mad_epsilon
        else:  # robust_zscore
            scale = np.maximum(mad, min_mad) * MAD_TO_SD
    return {"center": center, "scale": scale}


def _fit_spherize(F: np.ndarray, method: str, center: bool, epsilon: float, names) -> dict:
    n, d = F.shape
    if n < 2:
        raise PerturbkitInputError(f"spherize needs at least 2 samples to fit on; samples= selects {n}.")
    if method.endswith("-cor"):
        if not center:
            raise PerturbkitInputError(
                f"spherize_method={method!r} whitens the correlation matrix, which needs spherize_center=True."
            )
        var = F.var(axis=0)
        if np.any(var == 0):
            bad = list(np.asarray(names)[var == 0][:5])
            raise PerturbkitInputError(
                f"spherize_method={method!r} divides by each feature's SD, but {int((var == 0).sum())} features are "
                f"constant over the fitted samples (e.g. {bad}). Drop them first, e.g. with "
                f"pk.pp.feature_select(adata, operations='variance_threshold', samples=...)."
            )
        mean, scale = _standard_params(F)
    else:
        mean = F.mean(axis=0) if center else np.zeros(d)
        scale = np.ones(d)
    Z = (F - mean) / scale
    _, S, Vt = np.linalg.svd(Z, full_matrices=n <= d)
    rank = int(np.sum(S > S.max() * max(n, d) * np.finfo(np.float64).eps)) if S.size else 0
    full_rank = rank in (n - 1, n) if n <= d else rank == d
    if not full_rank:
        raise PerturbkitInputError(
            f"spherize: the {n} × {d} matrix of fitted samples has rank {rank}, so some features are exact linear "
            f"combinations of others and whitening would divide by spherize_epsilon. Remove the dependent "
            f"features, e.g. pk.pp.feature_select(adata, operations='correlation_threshold', corr_threshold=0.99)."
        )
    if n <= d:  # the directions the samples do not span get the smallest non-zero singular value
        S = np.concatenate([S[:rank], np.repeat(S[rank - 1], d - rank)])
    S = S + epsilon
    W = (Vt / S[:, None]).T * np.sqrt(n - 1)
    if method.startswith("ZCA"):
        W = W @ Vt
    return {"center": mean, "scale": scale, "W": W, "rank": rank}


def _raise_no_fit_rows(label, groupby, samples_description) -> None:
    raise EmptyGroupError(
        f"group {label!r} of obs[{groupby!r}] has no row selected by samples={samples_description!r}, so "
        f"nothing to fit on. Every group needs at least one such row (e.g. control wells on every plate)."
    )


def _check_features_fitted(counts, names, n_rows: int, groupby, label) -> None:
    """Raise if a feature has no value (only NaN) among a group's ``n_rows`` fitted samples.

    ``counts`` holds, per feature, how many values it has there.
    """
    empty = np.asarray(counts) == 0
    if empty.any():
        raise PerturbkitInputError(
            f"{int(empty.sum())} features have no value among the {n_rows} fitted samples"
            f"{'' if groupby is None else f' of group {label!r}'} (e.g. {list(names[empty][:5])}), so they "
            f"cannot be normalised. Drop them first, e.g. pk.pp.drop_missing(adata, axis='features')."
        )


# ------------------------------------------------------------------------------------------------ out of core
FIX_NON_FINITE = "drop or impute them first with pk.pp.drop_missing(adata) or pk.pp.impute(adata)."


def _fit_out_of_core(X, method, *, codes, mask, n_groups, chunk_rows, where, options, spherize, names) -> dict:
    """The parameters of ``method`` per group, reading ``X`` in row blocks; equal to fitting the gathered rows.

    Returns ``{"params": {name: groups × ... array}, "counts": groups × features values per feature}``.
    ``"standardize"`` streams per-group sums, then squared deviations (two passes, float64, NaN ignored); the
    others gather the fitted rows of a block of features (:data:`._chunked.GATHER_BYTES`) and run the in-memory fit.
    """
    n_features = X.shape[1]
    check = _chunked.FiniteCheck(where, allow_nan=method != "spherize")

    def fix() -> str:  # the in-memory message
        why = "Infinite values cannot be normalised; " if check.n_inf else "This method needs finite values; "
        return why + FIX_NON_FINITE

    fit_codes = np.where(mask, codes, -1)
    if method == "standardize":
        sums = np.zeros((n_groups, n_features))
        counts = np.zeros((n_groups, n_features))
        for start, stop, block in _chunked.row_blocks(X, chunk_rows=chunk_rows, desc="normalize: fit"):
            block = _chunked.dense64(block)
            check.update(block, start)
            present = ~np.isnan(block)
            _chunked.add_group_sums(counts, fit_codes[start:stop], present.astype(np.float64))
            _chunked.add_group_sums(sums, fit_codes[start:stop], np.where(present, block, 0.0))
        check.raise_if_bad(fix())
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = sums / counts
        squares = np.zeros((n_groups, n_features))
        for start, stop, block in _chunked.row_blocks(X, chunk_rows=chunk_rows, desc="normalize: fit"):
            if not mask[start:stop].any():
                continue
            block = _chunked.dense64(block)
            deviation = block - mean[np.maximum(codes[start:stop], 0)]
            deviation[np.isnan(deviation)] = 0.0
            _chunked.add_group_sums(squares, fit_codes[start:stop], deviation * deviation)
        with np.errstate(invalid="ignore", divide="ignore"):
            var = squares / counts
            spread = _standard_scale(counts, mean, var)
        return {"params": {"center": mean, "scale": spread}, "counts": counts}

    # gather: the fitted rows, ordered by group (rows in file order within a group), of one block of features
    order = np.flatnonzero(mask)
    order = order[np.argsort(codes[order], kind="stable")]
    bounds = np.concatenate([[0], np.cumsum(np.bincount(codes[order], minlength=n_groups))])
    position = np.full(X.shape[0], -1, dtype=np.int64)
    position[order] = np.arange(len(order))
    if method == "spherize":
        needed = len(order) * n_features * 8
        if needed > _chunked.GATHER_BYTES:
            raise PerturbkitInputError(
                f"spherize fits on all {n_features} features of the {len(order)} samples= rows at once, "
                f"{needed / 2**20:.0f} MB in float64, more than the {_chunked.GATHER_BYTES / 2**20:.0f} MB that "
                f"out-of-core data may hold in memory (pk.pp._chunked.GATHER_BYTES). Fit on fewer rows, e.g. "
                f"samples='control' or samples=<boolean mask of a random subset>, or load the data with "
                f"adata.to_memory()."
            )
        width = n_features
    else:
        width = max(1, min(n_features, _chunked.GATHER_BYTES // (8 * max(len(order), 1))))
    params: dict[str, np.ndarray] = {}
    counts = np.zeros((n_groups, n_features))
    for first in range(0, n_features, width):
        columns = slice(first, min(first + width, n_features))
        F = np.empty((len(order), columns.stop - first))
        for start, stop, block in _chunked.row_blocks(
            X, chunk_rows=chunk_rows, columns=None if first == 0 else columns, desc="normalize: fit"
        ):
            if first == 0:  # the first pass reads whole rows and checks all of X for NaN / inf
                check.update(block, start)
                block = block[:, columns]
            here = position[start:stop]
            keep = here >= 0
            if keep.any():
                F[here[keep]] = _chunked.dense64(block[np.flatnonzero(keep)])
        if first == 0:
            check.raise_if_bad(fix())
        for g in range(n_groups):
            Fg = F[bounds[g] : bounds[g + 1]]
            counts[g, columns] = np.sum(~np.isnan(Fg), axis=0)
            if method == "spherize":
                _check_features_fitted(counts[g], names, len(Fg), None, None)
                sph_method, sph_center, sph_epsilon = spherize
                fitted = _fit_spherize(Fg, sph_method, sph_center, sph_epsilon, names)
                return {"params": {k: np.asarray([v]) for k, v in fitted.items()}, "counts": counts}
            if (counts[g, columns] == 0).any():
                continue  # reported by the caller, naming the group
            fitted = _fit_per_feature(Fg, method, **options)
            for k, v in fitted.items():
                params.setdefault(k, np.zeros((n_groups, n_features)))[g, columns] = v
    return {"params": params, "counts": counts}


def _lazy_normalize(X, method, params, codes, out_dtype, chunk_rows):
    """The normalised X as a lazy dask array: the fitted parameters of each row's group applied block by block."""
    center = np.asarray(params["center"])
    spread = np.asarray(params["scale"])
    if method == "spherize":
        W = np.asarray(params["W"][0])

        def whiten(block, rows, cols):
            return ((block - center[0]) / spread[0]) @ W

        return _chunked.lazy_map(X, whiten, dtype=out_dtype, chunk_rows=chunk_rows, n_out=W.shape[1], elementwise=False)
    one_group = center.shape[0] == 1

    def standardise(block, rows, cols):  # in place on the float64 block: no block-sized parameter arrays
        if one_group:
            block -= center[0, cols]
            block /= spread[0, cols]
            return block
        here = codes[rows]
        for g in np.unique(here):
            where = here == g
            block[where] = (block[where] - center[g, cols]) / spread[g, cols]
        return block

    return _chunked.lazy_map(X, standardise, dtype=out_dtype, chunk_rows=chunk_rows)


# ------------------------------------------------------------------------------------------------ public
def normalize(
    adata,
    *,
    method: Method = "standardize",
    samples: Literal["all", "control"] | str | np.ndarray = "all",
    groupby: str | None = None,
    control_key: str = OBS_KEYS.control_key,
    layer: str | None = None,
    mad_epsilon: float = 1e-18,
    min_mad: float = 0.1,
    spherize_method: SpherizeMethod = "ZCA-cor",
    spherize_center: bool = True,
    spherize_epsilon: float = 1e-6,
    key_added: str = "normalize",
    chunk_rows: int | None = None,
    copy: bool = False,
) -> ad.AnnData | None:
    """Normalise each feature against a reference set of samples (all wells, or the plate's controls).

    The methods are pycytominer 1.7.1's ``normalize`` methods, plus the LINCS robust z-score:

    ``"standardize"``
        ``(x - mean) / SD`` (population SD; a constant feature gets SD 1, as scikit-learn's ``StandardScaler``).
    ``"robustize"``
        ``(x - median) / IQR`` (interquartile range, linear interpolation; IQR 0 becomes 1, as ``RobustScaler``).
    ``"mad_robustize"``
        ``(x - median) / (MAD × 1.4826 + mad_epsilon)``; a feature with MAD 0 gets huge values (a warning names it).
    ``"robust_zscore"``
        LINCS's level 3 → level 4 robust z-score (cmapPy's ``robust_zscore``): ``(x - median) / (max(MAD, min_mad)
        × 1.4826)``. The MAD floor ``min_mad=0.1`` is LINCS's, for log2 expression; choose one in your data's units.
    ``"spherize"``
        Whitening (pycytominer's ``Spherize``): ``"ZCA-cor"`` (default), ``"ZCA"``, ``"PCA-cor"`` or ``"PCA"``.
        The ``-cor`` variants standardise first. The transform ``X @ W`` uses the SVD of the fitted samples,
        singular values plus ``spherize_epsilon``; with fewer samples than features, the directions the samples do
        not span get the smallest non-zero singular value. ZCA keeps the features, so the result goes to X. PCA
        gives components, not features, so X is left as it is and the components go to ``adata.obsm['X_' +
        key_added]``.

    Parameters
    ----------
    adata
        AnnData of profiles (observations × features). NaN is allowed except for spherize: it is ignored when
        fitting and stays NaN; infinite values raise :class:`~perturbkit.errors.NonFiniteError`.
    method
        One of the methods above.
    samples
        The rows the parameters are fitted on (pycytominer's ``samples``); all rows are then transformed.
        ``"all"``, ``"control"`` (rows where ``obs[control_key]`` is True, e.g. DMSO wells), a boolean array, or
        a query on ``adata.obs`` such as ``"Metadata_broad_sample_type == 'control'"``.
    groupby
        obs column, e.g. ``"plate"``: fit and apply separately within each group (each needs fitted samples).
        ``None`` treats all rows as one plate. Not available for spherize.
    control_key
        obs column flagging controls, for ``samples="control"``.
    layer
        Read from ``adata.layers[layer]`` instead of X; the result goes to X.
    mad_epsilon
        Added to the scaled MAD by ``"mad_robustize"`` (pycytominer's ``mad_robustize_epsilon``).
    min_mad
        MAD floor of ``"robust_zscore"`` (cmapPy's ``min_mad``), in the data's units, applied before × 1.4826.
    spherize_method, spherize_center, spherize_epsilon
        pycytominer's ``spherize_method``, ``spherize_center`` and ``spherize_epsilon``.
    key_added
        ``adata.uns`` key of the record: method, samples, number of fitted samples, groups and the fitted
        parameters (``center`` and ``scale`` per feature, one row per group; spherize adds ``W``).
    chunk_rows
        Rows per block when X is out of core (a backed ``.h5ad`` or a dask array); ``None``: blocks of about 16 MB
        in float64.
    copy
        Return a normalised copy and leave ``adata`` untouched; otherwise modify ``adata`` and return None (a view
        is made an actual AnnData first; a backed AnnData is refused: pass ``copy=True``).

    Returns
    -------
    The normalised AnnData if ``copy=True``, else None. X becomes dense float32 (float64 input stays float64).
    Out-of-core data stays out of core: when X is a dask array or the AnnData is backed (``copy=True``), the
    result is a lazy dask array computed block by block (a backed file is reopened read-only for each block).

    Notes
    -----
    Differences from the reference tools, on purpose:

    - cmapPy's ``robust_zscore`` rounds the z-scores to 4 decimals; here they are not rounded (``adata.X =
      adata.X.round(4)`` reproduces it).
    - pycytominer accepts a rank-deficient matrix for spherize when there are more samples than features and
      divides by ``spherize_epsilon``; here that raises an error naming the fix.
    - A feature with no finite value among the fitted samples raises here (pycytominer returns NaN for it).

    Out of core the parameters are exact and equal those fitted in memory: ``"standardize"`` accumulates per-group
    sums and then squared deviations in float64 (two passes); the median-based methods gather the fitted rows of
    as many features as fit in ``pk.pp._chunked.GATHER_BYTES`` (256 MB; one pass over the data per such block of
    features) and compute the same exact medians and quantiles; spherize needs the fitted rows × all features in
    that budget, else it raises (fit on ``samples="control"`` or a subset).

    Examples
    --------
    >>> pk.pp.normalize(plate, method="mad_robustize", samples="control")   # against the DMSO wells
    >>> plate.uns["normalize"]["params"]["center"][:3]
    >>> level4 = pk.pp.normalize(level3, method="robust_zscore", groupby="plate", copy=True)
    """
    if method not in METHODS:
        raise PerturbkitInputError(f"method={method!r} is not known; use one of {', '.join(map(repr, METHODS))}.")
    if spherize_method not in SPHERIZE_METHODS:
        raise PerturbkitInputError(
            f"spherize_method={spherize_method!r} is not known; use one of {', '.join(map(repr, SPHERIZE_METHODS))}."
        )
    if groupby is not None and method == "spherize":
        raise PerturbkitInputError(
            "groupby= is not available with method='spherize' (one whitening matrix per group would be stored); "
            "normalise each group separately, e.g. pk.pp.normalize(adata[adata.obs['plate'] == p].copy(), ...)."
        )
    if mad_epsilon < 0 or min_mad < 0 or spherize_epsilon < 0:
        raise PerturbkitInputError("mad_epsilon, min_mad and spherize_epsilon must be >= 0.")
    check_positive_int(chunk_rows, "chunk_rows", allow_none=True)
    lazy = _chunked.is_out_of_core(stored_matrix(adata, layer))
    original = adata
    adata = modifiable(adata, copy=copy, caller="pk.pp.normalize", keep_x=not lazy)
    mask, samples_description = sample_mask(adata, samples, control_key=control_key)
    if lazy:
        source = stored_matrix(original if copy else adata, layer)
        if adata.n_obs == 0 or adata.n_vars == 0:
            raise EmptyGroupError(f"adata is empty ({adata.n_obs} × {adata.n_vars}); load profiles into it first.")
        out_dtype = "float64" if source.dtype == np.float64 else "float32"
    else:
        X, out_dtype = float_matrix(adata, layer, allow_nan=method != "spherize")

    if groupby is None:
        codes, labels = np.zeros(adata.n_obs, dtype=np.int64), ["all"]
    else:
        require_columns(adata, [groupby], purpose="normalize(groupby=...)")
        codes, uniques = pd.factorize(adata.obs[groupby], sort=True, use_na_sentinel=False)
        labels = [str(u) for u in uniques]

    names = np.asarray(adata.var_names)
    params: dict[str, list] = {}
    n_fit = []
    if lazy:
        for g, label in enumerate(labels):
            if not (mask & (codes == g)).any():
                _raise_no_fit_rows(label, groupby, samples_description)
        where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
        fitted = _fit_out_of_core(
            source,
            method,
            codes=codes,
            mask=mask,
            n_groups=len(labels),
            chunk_rows=_chunked.resolve_chunk_rows(chunk_rows, source.shape[1]),
            where=where,
            options={"mad_epsilon": mad_epsilon, "min_mad": min_mad},
            spherize=(spherize_method, spherize_center, spherize_epsilon),
            names=names,
        )
        for g, label in enumerate(labels):
            _check_features_fitted(fitted["counts"][g], names, int((mask & (codes == g)).sum()), groupby, label)
        params = {k: list(v) for k, v in fitted["params"].items()}
        n_fit = [int(c) for c in np.bincount(codes[mask], minlength=len(labels))]
    else:
        out = np.empty_like(X)
        for g, label in enumerate(labels):
            rows = codes == g
            fit_rows = rows & mask
            if not fit_rows.any():
                _raise_no_fit_rows(label, groupby, samples_description)
            F = X[fit_rows]
            _check_features_fitted(np.sum(~np.isnan(F), axis=0), names, len(F), groupby, label)
            if method == "spherize":
                fitted = _fit_spherize(F, spherize_method, spherize_center, spherize_epsilon, names)
                out = ((X - fitted["center"]) / fitted["scale"]) @ fitted["W"]
            else:
                fitted = _fit_per_feature(F, method, mad_epsilon=mad_epsilon, min_mad=min_mad)
                out[rows] = (X[rows] - fitted["center"]) / fitted["scale"]
            for k, v in fitted.items():
                params.setdefault(k, []).append(v)
            n_fit.append(int(fit_rows.sum()))

    if method == "mad_robustize":
        zero = (np.asarray(params["scale"]) <= mad_epsilon).any(axis=0)
        if zero.any():
            warnings.warn(
                f"{int(zero.sum())} features have MAD 0 over the fitted samples (e.g. {list(names[zero][:5])}); "
                f"mad_robustize divides them by mad_epsilon={mad_epsilon:g}, giving huge values. Drop them (e.g. "
                f"pk.pp.feature_select) or use method='robust_zscore' with a MAD floor.",
                UserWarning,
                stacklevel=2,
            )

    record = {
        "method": method,
        "samples": samples_description,
        "control_key": control_key,
        "n_fit_samples": n_fit[0] if groupby is None else n_fit,
        "groupby": groupby,
        "groups": labels,
        "layer": layer,
        "params": {k: np.asarray(v[0] if groupby is None else v) for k, v in params.items()},
    }
    if method == "mad_robustize":
        record["mad_epsilon"] = float(mad_epsilon)
    elif method == "robust_zscore":
        record["min_mad"] = float(min_mad)
    elif method == "spherize":
        record.update(
            spherize_method=spherize_method,
            spherize_center=bool(spherize_center),
            spherize_epsilon=float(spherize_epsilon),
        )
        record["params"]["rank"] = int(params["rank"][0])

    if lazy:
        out = _lazy_normalize(source, method, params, codes, out_dtype, chunk_rows)
        if adata.X is None:  # a copy made without X: X stays the (lazily read) source
            adata.X = _chunked.as_dask(source, chunk_rows=chunk_rows)
    else:
        out = out.astype(out_dtype, copy=False)
    if method == "spherize" and spherize_method.startswith("PCA"):
        adata.obsm[f"X_{key_added}"] = out
    else:
        adata.X = out
    adata.uns[key_added] = storable(record)
    return adata if copy else None
