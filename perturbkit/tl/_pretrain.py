"""pk.tl face of the drug-encoder pretraining (see the cycleCDR methods page, "Pretrained drug encoder")."""

from __future__ import annotations

from ..models.cyclecdr._pretrain import DEFAULTS, pretrain
from ..models.cyclecdr._pretrained_weights import PretrainedDrugEncoder


def pretrain_drug_encoder(
    smiles,
    *,
    hidden: int = DEFAULTS.hidden,
    heads: int = DEFAULTS.heads,
    projection_dim: int = DEFAULTS.projection_dim,
    mask_fraction: float = DEFAULTS.mask_fraction,
    edge_drop: float = DEFAULTS.edge_drop,
    temperature: float = DEFAULTS.temperature,
    contrastive_weight: float = DEFAULTS.contrastive_weight,
    fingerprint_weight: float = DEFAULTS.fingerprint_weight,
    fingerprint_bits: int = DEFAULTS.fingerprint_bits,
    lr: float = DEFAULTS.lr,
    weight_decay: float = DEFAULTS.weight_decay,
    batch_size: int = DEFAULTS.batch_size,
    max_epochs: int = DEFAULTS.max_epochs,
    validation_fraction: float = DEFAULTS.validation_fraction,
    progress: bool | None = None,
    device: str | None = None,
    seed: int | None = 0,
) -> PretrainedDrugEncoder:
    """Pretrain the GAT drug encoder's trunk on unlabelled SMILES (masked atoms, a contrastive view, fingerprint bits).

    Every batch of molecules gives two augmented views of each molecule: ``mask_fraction`` of its atoms have their
    features zeroed and ``edge_drop`` of its bonds are removed. The trunk (cycleCDR's two graph attention layers)
    is trained to predict the element of each masked atom (cross-entropy), to map the two views of a molecule
    close together and away from the other molecules of the batch (NT-Xent on mean-pooled, projected embeddings)
    and to predict the molecule's Morgan fingerprint bits from its mean-pooled embedding (``fingerprint_weight``).
    Start a GAT from the result with ``GATEncoder(..., pretrained=result)`` or its saved file;
    ``drug_encoder="gat_pretrained"`` in :func:`~perturbkit.tl.train_cyclecdr` and :func:`~perturbkit.tl.train_cpa`
    uses the checkpoint shipped with perturbkit (made by this function on the Drug Repurposing Hub's SMILES).

    Parameters
    ----------
    smiles
        The molecules: a list, array or pandas Series of SMILES (or a one-column DataFrame). Duplicates are used
        once; entries RDKit cannot parse (and missing ones) are skipped and counted (``result.n_invalid``).
    hidden, heads
        The trunk's size; keep cycleCDR's GAT sizes (64, 10) to initialise its encoder.
    projection_dim
        Output size of the contrastive projection head (discarded after pretraining).
    mask_fraction
        Fraction of each molecule's atoms masked in each view (Hu et al. 2020: 0.15).
    edge_drop
        Fraction of bonds dropped in each view (GraphCL's augmentation ratio, 0.2).
    temperature
        NT-Xent temperature (MolCLR: 0.1).
    contrastive_weight
        Weight of the contrastive loss added to the masked-atom cross-entropy.
    fingerprint_weight, fingerprint_bits
        Weight of a third task: predicting the molecule's Morgan fingerprint bits (radius 2, ``fingerprint_bits``
        bits; binary cross-entropy) linearly from the max-pooled trunk embedding, in the spirit of GROVER's motif
        prediction. ``0`` leaves just the two tasks above.
    lr, weight_decay, batch_size, max_epochs
        Adam settings; ``batch_size`` molecules per step (also the contrastive negatives).
    validation_fraction
        Molecules held out to monitor the loss (the best epoch's weights are kept) and to measure the masked-atom
        accuracy against the majority-class guess.
    progress
        Show a tqdm bar (default ``pk.settings.progress_bar``).
    device, seed
        ``"auto"|"cpu"|"cuda"`` (None: ``pk.settings.device``); the seed fixes the initial weights, the
        shuffling and the augmentations (CPU runs are bitwise reproducible).

    Returns
    -------
    A :class:`~perturbkit.models.cyclecdr._pretrained_weights.PretrainedDrugEncoder`: the trunk's weights
    (``.state``), a record of the run (``.metadata``: atom feature layout version, sizes, numbers of SMILES used and
    skipped, epochs, seed, first and final losses, held-out masked-atom accuracy and the majority-class accuracy)
    and the per-epoch ``.history``; ``.save(path)`` writes it (atomically).

    Raises
    ------
    EmptyGroupError
        When no SMILES is valid.

    Examples
    --------
    >>> hub = pk.io.read_repurposing_hub("repurposing_drugs.txt", samples="repurposing_samples.txt")
    >>> encoder = pk.tl.pretrain_drug_encoder(hub["smiles"].dropna(), max_epochs=10)
    >>> encoder.metadata["masked_accuracy"], encoder.metadata["majority_accuracy"]
    >>> encoder.save("drug_encoder_gat.pt")
    """
    return pretrain(
        smiles,
        hidden=hidden,
        heads=heads,
        projection_dim=projection_dim,
        mask_fraction=mask_fraction,
        edge_drop=edge_drop,
        temperature=temperature,
        contrastive_weight=contrastive_weight,
        fingerprint_weight=fingerprint_weight,
        fingerprint_bits=fingerprint_bits,
        lr=lr,
        weight_decay=weight_decay,
        batch_size=batch_size,
        max_epochs=max_epochs,
        validation_fraction=validation_fraction,
        device=device,
        seed=seed,
        progress=progress,
    )
