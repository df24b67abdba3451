"""pk.tl face of the dual GAN (MAGAN-style, the DeepCellState paper's GAN competitor)."""

from __future__ import annotations

from .._schema import OBS_KEYS
from ..models.dual_gan import DualGAN
from ..models.dual_gan._model import DEFAULTS
from ._deepcellstate import CROSS_CELL_DATA_DOC
from ._options import doc_params


@doc_params(cross_cell_data=CROSS_CELL_DATA_DOC)
def train_dual_gan(
    adata,
    *,
    cell_key: str = OBS_KEYS.cell_key,
    drug_key: str = OBS_KEYS.drug_key,
    control_key: str | None = OBS_KEYS.control_key,
    moa_key: str | None = OBS_KEYS.moa_key,
    average: bool = True,
    cell_lines=None,
    layer: str | None = None,
    generator_hidden: tuple[int, ...] = DEFAULTS.generator_hidden,
    discriminator_hidden: tuple[int, ...] = DEFAULTS.discriminator_hidden,
    adversarial_weight: float = DEFAULTS.adversarial_weight,
    cycle_weight: float = DEFAULTS.cycle_weight,
    correspondence_weight: float = DEFAULTS.correspondence_weight,
    paired: bool = False,
    validation_fraction: float = DEFAULTS.validation_fraction,
    lr: float = DEFAULTS.lr,
    betas: tuple[float, float] = DEFAULTS.betas,
    batch_size: int = DEFAULTS.batch_size,
    max_epochs: int = DEFAULTS.max_epochs,
    patience: int | None = DEFAULTS.patience,
    device: str | None = None,
    seed: int | None = 0,
    checkpoint_dir=None,
    checkpoint_every: int = 10,
    resume=None,
    key_added: str = "dual_gan",
) -> DualGAN:
    """Train a dual GAN (MAGAN) to translate drug responses between two cell lines.

    The DeepCellState paper's GAN competitor: generators ``G_ab`` and ``G_ba`` and one discriminator per cell line,
    trained with MAGAN's adversarial, cycle-reconstruction and correspondence losses. Profiles are built as for
    DeepCellState (averaged per cell line and drug, controls left out, scaled to [-1, 1] by one global max |x| kept
    in the model). Equivalent to ``DualGAN.from_adata(adata, ...).train(adata, ...)``.

    Parameters
    ----------
    {cross_cell_data}
    cell_lines
        The two cell lines ``[a, b]`` (default: the data's, which must then be exactly two; with more, an error
        names them).
    layer
        Read ``adata.layers[layer]`` instead of X (recorded with the model).
    generator_hidden, discriminator_hidden
        Hidden sizes (MAGAN's 200, 100, 50 and 800, 400, 200, 100, 50), LeakyReLU.
    adversarial_weight, cycle_weight, correspondence_weight
        Weights of the generators' loss terms (MAGAN: 1 each; the loss is the mean of its six terms).
    paired
        ``False`` (MAGAN): unsupervised, the two cell lines' profiles shuffled independently and the correspondence
        term ``G_ab(x_a) ≈ x_a``. ``True`` (the DeepCellState paper's competitor code): each drug's profiles paired,
        and the correspondence term ``G_ab(x_a) ≈ x_b``.
    validation_fraction, lr, betas, batch_size, max_epochs, patience
        Training (MAGAN: Adam, lr 1e-3, betas (0.5, 0.99), batches of 100, a fixed number of steps:
        ``patience=None``); the held-out drugs give the monitored loss, whose best epoch is kept.
    device, seed
        ``"auto"|"cpu"|"cuda"`` (None: ``pk.settings.device``); the seed makes CPU runs reproducible.
    checkpoint_dir, checkpoint_every, resume
        Write a checkpoint every ``checkpoint_every`` epochs; ``resume=`` that checkpoint continues the run exactly.
        Ctrl-C ends training with the best weights so far, and the model is returned.
    key_added
        ``adata.uns[key_added]`` records the settings and a training summary.

    Returns
    -------
    The trained :class:`~perturbkit.models.dual_gan.DualGAN`.

    Examples
    --------
    >>> adata = pk.datasets.simulate_bulk(n_cell_lines=2)
    >>> model = pk.tl.train_dual_gan(adata, cell_lines=["PC3", "MCF7"])
    >>> pred = model.predict(adata, target="MCF7")
    """
    architecture = dict(
        generator_hidden=tuple(generator_hidden),
        discriminator_hidden=tuple(discriminator_hidden),
        adversarial_weight=adversarial_weight,
        cycle_weight=cycle_weight,
        correspondence_weight=correspondence_weight,
        paired=paired,
    )
    training = dict(
        validation_fraction=validation_fraction,
        lr=lr,
        betas=tuple(betas),
        batch_size=batch_size,
        max_epochs=max_epochs,
        patience=patience,
    )
    model = DualGAN.from_adata(
        adata,
        cell_key=cell_key,
        drug_key=drug_key,
        control_key=control_key,
        moa_key=moa_key,
        average=average,
        cell_lines=cell_lines,
        layer=layer,
        device=device,
        seed=seed,
        **architecture,
    )
    profiles = model.profiles_from(adata, cell_lines=model.cell_lines)
    model.train(
        profiles, seed=seed, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, resume=resume, **training
    )
    adata.uns[key_added] = model.training_record(
        {**model.data_keys, "cell_lines": model.cell_lines, "layer": layer, "seed": seed, **architecture, **training},
        n_drugs={c: int(n) for c, n in zip(profiles.cell_lines, profiles.present.sum(axis=0), strict=True)},
    )
    return model
