"""Feature selection for morphology (Cell Painting) profiles: variance, missing values, outliers, blocklist."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .._schema import PerturbkitInputError

OPERATIONS = ("variance", "missing", "outlier", "blocklist")

#: Built-in blocklist rule: a feature is dropped when its name contains any of these substrings. They mark
#: CellProfiler measurements that describe where an object sits in the image or how objects are numbered and
#: related (coordinates, centers, object numbers, parent/child links), not what the cell looks like.
DEFAULT_BLOCKLIST_PATTERNS = ("Location", "Center", "ObjectNumber", "Object_Number", "Parent", "Children")


def _blocklisted(var_names, blocklist) -> tuple[np.ndarray, str]:
    names = np.asarray(var_names, dtype=str)
    if blocklist is None:
        hit = np.array([any(p in n for p in DEFAULT_BLOCKLIST_PATTERNS) for n in names], dtype=bool)
        return hit, "built-in"
    if isinstance(blocklist, (str, Path)):
        path = Path(blocklist).expanduser()
        if not path.is_file():
            raise PerturbkitInputError(
                f"blocklist={str(blocklist)!r} is not a readable file. Pass a text file with one feature name per "
                f"line, a list of feature names, or blocklist=None for the built-in rule."
            )
        lines = [line.strip() for line in path.read_text().splitlines()]
        listed = {line for line in lines if line and not line.startswith("#")}
        source = str(path)
    else:
        listed = {str(b) for b in blocklist}
        source = "list"
    return np.isin(names, list(listed)), source


def _low_variance(X: np.ndarray, freq_cut: float, unique_cut: float) -> np.ndarray:
    """Near-zero-variance rule per column (NaN ignored): a single distinct value, or the second most common value
    is rarer than ``freq_cut`` × the most common one while distinct values make up less than ``unique_cut`` of rows."""
    n_obs, n_var = X.shape
    drop = np.zeros(n_var, dtype=bool)
    S = np.sort(X, axis=0)  # NaN sort last
    for j in range(n_var):
        col = S[:, j]
        n_valid = n_obs - int(np.isnan(col).sum())
        col = col[:n_valid]
        if n_valid == 0:
            drop[j] = True
            continue
        starts = np.flatnonzero(np.concatenate([[True], col[1:] != col[:-1]]))
        if len(starts) == 1:
            drop[j] = True
            continue
        run = np.diff(np.append(starts, n_valid))
        top2 = np.partition(run, len(run) - 2)[-2:]
        freq_ratio = top2[0] / top2[1]
        unique_fraction = len(run) / n_valid
        drop[j] = freq_ratio < freq_cut and unique_fraction < unique_cut
    return drop


def feature_select(
    adata,
    *,
    operations=OPERATIONS,
    freq_cut: float = 0.05,
    unique_cut: float = 0.01,
    na_cutoff: float = 0.05,
    outlier_cutoff: float = 15,
    blocklist=None,
    copy: bool = False,
):
    """Drop uninformative or unreliable features (columns), pycytominer-style; NaN in X is allowed here.

    Parameters
    ----------
    adata
        AnnData of profiles (observations × features), typically Cell Painting.
    operations
        Any of:

        ``"variance"``
            Drop near-constant features: a single distinct value, or the second most common value's count is below
            ``freq_cut`` × the most common value's count AND distinct values are fewer than ``unique_cut`` × rows.
        ``"missing"``
            Drop features whose fraction of missing (NaN or infinite) values exceeds ``na_cutoff``. Use
            ``na_cutoff=0`` to drop every feature with any missing value (needed before the finite-only steps).
        ``"outlier"``
            Drop features whose max ``|x|`` exceeds ``outlier_cutoff``. The data are assumed robustly standardized
            (e.g. per-plate median/MAD normalization against controls), so the cutoff is in SD units.
        ``"blocklist"``
            Drop listed features: ``blocklist`` is a list of names or a text file (one name per line, ``#``
            comments). ``None`` uses the built-in rule: names containing any of ``DEFAULT_BLOCKLIST_PATTERNS``
            (Location, Center, ObjectNumber, Object_Number, Parent, Children: image position and object
            bookkeeping, not morphology).
    copy
        Return a new AnnData and leave ``adata`` untouched; otherwise subset ``adata`` in place and return None.

    ``adata.uns['feature_select']`` records the parameters and, per operation, the features it flagged
    (``dropped``; one feature may be flagged by several), plus the feature counts before and after.

    Examples
    --------
    >>> pk.pp.feature_select(adata, na_cutoff=0)      # drop every feature with a missing value
    >>> adata.uns["feature_select"]["dropped"]["blocklist"][:3]
    """
    operations = [operations] if isinstance(operations, str) else list(operations)
    unknown = [op for op in operations if op not in OPERATIONS]
    if unknown:
        raise PerturbkitInputError(
            f"operations={unknown} not known; choose from {', '.join(map(repr, OPERATIONS))}."
        )
    if adata.n_vars == 0 or adata.n_obs == 0:
        raise PerturbkitInputError(f"adata is empty ({adata.n_obs} × {adata.n_vars}); nothing to select.")
    X = adata.X
    if X is None:
        raise PerturbkitInputError("adata.X is empty; load the profiles into adata.X first.")
    X = X.toarray() if sp.issparse(X) else np.array(X, dtype=np.float64)
    X = X.astype(np.float64, copy=False)
    finite = np.isfinite(X)
    names = adata.var_names

    flagged: dict[str, np.ndarray] = {}
    blocklist_source = None
    if "missing" in operations:
        flagged["missing"] = (~finite).mean(axis=0) > na_cutoff
    Xn = np.where(finite, X, np.nan)
    if "variance" in operations:
        flagged["variance"] = _low_variance(Xn, freq_cut, unique_cut)
    if "outlier" in operations:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
            flagged["outlier"] = np.nan_to_num(np.nanmax(np.abs(Xn), axis=0), nan=0.0) > outlier_cutoff
    if "blocklist" in operations:
        flagged["blocklist"], blocklist_source = _blocklisted(names, blocklist)

    drop = np.zeros(adata.n_vars, dtype=bool)
    for mask in flagged.values():
        drop |= mask
    if drop.all():
        counts = {op: int(m.sum()) for op, m in flagged.items()}
        raise PerturbkitInputError(
            f"feature_select would drop all {adata.n_vars} features (flagged per operation: {counts}). Loosen the "
            f"cutoffs (freq_cut, unique_cut, na_cutoff, outlier_cutoff), or leave out an operation."
        )
    remaining_missing = int((~finite[:, ~drop]).sum())
    if remaining_missing:
        warnings.warn(
            f"{remaining_missing} missing (NaN/inf) values remain in the kept features; most perturbkit functions "
            f"need finite data. Use na_cutoff=0 to drop every feature with a missing value, or drop those rows.",
            UserWarning,
            stacklevel=2,
        )

    record = {
        "operations": operations,
        "freq_cut": float(freq_cut),
        "unique_cut": float(unique_cut),
        "na_cutoff": float(na_cutoff),
        "outlier_cutoff": float(outlier_cutoff),
        "blocklist": blocklist_source,
        "dropped": {op: names[m].tolist() for op, m in flagged.items()},
        "n_features_before": int(adata.n_vars),
        "n_features_after": int((~drop).sum()),
    }
    if copy:
        adata = adata[:, ~drop].copy()
    else:
        adata._inplace_subset_var(~drop)
    adata.uns["feature_select"] = record
    return adata if copy else None
