"""pk.tl face of scGen (see the scGen methods page)."""

from __future__ import annotations

from .._schema import OBS_KEYS
from ..models.scgen import ScGen
from ..models.scgen._model import DEFAULTS
from ._options import STREAMING_DOC, doc_params


@doc_params(streaming=STREAMING_DOC)
def train_scgen(
    adata,
    *,
    cell_key: str = OBS_KEYS.cell_key,
    drug_key: str = OBS_KEYS.drug_key,
    control_key: str | None = OBS_KEYS.control_key,
    layer: str | None = None,
    latent_dim: int = DEFAULTS.latent_dim,
    hidden: tuple[int, ...] = DEFAULTS.hidden,
    dropout: float = DEFAULTS.dropout,
    kl_weight: float = DEFAULTS.kl_weight,
    lr: float = DEFAULTS.lr,
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
    key_added: str = "scgen",
) -> ScGen:
    """Train scGen: a VAE of profiles whose latent arithmetic predicts drug responses and other cell lines.

    Equivalent to ``ScGen.from_adata(adata, ...).train(adata, ...)``. The VAE is trained on every row (controls and
    treated); then the latent means per (cell line, condition) are stored with the model, and
    :meth:`~perturbkit.models.scgen.ScGen.predict` adds a latent shift to a profile's latent mean and decodes it:
    a drug's shift (treated − control, balanced over the training cell types) with ``drugs=``, or the shift between
    two cell lines (over their shared drugs) with ``target=``.

    Parameters
    ----------
    adata
        Profiles (rows × genes) in log scale, used as they are: log-normalised single cells
        (``sc.pp.normalize_total`` then ``sc.pp.log1p``) or bulk z-scores. obs ``cell_key``, ``drug_key`` and
        ``control_key``.
    cell_key, drug_key, control_key
        obs columns of the cell line (type), the drug, and the boolean vehicle-control flag. ``control_key=None``:
        no row is a control (bulk drug profiles for the cross-cell use).
    layer
        Read ``adata.layers[layer]`` instead of X (recorded with the model).
    latent_dim, hidden, dropout
        Latent size (reference 100), encoder hidden sizes (reference 800, 800; the decoder mirrors them), dropout
        after every hidden layer (reference 0.2). Batch norm and LeakyReLU follow every hidden layer.
    kl_weight
        Weight of the KL divergence against the summed squared reconstruction error (reference 5e-5).
    lr, batch_size, max_epochs, patience, validation_fraction
        Adam learning rate and minibatch size, at most ``max_epochs`` epochs, early stopping after ``patience``
        epochs without improvement of the loss on a random ``validation_fraction`` of the rows (reference 1e-3, 32,
        100, 25, 0.1).
    device, seed
        ``"auto"|"cpu"|"cuda"`` (None: ``pk.settings.device``); the seed makes CPU runs reproducible.
    checkpoint_dir, checkpoint_every, resume
        Write a checkpoint to ``checkpoint_dir/checkpoint.pt`` every ``checkpoint_every`` epochs; ``resume=`` that
        file (or folder) continues the run exactly. Ctrl-C ends training with the best weights so far.
    {streaming}
    key_added
        ``adata.uns[key_added]`` records the settings and a training summary.

    Returns
    -------
    The trained :class:`~perturbkit.models.scgen.ScGen`.

    Examples
    --------
    A cell type held out: train without its stimulated cells, predict them from its control cells.

    >>> held = (adata.obs["cell_line"] == "CD4T") & ~adata.obs["control"]
    >>> model = pk.tl.train_scgen(adata[~held].copy())
    >>> controls = adata[(adata.obs["cell_line"] == "CD4T") & adata.obs["control"]]
    >>> pred = model.predict(controls, drugs=["stim"])

    Across cell lines (bulk drug profiles): a drug's profile in MCF7 from its profile in PC3.

    >>> model = pk.tl.train_scgen(adata[adata.obs["drug"].isin(train_drugs)].copy())
    >>> pred = model.predict(adata, target="MCF7", sources=["PC3"])
    """
    architecture = dict(latent_dim=latent_dim, hidden=tuple(hidden), dropout=dropout, kl_weight=kl_weight)
    training = dict(
        lr=lr,
        batch_size=batch_size,
        max_epochs=max_epochs,
        patience=patience,
        validation_fraction=validation_fraction,
    )
    model = ScGen.from_adata(
        adata,
        cell_key=cell_key,
        drug_key=drug_key,
        control_key=control_key,
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
    adata.uns[key_added] = model.training_record(
        {**model.data_keys, "layer": layer, "seed": seed, **architecture, **training},
        n_cell_lines=len(model.cell_lines),
        n_drugs=len(model.drug_names),
    )
    return model
