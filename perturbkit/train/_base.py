"""The base class of every trained perturbkit model: device, genes, scaler, history and save/load."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from .._schema import GeneMismatchError, PerturbkitInputError, check_finite, dense_matrix
from .._settings import resolve_device, seed_everything
from .._version import __version__
from ._loop import History

FORMAT = "perturbkit-model/1"


class BaseModel:
    """Base of the user-facing model classes (the network itself is ``self.module``, an ``nn.Module``).

    A subclass defines :meth:`_build_module` from ``self.hparams`` and ``self.var_names``; its ``__init__`` takes
    ``var_names`` plus the keyword hyperparameters and passes them here. Everything needed to rebuild the model —
    hyperparameters, weights, feature names, the fitted scaler, the training history and any subclass state from
    :meth:`_extra_state` — is written by :meth:`save` and read back by :meth:`load`.
    """

    _registry: ClassVar[dict[str, type[BaseModel]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        BaseModel._registry[cls.__name__] = cls

    def __init__(self, var_names, *, scaler=None, device="auto", seed: int | None = 0, **hparams):
        self.var_names = pd.Index([str(v) for v in var_names])
        if self.var_names.has_duplicates:
            dup = self.var_names[self.var_names.duplicated()].unique()[:5].tolist()
            raise PerturbkitInputError(f"feature names must be unique, but {dup} repeat; call adata.var_names_make_unique().")
        self.scaler = scaler
        self.hparams = dict(hparams, seed=seed)
        self.seed = seed
        self.history = History()
        self.device = resolve_device(device)
        seed_everything(seed)  # weight initialisation is part of a reproducible run
        self.module: nn.Module = self._build_module().to(self.device)
        self.module.eval()

    # --- to be provided by subclasses -------------------------------------------------------------
    def _build_module(self) -> nn.Module:
        raise NotImplementedError

    def _extra_state(self) -> dict:
        """Subclass state beyond weights and hyperparameters (plain Python types or tensors)."""
        return {}

    def _load_extra_state(self, state: dict) -> None:
        pass

    # --- shared helpers ----------------------------------------------------------------------------
    @property
    def n_vars(self) -> int:
        return len(self.var_names)

    @property
    def history_frame(self) -> pd.DataFrame:
        """The training history, one row per epoch (and stage)."""
        return self.history.to_frame()

    def to(self, device) -> BaseModel:
        """Move the model to ``"cpu"``, ``"cuda"`` or ``"auto"``."""
        self.device = resolve_device(device)
        self.module.to(self.device)
        return self

    def feature_matrix(self, adata, *, layer=None) -> np.ndarray:
        """``adata``'s profiles as float32, in the model's feature order; refuses missing features or NaN/inf."""
        self.check_features(adata)
        columns = adata.var_names.get_indexer(self.var_names)
        X = dense_matrix(adata, layer)
        if not np.array_equal(columns, np.arange(adata.n_vars)):
            X = X[:, columns]
        check_finite(X, where="adata.X" if layer is None else f"adata.layers[{layer!r}]")
        return X

    def scale_rows(self, X) -> np.ndarray:
        """Rows ``X`` (the data's units, model feature order) on the model's scale, as float32."""
        X = np.asarray(X, dtype=np.float32)
        return X if self.scaler is None else np.asarray(self.scaler.transform(X), dtype=np.float32)

    # --- the latent interface (panels such as pk.widgets.LatentTraversal use it) ---------------------
    #: Names of the decoders :meth:`decode_array` can use (one per cell line for DeepCellState).
    decoder_names: ClassVar[tuple[str, ...]] = ()

    def encode_array(self, X) -> np.ndarray:
        """Latent codes of profiles ``X`` (rows, the data's units, model feature order)."""
        raise NotImplementedError(f"{type(self).__name__} has no latent space to encode into.")

    def decode_array(self, Z, *, decoder: str | None = None, inputs=None) -> np.ndarray:
        """Profiles (the data's units) decoded from latent codes ``Z`` by ``decoder`` (default: the first one).

        ``inputs`` are the profiles the codes came from, for decoders that also see their input (DeepCellState's
        skip connection); other models ignore it.
        """
        raise NotImplementedError(f"{type(self).__name__} has no decoder.")

    def unscale_rows(self, X) -> np.ndarray:
        """Rows ``X`` on the model's scale back in the data's units, as float32 (the inverse of :meth:`scale_rows`)."""
        X = np.asarray(X)
        return np.asarray(X if self.scaler is None else self.scaler.inverse_transform(X), dtype=np.float32)

    def latent_codes(self, Z, *, latent_dim: int) -> np.ndarray:
        """``Z`` as a float32 (rows × ``latent_dim``) array of finite latent codes; a single code may be 1-D."""
        Z = np.atleast_2d(np.asarray(Z, dtype=np.float32))
        if Z.ndim != 2 or Z.shape[1] != latent_dim:
            raise PerturbkitInputError(f"latent vectors must be (rows × {latent_dim}), got shape {Z.shape}.")
        check_finite(Z, where="the latent vectors")
        return Z

    def check_features(self, adata) -> None:
        """Raise :class:`GeneMismatchError` unless ``adata`` has every feature the model was trained on."""
        names = pd.Index(adata.var_names.astype(str))
        missing = self.var_names.difference(names, sort=False)
        if len(missing):
            raise GeneMismatchError(
                f"{type(self).__name__} was trained on {self.n_vars} features, but {len(missing)} of them are missing "
                f"from this data (e.g. {missing[:5].tolist()}); it has {adata.n_vars} features, "
                f"{len(names.intersection(self.var_names))} shared. Use data with the model's features "
                f"(adata[:, model.var_names]), map gene identifiers to the same naming first, or retrain on these genes."
            )

    # --- persistence -------------------------------------------------------------------------------
    def save(self, path, *, overwrite: bool = True) -> Path:
        """Write weights, hyperparameters, feature names, scaler, history and package version to one file."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": FORMAT,
            "class": type(self).__name__,
            "perturbkit_version": __version__,
            "hparams": _to_saveable(self.hparams),
            "var_names": list(self.var_names),
            "scaler": None if self.scaler is None else self.scaler.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in self.module.state_dict().items()},
            "history": _to_saveable(self.history.records),
            "extra": _to_saveable(self._extra_state()),
        }
        torch.save(payload, path)
        return path

    @classmethod
    def load(cls, path, *, device="auto") -> BaseModel:
        """Load a model written by :meth:`save` (``BaseModel.load`` works for any model class)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no saved model at {path}.")
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise PerturbkitInputError(f"{path} is not a perturbkit model file (expected format {FORMAT!r}).")
        saved_class = BaseModel._registry.get(payload["class"])
        if saved_class is None:
            raise PerturbkitInputError(f"{path} holds a {payload['class']} model, which this perturbkit does not define.")
        if cls is not BaseModel and not issubclass(saved_class, cls):
            raise PerturbkitInputError(f"{path} holds a {payload['class']} model, not a {cls.__name__}; load it with "
                                       f"{payload['class']}.load or BaseModel.load.")
        scaler = None
        if payload["scaler"] is not None:
            from ..pp import Scaler

            scaler = Scaler.from_dict(payload["scaler"])
        hparams = dict(payload["hparams"])
        model = saved_class(payload["var_names"], scaler=scaler, device=device, **hparams)
        model.module.load_state_dict(payload["state_dict"])
        model.module.to(model.device).eval()
        model.history = History(list(payload["history"]))
        model._load_extra_state(payload["extra"])
        model.saved_with_version = payload["perturbkit_version"]
        return model

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.hparams.items())
        trained = f", trained {len(self.history)} epochs" if len(self.history) else ", untrained"
        return f"{type(self).__name__}({self.n_vars} features, {settings}{trained}, device={self.device})"


def _to_saveable(obj):
    """Turn NumPy/pandas values into types ``torch.load(weights_only=True)`` accepts."""
    if isinstance(obj, dict):
        return {str(k): _to_saveable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        converted = [_to_saveable(v) for v in obj]
        return tuple(converted) if isinstance(obj, tuple) else converted
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj)) if obj.dtype.kind in "fiub" else obj.tolist()
    if isinstance(obj, (pd.Index, pd.Series)):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
