"""pk.tl face of the anchor VAE (the DeepCellState paper's "VAE with anchor loss" competitor)."""

from __future__ import annotations

from .._schema import OBS_KEYS
from ..models.anchor_vae import AnchorVAE
from ..models.anchor_vae._model import DEFAULTS
from ._deepcellstate import CROSS_CELL_DATA_DOC
from ._options import doc_params


@doc_params(cross_cell_data=CROSS_CELL_DATA_DOC)
def train_anchor_vae(
    adata,
    *,
    cell_key: str = OBS_KEYS.cell_key,
    drug_key: str = OBS_KEYS.drug_key,
    control_key: str | None = OBS_KEYS.control_key,
    moa_key: str | None = OBS_KEYS.moa_key,
    average: bool = True,
    cell_lines=None,
    layer: str | None = None,
    latent_dim: int = DEFAULTS.latent_dim,
    hidden: tuple[int, ...] = DEFAULTS.hidden,
    input_dropout: float = DEFAULTS.input_dropout,
    kl_weight: float = DEFAULTS.kl_weight,
    anchor_weight: float = DEFAULTS.anchor_weight,
    cross_reconstruction: bool = DEFAULTS.cross_reconstruction,
    validation_fraction: float = DEFAULTS.validation_fraction,
    lr: float = DEFAULTS.lr,
    batch_size: int = DEFAULTS.batch_size,
    max_epochs: int = DEFAULTS.max_epochs,
    patience: int | None = DEFAULTS.patience,
    device: str | None = None,
    seed: int | None = 0,
    checkpoint_dir=None,
    checkpoint_every: int = 10,
    resume=None,
    key_added: str = "anchor_vae",
) -> AnchorVAE:
    """Train a VAE with an anchor loss to translate drug responses between cell lines.

    The DeepCellState paper's "VAE with anchor loss" competitor: one shared VAE encoder, one decoder per cell line,
    and a loss that pulls the latent means of the same drug's profiles in two cell lines together. Profiles are
    built as for DeepCellState (averaged per cell line and drug, controls left out, scaled to [-1, 1] by one global
    max |x| kept in the model). Equivalent to ``AnchorVAE.from_adata(adata, ...).train(adata, ...)``.

    Parameters
    ----------
    {cross_cell_data}
    cell_lines
        Cell lines to model (default all in the data); each gets a decoder.
    layer
        Read ``adata.layers[layer]`` instead of X (recorded with the model).
    latent_dim, hidden, input_dropout
        The network: latent size 128 and encoder hidden sizes (512, 256) as DeepCellState; input dropout 0.5 as the
        paper's competitor code.
    kl_weight, anchor_weight, cross_reconstruction
        The loss: weights of the KL and anchor terms (summed over latent dimensions, per gene; the defaults are the
        paper's competitor code's 0.005 and 0.05 at its 978 genes and 128 latent dimensions), and whether each code
        is also decoded into the other cell line (as that code's training does). See
        :class:`~perturbkit.models.anchor_vae.AnchorVAE`.
    validation_fraction, lr, batch_size, max_epochs, patience
        Training: early stopping on held-out drugs (5%, patience 5, as DeepCellState), Adam, minibatches of pairs.
    device, seed
        ``"auto"|"cpu"|"cuda"`` (None: ``pk.settings.device``); the seed makes CPU runs reproducible.
    checkpoint_dir, checkpoint_every, resume
        Write a checkpoint every ``checkpoint_every`` epochs; ``resume=`` that checkpoint continues the run exactly.
        Ctrl-C ends training with the best weights so far, and the model is returned.
    key_added
        ``adata.uns[key_added]`` records the settings and a training summary.

    Returns
    -------
    The trained :class:`~perturbkit.models.anchor_vae.AnchorVAE`.

    Examples
    --------
    >>> adata = pk.datasets.simulate_bulk()
    >>> model = pk.tl.train_anchor_vae(adata)
    >>> pred = model.predict(adata, target="MCF7", sources=["PC3"])
    """
    architecture = dict(
        latent_dim=latent_dim,
        hidden=tuple(hidden),
        input_dropout=input_dropout,
        kl_weight=kl_weight,
        anchor_weight=anchor_weight,
        cross_reconstruction=cross_reconstruction,
    )
    training = dict(
        validation_fraction=validation_fraction,
        lr=lr,
        batch_size=batch_size,
        max_epochs=max_epochs,
        patience=patience,
    )
    model = AnchorVAE.from_adata(
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
