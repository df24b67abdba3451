"""The base class of every trained perturbkit model: device, genes, scaler, history and save/load."""

from __future__ import annotations

import hashlib
import importlib
import pickle
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from .._atomic import atomic_write
from .._schema import (
    GeneMismatchError,
    ModelFileError,
    PerturbkitInputError,
    check_finite,
    dense_matrix,
    storable,
)
from .._settings import resolve_device, seeded
from .._version import __version__
from ._checkpoint import TrainingRun, warn_interrupted
from ._distributed import is_main_process
from ._loop import History, fit

FORMAT_NAME = "perturbkit-model"
#: Format 2 adds the checksum; format 1 files (no checksum) still load.
FORMAT = f"{FORMAT_NAME}/2"
READABLE_FORMATS = ("1", "2")


class BaseModel:
    """Base of the user-facing model classes (the network itself is ``self.module``, an ``nn.Module``).

    Every model has the same shape: ``Model.from_adata(adata, **hyperparameters)`` builds it for the data's
    features, ``model.train(adata, ...)`` trains it on the one engine (:func:`~perturbkit.train.fit`),
    ``model.predict(adata, ...)`` or ``model.encode(adata)`` uses it, and :meth:`save` / :meth:`load` keep it.

    A subclass declares, once, the obs keys it reads in :attr:`data_defaults`; the keys a model was built with
    (``model.data_keys``) and the layer it reads (``model.layer``) are saved with it and reused whenever it meets
    data. It defines :meth:`_build_module` from ``self.hparams`` and ``self.var_names``; its ``__init__`` takes
    ``var_names`` plus the keyword hyperparameters and passes them here. Everything needed to rebuild the model —
    hyperparameters, weights, feature names, the fitted scaler, the training history and any subclass state from
    :meth:`_extra_state` — is written by :meth:`save` and read back by :meth:`load`.
    """

    #: The obs keys (and how rows are read) that the model uses, with their defaults: ``{keyword: default}``.
    data_defaults: ClassVar[dict[str, object]] = {}
    _registry: ClassVar[dict[str, type[BaseModel]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        BaseModel._registry[cls.__name__] = cls

    def __init__(
        self,
        var_names,
        *,
        data_keys: dict | None = None,
        layer: str | None = None,
        scaler=None,
        device=None,
        seed: int | None = 0,
        **hparams,
    ):
        self.var_names = pd.Index([str(v) for v in var_names])
        if self.var_names.has_duplicates:
            dup = self.var_names[self.var_names.duplicated()].unique()[:5].tolist()
            raise PerturbkitInputError(
                f"feature names must be unique, but {dup} repeat; call adata.var_names_make_unique()."
            )
        unknown = set(data_keys or {}) - set(self.data_defaults)
        if unknown:
            raise PerturbkitInputError(
                f"{type(self).__name__} reads no data key(s) {sorted(unknown)}; it reads {list(self.data_defaults)}."
            )
        self.scaler = scaler
        self.hparams = dict(hparams, data_keys={**self.data_defaults, **(data_keys or {})}, layer=layer, seed=seed)
        self.seed = seed
        self.history = History()
        self.interrupted = False  # set by a train() that Ctrl-C ended early
        self.device = resolve_device(device)
        with seeded(seed):  # weight initialisation is part of a reproducible run
            self.module: nn.Module = self._build_module().to(self.device)
        self.module.eval()

    @property
    def data_keys(self) -> dict:
        """The obs keys the model was built with, reused whenever it meets data."""
        return dict(self.hparams["data_keys"])

    @property
    def layer(self) -> str | None:
        """The layer the model reads (None: ``adata.X``), reused whenever it meets data."""
        return self.hparams.get("layer")

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

    def feature_matrix(self, adata, *, layer: str | None = None) -> np.ndarray:
        """``adata``'s profiles as float32, in the model's feature order; refuses missing features or NaN/inf.

        ``layer=None`` reads the layer the model was trained on (:attr:`layer`); ``layer="X"`` reads ``adata.X``.
        """
        layer = self.layer if layer is None else (None if layer == "X" else layer)
        self.check_features(adata)
        columns = adata.var_names.get_indexer(self.var_names)
        X = dense_matrix(adata, layer)
        if not np.array_equal(columns, np.arange(adata.n_vars)):
            X = X[:, columns]
        check_finite(X, where="adata.X" if layer is None else f"adata.layers[{layer!r}]")
        return X

    @torch.no_grad()
    def run_in_chunks(self, function, X: np.ndarray, *extra, chunk_rows: int = 8192) -> np.ndarray:
        """``function`` (tensors in, a tensor out) over row chunks of ``X`` (and aligned ``extra`` arrays).

        It runs in eval mode on the model's device and returns the concatenated output as a NumPy array.
        """
        self.module.eval()
        outputs = []
        for start in range(0, len(X), chunk_rows):
            batch = [
                torch.from_numpy(np.ascontiguousarray(a[start : start + chunk_rows])).to(self.device)
                for a in (X, *extra)
            ]
            outputs.append(function(*batch).cpu().numpy())
        return np.concatenate(outputs) if outputs else np.zeros((0,), dtype=np.float32)

    def training_record(self, params: dict, **extra) -> dict:
        """The ``adata.uns`` record a ``pk.tl`` trainer writes after training.

        The settings, the device, the number of epochs, whether Ctrl-C ended it, the final training loss and the best
        validation loss.
        """
        history = self.history_frame
        train_column = next((c for c in ("train_loss", "train_generator_loss") if c in history), None)
        has_validation = "validation_loss" in history and history["validation_loss"].notna().any()
        return storable(
            {
                "params": params,
                "device": str(self.device),
                "n_epochs": len(history),
                "interrupted": bool(self.interrupted),
                "final_train_loss": float(history[train_column].dropna().iloc[-1])
                if train_column is not None and history[train_column].notna().any()
                else None,
                "best_validation_loss": float(history["validation_loss"].min()) if has_validation else None,
                **extra,
            }
        )

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
                f"(adata[:, model.var_names]), map gene identifiers to the same naming first, "
                f"or retrain on these genes."
            )

    # --- training runs -----------------------------------------------------------------------------------
    @contextmanager
    def _training_run(self, *, seed: int | None, checkpoint_dir=None, checkpoint_every: int = 10, resume=None):
        """The scope of one ``train`` call; yields its :class:`TrainingRun`.

        Inside it the global generators are seeded by ``seed`` and restored afterwards. Ctrl-C ends training
        cleanly: the best weights so far are kept (the engine restores them), a warning says so, and the
        subclass's ``train`` goes on to return the model.
        """
        self.interrupted = False
        with seeded(seed):
            run = TrainingRun(self, directory=checkpoint_dir, every=checkpoint_every, resume=resume)
            try:
                yield run
            except KeyboardInterrupt as error:
                self.module.eval()
                self.interrupted = True
                warn_interrupted(self, error)

    def _fit_stage(self, run: TrainingRun, stage: str, objectives, train, **fit_options) -> None:
        """Train ``self.module`` for one ``stage`` of ``run`` with :func:`~perturbkit.train.fit`, then mark it done.

        A run resumed from a checkpoint that had completed ``stage`` skips it. ``fit_options`` are ``fit``'s other
        arguments (validation, epochs, batch size, seed, ...); the module, device, history and checkpoint are the
        model's and ``run``'s.
        """
        if run.passed(stage):
            return
        fit(
            self.module,
            objectives,
            train,
            device=self.device,
            stage=stage,
            history=self.history,
            checkpoint=run,
            **fit_options,
        )
        run.stage_done(stage)

    def _fit_rows(
        self,
        stage: str,
        objectives,
        arrays,
        train_rows,
        val_rows,
        *,
        seed,
        checkpoint_dir,
        checkpoint_every,
        resume,
        **fit_options,
    ):
        """Train one ``stage`` on row-aligned ``arrays``: ``train_rows`` train, ``val_rows`` (if any) validate.

        Opens the training run (seeding, checkpoints, resume, Ctrl-C), runs :meth:`_fit_stage` and leaves the module
        in eval mode; ``fit_options`` are ``fit``'s other arguments. Returns the model.
        """
        return self._fit_in_run(
            stage,
            objectives,
            tuple(a[train_rows] for a in arrays),
            tuple(a[val_rows] for a in arrays) if len(val_rows) else None,
            seed=seed,
            run_options={"checkpoint_dir": checkpoint_dir, "checkpoint_every": checkpoint_every, "resume": resume},
            **fit_options,
        )

    def _fit_streamed(
        self,
        stage: str,
        objectives,
        stream,
        train_rows,
        val_rows,
        *side,
        batch_size: int,
        buffer_chunks,
        max_validation_rows,
        transform=None,
        seed,
        run_options: dict,
        **fit_options,
    ):
        """:meth:`_fit_rows` for a matrix that stays on disk: the training rows of ``stream`` are streamed in chunks.

        ``stream`` reads the model's features of an out-of-core AnnData (``perturbkit.train._stream.OnDiskFeatures``);
        ``side`` are per-row arrays held in memory, served after X; ``transform`` is applied to every chunk and to
        the validation rows, which are read into memory (at most ``max_validation_rows``).
        """
        val_rows = stream.validation_rows(val_rows, seed=seed, max_rows=max_validation_rows)
        train = stream.batches(
            *side,
            rows=train_rows,
            batch_size=batch_size,
            transform=transform,
            device=self.device,
            buffer_chunks=buffer_chunks,
            avoid_single_row_batch=True,
        )
        validation = None
        if len(val_rows):
            X = stream.rows(val_rows)
            validation = (X if transform is None else transform(X), *(a[val_rows] for a in side))
        return self._fit_in_run(stage, objectives, train, validation, seed=seed, run_options=run_options, **fit_options)

    def _fit_in_run(self, stage: str, objectives, train, validation, *, seed, run_options: dict, **fit_options):
        """One training run (seeding, checkpoints, resume, Ctrl-C) of one ``stage``; leaves the module in eval mode."""
        with self._training_run(seed=seed, **run_options) as run:
            self._fit_stage(run, stage, objectives, train, validation=validation, seed=seed, **fit_options)
        self.module.eval()
        return self

    # --- persistence -------------------------------------------------------------------------------
    def save(self, path, *, overwrite: bool = True) -> Path:
        """Write weights, hyperparameters, feature names, scaler, history and package version to one file.

        The file is written to a temporary file in the same folder and then renamed over ``path``, so a failed or
        interrupted save never destroys a good file. It carries a checksum that :meth:`load` verifies. In a
        distributed run (``torchrun``) every rank holds the same model and only rank 0 writes; the other ranks
        return at once, so a script may call ``save`` on every rank or on rank 0 alone.
        """
        path = Path(path)
        if not is_main_process():
            return path
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
        self._write_payload(path)
        return path

    def _payload(self) -> dict:
        return {
            "format": FORMAT,
            "class": type(self).__name__,
            "module": type(self).__module__,
            "perturbkit_version": __version__,
            "hparams": _to_saveable(self.hparams),
            "var_names": list(self.var_names),
            "scaler": None if self.scaler is None else self.scaler.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in self.module.state_dict().items()},
            "history": _to_saveable(self.history.records),
            "extra": _to_saveable(self._extra_state()),
        }

    def _write_payload(self, path: Path, *, progress: dict | None = None) -> None:
        payload = self._payload()
        if progress is not None:
            payload["progress"] = progress  # optimiser states keep their integer keys
        payload["sha256"] = _digest(payload)
        with atomic_write(path) as tmp:
            torch.save(payload, tmp)

    @classmethod
    def _read_payload(cls, path) -> dict:
        """Read and check a model file: its format version, its checksum, and that it holds only plain data."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no saved model at {path}.")
        if not zipfile.is_zipfile(path):  # every file torch.save writes is a zip archive
            raise ModelFileError(
                f"{path} is not a perturbkit model file: it is damaged, truncated, or a file of another kind. Save "
                f"the model again with model.save(path)."
            )
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise ModelFileError(
                f"{path} holds Python objects that no perturbkit model file contains, so it was refused: it is not a "
                f"perturbkit model file, or it was altered. Load model files only from sources you trust; save the "
                f"model again with model.save(path)."
            ) from None
        except Exception as error:  # zip, EOF and storage errors of damaged or foreign files
            raise ModelFileError(
                f"{path} could not be read as a perturbkit model file ({type(error).__name__}: "
                f"{str(error).splitlines()[0][:200] if str(error) else 'no detail'}). The file is damaged, truncated "
                f"or of another kind; save the model again with model.save(path)."
            ) from None
        fmt = payload.get("format") if isinstance(payload, dict) else None
        if not isinstance(fmt, str) or not fmt.startswith(FORMAT_NAME + "/"):
            raise ModelFileError(f"{path} is not a perturbkit model file (expected format {FORMAT!r}).")
        version = fmt.split("/", 1)[1]
        if version not in READABLE_FORMATS:
            raise ModelFileError(
                f"{path} is a perturbkit model file of format version {version!r}, which this perturbkit "
                f"({__version__}) cannot read (it reads versions {', '.join(READABLE_FORMATS)}). Update perturbkit "
                f"(pip install -U perturbkit), or save the model again with the perturbkit that made it."
            )
        if "sha256" in payload:
            stored = payload.pop("sha256")
            if stored != _digest(payload):
                raise ModelFileError(
                    f"{path} is damaged: its contents do not match the checksum stored when it was saved. Use another "
                    f"copy, or train and save the model again."
                )
        elif version != "1":
            raise ModelFileError(f"{path} has no checksum, which format {fmt!r} requires; the file was altered.")
        saved_version = str(payload.get("perturbkit_version", "0"))
        if _version_tuple(saved_version) > _version_tuple(__version__):
            warnings.warn(
                f"{path} was saved by perturbkit {saved_version}, newer than this one ({__version__}); it is loaded, "
                f"but update perturbkit (pip install -U perturbkit) if anything looks off.",
                UserWarning,
                stacklevel=3,
            )
        return payload

    @staticmethod
    def _saved_class(payload: dict, path) -> type[BaseModel]:
        name = payload["class"]
        if name not in BaseModel._registry:
            _import_model_module(payload.get("module"))
        saved_class = BaseModel._registry.get(name)
        if saved_class is None:
            raise ModelFileError(f"{path} holds a {name} model, which this perturbkit does not define.")
        return saved_class

    def _restore_payload(self, payload: dict) -> None:
        """Put the weights, scaler, history and extra state of a read file into this (already built) model."""
        if payload["scaler"] is not None:
            from ..pp import Scaler

            self.scaler = Scaler.from_dict(payload["scaler"])
        self.module.load_state_dict(payload["state_dict"])
        self.module.to(self.device).eval()
        self.history = History(list(payload["history"]))
        self._load_extra_state(payload["extra"])

    @classmethod
    def load(cls, path, *, device=None) -> BaseModel:
        """Load a model written by :meth:`save` (``BaseModel.load`` works for any model class).

        The file's checksum and format version are checked first; a damaged, foreign or unreadable file raises
        :class:`~perturbkit.errors.ModelFileError`. ``device=None`` uses ``pk.settings.device``.
        """
        payload = cls._read_payload(path)
        saved_class = cls._saved_class(payload, path)
        if cls is not BaseModel and not issubclass(saved_class, cls):
            raise ModelFileError(
                f"{path} holds a {payload['class']} model, not a {cls.__name__}; load it with "
                f"{payload['class']}.load or BaseModel.load."
            )
        model = saved_class(payload["var_names"], device=device, **dict(payload["hparams"]))
        model._restore_payload(payload)
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


def _digest(obj) -> str:
    """SHA-256 of a payload of dicts, lists, tensors and plain values, independent of how the file stores them."""
    sha = hashlib.sha256()

    def feed(value):
        if isinstance(value, dict):
            sha.update(b"{%d" % len(value))
            for key in sorted(value, key=str):
                feed(str(key))
                feed(value[key])
        elif isinstance(value, (list, tuple)):
            sha.update(b"[%d" % len(value))
            for item in value:
                feed(item)
        elif isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            sha.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
            sha.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            sha.update(f"{type(value).__name__}:{value!r};".encode())

    feed(obj)
    return sha.hexdigest()


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _import_model_module(module: str | None) -> None:
    """Import the module that defines a saved model's class, so ``BaseModel.load`` works in a fresh session.

    Only perturbkit's own modules are imported; files without the module name (format 1) import every model.
    """
    if isinstance(module, str) and module.startswith("perturbkit.models."):
        try:
            importlib.import_module(module)
            return
        except ImportError:
            pass
    import pkgutil

    import perturbkit.models as models

    for info in pkgutil.iter_modules(models.__path__):
        if info.ispkg:
            importlib.import_module(f"perturbkit.models.{info.name}")
