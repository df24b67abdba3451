"""pk.tl face of CPA / chemCPA (see the CPA methods page)."""

from __future__ import annotations

from typing import Literal

from .._schema import OBS_KEYS
from ..models.cpa import CPA
from ..models.cpa._model import DEFAULTS
from ._options import STREAMING_DOC, doc_params


@doc_params(streaming=STREAMING_DOC)
def train_cpa(
    adata,
    *,
    drug_key: str = OBS_KEYS.drug_key,
    control_key: str = OBS_KEYS.control_key,
    smiles_key: str = OBS_KEYS.smiles_key,
    dose_key: str | None = None,
    cell_key: str = OBS_KEYS.cell_key,
    layer: str | None = None,
    drug_encoder: Literal["fingerprint", "gat", "gat_pretrained", "onehot"] = DEFAULTS.drug_encoder,
    latent_dim: int = DEFAULTS.latent_dim,
    hidden: tuple[int, ...] = DEFAULTS.hidden,
    adversary_hidden: tuple[int, ...] = DEFAULTS.adversary_hidden,
    doser_hidden: tuple[int, ...] = DEFAULTS.doser_hidden,
    reg_adversary: float = DEFAULTS.reg_adversary,
    penalty_adversary: float = DEFAULTS.penalty_adversary,
    lr: float = DEFAULTS.lr,
    adversary_lr: float = DEFAULTS.adversary_lr,
    weight_decay: float = DEFAULTS.weight_decay,
    adversary_weight_decay: float = DEFAULTS.adversary_weight_decay,
    batch_size: int = DEFAULTS.batch_size,
    max_epochs: int = DEFAULTS.max_epochs,
    patience: int | None = DEFAULTS.patience,
    validation_fraction: float = DEFAULTS.validation_fraction,
    device: str | None = None,
    seed: int | None = 0,
    checkpoint_dir=None,
    checkpoint_every: int = 10,
    resume=None,
    chunk_rows: int | None = None,
    buffer_chunks: int | None = None,
    max_validation_rows: int | None = None,
    key_added: str = "cpa",
) -> CPA:
    """Train CPA (chemCPA-style): basal state + dose-scaled drug embedding + cell-line embedding, added in latent space.

    Equivalent to ``CPA.from_adata(adata, ...).train(adata, ...)``. Every row is used: the controls (no drug term)
    and the treated rows.

    Parameters
    ----------
    adata
        Profiles (rows × genes) with obs ``drug_key``, ``control_key`` (bool), ``cell_key`` and, for the structure
        encoders, ``smiles_key``. Use log-scale values as they are (log-normalised single cells, bulk z-scores):
        CPA models them with a Gaussian likelihood and no further scaling.
    drug_key, control_key, smiles_key, cell_key
        obs columns of the drug, the vehicle-control flag, the drug's SMILES and the cell line (type).
    dose_key
        A numeric dose column; the dose encoder then scales each drug's embedding by its dose. Without it every
        treated row has dose 1 (and the controls dose 0, so they get no drug term).
    layer
        Read ``adata.layers[layer]`` instead of X (recorded with the model).
    drug_encoder
        ``"fingerprint"`` (Morgan fingerprint → MLP; the default, the RDKit featurisation closest to chemCPA's best
        drug embedding), ``"gat"`` (graph attention network on the SMILES graph), ``"gat_pretrained"`` (the same GAT
        started from perturbkit's pretrained trunk, see :func:`~perturbkit.tl.pretrain_drug_encoder`) or ``"onehot"``
        (one learned vector per training drug; known drugs only). These are cycleCDR's encoders.
    latent_dim, hidden
        Latent size and hidden sizes of the encoder and decoder (chemCPA: 256 and 4 × 512).
    adversary_hidden, doser_hidden
        Hidden sizes of the drug and cell-line adversaries (chemCPA: 3 × 128) and of the dose encoder (2 × 64).
    reg_adversary, penalty_adversary
        Weight of the adversaries' cross-entropy subtracted from the autoencoder's loss (chemCPA: 5), and of the
        adversaries' gradient penalty (chemCPA: 3).
    lr, weight_decay
        Adam settings of the autoencoder, drug and dose encoders and embeddings (chemCPA: 1e-3, 1e-6).
    adversary_lr, adversary_weight_decay
        Adam settings of the adversaries (chemCPA: 3e-4, 1e-4).
    batch_size, max_epochs, patience, validation_fraction
        Minibatch size (chemCPA: 128), most epochs (chemCPA: 201), and early stopping: ``validation_fraction`` of
        the rows are held out at random and training stops when their reconstruction NLL has not improved for
        ``patience`` epochs (``None``: never early).
    device, seed
        ``"auto"|"cpu"|"cuda"`` (None: ``pk.settings.device``); the seed makes CPU runs reproducible.
    checkpoint_dir, checkpoint_every, resume
        Write a checkpoint (a loadable model file plus the training state) to ``checkpoint_dir/checkpoint.pt``
        every ``checkpoint_every`` epochs; ``resume=`` that file (or folder) continues the run exactly. Ctrl-C
        ends training with the best weights so far, and the model is returned.
    {streaming}
    key_added
        ``adata.uns[key_added]`` records the settings and a training summary.

    Returns
    -------
    The trained :class:`~perturbkit.models.cpa.CPA`.

    Examples
    --------
    >>> model = pk.tl.train_cpa(adata, drug_encoder="fingerprint")
    >>> pred = model.predict(pk.tl.control_means(adata), drugs={"aspirin": "CC(=O)Oc1ccccc1C(=O)O"})
    """
    architecture = dict(
        drug_encoder=drug_encoder,
        latent_dim=latent_dim,
        hidden=tuple(hidden),
        adversary_hidden=tuple(adversary_hidden),
        doser_hidden=tuple(doser_hidden),
        reg_adversary=reg_adversary,
        penalty_adversary=penalty_adversary,
    )
    training = dict(
        lr=lr,
        adversary_lr=adversary_lr,
        weight_decay=weight_decay,
        adversary_weight_decay=adversary_weight_decay,
        batch_size=batch_size,
        max_epochs=max_epochs,
        patience=patience,
        validation_fraction=validation_fraction,
    )
    model = CPA.from_adata(
        adata,
        drug_key=drug_key,
        control_key=control_key,
        smiles_key=smiles_key,
        dose_key=dose_key,
        cell_key=cell_key,
        layer=layer,
        device=device,
        seed=seed,
        **architecture,
    )
    model.train(
        adata,
        seed=seed,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        resume=resume,
        chunk_rows=chunk_rows,
        buffer_chunks=buffer_chunks,
        max_validation_rows=max_validation_rows,
        **training,
    )
    history = model.history_frame
    column = "train_autoencoder_reconstruction"
    final = float(history[column].dropna().iloc[-1]) if column in history and history[column].notna().any() else None
    adata.uns[key_added] = model.training_record(
        {**model.data_keys, "layer": layer, "seed": seed, **architecture, **training},
        final_train_loss=final,
        n_drugs=len(model.drug_names),
        n_cell_lines=len(model.cell_lines),
    )
    return model
