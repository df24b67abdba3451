"""pk.tl faces of the VAE family: training, traversal, simulation, β selection, tuning, metrics.

See the VAE methods page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import anndata as ad
import pandas as pd

from .._schema import PerturbkitInputError
from ..models._inputs import check_model_and_data, check_trained
from ..models.vae import VAE
from ..models.vae import _analysis as analysis
from ..models.vae._model import DEFAULTS
from ._options import STREAMING_DOC, doc_params, trainer_options


@doc_params(streaming=STREAMING_DOC)
def train_vae(
    adata,
    *,
    kind: Literal["vanilla", "beta", "mmd"] = DEFAULTS.kind,
    latent_dim: int = DEFAULTS.latent_dim,
    beta: float = DEFAULTS.beta,
    lam: float = DEFAULTS.lam,
    hidden: tuple[int, ...] = DEFAULTS.hidden,
    batch_norm: bool = DEFAULTS.batch_norm,
    output: Literal["auto", "sigmoid", "linear"] = "auto",
    layer: str | None = None,
    lr: float = DEFAULTS.lr,
    batch_size: int = DEFAULTS.batch_size,
    max_epochs: int = DEFAULTS.max_epochs,
    patience: int | None = DEFAULTS.patience,
    validation_fraction: float = DEFAULTS.validation_fraction,
    stratify: str | None = None,
    device: str | None = None,
    seed: int | None = 0,
    checkpoint_dir=None,
    checkpoint_every: int = 10,
    resume=None,
    chunk_rows: int | None = None,
    buffer_chunks: int | None = None,
    max_validation_rows: int | None = None,
    key_added: str = "vae",
) -> VAE:
    """Train a variational autoencoder on the profiles and store their latent means.

    Loss ``n_features · MSE + β·KL + λ·MMD`` (the paper's reference scaling): ``kind="vanilla"`` uses β = 1 and no
    MMD; ``"beta"`` the given ``beta``; ``"mmd"`` replaces the KL term by ``lam`` times the MMD (Gaussian kernel)
    between each batch's latent codes and as many draws from N(0, I). Equivalent to
    ``VAE.from_adata(adata, ...).train(adata, ...)``.

    Parameters
    ----------
    adata
        Profiles (rows × features). The paper min-max scales Cell Painting features to [0, 1]
        (``pk.pp.scale(adata, method="minmax")``).
    kind, latent_dim, beta, lam
        Model variant and its weights; the defaults are the paper's (Cell Painting level 5): latent 10, β 0.3
        (``kind="beta"``; the vanilla VAE's KL weight is 1 whatever ``beta``), λ 1e3 (``kind="mmd"``).
    hidden, batch_norm
        Encoder hidden sizes (decoder mirrored; paper 250 for Cell Painting, 500 for L1000) and encoder batch norm.
    output
        ``"sigmoid"`` (data in [0, 1]), ``"linear"``, or ``"auto"``: sigmoid when every value is in [0, 1],
        linear otherwise.
    layer
        Train on ``adata.layers[layer]`` instead of X (recorded with the model).
    lr, batch_size, max_epochs, patience
        Adam learning rate, minibatch size, epoch limit and early-stopping patience (on the validation loss; the
        best epoch's weights are kept). The defaults (up to 300 epochs, patience 30) give small sets of a few hundred
        consensus profiles enough epochs to leave the collapsed start.
    validation_fraction, stratify
        Rows held out for early stopping; ``stratify`` (an obs column such as ``"plate"``) takes that fraction
        of each of its groups.
    device, seed
        ``"auto"|"cpu"|"cuda"`` (None: ``pk.settings.device``); the seed fixes initialisation, the split and
        batching (CPU runs reproducible).
    checkpoint_dir, checkpoint_every, resume
        Write a checkpoint (a loadable model file plus the training state) to ``checkpoint_dir/checkpoint.pt``
        every ``checkpoint_every`` epochs; ``resume=`` that file (or folder) continues the run exactly. Ctrl-C
        ends training with the best weights so far, and the model is returned.
    {streaming}
    key_added
        ``adata.uns[key_added]`` records the settings and a training summary, and
        ``adata.obsm["X_" + key_added]`` receives the latent means.

    Returns
    -------
    The trained :class:`~perturbkit.models.vae.VAE` (``model.history_frame`` has the training curves). After
    training it counts its active latent units (posterior-mean variance > 0.01, Burda et al. 2016):
    ``model.active_units``, ``model.latent_activity`` and ``adata.uns[key_added]["active_units"]``; fewer than
    half active raises a :class:`~perturbkit.models.vae.PosteriorCollapseWarning` naming the fixes.

    Examples
    --------
    >>> pk.pp.scale(adata, method="minmax")
    >>> model = pk.tl.train_vae(adata, kind="beta", beta=0.3)      # latent means in adata.obsm["X_vae"]
    >>> contributions = pk.tl.traversal_contributions(model, groupby="group")
    """
    model = VAE.from_adata(
        adata,
        kind=kind,
        latent_dim=latent_dim,
        beta=beta,
        lam=lam,
        hidden=hidden,
        batch_norm=batch_norm,
        output=output,
        layer=layer,
        device=device,
        seed=seed,
    )
    model.train(
        adata,
        validation_fraction=validation_fraction,
        stratify=stratify,
        lr=lr,
        batch_size=batch_size,
        max_epochs=max_epochs,
        patience=patience,
        seed=seed,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        resume=resume,
        chunk_rows=chunk_rows,
        buffer_chunks=buffer_chunks,
        max_validation_rows=max_validation_rows,
    )
    adata.obsm[f"X_{key_added}"] = model.encode(adata)
    adata.uns[key_added] = model.training_record(
        {
            "kind": kind,
            "latent_dim": int(latent_dim),
            "beta": float(beta),
            "lam": float(lam),
            "hidden": list(hidden),
            "batch_norm": bool(batch_norm),
            "output": model.hparams["output"],
            "seed": seed,
            "lr": float(lr),
            "batch_size": int(batch_size),
            "max_epochs": int(max_epochs),
            "patience": patience,
            "validation_fraction": float(validation_fraction),
            "stratify": stratify,
            "layer": layer,
            "key_added": key_added,
        },
        active_units=model.active_units,
        latent_activity=None if model.latent_activity is None else model.latent_activity.tolist(),
    )
    return model


def latent_traversal(model: VAE, *, feature: int, values: Sequence[float] = (-3, 3), fixed: float = 0.0) -> ad.AnnData:
    """Profiles decoded with latent ``feature`` set to each of ``values`` and every other feature to ``fixed``.

    Parameters
    ----------
    model
        A trained :class:`~perturbkit.models.vae.VAE`.
    feature
        The latent feature traversed (0 … ``latent_dim`` − 1).
    values
        The values it takes, one decoded profile each.
    fixed
        The value of every other latent feature.

    Returns
    -------
    One row per value (obs ``value`` and ``feature``), the decoded profiles in X (data units) and the model's
    features as var; ``obsm['X_vae']`` holds the latent vectors.

    Examples
    --------
    >>> steps = pk.tl.latent_traversal(model, feature=0, values=np.linspace(-3, 3, 7))
    """
    _check_vae(model, "latent_traversal")
    return analysis.latent_traversal(model, feature=feature, values=values, fixed=fixed)


def traversal_contributions(
    model: VAE, *, groupby: str | Sequence[str] | pd.Series, values: tuple[float, float] = (-3, 3), fixed: float = 0.0
) -> pd.DataFrame:
    """How much each latent feature moves each feature group: ``|decode(+3·e_k) − decode(−3·e_k)|``, group means.

    Parameters
    ----------
    model
        A trained :class:`~perturbkit.models.vae.VAE`.
    groupby
        A var column of the training data (e.g. ``"group"``, CellProfiler compartment × channel), or one label per
        feature.
    values
        The low and high values of the traversed feature.
    fixed
        The value of every other latent feature.

    Returns
    -------
    Latent features × groups. Plot with :func:`perturbkit.pl.traversal_heatmap`.

    Examples
    --------
    >>> contributions = pk.tl.traversal_contributions(model, groupby="group")
    >>> pk.pl.traversal_heatmap(contributions)
    """
    _check_vae(model, "traversal_contributions")
    return analysis.traversal_contributions(model, groupby=groupby, values=values, fixed=fixed)


def pca_loadings_by_group(
    adata: ad.AnnData,
    *,
    groupby: str | Sequence[str] | pd.Series,
    n_components: int = 10,
    layer: str | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """|PCA loadings| of the first ``n_components`` averaged by feature group.

    To compare with :func:`traversal_contributions`.

    Parameters
    ----------
    adata
        Profiles (rows × features).
    groupby
        A var column (e.g. ``"group"``) or one label per feature.
    n_components
        Number of principal components.
    layer
        Read the profiles from ``adata.layers[layer]`` instead of X.
    seed
        ``random_state`` of the PCA.

    Returns
    -------
    Components × groups.

    Examples
    --------
    >>> pk.pl.traversal_heatmap(pk.tl.pca_loadings_by_group(adata, groupby="group"))
    """
    return analysis.pca_loadings_by_group(adata, groupby=groupby, n_components=n_components, layer=layer, seed=seed)


def simulate(model: VAE, *, n: int, seed: int = 0) -> ad.AnnData:
    """``n`` profiles decoded from draws of the prior N(0, I).

    Parameters
    ----------
    model
        A trained :class:`~perturbkit.models.vae.VAE`.
    n
        How many profiles.
    seed
        Seed of the prior draws.

    Returns
    -------
    The simulated profiles (data units, the model's features as var), the draws in ``obsm['X_vae']``.

    Examples
    --------
    >>> fake = pk.tl.simulate(model, n=500)
    """
    _check_vae(model, "simulate")
    return analysis.simulate(model, n, seed=seed)


def _check_vae(model, function: str) -> None:
    if not isinstance(model, VAE):
        hint = " (these functions take the model, not the data)" if hasattr(model, "var_names") else ""
        raise PerturbkitInputError(
            f"pk.tl.{function} needs a trained VAE as its first argument, got "
            f"a {type(model).__name__}{hint}; train one with pk.tl.train_vae(adata)."
        )
    check_trained(model)


def _check_model_and_data(adata, model, function: str) -> None:
    """Refuse swapped, missing or untrained arguments (the data comes first, the model is ``model=``)."""
    check_model_and_data(
        adata, model, function=f"pk.tl.{function}", call=f"pk.tl.{function}(adata, model=vae)", model_class=VAE
    )
    check_trained(model)


_SEARCH_DOC = """
    device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; ``None`` means ``pk.settings.device``.
    layer
        Read the profiles from ``adata.layers[layer]`` instead of X.
"""


@doc_params(shared=_SEARCH_DOC)
def select_beta(
    adata: ad.AnnData,
    *,
    betas: Sequence[float] = (0.01, 0.1, 0.3, 1.0, 3.0, 10.0),
    kind: Literal["beta", "vanilla", "mmd"] = "beta",
    seed: int = 0,
    device: str | None = None,
    train_options: Mapping[str, Any] | None = None,
    layer: str | None = None,
) -> pd.DataFrame:
    """Train one VAE per β and score simulated profiles against the data by Hausdorff distance.

    For each β a VAE is trained on ``adata``, as many profiles as ``adata`` has rows are decoded from the prior, and
    the symmetric Hausdorff distance (the larger of both directed distances) between the data and the simulation is
    computed. The best β has the smallest.

    Parameters
    ----------
    adata
        Profiles (rows × features), scaled as for :func:`train_vae`.
    betas
        The β values compared.
    kind
        The VAE variant trained (``"beta"``: the KL weight is β).
    seed
        Seeds every training run and the prior draws.
    train_options
        Further keyword arguments of :func:`train_vae` (e.g. ``{"latent_dim": 10, "max_epochs": 50}``); its
        defaults apply to the rest.
    {shared}

    Returns
    -------
    Columns ``beta``, ``hausdorff``, ``hausdorff_data_to_simulated``, ``hausdorff_simulated_to_data``,
    ``best_validation_loss`` and ``n_epochs``; ``attrs['best_beta']`` is the chosen β.

    Examples
    --------
    >>> curve = pk.tl.select_beta(adata, betas=[0.1, 0.3, 1, 3])
    >>> curve.attrs["best_beta"]
    """
    options = trainer_options(
        train_options,
        function="pk.tl.select_beta",
        trainer="pk.tl.train_vae",
        reserved=("beta", "kind", "seed", "layer"),
        device=device,
    )
    return analysis.select_beta(adata, betas=betas, kind=kind, seed=seed, layer=layer, **options)


@doc_params(shared=_SEARCH_DOC)
def tune_vae(
    adata: ad.AnnData,
    *,
    n_trials: int = 20,
    kind: Literal["vanilla", "beta", "mmd"] = "vanilla",
    timeout: float | None = None,
    lr: tuple[float, float] = (1e-4, 1e-2),
    batch_sizes: Sequence[int] = (32, 64, 128, 256, 512),
    latent_dims: tuple[int, int] = (5, 150),
    batch_norm: Sequence[bool] = (True, False),
    validation_fraction: float = 0.1,
    seed: int | None = 0,
    device: str | None = None,
    train_options: Mapping[str, Any] | None = None,
    layer: str | None = None,
    storage: str | None = None,
    study_name: str | None = None,
) -> pd.DataFrame:
    """Bayesian hyperparameter search (Optuna TPE, seeded) over learning rate, batch size, latent size, batch norm.

    Each trial trains a VAE on the same train/validation split and is scored by its best validation loss (lower is
    better). Optuna's log shows at ``pk.settings.verbosity`` 2 or more. With ``storage``, every process (on any
    machine) running the same call shares one study, as in :func:`tune` (``tune(adata, model="vae")`` searches
    the same space with any of :func:`train_vae`'s options).

    Parameters
    ----------
    adata
        Profiles (rows × features), scaled as for :func:`train_vae`.
    n_trials
        The study's trial budget: without ``storage`` the trials this call runs; with it, the total over every
        worker (each stops once the study's complete and running trials reach it; ``0`` only reads the study).
    kind
        The VAE variant.
    timeout
        This worker stops starting trials after this many seconds.
    lr
        (low, high) of the log-uniform learning-rate range.
    batch_sizes
        The batch sizes to choose from (paper: 32–512).
    latent_dims
        (low, high) of the latent size (paper: 5–150).
    batch_norm
        The encoder batch-norm settings to try.
    validation_fraction
        Rows held out to score the trials (must be > 0).
    seed
        Seeds the sampler and every trial's training.
    train_options
        Further keyword arguments of :func:`train_vae` for every trial (e.g. ``{"beta": 0.3, "max_epochs": 50}``);
        the searched settings may not be among them.
    {shared}
    storage
        An SQLAlchemy database URL holding a study shared by workers: ``"sqlite:///sweep.db"`` (the processes of
        one machine) or ``"postgresql+psycopg2://user:pw@host/db"`` (many machines). The sampler's random draws for
        trial *k* come from ``(seed, k)``, so workers never repeat each other's random points; with several
        workers the trial order depends on timing (not bitwise reproducible; each trial's training is).
    study_name
        The shared study's name (only with ``storage``); default ``"perturbkit-tune-vae-<kind>"``. Joining a study
        made with other ranges, options, seed or data raises an error naming the differences.

    Returns
    -------
    One row per trial of the study (every worker's): ``trial``, ``lr``, ``batch_size``, ``latent_dim``,
    ``batch_norm``, ``value`` (best validation loss), ``n_epochs``, ``state``, ``worker`` (``host:pid``);
    ``attrs['best_params']`` holds the best trial's settings, ``attrs['best_value']`` its value.

    Examples
    --------
    >>> trials = pk.tl.tune_vae(adata, n_trials=30, kind="beta", train_options={"beta": 0.3})
    >>> trials.attrs["best_params"]

    Four processes sharing one 40-trial study (run the same line in each):

    >>> pk.tl.tune_vae(adata, n_trials=40, storage="sqlite:///vae.db", study_name="vae-cp")
    """
    options = trainer_options(
        train_options,
        function="pk.tl.tune_vae",
        trainer="pk.tl.train_vae",
        reserved=("kind", "seed", "layer", "validation_fraction", "lr"),
        device=device,
    )
    return analysis.tune_vae(
        adata,
        n_trials=n_trials,
        kind=kind,
        seed=seed,
        timeout=timeout,
        lr=lr,
        batch_sizes=batch_sizes,
        latent_dims=latent_dims,
        batch_norm=batch_norm,
        validation_fraction=validation_fraction,
        layer=layer,
        storage=storage,
        study_name=study_name,
        **options,
    )


def vae_reconstruction_metrics(adata: ad.AnnData, *, model: VAE, layer: str | None = None) -> pd.DataFrame:
    """Per-sample reconstruction MSE and earth mover's distance (input against the decoded latent mean).

    Parameters
    ----------
    adata
        Profiles; their features are matched to the model's by name (GeneMismatchError when some are missing).
    model
        A trained :class:`~perturbkit.models.vae.VAE`.
    layer
        Read the profiles from ``adata.layers[layer]`` instead of X.

    Returns
    -------
    pandas.DataFrame
        Indexed by obs name, columns ``mse`` and ``emd``; ``attrs['summary']`` is ``{metric: {"mean", "median",
        "q05", "q95"}}`` (the 5–95% range).

    Examples
    --------
    >>> pk.tl.vae_reconstruction_metrics(test, model=model).attrs["summary"]
    """
    _check_model_and_data(adata, model, "vae_reconstruction_metrics")
    return analysis.reconstruction_metrics(model, adata, layer=layer)


def vae_latent_correlation(adata: ad.AnnData, *, model: VAE, layer: str | None = None) -> pd.DataFrame:
    """Pearson correlation between the latent features of ``adata``'s latent means.

    Off-diagonal values near 0 indicate a disentangled latent space; constant latent features give NaN.

    Parameters
    ----------
    adata
        Profiles; their features are matched to the model's by name.
    model
        A trained :class:`~perturbkit.models.vae.VAE`.
    layer
        Read the profiles from ``adata.layers[layer]`` instead of X.

    Returns
    -------
    Latent × latent correlations. Plot with :func:`perturbkit.pl.latent_correlation_heatmap`.

    Examples
    --------
    >>> pk.pl.latent_correlation_heatmap(pk.tl.vae_latent_correlation(adata, model=model))
    """
    _check_model_and_data(adata, model, "vae_latent_correlation")
    return analysis.latent_correlation(model, adata, layer=layer)


def vae_feature_reconstruction(
    adata: ad.AnnData, *, model: VAE, groupby: str | Sequence[str] | None = None, layer: str | None = None
) -> pd.DataFrame:
    """Per-feature reconstruction MSE next to the feature's variance (and its group).

    Parameters
    ----------
    adata
        Profiles; their features are matched to the model's by name.
    model
        A trained :class:`~perturbkit.models.vae.VAE`.
    groupby
        A var column of ``adata`` or of the training data, or one label per feature: adds the ``group`` column.
    layer
        Read the profiles from ``adata.layers[layer]`` instead of X.

    Returns
    -------
    One row per model feature (index ``feature``): ``mse``, ``variance`` and, with ``groupby``, ``group``.

    Examples
    --------
    >>> per_feature = pk.tl.vae_feature_reconstruction(test, model=model, groupby="compartment")
    """
    _check_model_and_data(adata, model, "vae_feature_reconstruction")
    return analysis.feature_reconstruction(model, adata, groupby=groupby, layer=layer)
