"""Group means by one sparse indicator matrix: the one place where rows are averaged per group."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp


def group_codes(obs: pd.DataFrame, by: list[str]) -> np.ndarray:
    """Integer group code per row, groups numbered in sorted key order; missing values form their own group."""
    return obs.groupby(by, sort=True, observed=True, dropna=False).ngroup().to_numpy()


def indicator(codes: np.ndarray, n_groups: int, weights: np.ndarray | None = None) -> sp.csr_matrix:
    """Sparse groups × rows matrix holding ``weights`` (default 1) where row ``i`` belongs to group ``codes[i]``.

    ``codes`` may be 2-D (several label sets of the same rows, stacked); code −1 leaves a row out.
    """
    codes = np.asarray(codes)
    n = codes.shape[-1]
    flat = codes.ravel()
    columns = np.tile(np.arange(n), flat.size // n) if codes.ndim > 1 else np.arange(n)
    data = np.ones(flat.size) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    keep = flat >= 0
    return sp.csr_matrix((data[keep], (flat[keep], columns[keep])), shape=(n_groups, n))


def group_means(X, codes: np.ndarray, n_groups: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean row of ``X`` per group code, in float64, and the group sizes.

    Parameters
    ----------
    X
        Rows × features, dense or sparse.
    codes
        Group code of each row (−1 leaves the row out); 2-D for several stacked label sets of the same rows.
    n_groups
        Number of groups (default ``codes.max() + 1``). Empty groups get NaN means and size 0.

    Returns
    -------
    ``(means, sizes)``: groups × features means and the number of rows in each group.
    """
    codes = np.asarray(codes)
    n_groups = int(codes.max()) + 1 if n_groups is None else int(n_groups)
    flat = codes.ravel()
    sizes = np.bincount(flat[flat >= 0], minlength=n_groups)
    sums = indicator(codes, n_groups) @ (X if sp.issparse(X) else np.asarray(X, dtype=np.float64))
    sums = sums.toarray() if sp.issparse(sums) else np.asarray(sums, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / sizes[:, None], sizes  # empty groups: NaN
