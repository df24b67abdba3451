"""What the paper does with a trained VAE: traversal, simulation, β selection, tuning, controls and metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..._schema import PerturbkitInputError, check_finite, dense_matrix
from ...train._sweep import Dimension, sweep
from ._model import VAE, check_kind

# ----------------------------------------------------------------------------------------------- feature groups


def feature_groups(groupby, *, var: pd.DataFrame, var_names) -> pd.Series:
    """Group label per feature: a column of ``var``, or labels (array, or a Series indexed by feature name)."""
    var_names = pd.Index(var_names)
    if isinstance(groupby, str):
        if groupby not in var.columns:
            raise PerturbkitInputError(
                f"groupby={groupby!r} is not a feature (var) column; known columns: {list(var.columns)}. Pass a "
                f"column of the training data's var (e.g. 'group' from pk.io.parse_cellprofiler_features) or the "
                f"labels themselves."
            )
        labels = var[groupby].reindex(var_names)
    elif isinstance(groupby, pd.Series) and not isinstance(groupby.index, pd.RangeIndex):
        labels = groupby.copy()
        labels.index = labels.index.astype(str)
        labels = labels.reindex(var_names)
    else:
        values = np.asarray(groupby)
        if values.ndim != 1 or len(values) != len(var_names):
            raise PerturbkitInputError(
                f"groupby labels must have one entry per feature ({len(var_names)}), got shape {values.shape}."
            )
        labels = pd.Series(values, index=var_names)
    if labels.isna().any():
        missing = labels.index[labels.isna()][:5].tolist()
        raise PerturbkitInputError(f"{int(labels.isna().sum())} features have no group label (e.g. {missing}).")
    return labels.astype(str)


def _mean_by_group(values: np.ndarray, labels: pd.Series) -> pd.DataFrame:
    """Average ``values`` (rows × features) over the features of each group; columns = sorted groups."""
    frame = pd.DataFrame(values, columns=labels.index)
    return frame.T.groupby(labels.to_numpy(), sort=True).mean().T


# ---------------------------------------------------------------------------------------------------- traversal


def _check_feature(model: VAE, feature) -> int:
    k = int(feature)
    if not 0 <= k < model.latent_dim:
        raise PerturbkitInputError(f"feature={feature} is not a latent feature; use 0..{model.latent_dim - 1}.")
    return k


def latent_traversal(model: VAE, *, feature: int, values=(-3, 3), fixed: float = 0.0):
    """Decode latent vectors that set latent ``feature`` to each of ``values`` and every other feature to ``fixed``.

    Returns
    -------
    AnnData with one row per value (obs ``value`` and ``feature``), the decoded profiles in X (data units) and the
    model's features (and their stored annotations) as var; ``obsm['X_vae']`` holds the latent vectors.
    """
    import anndata as ad

    k = _check_feature(model, feature)
    values = np.atleast_1d(np.asarray(values, dtype=np.float32))
    Z = np.full((len(values), model.latent_dim), fixed, dtype=np.float32)
    Z[:, k] = values
    obs = pd.DataFrame({"value": values.astype(float), "feature": k}, index=[f"latent{k}={v:g}" for v in values])
    out = ad.AnnData(model.inverse_transform(Z), obs=obs, var=model.var_table.copy())
    out.obsm["X_vae"] = Z
    return out


def traversal_contributions(model: VAE, *, groupby, values=(-3, 3), fixed: float = 0.0) -> pd.DataFrame:
    """How much each latent feature moves each feature group: ``|decode(hi·e_k) − decode(lo·e_k)|``, group means.

    Parameters
    ----------
    groupby
        A column of the training data's var (e.g. ``"group"``: CellProfiler compartment × channel), or one label
        per feature (array, or a Series indexed by feature name).
    values
        ``(lo, hi)`` latent values (paper: −3 and +3); other latent features are ``fixed``.

    Returns
    -------
    DataFrame with one row per latent feature (index ``latent_feature``) and one column per group.
    """
    labels = feature_groups(groupby, var=model.var_table, var_names=model.var_names)
    lo, hi = _low_high(values)
    eye = np.eye(model.latent_dim, dtype=np.float32)
    base = np.full_like(eye, fixed)
    diff = np.abs(
        model.inverse_transform(np.where(eye > 0, hi, base)) - model.inverse_transform(np.where(eye > 0, lo, base))
    )
    out = _mean_by_group(diff, labels)
    out.index = pd.RangeIndex(model.latent_dim, name="latent_feature")
    out.columns.name = "group"
    return out


def _low_high(values):
    values = np.asarray(values, dtype=np.float32).ravel()
    if len(values) != 2:
        raise PerturbkitInputError(f"values must be two latent values (lo, hi), got {values.tolist()}.")
    return float(values[0]), float(values[1])


def pca_loadings_by_group(adata, *, groupby, n_components: int = 10, layer=None, seed: int = 0) -> pd.DataFrame:
    """|PCA loadings| averaged by feature group, the paper's comparison for traversal contributions.

    Returns a DataFrame with one row per component (``PC1``, ...) and one column per group.
    """
    from sklearn.decomposition import PCA

    X = dense_matrix(adata, layer)
    check_finite(X)
    labels = feature_groups(groupby, var=adata.var, var_names=adata.var_names.astype(str))
    n_components = int(min(n_components, *X.shape))
    pca = PCA(n_components=n_components, random_state=seed).fit(X)
    out = _mean_by_group(np.abs(pca.components_), labels)
    out.index = pd.Index([f"PC{i + 1}" for i in range(n_components)], name="component")
    out.columns.name = "group"
    return out


# --------------------------------------------------------------------------------------------------- simulation


def simulate(model: VAE, n: int, *, seed: int = 0):
    """``n`` profiles decoded from prior draws z ~ N(0, I).

    An AnnData: obs ``source`` = "simulated", ``obsm['X_vae']`` = the draws, var = the model's features.
    """
    import anndata as ad

    Z = model.sample_latent(n, seed=seed)
    obs = pd.DataFrame({"source": ["simulated"] * len(Z)}, index=[f"simulated_{i}" for i in range(len(Z))])
    out = ad.AnnData(model.inverse_transform(Z), obs=obs, var=model.var_table.copy())
    out.obsm["X_vae"] = Z
    return out


def hausdorff(A: np.ndarray, B: np.ndarray) -> tuple[float, float, float]:
    """Symmetric Hausdorff distance between the row sets ``A`` and ``B`` and the two directed ones."""
    from scipy.spatial.distance import directed_hausdorff

    ab = directed_hausdorff(A, B, seed=0)[0]
    ba = directed_hausdorff(B, A, seed=0)[0]
    return max(ab, ba), ab, ba


def _matrix(adata, layer):
    X = dense_matrix(adata, layer)
    check_finite(X, where="adata.X" if layer is None else f"adata.layers[{layer!r}]")
    return X


def select_beta(
    adata, *, betas=(0.01, 0.1, 0.3, 1.0, 3.0, 10.0), kind: str = "beta", seed: int = 0, layer=None, **train_options
) -> pd.DataFrame:
    """Train one VAE per β and score the simulated data against the training data by Hausdorff distance.

    For each β a VAE is trained on ``adata`` (``**train_options`` as in :func:`perturbkit.tl.train_vae`), as many
    profiles as ``adata`` has rows are decoded from the prior, and the symmetric Hausdorff distance
    (max of both directed distances) between the data and the simulation is computed. The best β has the smallest.

    Returns
    -------
    DataFrame with columns ``beta``, ``hausdorff``, ``hausdorff_data_to_simulated``,
    ``hausdorff_simulated_to_data``, ``best_validation_loss``, ``n_epochs``; ``attrs['best_beta']`` is the chosen β.
    """
    check_kind(kind)
    betas = [float(b) for b in np.atleast_1d(betas)]
    if not betas:
        raise PerturbkitInputError("betas is empty; pass the β values to compare, e.g. [0.1, 0.3, 1, 3].")
    X = _matrix(adata, layer)
    rows = []
    for beta in betas:
        model = VAE.build_and_train(adata, kind=kind, beta=beta, seed=seed, layer=layer, **train_options)
        simulated = model.sample(len(X), seed=seed)
        h, ab, ba = hausdorff(X, simulated)
        history = model.history_frame
        monitor = "validation_loss" if "validation_loss" in history else "train_loss"
        rows.append(
            {
                "beta": beta,
                "hausdorff": h,
                "hausdorff_data_to_simulated": ab,
                "hausdorff_simulated_to_data": ba,
                "best_validation_loss": float(history[monitor].min()),
                "n_epochs": len(history),
            }
        )
    out = pd.DataFrame(rows)
    out.attrs["best_beta"] = float(out.loc[out["hausdorff"].idxmin(), "beta"])
    return out


# ------------------------------------------------------------------------------------------------------- tuning


def tune_vae(
    adata,
    *,
    n_trials: int = 20,
    kind: str = "vanilla",
    seed: int | None = 0,
    timeout: float | None = None,
    lr=(1e-4, 1e-2),
    batch_sizes=(32, 64, 128, 256, 512),
    latent_dims=(5, 150),
    batch_norm=(True, False),
    validation_fraction: float = 0.1,
    layer=None,
    storage: str | None = None,
    study_name: str | None = None,
    **train_options,
) -> pd.DataFrame:
    """Bayesian hyperparameter search (Optuna TPE, seeded) over learning rate, batch size, latent size, batch norm.

    Each trial trains a VAE (``**train_options`` as in :func:`perturbkit.tl.train_vae`, e.g. ``beta``, ``lam``,
    ``max_epochs``) on the same train/validation split and scores it by its best validation loss (lower is
    better). Optuna's log is silenced unless ``pk.settings.verbosity > 1``. The study is made and run by
    :func:`perturbkit.train._sweep.sweep`, as for :func:`perturbkit.tl.tune`.

    Parameters
    ----------
    lr
        (low, high) of the log-uniform learning-rate range.
    batch_sizes
        The batch sizes to choose from (paper: 32–512).
    latent_dims
        (low, high) of the latent size (paper: 5–150).
    batch_norm
        The encoder batch-norm settings to try.
    n_trials, storage, study_name
        The study's budget, and where it lives: in memory (``storage=None``: this call runs ``n_trials`` trials) or
        in a database shared by every worker running the same call (``n_trials`` is then the study's total), as
        in :func:`perturbkit.tl.tune`; ``study_name`` defaults to ``"perturbkit-tune-vae-<kind>"``.

    Returns
    -------
    DataFrame, one row per trial of the study: ``trial``, ``lr``, ``batch_size``, ``latent_dim``, ``batch_norm``,
    ``value`` (best validation loss), ``n_epochs``, ``state``, ``worker``; ``attrs['best_params']`` holds the best
    trial's settings.
    """
    check_kind(kind)
    if validation_fraction <= 0:
        raise PerturbkitInputError("tune_vae scores trials on validation rows; validation_fraction must be > 0.")
    for banned in ("latent_dim", "batch_size", "batch_norm"):
        if banned in train_options:
            raise PerturbkitInputError(f"{banned} is searched by tune_vae; set its range with the tune_vae argument.")
    space = [
        Dimension("lr", "log", float(lr[0]), float(lr[1])),
        Dimension("batch_size", "choice", choices=tuple(int(b) for b in batch_sizes)),
        Dimension("latent_dim", "int", int(latent_dims[0]), int(latent_dims[1])),
        Dimension("batch_norm", "choice", choices=tuple(bool(b) for b in batch_norm)),
    ]

    def train_and_score(params):
        model = VAE.build_and_train(
            adata, kind=kind, seed=seed, layer=layer, validation_fraction=validation_fraction, **params, **train_options
        )
        history = model.history_frame
        return float(history["validation_loss"].min()), len(history)

    return sweep(
        train_and_score,
        space=space,
        n_trials=n_trials,
        storage=storage,
        study_name=study_name,
        seed=seed,
        timeout=timeout,
        default_name=f"perturbkit-tune-vae-{kind}",
        adata=adata,
        validation_fraction=validation_fraction,
        study_settings={
            "model": "vae",
            "kind": kind,
            "layer": layer,
            "options": {k: v for k, v in train_options.items() if k != "device"},
        },
    )


# ----------------------------------------------------------------------------------------------------- controls


def shuffle_columns(X: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Permute each column of ``X`` independently (keeps every feature's distribution, breaks their relations)."""
    rng = np.random.default_rng(seed)
    return np.take_along_axis(X, rng.random(X.shape).argsort(axis=0), axis=0)


def shuffled_control(adata, *, kind: str = "vanilla", seed: int = 0, layer=None, **train_options) -> pd.DataFrame:
    """Train the same VAE on the real profiles and on column-shuffled profiles (each feature permuted).

    Both runs use the same settings and the same train/validation rows. A model that learns real structure
    reaches a lower loss on the real data.

    Returns
    -------
    DataFrame of both training curves: ``data`` ("real" / "shuffled"), ``epoch``, ``train_loss``,
    ``validation_loss`` and the loss parts (``train_reconstruction``, ``train_kl``, ``train_mmd``, ...).
    """
    import anndata as ad

    check_kind(kind)
    X = _matrix(adata, layer)
    shuffled = ad.AnnData(shuffle_columns(X, seed=seed), obs=adata.obs.copy(), var=adata.var.copy())
    real = ad.AnnData(X, obs=adata.obs.copy(), var=adata.var.copy())
    frames = []
    for name, data in (("real", real), ("shuffled", shuffled)):
        model = VAE.build_and_train(data, kind=kind, seed=seed, **train_options)
        history = model.history_frame.drop(columns=["stage"], errors="ignore")
        history.insert(0, "data", name)
        frames.append(history)
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------------------------------------------ metrics


def wasserstein_rows(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Earth mover's distance between the value distributions of each row of ``A`` and the same row of ``B``.

    Equal-size samples with equal weights: the mean absolute difference of the sorted values (identical to
    ``scipy.stats.wasserstein_distance`` row by row, vectorised).
    """
    return np.mean(np.abs(np.sort(A, axis=1) - np.sort(B, axis=1)), axis=1)


def reconstruction_metrics(model: VAE, adata, *, layer=None) -> pd.DataFrame:
    """Per-sample reconstruction MSE and earth mover's distance (input vs decoded latent mean).

    Returns
    -------
    DataFrame indexed by obs name with columns ``mse`` and ``emd``; ``attrs['summary']`` is a dict
    ``{metric: {"mean", "median", "q05", "q95"}}`` (the 5–95% range). See :func:`reconstruction_summary`.
    """
    X = model.feature_matrix(adata, layer=layer)
    R = model.reconstruct(X)
    out = pd.DataFrame(
        {"mse": np.mean((X - R) ** 2, axis=1), "emd": wasserstein_rows(X, R)}, index=adata.obs_names.copy()
    )
    out.attrs["summary"] = reconstruction_summary(out).to_dict(orient="index")
    return out


def reconstruction_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean, median and 5–95% range of each column of :func:`reconstruction_metrics`'s output."""
    cols = [c for c in ("mse", "emd") if c in metrics.columns]
    return pd.DataFrame(
        {
            c: {
                "mean": float(metrics[c].mean()),
                "median": float(metrics[c].median()),
                "q05": float(metrics[c].quantile(0.05)),
                "q95": float(metrics[c].quantile(0.95)),
            }
            for c in cols
        }
    ).T


def latent_correlation(model: VAE, adata, *, layer=None) -> pd.DataFrame:
    """Pearson correlation between latent features (the latent means of ``adata``'s rows); latent × latent.

    Off-diagonal values near 0 indicate a disentangled latent space. Constant latent features give NaN.
    """
    Z = model.encode(adata, layer=layer).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(Z, rowvar=False) if len(Z) > 1 else np.full((model.latent_dim,) * 2, np.nan)
    index = pd.RangeIndex(model.latent_dim, name="latent_feature")
    return pd.DataFrame(np.atleast_2d(corr), index=index, columns=index.rename(None))


def feature_reconstruction(model: VAE, adata, *, groupby=None, layer=None) -> pd.DataFrame:
    """Per-feature reconstruction MSE next to the feature's variance (and its group).

    Returns
    -------
    DataFrame indexed by feature with ``mse``, ``variance`` and, with ``groupby`` (a var column of ``adata`` or of
    the training data, or labels), ``group``.
    """
    X = model.feature_matrix(adata, layer=layer)
    R = model.reconstruct(X)
    out = pd.DataFrame(
        {"mse": np.mean((X - R) ** 2, axis=0), "variance": X.var(axis=0)},
        index=pd.Index(model.var_names, name="feature"),
    )
    if groupby is not None:
        var = adata.var.copy()
        var.index = var.index.astype(str)
        if isinstance(groupby, str) and groupby not in var.columns:
            var = model.var_table
        out["group"] = feature_groups(groupby, var=var, var_names=model.var_names).to_numpy()
    return out
