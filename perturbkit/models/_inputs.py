"""Checks shared by every place where a trained model meets data: argument order, training state, feature names.

Every entry point that gives profiles to a trained model gets them from :func:`model_matrix`, which aligns the
columns by feature name (``BaseModel.feature_matrix`` for perturbkit models, ``feature_names_in_`` for scikit-learn
estimators fitted on a DataFrame) and raises :class:`~perturbkit.errors.GeneMismatchError` when names are missing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._schema import GeneMismatchError, PerturbkitInputError, UnknownOptionError, check_finite, dense_matrix

__all__ = ["UnknownOptionError", "check_model_and_data", "check_trained", "is_anndata", "is_model", "model_matrix"]


#: How to train each model class, for the "train it first" messages.
TRAIN_HINTS = {
    "VAE": "pk.tl.train_vae(adata)",
    "DeepCellState": "pk.tl.train_deepcellstate(adata)",
    "CycleCDR": "pk.tl.train_cyclecdr(adata)",
    "ScGen": "pk.tl.train_scgen(adata)",
    "AnchorVAE": "pk.tl.train_anchor_vae(adata)",
    "DualGAN": "pk.tl.train_dual_gan(adata)",
    "CPA": "pk.tl.train_cpa(adata)",
}


def is_anndata(obj) -> bool:
    """Whether ``obj`` looks like an AnnData (obs, var_names and X)."""
    return hasattr(obj, "obs") and hasattr(obj, "var_names") and hasattr(obj, "X")


def is_model(obj) -> bool:
    """Whether ``obj`` is a perturbkit model (a :class:`~perturbkit.train.BaseModel`)."""
    from ..train import BaseModel

    return isinstance(obj, BaseModel)


def _what(obj) -> str:
    return "None" if obj is None else f"a {type(obj).__name__}"


def check_model_and_data(
    adata, model, *, function: str, call: str | None = None, model_class=None, data_required: bool = True
) -> None:
    """Refuse swapped, missing or wrong-typed ``adata`` / ``model`` arguments with the call that works.

    Parameters
    ----------
    adata, model
        What the user passed as the data and as the model.
    function
        The user-facing name, e.g. ``"pk.tl.vae_latent_correlation"``.
    call
        The correct call shown in the message (default ``f"{function}(adata, model=model)"``).
    model_class
        The class ``model`` must be an instance of (default: any model, or anything when ``None`` is allowed).
    data_required
        Whether ``adata`` may be ``None``.
    """
    call = call or f"{function}(adata, model=model)"
    if is_model(adata) and model is None:
        raise PerturbkitInputError(
            f"{function}: adata is {_what(adata)}, a model, not data. Pass the data as adata "
            f"and the trained model as model: {call}."
        )
    if is_model(adata) or (is_anndata(model) and not is_model(model)):
        raise PerturbkitInputError(
            f"{function} got its arguments swapped: adata is {_what(adata)} and model is {_what(model)}. Pass the "
            f"data as adata and the trained model as model: {call}."
        )
    if adata is None and data_required:
        raise PerturbkitInputError(f"{function} needs the data: adata is None. Call {call}.")
    if adata is not None and not is_anndata(adata):
        raise PerturbkitInputError(
            f"{function}: adata must be an AnnData of profiles, got {_what(adata)}. Call {call}."
        )
    if model_class is not None and not isinstance(model, model_class):
        raise PerturbkitInputError(
            f"{function}: model must be a trained {model_class.__name__}, got {_what(model)}. Call {call}."
        )


def check_trained(model, *, argument: str = "model") -> None:
    """Raise :class:`PerturbkitInputError` when ``model`` is a perturbkit model that was never trained."""
    history = getattr(model, "history", None)
    if is_model(model) and history is not None and len(history) == 0:
        name = type(model).__name__
        hint = TRAIN_HINTS.get(name, "its train method")
        raise PerturbkitInputError(
            f"{argument} is an untrained {name} (no training epochs in model.history): its outputs would be those of "
            f"random weights. Train the model first, e.g. with {hint}, or load a trained one with "
            f"{name}.load(path)."
        )


def model_matrix(model, adata, *, layer: str | None = None, rows=None, where: str | None = None) -> np.ndarray:
    """``adata``'s profiles (optionally only ``rows``) as float32, with the columns in the model's feature order.

    perturbkit models align by name with ``model.feature_matrix``; a scikit-learn estimator fitted on a DataFrame
    aligns by its ``feature_names_in_``; any other model gets the columns as they are (it records no names), after
    checking their number against ``n_features_in_`` when it has one. Missing names raise
    :class:`~perturbkit.errors.GeneMismatchError`; NaN or inf raise :class:`~perturbkit.errors.NonFiniteError`.

    Returns
    -------
    The matrix (rows × the model's features).
    """
    if layer is not None and layer not in adata.layers:
        raise PerturbkitInputError(
            f"adata has no layer {layer!r}; its layers are {list(adata.layers.keys())}. Pass "
            f"layer=None to use adata.X, or one of those layers."
        )
    data = adata if rows is None else adata[np.asarray(rows)]
    if callable(getattr(model, "feature_matrix", None)) and getattr(model, "var_names", None) is not None:
        return model.feature_matrix(data, layer=layer)
    where = where or ("adata.X" if layer is None else f"adata.layers[{layer!r}]")
    X = dense_matrix(data, layer)
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        names = pd.Index([str(n) for n in names])
        have = pd.Index(data.var_names.astype(str))
        missing = names.difference(have, sort=False)
        if len(missing):
            raise GeneMismatchError(
                f"{type(model).__name__} was fitted on {len(names)} features, but {len(missing)} of them are missing "
                f"from this data (e.g. {missing[:5].tolist()}). Use data with the model's features "
                f"(adata[:, model.feature_names_in_]) or refit the model on these features."
            )
        if not have.equals(names):
            X = X[:, have.get_indexer(names)]
    else:
        n_in = getattr(model, "n_features_in_", None)
        if n_in is not None and int(n_in) != X.shape[1]:
            raise GeneMismatchError(
                f"{type(model).__name__} was fitted on {int(n_in)} features, but the data has {X.shape[1]}. It "
                f"records no feature names, so columns are passed by position: give it data with the same features "
                f"in the same order, or fit it on a DataFrame (then columns are matched by name)."
            )
    check_finite(X, where=where)
    return X


def transform_rows(model, X: np.ndarray) -> np.ndarray:
    """``model.transform(X)`` for rows from :func:`model_matrix`.

    An estimator fitted on a DataFrame gets one (with its own column names), so scikit-learn does not warn about
    missing feature names.
    """
    names = getattr(model, "feature_names_in_", None)
    if names is not None and getattr(model, "var_names", None) is None:
        X = pd.DataFrame(X, columns=list(names))
    return np.asarray(model.transform(X))


def model_feature_names(model, adata) -> pd.Index:
    """The feature names of :func:`model_matrix`'s columns."""
    names = getattr(model, "var_names", None)
    if names is None:
        names = getattr(model, "feature_names_in_", None)
    return pd.Index([str(n) for n in (adata.var_names if names is None else names)])
