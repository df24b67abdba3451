"""The VAE model: vanilla, β and MMD variational autoencoders on profiles (methods.md §2)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..._schema import PerturbkitInputError, UnknownCategoryError, check_finite, require_columns
from ...train import BaseModel, Objective, fit, split_indices
from ._module import KINDS, OUTPUTS, VAENetwork, vae_loss

_CHUNK = 16384  # rows per forward pass at inference


def check_kind(kind) -> str:
    if kind not in KINDS:
        raise PerturbkitInputError(f"kind={kind!r} is not a VAE kind; use one of {', '.join(map(repr, KINDS))} "
                                   f"(vanilla: MSE + KL; beta: MSE + β·KL; mmd: MSE + λ·MMD).")
    return kind


def resolve_output(output, X: np.ndarray) -> str:
    """``"auto"`` → ``"sigmoid"`` when every value of ``X`` is in [0, 1], else ``"linear"``; checks the others."""
    inside = bool(X.size) and float(X.min()) >= 0.0 and float(X.max()) <= 1.0
    if output == "auto":
        return "sigmoid" if inside else "linear"
    if output not in OUTPUTS:
        raise PerturbkitInputError(f"output={output!r} is not known; use 'auto', 'sigmoid' or 'linear'.")
    if output == "sigmoid" and not inside:
        raise PerturbkitInputError(
            f"output='sigmoid' needs data in [0, 1], but it spans [{X.min():.3g}, {X.max():.3g}]. Min-max scale it "
            f"first (pk.pp.scale(adata, method='minmax')) or use output='linear'."
        )
    return output


def stratified_split(n: int, *, validation_fraction: float, seed: int = 0, strata=None):
    """Train/validation row indices; with ``strata`` (e.g. plates), ``validation_fraction`` of each stratum."""
    if strata is None:
        return split_indices(n, validation_fraction=validation_fraction, seed=seed)
    if not 0 <= validation_fraction < 1:
        raise PerturbkitInputError(f"validation_fraction must be in [0, 1), got {validation_fraction}.")
    strata = pd.Series(np.asarray(strata)).astype(str).to_numpy()
    if len(strata) != n:
        raise PerturbkitInputError(f"stratify labels have {len(strata)} entries for {n} rows.")
    rng = np.random.default_rng(seed)
    is_val = np.zeros(n, dtype=bool)
    for label in np.unique(strata):
        rows = rng.permutation(np.flatnonzero(strata == label))
        is_val[rows[: int(round(len(rows) * validation_fraction))]] = True
    if validation_fraction > 0 and not is_val.any() and n > 1:
        is_val[rng.integers(n)] = True
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


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

    def __init__(self, var_names, *, kind: str = "vanilla", latent_dim: int = 10, hidden=(250,),
                 batch_norm: bool = True, output: str = "sigmoid", beta: float = 1.0, lam: float = 1000.0, **kwargs):
        check_kind(kind)
        if output not in OUTPUTS:
            raise PerturbkitInputError(f"output={output!r} is not known; use 'sigmoid' or 'linear'.")
        if int(latent_dim) < 1:
            raise PerturbkitInputError(f"latent_dim must be at least 1, got {latent_dim}.")
        if beta < 0 or lam < 0:
            raise PerturbkitInputError(f"beta and lam must be >= 0, got beta={beta}, lam={lam}.")
        self.var_table = pd.DataFrame(index=pd.Index([str(v) for v in var_names]))
        super().__init__(var_names, kind=kind, latent_dim=int(latent_dim), hidden=tuple(int(h) for h in hidden),
                         batch_norm=bool(batch_norm), output=output, beta=float(beta), lam=float(lam), **kwargs)

    def _build_module(self):
        h = self.hparams
        return VAENetwork(self.n_vars, h["latent_dim"], hidden=h["hidden"], batch_norm=h["batch_norm"],
                          output=h["output"])

    def _extra_state(self) -> dict:
        return {"var_table": _plain_table(self.var_table)}

    def _load_extra_state(self, state: dict) -> None:
        table = state.get("var_table") or {}
        self.var_table = pd.DataFrame({k: list(v) for k, v in table.items()}, index=self.var_names)

    # -------------------------------------------------------------------------------------------- properties
    @property
    def latent_dim(self) -> int:
        return int(self.hparams["latent_dim"])

    @property
    def kind(self) -> str:
        return str(self.hparams["kind"])

    # ---------------------------------------------------------------------------------------------- training
    def loss(self, batch) -> dict[str, torch.Tensor]:
        """The training loss on a batch ``(x,)`` in model units (see :func:`vae_loss`)."""
        h = self.hparams
        return vae_loss(self.module, batch[0], kind=h["kind"], beta=h["beta"], lam=h["lam"])

    def train(self, X, *, validation=None, lr: float = 1e-3, batch_size: int = 96, max_epochs: int = 100,
              patience: int | None = 10, seed: int | None = 0, stage: str = "train", checkpoint_dir=None,
              checkpoint_every: int = 10, resume=None):
        """Train on the rows of ``X`` (data units) with the shared engine; ``validation`` rows drive early stopping.

        The best epoch's weights (by validation loss, or training loss without validation rows) are kept. A batch
        size that would leave a last batch of one row (batch norm cannot train on it) is raised by one. Ctrl-C
        stops training with the best weights so far and returns the model. ``checkpoint_dir`` writes a
        checkpoint every ``checkpoint_every`` epochs; ``resume`` (a checkpoint) continues an earlier run exactly.
        """
        X = self._model_units(X)
        if self.hparams["output"] == "sigmoid" and (X.min() < 0 or X.max() > 1):
            raise PerturbkitInputError(
                f"this VAE has a sigmoid output but the training data spans [{X.min():.3g}, {X.max():.3g}]; "
                f"min-max scale it (pk.pp.scale(adata, method='minmax')) or use output='linear'.")
        if len(X) < 2 and self.hparams["batch_norm"]:
            raise PerturbkitInputError("batch norm needs at least 2 training rows; pass more data or batch_norm=False.")
        V = None if validation is None or len(validation) == 0 else self._model_units(validation)
        with self._training_run(seed=seed, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
                                resume=resume) as run:
            if not run.passed(stage):
                fit(self.module, Objective(self.loss, self.module.parameters(), lr=lr), (X,),
                    validation=None if V is None else (V,), max_epochs=max_epochs, batch_size=batch_size,
                    patience=patience, device=self.device, seed=seed, stage=stage, history=self.history,
                    avoid_single_row_batch=True, checkpoint=run)
                run.stage_done(stage)
        return self

    @classmethod
    def from_adata(cls, adata, *, kind: str = "vanilla", latent_dim: int = 10, beta: float = 1.0,
                   lam: float = 1000.0, hidden=(250,), batch_norm: bool = True, output: str = "auto",
                   device="auto", seed: int = 0, lr: float = 1e-3, batch_size: int = 96, max_epochs: int = 100,
                   patience: int | None = 10, validation_fraction: float = 0.1, stratify=None, layer=None,
                   checkpoint_dir=None, checkpoint_every: int = 10, resume=None) -> VAE:
        """Build a VAE for ``adata``'s features and train it; see :func:`perturbkit.tl.train_vae`."""
        check_kind(kind)
        from ..._schema import dense_matrix

        X = dense_matrix(adata, layer)
        check_finite(X, where="adata.X" if layer is None else f"adata.layers[{layer!r}]")
        output = resolve_output(output, X)
        strata = None
        if stratify is not None:
            if isinstance(stratify, str):
                require_columns(adata, {"stratify": stratify}, purpose="the stratified validation split")
                strata = adata.obs[stratify].to_numpy()
            else:
                strata = np.asarray(stratify)
        train_rows, val_rows = stratified_split(adata.n_obs, validation_fraction=validation_fraction,
                                                seed=0 if seed is None else seed, strata=strata)
        model = cls(adata.var_names, kind=kind, latent_dim=latent_dim, beta=beta, lam=lam, hidden=hidden,
                    batch_norm=batch_norm, output=output, device=device, seed=seed)
        model.var_table = adata.var.copy()
        model.var_table.index = model.var_names
        model.train(X[train_rows], validation=X[val_rows] if len(val_rows) else None, lr=lr, batch_size=batch_size,
                    max_epochs=max_epochs, patience=patience, seed=seed, checkpoint_dir=checkpoint_dir,
                    checkpoint_every=checkpoint_every, resume=resume)
        return model

    # -------------------------------------------------------------------------------------------- inference
    def _model_units(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_vars:
            raise PerturbkitInputError(f"expected a (rows × {self.n_vars}) matrix in the model's feature order, "
                                       f"got shape {X.shape}; pass an AnnData to encode() to align features by name.")
        check_finite(X, where="the profiles")
        return self.scale_rows(X)

    @torch.no_grad()
    def _run(self, function, X: np.ndarray) -> np.ndarray:
        self.module.eval()
        out = [function(torch.from_numpy(np.ascontiguousarray(X[i: i + _CHUNK])).to(self.device)).cpu().numpy()
               for i in range(0, len(X), _CHUNK)]
        return np.concatenate(out) if out else np.zeros((0,), dtype=np.float32)

    def transform(self, X) -> np.ndarray:
        """Latent means of the profiles ``X`` (rows × features in the data's units, or an AnnData)."""
        if hasattr(X, "var_names"):
            return self.encode(X)
        X = self._model_units(X)
        Z = self._run(lambda x: self.module.encode(x)[0], X)
        return Z.reshape(len(X), self.latent_dim).astype(np.float32)

    def inverse_transform(self, Z) -> np.ndarray:
        """Decode latent vectors ``Z`` (rows × latent_dim) into profiles in the data's units."""
        Z = self.latent_codes(Z, latent_dim=self.latent_dim)
        return self.unscale_rows(self._run(self.module.decode, Z).reshape(len(Z), self.n_vars))

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
        """Latent means of ``adata``'s rows (features aligned by name; missing ones raise GeneMismatchError)."""
        return self.transform(self.feature_matrix(adata, layer=layer))

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
