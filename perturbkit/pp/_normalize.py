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
    control_mask,
    modifiable,
    require_columns,
    storable,
    stored_matrix,
)

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
    eps = np.finfo(np.float64).eps
    constant = var <= n * eps * var + (n * mean * eps) ** 2  # within rounding error of a constant
    return mean, np.where(constant, 1.0, np.sqrt(var))


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
    copy
        Return a normalised copy and leave ``adata`` untouched; otherwise modify ``adata`` and return None (a view
        or a backed AnnData is refused: pass ``copy=True``).

    Returns
    -------
    The normalised AnnData if ``copy=True``, else None. X becomes dense float32 (float64 input stays float64).

    Notes
    -----
    Differences from the reference tools, on purpose:

    - cmapPy's ``robust_zscore`` rounds the z-scores to 4 decimals; here they are not rounded (``adata.X =
      adata.X.round(4)`` reproduces it).
    - pycytominer accepts a rank-deficient matrix for spherize when there are more samples than features and
      divides by ``spherize_epsilon``; here that raises an error naming the fix.
    - A feature with no finite value among the fitted samples raises here (pycytominer returns NaN for it).

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
    adata = modifiable(adata, copy=copy, caller="pk.pp.normalize")
    mask, samples_description = sample_mask(adata, samples, control_key=control_key)
    X, out_dtype = float_matrix(adata, layer, allow_nan=method != "spherize")

    if groupby is None:
        codes, labels = np.zeros(adata.n_obs, dtype=np.int64), ["all"]
    else:
        require_columns(adata, [groupby], purpose="normalize(groupby=...)")
        codes, uniques = pd.factorize(adata.obs[groupby], sort=True, use_na_sentinel=False)
        labels = [str(u) for u in uniques]

    names = np.asarray(adata.var_names)
    out = np.empty_like(X)
    params: dict[str, list] = {}
    n_fit = []
    for g, label in enumerate(labels):
        rows = codes == g
        fit_rows = rows & mask
        if not fit_rows.any():
            raise EmptyGroupError(
                f"group {label!r} of obs[{groupby!r}] has no row selected by samples={samples_description!r}, so "
                f"nothing to fit on. Every group needs at least one such row (e.g. control wells on every plate)."
            )
        F = X[fit_rows]
        empty = np.isnan(F).all(axis=0)
        if empty.any():
            raise PerturbkitInputError(
                f"{int(empty.sum())} features have no value among the {len(F)} fitted samples"
                f"{'' if groupby is None else f' of group {label!r}'} (e.g. {list(names[empty][:5])}), so they "
                f"cannot be normalised. Drop them first, e.g. pk.pp.drop_missing(adata, axis='features')."
            )
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

    out = out.astype(out_dtype, copy=False)
    if method == "spherize" and spherize_method.startswith("PCA"):
        adata.obsm[f"X_{key_added}"] = out
    else:
        adata.X = out
    adata.uns[key_added] = storable(record)
    return adata if copy else None
