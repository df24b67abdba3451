"""scGen: a VAE whose latent-space arithmetic predicts perturbed profiles (see the scGen methods page)."""

from __future__ import annotations

from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import torch

from ..._groups import group_means
from ..._schema import (
    OBS_KEYS,
    EmptyGroupError,
    PerturbkitInputError,
    UnknownCategoryError,
    check_finite,
    control_mask,
    dense_matrix,
    require_columns,
)
from ...train import BaseModel, Objective, split_indices
from ...train._stream import is_out_of_core, model_features
from .._inputs import is_anndata, is_model
from .._pairing import prediction_obs
from .._profiles import cross_cell_prediction
from ._module import ScGenNetwork, scgen_loss

_CHUNK = 16384  # rows per forward pass at inference
#: The condition label of control rows in the stored latent means.
CONTROL = "control"


@dataclass(frozen=True)
class ScGenDefaults:
    """scGen's defaults (pertpy's ``Scgen`` and its tutorial), written once: every signature takes its default here."""

    latent_dim: int = 100
    hidden: tuple[int, ...] = (800, 800)
    dropout: float = 0.2
    kl_weight: float = 5e-5
    lr: float = 1e-3
    batch_size: int = 32
    max_epochs: int = 100
    patience: int | None = 25
    validation_fraction: float = 0.1


DEFAULTS = ScGenDefaults()


def _control_rows(adata, control_key: str | None) -> np.ndarray:
    """Boolean mask of control rows; ``control_key=None`` or a column without any True row means none."""
    if control_key is None:
        return np.zeros(adata.n_obs, dtype=bool)
    try:
        return control_mask(adata, control_key)
    except EmptyGroupError:
        return np.zeros(adata.n_obs, dtype=bool)


class ScGen(BaseModel):
    """scGen (Lotfollahi, Wolf & Theis 2019): a VAE of profiles and vector arithmetic in its latent space.

    A drug's effect is a latent shift δ (treated minus control latent means, balanced over cell types); a
    profile's treated state is the decoder's output at its latent mean plus δ. The same arithmetic between cell lines
    (δ = the mean latent difference between two cell lines over their shared drugs) predicts a drug's profile in
    another cell line, as the DeepCellState paper adapted scGen. Build it with :meth:`from_adata` and train it with
    :meth:`train`, or both at once with :func:`perturbkit.tl.train_scgen`.

    Parameters
    ----------
    var_names
        Feature (gene) names, in order.
    latent_dim, hidden, dropout
        Latent size (reference 100), encoder hidden sizes (reference 800, 800; the decoder mirrors them) and the
        dropout after each hidden layer (reference 0.2).
    kl_weight
        Weight of the KL divergence against the squared reconstruction error (reference 5e-5).
    **kwargs
        ``data_keys`` (the obs keys of :attr:`data_defaults`), ``layer``, ``device``, ``seed``, as in
        :class:`~perturbkit.train.BaseModel`.
    """

    data_defaults = {
        "cell_key": OBS_KEYS.cell_key,
        "drug_key": OBS_KEYS.drug_key,
        "control_key": OBS_KEYS.control_key,
    }
    decoder_names = ("scGen decoder",)

    def __init__(
        self,
        var_names,
        *,
        latent_dim: int = DEFAULTS.latent_dim,
        hidden=DEFAULTS.hidden,
        dropout: float = DEFAULTS.dropout,
        kl_weight: float = DEFAULTS.kl_weight,
        **kwargs,
    ):
        hidden = tuple(int(h) for h in hidden)
        if int(latent_dim) < 1 or any(h < 1 for h in hidden):
            raise PerturbkitInputError(
                f"latent_dim and the hidden sizes must be positive integers, got latent_dim={latent_dim}, "
                f"hidden={hidden}."
            )
        if not 0 <= float(dropout) < 1:
            raise PerturbkitInputError(f"dropout must be in [0, 1), got {dropout}.")
        if float(kl_weight) < 0:
            raise PerturbkitInputError(f"kl_weight must be >= 0, got {kl_weight}.")
        #: Latent means of the training rows per (cell line, condition); set by :meth:`train`.
        self.latent_groups: pd.DataFrame | None = None
        self.latent_means: np.ndarray | None = None
        super().__init__(
            var_names,
            latent_dim=int(latent_dim),
            hidden=hidden,
            dropout=float(dropout),
            kl_weight=float(kl_weight),
            **kwargs,
        )

    @classmethod
    def from_adata(
        cls,
        adata,
        *,
        cell_key: str = OBS_KEYS.cell_key,
        drug_key: str = OBS_KEYS.drug_key,
        control_key: str | None = OBS_KEYS.control_key,
        latent_dim: int = DEFAULTS.latent_dim,
        hidden=DEFAULTS.hidden,
        dropout: float = DEFAULTS.dropout,
        kl_weight: float = DEFAULTS.kl_weight,
        layer: str | None = None,
        device: str | None = None,
        seed: int | None = 0,
    ) -> ScGen:
        """An untrained scGen for ``adata``'s genes.

        The obs keys and ``layer`` are recorded with the model and reused by :meth:`train` and :meth:`predict`;
        ``control_key=None`` says that no row is a control (bulk profiles of drugs only, for the cross-cell use).
        See :func:`perturbkit.tl.train_scgen` for the parameters.
        """
        if is_model(adata) or not is_anndata(adata):
            raise PerturbkitInputError(f"adata must be an AnnData of profiles, got a {type(adata).__name__}.")
        keys = {"cell_key": cell_key, "drug_key": drug_key, "control_key": control_key}
        require_columns(adata, keys, purpose="scGen's latent means per cell line and condition")
        _control_rows(adata, control_key)  # refuses a control column that is not boolean
        if not is_out_of_core(adata, layer):  # a matrix on disk is checked chunk by chunk while streaming
            check_finite(dense_matrix(adata, layer), where="adata.X" if layer is None else f"adata.layers[{layer!r}]")
        return cls(
            adata.var_names,
            latent_dim=latent_dim,
            hidden=hidden,
            dropout=dropout,
            kl_weight=kl_weight,
            data_keys=keys,
            layer=layer,
            device=device,
            seed=seed,
        )

    def _build_module(self):
        h = self.hparams
        return ScGenNetwork(self.n_vars, latent_dim=h["latent_dim"], hidden=h["hidden"], dropout=h["dropout"])

    @property
    def latent_dim(self) -> int:
        return int(self.hparams["latent_dim"])

    # ------------------------------------------------------------------------------------------------- state
    def _extra_state(self) -> dict:
        if self.latent_groups is None:
            return {}
        g = self.latent_groups
        return {
            "latent_groups": {
                "cell_line": [str(c) for c in g["cell_line"]],
                "condition": [str(c) for c in g["condition"]],
                "control": [bool(c) for c in g["control"]],
                "n_rows": [int(n) for n in g["n_rows"]],
                "means": torch.from_numpy(np.ascontiguousarray(self.latent_means, dtype=np.float32)),
            }
        }

    def _load_extra_state(self, state: dict) -> None:
        groups = state.get("latent_groups")
        if not groups:
            self.latent_groups, self.latent_means = None, None
            return
        self.latent_groups = pd.DataFrame(
            {
                "cell_line": list(groups["cell_line"]),
                "condition": list(groups["condition"]),
                "control": [bool(c) for c in groups["control"]],
                "n_rows": [int(n) for n in groups["n_rows"]],
            }
        )
        means = groups["means"]
        self.latent_means = (means.numpy() if isinstance(means, torch.Tensor) else np.asarray(means)).astype(np.float32)

    # ---------------------------------------------------------------------------------------------- training
    def loss(self, batch) -> dict[str, torch.Tensor]:
        """The training loss on a batch ``(x,)`` (see :func:`~perturbkit.models.scgen._module.scgen_loss`)."""
        return scgen_loss(self.module, batch[0], kl_weight=self.hparams["kl_weight"])

    def _row_labels(self, adata) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(cell line, condition, is control) of every row: the condition is the drug, or "control"."""
        keys = self.data_keys
        require_columns(
            adata,
            {k: keys[k] for k in ("cell_key", "drug_key", "control_key")},
            purpose="scGen's latent means per cell line and condition",
        )
        is_control = _control_rows(adata, keys["control_key"])
        cells = adata.obs[keys["cell_key"]].astype(str).to_numpy()
        drugs = adata.obs[keys["drug_key"]].astype(str).to_numpy()
        return cells, np.where(is_control, CONTROL, drugs), is_control

    def train(
        self,
        adata,
        *,
        lr: float = DEFAULTS.lr,
        batch_size: int = DEFAULTS.batch_size,
        max_epochs: int = DEFAULTS.max_epochs,
        patience: int | None = DEFAULTS.patience,
        validation_fraction: float = DEFAULTS.validation_fraction,
        seed: int | None = 0,
        checkpoint_dir=None,
        checkpoint_every: int = 10,
        resume=None,
        chunk_rows: int | None = None,
        buffer_chunks: int | None = None,
        max_validation_rows: int | None = None,
    ) -> ScGen:
        """Train the VAE on every row of ``adata`` (controls and treated), then store the latent means.

        A random ``validation_fraction`` of the rows drives early stopping (``patience`` epochs; the best epoch's
        weights are kept); Adam at ``lr``. The profiles go in as they are (log-normalised single cells or bulk
        z-scores; no scaling). After training, the latent means of ``adata``'s rows per (cell line, condition) are
        stored with the model (the condition is the drug, or ``"control"`` for control rows): :meth:`predict`'s
        arithmetic uses them. Ctrl-C stops training with the best weights so far and returns the model.
        ``checkpoint_dir`` writes a checkpoint every ``checkpoint_every`` epochs; ``resume`` (a checkpoint)
        continues an earlier run exactly. An AnnData whose X stays on disk (:func:`perturbkit.io.read_store`) is
        streamed in contiguous chunks of ``chunk_rows`` rows, ``buffer_chunks`` shuffled together (None: 4 MiB of
        rows, 64 MiB buffers), with at most ``max_validation_rows`` held-out rows read into memory (None: 256 MiB of
        rows; the other held-out rows stay out of training too).
        """
        cells, conditions, is_control = self._row_labels(adata)
        stream = model_features(self, adata, chunk_rows=chunk_rows)
        if stream is not None:
            if stream.n_obs < 2:
                raise PerturbkitInputError(
                    f"scGen needs at least 2 training rows (its batch norm cannot train on one), got {stream.n_obs}."
                )
            train_rows, val_rows = split_indices(
                stream.n_obs, validation_fraction=validation_fraction, seed=0 if seed is None else seed
            )
            self._fit_streamed(
                "scgen",
                Objective(self.loss, self.module.parameters(), lr=lr),
                stream,
                train_rows,
                val_rows,
                batch_size=batch_size,
                buffer_chunks=buffer_chunks,
                max_validation_rows=max_validation_rows,
                seed=seed,
                run_options={"checkpoint_dir": checkpoint_dir, "checkpoint_every": checkpoint_every, "resume": resume},
                max_epochs=max_epochs,
                patience=patience,
            )
            self._store_latent_means(stream.map_rows(self.encode_array), cells, conditions, is_control)
            return self
        X = self.feature_matrix(adata)
        if len(X) < 2:
            raise PerturbkitInputError(
                f"scGen needs at least 2 training rows (its batch norm cannot train on one), got {len(X)}."
            )
        train_rows, val_rows = split_indices(
            len(X), validation_fraction=validation_fraction, seed=0 if seed is None else seed
        )
        self._fit_rows(
            "scgen",
            Objective(self.loss, self.module.parameters(), lr=lr),
            (X,),
            train_rows,
            val_rows,
            seed=seed,
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=checkpoint_every,
            resume=resume,
            max_epochs=max_epochs,
            batch_size=batch_size,
            patience=patience,
            avoid_single_row_batch=True,
        )
        self._store_latent_means(self.encode_array(X), cells, conditions, is_control)
        return self

    def _store_latent_means(self, Z, cells, conditions, is_control) -> None:
        labels = pd.DataFrame({"cell_line": cells, "condition": conditions, "control": is_control})
        grouped = labels.groupby(["cell_line", "condition", "control"], sort=True, observed=True)
        codes = grouped.ngroup().to_numpy()
        table = grouped.size().rename("n_rows").reset_index()
        means, _ = group_means(Z, codes, len(table))
        self.latent_groups = table
        self.latent_means = means.astype(np.float32)

    # ------------------------------------------------------------------------------------ latent interface
    def encode_array(self, X) -> np.ndarray:
        """Latent (posterior) means of profiles ``X`` (rows, the data's units, model gene order)."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_vars:
            raise PerturbkitInputError(
                f"expected a (rows × {self.n_vars}) matrix in the model's gene order, got shape {X.shape}; pass an "
                f"AnnData to model.encode(adata) to match genes by name."
            )
        check_finite(X, where="the profiles")
        if len(X) == 0:
            return np.zeros((0, self.latent_dim), dtype=np.float32)
        return self.run_in_chunks(lambda x: self.module.encode(x)[0], X, chunk_rows=_CHUNK)

    def decode_array(self, Z, *, decoder: str | None = None, inputs=None) -> np.ndarray:
        """Profiles (the data's units) decoded from latent codes ``Z``; scGen has one decoder (``inputs`` unused)."""
        if decoder is not None and decoder not in self.decoder_names:
            raise UnknownCategoryError(f"decoder {decoder!r} is unknown; scGen has one, {list(self.decoder_names)}.")
        Z = self.latent_codes(Z, latent_dim=self.latent_dim)
        if len(Z) == 0:
            return np.zeros((0, self.n_vars), dtype=np.float32)
        return self.run_in_chunks(self.module.decode, Z, chunk_rows=_CHUNK)

    def encode(self, adata, *, layer: str | None = None) -> np.ndarray:
        """Latent means of ``adata``'s rows (genes matched by name, the model's layer unless ``layer``).

        An AnnData whose X stays on disk is encoded in row chunks.
        """
        stream = model_features(self, adata, layer=layer)
        if stream is not None:
            return stream.map_rows(self.encode_array)
        return self.encode_array(self.feature_matrix(adata, layer=layer))

    def predict_array(self, X, delta) -> np.ndarray:
        """Decode the latent means of profiles ``X`` (rows, data units, model gene order) shifted by ``delta``.

        ``delta`` is one latent vector for every row, or one per row (e.g. :meth:`drug_delta`, :meth:`cell_delta`).
        """
        Z = self.encode_array(X)
        delta = np.asarray(delta, dtype=np.float32)
        if delta.shape not in ((self.latent_dim,), Z.shape):
            raise PerturbkitInputError(
                f"delta must be one latent vector ({self.latent_dim},) or one per row {Z.shape}, got {delta.shape}."
            )
        return self.decode_array(Z + delta)

    # ------------------------------------------------------------------------------------------- arithmetic
    def _groups(self) -> pd.DataFrame:
        if self.latent_groups is None:
            raise PerturbkitInputError(
                "this scGen has no latent means: train it first (model.train(adata) or pk.tl.train_scgen(adata))."
            )
        return self.latent_groups

    @property
    def drug_names(self) -> list[str]:
        """The drugs seen in training (treated conditions)."""
        g = self._groups()
        return sorted(set(g.loc[~g["control"], "condition"]))

    @property
    def cell_lines(self) -> list[str]:
        """The cell lines (types) seen in training."""
        return sorted(set(self._groups()["cell_line"]))

    def drug_delta(self, drug: str) -> np.ndarray:
        """The latent shift of ``drug`` (scGen's δ): treated minus control latent means, balanced over cell types.

        The mean over the training cell types that have both control rows and ``drug`` of [mean z(cell type,
        drug) − mean z(cell type, control)]. Without such a cell type, the mean over cell types of the drug's means
        minus the mean over cell types of the control means.
        """
        g = self._groups()
        drug = str(drug)
        treated = g.index[(~g["control"]) & (g["condition"] == drug)]
        if len(treated) == 0:
            raise UnknownCategoryError(
                f"drug {drug!r} was not seen in training; the model knows {self.drug_names[:20]}"
                + (f" and {len(self.drug_names) - 20} more" if len(self.drug_names) > 20 else "")
                + "."
            )
        controls = g.index[g["control"]]
        if len(controls) == 0:
            raise EmptyGroupError(
                "this scGen was trained without control rows, so it has no drug shift (treated − control) to add. "
                "Train it on data with controls (obs[control_key] True), or predict across cell lines with target=."
            )
        control_of = dict(zip(g.loc[controls, "cell_line"], controls, strict=True))
        paired = [
            (t, control_of[c]) for t, c in zip(treated, g.loc[treated, "cell_line"], strict=True) if c in control_of
        ]
        if paired:
            t_idx, c_idx = (np.array(p) for p in zip(*paired, strict=True))
            return (self.latent_means[t_idx] - self.latent_means[c_idx]).mean(axis=0)
        return self.latent_means[treated].mean(axis=0) - self.latent_means[controls].mean(axis=0)

    def _check_cell_line(self, cell_line, what: str) -> str:
        g = self._groups()
        cell_line = str(cell_line)
        known = sorted(set(g.loc[~g["control"], "cell_line"]))
        if cell_line not in known:
            raise UnknownCategoryError(
                f"{what} cell line {cell_line!r} has no treated profiles in the training data, so scGen has no latent "
                f"mean for it; the model knows {known}. Train with that cell line included."
            )
        return cell_line

    def cell_delta(self, source: str, target: str) -> np.ndarray:
        """The latent shift from cell line ``source`` to ``target`` (the DeepCellState paper's scGen adaptation).

        The mean over the training drugs measured in both of [z(drug, target) − z(drug, source)] (paired by drug);
        when they share no drug, the mean over drugs of the target's latent means minus that of the source's.
        """
        source, target = self._check_cell_line(source, "source"), self._check_cell_line(target, "target")
        g = self._groups()
        treated = g[~g["control"]]
        src = pd.Series(
            treated.index[treated["cell_line"] == source],
            index=treated.loc[treated["cell_line"] == source, "condition"],
        )
        tgt = pd.Series(
            treated.index[treated["cell_line"] == target],
            index=treated.loc[treated["cell_line"] == target, "condition"],
        )
        shared = src.index.intersection(tgt.index)
        Z = self.latent_means
        if len(shared):
            return (Z[tgt[shared].to_numpy()] - Z[src[shared].to_numpy()]).mean(axis=0)
        return Z[tgt.to_numpy()].mean(axis=0) - Z[src.to_numpy()].mean(axis=0)

    # --------------------------------------------------------------------------------------------- prediction
    def predict(self, adata, *, drugs=None, target=None, sources=None, layer=None) -> ad.AnnData:
        """Predicted profiles by latent arithmetic: a drug's effect (``drugs=``), or another cell line (``target=``).

        Parameters
        ----------
        adata
            ``drugs=``: control profiles to treat (e.g. the control cells of a held-out cell type); every row is
            shifted by each drug's latent shift (:meth:`drug_delta`). ``target=``: treated profiles of the source
            cell line(s), read per (drug, cell line) with the model's obs keys (control rows left out).
        drugs
            Names of drugs seen in training (a name or a list).
        target
            The cell line to predict in (seen in training); each drug's profile in each source is encoded, shifted by
            :meth:`cell_delta` and decoded, and the outputs are averaged over sources.
        sources
            ``target=`` only: the source cell lines (default: every cell line in ``adata`` other than ``target``).
        layer
            Read this layer instead of the model's (``"X"`` for ``adata.X``).

        Returns
        -------
        ``drugs=``: one row per (drug, control row), obs ``drug_key``, ``control_row``, ``dose`` and the control's
        ``cell_key``, as ``CycleCDR.predict``. ``target=``: one row per drug measured in at least one source, obs
        ``drug_key``, ``target``, ``sources``, ``n_sources``, as ``DeepCellState.predict``. The data's units, the
        model's genes.
        """
        if is_model(adata) or not is_anndata(adata):
            raise PerturbkitInputError(
                f"adata must be an AnnData of profiles, got a {type(adata).__name__}; call model.predict(controls, "
                f"drugs=[...]) or model.predict(adata, target='MCF7')."
            )
        if (drugs is None) == (target is None):
            raise PerturbkitInputError(
                "pass exactly one of drugs= (a drug's effect on control profiles, e.g. model.predict(controls, "
                "drugs=['stim'])) and target= (a drug's profile in another cell line, e.g. model.predict(adata, "
                f"target='MCF7')); got {'both' if drugs is not None else 'neither'}."
            )
        if sources is not None and target is None:
            raise PerturbkitInputError("sources= goes with target= (prediction across cell lines), not with drugs=.")
        self._groups()
        if drugs is not None:
            return self._predict_drugs(adata, drugs, layer=layer)
        return self._predict_target(adata, target, sources, layer=layer)

    def _predict_drugs(self, adata, drugs, *, layer) -> ad.AnnData:
        names = [str(d) for d in ([drugs] if isinstance(drugs, str) else list(drugs))]
        if not names:
            raise PerturbkitInputError("drugs is empty; name at least one drug to predict.")
        unknown = [d for d in names if d not in set(self.drug_names)]
        if unknown:
            raise UnknownCategoryError(
                f"drugs {unknown[:5]} were not seen in training; scGen predicts only its training drugs: "
                f"{self.drug_names[:20]}" + (" ..." if len(self.drug_names) > 20 else "") + "."
            )
        if adata.n_obs == 0:
            raise EmptyGroupError("adata has no rows: pass the control profiles to treat (at least one row).")
        deltas = np.stack([self.drug_delta(d) for d in names])
        keys = self.data_keys
        Z = self.encode(adata, layer=layer)
        obs, rows = prediction_obs(adata, names, drug_key=keys["drug_key"], cell_key=keys["cell_key"])
        drug_rows = np.repeat(np.arange(len(names)), adata.n_obs)
        out = self.decode_array(Z[rows] + deltas[drug_rows])
        result = ad.AnnData(out, obs=obs, var=pd.DataFrame(index=self.var_names))
        result.uns["scgen_prediction"] = {"drugs": names, "n_controls": int(adata.n_obs)}
        return result

    def _predict_target(self, adata, target, sources, *, layer) -> ad.AnnData:
        target = self._check_cell_line(target, "target")
        return cross_cell_prediction(
            self,
            adata,
            target=target,
            sources=sources,
            layer=layer,
            predict_rows=lambda X, source: self.predict_array(X, self.cell_delta(source, target)),
            uns_key="scgen_prediction",
            # refuses a source the model never saw, before any is predicted
            check_sources=lambda names: [self._check_cell_line(s, "source") for s in names],
        )
