"""FaLRTC: fast low-rank tensor completion (Liu, Musialski, Wonka & Ye, IEEE TPAMI 2013), in NumPy.

The problem is ``min_X sum_i alpha_i ||X_(i)||_*  subject to  X_Omega = T_Omega``, where ``X_(i)`` is the mode-``i``
unfolding of the tensor. FaLRTC replaces each trace norm by its smooth approximation

    f_mu(X) = sum_i max_{||Y_(i)|| <= 1}  alpha_i <X, Y> - mu_i / 2 ||Y||_F^2,

whose gradient is ``sum_i alpha_i fold_i(U_i min(1, alpha_i sigma / mu_i) V_i^T)`` (``X_(i) = U_i diag(sigma) V_i^T``)
and is Lipschitz with constant ``sum_i alpha_i^2 / mu_i``, and minimises it over the free (unobserved) entries with
Nesterov's accelerated gradient method and a backtracking estimate of the Lipschitz constant (start ``L0``,
``L <- L / C`` until ``f(Y) <= f(X) - ||grad f(X)||^2 / (2L)``; ``L`` never exceeds the Lipschitz constant).

Differences from the authors' MATLAB code (``FaLRTC.m``): ``mu`` stays fixed, as in the paper's algorithm (the code
also decreases it from ``0.3 alpha_i ||X_(i)||_2`` to ``mu_i`` over the iterations); the data are scaled to a unit
root mean square of the observed entries while solving; and the Gram matrices of the unfoldings are updated only
where the free gene fibres change, so each iteration costs two eigendecompositions per mode instead of SVDs of the
long unfoldings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..._schema import NonFiniteError, PerturbkitInputError


@dataclass(frozen=True)
class FaLRTCDefaults:
    """FaLRTC's defaults, written once (the authors' reference example, ``example.m`` of the paper's code).

    ``mu_factor``: the smoothing ``mu_i = mu_factor * alpha_i / sqrt(n_i)`` (``n_i``: the tensor's size in mode
    ``i``); ``lipschitz_start`` and ``shrink``: the first estimate ``L0`` of the Lipschitz constant and the factor
    ``C`` of the backtracking (``L <- L / C`` until the step decreases ``f_mu`` enough); ``max_iter`` and ``tol``: stop
    after ``max_iter`` iterations or when ``||X_k - X_{k-1}||_F / ||T_Omega||_F < tol``. ``center``: perturbkit's
    optional centering of each (cell line, gene) on its observed profiles, off as in the paper (see
    :func:`falrtc`).
    """

    mu_factor: float = 5.0
    lipschitz_start: float = 1e-5
    shrink: float = 0.6
    max_iter: int = 500
    tol: float = 1e-5
    center: bool = False


DEFAULTS = FaLRTCDefaults()


def falrtc(
    tensor,
    observed,
    *,
    alpha: Sequence[float] | None = None,
    mu: Sequence[float] | None = None,
    max_iter: int = DEFAULTS.max_iter,
    tol: float = DEFAULTS.tol,
    center: bool = DEFAULTS.center,
    progress: bool = True,
) -> np.ndarray:
    """Complete a (cell lines × drugs × genes) tensor with FaLRTC.

    Parameters
    ----------
    tensor
        Array of shape ``(n_cells, n_drugs, n_genes)``. Its unobserved entries are never read (they may hold
        anything, NaN included): the result is the same whatever they hold.
    observed
        Boolean mask, either ``(n_cells, n_drugs)`` (a whole profile is measured or not) or of the tensor's shape.
    alpha
        Weights of the modes' trace norms (normalised to sum to 1). ``None``: equal weights ``1/3`` (the paper).
    mu
        Smoothing of each mode's trace norm. ``None``: ``mu_i = 5 alpha_i / sqrt(n_i)`` (the authors' example).
        The data are divided by the root mean square of their observed entries while solving, so ``mu`` is in
        those units and the result does not depend on the data's scale.
    max_iter, tol
        Stop after ``max_iter`` accelerated steps, or once ``||X_k - X_{k-1}||_F / ||T_Omega||_F < tol``.
    center
        ``False`` (the paper): complete the raw values. ``True``: subtract, for every (cell line, gene), the mean
        of its observed profiles first and add it back after (the gene-mode trace norm then pulls a wholly missing
        profile towards the cell line's mean profile instead of towards zero).
    progress
        Show a tqdm bar (when ``pk.settings.progress_bar`` is also on).

    Returns
    -------
    The completed tensor (float64, or the input's floating dtype), equal to ``tensor`` on the observed entries.

    Examples
    --------
    >>> completed = falrtc(tensor, observed)  # tensor: cells × drugs × genes, observed: cells × drugs
    """
    completed, _ = _falrtc(
        tensor, observed, alpha=alpha, mu=mu, max_iter=max_iter, tol=tol, center=center, progress=progress
    )
    return completed


def _falrtc(tensor, observed, *, alpha, mu, max_iter, tol, center, progress) -> tuple[np.ndarray, dict]:
    """The completed tensor and a summary: the weights and smoothing used, iterations, last relative change."""
    values, omega = _check_tensor(tensor, observed)
    out_dtype = values.dtype if values.dtype.kind == "f" else np.dtype(np.float64)
    _check_iterations(max_iter, tol)
    alpha_arr = _weights(alpha, values.ndim)
    mu_arr = (
        DEFAULTS.mu_factor * alpha_arr / np.sqrt(np.asarray(values.shape, dtype=float))
        if mu is None
        else _positive_vector(mu, values.ndim, "mu")
    )
    info = {"alpha": alpha_arr.tolist(), "mu": mu_arr.tolist(), "n_iter": 0, "last_change": 0.0, "converged": True}
    T = np.where(omega, values, 0.0).astype(np.float64)
    offset = _cell_gene_means(T, omega) if center else np.zeros((T.shape[0], 1, T.shape[2]))
    T = np.where(omega, T - offset, 0.0)
    scale = float(np.sqrt(np.mean(T[omega] ** 2)))
    if (~omega).any() and scale > 0:
        T /= scale
        X, run = _accelerated_gradient(
            T, omega, alpha_arr, mu_arr, max_iter=int(max_iter), tol=float(tol), progress=progress
        )
        info |= run
        completed = X * scale + offset
    else:  # nothing to complete, or every observed entry equals its offset
        completed = T + offset
    out = np.array(np.where(omega, values, completed), dtype=out_dtype)
    out[omega] = values[omega]  # exactly the input, whatever the arithmetic above did
    return out, info


# ------------------------------------------------------------------------------------------------------- the solver
class _SmoothTraceNorm:
    """``f_mu`` of a (cells × drugs × genes) tensor whose observed fibres are fixed, and its gradient.

    Only the gene fibres ``X[c, d, :]`` holding a free (unobserved) entry change during the solve, so the tensor is
    kept as a fixed part ``A`` (those fibres zeroed) plus the rows ``F`` of the changing fibres, and each mode's
    Gram matrix ``X_(i) X_(i)^T`` is the fixed part's (computed once) plus an update costing ``O(|F|)``. The
    singular values of ``X_(i)`` are the square roots of the Gram matrix's eigenvalues and, with ``X_(i) = U S V^T``,
    ``U min(S, gamma) V^T = U diag(min(1, gamma / s)) U^T X_(i)``: no SVD of the (long) unfoldings is needed.
    """

    def __init__(self, T: np.ndarray, omega: np.ndarray, alpha: np.ndarray, mu: np.ndarray) -> None:
        changing = (~omega).any(axis=2)
        self.cells, self.drugs = np.nonzero(changing)
        self.free = ~omega[self.cells, self.drugs]  # (n_fibres, n_genes): the free entries of the changing fibres
        self.start = T[self.cells, self.drugs]  # observed values of the changing fibres (0 at the free entries)
        self.fixed = np.where(changing[:, :, None], 0.0, T)
        self.by_cell = [np.flatnonzero(self.cells == c) for c in range(T.shape[0])]
        self.alpha = alpha
        self.gamma = mu / np.where(alpha > 0, alpha, 1.0)  # singular values above gamma: the linear regime
        self.lipschitz = float(np.sum(alpha**2 / mu))  # of the gradient; a step 1/L with L >= it always descends
        flat = self.fixed.reshape(-1, T.shape[2])
        self.gram_drugs = np.tensordot(self.fixed, self.fixed, axes=([0, 2], [0, 2]))
        self.gram_genes = flat.T @ flat

    def full(self, rows: np.ndarray) -> np.ndarray:
        X = self.fixed.copy()
        X[self.cells, self.drugs] = rows
        return X

    def _grams(self, X: np.ndarray, rows: np.ndarray) -> list[np.ndarray]:
        by_cell = X.reshape(X.shape[0], -1)
        drugs = self.gram_drugs.copy()
        for c, idx in enumerate(self.by_cell):
            if idx.size == 0:
                continue
            mine = self.drugs[idx]
            block = rows[idx] @ X[c].T  # the changing drugs' rows of X_c X_c^T
            drugs[mine, :] += block
            others = np.ones(X.shape[1], dtype=bool)
            others[mine] = False
            drugs[np.ix_(others, mine)] += block[:, others].T
        return [by_cell @ by_cell.T, drugs, self.gram_genes + rows.T @ rows]

    def value(self, rows: np.ndarray) -> float:
        X = self.full(rows)
        total = 0.0
        for mode, gram in enumerate(self._grams(X, rows)):
            if self.alpha[mode] > 0:
                total += self._mode_value(mode, np.linalg.eigvalsh(gram))
        return total

    def value_and_gradient(self, rows: np.ndarray) -> tuple[float, np.ndarray]:
        """``f_mu`` and its gradient on the changing fibres (zero at their observed entries)."""
        X = self.full(rows)
        total = 0.0
        grad = np.zeros_like(rows)
        for mode, gram in enumerate(self._grams(X, rows)):
            if self.alpha[mode] == 0:
                continue
            eigval, vectors = np.linalg.eigh(gram)
            total += self._mode_value(mode, eigval)
            sigma = np.sqrt(np.clip(eigval, 0.0, None))
            gamma = self.gamma[mode]
            keep = np.where(sigma > gamma, gamma / np.where(sigma > gamma, sigma, 1.0), 1.0)
            M = (vectors * keep) @ vectors.T  # U diag(min(1, gamma / s)) U^T
            coef = self.alpha[mode] / gamma  # = alpha^2 / mu
            if mode == 0:
                mixed = (M @ X.reshape(X.shape[0], -1)).reshape(X.shape)
                grad += coef * mixed[self.cells, self.drugs]
            elif mode == 1:
                for c, idx in enumerate(self.by_cell):
                    if idx.size:
                        grad[idx] += coef * (M[self.drugs[idx]] @ X[c])
            else:
                grad += coef * (rows @ M)
        grad[~self.free] = 0.0
        return total, grad

    def _mode_value(self, mode: int, eigval: np.ndarray) -> float:
        # alpha * sum_k h(s_k): s^2 / (2 gamma) for s <= gamma, s - gamma / 2 above.
        sigma = np.sqrt(np.clip(eigval, 0.0, None))
        gamma = self.gamma[mode]
        return float(self.alpha[mode] * np.sum(np.where(sigma <= gamma, sigma**2 / (2.0 * gamma), sigma - gamma / 2.0)))


def _accelerated_gradient(T, omega, alpha, mu, *, max_iter, tol, progress) -> tuple[np.ndarray, dict]:
    """Nesterov's method on ``f_mu`` over the free entries (the paper's FaLRTC iteration), from the mean fill."""
    from tqdm.auto import tqdm

    from ..._settings import settings

    f = _SmoothTraceNorm(T, omega, alpha, mu)
    L = min(DEFAULTS.lipschitz_start, f.lipschitz)
    norm_t = float(np.linalg.norm(T[omega]))
    Y = np.where(f.free, T[omega].mean(), f.start)  # the free entries start at the observed entries' mean
    Z = Y.copy()
    B = 0.0
    n_iter, change = 0, np.inf
    first = None  # while B = 0 the point X = Z does not depend on L: its gradient is computed once
    bar = tqdm(range(max_iter), desc="FaLRTC", disable=not (progress and settings.progress_bar), leave=False)
    for _ in bar:
        while True:
            step = (1.0 + np.sqrt(1.0 + 4.0 * L * B)) / (2.0 * L)
            X = (step * Z + B * Y) / (B + step)
            if B == 0.0:
                first = first or f.value_and_gradient(X)
                fx, grad = first
            else:
                fx, grad = f.value_and_gradient(X)
            Y_new = X - grad / L
            fy = f.value(Y_new)
            if fy <= fx - float(np.sum(grad * grad)) / (2.0 * L) or L >= f.lipschitz:
                break
            L = min(L / DEFAULTS.shrink, f.lipschitz)
        change = float(np.linalg.norm(Y_new - Y)) / norm_t
        Y = Y_new
        Z -= step * grad
        B += step
        n_iter += 1
        bar.set_postfix(change=f"{change:.2e}", refresh=False)
        if change < tol:
            break
    bar.close()
    return f.full(Y), {"n_iter": n_iter, "last_change": change, "converged": change < tol}


# ------------------------------------------------------------------------------------------------------ the checks
def _check_tensor(tensor, observed) -> tuple[np.ndarray, np.ndarray]:
    """The tensor as an array and the observed mask broadcast to its shape; refuses what cannot be completed."""
    values = np.asarray(tensor)
    if values.ndim != 3:
        raise PerturbkitInputError(
            f"tensor must be 3-dimensional (cell lines × drugs × genes), got shape {values.shape}."
        )
    if min(values.shape) < 1:
        raise PerturbkitInputError(f"tensor has an empty dimension: shape {values.shape}.")
    if values.dtype.kind not in "fiu":
        raise PerturbkitInputError(f"tensor must hold numbers, got dtype {values.dtype}.")
    mask = np.asarray(observed)
    if mask.dtype != bool:
        raise PerturbkitInputError(f"observed must be a boolean mask, got dtype {mask.dtype}.")
    if mask.shape == values.shape[:2]:
        mask = np.broadcast_to(mask[:, :, None], values.shape)
    elif mask.shape != values.shape:
        raise PerturbkitInputError(
            f"observed has shape {mask.shape}; it must be (cell lines, drugs) = {values.shape[:2]} (whole profiles) "
            f"or the tensor's shape {values.shape}."
        )
    mask = np.ascontiguousarray(mask)
    bad = ~np.isfinite(values[mask]) if values.dtype.kind == "f" else np.zeros(0, dtype=bool)
    if bad.any():
        raise NonFiniteError(
            f"tensor holds {int(bad.sum())} NaN or infinite values among its observed entries; only unobserved "
            f"entries may hold NaN. Mark them False in observed, or impute them first."
        )
    empty = ~mask.any(axis=(1, 2))
    if empty.any():
        raise PerturbkitInputError(
            f"cell line(s) at position(s) {np.flatnonzero(empty).tolist()} have no observed profile; a cell line "
            f"with nothing measured cannot be completed. Drop them from the tensor."
        )
    return values, mask


def _check_iterations(max_iter, tol) -> None:
    """Refuse a non-positive ``max_iter`` or a negative ``tol``."""
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise PerturbkitInputError(f"max_iter must be a positive integer, got {max_iter!r}.")
    if not np.isfinite(tol) or tol < 0:
        raise PerturbkitInputError(f"tol must be a non-negative number, got {tol!r}.")


def _weights(alpha, n_modes: int) -> np.ndarray:
    if alpha is None:
        return np.full(n_modes, 1.0 / n_modes)
    weights = np.asarray(alpha, dtype=float)
    if weights.shape != (n_modes,) or not np.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
        raise PerturbkitInputError(
            f"alpha must be {n_modes} non-negative weights (cell lines, drugs, genes) with a positive sum, got "
            f"{alpha!r}."
        )
    return weights / weights.sum()


def _positive_vector(value, n_modes: int, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.shape != (n_modes,) or not np.isfinite(arr).all() or (arr <= 0).any():
        raise PerturbkitInputError(f"{name} must be {n_modes} positive numbers (one per mode), got {value!r}.")
    return arr


def _cell_gene_means(T: np.ndarray, omega: np.ndarray) -> np.ndarray:
    """Mean over the observed drugs of every (cell line, gene), shape ``(n_cells, 1, n_genes)`` (0 where none)."""
    counts = omega.sum(axis=1, keepdims=True)
    sums = np.where(omega, T, 0.0).sum(axis=1, keepdims=True)
    return np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
