"""Profiles relative to their controls: X minus the mean control profile of the same plate / cell line."""

from __future__ import annotations

import anndata as ad
import numpy as np
import scipy.sparse as sp

from .._groups import group_codes, group_means
from .._schema import (
    OBS_KEYS,
    EmptyGroupError,
    check_finite,
    check_positive_int,
    control_mask,
    dense_matrix,
    modifiable,
    require_columns,
    stored_matrix,
)
from . import _chunked


def control_diff(
    adata,
    *,
    control_key: str = OBS_KEYS.control_key,
    groupby="plate",
    layer: str | None = None,
    key_added: str | None = None,
    chunk_rows: int | None = None,
    copy: bool = False,
) -> ad.AnnData | None:
    """Subtract from every profile the mean of the control rows in its group.

    Parameters
    ----------
    adata
        AnnData with finite values in X (or ``layer``) and a boolean ``obs[control_key]``.
    control_key
        obs column that is True for vehicle (e.g. DMSO) controls.
    groupby
        obs column(s) whose groups each get their own control mean, e.g. ``"plate"`` or ``"cell_line"``; ``None``
        uses one global control mean. Every group needs at least one control row.
    layer
        Read from ``adata.layers[layer]`` instead of X.
    key_added
        Write the result to ``adata.layers[key_added]``; ``None`` overwrites X. The result is dense float32.
    chunk_rows
        Rows per block when X is out of core (a backed ``.h5ad`` or a dask array); ``None``: blocks of about 16 MB
        in float64. The control means are summed block by block in float64 (one pass).
    copy
        Return a new AnnData and leave ``adata`` untouched; otherwise modify ``adata`` and return None (a backed
        AnnData is refused: pass ``copy=True``).

    Returns
    -------
    The AnnData with the differences if ``copy=True``, else None. ``uns['control_diff']`` records the parameters,
    the group labels (``groups``), the number of controls per group (``n_controls``) and the subtracted means
    (``control_means``, groups × features). Out-of-core data stays out of core: when X is a dask array or the
    AnnData is backed (``copy=True``), the differences are a lazy float32 dask array computed block by block (a
    backed file is reopened read-only for each block; with ``key_added``, X of the copy reads the file lazily too).

    Examples
    --------
    >>> pk.pp.control_diff(adata, groupby="cell_line")
    >>> adata[adata.obs["control"]].X.mean(axis=0)   # ~0 within each cell line
    """
    check_positive_int(chunk_rows, "chunk_rows", allow_none=True)
    mask = control_mask(adata, control_key)
    by = None if groupby is None else ([groupby] if isinstance(groupby, str) else list(groupby))
    if by is not None:
        require_columns(adata, by, purpose="control_diff(groupby=...)")
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    source = stored_matrix(adata, layer)
    lazy = _chunked.is_out_of_core(source)
    if not lazy:
        X = dense_matrix(adata, layer)
        check_finite(X, where=where)

    if by is None:
        codes = np.zeros(adata.n_obs, dtype=np.int64)
        labels = ["all"]
    else:
        codes = group_codes(adata.obs, by)
        first = np.unique(codes, return_index=True)[1]
        labels = adata.obs.iloc[first][by].astype(str).agg("|".join, axis=1).tolist()
    n_groups = len(labels)
    n_controls = np.bincount(codes[mask], minlength=n_groups)
    empty = np.flatnonzero(n_controls == 0)
    if len(empty):
        shown = [labels[g] for g in empty[:10]]
        if len(by) == 1:
            where = f"obs[{by[0]!r}]"
            drop = f", e.g. adata = adata[~adata.obs[{by[0]!r}].astype(str).isin({shown})].copy()"
        else:
            where, drop = f"obs columns {by}", ""
        raise EmptyGroupError(
            f"{len(empty)} of {n_groups} groups of {where} have no control rows (obs[{control_key!r}] is False for "
            f"all their rows): {shown}{' ...' if len(empty) > 10 else ''}. Group by a coarser column (e.g. "
            f"groupby='cell_line', or groupby=None for one global control mean), or drop those rows{drop}."
        )
    if lazy:
        rows = _chunked.resolve_chunk_rows(chunk_rows, source.shape[1])
        means = _control_means(source, np.where(mask, codes, -1), n_groups, rows, where)

        def subtract(block, rows_, cols):
            return block.astype(np.float32) - means[codes[rows_]][:, cols]

        result = _chunked.lazy_map(source, subtract, dtype=np.float32, chunk_rows=rows)
        target = modifiable(adata, copy=copy, caller="pk.pp.control_diff", keep_x=False)
        if target.X is None:  # a copy made without X
            target.X = result if key_added is None else _chunked.as_dask(source, chunk_rows=rows)
        adata = target
    else:
        means = group_means(X, np.where(mask, codes, -1), n_groups)[0].astype(np.float32)
        result = X - means[codes]
        adata = modifiable(adata, copy=copy, caller="pk.pp.control_diff")
    if key_added is None:
        adata.X = result
    else:
        adata.layers[key_added] = result
    adata.uns["control_diff"] = {
        "control_key": control_key,
        "groupby": by if by is None or len(by) > 1 else by[0],
        "layer": layer,
        "key_added": key_added,
        "groups": labels,
        "n_controls": n_controls.astype(np.int64),
        "control_means": means,
    }
    return adata if copy else None


def _control_means(X, control_codes: np.ndarray, n_groups: int, chunk_rows: int, where: str) -> np.ndarray:
    """Mean control row per group (float32), summed block by block in float64; NaN / inf anywhere in X raise."""
    check = _chunked.FiniteCheck(where)
    sums = np.zeros((n_groups, X.shape[1]))
    for start, stop, block in _chunked.row_blocks(X, chunk_rows=chunk_rows, desc="control_diff: control means"):
        block = np.asarray(block.toarray() if sp.issparse(block) else block, dtype=np.float32).astype(np.float64)
        check.update(block, start)
        _chunked.add_group_sums(sums, control_codes[start:stop], block)
    check.raise_if_bad()
    counts = np.bincount(control_codes[control_codes >= 0], minlength=n_groups)
    return (sums / counts[:, None]).astype(np.float32)
