"""pk.tl faces of the VAE family (methods.md §2): training, traversal, simulation, β selection, tuning, controls."""

from __future__ import annotations

import pandas as pd

from .._schema import PerturbkitInputError, storable
from ..models._inputs import check_model_and_data, check_trained
from ..models.vae import VAE
from ..models.vae import _analysis as analysis


def train_vae(
    adata,
    *,
    kind: str = "vanilla",
    latent_dim: int = 10,
    beta: float = 1.0,
    lam: float = 1000.0,
    hidden=(250,),
    batch_norm: bool = True,
    device: str = "auto",
    seed: int = 0,
    lr: float = 1e-3,
    batch_size: int = 96,
    max_epochs: int = 100,
    patience: int | None = 10,
    validation_fraction: float = 0.1,
    stratify: str | None = None,
    output: str = "auto",
    layer: str | None = None,
    key_added: str = "X_vae",
    checkpoint_dir=None,
    checkpoint_every: int = 10,
    resume=None,
) -> VAE:
    """Train a variational autoencoder on the profiles and store their latent means.

    Loss ``n_features · MSE + β·KL + λ·MMD`` (the paper's reference scaling): ``kind="vanilla"`` uses β = 1 and no
    MMD; ``"beta"`` the given ``beta``; ``"mmd"`` replaces the KL term by ``lam`` times the MMD (Gaussian kernel)
    between each batch's latent codes and as many draws from N(0, I).

    Parameters
    ----------
    adata
        Profiles (rows × features). The paper min-max scales Cell Painting features to [0, 1]
        (``pk.pp.scale(adata, method="minmax")``).
    kind, latent_dim, beta, lam
        Model variant and its weights. Paper (Cell Painting level 5): latent 10, β 0.3, λ 1e3.
    hidden, batch_norm
        Encoder hidden sizes (decoder mirrored; paper 250 for Cell Painting, 500 for L1000) and encoder batch norm.
    device, seed
        ``"auto"|"cpu"|"cuda"``; the seed fixes initialisation, the split and batching (CPU runs reproducible).
    lr, batch_size, max_epochs, patience
        Adam learning rate, minibatch size, epoch limit and early-stopping patience (on the validation loss; the
        best epoch's weights are kept).
    validation_fraction, stratify
        Rows held out for early stopping; ``stratify`` (an obs column such as ``"plate"``) takes that fraction
        of each of its groups.
    output
        ``"sigmoid"`` (data in [0, 1]), ``"linear"``, or ``"auto"``: sigmoid when every value is in [0, 1],
        linear otherwise.
    layer
        Train on ``adata.layers[layer]`` instead of X.
    key_added
        ``adata.obsm[key_added]`` receives the latent means; settings and a training summary go to
        ``adata.uns['vae']``.
    checkpoint_dir, checkpoint_every, resume
        Write a checkpoint (a loadable model file plus the training state) to ``checkpoint_dir/checkpoint.pt``
        every ``checkpoint_every`` epochs; ``resume=`` that file (or folder) continues the run exactly. Ctrl-C
        ends training with the best weights so far, and the model is returned.

    Returns
    -------
    The trained :class:`~perturbkit.models.vae.VAE` (``model.history_frame`` has the training curves).

    Examples
    --------
    >>> pk.pp.scale(adata, method="minmax")
    >>> model = pk.tl.train_vae(adata, kind="beta", beta=0.3)
    >>> contributions = pk.tl.traversal_contributions(model, groupby="group")
    """
    model = VAE.from_adata(adata, kind=kind, latent_dim=latent_dim, beta=beta, lam=lam, hidden=hidden,
                           batch_norm=batch_norm, output=output, device=device, seed=seed, lr=lr,
                           batch_size=batch_size, max_epochs=max_epochs, patience=patience,
                           validation_fraction=validation_fraction, stratify=stratify, layer=layer,
                           checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, resume=resume)
    adata.obsm[key_added] = model.encode(adata, layer=layer)
    history = model.history_frame
    has_val = "validation_loss" in history and history["validation_loss"].notna().any()
    adata.uns["vae"] = storable({
        "params": {"kind": kind, "latent_dim": int(latent_dim), "beta": float(beta), "lam": float(lam),
                   "hidden": list(hidden), "batch_norm": bool(batch_norm), "output": model.hparams["output"],
                   "seed": seed, "lr": float(lr), "batch_size": int(batch_size), "max_epochs": int(max_epochs),
                   "patience": patience, "validation_fraction": float(validation_fraction), "stratify": stratify,
                   "layer": layer, "key_added": key_added},
        "device": str(model.device),
        "n_epochs": len(history),
        "interrupted": bool(model.interrupted),
        "final_train_loss": float(history["train_loss"].iloc[-1]) if len(history) else None,
        "best_validation_loss": float(history["validation_loss"].min()) if has_val else None,
    })
    return model


def latent_traversal(model: VAE, *, feature: int, values=(-3, 3), fixed: float = 0.0):
    """Profiles decoded with latent ``feature`` set to each of ``values``, the others to ``fixed``.

    Returns an AnnData with one row per value (obs ``value``), var = the model's features.
    """
    _check_vae(model, "latent_traversal")
    return analysis.latent_traversal(model, feature=feature, values=values, fixed=fixed)


def traversal_contributions(model: VAE, *, groupby, values=(-3, 3), fixed: float = 0.0) -> pd.DataFrame:
    """``|decode(+3·e_k) − decode(−3·e_k)|`` averaged by feature group, for every latent feature ``k``.

    ``groupby`` is a var column of the training data (e.g. ``"group"``, CellProfiler compartment × channel) or one
    label per feature. Returns latent features × groups.
    """
    _check_vae(model, "traversal_contributions")
    return analysis.traversal_contributions(model, groupby=groupby, values=values, fixed=fixed)


def pca_loadings_by_group(adata, *, groupby, n_components: int = 10, layer=None, seed: int = 0) -> pd.DataFrame:
    """|PCA loadings| of the first ``n_components`` averaged by feature group (components × groups), for
    comparison with :func:`traversal_contributions`."""
    return analysis.pca_loadings_by_group(adata, groupby=groupby, n_components=n_components, layer=layer, seed=seed)


def simulate(model: VAE, n: int, *, seed: int = 0):
    """``n`` profiles decoded from draws of the prior N(0, I), as an AnnData (draws in ``obsm['X_vae']``)."""
    _check_vae(model, "simulate")
    return analysis.simulate(model, n, seed=seed)


def _check_vae(model, function: str) -> None:
    if not isinstance(model, VAE):
        hint = " (these functions take the model, not the data)" if hasattr(model, "var_names") else ""
        raise PerturbkitInputError(f"pk.tl.{function} needs a trained VAE as its first argument, got "
                                   f"a {type(model).__name__}{hint}; train one with pk.tl.train_vae(adata).")
    check_trained(model)


def _model_and_data(adata, model, function: str):
    """``(adata, model)`` after refusing swapped, missing or untrained arguments (the data comes first)."""
    check_model_and_data(adata, model, function=f"pk.tl.{function}", call=f"pk.tl.{function}(adata, model=vae)",
                         model_class=VAE)
    check_trained(model)
    return adata, model


select_beta = analysis.select_beta
tune_vae = analysis.tune_vae


def vae_shuffled_control(adata, *, kind: str = "vanilla", seed: int = 0, layer=None, **train_options) -> pd.DataFrame:
    """Training curves of the same VAE on real and on column-shuffled data (columns ``data``, ``epoch``,
    ``train_loss``, ``validation_loss``, ...); ``**train_options`` as in :func:`train_vae`."""
    return analysis.shuffled_control(adata, kind=kind, seed=seed, layer=layer, **train_options)


def vae_reconstruction_metrics(adata, model: VAE | None = None, *, layer=None) -> pd.DataFrame:
    """Per-sample reconstruction MSE and earth mover's distance (``attrs['summary']`` has the 5–95% range).

    ``adata``'s features are matched to the model's by name (GeneMismatchError when some are missing).
    """
    adata, model = _model_and_data(adata, model, "vae_reconstruction_metrics")
    return analysis.reconstruction_metrics(model, adata, layer=layer)


def vae_latent_correlation(adata, model: VAE | None = None, *, layer=None) -> pd.DataFrame:
    """Pearson correlation between the latent features of ``adata``'s latent means (latent × latent); features
    are matched to the model's by name."""
    adata, model = _model_and_data(adata, model, "vae_latent_correlation")
    return analysis.latent_correlation(model, adata, layer=layer)


def vae_feature_reconstruction(adata, model: VAE | None = None, *, groupby=None, layer=None) -> pd.DataFrame:
    """Per-feature reconstruction MSE vs feature variance, with the feature's group (one row per model feature;
    ``adata``'s features are matched to the model's by name)."""
    adata, model = _model_and_data(adata, model, "vae_feature_reconstruction")
    return analysis.feature_reconstruction(model, adata, groupby=groupby, layer=layer)
