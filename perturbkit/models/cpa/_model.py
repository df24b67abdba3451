"""CPA / chemCPA: a compositional additive latent model of drug responses (basal state + drug + cell line).

See the CPA methods page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
import torch

from ..._schema import (
    OBS_KEYS,
    EmptyGroupError,
    PerturbkitInputError,
    UnknownCategoryError,
    control_mask,
    numeric_column,
    require_columns,
)
from ...train import BaseModel, Objective, split_indices
from ...train._stream import model_features
from .._pairing import check_control_profiles, drug_smiles, prediction_obs, resolve_drugs
from ..cyclecdr._drug_encoders import make_drug_encoder
from ._module import CPANetwork, adversary_loss, autoencoder_loss, reconstruction_loss

_CHUNK = 8192  # rows per forward pass at inference
ENCODERS = ("gat", "gat_pretrained", "fingerprint", "onehot")


@dataclass(frozen=True)
class CPADefaults:
    """CPA's defaults, written once: every signature that takes these options takes its default here.

    The values are chemCPA's (``ComPert.set_hparams_`` of theislab/chemCPA, the defaults of its seed 0): latent
    size 256, autoencoder 4 × 512, adversaries 3 × 128, dose encoder 2 × 64, adversarial weight 5, gradient
    penalty 3, Adam lr 1e-3 / weight decay 1e-6 (autoencoder) and 3e-4 / 1e-4 (adversaries), batch 128; chemCPA
    trains 201 epochs. The drug encoder is the Morgan fingerprint, the RDKit featurisation closest to chemCPA's best
    embedding (RDKit descriptors).
    """

    drug_encoder: str = "fingerprint"
    latent_dim: int = 256
    hidden: tuple[int, ...] = (512, 512, 512, 512)
    adversary_hidden: tuple[int, ...] = (128, 128, 128)
    doser_hidden: tuple[int, ...] = (64, 64)
    reg_adversary: float = 5.0
    penalty_adversary: float = 3.0
    lr: float = 1e-3
    adversary_lr: float = 3e-4
    weight_decay: float = 1e-6
    adversary_weight_decay: float = 1e-4
    batch_size: int = 128
    max_epochs: int = 200
    patience: int | None = 20
    validation_fraction: float = 0.1


DEFAULTS = CPADefaults()
DrugEncoder = Literal["gat", "gat_pretrained", "fingerprint", "onehot"]


class CPA(BaseModel):
    """The compositional perturbation autoencoder (CPA, Lotfollahi et al.) with chemCPA's drug and dose encoders.

    A profile is encoded into a basal state ``z_b`` that adversaries keep free of drug and cell-line information;
    the drug (its embedding times a learned dose scale) and the cell line (an embedding) are added in latent space,
    and the decoder gives a mean and a variance per gene. Build it with :meth:`from_adata` and train it with
    :meth:`train`, or both at once with :func:`perturbkit.tl.train_cpa`.

    Parameters
    ----------
    var_names
        Feature (gene) names, in order.
    drugs
        ``{name: SMILES}`` of the training drugs (the one-hot encoder knows exactly these).
    cell_lines
        The training cell lines (cell types), each with a learned embedding.
    drug_encoder
        ``"fingerprint"``, ``"gat"``, ``"gat_pretrained"`` or ``"onehot"`` (cycleCDR's drug encoders, embedding size
        ``latent_dim``).
    latent_dim, hidden
        Latent size and the hidden sizes of the encoder and of the decoder.
    adversary_hidden, doser_hidden
        Hidden sizes of the two adversarial classifiers and of the dose encoder.
    reg_adversary, penalty_adversary
        Weight of the adversaries' cross-entropy in the autoencoder's loss, and of the gradient penalty in the
        adversaries' loss.
    use_dose
        Whether doses come from the ``dose_key`` data key (else every treated row has dose 1).
    **kwargs
        ``data_keys`` (the obs keys of :attr:`data_defaults`), ``layer``, ``device``, ``seed`` and ``scaler``,
        as in :class:`~perturbkit.train.BaseModel`.
    """

    data_defaults = {
        "drug_key": OBS_KEYS.drug_key,
        "control_key": OBS_KEYS.control_key,
        "smiles_key": OBS_KEYS.smiles_key,
        "dose_key": None,
        "cell_key": OBS_KEYS.cell_key,
    }

    def __init__(
        self,
        var_names,
        *,
        drugs: Mapping[str, str],
        cell_lines,
        drug_encoder: DrugEncoder = DEFAULTS.drug_encoder,
        latent_dim: int = DEFAULTS.latent_dim,
        hidden=DEFAULTS.hidden,
        adversary_hidden=DEFAULTS.adversary_hidden,
        doser_hidden=DEFAULTS.doser_hidden,
        reg_adversary: float = DEFAULTS.reg_adversary,
        penalty_adversary: float = DEFAULTS.penalty_adversary,
        use_dose: bool = False,
        **kwargs,
    ):
        drugs = {str(k): str(v) for k, v in dict(drugs).items()}
        if not drugs:
            raise PerturbkitInputError("CPA needs at least one training drug (a treated row).")
        cell_lines = [str(c) for c in cell_lines]
        if not cell_lines:
            raise PerturbkitInputError("CPA needs at least one cell line.")
        if drug_encoder not in ENCODERS:
            raise PerturbkitInputError(f"drug_encoder={drug_encoder!r} is not known; use one of {ENCODERS}.")
        super().__init__(
            var_names,
            drugs=drugs,
            cell_lines=cell_lines,
            drug_encoder=str(drug_encoder),
            latent_dim=int(latent_dim),
            hidden=tuple(int(h) for h in hidden),
            adversary_hidden=tuple(int(h) for h in adversary_hidden),
            doser_hidden=tuple(int(h) for h in doser_hidden),
            reg_adversary=float(reg_adversary),
            penalty_adversary=float(penalty_adversary),
            use_dose=bool(use_dose),
            **kwargs,
        )

    @classmethod
    def from_adata(
        cls,
        adata,
        *,
        drug_key: str = OBS_KEYS.drug_key,
        control_key: str = OBS_KEYS.control_key,
        smiles_key: str = OBS_KEYS.smiles_key,
        dose_key: str | None = None,
        cell_key: str = OBS_KEYS.cell_key,
        drug_encoder: DrugEncoder = DEFAULTS.drug_encoder,
        latent_dim: int = DEFAULTS.latent_dim,
        hidden=DEFAULTS.hidden,
        adversary_hidden=DEFAULTS.adversary_hidden,
        doser_hidden=DEFAULTS.doser_hidden,
        reg_adversary: float = DEFAULTS.reg_adversary,
        penalty_adversary: float = DEFAULTS.penalty_adversary,
        layer: str | None = None,
        device: str | None = None,
        seed: int | None = 0,
    ) -> CPA:
        """An untrained CPA for ``adata``'s genes, its treated drugs (SMILES from ``smiles_key``) and cell lines.

        The obs keys and ``layer`` are recorded with the model and reused by :meth:`train` and :meth:`predict`.
        See :func:`perturbkit.tl.train_cpa` for the parameters.
        """
        if drug_encoder not in ENCODERS:
            raise PerturbkitInputError(f"drug_encoder={drug_encoder!r} is not known; use one of {ENCODERS}.")
        keys = {"drug_key": drug_key, "control_key": control_key, "cell_key": cell_key}
        if drug_encoder != "onehot":
            keys["smiles_key"] = smiles_key
        if dose_key is not None:
            keys["dose_key"] = dose_key
        require_columns(adata, keys, purpose="CPA training")
        is_control = control_mask(adata, control_key)
        obs = adata.obs.loc[~is_control]
        if len(obs) == 0:
            raise EmptyGroupError(
                f"no treated rows: obs[{control_key!r}] is True for all {adata.n_obs} rows; CPA learns drug effects "
                f"from treated rows."
            )
        drugs = drug_smiles(obs, drug_key=drug_key, smiles_key=smiles_key)
        cell_lines = sorted(pd.unique(adata.obs[cell_key].astype(str)))
        data_keys = {
            "drug_key": drug_key,
            "control_key": control_key,
            "smiles_key": smiles_key,
            "dose_key": dose_key,
            "cell_key": cell_key,
        }
        return cls(
            adata.var_names,
            drugs=drugs,
            cell_lines=cell_lines,
            drug_encoder=drug_encoder,
            latent_dim=latent_dim,
            hidden=hidden,
            adversary_hidden=adversary_hidden,
            doser_hidden=doser_hidden,
            reg_adversary=reg_adversary,
            penalty_adversary=penalty_adversary,
            use_dose=dose_key is not None,
            data_keys=data_keys,
            layer=layer,
            device=device,
            seed=seed,
        )

    def _build_module(self):
        h = self.hparams
        encoder = make_drug_encoder(h["drug_encoder"], dim=h["latent_dim"], drugs=h["drugs"])
        return CPANetwork(
            self.n_vars,
            encoder,
            n_drugs=len(h["drugs"]),
            n_cells=len(h["cell_lines"]),
            latent_dim=h["latent_dim"],
            hidden=h["hidden"],
            adversary_hidden=h["adversary_hidden"],
            doser_hidden=h["doser_hidden"],
        )

    @property
    def drug_names(self) -> list[str]:
        """The training drugs."""
        return list(self.hparams["drugs"])

    @property
    def cell_lines(self) -> list[str]:
        """The training cell lines (cell types)."""
        return list(self.hparams["cell_lines"])

    def cell_indices(self, labels, *, where: str = "the data") -> np.ndarray:
        """Positions of cell-line ``labels`` among the model's; an unknown one raises naming it."""
        labels = np.asarray([str(c) for c in labels], dtype=object)
        index = pd.Index(self.cell_lines).get_indexer(labels)
        if (index < 0).any():
            unknown = list(pd.unique(labels[index < 0]))
            raise UnknownCategoryError(
                f"cell line(s) {unknown[:5]} in {where} (obs[{self.data_keys['cell_key']!r}]) were not in training; "
                f"this CPA knows {self.cell_lines[:10]}{' ...' if len(self.cell_lines) > 10 else ''}. CPA adds a "
                f"learned embedding per cell line, so retrain with controls of that cell line included."
            )
        return index.astype(np.int64)

    # ------------------------------------------------------------------------------------------------ training data
    def training_arrays(self, adata, X: np.ndarray):
        """(profiles, drug index, dose, cell index) of every row of ``adata``: controls get index −1 and dose 0.

        ``X`` is ``self.feature_matrix(adata)`` (the profiles in the model's gene order). Without a dose column
        every treated row has dose 1.
        """
        keys = self.data_keys
        require_columns(
            adata,
            {"drug_key": keys["drug_key"], "cell_key": keys["cell_key"]},
            purpose="naming the drugs and cell lines",
        )
        is_control = control_mask(adata, keys["control_key"])
        names = adata.obs[keys["drug_key"]].astype(str).to_numpy()
        index = pd.Index(self.drug_names).get_indexer(names)
        unknown = (index < 0) & ~is_control
        if unknown.any():
            raise UnknownCategoryError(
                f"drugs {list(pd.unique(names[unknown]))[:5]} are not among the model's training drugs; build the "
                f"model from this data (CPA.from_adata) so that it knows them."
            )
        index[is_control] = -1
        if self.hparams["use_dose"]:
            dose = numeric_column(adata, keys["dose_key"])
            bad = ~is_control & (~np.isfinite(dose) | (dose < 0))
            if bad.any():
                raise PerturbkitInputError(
                    f"obs[{keys['dose_key']!r}] has {int(bad.sum())} missing, negative or infinite doses on treated "
                    f"rows; give every treated row a dose >= 0."
                )
        else:
            dose = np.ones(adata.n_obs)
        dose = np.where(is_control, 0.0, dose).astype(np.float32)
        cells = self.cell_indices(adata.obs[keys["cell_key"]].astype(str).to_numpy(), where="the training data")
        return X.astype(np.float32, copy=False), index.astype(np.int64), dose, cells

    # ----------------------------------------------------------------------------------------------------- losses
    def _autoencoder_loss(self):
        names, smiles, reg = self.drug_names, self.hparams["drugs"], self.hparams["reg_adversary"]
        return lambda batch: autoencoder_loss(self.module, batch, names=names, smiles=smiles, reg_adversary=reg)

    def _adversary_loss(self):
        n, penalty = len(self.drug_names), self.hparams["penalty_adversary"]
        return lambda batch: adversary_loss(self.module, batch, n_drugs=n, penalty_adversary=penalty)

    def _validation_loss(self):
        names, smiles = self.drug_names, self.hparams["drugs"]
        return lambda batch: reconstruction_loss(self.module, batch, names=names, smiles=smiles)

    def train(
        self,
        adata,
        *,
        lr: float = DEFAULTS.lr,
        adversary_lr: float = DEFAULTS.adversary_lr,
        weight_decay: float = DEFAULTS.weight_decay,
        adversary_weight_decay: float = DEFAULTS.adversary_weight_decay,
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
    ) -> CPA:
        """Train on every row of ``adata``: controls (no drug term) and treated rows.

        Each batch takes one autoencoder step (Gaussian NLL − ``reg_adversary`` · adversaries' cross-entropy),
        then one adversary step (cross-entropy + ``penalty_adversary`` · gradient penalty), in one engine ``fit``
        with two objectives. ``validation_fraction`` of the rows (at random) are held out; training stops early
        when their reconstruction NLL has not improved for ``patience`` epochs, and the best epoch's weights are
        kept. Ctrl-C stops training with the best weights so far and returns the model. ``checkpoint_dir`` writes a
        checkpoint every ``checkpoint_every`` epochs; ``resume`` (a checkpoint) continues an earlier run exactly.
        An AnnData whose X stays on disk (:func:`perturbkit.io.read_store`) is streamed in contiguous chunks of
        ``chunk_rows`` rows, ``buffer_chunks`` shuffled together (None: 4 MiB of rows, 64 MiB buffers), with the
        drug, dose and cell codes served alongside from memory and at most ``max_validation_rows`` held-out rows
        read into memory (None: 256 MiB of rows; the other held-out rows stay out of training too).
        """
        stream = model_features(self, adata, chunk_rows=chunk_rows)
        if stream is None:
            arrays = self.training_arrays(adata, self.feature_matrix(adata))
        else:  # only the obs codes in memory; the profiles are streamed
            arrays = self.training_arrays(adata, np.zeros((adata.n_obs, 0), dtype=np.float32))
        train_rows, val_rows = split_indices(
            len(arrays[0]), validation_fraction=validation_fraction, seed=0 if seed is None else seed
        )
        net = self.module
        objectives = [
            Objective(
                self._autoencoder_loss(),
                net.autoencoder_parameters(),
                lr=lr,
                weight_decay=weight_decay,
                name="autoencoder",
            ),
            Objective(
                self._adversary_loss(),
                net.adversary_parameters(),
                lr=adversary_lr,
                weight_decay=adversary_weight_decay,
                name="adversary",
            ),
        ]
        if stream is not None:
            return self._fit_streamed(
                "cpa",
                objectives,
                stream,
                train_rows,
                val_rows,
                *arrays[1:],
                batch_size=batch_size,
                buffer_chunks=buffer_chunks,
                max_validation_rows=max_validation_rows,
                seed=seed,
                run_options={"checkpoint_dir": checkpoint_dir, "checkpoint_every": checkpoint_every, "resume": resume},
                validation_loss=self._validation_loss(),
                max_epochs=max_epochs,
                patience=patience,
            )
        return self._fit_rows(
            "cpa",
            objectives,
            arrays,
            train_rows,
            val_rows,
            validation_loss=self._validation_loss(),
            max_epochs=max_epochs,
            batch_size=batch_size,
            patience=patience,
            avoid_single_row_batch=True,
            seed=seed,
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=checkpoint_every,
            resume=resume,
        )

    # ------------------------------------------------------------------------------------------------- prediction
    def _resolve_drugs(self, drugs) -> tuple[list[str], dict]:
        """Names to predict and the SMILES lookup; the one-hot encoder refuses drugs it was not trained on."""
        names, lookup = resolve_drugs(self.hparams["drugs"], drugs, encoders="'fingerprint' or 'gat'")
        if self.hparams["drug_encoder"] == "onehot":
            unseen = [d for d in names if d not in self.hparams["drugs"]]
            if unseen:
                raise UnknownCategoryError(
                    f"drugs {unseen[:5]} were not in training, and drug_encoder='onehot' only knows the "
                    f"{len(self.drug_names)} training drugs. To predict unseen drugs, train with "
                    f"drug_encoder='fingerprint' or 'gat' and pass their SMILES (drugs={{name: SMILES}})."
                )
        return names, lookup

    @torch.no_grad()
    def predict_array(
        self, X: np.ndarray, drug_names: list[str], cells, *, smiles: dict | None = None, doses=None
    ) -> np.ndarray:
        """Decoded means (data units) for rows ``X`` (data units), one drug name and one cell line per row.

        ``doses`` (one per row, or one for all) default to 1.
        """
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_vars:
            raise PerturbkitInputError(
                f"X must be a (rows × {self.n_vars}) matrix in the model's gene order, got "
                f"shape {X.shape}; pass an AnnData to predict() to match genes by name."
            )
        if len(drug_names) != len(X):
            raise PerturbkitInputError(
                f"drug_names has {len(drug_names)} entries for {len(X)} rows; give one drug name per row."
            )
        cells = self.cell_indices(np.broadcast_to(np.asarray(cells, dtype=object), (len(X),)))
        if len(X) == 0:
            return np.zeros((0, self.n_vars), dtype=np.float32)
        net = self.module
        lookup = dict(self.hparams["drugs"], **(smiles or {}))
        names = sorted(set(drug_names))
        index = pd.Index(names).get_indexer(drug_names).astype(np.int64)
        dose = np.ones(len(X), np.float32) if doses is None else np.asarray(doses, np.float32)
        dose = np.array(np.broadcast_to(dose, (len(X),)))  # a writable copy
        if not np.isfinite(dose).all() or (dose < 0).any():
            raise PerturbkitInputError("doses must be finite and non-negative.")
        out = self.run_in_chunks(
            lambda x, i, d, c: net(x, names, i, lookup, d, c),
            self.scale_rows(X),
            index,
            dose,
            cells,
            chunk_rows=_CHUNK,
        )
        return self.unscale_rows(out)

    @property
    def decoder_names(self) -> tuple[str, ...]:
        """One decoder per training cell line: it decodes ``z + e_c`` (the code plus that cell line's embedding)."""
        return tuple(self.cell_lines)

    @torch.no_grad()
    def encode_array(self, X) -> np.ndarray:
        """Basal latent states ``z_b`` of profiles ``X`` (rows, the data's units, the model's gene order)."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_vars:
            raise PerturbkitInputError(f"X must be a (rows × {self.n_vars}) matrix, got shape {X.shape}.")
        return self.run_in_chunks(lambda x: self.module.encoder(x), self.scale_rows(X))

    @torch.no_grad()
    def decode_array(self, Z, *, decoder: str | None = None, inputs=None) -> np.ndarray:
        """Decoded means of latent codes ``Z`` plus cell line ``decoder``'s embedding (default: the first cell line).

        ``decode_array(encode_array(X), decoder=c)`` reconstructs control profiles ``X`` of cell line ``c``;
        ``inputs`` is ignored.
        """
        name = self.cell_lines[0] if decoder is None else str(decoder)
        if name not in self.cell_lines:
            raise UnknownCategoryError(f"decoder {decoder!r} is unknown; this CPA has {list(self.decoder_names)}.")
        Z = self.latent_codes(Z, latent_dim=self.hparams["latent_dim"])
        net = self.module
        cell = torch.tensor([self.cell_lines.index(name)], device=self.device)
        out = self.run_in_chunks(lambda z: net.decode(z + net.cell_embedding(cell))[0], Z)
        return self.unscale_rows(out)

    def predict(self, adata_controls, *, drugs, doses=None, layer=None) -> ad.AnnData:
        """Predicted treated profiles: one row for every (control row, drug), in the data's units.

        Each control row is encoded into its basal state; the drug's term (its embedding times the dose scale) and
        the embedding of the row's cell line (``obs[cell_key]``) are added, and the decoder's mean is returned.

        Parameters
        ----------
        adata_controls
            Control profiles (e.g. one row per cell line: the control means, or single control cells), with the
            cell-line column the model was trained with; at least one row. Genes are matched to the model's by name.
        drugs
            A list of drug names the model knows, or ``{name: SMILES}`` (unseen drugs need the ``"fingerprint"`` or
            ``"gat"`` encoder; the one-hot encoder refuses them).
        doses
            One dose for every drug (or a single dose for all); default 1 (the dose of every treated row when the
            model was trained without a dose column).
        layer
            Read ``adata_controls.layers[layer]`` (default: the layer the model was trained on).

        Returns
        -------
        AnnData with obs ``drug_key`` (drug), ``control_row`` (the control row's obs name), the control's cell line
        (``cell_key``) and ``dose``.
        """
        keys = self.data_keys
        check_control_profiles(adata_controls)
        require_columns(adata_controls, {"cell_key": keys["cell_key"]}, purpose="adding each control's cell line")
        self.cell_indices(adata_controls.obs[keys["cell_key"]].astype(str).to_numpy(), where="adata_controls")
        names, lookup = self._resolve_drugs(drugs)
        if doses is not None and np.size(doses) not in (1, len(names)):
            raise PerturbkitInputError(
                f"doses has {np.size(doses)} values for {len(names)} drugs; give one dose per drug, or one for all."
            )
        X = self.feature_matrix(adata_controls, layer=layer)
        obs, rows = prediction_obs(
            adata_controls,
            names,
            drug_key=keys["drug_key"],
            cell_key=keys["cell_key"],
            doses=1.0 if doses is None else doses,
        )
        out = self.predict_array(
            X[rows],
            obs[keys["drug_key"]].tolist(),
            obs[keys["cell_key"]].to_numpy(),
            smiles=lookup,
            doses=obs["dose"].to_numpy(),
        )
        result = ad.AnnData(out, obs=obs, var=pd.DataFrame(index=self.var_names))
        result.uns["cpa_prediction"] = {"drugs": names, "n_controls": int(adata_controls.n_obs)}
        return result
