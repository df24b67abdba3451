"""The VAE model: vanilla, β and MMD variational autoencoders on profiles (see the VAE methods page)."""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
import torch

from ..._schema import PerturbkitInputError, UnknownCategoryError, check_finite, dense_matrix, require_columns
from ...train import BaseModel, Objective, split_indices
from ...train._stream import model_features, on_disk_features
from .._inputs import UnknownOptionError, is_anndata
from ._module import KINDS, OUTPUTS, VAENetwork, vae_loss

Kind = Literal["vanilla", "beta", "mmd"]

_CHUNK = 16384  # rows per forward pass at inference

#: A latent unit is active when the variance of its posterior mean across samples exceeds this (Burda et al. 2016).
ACTIVE_THRESHOLD = 0.01


class PosteriorCollapseWarning(UserWarning):
    """A trained VAE uses fewer than half of its latent units (the others carry no information about the data)."""


_PACKAGE = str(Path(__file__).resolve().parents[2])


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that points a warning raised by our caller at the first frame outside perturbkit."""
    frame, level = sys._getframe(1), 1
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


def check_kind(kind) -> str:
    if kind not in KINDS:
        raise PerturbkitInputError(
            f"kind={kind!r} is not a VAE kind; use one of {', '.join(map(repr, KINDS))} "
            f"(vanilla: MSE + KL; beta: MSE + β·KL; mmd: MSE + λ·MMD)."
        )
    return kind


def resolve_output(output, X: np.ndarray) -> str:
    """``"auto"`` → ``"sigmoid"`` when every value of ``X`` is in [0, 1], else ``"linear"``; checks the others."""
    return resolve_output_range(output, *((float(X.min()), float(X.max())) if X.size else (np.nan, np.nan)))


def resolve_output_range(output, lo: float, hi: float) -> str:
    """:func:`resolve_output` from the data's smallest and largest values (NaN: no data)."""
    inside = bool(lo >= 0.0 and hi <= 1.0)
    if output == "auto":
        return "sigmoid" if inside else "linear"
    if output not in OUTPUTS:
        raise PerturbkitInputError(f"output={output!r} is not known; use 'auto', 'sigmoid' or 'linear'.")
    if output == "sigmoid" and not inside:
        raise PerturbkitInputError(
            f"output='sigmoid' needs data in [0, 1], but it spans [{lo:.3g}, {hi:.3g}]. Min-max scale it "
            f"first (pk.pp.scale(adata, method='minmax')) or use output='linear'."
        )
    return output


@dataclass(frozen=True)
class VAEDefaults:
    """The VAE's defaults, written once: every signature that takes these options takes its default here."""

    kind: str = "vanilla"
    latent_dim: int = 10
    hidden: tuple[int, ...] = (250,)
    batch_norm: bool = True
    beta: float = 0.3  # the paper's β for Cell Painting level 5 (kind="beta"; the vanilla VAE's KL weight is 1)
    lam: float = 1000.0
    lr: float = 1e-3
    batch_size: int = 96
    # Small sets (a few hundred consensus profiles) leave the collapsed start only after tens of epochs, where a
    # patience of 10 had already stopped training (see the VAE methods page, "Posterior collapse").
    max_epochs: int = 300
    patience: int | None = 30
    validation_fraction: float = 0.1


DEFAULTS = VAEDefaults()


def _plain_table(var: pd.DataFrame) -> dict:
    """The var columns as plain lists (strings, or numbers for numeric columns), for saving."""
    table = {}
    for column in var.columns:
        values = var[column]
        if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            table[str(column)] = [v.item() if hasattr(v, "item") else v for v in values.to_numpy()]
        else:
            table[str(column)] = [str(v) for v in values.astype(object).to_numpy()]
    return table


class VAE(BaseModel):
    """A variational autoencoder of profiles: vanilla, β (weighted KL) or MMD (KL replaced by MMD).

    Works like sklearn's PCA for latent arithmetic: :meth:`transform` gives latent means and
    :meth:`inverse_transform` decodes latent vectors, both in the data's own units. Build and train it with
    :func:`perturbkit.tl.train_vae` (or :meth:`from_adata`).

    Parameters
    ----------
    var_names
        Feature names, in order.
    kind
        ``"vanilla"`` (MSE + KL), ``"beta"`` (MSE + β·KL) or ``"mmd"`` (MSE + λ·MMD against N(0, I) samples).
    latent_dim, hidden, batch_norm
        Latent size, encoder hidden sizes (the decoder mirrors them), batch norm in the encoder.
    output
        ``"sigmoid"`` (data in [0, 1]) or ``"linear"``.
    beta, lam
        KL weight (``kind="beta"``; vanilla uses 1) and MMD weight (``kind="mmd"``).
    """

    def __init__(
        self,
        var_names,
        *,
        kind: Kind = DEFAULTS.kind,
        latent_dim: int = DEFAULTS.latent_dim,
        hidden=DEFAULTS.hidden,
        batch_norm: bool = DEFAULTS.batch_norm,
        output: Literal["sigmoid", "linear"] = "sigmoid",
        beta: float = DEFAULTS.beta,
        lam: float = DEFAULTS.lam,
        **kwargs,
    ):
        check_kind(kind)
        if output not in OUTPUTS:
            raise PerturbkitInputError(f"output={output!r} is not known; use 'sigmoid' or 'linear'.")
        if int(latent_dim) < 1:
            raise PerturbkitInputError(f"latent_dim must be at least 1, got {latent_dim}.")
        if beta < 0 or lam < 0:
            raise PerturbkitInputError(f"beta and lam must be >= 0, got beta={beta}, lam={lam}.")
        self.var_table = pd.DataFrame(index=pd.Index([str(v) for v in var_names]))
        self.latent_activity: np.ndarray | None = None  # set by train(): variance of each unit's posterior mean
        super().__init__(
            var_names,
            kind=kind,
            latent_dim=int(latent_dim),
            hidden=tuple(int(h) for h in hidden),
            batch_norm=bool(batch_norm),
            output=output,
            beta=float(beta),
            lam=float(lam),
            **kwargs,
        )

    def _build_module(self):
        h = self.hparams
        return VAENetwork(
            self.n_vars, h["latent_dim"], hidden=h["hidden"], batch_norm=h["batch_norm"], output=h["output"]
        )

    def _extra_state(self) -> dict:
        state = {"var_table": _plain_table(self.var_table)}
        if self.latent_activity is not None:
            state["latent_activity"] = [float(v) for v in self.latent_activity]
        return state

    def _load_extra_state(self, state: dict) -> None:
        table = state.get("var_table") or {}
        self.var_table = pd.DataFrame({k: list(v) for k, v in table.items()}, index=self.var_names)
        activity = state.get("latent_activity")
        self.latent_activity = None if activity is None else np.asarray(list(activity), dtype=np.float64)

    # -------------------------------------------------------------------------------------------- properties
    @property
    def latent_dim(self) -> int:
        return int(self.hparams["latent_dim"])

    @property
    def kind(self) -> str:
        return str(self.hparams["kind"])

    @property
    def active_units(self) -> int | None:
        """How many latent units are active after training (posterior-mean variance > ``ACTIVE_THRESHOLD``).

        ``None`` before training. :attr:`latent_activity` holds each unit's variance.
        """
        return None if self.latent_activity is None else int((self.latent_activity > ACTIVE_THRESHOLD).sum())

    def check_collapse(self, X) -> np.ndarray:
        """Measure each latent unit's activity on the profiles ``X`` and warn when fewer than half are active.

        The activity of a unit is the variance, across the rows of ``X`` (data units, model feature order), of its
        posterior mean; a unit is active when it exceeds ``ACTIVE_THRESHOLD`` = 0.01 (Burda, Grosse &
        Salakhutdinov 2016). Stores and returns the activities (:attr:`latent_activity`); :meth:`train` calls it on
        its data. Warns with :class:`PosteriorCollapseWarning`.
        """
        Z = self.transform(X).astype(np.float64)
        self.latent_activity = Z.var(axis=0) if len(Z) > 1 else np.zeros(self.latent_dim)
        n_active = self.active_units
        if 2 * n_active < self.latent_dim:
            fixes = {
                "vanilla": "kind='beta' with beta below 1 (the paper's 0.3) or kind='mmd'",
                "beta": f"a lower beta (now {self.hparams['beta']:g}) or kind='mmd'",
                "mmd": f"a lower lam (now {self.hparams['lam']:g})",
            }[self.kind]
            warnings.warn(
                f"posterior collapse: only {n_active} of the VAE's {self.latent_dim} latent units are active "
                f"(variance of the posterior mean > {ACTIVE_THRESHOLD:g} across the {len(Z)} rows of the training "
                f"data); the others encode nothing, and latent arithmetic with this model is close to the "
                f"shuffled-label control. Try {fixes}, a smaller latent_dim, or more data or epochs "
                f"(max_epochs=, patience=, a smaller batch_size=).",
                PosteriorCollapseWarning,
                stacklevel=_caller_stacklevel(),
            )
        return self.latent_activity

    # ---------------------------------------------------------------------------------------------- training
    def loss(self, batch) -> dict[str, torch.Tensor]:
        """The training loss on a batch ``(x,)`` in model units (see :func:`vae_loss`)."""
        h = self.hparams
        return vae_loss(self.module, batch[0], kind=h["kind"], beta=h["beta"], lam=h["lam"])

    def train(
        self,
        adata,
        *,
        validation_fraction: float = DEFAULTS.validation_fraction,
        stratify=None,
        lr: float = DEFAULTS.lr,
        batch_size: int = DEFAULTS.batch_size,
        max_epochs: int = DEFAULTS.max_epochs,
        patience: int | None = DEFAULTS.patience,
        seed: int | None = 0,
        stage: str = "train",
        checkpoint_dir=None,
        checkpoint_every: int = 10,
        resume=None,
        chunk_rows: int | None = None,
        buffer_chunks: int | None = None,
        max_validation_rows: int | None = None,
    ) -> VAE:
        """Train on ``adata``'s rows with the shared engine; held-out rows drive early stopping.

        Parameters
        ----------
        adata
            Profiles in the data's units: an AnnData (features matched by name, the model's layer) or an array in
            the model's feature order.
        validation_fraction, stratify
            Rows held out for early stopping; ``stratify`` (an obs column such as ``"plate"``, or one label per
            row) takes that fraction of each of its groups. 0 trains on every row and monitors the training loss.
        lr, batch_size, max_epochs, patience
            Adam learning rate, minibatch size, epoch limit and early-stopping patience. The best epoch's weights
            are kept. A batch size that would leave a last batch of one row (batch norm cannot train on it) is
            raised by one.
        seed, stage
            Seed of the split, initial batches and noise (CPU runs are bitwise reproducible); the history label.
        checkpoint_dir, checkpoint_every, resume
            Write a checkpoint every ``checkpoint_every`` epochs; ``resume`` (a checkpoint) continues an earlier
            run exactly. Ctrl-C stops training with the best weights so far and returns the model.
        chunk_rows, buffer_chunks, max_validation_rows
            Only for an AnnData whose X stays on disk (:func:`perturbkit.io.read_store`), which is streamed instead
            of loaded (:class:`~perturbkit.train.StreamedBatches`): rows per contiguous read and chunks shuffled
            together (None: 4 MiB of rows and 64 MiB buffers), and the most validation rows read into memory (None:
            256 MiB of rows; a random subset of the held-out rows above it, the rest stay out of training too).
            Latent activity is then measured on a random sample of 10,000 rows (at most 64 MiB).

        Returns
        -------
        The model, trained; :attr:`active_units` and :attr:`latent_activity` say how many latent units it uses (a
        :class:`PosteriorCollapseWarning` when fewer than half).
        """
        stream = model_features(self, adata, chunk_rows=chunk_rows) if is_anndata(adata) else None
        X = None
        if stream is None:
            X = self.feature_matrix(adata) if is_anndata(adata) else np.asarray(adata, dtype=np.float32)
        if isinstance(stratify, str):
            if not is_anndata(adata):
                raise PerturbkitInputError(
                    "stratify= names an obs column, which needs an AnnData; pass one label per row instead."
                )
            require_columns(adata, {"stratify": stratify}, purpose="the stratified validation split")
            stratify = adata.obs[stratify].to_numpy()
        train_rows, val_rows = split_indices(
            len(X) if stream is None else stream.n_obs,
            validation_fraction=validation_fraction,
            seed=0 if seed is None else seed,
            strata=stratify,
        )
        run_options = {"checkpoint_dir": checkpoint_dir, "checkpoint_every": checkpoint_every, "resume": resume}
        if stream is not None:
            if len(train_rows) < 2 and self.hparams["batch_norm"]:
                raise PerturbkitInputError(
                    "batch norm needs at least 2 training rows; pass more data or batch_norm=False."
                )
            self._fit_streamed(
                stage,
                Objective(self.loss, self.module.parameters(), lr=lr),
                stream,
                train_rows,
                val_rows,
                batch_size=batch_size,
                buffer_chunks=buffer_chunks,
                max_validation_rows=max_validation_rows,
                transform=lambda X: self._check_sigmoid_range(self.scale_rows(X)),
                seed=seed,
                run_options=run_options,
                max_epochs=max_epochs,
                patience=patience,
            )
            if not self.interrupted:  # latent activity on a bounded random sample of the rows
                self.check_collapse(stream.rows(stream.sample_rows(None, seed)))
            return self
        data = X
        X, V = self._model_units(X[train_rows]), self._model_units(X[val_rows]) if len(val_rows) else None
        if self.hparams["output"] == "sigmoid" and (X.min() < 0 or X.max() > 1):
            raise PerturbkitInputError(
                f"this VAE has a sigmoid output but the training data spans [{X.min():.3g}, {X.max():.3g}]; "
                f"min-max scale it (pk.pp.scale(adata, method='minmax')) or use output='linear'."
            )
        if len(X) < 2 and self.hparams["batch_norm"]:
            raise PerturbkitInputError("batch norm needs at least 2 training rows; pass more data or batch_norm=False.")
        self._fit_in_run(
            stage,
            Objective(self.loss, self.module.parameters(), lr=lr),
            (X,),
            None if V is None else (V,),
            seed=seed,
            run_options=run_options,
            max_epochs=max_epochs,
            batch_size=batch_size,
            patience=patience,
            avoid_single_row_batch=True,
        )
        if not self.interrupted:
            self.check_collapse(data)
        return self

    def _check_sigmoid_range(self, X: np.ndarray) -> np.ndarray:
        if self.hparams["output"] == "sigmoid" and X.size and (X.min() < 0 or X.max() > 1):
            raise PerturbkitInputError(
                f"this VAE has a sigmoid output but the training data spans values down to {X.min():.3g} and up to "
                f"{X.max():.3g}; min-max scale it (pk.pp.scale(adata, method='minmax')) or use output='linear'."
            )
        return X

    @classmethod
    def from_adata(
        cls,
        adata,
        *,
        kind: Kind = DEFAULTS.kind,
        latent_dim: int = DEFAULTS.latent_dim,
        beta: float = DEFAULTS.beta,
        lam: float = DEFAULTS.lam,
        hidden=DEFAULTS.hidden,
        batch_norm: bool = DEFAULTS.batch_norm,
        output: Literal["auto", "sigmoid", "linear"] = "auto",
        layer: str | None = None,
        device: str | None = None,
        seed: int | None = 0,
    ) -> VAE:
        """An untrained VAE for ``adata``'s features (``output="auto"``: sigmoid when the data lie in [0, 1]).

        The layer is recorded with the model and reused by :meth:`train` and :meth:`encode`; the var table is kept
        for feature groups. See :func:`perturbkit.tl.train_vae` for the parameters.
        """
        check_kind(kind)
        stream = on_disk_features(adata, layer=layer)
        if stream is None:
            X = dense_matrix(adata, layer)
            check_finite(X, where="adata.X" if layer is None else f"adata.layers[{layer!r}]")
            output = resolve_output(output, X)
        elif output in ("auto", "sigmoid"):  # X on disk: one streamed pass for its range (and finiteness)
            output = resolve_output_range(output, *stream.value_range())
        else:
            output = resolve_output_range(output, np.nan, np.nan)
        model = cls(
            adata.var_names,
            kind=kind,
            latent_dim=latent_dim,
            beta=beta,
            lam=lam,
            hidden=hidden,
            batch_norm=batch_norm,
            output=output,
            layer=layer,
            device=device,
            seed=seed,
        )
        model.var_table = adata.var.copy()
        model.var_table.index = model.var_names
        return model

    @classmethod
    def build_and_train(cls, adata, **options) -> VAE:
        """:meth:`from_adata` then :meth:`train` on ``adata``, each taking its own keyword ``options``."""
        import inspect

        build = set(inspect.signature(cls.from_adata).parameters) - {"adata"}
        unknown = set(options) - build - set(inspect.signature(cls.train).parameters)
        if unknown:
            raise UnknownOptionError(f"unknown VAE option(s) {sorted(unknown)}; see pk.tl.train_vae for the options.")
        model = cls.from_adata(adata, **{k: v for k, v in options.items() if k in build})
        seed = options.get("seed", 0)
        return model.train(adata, seed=seed, **{k: v for k, v in options.items() if k not in build})

    # -------------------------------------------------------------------------------------------- inference
    def _model_units(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_vars:
            raise PerturbkitInputError(
                f"expected a (rows × {self.n_vars}) matrix in the model's feature order, "
                f"got shape {X.shape}; pass an AnnData to encode() to align features by name."
            )
        check_finite(X, where="the profiles")
        return self.scale_rows(X)

    def _run_chunks(self, function, X: np.ndarray) -> np.ndarray:
        return self.run_in_chunks(function, X, chunk_rows=_CHUNK)

    def transform(self, X) -> np.ndarray:
        """Latent means of the profiles ``X`` (rows × features in the data's units, or an AnnData)."""
        if hasattr(X, "var_names"):
            return self.encode(X)
        X = self._model_units(X)
        Z = self._run_chunks(lambda x: self.module.encode(x)[0], X)
        return Z.reshape(len(X), self.latent_dim).astype(np.float32)

    def inverse_transform(self, Z) -> np.ndarray:
        """Decode latent vectors ``Z`` (rows × latent_dim) into profiles in the data's units."""
        Z = self.latent_codes(Z, latent_dim=self.latent_dim)
        return self.unscale_rows(self._run_chunks(self.module.decode, Z).reshape(len(Z), self.n_vars))

    decoder_names = ("VAE decoder",)

    def encode_array(self, X) -> np.ndarray:
        """Latent means of profiles ``X`` (the latent interface; same as :meth:`transform`)."""
        return self.transform(X)

    def decode_array(self, Z, *, decoder: str | None = None, inputs=None) -> np.ndarray:
        """Decode latent vectors (the latent interface; same as :meth:`inverse_transform`)."""
        if decoder is not None and decoder not in self.decoder_names:
            raise UnknownCategoryError(f"decoder {decoder!r} is unknown; a VAE has one decoder, {self.decoder_names}.")
        return self.inverse_transform(Z)

    def encode(self, adata, *, layer=None) -> np.ndarray:
        """Latent means of ``adata``'s rows (features aligned by name; missing ones raise GeneMismatchError).

        An AnnData whose X stays on disk is encoded in row chunks.
        """
        stream = model_features(self, adata, layer=layer)
        if stream is not None:
            return stream.map_rows(self.transform).reshape(stream.n_obs, self.latent_dim)
        return self.transform(self.feature_matrix(adata, layer=layer))

    def predict(self, adata, *, layer: str | None = None) -> ad.AnnData:
        """The VAE's prediction for ``adata``'s rows: their reconstructions (the decoded latent means).

        Parameters
        ----------
        adata
            Profiles; features are matched by name and read from the model's layer (or ``layer``).
        layer
            Read this layer instead of the model's (``"X"`` for ``adata.X``).

        Returns
        -------
        An AnnData with ``adata``'s obs and the model's features, in the data's units; ``obsm["X_latent"]`` holds
        the latent means.
        """
        Z = self.encode(adata, layer=layer)
        out = ad.AnnData(self.inverse_transform(Z), obs=adata.obs.copy(), var=pd.DataFrame(index=self.var_names))
        out.obsm["X_latent"] = Z
        return out

    def decode(self, Z) -> np.ndarray:
        """Alias of :meth:`inverse_transform`."""
        return self.inverse_transform(Z)

    def reconstruct(self, X) -> np.ndarray:
        """Decode the latent means of ``X`` (rows, data units, or an AnnData)."""
        return self.inverse_transform(self.transform(X))

    def sample(self, n: int, *, seed: int | None = 0) -> np.ndarray:
        """Decode ``n`` draws from the prior N(0, I) (data units)."""
        return self.inverse_transform(self.sample_latent(n, seed=seed))

    def sample_latent(self, n: int, *, seed: int | None = 0) -> np.ndarray:
        """``n`` draws from the prior N(0, I) (rows × latent_dim)."""
        if int(n) < 0:
            raise PerturbkitInputError(f"n must be >= 0, got {n}.")
        return np.random.default_rng(seed).standard_normal((int(n), self.latent_dim)).astype(np.float32)
