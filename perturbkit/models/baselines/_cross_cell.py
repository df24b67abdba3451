"""Cross-cell-line baselines: the input profile itself (naive) and a ridge-regression map."""

from __future__ import annotations

import numpy as np


def naive_cross_cell(source_profiles) -> np.ndarray:
    """The naive prediction: the drug's profile in the source cell line(s), averaged when several are given.

    ``source_profiles`` is (n_drugs, n_features) or (n_drugs, n_sources, n_features).
    """
    x = np.asarray(source_profiles, dtype=np.float32)
    return x.mean(axis=1) if x.ndim == 3 else x


class RidgeMap:
    """Linear map between cell lines, ``target ≈ source @ W + b``, with the penalty chosen by generalised CV."""

    def __init__(self, alphas=(1e-1, 1, 10, 100, 1e3, 1e4, 1e5)):
        self.alphas = tuple(alphas)

    def fit(self, source: np.ndarray, target: np.ndarray) -> RidgeMap:
        from sklearn.linear_model import RidgeCV

        self.model_ = RidgeCV(alphas=self.alphas).fit(np.asarray(source), np.asarray(target))
        return self

    def predict(self, source: np.ndarray) -> np.ndarray:
        return self.model_.predict(np.asarray(source)).astype(np.float32)
