"""Invertible scaling: the :class:`Scaler` every model uses, and its AnnData faces :func:`scale` / :func:`unscale`."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp

from .._schema import GeneMismatchError, PerturbkitInputError, check_finite, dense_matrix

METHODS = ("maxabs", "minmax", "zscore")


def _is_torch(X) -> bool:
    return type(X).__module__.split(".")[0] == "torch"


def _as_numpy64(X, *, where: str) -> np.ndarray:
    if _is_torch(X):
        X = X.detach().cpu().numpy()
    elif sp.issparse(X):
        X = X.toarray()
    X = np.asarray(X, dtype=np.float64)
    check_finite(X, where=where)
    return X


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

    def __init__(self, method: str = "maxabs", *, per_feature: bool = True) -> None:
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
        X = _as_numpy64(X, where="the matrix given to Scaler.fit")
        if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
            raise PerturbkitInputError(
                f"Scaler.fit needs a non-empty 2-D matrix (observations × features); got shape {X.shape}."
            )
        axis = 0 if self.per_feature else None
        if self.method == "maxabs":
            offset = np.zeros(X.shape[1]) if self.per_feature else np.float64(0.0)
            scale = np.abs(X).max(axis=axis)
        elif self.method == "minmax":
            offset = X.min(axis=axis)
            scale = X.max(axis=axis) - offset
        else:
            offset = X.mean(axis=axis)
            scale = X.std(axis=axis)
        scale = np.where(scale > 0, scale, 1.0)
        self.offset_ = np.asarray(offset, dtype=np.float64)
        self.scale_ = np.asarray(scale, dtype=np.float64)
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
        """Rebuild a Scaler from :meth:`to_dict` output (also accepts the ``adata.uns`` entry written by :func:`scale`,
        and the NumPy arrays a dict comes back with after an ``.h5ad`` round trip)."""
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
    method: str = "maxabs",
    per_feature: bool = True,
    scaler=None,
    layer: str | None = None,
    key_added: str = "scale",
    copy: bool = False,
):
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
    copy
        Return a scaled copy and leave ``adata`` untouched; otherwise modify ``adata`` and return None.

    Examples
    --------
    >>> pk.pp.scale(train, method="maxabs", per_feature=False)
    >>> pk.pp.scale(test, scaler=train.uns["scale"])       # the training parameters on new data
    >>> pk.pp.unscale(test)                                 # back to the original units
    """
    fitted_here = scaler is None
    scaler = Scaler(method, per_feature=per_feature) if fitted_here else _coerce_scaler(scaler)
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    if layer is not None and layer not in adata.layers:
        raise PerturbkitInputError(f"adata.layers has no {layer!r}; available layers: {list(adata.layers)}.")
    X = dense_matrix(adata, layer, dtype=np.float64)
    check_finite(X, where=where)
    if fitted_here:
        scaler.fit(X)
    Z = scaler.transform(X).astype(np.float32)

    if copy:
        adata = adata.copy()
    adata.X = Z
    adata.uns[key_added] = {
        "method": scaler.method,
        "per_feature": scaler.per_feature,
        "params": scaler.to_dict(),
        "layer": layer,
        "fitted_here": fitted_here,
    }
    return adata if copy else None


def unscale(adata, *, key: str = "scale", copy: bool = False):
    """Undo :func:`scale` on X with the parameters stored in ``adata.uns[key]``, and remove that entry.

    Examples
    --------
    >>> pk.pp.scale(adata)
    >>> pk.pp.unscale(adata)   # X is back in its original units; adata.uns['scale'] is gone
    """
    scaler = Scaler.from_uns(adata, key)
    X = dense_matrix(adata, dtype=np.float64)
    check_finite(X)
    X = scaler.inverse_transform(X).astype(np.float32)
    if copy:
        adata = adata.copy()
    adata.X = X
    del adata.uns[key]
    return adata if copy else None
