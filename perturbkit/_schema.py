"""The obs schema shared by every perturbkit function, its errors, and :func:`validate`.

Every function takes the column names as keyword arguments with these defaults:

========== ============= ===========================================================
keyword     default       meaning
========== ============= ===========================================================
cell_key    ``cell_line``  cell line or cell type
drug_key    ``drug``       perturbagen name
dose_key    ``dose``       numeric dose (µM unless a reader says otherwise)
time_key    ``time``       numeric time point (hours)
moa_key     ``moa``        mechanism(s) of action, several joined by ``"|"``
control_key ``control``    bool, True for vehicle (DMSO) controls
smiles_key  ``smiles``     SMILES string of the compound
========== ============= ===========================================================
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp


@dataclass(frozen=True)
class ObsKeys:
    """The default obs column of each ``*_key`` keyword; every signature takes its default from :data:`OBS_KEYS`."""

    cell_key: str = "cell_line"
    drug_key: str = "drug"
    dose_key: str = "dose"
    time_key: str = "time"
    moa_key: str = "moa"
    control_key: str = "control"
    smiles_key: str = "smiles"


OBS_KEYS = ObsKeys()
DEFAULT_KEYS = asdict(OBS_KEYS)
MOA_SEPARATOR = "|"


class PerturbkitInputError(ValueError):
    """Base class of every bad-input error raised by perturbkit."""


class MissingColumnError(PerturbkitInputError):
    """A required ``obs`` column is absent."""


class NonFiniteError(PerturbkitInputError):
    """The data matrix holds NaN or infinite values."""


class EmptyGroupError(PerturbkitInputError):
    """A group the computation needs (e.g. the controls) has no rows."""


class ColumnTypeError(PerturbkitInputError):
    """An ``obs`` column has the wrong type (e.g. a non-numeric dose)."""


class GeneMismatchError(PerturbkitInputError):
    """The data's features do not match those a model was trained on."""


class UnknownCategoryError(PerturbkitInputError):
    """A value (cell line, drug, ...) that the data or the model does not know."""


class UnknownOptionError(PerturbkitInputError, TypeError):
    """An unknown keyword option: a :class:`PerturbkitInputError` that is also a ``TypeError``.

    It is the ``TypeError`` Python raises for an unexpected keyword argument.
    """


class DeviceError(PerturbkitInputError):
    """A device that is not known, or not available on this machine."""


class DownloadError(RuntimeError):
    """A data set could not be downloaded (no network, HTTP error, or a hash mismatch)."""


class FileFormatError(PerturbkitInputError):
    """A file is damaged, truncated, or not in the format its reader expects."""


class ModelFileError(FileFormatError):
    """A model file is damaged, foreign, or of a format version this perturbkit cannot read."""


def storable(value):
    """``value`` in a form ``AnnData.write_h5ad`` can store in ``uns``.

    Tuples become lists, ``None`` becomes ``"None"`` and numpy scalars Python numbers, recursively through dicts and
    lists.
    """
    if isinstance(value, dict):
        return {str(k): storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(v) for v in value]
    if value is None:
        return "None"
    if isinstance(value, np.generic):
        return value.item()
    return value


def require_columns(adata, columns, *, purpose: str = "") -> None:
    """Raise :class:`MissingColumnError` naming every absent ``obs`` column.

    ``columns`` is a list of names, or a mapping ``{keyword: column}`` (e.g. ``{"cell_key": "cell_type"}``) so the
    message can name the keyword argument that selects the column.
    """
    keywords = dict(columns) if isinstance(columns, dict) else {}
    names = list(keywords.values()) if keywords else list(columns)
    missing = [c for c in names if c is not None and c not in adata.obs.columns]
    if missing:
        why = f" (needed for {purpose})" if purpose else ""
        keyword = next((k for k, v in keywords.items() if v == missing[0]), None)
        raise MissingColumnError(
            f"adata.obs has no column {', '.join(map(repr, missing))}{why}. Available columns: "
            f"{list(adata.obs.columns)[:20]}. Add the column, or pass the name of the column that holds it, "
            f"e.g. {_keyword_hint(missing[0], keyword)}."
        )


def _keyword_hint(column: str, keyword: str | None = None) -> str:
    if keyword is not None:
        return f"{keyword}='<your column>'"
    for kw, default in DEFAULT_KEYS.items():
        if default == column:
            return f"{kw}='my_{default}_column'"
    return "the matching *_key= argument"


def modifiable(adata, *, copy: bool, caller: str, keep_x: bool = True):
    """The AnnData a ``copy=`` function should write into: a copy of ``adata``, or ``adata`` itself made safe to edit.

    ``copy=True`` gives an in-memory copy (also of a backed AnnData), so the caller's data and file stay as they
    are; ``keep_x=False`` leaves X out of the copy, for callers that replace X anyway (no copy of X is then made
    only to be thrown away). ``copy=False`` refuses a backed AnnData (editing it would write into the user's file
    on disk) and turns a view into an actual AnnData first, as scanpy does, so the parent it was sliced from is
    never changed.
    """
    if copy and not keep_x:
        import anndata as ad

        return ad.AnnData(
            X=None,
            obs=adata.obs.copy(),
            var=adata.var.copy(),
            uns=deepcopy(dict(adata.uns)),
            obsm={k: v.copy() for k, v in adata.obsm.items()},
            varm={k: v.copy() for k, v in adata.varm.items()},
            layers={k: v.copy() for k, v in adata.layers.items()},
            obsp={k: v.copy() for k, v in adata.obsp.items()},
            varp={k: v.copy() for k, v in adata.varp.items()},
        )
    if copy:
        return adata.to_memory() if adata.isbacked else adata.copy()
    if adata.isbacked:
        raise PerturbkitInputError(
            f"{caller}(copy=False) would change the file {adata.filename} that this backed AnnData reads from. "
            f"Pass copy=True to get a changed copy in memory, or load it first with adata = adata.to_memory()."
        )
    if adata.is_view:
        import warnings

        warnings.warn(
            f"{caller} received a view of an AnnData (e.g. adata[:100]); it is made an actual AnnData first, "
            f"so the AnnData it was sliced from stays unchanged. Pass a copy (adata[:100].copy()) to avoid this "
            f"warning.",
            UserWarning,
            stacklevel=3,
        )
        adata._init_as_actual(adata.copy())
    return adata


def stored_matrix(adata, layer: str | None = None):
    """``adata.X`` (or ``adata.layers[layer]``) as stored (dense, sparse or backed), refusing a missing one."""
    if layer is not None and layer not in adata.layers:
        raise PerturbkitInputError(
            f"adata.layers has no {layer!r}; available layers: {list(adata.layers)}. Pass one of them, or layer=None "
            f"for adata.X."
        )
    X = adata.X if layer is None else adata.layers[layer]
    if X is None:
        raise PerturbkitInputError("adata.X is empty; load the profiles into adata.X or pass layer=.")
    return X


def dense_matrix(adata, layer: str | None = None, *, dtype=np.float32) -> np.ndarray:
    """Return ``adata.X`` (or a layer) as a dense array of ``dtype`` (a copy only when conversion needs one)."""
    X = stored_matrix(adata, layer)
    if sp.issparse(X):
        X = X.toarray()
    return np.asarray(X, dtype=dtype)


def check_positive_int(value, name: str, *, allow_none: bool = False) -> None:
    """Raise :class:`PerturbkitInputError` unless ``value`` is a positive integer (or None, when allowed)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        hint = " or None" if allow_none else ""
        raise PerturbkitInputError(f"{name} must be a positive integer{hint}, got {value!r}.")


def check_finite(X, *, where: str = "adata.X") -> None:
    """Raise :class:`NonFiniteError` if ``X`` holds NaN or inf, naming how many and where."""
    values = X.data if sp.issparse(X) else np.asarray(X)
    if values.dtype.kind not in "fc":
        return
    bad = ~np.isfinite(values)
    if bad.any():
        n_nan = int(np.isnan(values).sum())
        n_inf = int(bad.sum()) - n_nan
        where_bad = ""
        if not sp.issparse(X) and values.ndim == 2:
            rows = np.flatnonzero(bad.any(axis=1))
            cols = np.flatnonzero(bad.any(axis=0))
            where_bad = (
                f" in {len(rows)} rows (first: {rows[:5].tolist()}) and {len(cols)} columns "
                f"(first: {cols[:5].tolist()})"
            )
        raise NonFiniteError(
            f"{where} holds {n_nan} NaN and {n_inf} infinite values{where_bad}. Remove or impute them first: "
            f"pk.pp.drop_missing(adata) drops the features that have them (axis='samples' drops the rows), and "
            f"pk.pp.impute(adata) fills them with each feature's median."
        )


def control_mask(adata, control_key: str = "control") -> np.ndarray:
    """Boolean mask of control rows; raises if the column is missing, not boolean-like, or has no True rows."""
    require_columns(adata, [control_key], purpose="finding the controls")
    col = adata.obs[control_key]
    if col.dtype == bool:
        mask = col.to_numpy()
    elif pd.api.types.is_bool_dtype(col) or set(pd.unique(col.dropna())) <= {0, 1}:
        if col.isna().any():
            raise ColumnTypeError(f"obs[{control_key!r}] has missing values; fill them with True/False.")
        mask = col.astype(bool).to_numpy()
    else:
        raise ColumnTypeError(
            f"obs[{control_key!r}] must be boolean (True for vehicle controls), but has dtype {col.dtype} with values "
            f"like {list(pd.unique(col))[:5]}. Convert it, e.g. "
            f"adata.obs[{control_key!r}] = adata.obs['drug'] == 'DMSO'."
        )
    if not mask.any():
        raise EmptyGroupError(
            f"No control rows: obs[{control_key!r}] is False for all {adata.n_obs} rows. Mark the vehicle (DMSO) "
            f"rows as True, or pass control_key= naming the column that flags them."
        )
    return mask


def numeric_column(adata, key: str) -> np.ndarray:
    """Return ``obs[key]`` as float, raising :class:`ColumnTypeError` when it is not numeric."""
    require_columns(adata, [key])
    col = adata.obs[key]
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        return col.to_numpy(dtype=float)
    converted = pd.to_numeric(col, errors="coerce")
    bad = col[converted.isna() & col.notna()]
    if len(bad):
        raise ColumnTypeError(
            f"obs[{key!r}] must be numeric, but {len(bad)} values are not, "
            f"e.g. {list(pd.unique(bad.astype(str)))[:5]}. "
            f"Convert it, e.g. adata.obs[{key!r}] = pd.to_numeric(adata.obs[{key!r}].str.extract(r'([\\d.]+)')[0])."
        )
    return converted.to_numpy(dtype=float)


def split_moa(value) -> list[str]:
    """Split a ``"A|B"`` MOA string into its parts (empty list for missing values)."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value == "":
        return []
    return [part.strip() for part in str(value).split(MOA_SEPARATOR) if part.strip()]


def validate(
    adata,
    *,
    cell_key: str | None = OBS_KEYS.cell_key,
    drug_key: str | None = OBS_KEYS.drug_key,
    dose_key: str | None = OBS_KEYS.dose_key,
    time_key: str | None = OBS_KEYS.time_key,
    moa_key: str | None = None,
    control_key: str | None = OBS_KEYS.control_key,
    smiles_key: str | None = None,
    layer: str | None = None,
) -> None:
    """Check that ``adata`` follows perturbkit's schema; raise an error naming the problem and the fix.

    Checks, in order: the columns exist; X (or ``layer``) is finite; ``control_key`` is boolean with at least one
    control row; ``dose_key`` and ``time_key`` are numeric. Never modifies ``adata``.

    Parameters
    ----------
    adata
        The profiles to check.
    cell_key, drug_key, dose_key, time_key, moa_key, control_key, smiles_key
        The obs columns to check; pass ``None`` for a key the data does not have and the task does not need.
    layer
        Check ``adata.layers[layer]`` instead of X.

    Returns
    -------
    None; a problem raises a :class:`PerturbkitInputError` subclass (e.g. :class:`MissingColumnError`,
    :class:`NonFiniteError`, :class:`EmptyGroupError`, :class:`ColumnTypeError`).

    Examples
    --------
    >>> adata = pk.datasets.simulate_bulk()
    >>> pk.pp.validate(adata)
    """
    keys = {
        "cell_key": cell_key,
        "drug_key": drug_key,
        "dose_key": dose_key,
        "time_key": time_key,
        "moa_key": moa_key,
        "control_key": control_key,
        "smiles_key": smiles_key,
    }
    require_columns(adata, keys)
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise EmptyGroupError(f"adata is empty ({adata.n_obs} × {adata.n_vars}); load profiles into it first.")
    X = adata.X if layer is None else adata.layers[layer]
    check_finite(X, where="adata.X" if layer is None else f"adata.layers[{layer!r}]")
    if control_key is not None:
        control_mask(adata, control_key)
    for key in (dose_key, time_key):
        if key is not None:
            numeric_column(adata, key)
