"""AnnData's own format, with the schema's ``control`` column added."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._schema import EmptyGroupError, MissingColumnError, PerturbkitInputError
from ._utils import existing_path

if TYPE_CHECKING:
    from anndata import AnnData

_CONTROL_GUESSES = ("ctrl", "control", "dmso", "vehicle", "unstimulated", "untreated")


def read_h5ad(path, *, condition_key: str | None = None, control_value=None, control_key: str = "control") -> AnnData:
    """Read an ``.h5ad`` file with :func:`anndata.read_h5ad`, optionally adding the boolean ``control`` column.

    Parameters
    ----------
    path
        The ``.h5ad`` file.
    condition_key
        ``obs`` column telling control from treated cells (e.g. ``"condition"``). Without it, the file is
        returned as anndata reads it.
    control_value
        The value of ``condition_key`` that marks controls (e.g. ``"ctrl"``). If omitted, the first of "ctrl",
        "control", "DMSO", "vehicle", "unstimulated", "untreated" (any case) found in the column is used.
    control_key
        Name of the boolean column to add.

    Returns
    -------
    AnnData with ``obs[control_key]`` = (``obs[condition_key] == control_value``) when ``condition_key`` is given.
    """
    import anndata as ad

    path = existing_path(path, what=".h5ad file")
    try:
        adata = ad.read_h5ad(path)
    except OSError as err:
        raise PerturbkitInputError(f"'{path}' cannot be read as .h5ad (HDF5): {err}") from None
    if condition_key is None:
        return adata
    if condition_key not in adata.obs.columns:
        raise MissingColumnError(
            f"'{path}' has no obs column {condition_key!r}; its obs columns are {list(adata.obs.columns)[:20]}. Pass "
            f"condition_key= naming the column that tells control from treated cells."
        )
    values = adata.obs[condition_key].astype(object)
    present = [v for v in values.dropna().unique()]
    if control_value is None:
        lookup = {str(v).strip().lower(): v for v in present}
        found = [lookup[g] for g in _CONTROL_GUESSES if g in lookup]
        if not found:
            raise PerturbkitInputError(
                f"control_value= was not given and obs[{condition_key!r}] has none of the usual control labels; its "
                f"values are {present[:10]}. Pass control_value= naming the control condition."
            )
        control_value = found[0]
    mask = (values == control_value).to_numpy(dtype=bool)
    if not mask.any():
        raise EmptyGroupError(
            f"No cell has obs[{condition_key!r}] == {control_value!r}; the values are {present[:10]}. Pass the "
            f"control condition as control_value=."
        )
    adata.obs[control_key] = mask
    return adata
