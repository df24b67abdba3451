"""Join a per-drug table (e.g. the Drug Repurposing Hub) into ``adata.obs``."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from .._schema import MissingColumnError, PerturbkitInputError, modifiable


def _normalise(values) -> pd.Series:
    """Keys compared case- and surrounding-space-insensitively; missing stays missing."""
    return (
        pd.Series(values, copy=False).astype(object).map(lambda v: np.nan if _missing(v) else str(v).strip().casefold())
    )


def _missing(v) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def annotate(
    adata,
    table: pd.DataFrame,
    *,
    on: str = "drug",
    table_on: str | None = None,
    columns=None,
    overwrite: bool = False,
    copy: bool = False,
) -> ad.AnnData | None:
    """Left-join columns of a per-drug ``table`` into ``adata.obs``, matching names case-insensitively.

    LINCS and the Repurposing Hub spell drug names with different case (``"BRD-K..."`` vs ``"brd-k..."``,
    ``"Dasatinib"`` vs ``"dasatinib"``), so keys are compared after stripping spaces and case-folding.

    Parameters
    ----------
    adata
        Profiles with ``obs[on]``.
    table
        One row per key, e.g. :func:`perturbkit.io.read_repurposing_hub`'s output.
    on
        ``obs`` column holding the key (default ``"drug"``).
    table_on
        ``table`` column holding the key; default ``on`` if the table has it, else ``"drug"``.
    columns
        Table columns to add (default: all but the key).
    overwrite
        If an ``obs`` column of the same name exists: ``False`` (default) only fills its missing values; ``True``
        replaces the values of matched rows (unmatched rows keep theirs).
    copy
        Return a new AnnData instead of modifying ``adata`` in place.

    Returns
    -------
    The annotated AnnData if ``copy=True``, else None. ``adata.uns['annotate']`` records the parameters,
    ``n_matched`` (rows), ``n_keys`` / ``n_keys_matched`` (distinct keys) and up to 50 ``unmatched`` keys.
    """
    if not isinstance(table, pd.DataFrame):
        raise PerturbkitInputError(
            f"table must be a pandas DataFrame, not {type(table).__name__}; e.g. "
            f"table = pk.io.read_repurposing_hub('repurposing_drugs.txt', 'repurposing_samples.txt')."
        )
    if on not in adata.obs.columns:
        raise MissingColumnError(
            f"adata.obs has no column {on!r} to match the table on. Available columns: "
            f"{list(adata.obs.columns)[:20]}. Pass on= naming the obs column with the drug names (or ids), e.g. "
            f"pk.pp.annotate(adata, table, on='pert_iname')."
        )
    if table_on is None:
        table_on = on if on in table.columns else "drug"
    if table_on not in table.columns:
        raise PerturbkitInputError(
            f"The table has no key column {table_on!r}; its columns are {list(table.columns)[:12]}. Pass "
            f"table_on= naming the table column that matches obs[{on!r}]."
        )
    if columns is None:
        columns = [c for c in table.columns if c != table_on]
    else:
        columns = [columns] if isinstance(columns, str) else list(columns)
        absent = [c for c in columns if c not in table.columns]
        if absent:
            raise PerturbkitInputError(
                f"columns= names {absent}, which the table lacks; its columns are {list(table.columns)[:12]}."
            )
        columns = [c for c in columns if c != table_on]

    table_keys = _normalise(table[table_on])
    keep = table_keys.notna().to_numpy()
    dup = table_keys[keep].duplicated(keep=False)
    if dup.any():
        examples = table.loc[keep, table_on][dup.to_numpy()].astype(str).unique()[:6].tolist()
        raise PerturbkitInputError(
            f"The table's key column {table_on!r} has {int(dup.sum())} entries that are equal ignoring case, e.g. "
            f"{examples}, so a row could match several; keep one per key, e.g. "
            f"table = table.drop_duplicates({table_on!r})."
        )
    lookup = table.loc[keep, columns].copy()
    lookup.index = pd.Index(table_keys[keep].to_numpy())

    adata = modifiable(adata, copy=copy, caller="pk.pp.annotate")
    obs = adata.obs
    obs_keys = _normalise(obs[on])
    matched = obs_keys.isin(lookup.index).to_numpy()
    rows = obs_keys.to_numpy()

    for column in columns:
        incoming = pd.Series(lookup[column].reindex(rows).to_numpy(), index=obs.index)
        if incoming.dtype == object:
            inferred = pd.api.types.infer_dtype(incoming, skipna=True)
            if inferred in ("floating", "integer", "mixed-integer-float"):
                incoming = pd.to_numeric(incoming)
        if column not in obs.columns:
            obs[column] = incoming
        elif overwrite:
            obs[column] = obs[column].astype(object).where(~matched, incoming)
            obs[column] = pd.Series(obs[column].to_list(), index=obs.index).infer_objects()
        else:
            current = obs[column]
            fill = current.isna().to_numpy() & matched
            if fill.any():
                obs[column] = pd.Series(
                    current.astype(object).where(~fill, incoming).to_list(), index=obs.index
                ).infer_objects()

    distinct = pd.unique(obs_keys.dropna())
    unmatched = [k for k in distinct if k not in lookup.index]
    original = dict(zip(obs_keys, obs[on].astype(object), strict=True))
    adata.uns["annotate"] = {
        "on": on,
        "table_on": table_on,
        "columns": [str(c) for c in columns],
        "overwrite": bool(overwrite),
        "n_obs": int(adata.n_obs),
        "n_matched": int(matched.sum()),
        "n_keys": int(len(distinct)),
        "n_keys_matched": int(len(distinct) - len(unmatched)),
        "unmatched": [str(original[k]) for k in unmatched[:50]],
    }
    return adata if copy else None
