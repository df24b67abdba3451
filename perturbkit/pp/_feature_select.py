"""Feature selection for morphology (Cell Painting) profiles, as pycytominer 1.7.1's ``feature_select``."""

from __future__ import annotations

import warnings
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._schema import OBS_KEYS, MissingColumnError, PerturbkitInputError, modifiable, storable
from ._normalize import sample_mask

OPERATIONS = (
    "variance_threshold",
    "frequency_threshold",
    "correlation_threshold",
    "drop_na_columns",
    "blocklist",
    "drop_outliers",
    "noise_removal",
)
#: pycytominer's default: ``operation="variance_threshold"``.
DEFAULT_OPERATIONS = ("variance_threshold",)
_RENAMED = {
    "variance": "'frequency_threshold' (the freq_cut/unique_cut rule) or 'variance_threshold' (min_variance)",
    "missing": "'drop_na_columns'",
    "outlier": "'drop_outliers'",
    "correlation": "'correlation_threshold'",
}
CORR_METHODS = ("pearson", "spearman", "kendall")

Operation = Literal[
    "variance_threshold",
    "frequency_threshold",
    "correlation_threshold",
    "drop_na_columns",
    "blocklist",
    "drop_outliers",
    "noise_removal",
]


@lru_cache(maxsize=1)
def default_blocklist() -> tuple[str, ...]:
    """Pycytominer's default CellProfiler blocklist (55 feature names), shipped as ``perturbkit/pp/data``."""
    text = resources.files("perturbkit.pp").joinpath("data/cellprofiler_blocklist.txt").read_text()
    return _parse_names(text)


def _parse_names(text: str) -> tuple[str, ...]:
    lines = (line.strip() for line in text.splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


def _blocklist_names(blocklist) -> tuple[set[str], str]:
    if blocklist is None:
        return set(default_blocklist()), "pycytominer default (55 features)"
    if isinstance(blocklist, (str, Path)):
        path = Path(blocklist).expanduser()
        if not path.is_file():
            raise PerturbkitInputError(
                f"blocklist={str(blocklist)!r} is not a readable file. Pass a text file with one feature name per "
                f"line, a list of feature names, or blocklist=None for pycytominer's default list."
            )
        return set(_parse_names(path.read_text())), str(path)
    return {str(b) for b in blocklist}, "list"


# ------------------------------------------------------------------------------------------------ the rules
def _low_variance(F: np.ndarray, min_variance: float) -> np.ndarray:
    """Variance (ddof 0, NaN ignored) not above ``min_variance``; a column without values counts as failing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        var = np.nanvar(F, axis=0)
    if min_variance == 0:  # a constant column can have a tiny non-zero computed variance: use its range as well
        var = np.fmin(var, np.ptp(F, axis=0))
    return ~(var > min_variance)


def _value_counts(F: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column (NaN ignored): number of distinct values, and the counts of the two most common ones (0 if none)."""
    n, m = F.shape
    S = np.sort(F, axis=0)  # NaN sort last
    valid = ~np.isnan(S)
    new_run = valid.copy()
    new_run[1:] &= S[1:] != S[:-1]
    n_unique = new_run.sum(axis=0)
    run_of = np.cumsum(new_run.T.ravel()) - 1  # runs never span columns: each column's first value starts one
    counts = np.bincount(run_of[valid.T.ravel()], minlength=int(n_unique.sum()))
    run_col = np.repeat(np.arange(m), n_unique)
    order = np.lexsort((-counts, run_col))
    ranked = counts[order]
    start = np.concatenate([[0], np.cumsum(n_unique)[:-1]]).astype(np.int64)
    last = max(len(ranked) - 1, 0)
    ranked = np.append(ranked, 0)
    top1 = np.where(n_unique >= 1, ranked[np.minimum(start, last)], 0)
    top2 = np.where(n_unique >= 2, ranked[np.minimum(start + 1, last)], 0)
    return n_unique, top1, top2


def _low_frequency(F: np.ndarray, freq_cut: float, unique_cut: float) -> np.ndarray:
    """Features that fail EITHER of two tests (a low-frequency, near-constant feature).

    The tests: (2nd most common value's count / most common's) < freq_cut (0 with < 2 distinct values), or
    distinct values / rows < unique_cut.
    """
    n_unique, top1, top2 = _value_counts(F)
    with np.errstate(invalid="ignore", divide="ignore"):
        freq_ratio = np.where(n_unique >= 2, top2 / np.maximum(top1, 1), 0.0)
    return (freq_ratio < freq_cut) | (n_unique / F.shape[0] < unique_cut)


def _correlated(F: np.ndarray, threshold: float, method: str) -> np.ndarray:
    """Features to drop by pycytominer's correlation rule.

    For every pair correlated above ``threshold`` (signed), drop the member whose summed absolute correlation with
    all features is larger.
    """
    if method == "pearson" and np.isfinite(F).all():
        with np.errstate(invalid="ignore", divide="ignore"):
            C = np.corrcoef(F, rowvar=False)
    else:  # pairwise-complete correlations
        C = pd.DataFrame(F).corr(method=method).to_numpy()
    C = np.atleast_2d(C)
    position = np.empty(C.shape[0], dtype=np.int64)
    position[np.argsort(np.nansum(np.abs(C), axis=0), kind="quicksort")] = np.arange(C.shape[0])
    with np.errstate(invalid="ignore"):
        i, j = np.nonzero(np.tril(C > threshold, k=-1))
    drop = np.zeros(C.shape[0], dtype=bool)
    drop[np.where(position[i] > position[j], i, j)] = True
    return drop


def _noisy(F: np.ndarray, groups: np.ndarray, cutoff: float) -> np.ndarray:
    """Mean over groups of the within-group SD (ddof 0, NaN ignored) above ``cutoff``; rows without a group skipped."""
    codes = pd.factorize(pd.Series(groups, dtype=object))[0]
    keep = codes >= 0
    sd = pd.DataFrame(F[keep]).groupby(codes[keep]).std(ddof=0).mean(axis=0).to_numpy()
    with np.errstate(invalid="ignore"):
        return sd > cutoff


def _group_labels(adata, noise_groups, rows: np.ndarray) -> tuple[np.ndarray, str]:
    if isinstance(noise_groups, str):
        if noise_groups not in adata.obs.columns:
            raise MissingColumnError(
                f"noise_groups={noise_groups!r} is not a column of adata.obs (needed for noise_removal). Available "
                f"columns: {list(adata.obs.columns)[:20]}. Name the column that holds each row's perturbation."
            )
        return adata.obs[noise_groups].to_numpy()[rows], noise_groups
    labels = np.asarray(noise_groups, dtype=object)
    if labels.shape != (adata.n_obs,):
        raise PerturbkitInputError(
            f"noise_groups= must be an obs column name or one label per row ({adata.n_obs}); got shape {labels.shape}."
        )
    return labels[rows], "array"


# ------------------------------------------------------------------------------------------------ public
def feature_select(
    adata,
    *,
    operations: Operation | list[Operation] | tuple[Operation, ...] = DEFAULT_OPERATIONS,
    samples: Literal["all", "control"] | str | np.ndarray = "all",
    control_key: str = OBS_KEYS.control_key,
    min_variance: float = 1e-6,
    freq_cut: float = 0.05,
    unique_cut: float = 0.01,
    corr_threshold: float = 0.9,
    corr_method: Literal["pearson", "spearman", "kendall"] = "pearson",
    na_cutoff: float = 0.05,
    outlier_cutoff: float = 500.0,
    blocklist=None,
    noise_groups=None,
    noise_stdev_cutoff: float | None = None,
    copy: bool = False,
) -> ad.AnnData | None:
    """Drop uninformative or unreliable features (columns), exactly as pycytominer 1.7.1's ``feature_select``.

    The operations run in the order given, each on the features the previous ones kept (pycytominer's order);
    the keyword names and defaults are pycytominer's (``operations`` is its ``operation``, ``noise_groups`` /
    ``noise_stdev_cutoff`` its ``noise_removal_perturb_groups`` / ``noise_removal_stdev_cutoff``).

    ``"variance_threshold"`` (the default, as in pycytominer)
        Drop features whose variance (ddof 0) is not above ``min_variance``.
    ``"frequency_threshold"``
        Drop near-constant features: those failing EITHER test, the ratio of the second most common value's count
        to the most common value's below ``freq_cut`` (a single distinct value counts as 0), OR distinct values /
        rows below ``unique_cut``.
    ``"correlation_threshold"``
        For every pair of features correlated above ``corr_threshold`` (``corr_method``; signed, so
        anticorrelated pairs stay), drop the one whose summed absolute correlation with all features is larger.
    ``"drop_na_columns"``
        Drop features whose fraction of missing values exceeds ``na_cutoff``.
    ``"blocklist"``
        Drop listed features: ``blocklist=None`` is pycytominer's default list of 55 noisy CellProfiler features
        (shipped as ``perturbkit/pp/data/cellprofiler_blocklist.txt``), or a list of names, or a text file (one
        name per line, ``#`` comments).
    ``"drop_outliers"``
        Drop features whose largest ``|x|`` exceeds ``outlier_cutoff`` (for normalised data, in SD units).
    ``"noise_removal"``
        Drop features whose within-group SD (ddof 0), averaged over the groups ``noise_groups`` (an obs column,
        e.g. the compound, or one label per row), exceeds ``noise_stdev_cutoff``. Both are required.

    Parameters
    ----------
    adata
        AnnData of profiles (observations × features), typically Cell Painting. Missing values are allowed;
        infinite values are treated as missing.
    operations
        One operation name or a sequence of them (above).
    samples
        The rows the selection is computed on (pycytominer's ``samples``): ``"all"``, ``"control"`` (rows where
        ``obs[control_key]`` is True), a boolean array, or a query on ``adata.obs`` (e.g.
        ``"Metadata_broad_sample_type == 'control'"``). All rows are kept; only features are dropped.
    control_key
        obs column flagging controls, for ``samples="control"``.
    min_variance, freq_cut, unique_cut, corr_threshold, corr_method
        Settings of the operations above (pycytominer's names and defaults).
    na_cutoff, outlier_cutoff, blocklist, noise_groups, noise_stdev_cutoff
        Settings of the operations above; ``noise_groups`` is an obs column or one label per row of ``adata``.
    copy
        Return a new AnnData and leave ``adata`` untouched; otherwise subset ``adata`` in place and return None
        (a view or a backed AnnData is refused: pass ``copy=True``).

    Returns
    -------
    The AnnData with the kept features if ``copy=True``, else None. ``uns['feature_select']`` records the
    settings, the samples used, per operation the features it dropped (``dropped``), and the feature counts before
    and after.

    Notes
    -----
    Ties in the summed absolute correlation are broken as pycytominer's sort breaks them. A string ``blocklist``
    is a file path here (pycytominer reads it as one feature name; pass ``[name]``). pycytominer fails on
    infinite values in some operations; here they count as missing.

    Examples
    --------
    >>> pk.pp.feature_select(plate)                          # pycytominer's default: variance_threshold
    >>> pk.pp.feature_select(plate, operations=["variance_threshold", "correlation_threshold", "drop_na_columns",
    ...                                         "blocklist"], samples="control")
    >>> plate.uns["feature_select"]["dropped"]["correlation_threshold"][:3]
    """
    operations = [operations] if isinstance(operations, str) else list(operations)
    for op in operations:
        if op in _RENAMED:
            raise PerturbkitInputError(f"operation {op!r} was renamed to match pycytominer: use {_RENAMED[op]}.")
    unknown = [op for op in operations if op not in OPERATIONS]
    if unknown:
        raise PerturbkitInputError(f"operations={unknown} not known; choose from {', '.join(map(repr, OPERATIONS))}.")
    for name, value in (
        ("freq_cut", freq_cut),
        ("unique_cut", unique_cut),
        ("na_cutoff", na_cutoff),
        ("corr_threshold", corr_threshold),
    ):
        if not 0 <= value <= 1:
            raise PerturbkitInputError(f"{name}={value!r} must be between 0 and 1.")
    if min_variance < 0:
        raise PerturbkitInputError(f"min_variance={min_variance!r} must be >= 0.")
    if corr_method not in CORR_METHODS:
        raise PerturbkitInputError(f"corr_method={corr_method!r} is not known; use one of {CORR_METHODS}.")
    if "noise_removal" in operations and (noise_groups is None or noise_stdev_cutoff is None):
        raise PerturbkitInputError(
            "operation 'noise_removal' needs noise_groups= (an obs column naming each row's perturbation, or one "
            "label per row) and noise_stdev_cutoff= (largest mean within-group SD to keep, e.g. 0.8)."
        )
    if adata.n_vars == 0 or adata.n_obs == 0:
        raise PerturbkitInputError(f"adata is empty ({adata.n_obs} × {adata.n_vars}); nothing to select.")
    adata = modifiable(adata, copy=copy, caller="pk.pp.feature_select")
    X = adata.X
    if X is None:
        raise PerturbkitInputError("adata.X is empty; load the profiles into adata.X first.")
    if hasattr(X, "to_memory"):  # sparse matrix of a backed AnnData
        X = X.to_memory()
    X = X.toarray() if sp.issparse(X) else np.array(X, dtype=np.float64)
    X = X.astype(np.float64, copy=False)
    finite = np.isfinite(X)
    X = np.where(finite, X, np.nan)
    rows, samples_description = sample_mask(adata, samples, control_key=control_key)
    F = X[rows]
    names = np.asarray(adata.var_names)

    remaining = np.arange(adata.n_vars)
    dropped: dict[str, list[str]] = {}
    blocklist_source = None
    noise_source = None
    for op in operations:
        sub = F[:, remaining]
        if op == "variance_threshold":
            flag = _low_variance(sub, min_variance)
        elif op == "frequency_threshold":
            flag = _low_frequency(sub, freq_cut, unique_cut)
        elif op == "correlation_threshold":
            flag = _correlated(sub, corr_threshold, corr_method) if len(remaining) else np.zeros(0, bool)
        elif op == "drop_na_columns":
            flag = np.isnan(sub).mean(axis=0) > na_cutoff
        elif op == "blocklist":
            listed, blocklist_source = _blocklist_names(blocklist)
            flag = np.isin(names[remaining], list(listed))
        elif op == "drop_outliers":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns are kept
                flag = np.nanmax(np.abs(sub), axis=0, initial=-np.inf) > outlier_cutoff
        else:  # noise_removal
            labels, noise_source = _group_labels(adata, noise_groups, rows)
            flag = _noisy(sub, labels, noise_stdev_cutoff) if len(remaining) else np.zeros(0, bool)
        dropped[op] = dropped.get(op, []) + names[remaining[flag]].tolist()
        remaining = remaining[~flag]

    keep = np.zeros(adata.n_vars, dtype=bool)
    keep[remaining] = True
    if not keep.any():
        counts = {op: len(v) for op, v in dropped.items()}
        raise PerturbkitInputError(
            f"feature_select would drop all {adata.n_vars} features (dropped per operation: {counts}). Loosen the "
            f"cutoffs, compute the selection on other samples, or leave out an operation."
        )
    remaining_missing = int((~finite[:, keep]).sum())
    if remaining_missing:
        warnings.warn(
            f"{remaining_missing} missing (NaN/inf) values remain in the kept features; most perturbkit functions "
            f"need finite data. Add operations='drop_na_columns' with na_cutoff=0, or use pk.pp.drop_missing / "
            f"pk.pp.impute.",
            UserWarning,
            stacklevel=2,
        )

    record = storable(
        {
            "operations": operations,
            "samples": samples_description,
            "n_samples": int(rows.sum()),
            "min_variance": float(min_variance),
            "freq_cut": float(freq_cut),
            "unique_cut": float(unique_cut),
            "corr_threshold": float(corr_threshold),
            "corr_method": corr_method,
            "na_cutoff": float(na_cutoff),
            "outlier_cutoff": float(outlier_cutoff),
            "blocklist": blocklist_source,
            "noise_groups": noise_source,
            "noise_stdev_cutoff": None if noise_stdev_cutoff is None else float(noise_stdev_cutoff),
            "dropped": dropped,
            "n_features_before": int(adata.n_vars),
            "n_features_after": int(keep.sum()),
        }
    )
    adata._inplace_subset_var(keep)
    adata.uns["feature_select"] = record
    return adata if copy else None
