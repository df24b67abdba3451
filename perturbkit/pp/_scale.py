"""Invertible scaling: the :class:`Scaler` every model uses, and its AnnData faces :func:`scale` / :func:`unscale`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import anndata as ad
import numpy as np
import scipy.sparse as sp

from .._schema import (
    GeneMismatchError,
    PerturbkitInputError,
    check_finite,
    check_positive_int,
    modifiable,
    stored_matrix,
)
from . import _chunked

METHODS = ("maxabs", "minmax", "zscore")


#: Rows per block when scaling an in-memory matrix: large enough for fast vectorised work, small enough that the
#: float64 temporaries stay a few MB whatever the data's size. Out-of-core data uses ``chunk_rows=`` (default: a
#: float64 block of :data:`perturbkit.pp._chunked.BLOCK_BYTES`).
CHUNK_ROWS = 2048


def _is_torch(X) -> bool:
    return type(X).__module__.split(".")[0] == "torch"


def _row_blocks(X, *, float64: bool = True, chunk_rows: int | None = CHUNK_ROWS):
    """``(start, stop, block)`` over dense row blocks of ``X`` (any matrix :mod:`._chunked` reads).

    With ``float64`` each block is a float64 copy, so no float64 copy of the whole matrix is ever made.
    """
    for start, stop, block in _chunked.row_blocks(X, chunk_rows=chunk_rows):
        block = block.toarray() if sp.issparse(block) else np.asarray(block)
        yield start, stop, block.astype(np.float64) if float64 else block


def _fit_parameters(
    X, method: str, *, per_feature: bool, where: str = "the matrix given to Scaler.fit", chunk_rows=CHUNK_ROWS
):
    """``(offset, scale)`` of ``method`` over ``X``, in float64, computed block by block (scale may hold zeros).

    NaN and inf propagate into the column statistics, so checking those finds them without a pass of its own.
    """
    n_features = X.shape[1]
    if method in ("maxabs", "minmax"):
        low = np.full(n_features, np.inf)
        high = np.full(n_features, -np.inf)
        for _, _, block in _row_blocks(X, float64=False, chunk_rows=chunk_rows):
            np.minimum(low, block.min(axis=0), out=low)  # NaN propagates, and stays
            np.maximum(high, block.max(axis=0), out=high)
        _check_statistics(X, low + high, where, chunk_rows)
        if not per_feature:
            low, high = low.min(), high.max()
        if method == "maxabs":
            return np.zeros_like(low), np.maximum(np.abs(low), np.abs(high))
        return low, high - low
    # zscore: mean, then the mean squared deviation from it (two passes, as numerically stable as np.std)
    total = np.zeros(n_features)
    for _, _, block in _row_blocks(X, float64=False, chunk_rows=chunk_rows):
        total += block.sum(axis=0, dtype=np.float64)
    _check_statistics(X, total, where, chunk_rows)
    count = X.shape[0] * (1 if per_feature else n_features)
    mean = total / X.shape[0] if per_feature else np.float64(total.sum() / count)
    squares = np.zeros(n_features)
    for _, _, block in _row_blocks(X, chunk_rows=chunk_rows):
        block -= mean
        squares += np.einsum("ij,ij->j", block, block)
    variance = squares / X.shape[0] if per_feature else squares.sum() / count
    return np.asarray(mean), np.sqrt(variance)


def _check_statistics(X, statistics: np.ndarray, where: str, chunk_rows=CHUNK_ROWS) -> None:
    """Column statistics that are not finite mean NaN or inf in ``X``: raise the error that says where."""
    if np.isfinite(statistics).all():
        return
    if _chunked.is_out_of_core(X):  # counted block by block: never loads X
        _chunked.count_non_finite(X, where=where, chunk_rows=chunk_rows)
    else:
        check_finite(X[:] if not sp.issparse(X) else X, where=where)


def _lazy_apply(scaler: Scaler, X, *, inverse: bool, where: str | None, chunk_rows):
    """:func:`_apply_blocks` as a lazy float32 dask array: each block is scaled (in float64) when it is computed.

    With ``where``, a block holding NaN/inf raises :class:`NonFiniteError` naming its rows when it is computed.
    """
    offset, spread = scaler.offset_, scaler.scale_
    per_feature = np.ndim(offset) > 0

    def apply(block, rows, cols):
        if where is not None:
            _chunked.check_blocks_finite(block, rows.start, where)
        o, s = (offset[cols], spread[cols]) if per_feature else (offset, spread)
        if inverse:
            block *= s
            block += o
        else:
            block -= o
            block /= s
        return block

    return _chunked.lazy_map(X, apply, dtype=np.float32, chunk_rows=chunk_rows)


def _apply_blocks(scaler: Scaler, X, *, inverse: bool, where: str | None) -> np.ndarray:
    """``scaler`` applied to ``X`` block by block into a new float32 array (float64 arithmetic, as one pass would).

    With ``where``, each block is checked for NaN/inf first and the error names ``where``.
    """
    out = np.empty(X.shape, dtype=np.float32)
    for start, stop, block in _row_blocks(X):
        if where is not None and not np.isfinite(block).all():
            check_finite(block, where=f"rows {start}–{stop - 1} of {where}")
        if inverse:
            block *= scaler.scale_
            block += scaler.offset_
        else:
            block -= scaler.offset_
            block /= scaler.scale_
        out[start:stop] = block
    return out


def _check_method(method) -> str:
    if method not in METHODS:
        raise PerturbkitInputError(f"method={method!r} is not known; use one of {', '.join(map(repr, METHODS))}.")
    return method


class Scaler:
    """An invertible affine scaling ``(X - offset) / scale`` whose fitted parameters can be stored and re-applied.

    Parameters
    ----------
    method
        ``"maxabs"``: divide by max ``|x|`` (values land in [-1, 1]); ``"minmax"``: map min..max to [0, 1]
        (constant features map to 0); ``"zscore"``: subtract the mean, divide by the standard deviation
        (a zero standard deviation is replaced by 1).
    per_feature
        ``True`` fits one set of parameters per feature (column). ``False`` fits ONE global set over the whole
        matrix (e.g. DeepCellState's single global max ``|x|``).

    Works on NumPy arrays (the dtype of a float input is kept), SciPy sparse matrices (densified) and torch tensors
    (the result stays on the tensor's device and dtype, and gradients flow through it).

    Examples
    --------
    >>> scaler = Scaler("maxabs", per_feature=False).fit(X_train)
    >>> Z = scaler.transform(X_test)              # same parameters on new data
    >>> X_back = scaler.inverse_transform(Z)
    >>> Scaler.from_dict(scaler.to_dict()) == scaler
    True
    """

    def __init__(self, method: Literal["maxabs", "minmax", "zscore"] = "maxabs", *, per_feature: bool = True) -> None:
        self.method = _check_method(method)
        self.per_feature = bool(per_feature)
        self.offset_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.n_features_: int | None = None

    # ------------------------------------------------------------------ fitting
    @property
    def is_fitted(self) -> bool:
        return self.scale_ is not None

    def fit(self, X) -> Scaler:
        """Learn the parameters from ``X`` (observations × features; NaN/inf raise :class:`NonFiniteError`)."""
        if _is_torch(X):
            X = X.detach().cpu().numpy()
        elif not hasattr(X, "shape"):
            X = np.asarray(X)
        if len(getattr(X, "shape", ())) != 2 or X.shape[0] == 0 or X.shape[1] == 0:
            raise PerturbkitInputError(
                f"Scaler.fit needs a non-empty 2-D matrix (observations × features); got shape "
                f"{getattr(X, 'shape', None)}."
            )
        offset, scale = _fit_parameters(X, self.method, per_feature=self.per_feature)
        self.offset_ = np.asarray(offset, dtype=np.float64)
        self.scale_ = np.asarray(np.where(scale > 0, scale, 1.0), dtype=np.float64)
        self.n_features_ = int(X.shape[1])
        return self

    def _check_ready(self, X, what: str) -> None:
        if not self.is_fitted:
            raise PerturbkitInputError(
                f"This Scaler is not fitted, so it cannot {what}. Call scaler.fit(X) first, or load fitted "
                f"parameters with Scaler.from_dict(d) / Scaler.from_uns(adata)."
            )
        n = X.shape[-1] if len(X.shape) else None
        if n != self.n_features_:
            raise GeneMismatchError(
                f"The Scaler was fitted on {self.n_features_} features but the data has {n} (shape "
                f"{tuple(X.shape)}). Use the same features, in the same order, as the data it was fitted on "
                f"(e.g. adata = adata[:, reference.var_names].copy()), or fit a new Scaler on this data."
            )

    def _params_like(self, X):
        if _is_torch(X):
            import torch

            dtype = X.dtype if X.is_floating_point() else torch.float32
            return (
                torch.as_tensor(self.offset_, dtype=dtype, device=X.device),
                torch.as_tensor(self.scale_, dtype=dtype, device=X.device),
                X.to(dtype),
            )
        if sp.issparse(X):
            X = X.toarray()
        X = np.asarray(X)
        dtype = X.dtype if X.dtype.kind == "f" else np.float32
        return self.offset_.astype(dtype), self.scale_.astype(dtype), X.astype(dtype, copy=False)

    # ------------------------------------------------------------------ applying
    def transform(self, X):
        """Scale ``X`` with the fitted parameters; returns a new array/tensor (the input is not modified)."""
        self._check_ready(X, "transform")
        offset, scale, X = self._params_like(X)
        return (X - offset) / scale

    def inverse_transform(self, X):
        """Undo :meth:`transform`: ``X * scale + offset``."""
        self._check_ready(X, "inverse_transform")
        offset, scale, X = self._params_like(X)
        return X * scale + offset

    def fit_transform(self, X):
        """:meth:`fit` then :meth:`transform` on the same ``X``."""
        return self.fit(X).transform(X)

    # ------------------------------------------------------------------ storage
    def to_dict(self) -> dict:
        """Plain dict of str/bool/int/float/list (JSON- and ``torch.save(weights_only=True)``-safe)."""

        def plain(a):
            if a is None:
                return None
            return a.tolist() if a.ndim else float(a)

        return {
            "method": self.method,
            "per_feature": self.per_feature,
            "n_features": self.n_features_,
            "offset": plain(self.offset_),
            "scale": plain(self.scale_),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> Scaler:
        """Rebuild a Scaler from :meth:`to_dict` output.

        Also accepts the ``adata.uns`` entry written by :func:`scale`, and the NumPy arrays a dict comes back with
        after an ``.h5ad`` round trip.
        """
        if isinstance(d, Mapping) and "params" in d and isinstance(d["params"], Mapping):
            d = d["params"]
        needed = ("method", "per_feature", "n_features", "offset", "scale")
        if not isinstance(d, Mapping) or any(k not in d for k in needed):
            raise PerturbkitInputError(
                f"Cannot rebuild a Scaler from {type(d).__name__}: it needs the keys {needed} as written by "
                f"Scaler.to_dict() (or the adata.uns entry written by pk.pp.scale)."
            )
        scaler = cls(str(d["method"]), per_feature=bool(d["per_feature"]))
        if d["scale"] is not None:
            offset = np.asarray(d["offset"], dtype=np.float64)
            scale = np.asarray(d["scale"], dtype=np.float64)
            if not scaler.per_feature:
                offset, scale = offset.reshape(()), scale.reshape(())
            scaler.offset_, scaler.scale_ = offset, scale
            scaler.n_features_ = int(d["n_features"])
        return scaler

    @classmethod
    def from_uns(cls, adata, key: str = "scale") -> Scaler:
        """The fitted Scaler stored in ``adata.uns[key]`` by :func:`scale`."""
        if key not in adata.uns:
            raise PerturbkitInputError(
                f"adata.uns has no {key!r} entry, so there are no stored scaling parameters. Run "
                f"pk.pp.scale(adata, key_added={key!r}) first, or pass the key it was stored under."
            )
        return cls.from_dict(adata.uns[key])

    def __eq__(self, other) -> bool:
        if not isinstance(other, Scaler):
            return NotImplemented
        if (self.method, self.per_feature, self.n_features_) != (other.method, other.per_feature, other.n_features_):
            return False
        if self.is_fitted != other.is_fitted:
            return False
        return not self.is_fitted or (
            np.array_equal(self.offset_, other.offset_) and np.array_equal(self.scale_, other.scale_)
        )

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        state = f"fitted on {self.n_features_} features" if self.is_fitted else "not fitted"
        return f"Scaler(method={self.method!r}, per_feature={self.per_feature}, {state})"


def _coerce_scaler(scaler) -> Scaler:
    if isinstance(scaler, Scaler):
        result = scaler
    elif isinstance(scaler, Mapping):
        result = Scaler.from_dict(scaler)
    else:
        raise PerturbkitInputError(
            f"scaler= must be a fitted pk.pp.Scaler or its dict (Scaler.to_dict() / adata.uns['scale']); got "
            f"{type(scaler).__name__}."
        )
    if not result.is_fitted:
        raise PerturbkitInputError("scaler= is not fitted; fit it first or leave scaler=None to fit on this data.")
    return result


def scale(
    adata,
    *,
    method: Literal["maxabs", "minmax", "zscore"] = "maxabs",
    per_feature: bool = True,
    scaler=None,
    layer: str | None = None,
    key_added: str = "scale",
    chunk_rows: int | None = None,
    copy: bool = False,
) -> ad.AnnData | None:
    """Scale the profiles invertibly and store the fitted parameters in ``adata.uns[key_added]``.

    Parameters
    ----------
    adata
        AnnData with finite values in X (or ``layer``).
    method, per_feature
        See :class:`Scaler`. Ignored when ``scaler`` is given.
    scaler
        A fitted :class:`Scaler` or its dict (e.g. ``other.uns['scale']``) to re-apply to this data instead of
        fitting: use it to scale test or new data exactly like the training data.
    layer
        Read from ``adata.layers[layer]`` instead of X. The result always goes to X (dense float32).
    key_added
        ``adata.uns`` key for ``{"method", "per_feature", "params": Scaler.to_dict(), "layer", "fitted_here"}``.
    chunk_rows
        Rows per block when X is out of core (a backed ``.h5ad`` or a dask array); ``None``: blocks of about
        16 MB in float64. The parameters are fitted block by block, exactly (two passes for ``"zscore"``).
    copy
        Return a scaled copy and leave ``adata`` untouched; otherwise modify ``adata`` and return None. In place, a
        view is first made an actual AnnData (the AnnData it was sliced from is not changed) and a backed AnnData
        is refused, so its file is never written.

    Returns
    -------
    The scaled AnnData if ``copy=True``, else None. Out-of-core data stays out of core: when X is a dask array or
    the AnnData is backed (``copy=True``), the scaled X is a lazy float32 dask array computed block by block from
    the source (a backed file is reopened read-only for each block) — ``.X.compute()`` loads it, ``write_h5ad``
    streams it to a new file. With a given ``scaler``, NaN/inf then raise when that block is computed.

    Examples
    --------
    >>> pk.pp.scale(train, method="maxabs", per_feature=False)
    >>> pk.pp.scale(test, scaler=train.uns["scale"])       # the training parameters on new data
    >>> pk.pp.unscale(test)                                 # back to the original units
    """
    check_positive_int(chunk_rows, "chunk_rows", allow_none=True)
    fitted_here = scaler is None
    scaler = Scaler(method, per_feature=per_feature) if fitted_here else _coerce_scaler(scaler)
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    stored_matrix(adata, layer)  # refuse a missing layer before any copy is made
    target = modifiable(adata, copy=copy, caller="pk.pp.scale", keep_x=False)
    X = _source_matrix(adata if copy else target, layer)  # a copy is made without X: read the original's
    lazy = _chunked.is_out_of_core(X)
    rows = _chunked.resolve_chunk_rows(chunk_rows, X.shape[1]) if lazy else CHUNK_ROWS
    if fitted_here:
        offset, spread = _fit_parameters(X, scaler.method, per_feature=scaler.per_feature, where=where, chunk_rows=rows)
        scaler.offset_, scaler.scale_ = offset, np.where(spread > 0, spread, 1.0)
        scaler.n_features_ = int(X.shape[1])
    scaler._check_ready(X, "transform")
    adata = target
    check = None if fitted_here else where
    if lazy:
        adata.X = _lazy_apply(scaler, X, inverse=False, where=check, chunk_rows=rows)
    else:
        adata.X = _apply_blocks(scaler, X, inverse=False, where=check)
    adata.uns[key_added] = {
        "method": scaler.method,
        "per_feature": scaler.per_feature,
        "params": scaler.to_dict(),
        "layer": layer,
        "fitted_here": fitted_here,
    }
    return adata if copy else None


def _source_matrix(adata, layer):
    X = stored_matrix(adata, layer)
    if len(X.shape) != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise PerturbkitInputError(f"adata is empty ({X.shape[0]} × {X.shape[1]}); there is nothing to scale.")
    return X


def unscale(adata, *, key: str = "scale", chunk_rows: int | None = None, copy: bool = False) -> ad.AnnData | None:
    """Undo :func:`scale` on X with the parameters stored in ``adata.uns[key]``, and remove that entry.

    Parameters
    ----------
    adata
        AnnData scaled by :func:`scale`.
    key
        The ``adata.uns`` key of the scaling record (``key_added`` of :func:`scale`).
    chunk_rows
        Rows per block when X is out of core; see :func:`scale`.
    copy
        Return an unscaled copy and leave ``adata`` untouched; otherwise modify ``adata`` and return None.

    Returns
    -------
    The unscaled AnnData if ``copy=True``, else None. An out-of-core X (dask, or backed with ``copy=True``) gives
    a lazy dask X, as in :func:`scale`.

    Examples
    --------
    >>> pk.pp.scale(adata)
    >>> pk.pp.unscale(adata)   # X is back in its original units; adata.uns['scale'] is gone
    """
    check_positive_int(chunk_rows, "chunk_rows", allow_none=True)
    scaler = Scaler.from_uns(adata, key)
    target = modifiable(adata, copy=copy, caller="pk.pp.unscale", keep_x=False)
    X = _source_matrix(adata if copy else target, None)
    scaler._check_ready(X, "inverse_transform")
    if _chunked.is_out_of_core(X):
        rows = _chunked.resolve_chunk_rows(chunk_rows, X.shape[1])
        target.X = _lazy_apply(scaler, X, inverse=True, where="adata.X", chunk_rows=rows)
    else:
        target.X = _apply_blocks(scaler, X, inverse=True, where="adata.X")
    adata = target
    del adata.uns[key]
    return adata if copy else None
