"""Small numerical helpers that every layer may use (one definition each)."""

from __future__ import annotations

import numpy as np


def pearson_rows(a, b) -> np.ndarray:
    """Pearson correlation between matching rows of ``a`` and ``b`` (1-D inputs give a scalar array).

    Rows with zero variance give NaN.

    Parameters
    ----------
    a, b
        Arrays of the same shape (rows × values), or shapes that broadcast.

    Returns
    -------
    One correlation per row.

    Examples
    --------
    >>> pk.metrics.pearson_rows(pred.X, truth.X).mean()
    """
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    if a.shape != b.shape:
        a, b = np.broadcast_arrays(a, b)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denom = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(axis=1) / denom
