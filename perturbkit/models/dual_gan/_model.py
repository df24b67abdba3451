"""The dual GAN (MAGAN-style, with the correspondence loss): the DeepCellState paper's GAN competitor."""

from __future__ import annotations

from dataclasses import dataclass

import anndata as ad
import numpy as np
import torch

from ..._schema import OBS_KEYS, EmptyGroupError, PerturbkitInputError, UnknownCategoryError
from ...train import Objective, split_indices
from .._cross_cell import CrossCellModel
from .._profiles import CellDrugProfiles, cross_cell_prediction, scaled_profiles, training_profiles
from ._module import DualGANNetwork, discriminator_loss, generator_loss, paired_validation_loss


@dataclass(frozen=True)
class DualGANDefaults:
    """The dual GAN's defaults, written once: every signature that takes these options takes its default here."""

    generator_hidden: tuple[int, ...] = (200, 100, 50)
    discriminator_hidden: tuple[int, ...] = (800, 400, 200, 100, 50)
    adversarial_weight: float = 1.0
    cycle_weight: float = 1.0
    correspondence_weight: float = 1.0
    lr: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.99)
    batch_size: int = 100
    max_epochs: int = 200
    patience: int | None = None
    validation_fraction: float = 0.05


DEFAULTS = DualGANDefaults()


@dataclass
class AdamObjective(Objective):
    """An :class:`~perturbkit.train.Objective` whose Adam has its own ``betas`` (MAGAN: 0.5 and 0.99)."""

    betas: tuple[float, float] = DEFAULTS.betas

    def make_optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.parameters if p.requires_grad]
        if not params:
            raise PerturbkitInputError(f"objective {self.name!r} has no trainable parameters.")
        return torch.optim.Adam(params, lr=self.lr, betas=tuple(self.betas), weight_decay=self.weight_decay)


class DualGAN(CrossCellModel):
    """Translate drug profiles between two cell lines with two generators and two discriminators (MAGAN).

    ``G_ab`` maps a profile of cell line ``a`` to one of ``b`` and ``G_ba`` the other way; the discriminators
    ``D_a`` and ``D_b`` tell each cell line's real profiles from generated ones. MAGAN's generator loss adds a cycle
    reconstruction term (``G_ba(G_ab(x_a)) ≈ x_a``) and a correspondence term, which keeps each gene where it was
    (``G_ab(x_a) ≈ x_a`` on the genes known to correspond: here all of them). Training is unsupervised: the
    profiles of cell line ``a`` and of cell line ``b`` are shuffled independently, so no drug is paired with
    itself. ``paired=True`` gives the DeepCellState paper's competitor code instead, whose correspondence term pairs
    each drug's profile with its profile in the other cell line. See the dual GAN methods page. Build it with
    :meth:`from_adata` and train it with :meth:`train`, or both at once with :func:`perturbkit.tl.train_dual_gan`.

    Parameters
    ----------
    var_names
        Feature (gene) names, in order.
    cell_lines
        Exactly two cell lines ``[a, b]``.
    generator_hidden, discriminator_hidden
        Hidden sizes (MAGAN: 200, 100, 50 and 800, 400, 200, 100, 50), with LeakyReLU (slope 0.2).
    adversarial_weight, cycle_weight, correspondence_weight
        Weights of the generator's loss terms (MAGAN: 1 each; the loss is the mean of its six terms).
    paired
        Pair each drug's profiles in the two cell lines, and make the correspondence term the error of translating
        one into the other (the DeepCellState paper's competitor code); ``False`` is MAGAN's unsupervised training.
    **kwargs
        ``data_keys`` (the obs keys of :attr:`data_defaults`), ``layer``, ``device``, ``seed`` and ``scaler``,
        as in :class:`~perturbkit.train.BaseModel`.
    """

    decoder_names = ()  # no decoder of latent codes
    _prediction_key = "dual_gan_prediction"

    def __init__(
        self,
        var_names,
        *,
        cell_lines,
        generator_hidden=DEFAULTS.generator_hidden,
        discriminator_hidden=DEFAULTS.discriminator_hidden,
        adversarial_weight: float = DEFAULTS.adversarial_weight,
        cycle_weight: float = DEFAULTS.cycle_weight,
        correspondence_weight: float = DEFAULTS.correspondence_weight,
        paired: bool = False,
        **kwargs,
    ):
        cell_lines = [str(c) for c in np.atleast_1d(cell_lines)]
        self._check_weights(
            adversarial_weight=adversarial_weight,
            cycle_weight=cycle_weight,
            correspondence_weight=correspondence_weight,
        )
        super().__init__(
            var_names,
            cell_lines=cell_lines,
            generator_hidden=tuple(int(h) for h in generator_hidden),
            discriminator_hidden=tuple(int(h) for h in discriminator_hidden),
            adversarial_weight=float(adversarial_weight),
            cycle_weight=float(cycle_weight),
            correspondence_weight=float(correspondence_weight),
            paired=bool(paired),
            **kwargs,
        )
        if len(cell_lines) != 2 or len(set(cell_lines)) != 2:
            raise PerturbkitInputError(
                f"DualGAN translates between exactly two distinct cell lines, got cell_lines={cell_lines}; pass "
                f"two of them, e.g. cell_lines={cell_lines[:2] if len(set(cell_lines)) > 1 else ['MCF7', 'PC3']}."
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
        generator_hidden=DEFAULTS.generator_hidden,
        discriminator_hidden=DEFAULTS.discriminator_hidden,
        adversarial_weight: float = DEFAULTS.adversarial_weight,
        cycle_weight: float = DEFAULTS.cycle_weight,
        correspondence_weight: float = DEFAULTS.correspondence_weight,
        paired: bool = False,
        layer: str | None = None,
        device: str | None = None,
        seed: int | None = 0,
    ) -> DualGAN:
        """An untrained dual GAN for ``adata``'s genes and two cell lines.

        ``cell_lines`` names the two (default: the data's cell lines, which must then be exactly two). The obs keys
        and ``layer`` are recorded with the model and reused by :meth:`train` and :meth:`predict`. See
        :func:`perturbkit.tl.train_dual_gan` for the other parameters.
        """
        if cell_lines is not None and len(np.atleast_1d(cell_lines)) != 2:
            raise PerturbkitInputError(
                f"DualGAN translates between exactly two cell lines; cell_lines={list(np.atleast_1d(cell_lines))} "
                f"names {len(np.atleast_1d(cell_lines))}. Pass two, e.g. cell_lines=['MCF7', 'PC3']."
            )
        return cls._from_adata(adata, locals())

    @classmethod
    def _check_profiles(cls, profiles: CellDrugProfiles, data_keys: dict) -> None:
        if len(profiles.cell_lines) != 2:
            raise PerturbkitInputError(
                f"DualGAN translates between exactly two cell lines, but obs[{data_keys['cell_key']!r}] has "
                f"{len(profiles.cell_lines)}: {list(profiles.cell_lines)}. Pass cell_lines= naming two of them, e.g. "
                f"cell_lines={list(profiles.cell_lines[:2])}."
            )

    def _build_module(self):
        h = self.hparams
        return DualGANNetwork(
            self.n_vars, generator_hidden=h["generator_hidden"], discriminator_hidden=h["discriminator_hidden"]
        )

    def _unknown_cell_line(self, cell_line) -> str:
        return (
            f"target cell line {cell_line!r} is not one of this DualGAN's two cell lines {self.cell_lines}; "
            f"train a DualGAN with cell_lines=[source, {str(cell_line)!r}]."
        )

    # ----------------------------------------------------------------------------------------------- training
    def _generator_loss(self, *, adversarial: bool = True):
        h = self.hparams
        return lambda batch: generator_loss(
            self.module,
            batch,
            adversarial_weight=h["adversarial_weight"],
            cycle_weight=h["cycle_weight"],
            correspondence_weight=h["correspondence_weight"],
            paired=h["paired"],
            adversarial=adversarial,
        )

    def _validation_loss(self):
        """Paired: the MSE of translating held-out drugs; unpaired: the generator loss without its adversarial part."""
        if self.hparams["paired"]:
            return lambda batch: paired_validation_loss(self.module, batch)
        return self._generator_loss(adversarial=False)

    def _arrays(self, profiles: CellDrugProfiles, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Side-by-side rows ``(x_a, x_b)`` of scaled profiles in the model's order of the two cell lines.

        Paired: the drugs measured in both. Unpaired: every profile of ``a`` and every profile of ``b``, each in its
        own random order (the shorter list topped up with random repeats), so rows are not paired by drug.
        """
        a, b = (profiles.cell_index(c) for c in self.cell_lines)
        if self.hparams["paired"]:
            rows = np.flatnonzero(profiles.present[:, a] & profiles.present[:, b])
            return profiles.values[rows, a], profiles.values[rows, b]
        xa = profiles.values[profiles.present[:, a], a]
        xb = profiles.values[profiles.present[:, b], b]
        n = max(len(xa), len(xb))
        if min(len(xa), len(xb)) == 0:
            return xa[:0], xb[:0]

        def fill(x):
            order = rng.permutation(len(x))
            return x[np.concatenate([order, rng.integers(len(x), size=n - len(x))])]

        return fill(xa), fill(xb)

    def train(
        self,
        adata,
        *,
        validation_fraction: float = DEFAULTS.validation_fraction,
        lr: float = DEFAULTS.lr,
        discriminator_lr: float | None = None,
        betas: tuple[float, float] = DEFAULTS.betas,
        batch_size: int = DEFAULTS.batch_size,
        max_epochs: int = DEFAULTS.max_epochs,
        patience: int | None = DEFAULTS.patience,
        seed: int | None = 0,
        fit_scaler: bool = True,
        checkpoint_dir=None,
        checkpoint_every: int = 10,
        resume=None,
    ) -> DualGAN:
        """Train on ``adata``'s treated profiles of the two cell lines, read with the model's obs keys and layer.

        ``adata`` may also be the per-(drug, cell line) :class:`~perturbkit.models._profiles.CellDrugProfiles` (as
        the evaluations pass; other cell lines in it are ignored). Profiles are scaled to [-1, 1] by one global
        max |x|. Each batch takes one generator step, then one discriminator step (MAGAN: Adam with ``lr`` 1e-3,
        ``betas`` (0.5, 0.99), batches of 100). ``validation_fraction`` of the drugs (held out in both cell lines)
        give the monitored loss: the generator's cycle and correspondence terms (unpaired) or the translation error
        (paired); the epoch with the lowest is kept. MAGAN trains a fixed number of steps: ``patience=None`` runs
        all ``max_epochs``.

        Ctrl-C stops training with the best weights so far and returns the model. ``checkpoint_dir`` writes a
        checkpoint every ``checkpoint_every`` epochs; ``resume`` (a checkpoint) continues an earlier run exactly.
        """
        profiles = training_profiles(self, adata)
        missing = [c for c in self.cell_lines if c not in profiles.cell_lines]
        if missing:
            raise EmptyGroupError(
                f"the training data have no treated profiles of cell line(s) {missing}; DualGAN needs both of "
                f"{self.cell_lines}."
            )
        if fit_scaler or self.scaler is None:
            from ...pp import Scaler

            self.scaler = Scaler("maxabs", per_feature=False).fit(profiles.values[profiles.present])
        scaled = scaled_profiles(self, profiles)
        train_pos, val_pos = split_indices(
            len(scaled.drugs), validation_fraction=validation_fraction, seed=0 if seed is None else seed
        )
        rng = np.random.default_rng(seed)
        train = self._arrays(scaled.subset(drugs=train_pos), rng)
        val = self._arrays(scaled.subset(drugs=val_pos), rng)
        if len(train[0]) == 0:
            raise EmptyGroupError(
                f"no training rows for cell lines {self.cell_lines}"
                + (" (paired: no drug measured in both)" if self.hparams["paired"] else "")
                + "; check the data and cell_lines, or lower validation_fraction."
            )
        net = self.module
        objectives = [
            AdamObjective(self._generator_loss(), net.generator_parameters(), lr=lr, name="generator", betas=betas),
            AdamObjective(
                lambda batch: discriminator_loss(net, batch),
                net.discriminator_parameters(),
                lr=lr if discriminator_lr is None else discriminator_lr,
                name="discriminator",
                betas=betas,
            ),
        ]
        with self._training_run(
            seed=seed, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, resume=resume
        ) as run:
            self._fit_stage(
                run,
                "dual_gan",
                objectives,
                train,
                validation=val if len(val[0]) else None,
                validation_loss=self._validation_loss(),
                max_epochs=max_epochs,
                batch_size=batch_size,
                patience=patience,
                seed=seed,
            )
        net.eval()
        return self

    # ---------------------------------------------------------------------------------------------- prediction
    def source_of(self, target: str) -> str:
        """The cell line that ``target`` is translated from: the other of the two."""
        return self.cell_lines[1 - self.cell_index(target)]

    def predict_array(self, X: np.ndarray, *, target: str) -> np.ndarray:
        """Translate profiles ``X`` (rows, the data's units) of the other cell line into ``target``; data units."""
        t = self.cell_index(target)
        return self.unscale_rows(self.run_in_chunks(lambda x: self.module(x, 1 - t, t), self.scale_rows(X)))

    def predict(self, adata, *, target: str, sources=None, layer=None) -> ad.AnnData:
        """Predict profiles in cell line ``target`` from the drugs' profiles in the other cell line.

        Returns an AnnData with one row per drug measured in the source cell line, in the input's units.
        ``sources=None`` (or ``[source]``) is the other of the model's two cell lines; any other source raises
        :class:`~perturbkit.errors.UnknownCategoryError`. Features are matched by name and the control rows are
        left out, with the obs keys of training (``data_keys``).
        """
        source = self.source_of(target)

        def only_the_other_cell_line(names: list[str]) -> None:
            bad = [s for s in names if s != source]
            if bad:
                raise UnknownCategoryError(
                    f"{type(self).__name__} translates into {target!r} only from {[source]}, not from "
                    f"{bad}; pass sources={[source]} (or leave sources=None)."
                )

        return cross_cell_prediction(
            self,
            adata,
            target=target,
            sources=sources,
            layer=layer,
            uns_key=self._prediction_key,
            check_sources=only_the_other_cell_line,
            default_sources=[source],
        )
