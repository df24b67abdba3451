"""cycleCDR: predict drug-treated profiles from control profiles, for known and unseen drugs.

See the cycleCDR methods page.
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
    PerturbkitInputError,
    UnknownCategoryError,
    control_mask,
    numeric_column,
    require_columns,
)
from ...train import BaseModel, Objective, split_indices
from .._pairing import (
    check_control_profiles,
    control_profiles,
    drug_smiles,
    prediction_obs,
    random_controls,
    resolve_drugs,
)
from ._drug_encoders import make_drug_encoder
from ._module import CycleCDRNetwork, discriminator_loss, generator_loss, paired_validation_loss

_CHUNK = 8192  # rows per forward pass at inference
ENCODERS = ("gat", "gat_pretrained", "fingerprint", "onehot")


@dataclass(frozen=True)
class CycleCDRDefaults:
    """cycleCDR's defaults, written once: every signature that takes these options takes its default here."""

    drug_encoder: str = "gat"
    latent_dim: int = 128
    hidden: tuple[int, ...] = (512, 512)
    cycle_weight: float = 10.0
    adversarial_weight: float = 1.0
    gene_weight_scale: float = 10.0
    lr: float = 1e-3
    weight_decay: float = 1e-6
    batch_size: int = 512
    max_epochs: int = 100
    patience: int | None = 10
    validation_fraction: float = 0.1


DEFAULTS = CycleCDRDefaults()
#: Settings for unpaired single cells that predict a held-out cell type (Kang PBMCs): with the adversarial term the
#: predictions collapse onto one input-independent profile, and 512-cell batches leave a few thousand cells with two
#: steps per epoch (see the cycleCDR methods page, "Held-out cell types").
UNPAIRED_SETTINGS = {"adversarial_weight": 0.0, "batch_size": 64}
DrugEncoder = Literal["gat", "gat_pretrained", "fingerprint", "onehot"]


def _every_control_once(adata, treated, control_rows, control_key: str, seed):
    """Unpaired pairs extended so that every control cell is trained on.

    :func:`random_controls` pairs each treated cell with a control of its type, so controls of cell types without
    treated cells (e.g. the held-out type of a held-out-cell-type benchmark), and controls not drawn, never reach
    the autoencoders: the control → treated map has then never seen those cells and maps them onto the types it
    knows. Each such control is added once, with a random treated partner (the unpaired losses need no match).
    """
    unused = np.setdiff1d(np.flatnonzero(control_mask(adata, control_key)), control_rows)
    if len(unused) == 0:
        return treated, control_rows
    rng = np.random.default_rng(None if seed is None else seed + 1)
    partners = rng.choice(treated, size=len(unused), replace=True)
    return np.concatenate([treated, partners]), np.concatenate([control_rows, unused])


class CycleCDR(BaseModel):
    """The dual encoder-decoder of cycleCDR (Huang, Zhu, Liu): control → treated through a drug embedding.

    Build it with :meth:`from_adata` and train it with :meth:`train`, or both at once with
    :func:`perturbkit.tl.train_cyclecdr`.

    Parameters
    ----------
    var_names
        Feature (gene) names, in order.
    drugs
        ``{name: SMILES}`` of the training drugs (the one-hot encoder knows exactly these).
    drug_encoder
        ``"gat"``, ``"gat_pretrained"`` (the GAT started from perturbkit's pretrained trunk), ``"fingerprint"`` or
        ``"onehot"`` (see ``_drug_encoders.make_drug_encoder``).
    latent_dim, hidden
        Latent size and hidden sizes (reference L1000: 978-512-512-128).
    single_autoencoder
        Tie F' = F and G' = G (the paper's ablation).
    paired
        Paired (bulk) data: paired MSE both ways. Unpaired: discriminators and adversarial losses.
    use_reconstruction, use_cycle, cycle_weight, identity_weight, adversarial_weight
        Loss switches and weights. ``use_cycle=None`` means on for unpaired data, off for paired data (the paper's
        bulk loss is reconstruction + MSE); ``identity_weight=None`` means 1 for unpaired data, 0 for paired.
    gene_weights, gene_weight_scale
        Weight each gene's squared error in the paired MSE by ``1 + gene_weight_scale · |y − x|`` (the pair's
        absolute log fold change in scaled units; the reference code's |log2 FC|·10).
    use_dose
        Multiply the drug embedding by a learned dose factor (needs the ``dose_key`` data key).
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
        "plate_key": None,
        "control_obs": None,
    }

    def __init__(
        self,
        var_names,
        *,
        drugs: Mapping[str, str],
        drug_encoder: DrugEncoder = DEFAULTS.drug_encoder,
        latent_dim: int = DEFAULTS.latent_dim,
        hidden=DEFAULTS.hidden,
        single_autoencoder: bool = False,
        paired: bool = True,
        use_reconstruction: bool = True,
        use_cycle: bool | None = None,
        cycle_weight: float = DEFAULTS.cycle_weight,
        identity_weight: float | None = None,
        adversarial_weight: float = DEFAULTS.adversarial_weight,
        gene_weights: bool = False,
        gene_weight_scale: float = DEFAULTS.gene_weight_scale,
        use_dose: bool = False,
        **kwargs,
    ):
        drugs = {str(k): str(v) for k, v in dict(drugs).items()}
        if not drugs:
            raise PerturbkitInputError("CycleCDR needs at least one training drug.")
        paired = bool(paired)
        identity_weight = (0.0 if paired else 1.0) if identity_weight is None else identity_weight
        super().__init__(
            var_names,
            drugs=drugs,
            drug_encoder=str(drug_encoder),
            latent_dim=int(latent_dim),
            hidden=tuple(int(h) for h in hidden),
            single_autoencoder=bool(single_autoencoder),
            paired=paired,
            use_reconstruction=bool(use_reconstruction),
            use_cycle=(not paired) if use_cycle is None else bool(use_cycle),
            cycle_weight=float(cycle_weight),
            identity_weight=float(identity_weight),
            adversarial_weight=float(adversarial_weight),
            gene_weights=bool(gene_weights),
            gene_weight_scale=float(gene_weight_scale),
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
        plate_key: str | None = None,
        control_obs: str | None = None,
        paired: bool = True,
        drug_encoder: DrugEncoder = DEFAULTS.drug_encoder,
        latent_dim: int = DEFAULTS.latent_dim,
        hidden=DEFAULTS.hidden,
        single_autoencoder: bool = False,
        use_reconstruction: bool = True,
        use_cycle: bool | None = None,
        cycle_weight: float = DEFAULTS.cycle_weight,
        identity_weight: float | None = None,
        adversarial_weight: float = DEFAULTS.adversarial_weight,
        gene_weights: bool = False,
        layer: str | None = None,
        device: str | None = None,
        seed: int | None = 0,
    ) -> CycleCDR:
        """An untrained cycleCDR for ``adata``'s genes and its treated drugs (their SMILES from ``smiles_key``).

        The obs keys and ``layer`` are recorded with the model and reused by :meth:`train` and :meth:`predict`.
        See :func:`perturbkit.tl.train_cyclecdr` for the parameters.
        """
        if drug_encoder not in ENCODERS:
            raise PerturbkitInputError(f"drug_encoder={drug_encoder!r} is not known; use one of {ENCODERS}.")
        keys = {"drug_key": drug_key, "control_key": control_key, "cell_key": cell_key}
        if drug_encoder != "onehot":
            keys["smiles_key"] = smiles_key
        if dose_key is not None:
            keys["dose_key"] = dose_key
        require_columns(adata, keys, purpose="cycleCDR training")
        obs = adata.obs.loc[~control_mask(adata, control_key)]
        drugs = drug_smiles(obs, drug_key=drug_key, smiles_key=smiles_key)
        data_keys = {
            "drug_key": drug_key,
            "control_key": control_key,
            "smiles_key": smiles_key,
            "dose_key": dose_key,
            "cell_key": cell_key,
            "plate_key": plate_key,
            "control_obs": control_obs,
        }
        return cls(
            adata.var_names,
            drugs=drugs,
            drug_encoder=drug_encoder,
            latent_dim=latent_dim,
            hidden=hidden,
            single_autoencoder=single_autoencoder,
            paired=paired,
            use_reconstruction=use_reconstruction,
            use_cycle=use_cycle,
            cycle_weight=cycle_weight,
            identity_weight=identity_weight,
            adversarial_weight=adversarial_weight,
            gene_weights=gene_weights,
            use_dose=dose_key is not None,
            data_keys=data_keys,
            layer=layer,
            device=device,
            seed=seed,
        )

    def _build_module(self):
        h = self.hparams
        encoder = make_drug_encoder(h["drug_encoder"], dim=h["latent_dim"], drugs=h["drugs"])
        return CycleCDRNetwork(
            self.n_vars,
            encoder,
            hidden=h["hidden"],
            latent_dim=h["latent_dim"],
            single_autoencoder=h["single_autoencoder"],
            use_dose=h["use_dose"],
            discriminators=not h["paired"],
        )

    @property
    def drug_names(self) -> list[str]:
        return list(self.hparams["drugs"])

    # ------------------------------------------------------------------------------------------------ training data
    def training_arrays(self, adata, X: np.ndarray, *, seed: int | None = 0):
        """(controls, treated, drug index, dose) of ``adata``'s treated rows, scaled.

        ``X`` is ``self.feature_matrix(adata)`` (the profiles in the model's gene order).
        """
        keys = self.hparams["data_keys"]
        require_columns(adata, {"drug_key": keys["drug_key"]}, purpose="naming the drugs")
        if self.hparams["paired"]:
            treated, controls = control_profiles(
                adata,
                X,
                control_key=keys["control_key"],
                cell_key=keys["cell_key"],
                plate_key=keys["plate_key"],
                control_obs=keys["control_obs"],
            )
        else:
            treated, control_rows = random_controls(
                adata, control_key=keys["control_key"], cell_key=keys["cell_key"], seed=seed
            )
            treated, control_rows = _every_control_once(adata, treated, control_rows, keys["control_key"], seed)
            controls = X[control_rows]
        names = adata.obs[keys["drug_key"]].astype(str).to_numpy()[treated]
        index = pd.Index(self.drug_names).get_indexer(names)
        if (index < 0).any():
            raise UnknownCategoryError(
                f"drugs {list(pd.unique(names[index < 0]))[:5]} are not among the model's training drugs."
            )
        dose = numeric_column(adata, keys["dose_key"])[treated] if self.hparams["use_dose"] else np.zeros(len(treated))
        return self.scale_rows(controls), self.scale_rows(X[treated]), index.astype(np.int64), dose.astype(np.float32)

    # ----------------------------------------------------------------------------------------------------- losses
    def _smiles(self) -> dict:
        return self.hparams["drugs"]

    def _generator_loss(self, adversarial: bool):
        names, smiles, h = self.drug_names, self._smiles(), self.hparams
        return lambda batch: generator_loss(
            self.module, batch, names=names, smiles=smiles, hparams=h, adversarial=adversarial
        )

    def _discriminator_loss(self):
        names, smiles = self.drug_names, self._smiles()
        return lambda batch: discriminator_loss(self.module, batch, names=names, smiles=smiles)

    def _validation_loss(self):
        """Paired data: MSE of ŷ; unpaired: the generator's reconstruction + cycle + identity terms."""
        if not self.hparams["paired"]:
            return self._generator_loss(adversarial=False)
        names, smiles = self.drug_names, self._smiles()
        return lambda batch: paired_validation_loss(self.module, batch, names=names, smiles=smiles)

    def train(
        self,
        adata,
        *,
        lr: float = DEFAULTS.lr,
        weight_decay: float = DEFAULTS.weight_decay,
        discriminator_lr: float | None = None,
        batch_size: int = DEFAULTS.batch_size,
        max_epochs: int = DEFAULTS.max_epochs,
        patience: int | None = DEFAULTS.patience,
        validation_fraction: float = DEFAULTS.validation_fraction,
        seed: int | None = 0,
        fit_scaler: bool = True,
        checkpoint_dir=None,
        checkpoint_every: int = 10,
        resume=None,
    ) -> CycleCDR:
        """Train on ``adata``'s treated rows and their controls (Adam, weight decay 1e-6, batch 512 as the reference).

        ``validation_fraction`` of the drugs (whole drugs) is held out for early stopping on the paired MSE
        (paired data); unpaired data validate on random cells. GAN training (unpaired) runs the generator
        objective, then the discriminator objective, on every batch (one engine ``fit`` with two objectives).
        Ctrl-C stops training with the best weights so far and returns the model. ``checkpoint_dir`` writes a
        checkpoint every ``checkpoint_every`` epochs; ``resume`` (a checkpoint) continues an earlier run exactly.
        """
        X = self.feature_matrix(adata)
        if fit_scaler or self.scaler is None:
            from ...pp import Scaler

            self.scaler = Scaler("zscore", per_feature=True).fit(X)
        arrays = self.training_arrays(adata, X, seed=seed)
        # unseen-drug validation for the structure encoders; the one-hot encoder can only validate on known drugs
        groups = arrays[2] if self.hparams["paired"] and self.hparams["drug_encoder"] != "onehot" else None
        train_rows, val_rows = split_indices(
            len(arrays[0]), validation_fraction=validation_fraction, seed=0 if seed is None else seed, groups=groups
        )
        net = self.module
        # the generator comes first so that, without validation rows, early stopping watches its loss
        objectives = [
            Objective(
                self._generator_loss(adversarial=not self.hparams["paired"]),
                net.generator_parameters(),
                lr=lr,
                weight_decay=weight_decay,
                name="generator",
            )
        ]
        if not self.hparams["paired"]:
            objectives.append(
                Objective(
                    self._discriminator_loss(),
                    net.discriminator_parameters(),
                    lr=lr if discriminator_lr is None else discriminator_lr,
                    weight_decay=weight_decay,
                    name="discriminator",
                )
            )
        return self._fit_rows(
            "cyclecdr",
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
    @torch.no_grad()
    def predict_array(
        self, X: np.ndarray, drug_names: list[str], *, smiles: dict | None = None, doses=None
    ) -> np.ndarray:
        """Treated profiles (data units) for control rows ``X`` (data units) and one drug name per row."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_vars:
            raise PerturbkitInputError(
                f"X must be a (rows × {self.n_vars}) matrix in the model's gene order, got "
                f"shape {X.shape}; pass an AnnData to predict() to match genes by name."
            )
        if len(drug_names) != len(X):
            raise PerturbkitInputError(
                f"drug_names has {len(drug_names)} entries for {len(X)} control rows; give one drug name per row."
            )
        if len(X) == 0:
            return np.zeros((0, self.n_vars), dtype=np.float32)
        net = self.module
        lookup = dict(self.hparams["drugs"], **(smiles or {}))
        names = sorted(set(drug_names))
        index = pd.Index(names).get_indexer(drug_names).astype(np.int64)
        dose = np.zeros(len(drug_names), np.float32) if doses is None else np.asarray(doses, np.float32)
        dose = np.array(np.broadcast_to(dose, (len(drug_names),)))  # a writable copy
        out = self.run_in_chunks(
            lambda x, i, d: net.to_treated(x, net.drug_embedding(names, i, lookup, d)),
            self.scale_rows(X),
            index,
            dose,
            chunk_rows=_CHUNK,
        )
        return self.unscale_rows(out)

    decoder_names = ("treated (G)", "control (G')")

    @torch.no_grad()
    def encode_array(self, X) -> np.ndarray:
        """Latent codes F(x) of control profiles ``X`` (rows, the data's units), before the drug is added."""
        self.module.eval()
        x = torch.from_numpy(self.scale_rows(X)).to(self.device)
        return self.module.encoder_control(x).cpu().numpy()

    @torch.no_grad()
    def decode_array(self, Z, *, decoder: str | None = None, inputs=None) -> np.ndarray:
        """Decode latent codes with G (``"treated (G)"``, the default) or G' (``"control (G')"``); data units."""
        name = self.decoder_names[0] if decoder is None else str(decoder)
        if name not in self.decoder_names:
            raise UnknownCategoryError(f"decoder {decoder!r} is unknown; cycleCDR has {list(self.decoder_names)}.")
        Z = self.latent_codes(Z, latent_dim=self.hparams["latent_dim"])
        net = self.module.eval()
        g = net.decoder_treated if name == self.decoder_names[0] else net.g_prime
        out = g(torch.from_numpy(Z).to(self.device)).cpu().numpy()
        return self.unscale_rows(out)

    def predict(self, adata_controls, *, drugs, doses=None, layer=None) -> ad.AnnData:
        """Predicted treated profiles: one row for every (control row, drug), in the data's units.

        Parameters
        ----------
        adata_controls
            Control profiles (e.g. one row per cell line: the control means, or single control cells); at least one
            row (else :class:`~perturbkit.errors.EmptyGroupError`). Genes are matched to the model's by name.
        drugs
            A list of drug names the model knows, or ``{name: SMILES}`` (unseen drugs need the ``"gat"`` or
            ``"fingerprint"`` encoder; the one-hot encoder refuses them).
        doses
            One dose for every drug (or a single dose for all), used when the model was trained with doses.

        Returns
        -------
        AnnData with obs ``drug_key`` (drug), ``control_row`` (the control row's obs name), the control's cell line
        (``cell_key``, when present) and ``dose``.
        """
        keys = self.hparams["data_keys"]
        check_control_profiles(adata_controls)
        names, lookup = resolve_drugs(self.hparams["drugs"], drugs, encoders="'gat' or 'fingerprint'")
        X = self.feature_matrix(adata_controls, layer=layer)
        if doses is None and self.hparams["use_dose"]:
            raise PerturbkitInputError("this model was trained with doses; pass doses= (one per drug, or one).")
        obs, rows = prediction_obs(
            adata_controls, names, drug_key=keys["drug_key"], cell_key=keys["cell_key"], doses=doses
        )
        out = self.predict_array(X[rows], obs[keys["drug_key"]].tolist(), smiles=lookup, doses=obs["dose"].to_numpy())
        result = ad.AnnData(out, obs=obs, var=pd.DataFrame(index=self.var_names))
        result.uns["cyclecdr_prediction"] = {"drugs": names, "n_controls": int(adata_controls.n_obs)}
        return result
