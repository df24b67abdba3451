"""The anchor VAE: the DeepCellState paper's "VAE with anchor loss" competitor, for predicting across cell lines."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from ..._schema import OBS_KEYS, EmptyGroupError
from ...train import Objective, split_indices
from .._cross_cell import CrossCellModel
from .._profiles import CellDrugProfiles, scaled_profiles, training_profiles
from ._module import AnchorVAENetwork, anchor_vae_loss, cross_prediction_loss


@dataclass(frozen=True)
class AnchorVAEDefaults:
    """The anchor VAE's defaults, written once: every signature that takes these options takes its default here."""

    latent_dim: int = 128
    hidden: tuple[int, ...] = (512, 256)
    input_dropout: float = 0.5
    #: the reference code's weights 0.005 and 0.05 on terms averaged over 128 latent dimensions, against an MSE averaged
    #: over 978 genes, rewritten for terms summed over latent dimensions and divided by the number of genes
    kl_weight: float = 0.005 * 978 / 128
    anchor_weight: float = 0.05 * 978 / 128
    cross_reconstruction: bool = True
    validation_fraction: float = 0.05
    lr: float = 1e-3
    batch_size: int = 128
    max_epochs: int = 200
    #: the reference stops after 5 epochs without improvement, but its epoch takes one step per training drug; here
    #: an epoch is one pass over the pairs in batches of 128 (tens of steps at 1,750 drugs), so 5 epochs would stop
    #: after a small fraction of the reference's steps. 20 is still fewer steps than the reference's patience.
    patience: int = 20


DEFAULTS = AnchorVAEDefaults()


class AnchorVAE(CrossCellModel):
    """Predict a drug's profile in one cell line from its profile in another, with a VAE and an anchor loss.

    One shared VAE encoder maps any cell line's profile to a Gaussian posterior in a common latent space; one decoder
    per cell line maps latent codes back out. Training pulls the latent means of the same drug's profiles in two cell
    lines together (the anchor loss) and asks each decoder to reconstruct its own cell line's profile from either
    code. Prediction encodes the source profile (latent mean) and decodes it with the target's decoder. See the
    anchor VAE methods page. Build it with :meth:`from_adata` and train it with :meth:`train`, or both at once with
    :func:`perturbkit.tl.train_anchor_vae`.

    Parameters
    ----------
    var_names
        Feature (gene) names, in order.
    cell_lines
        The cell lines that get a decoder, in order.
    latent_dim, hidden
        Latent size and encoder hidden sizes (decoders mirror them); DeepCellState's 128 and (512, 256).
    input_dropout
        Denoising dropout on the input (the reference code's 0.5; 0 switches it off).
    kl_weight, anchor_weight
        Weights of the KL term and of the anchor term (the squared distance of the two latent means), both summed
        over latent dimensions and divided by the number of genes, against a reconstruction MSE averaged over genes.
        The defaults (≈0.038 and ≈0.38) are the paper's competitor code's 0.005 and 0.05, which it applied to terms
        averaged over its 128 latent dimensions with 978 genes.
    cross_reconstruction
        Also decode each profile's code with the other cell line's decoder (target: the drug's profile there), as
        the reference code's training does.
    **kwargs
        ``data_keys`` (the obs keys of :attr:`data_defaults`), ``layer``, ``device``, ``seed`` and ``scaler``,
        as in :class:`~perturbkit.train.BaseModel`.
    """

    _prediction_key = "anchor_vae_prediction"
    _add_cell_line_hint = " (cell_lines=)"

    def __init__(
        self,
        var_names,
        *,
        cell_lines,
        latent_dim: int = DEFAULTS.latent_dim,
        hidden=DEFAULTS.hidden,
        input_dropout: float = DEFAULTS.input_dropout,
        kl_weight: float = DEFAULTS.kl_weight,
        anchor_weight: float = DEFAULTS.anchor_weight,
        cross_reconstruction: bool = DEFAULTS.cross_reconstruction,
        **kwargs,
    ):
        cell_lines = self._distinct_cell_lines([str(c) for c in np.atleast_1d(cell_lines)])
        self._check_weights(kl_weight=kl_weight, anchor_weight=anchor_weight)
        super().__init__(
            var_names,
            cell_lines=cell_lines,
            latent_dim=int(latent_dim),
            hidden=tuple(int(h) for h in hidden),
            input_dropout=float(input_dropout),
            kl_weight=float(kl_weight),
            anchor_weight=float(anchor_weight),
            cross_reconstruction=bool(cross_reconstruction),
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
        moa_key: str | None = OBS_KEYS.moa_key,
        average: bool = True,
        cell_lines=None,
        latent_dim: int = DEFAULTS.latent_dim,
        hidden=DEFAULTS.hidden,
        input_dropout: float = DEFAULTS.input_dropout,
        kl_weight: float = DEFAULTS.kl_weight,
        anchor_weight: float = DEFAULTS.anchor_weight,
        cross_reconstruction: bool = DEFAULTS.cross_reconstruction,
        layer: str | None = None,
        device: str | None = None,
        seed: int | None = 0,
    ) -> AnchorVAE:
        """An untrained anchor VAE for ``adata``'s genes and cell lines (one decoder each).

        The obs keys and ``layer`` are recorded with the model and reused by :meth:`train` and :meth:`predict`;
        ``cell_lines`` restricts and orders the cell lines (default: every cell line with treated profiles).
        See :func:`perturbkit.tl.train_anchor_vae` for the other parameters.
        """
        return cls._from_adata(adata, locals())

    def _build_module(self):
        h = self.hparams
        return AnchorVAENetwork(
            self.n_vars,
            len(h["cell_lines"]),
            latent_dim=h["latent_dim"],
            hidden=h["hidden"],
            input_dropout=h["input_dropout"],
        )

    # ----------------------------------------------------------------------------------------------- training
    def _loss(self):
        h = self.hparams
        return lambda batch: anchor_vae_loss(
            self.module,
            batch,
            kl_weight=h["kl_weight"],
            anchor_weight=h["anchor_weight"],
            cross=h["cross_reconstruction"],
        )

    def _pairs(self, profiles: CellDrugProfiles) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(x_a, x_b, a, b)``: every drug's profiles in every pair of cell lines (scaled, decoder positions).

        A drug measured in one cell line only gives one pair ``(x_a, x_a, a, a)`` (reconstruction and KL only).
        """
        decoders = [self.cell_index(c) for c in profiles.cell_lines]
        xa, xb, ca, cb = [], [], [], []
        for i, j in combinations(range(len(decoders)), 2):
            rows = np.flatnonzero(profiles.present[:, i] & profiles.present[:, j])
            xa.append(profiles.values[rows, i])
            xb.append(profiles.values[rows, j])
            ca.append(np.full(len(rows), decoders[i]))
            cb.append(np.full(len(rows), decoders[j]))
        alone = profiles.present.sum(axis=1) == 1
        for i, cell in enumerate(decoders):
            rows = np.flatnonzero(alone & profiles.present[:, i])
            for out in (xa, xb):
                out.append(profiles.values[rows, i])
            for out in (ca, cb):
                out.append(np.full(len(rows), cell))
        return (
            np.concatenate(xa).astype(np.float32),
            np.concatenate(xb).astype(np.float32),
            np.concatenate(ca).astype(np.int64),
            np.concatenate(cb).astype(np.int64),
        )

    def train(
        self,
        adata,
        *,
        validation_fraction: float = DEFAULTS.validation_fraction,
        lr: float = DEFAULTS.lr,
        batch_size: int = DEFAULTS.batch_size,
        max_epochs: int = DEFAULTS.max_epochs,
        patience: int | None = DEFAULTS.patience,
        seed: int | None = 0,
        fit_scaler: bool = True,
        checkpoint_dir=None,
        checkpoint_every: int = 10,
        resume=None,
    ) -> AnchorVAE:
        """Train on ``adata``'s treated profiles, read with the model's obs keys and layer.

        ``adata`` may also be the per-(drug, cell line) :class:`~perturbkit.models._profiles.CellDrugProfiles` (as
        the evaluations pass). Profiles are scaled to [-1, 1] by one global max |x|. Every training drug gives one
        pair per two cell lines it was measured in; ``validation_fraction`` of the drugs (held out in every cell
        line) drive early stopping on the cross-cell prediction error (``patience`` epochs; the best epoch's weights
        are kept). Adam at ``lr``, minibatches of ``batch_size`` pairs.

        Ctrl-C stops training with the best weights so far and returns the model. ``checkpoint_dir`` writes a
        checkpoint every ``checkpoint_every`` epochs; ``resume`` (a checkpoint) continues an earlier run exactly.
        """
        profiles = training_profiles(self, adata)
        if fit_scaler or self.scaler is None:
            from ...pp import Scaler

            self.scaler = Scaler("maxabs", per_feature=False).fit(profiles.values[profiles.present])
        scaled = scaled_profiles(self, profiles)
        train_pos, val_pos = split_indices(
            len(scaled.drugs), validation_fraction=validation_fraction, seed=0 if seed is None else seed
        )
        train = self._pairs(scaled.subset(drugs=train_pos))
        val = self._pairs(scaled.subset(drugs=val_pos))
        if len(train[0]) == 0:
            raise EmptyGroupError(
                "no training profiles: no drug of the training data is measured in the model's cell lines "
                f"{self.cell_lines}; check cell_lines and the data, or lower validation_fraction."
            )
        with self._training_run(
            seed=seed, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, resume=resume
        ) as run:
            self._fit_stage(
                run,
                "anchor_vae",
                Objective(self._loss(), self.module.parameters(), lr=lr),
                train,
                validation=val if len(val[0]) else None,
                validation_loss=lambda batch: cross_prediction_loss(self.module, batch),
                max_epochs=max_epochs,
                batch_size=batch_size,
                patience=patience,
                seed=seed,
            )
        self.module.eval()
        return self

    # ---------------------------------------------------------------------------------------------- prediction
    def predict_array(self, X: np.ndarray, *, target: str) -> np.ndarray:
        """Decode profiles ``X`` (rows, in the data's units) into cell line ``target``; returns the data's units.

        Each profile is encoded to its latent mean (no sampling), so predictions are deterministic.
        """
        cell = self.cell_index(target)
        return self.unscale_rows(self.run_in_chunks(lambda x: self.module(x, cell), self.scale_rows(X)))

    def encode_array(self, X: np.ndarray) -> np.ndarray:
        """Latent means of profiles ``X`` (rows, in the data's units)."""
        return self.run_in_chunks(lambda x: self.module.encode(x)[0], self.scale_rows(X))

    def decode_array(self, Z, *, decoder: str | None = None, inputs=None) -> np.ndarray:
        """Decode latent codes ``Z`` with cell line ``decoder``'s decoder (default: the first cell line).

        ``inputs`` is ignored (the decoders see only the latent code).
        """
        cell = self.cell_index(self.cell_lines[0] if decoder is None else decoder)
        Z = self.latent_codes(Z, latent_dim=self.hparams["latent_dim"])
        return self.unscale_rows(self.run_in_chunks(lambda z: self.module.decode(z, cell), Z))
