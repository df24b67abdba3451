"""pk.tl faces of cycleCDR (see the cycleCDR methods page): training and the no-change / mean-response baselines."""

from __future__ import annotations

from typing import Literal

from .._schema import (
    OBS_KEYS,
)
from ..models.cyclecdr import CycleCDR
from ..models.cyclecdr._model import DEFAULTS


def train_cyclecdr(
    adata,
    *,
    drug_key: str = OBS_KEYS.drug_key,
    control_key: str = OBS_KEYS.control_key,
    smiles_key: str = OBS_KEYS.smiles_key,
    dose_key: str | None = None,
    cell_key: str = OBS_KEYS.cell_key,
    plate_key: str | None = None,
    control_obs: str | None = None,
    layer: str | None = None,
    paired: bool = True,
    drug_encoder: Literal["gat", "gat_pretrained", "fingerprint", "onehot"] = DEFAULTS.drug_encoder,
    latent_dim: int = DEFAULTS.latent_dim,
    hidden: tuple[int, ...] = DEFAULTS.hidden,
    single_autoencoder: bool = False,
    use_reconstruction: bool = True,
    use_cycle: bool | None = None,
    cycle_weight: float = DEFAULTS.cycle_weight,
    identity_weight: float | None = None,
    adversarial_weight: float = DEFAULTS.adversarial_weight,
    gene_weights: bool = False,
    lr: float = DEFAULTS.lr,
    weight_decay: float = DEFAULTS.weight_decay,
    batch_size: int = DEFAULTS.batch_size,
    max_epochs: int = DEFAULTS.max_epochs,
    patience: int | None = DEFAULTS.patience,
    validation_fraction: float = DEFAULTS.validation_fraction,
    device: str | None = None,
    seed: int | None = 0,
    checkpoint_dir=None,
    checkpoint_every: int = 10,
    resume=None,
    key_added: str = "cyclecdr",
) -> CycleCDR:
    """Train cycleCDR: control → treated profiles through a drug embedding added in latent space.

    Equivalent to ``CycleCDR.from_adata(adata, ...).train(adata, ...)``.

    Parameters
    ----------
    adata
        Profiles (rows × genes) with obs ``drug_key``, ``control_key`` (bool), ``smiles_key``, ``cell_key``.
        Use log-scale values (bulk z-scores, or log-normalised single cells); genes are z-scored inside the model.
    drug_key, control_key, smiles_key, cell_key
        obs columns of the drug, the vehicle-control flag, the drug's SMILES and the cell line (type).
    dose_key
        With a dose column, the drug embedding is multiplied by a learned dose factor.
    plate_key, control_obs
        Paired data: match each treated row with the control mean of its cell line and plate, or with the control
        row named in ``obs[control_obs]``.
    layer
        Read ``adata.layers[layer]`` instead of X (recorded with the model).
    paired
        ``True`` (bulk): each treated row is matched with its control — the mean of the control rows of its cell
        line (and plate, with ``plate_key``), or the row named in ``obs[control_obs]`` — and the loss is
        reconstruction + paired MSE. ``False`` (single cells): random controls of the same cell type, with
        discriminators and the adversarial, cycle (λ = ``cycle_weight``) and identity losses. On Kang PBMCs the
        adversarial term collapsed every prediction onto one profile; pass ``adversarial_weight=0, batch_size=64``
        for single cells (the settings of ``pk.experiments.kang_holdout``), and prefer :func:`train_scgen` for a
        held-out cell type (see the cycleCDR methods page).
    drug_encoder
        ``"gat"`` (graph attention network on the SMILES graph, read out together with the molecule's Morgan
        fingerprint), ``"gat_pretrained"`` (the same GAT started from perturbkit's pretrained trunk, see
        :func:`~perturbkit.tl.pretrain_drug_encoder`), ``"fingerprint"`` (Morgan fingerprint → MLP; as accurate as
        the GAT on unseen drugs and much faster) or ``"onehot"`` (known drugs only).
    latent_dim, hidden
        Latent size and hidden sizes (reference L1000: 978-512-512-128).
    single_autoencoder, use_reconstruction, use_cycle, cycle_weight, identity_weight, adversarial_weight
        The paper's ablation switches and the loss weights (see :class:`~perturbkit.models.cyclecdr.CycleCDR`).
    gene_weights
        Weight the paired MSE by each gene's |log fold change|, as the reference code does.
    lr, weight_decay, batch_size, max_epochs, patience, validation_fraction
        Adam settings (reference: weight decay 1e-6, batch 512, 100 epochs); early stopping on held-out drugs.
    device, seed
        ``"auto"|"cpu"|"cuda"`` (None: ``pk.settings.device``); the seed makes CPU runs reproducible.
    checkpoint_dir, checkpoint_every, resume
        Write a checkpoint (a loadable model file plus the training state) to ``checkpoint_dir/checkpoint.pt``
        every ``checkpoint_every`` epochs; ``resume=`` that file (or folder) continues the run exactly. Ctrl-C
        ends training with the best weights so far, and the model is returned.
    key_added
        ``adata.uns[key_added]`` records the settings and a training summary.

    Returns
    -------
    The trained :class:`~perturbkit.models.cyclecdr.CycleCDR`.

    Examples
    --------
    >>> model = pk.tl.train_cyclecdr(adata, drug_encoder="fingerprint")
    >>> pred = model.predict(pk.tl.control_means(adata), drugs={"aspirin": "CC(=O)Oc1ccccc1C(=O)O"})
    """
    architecture = dict(
        paired=paired,
        drug_encoder=drug_encoder,
        latent_dim=latent_dim,
        hidden=tuple(hidden),
        single_autoencoder=single_autoencoder,
        use_reconstruction=use_reconstruction,
        use_cycle=use_cycle,
        cycle_weight=cycle_weight,
        identity_weight=identity_weight,
        adversarial_weight=adversarial_weight,
        gene_weights=gene_weights,
    )
    training = dict(
        lr=lr,
        weight_decay=weight_decay,
        batch_size=batch_size,
        max_epochs=max_epochs,
        patience=patience,
        validation_fraction=validation_fraction,
    )
    model = CycleCDR.from_adata(
        adata,
        drug_key=drug_key,
        control_key=control_key,
        smiles_key=smiles_key,
        dose_key=dose_key,
        cell_key=cell_key,
        plate_key=plate_key,
        control_obs=control_obs,
        layer=layer,
        device=device,
        seed=seed,
        **architecture,
    )
    model.train(
        adata, seed=seed, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, resume=resume, **training
    )
    adata.uns[key_added] = model.training_record(
        {
            **model.data_keys,
            "layer": layer,
            "seed": seed,
            **architecture,
            "use_cycle": bool(model.hparams["use_cycle"]),
            **training,
        },
        n_drugs=len(model.drug_names),
    )
    return model
