"""``pk.tl`` face of latent space arithmetic (LSA) for polypharmacology (Chow et al., PLOS Comput Biol 2022)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .._schema import OBS_KEYS, EmptyGroupError, PerturbkitInputError, check_finite, dense_matrix, require_columns
from ..models._inputs import check_model_and_data, check_trained, model_matrix, transform_rows
from ..models.vae._arithmetic import (
    LSAGroups,
    arithmetic_table,
    empty_table,
    lsa_filter,
    resolve_model,
)

UNS_KEY = "latent_arithmetic"


def _moa_values(adata, moa_key: str):
    require_columns(adata, {"moa_key": moa_key}, purpose="latent space arithmetic")
    return adata.obs[moa_key].to_numpy(dtype=object)


def _check_control(groups: LSAGroups, moa_key: str, control: str) -> None:
    if not (groups.row_group == control).any():
        examples = [v for v in groups.values["moa"].tolist() if v is not None][:8]
        raise EmptyGroupError(
            f"No control rows: no row has obs[{moa_key!r}] == {control!r}. LSA subtracts the mean control latent "
            f"vector; pass control= naming the control's MOA value (values include {examples})."
        )


def lsa_groups(adata, *, moa_key: str = OBS_KEYS.moa_key, control: str = "DMSO") -> LSAGroups:
    """Which two-MOA groups latent space arithmetic can use, by the paper's filtering rules.

    Keeps compounds with one or two MOAs (three or more are dropped), keeps a single-MOA group only if some
    ``"A|B"`` uses it, and keeps the control (``obs[moa_key] == control``). ``"A|B"`` and ``"B|A"`` are one group.

    Parameters
    ----------
    adata
        AnnData with an MOA column (parts joined by ``"|"``).
    moa_key, control
        The MOA column and the control's MOA value.

    Returns
    -------
    :class:`~perturbkit.models.vae._arithmetic.LSAGroups` with ``row_group`` (canonical group per row, ``None``
    if dropped), ``values`` (every raw MOA value with ``kept`` and ``reason``), ``pairs`` (every ``"A|B"`` with
    ``eligible`` and ``reason``), ``eligible`` and ``message``.
    """
    return lsa_filter(_moa_values(adata, moa_key), control=control)


def latent_arithmetic(
    adata,
    *,
    model=None,
    moa_key: str = OBS_KEYS.moa_key,
    control: str = "DMSO",
    n_shuffles: int = 10,
    seed: int = 0,
    layer: str | None = None,
    key_added: str = UNS_KEY,
) -> pd.DataFrame:
    """Latent space arithmetic for every eligible polypharmacology group ``"A|B"``, with a shuffled-label control.

    Rows are filtered by the paper's rules (:func:`lsa_groups`). The kept rows are encoded once; the mean latent
    vector of each MOA group is taken over all its rows (all doses); the prediction for ``A|B`` is
    ``model.inverse_transform(mean(A) - mean(control) + mean(B))``, compared with the mean real ``A|B`` profile in
    the data's feature space by L2 distance and Pearson correlation. The control repeats the same pipeline
    ``n_shuffles`` times with the MOA labels (control included) permuted among the kept rows (seeded; the encoded
    rows are reused, only the labels move).

    Parameters
    ----------
    adata
        AnnData of profiles (rows × features), e.g. min-max scaled Cell Painting, with an MOA column.
    model
        ``None``: arithmetic in the original feature space. ``"pca"``: a ``PCA(n_components=10,
        random_state=seed)`` fitted here on all rows of the data. Otherwise any fitted object with
        ``transform(X) -> Z`` and ``inverse_transform(Z) -> X`` on numpy arrays (a perturbkit VAE, sklearn PCA).
        The data's features are matched to a model's by name (a perturbkit model's ``var_names``, or the
        ``feature_names_in_`` of an estimator fitted on a DataFrame), so their order does not matter and extra
        features are ignored; the L2 and Pearson are computed over the model's features.
    moa_key, control
        The MOA column and the control's MOA value.
    n_shuffles, seed
        Number of label permutations and their seed.
    layer
        Use ``adata.layers[layer]`` instead of X.
    key_added
        ``adata.uns`` key for the settings, counts and message (the only thing written to ``adata``).

    Returns
    -------
    DataFrame, one row per eligible ``A|B`` (indexed by group, sorted): ``group``, ``A``, ``B`` (sorted parts),
    ``n_rows``, ``n_rows_A``, ``n_rows_B``, ``l2``, ``pearson``, ``l2_shuffled`` (list of ``n_shuffles`` L2s),
    ``l2_shuffled_mean``, ``l2_shuffled_std``, ``pearson_shuffled_mean``, ``z`` = (l2 − mean(shuffled)) /
    SD(shuffled, ddof=1), ``p`` = ``scipy.stats.norm.cdf(z)`` (one-sided normal approximation: the chance of an
    L2 this small under the shuffled distribution) and ``p_empirical`` = (1 + #{shuffled ≤ l2}) / (1 + n_shuffles).
    ``attrs['message']`` summarises the filtering. When no ``A|B`` is eligible the frame is empty, the message
    names the missing parts, and a :class:`UserWarning` carries it.

    Raises
    ------
    MissingColumnError
        ``obs[moa_key]`` is absent.
    EmptyGroupError
        No row has ``obs[moa_key] == control``.
    GeneMismatchError
        The data lack some of the model's features.
    """
    check_model_and_data(adata, model, function="pk.tl.latent_arithmetic")
    check_trained(model)
    if n_shuffles < 0:
        raise PerturbkitInputError(f"n_shuffles={n_shuffles} must be >= 0.")
    groups = lsa_groups(adata, moa_key=moa_key, control=control)
    _check_control(groups, moa_key, control)
    kept = groups.kept
    settings = {
        "moa_key": moa_key,
        "control": control,
        "n_shuffles": int(n_shuffles),
        "seed": int(seed),
        "layer": "None" if layer is None else layer,
        "n_rows_total": int(adata.n_obs),
        "n_rows_kept": int(kept.sum()),
        "n_pairs": int(len(groups.pairs)),
        "n_eligible": int(len(groups.eligible)),
        "eligible": np.asarray(groups.eligible, dtype=str),
        "message": groups.message,
    }

    if not groups.eligible:
        settings["model"] = _model_name(model)
        adata.uns[key_added] = settings
        warnings.warn(groups.message, UserWarning, stacklevel=2)
        table = empty_table()
        table.attrs["message"] = groups.message
        return table

    X, fitted, name = lsa_inputs(adata, model, kept, layer=layer, seed=seed)
    Z = transform_rows(fitted, X)
    pairs = groups.pairs[groups.pairs["eligible"]]
    table = arithmetic_table(
        Z, X, groups.row_group[kept], pairs, fitted, control=control, n_shuffles=n_shuffles, seed=seed
    )
    table.attrs["message"] = groups.message
    settings.update(
        {
            "model": name,
            "latent_dim": int(Z.shape[1]),
            "mean_l2": float(table["l2"].mean()),
            "mean_l2_shuffled": float(table["l2_shuffled_mean"].mean()),
            "frac_z_negative": float((table["z"] < 0).mean()),
        }
    )
    adata.uns[key_added] = settings
    return table


def lsa_inputs(adata, model, kept, *, layer=None, seed: int = 0):
    """``(X, fitted, name)``: the kept rows in the model's feature order and the resolved model.

    The rows are aligned by name for a fitted model with feature names; ``model="pca"`` is fitted on all rows here.
    """
    check_trained(model)
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    if model is None or isinstance(model, str):
        X_all = dense_matrix(adata, layer)
        X = X_all[kept]
        check_finite(X, where=f"{where} (rows kept for LSA)")
        if isinstance(model, str):
            check_finite(X_all, where=where)
        fitted, name = resolve_model(model, X_all, seed=seed)
        return X, fitted, name
    fitted, name = resolve_model(model)
    return model_matrix(fitted, adata, layer=layer, rows=kept, where=f"{where} (rows kept for LSA)"), fitted, name


def _model_name(model) -> str:
    if model is None:
        return "original"
    return model if isinstance(model, str) else type(model).__name__
