"""Profiles relative to their controls: X minus the mean control profile of the same plate / cell line."""

from __future__ import annotations

import anndata as ad
import numpy as np

from .._groups import group_codes, group_means
from .._schema import (
    OBS_KEYS,
    EmptyGroupError,
    check_finite,
    control_mask,
    dense_matrix,
    modifiable,
    require_columns,
)


def control_diff(
    adata,
    *,
    control_key: str = OBS_KEYS.control_key,
    groupby="plate",
    layer: str | None = None,
    key_added: str | None = None,
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
    copy
        Return a new AnnData and leave ``adata`` untouched; otherwise modify ``adata`` and return None.

    Returns
    -------
    The AnnData with the differences if ``copy=True``, else None. ``uns['control_diff']`` records the parameters,
    the group labels (``groups``), the number of controls per group (``n_controls``) and the subtracted means
    (``control_means``, groups × features).

    Examples
    --------
    >>> pk.pp.control_diff(adata, groupby="cell_line")
    >>> adata[adata.obs["control"]].X.mean(axis=0)   # ~0 within each cell line
    """
    mask = control_mask(adata, control_key)
    by = None if groupby is None else ([groupby] if isinstance(groupby, str) else list(groupby))
    if by is not None:
        require_columns(adata, by, purpose="control_diff(groupby=...)")
    X = dense_matrix(adata, layer)
    check_finite(X, where="adata.X" if layer is None else f"adata.layers[{layer!r}]")

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
