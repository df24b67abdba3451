"""Collapse replicate profiles into one profile per group: mean, median or LINCS-style MODZ."""

from __future__ import annotations

import copy as _copy
from collections.abc import Sequence
from functools import partial
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._groups import group_codes, group_means
from .._schema import (
    EmptyGroupError,
    PerturbkitInputError,
    check_finite,
    check_positive_int,
    require_columns,
    stored_matrix,
)
from . import _chunked

METHODS = ("mean", "median", "modz")
MODZ_MIN_WEIGHT = 0.01


def _rank_rows(B: np.ndarray) -> np.ndarray:
    """Ranks (1..p, ties get their average rank) along the last axis of a 2-D array."""
    m, p = B.shape
    order = np.argsort(B, axis=1)
    S = np.take_along_axis(B, order, axis=1)
    new_run = np.ones((m, p), dtype=bool)
    new_run[:, 1:] = S[:, 1:] != S[:, :-1]
    positions = np.broadcast_to(np.arange(1, p + 1, dtype=np.float64), (m, p))
    if not new_run.all():  # ties: every member of a run of equal values gets the run's mean position
        run = np.cumsum(new_run.ravel()) - 1
        mean_pos = np.bincount(run, weights=positions.ravel()) / np.bincount(run)
        positions = mean_pos[run].reshape(m, p)
    ranks = np.empty((m, p))
    np.put_along_axis(ranks, order, positions, axis=1)
    return ranks


def _modz_weights(block: np.ndarray, min_weight: float = MODZ_MIN_WEIGHT, decimals: int | None = 4) -> np.ndarray:
    """MODZ replicate weights for a stack of groups, as LINCS (cmapPy's ``agg_wt_avg``, pycytominer's ``modz``).

    ``block`` is groups × replicates × features. Each replicate's profile is ranked over features and the
    replicates' pairwise Spearman correlations are clipped at 0. Replicate i gets ``max(mean clipped correlation with
    the others, min_weight)``; the weights are normalised to sum 1 per group, then rounded to ``decimals``
    (LINCS rounds them to 4; ``None`` keeps them exact). A constant replicate has no defined correlation: it is left
    out of the others' means and gets weight 0 (a group with no defined correlation gets equal weights).
    Returns groups × replicates.
    """
    n_groups, n_rep, _ = block.shape
    if n_rep == 1:
        return np.ones((n_groups, 1))
    if n_rep == 2:  # both replicates share their one correlation (or have none): equal weights, a plain mean
        return np.full((n_groups, 2), 0.5)
    ranks = _rank_rows(block.reshape(n_groups * n_rep, -1)).reshape(block.shape)
    ranks -= ranks.mean(axis=2, keepdims=True)
    norms = np.sqrt((ranks * ranks).sum(axis=2, keepdims=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        ranks = ranks / norms  # a constant replicate: NaN
    corr = np.clip(ranks @ ranks.transpose(0, 2, 1), 0.0, None)  # negative correlations count as 0
    defined = ~np.isnan(corr)
    defined[:, np.arange(n_rep), np.arange(n_rep)] = False
    n_defined = defined.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_other = np.where(defined, corr, 0.0).sum(axis=2) / n_defined
    w = np.where(n_defined > 0, np.maximum(mean_other, min_weight), 0.0)
    total = w.sum(axis=1, keepdims=True)
    w = w / np.where(total > 0, total, 1.0)
    if decimals is not None:
        w = np.round(w, decimals)
    return np.where(total > 0, w, 1.0 / n_rep)  # no defined correlation at all: the plain mean


def _loop_by_size(
    X, codes: np.ndarray, n_groups: int, reduce, *, dtype=np.float64, take=None, batch_values: int = 2_000_000
):
    """Apply ``reduce`` (groups × replicates × features → groups × features) to all groups of one size at once.

    The groups' rows are read ``batch_values`` values at a time (16 MB in float64 by default) with ``take(rows)``
    (a dense float64 array of those rows); by default by indexing ``X`` in memory. Each group's float64 result
    is stored as ``dtype``.
    """
    if take is None:
        if sp.issparse(X):
            X = sp.csr_matrix(X)

        def take(rows):
            sub = X[rows]
            return sub.toarray() if sp.issparse(sub) else np.asarray(sub, dtype=np.float64)

    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    out = np.empty((n_groups, X.shape[1]), dtype=dtype)
    for size in np.unique(sizes):
        groups = np.flatnonzero(sizes == size)
        rows = order[(starts[groups][:, None] + np.arange(size)[None, :]).ravel()]
        n_chunks = max(1, len(rows) * X.shape[1] // batch_values)  # bounds the dense block's memory
        for chunk in np.array_split(np.arange(len(groups)), n_chunks):
            sub = take(rows.reshape(len(groups), size)[chunk].ravel())
            out[groups[chunk]] = reduce(sub.reshape(len(chunk), size, X.shape[1]).astype(np.float64, copy=False))
    return out


def _median(block: np.ndarray) -> np.ndarray:
    return np.median(block, axis=1)


def _modz(block: np.ndarray, min_weight: float = MODZ_MIN_WEIGHT, decimals: int | None = 4) -> np.ndarray:
    w = _modz_weights(block, min_weight, decimals)
    return np.einsum("gr,grf->gf", w, block)


def _constant_columns(obs: pd.DataFrame, columns: list[str], codes: np.ndarray) -> list[str]:
    """Columns whose value (missing counts as a value) is the same for all rows of every group."""
    if not columns:
        return []
    factorised = pd.DataFrame({c: pd.factorize(obs[c].astype(object), use_na_sentinel=False)[0] for c in columns})
    grouped = factorised.groupby(codes)
    constant = (grouped.min() == grouped.max()).all(axis=0)
    return [c for c in columns if constant[c]]


def aggregate(
    adata,
    *,
    by=("cell_line", "drug"),
    method: Literal["mean", "median", "modz"] = "mean",
    layer: str | None = None,
    keep_obs: Literal["first-constant"] | str | Sequence[str] | None = "first-constant",
    modz_min_weight: float = MODZ_MIN_WEIGHT,
    modz_weight_decimals: int | None = 4,
    chunk_rows: int | None = None,
) -> ad.AnnData:
    """One profile per group of rows: the mean, median or MODZ of its replicates.

    Parameters
    ----------
    adata
        AnnData with finite values in X (or ``layer``). Sparse X is supported.
    by
        obs column(s) defining the groups, e.g. ``("cell_line", "drug")`` to average over doses and time points, or
        ``("plate", "well")``-style keys to collapse replicates. Missing values form their own group.
    method
        ``"mean"``, ``"median"`` or ``"modz"``: LINCS's moderated z-score (level 5 consensus signatures), a weighted
        mean of the replicates. As in cmapPy's ``agg_wt_avg`` and pycytominer's ``consensus(operation="modz")``,
        each replicate's Spearman correlations with the other replicates are clipped at 0 and averaged; its weight
        is ``max(that mean, modz_min_weight)``, normalised so a group's weights sum to 1, then rounded to
        ``modz_weight_decimals``. An outlying or anticorrelated replicate thus counts little (one replicate:
        itself; two: their plain mean). A constant replicate has no defined correlation and gets weight 0.
    layer
        Aggregate ``adata.layers[layer]`` instead of X; the result goes to X.
    keep_obs
        ``"first-constant"`` keeps every other obs column whose value is constant within all groups (e.g. moa,
        smiles, control); ``None`` keeps only the ``by`` columns; a column name or list of names keeps those,
        taking the first row's value in each group.
    modz_min_weight
        Smallest raw MODZ weight (cmapPy's ``min_wt``, pycytominer's ``min_weight``).
    modz_weight_decimals
        Decimals the normalised MODZ weights are rounded to before use, as both references do (their
        ``precision``/``rounding_precision`` 4). ``None`` uses the exact weights, which then sum to exactly 1.
    chunk_rows
        Rows per block when X is out of core (a backed ``.h5ad`` or a dask array); ``None``: blocks of about 16 MB
        in float64. The mean is summed per group in one pass over the row blocks; median and MODZ read the rows of
        a batch of groups (about ``chunk_rows`` rows) at a time, so they are fastest when the file is sorted by the
        ``by`` columns (each batch then lies in one or two blocks).

    Returns
    -------
    A new AnnData with one row per group (obs names like ``"MCF7|drugA"``), obs holding the ``by`` columns,
    ``n_profiles`` and the kept columns; var, varm and a copy of uns carry over, with ``uns['aggregate']``
    recording the parameters. X is float32 (float64 input stays float64); a sparse X stays sparse with
    ``method="mean"``. ``adata`` itself is never modified. The result is always in memory, also for out-of-core
    input (it has one row per group).

    Notes
    -----
    MODZ agrees with pycytominer 1.7.1 and cmapPy 4.0.1 to float precision (tests/test_pp_reference.py). For a
    replicate that is constant across features, pycytominer also gives weight 0; cmapPy returns NaN for its group.

    Examples
    --------
    >>> consensus = pk.pp.aggregate(adata, by=("cell_line", "drug"), method="modz")
    >>> consensus.obs[["cell_line", "drug", "n_profiles"]].head()
    """
    by = [by] if isinstance(by, str) else list(by)
    if not by:
        raise PerturbkitInputError(
            "by= is empty; name the obs column(s) that define the groups, e.g. by=('cell_line', 'drug')."
        )
    if method not in METHODS:
        raise PerturbkitInputError(f"method={method!r} is not known; use one of {', '.join(map(repr, METHODS))}.")
    if modz_weight_decimals is not None and (
        isinstance(modz_weight_decimals, bool) or not isinstance(modz_weight_decimals, (int, np.integer))
    ):
        raise PerturbkitInputError(
            f"modz_weight_decimals={modz_weight_decimals!r} must be an integer number of decimals (LINCS: 4) or None."
        )
    if not 0 <= modz_min_weight <= 1:
        raise PerturbkitInputError(f"modz_min_weight={modz_min_weight!r} must be between 0 and 1 (LINCS: 0.01).")
    check_positive_int(chunk_rows, "chunk_rows", allow_none=True)
    require_columns(adata, by, purpose="aggregate(by=...)")
    if adata.n_obs == 0:
        raise EmptyGroupError("adata has no rows, so there is nothing to aggregate; load profiles into it first.")
    X = stored_matrix(adata, layer)
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    lazy = _chunked.is_out_of_core(X)
    if not lazy:
        check_finite(X, where=where)

    others = [c for c in adata.obs.columns if c not in by and c != "n_profiles"]
    if keep_obs == "first-constant":
        obs = adata.obs
        codes = group_codes(obs, by)
        keep = _constant_columns(obs, others, codes)
    elif keep_obs is None:
        codes = group_codes(adata.obs, by)
        keep = []
    else:
        keep = [keep_obs] if isinstance(keep_obs, str) else list(keep_obs)
        require_columns(adata, keep, purpose="aggregate(keep_obs=...)")
        keep = [c for c in keep if c not in by and c != "n_profiles"]
        codes = group_codes(adata.obs, by)

    n_groups = int(codes.max()) + 1
    counts = np.bincount(codes, minlength=n_groups)
    dtype = X.dtype if X.dtype == np.float64 else np.float32

    sparse = _chunked.is_sparse(X)
    if method == "mean":
        if lazy:
            means = _chunked_group_means(X, codes, n_groups, counts, chunk_rows, where)
        else:
            means, _ = group_means(sp.csr_matrix(X, dtype=np.float64) if sparse else X, codes, n_groups)
        out = sp.csr_matrix(means, dtype=dtype) if sparse else means.astype(dtype)
    else:
        if method == "median":
            reduce = _median
        else:
            reduce = partial(_modz, min_weight=float(modz_min_weight), decimals=modz_weight_decimals)
        if lazy:
            rows_per_block = _chunked.resolve_chunk_rows(chunk_rows, X.shape[1])

            def take(rows):
                block = _chunked.take_rows(X, rows, chunk_rows=rows_per_block)
                _chunked.check_blocks_finite(block, rows, where)
                return block

            batch = rows_per_block * X.shape[1]
            out = _loop_by_size(X, codes, n_groups, reduce, dtype=dtype, take=take, batch_values=batch)
        else:
            out = _loop_by_size(X, codes, n_groups, reduce, dtype=dtype)

    first = np.unique(codes, return_index=True)[1]
    new_obs = adata.obs.iloc[first][by + keep].copy()
    for c in new_obs.columns:
        if isinstance(new_obs[c].dtype, pd.CategoricalDtype):
            new_obs[c] = new_obs[c].cat.remove_unused_categories()
    new_obs.insert(len(by), "n_profiles", counts.astype(np.int64))
    names = new_obs[by].astype(str).agg("|".join, axis=1)
    new_obs.index = pd.Index(_make_unique(names.tolist()), dtype=object)

    result = ad.AnnData(
        X=out,
        obs=new_obs,
        var=adata.var.copy(),
        uns=_copy.deepcopy(dict(adata.uns)),
        varm={k: _copy.deepcopy(v) for k, v in adata.varm.items()},
    )
    result.uns["aggregate"] = {
        "by": by,
        "method": method,
        "layer": layer,
        "keep_obs": keep_obs if isinstance(keep_obs, str) or keep_obs is None else list(keep_obs),
        "kept_columns": keep,
        "n_obs_before": int(adata.n_obs),
        "n_groups": n_groups,
    }
    if method == "modz":
        result.uns["aggregate"]["modz_min_weight"] = float(modz_min_weight)
        result.uns["aggregate"]["modz_weight_decimals"] = modz_weight_decimals
    return result


def _chunked_group_means(X, codes, n_groups: int, counts, chunk_rows, where: str) -> np.ndarray:
    """Mean row per group of an out-of-core ``X``: per-group float64 sums over its row blocks (one pass)."""
    check = _chunked.FiniteCheck(where)
    sums = np.zeros((n_groups, X.shape[1]))
    for start, stop, block in _chunked.row_blocks(X, chunk_rows=chunk_rows, desc="aggregate: mean"):
        check.update(block, start)
        _chunked.add_group_sums(sums, codes[start:stop], block)
    check.raise_if_bad()
    sums /= counts[:, None]
    return sums


def _make_unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        if name in seen:
            seen[name] += 1
            out.append(f"{name}-{seen[name]}")
        else:
            seen[name] = 0
            out.append(name)
    return out
