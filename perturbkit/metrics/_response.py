"""Response metrics shared by every model and baseline: predicted vs measured mean profiles per group.

:func:`evaluate_response` follows cycleCDR's evaluation (Huang, Zhu, Liu): per perturbation group, the mean
predicted and the mean measured profile are compared by r² (as ``sklearn.metrics.r2_score`` over genes, clipped at
0 as the reference code does), explained variance (``sklearn.metrics.explained_variance_score``) and Pearson, on all
genes and on the top-N differentially expressed genes (largest |mean(group) − mean(control)|), plus Pearson on the
deltas from the control mean. It adds the field's two other standards: R² as scGen reports it (the squared Pearson
correlation of mean expression, on all genes and on the DEGs) and the rank of the true perturbation among all the
predicted ones, which exposes a model that predicts the same profile for every perturbation (mode collapse).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._groups import group_means
from .._schema import (
    EmptyGroupError,
    GeneMismatchError,
    PerturbkitInputError,
    check_finite,
    control_mask,
    require_columns,
)
from .._stats import pearson_rows

METRICS = (
    "r2",
    "r2_degs",
    "explained_variance",
    "explained_variance_degs",
    "pearson",
    "pearson_degs",
    "pearson_delta",
    "pearson_delta_degs",
    "squared_pearson",
    "squared_pearson_degs",
    "perturbation_rank",
)


# --- vectorised per-row scores (row i of ``pred`` vs row i of ``truth``) ------------------------------------------
def r2_rows(pred, truth, *, clip: bool = True) -> np.ndarray:
    """``sklearn.metrics.r2_score(truth[i], pred[i])`` for each row (over genes), clipped at 0 when ``clip``.

    Like sklearn, a constant ``truth`` row scores 1 when predicted exactly and 0 otherwise. NaN or inf in either
    input raise :class:`~perturbkit.errors.NonFiniteError`.

    Parameters
    ----------
    pred, truth
        Arrays of the same shape (rows × genes; a 1-D input is one row).
    clip
        Clip scores below 0 at 0.

    Returns
    -------
    One score per row.

    Examples
    --------
    >>> pk.metrics.r2_rows(pred.X, truth.X)
    """
    pred, truth = _as_2d(pred, "pred"), _as_2d(truth, "truth")
    ss_res = ((truth - pred) ** 2).sum(axis=1)
    ss_tot = ((truth - truth.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    return _finish(ss_res, ss_tot, clip)


def explained_variance_rows(pred, truth, *, clip: bool = False) -> np.ndarray:
    """``sklearn.metrics.explained_variance_score(truth[i], pred[i])`` for each row.

    That is 1 − Var(truth − pred) / Var(truth). NaN or inf in either input raise
    :class:`~perturbkit.errors.NonFiniteError`.

    Parameters
    ----------
    pred, truth
        Arrays of the same shape (rows × genes; a 1-D input is one row).
    clip
        Clip scores below 0 at 0.

    Returns
    -------
    One score per row.

    Examples
    --------
    >>> pk.metrics.explained_variance_rows(pred.X, truth.X)
    """
    pred, truth = _as_2d(pred, "pred"), _as_2d(truth, "truth")
    return _finish((truth - pred).var(axis=1), truth.var(axis=1), clip)


def perturbation_ranks(pred, truth, *, candidates=None) -> np.ndarray:
    """Rank of each group's own prediction among all groups' predictions, by distance to its measured mean.

    For group ``g``: the fraction of the other groups ``h`` (among ``candidates``, e.g. those of the same cell line)
    whose predicted mean is closer (Euclidean distance over genes) to the measured mean of ``g`` than the prediction
    for ``g`` is; ties count one half. 0 means the model's prediction for ``g`` is the closest of all, 0.5 is what a
    model that predicts the same profile for every group (mode collapse) scores, and NaN means ``g`` has no other
    group to compare with.

    Parameters
    ----------
    pred, truth
        Predicted and measured mean profiles, one row per group (groups × genes), rows aligned.
    candidates
        One label per group; a group is ranked only among the groups with the same label (default: all groups).

    Returns
    -------
    One rank in [0, 1] per group.

    Examples
    --------
    >>> pk.metrics.perturbation_ranks(pred_means, truth_means, candidates=cell_line_of_each_group)
    """
    pred, truth = _as_2d(pred, "pred"), _as_2d(truth, "truth")
    if pred.shape != truth.shape:
        raise PerturbkitInputError(
            f"pred {pred.shape} and truth {truth.shape} must have the same shape (groups × genes)."
        )
    labels = np.zeros(len(pred), dtype=np.int64) if candidates is None else pd.factorize(np.asarray(candidates))[0]
    if len(labels) != len(pred):
        raise PerturbkitInputError(f"candidates has {len(labels)} labels for {len(pred)} groups; give one per group.")
    ranks = np.full(len(pred), np.nan)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < 2:
            continue
        # distances[i, j]: measured mean of group i vs predicted mean of group j
        distances = np.sqrt(((truth[members][:, None, :] - pred[members][None, :, :]) ** 2).sum(axis=2))
        own = np.diag(distances)[:, None]
        closer = (distances < own).sum(axis=1) + 0.5 * ((distances == own).sum(axis=1) - 1)
        ranks[members] = closer / (len(members) - 1)
    return ranks


def _finish(num, den, clip):
    with np.errstate(divide="ignore", invalid="ignore"):
        score = 1.0 - num / den
    constant = den == 0
    score[constant] = np.where(num[constant] == 0, 1.0, 0.0)
    return np.maximum(score, 0.0) if clip else score


def _as_2d(a, what: str) -> np.ndarray:
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    check_finite(a, where=what)
    return a


# --- grouping -----------------------------------------------------------------------------------------------------
def _matrix(adata, layer, what: str):
    """``what``'s X (or layer), refusing a missing matrix, a missing layer, and NaN / inf values."""
    if layer is not None and layer not in adata.layers:
        raise PerturbkitInputError(
            f"{what} has no layer {layer!r}; its layers are {list(adata.layers.keys())}. "
            f"Pass layer=None to use X, or one of those layers."
        )
    X = adata.X if layer is None else adata.layers[layer]
    if X is None:
        raise PerturbkitInputError(f"{what}.X is empty; load the profiles into {what}.X or pass layer=.")
    check_finite(X, where=f"{what}.X" if layer is None else f"{what}.layers[{layer!r}]")
    return X


def _keys(obs: pd.DataFrame, groupby: list[str]) -> list[tuple | None]:
    frame = obs[groupby].astype(object)
    missing = frame.isna().any(axis=1).to_numpy()
    return [None if m else k for k, m in zip(frame.itertuples(index=False, name=None), missing, strict=True)]


def _codes(keys: list, index: dict) -> np.ndarray:
    return np.asarray([index.get(k, -1) if k is not None else -1 for k in keys], dtype=np.int64)


def _align_genes(pred, truth, *, what: str = "the predictions", name: str = "pred"):
    """Column indices of ``pred`` matching ``truth.var_names`` (raise if the genes differ)."""
    if pred.n_vars == truth.n_vars and (pred.var_names == truth.var_names).all():
        return None
    missing = truth.var_names.difference(pred.var_names)
    if len(missing):
        raise GeneMismatchError(
            f"{what} lack {len(missing)} of the measured genes (e.g. {missing[:5].tolist()}); give {name} the "
            f"same genes as the measured data, or subset it: truth = truth[:, {name}.var_names]."
        )
    return pred.var_names.get_indexer(truth.var_names)


def _control_rows(control, truth) -> tuple[np.ndarray | None, object]:
    """(mask of control rows in truth or None, AnnData of control profiles or None)."""
    if control is None:
        return None, None
    if isinstance(control, str):
        mask = control_mask(truth, control)
        return mask, truth[mask]
    if hasattr(control, "obs") and hasattr(control, "X"):
        if control.n_obs == 0:
            raise EmptyGroupError("control= is an empty AnnData; pass the control (vehicle) profiles.")
        return None, control
    mask = np.asarray(control)
    if mask.dtype != bool or mask.shape != (truth.n_obs,):
        raise PerturbkitInputError(
            f"control= must be an AnnData of control profiles, the name of a boolean obs column of truth, or a boolean "
            f"mask of length truth.n_obs={truth.n_obs}; got {type(control).__name__} "
            f"{getattr(mask, 'dtype', '')} {getattr(mask, 'shape', '')}."
        )
    if not mask.any():
        raise EmptyGroupError("the control mask selects no rows of truth.")
    return mask, truth[mask]


def evaluate_response(
    pred,
    truth,
    *,
    groupby: str | Sequence[str],
    control=None,
    n_degs: int = 50,
    layer: str | None = None,
    control_groupby: Literal["auto"] | str | Sequence[str] | None = "auto",
    deg_method: Literal["mean_difference", "wilcoxon"] = "mean_difference",
) -> pd.DataFrame:
    """Compare mean predicted and mean measured profiles per group (e.g. cell line × drug).

    Parameters
    ----------
    pred, truth
        AnnData of predicted and measured profiles (one per row), with the ``groupby`` obs column(s). Only the
        groups present in ``truth`` are scored; each must be present in ``pred`` (else an error lists the missing
        ones). Genes are matched by name. Rows with a missing group value are ignored.
    groupby
        obs column(s) defining the groups, e.g. ``["cell_line", "drug"]``.
    control
        The control (vehicle) profiles: an AnnData, or the name of a boolean obs column of ``truth``, or a boolean
        mask over ``truth``'s rows (those rows are then removed from the measured groups). Used for the DEGs and
        the delta Pearson. **Without control**, the reference is the mean of all measured profiles (the DEGs are then
        the genes where a group differs most from the average group, and ``pearson_delta`` compares deviations
        from that average).
    n_degs
        Number of top DEGs per group (see ``deg_method``).
    layer
        Use ``layers[layer]`` instead of ``X`` (in pred, truth and an AnnData control).
    control_groupby
        Columns on which a group is matched to its own controls (e.g. ``"cell_line"``: each cell line's DEGs are
        computed against that cell line's control mean). ``"auto"`` uses the ``groupby`` columns that the controls'
        obs also has and whose values cover every scored group (typically the cell line, not the drug); ``None``
        uses one overall control mean.
    deg_method
        How a group's DEGs are chosen: ``"mean_difference"``, the largest |mean(truth group) − mean(control)| (up and
        down); ``"wilcoxon"``, the top ``n_degs`` genes by score of :func:`scanpy.tl.rank_genes_groups` (Wilcoxon
        rank-sum, measured group against its own control rows), i.e. the most significantly **up**-regulated genes:
        the convention of scGen and pertpy's Kang benchmark (``reg_mean_plot`` on the top 100 genes). Needs
        ``control`` and single-cell-like replicate rows.

    Returns
    -------
    One row per group: the ``groupby`` columns, then ``r2``, ``r2_degs`` (clipped at 0), ``explained_variance``,
    ``explained_variance_degs``, ``pearson``, ``pearson_degs``, ``pearson_delta`` (Pearson of pred − control vs
    truth − control over all genes), ``pearson_delta_degs`` (the same over the DEGs), ``squared_pearson`` and
    ``squared_pearson_degs`` (R² as scGen reports it: the squared Pearson correlation of mean expression),
    ``perturbation_rank`` (see :func:`perturbation_ranks`: the rank
    of the group's own prediction among the predictions of the groups that share its controls, e.g. all drugs of its
    cell line; 0 is best, 0.5 is mode collapse), ``n_pred`` and ``n_truth`` (rows averaged).
    ``df.attrs["reference"]`` says whether the reference was ``"control"`` or ``"truth_mean"``.

    Raises
    ------
    NonFiniteError
        NaN or inf in ``pred``, ``truth`` or the ``control`` profiles (one NaN would make every score NaN); the
        message names the input.
    GeneMismatchError
        ``pred`` (or an AnnData ``control``) lacks some of ``truth``'s genes.
    """
    for obj, what in ((pred, "pred"), (truth, "truth")):
        if not (hasattr(obj, "obs") and hasattr(obj, "var_names")):
            raise PerturbkitInputError(
                f"{what} must be an AnnData of profiles with the groupby obs columns, got "
                f"{type(obj).__name__}; wrap an array with anndata.AnnData(X, obs=obs)."
            )
    groupby = [groupby] if isinstance(groupby, str) else list(groupby)
    if not groupby:
        raise PerturbkitInputError("groupby= needs at least one obs column, e.g. groupby=['cell_line', 'drug'].")
    require_columns(truth, groupby, purpose="grouping the measured profiles")
    require_columns(pred, groupby, purpose="grouping the predicted profiles")
    if int(n_degs) < 1:
        raise PerturbkitInputError(f"n_degs must be at least 1, got {n_degs}.")
    genes = _align_genes(pred, truth)
    n_genes = truth.n_vars

    ctrl_mask, ctrl = _control_rows(control, truth)

    # measured groups (controls excluded when they are rows of truth)
    truth_keys = _keys(truth.obs, groupby)
    if ctrl_mask is not None:
        truth_keys = [None if m else k for k, m in zip(truth_keys, ctrl_mask, strict=True)]
    groups = list(dict.fromkeys(k for k in truth_keys if k is not None))
    if not groups:
        raise EmptyGroupError(f"truth has no (non-control) rows with values in {groupby}.")
    index = {k: i for i, k in enumerate(groups)}
    truth_mean, n_truth = group_means(_matrix(truth, layer, "truth"), _codes(truth_keys, index), len(groups))

    pred_X = _matrix(pred, layer, "pred")
    if genes is not None:
        pred_X = pred_X[:, genes]
    pred_mean, n_pred = group_means(pred_X, _codes(_keys(pred.obs, groupby), index), len(groups))
    absent = [g for g, n in zip(groups, n_pred, strict=True) if n == 0]
    if absent:
        shown = [g[0] if len(g) == 1 else g for g in absent[:10]]
        raise EmptyGroupError(
            f"{len(absent)} of the {len(groups)} measured groups ({', '.join(groupby)}) have no predictions: "
            f"{shown}{' ...' if len(absent) > 10 else ''}. Predict every group of truth, or subset truth to the "
            f"predicted groups."
        )

    reference, reference_groups, ctrl_codes = _reference_means(
        ctrl, truth, groups, groupby, layer, control_groupby, "truth" if ctrl_mask is not None else "control"
    )

    delta_truth = truth_mean - reference
    k = min(int(n_degs), n_genes)
    if deg_method == "wilcoxon":
        if ctrl is None:
            raise PerturbkitInputError("deg_method='wilcoxon' ranks each group against its controls: pass control=.")
        ctrl_X = _matrix(ctrl, layer, "control")
        ctrl_genes = _align_genes(ctrl, truth, what="the control profiles", name="control")
        degs = _wilcoxon_degs(
            _matrix(truth, layer, "truth"),
            _codes(truth_keys, index),
            ctrl_X if ctrl_genes is None else ctrl_X[:, ctrl_genes],
            ctrl_codes,
            reference_groups,
            k,
        )
    elif deg_method == "mean_difference":
        degs = (
            np.argpartition(-np.abs(delta_truth), k - 1, axis=1)[:, :k]
            if k < n_genes
            else np.tile(np.arange(n_genes), (len(groups), 1))
        )
    else:
        raise PerturbkitInputError(f"deg_method must be 'mean_difference' or 'wilcoxon', got {deg_method!r}.")
    pred_degs = np.take_along_axis(pred_mean, degs, axis=1)
    truth_degs = np.take_along_axis(truth_mean, degs, axis=1)

    df = pd.DataFrame(groups, columns=groupby)
    df["r2"] = r2_rows(pred_mean, truth_mean)
    df["r2_degs"] = r2_rows(pred_degs, truth_degs)
    df["explained_variance"] = explained_variance_rows(pred_mean, truth_mean)
    df["explained_variance_degs"] = explained_variance_rows(pred_degs, truth_degs)
    df["pearson"] = pearson_rows(pred_mean, truth_mean)
    df["pearson_degs"] = pearson_rows(pred_degs, truth_degs)
    df["pearson_delta"] = pearson_rows(pred_mean - reference, delta_truth)
    df["pearson_delta_degs"] = pearson_rows(
        np.take_along_axis(pred_mean - reference, degs, axis=1), np.take_along_axis(delta_truth, degs, axis=1)
    )
    df["squared_pearson"] = df["pearson"] ** 2
    df["squared_pearson_degs"] = df["pearson_degs"] ** 2
    df["perturbation_rank"] = perturbation_ranks(pred_mean, truth_mean, candidates=reference_groups)
    df["n_pred"] = n_pred
    df["n_truth"] = n_truth
    df.attrs["reference"] = "truth_mean" if ctrl is None else "control"
    df.attrs["n_degs"] = k
    df.attrs["deg_method"] = deg_method
    return df


def _wilcoxon_degs(truth_X, truth_codes, ctrl_X, ctrl_codes, reference_groups, k) -> np.ndarray:
    """Per group, the ``k`` genes with the highest scanpy Wilcoxon score of its rows against its own control rows."""
    import anndata as ad
    import scanpy as sc

    out = np.empty((len(reference_groups), k), dtype=np.int64)
    for g, ref in enumerate(reference_groups):
        rows, controls = truth_X[truth_codes == g], ctrl_X[ctrl_codes == ref]
        if rows.shape[0] < 2 or controls.shape[0] < 2:
            raise EmptyGroupError(
                f"deg_method='wilcoxon' needs at least two measured and two control rows per group; group {g} has "
                f"{rows.shape[0]} and {controls.shape[0]}. Use deg_method='mean_difference' for mean profiles."
            )
        if sp.issparse(rows) or sp.issparse(controls):
            X = sp.vstack([sp.csr_matrix(rows), sp.csr_matrix(controls)]).tocsr()
        else:
            X = np.vstack([rows, controls])
        labels = ["group"] * rows.shape[0] + ["control"] * controls.shape[0]
        obs = pd.DataFrame({"which": pd.Categorical(labels)}, index=[str(i) for i in range(len(labels))])
        both = ad.AnnData(X, obs=obs, var=pd.DataFrame(index=[str(i) for i in range(X.shape[1])]))
        sc.tl.rank_genes_groups(both, "which", groups=["group"], reference="control", method="wilcoxon", n_genes=k)
        out[g] = np.asarray(both.uns["rank_genes_groups"]["names"]["group"], dtype=np.int64)
    return out


def _reference_means(ctrl, truth, groups, groupby, layer, control_groupby, ctrl_what="control"):
    """Each group's control mean (n_groups, n_genes), which control group it uses, and each control row's group."""
    n_groups = len(groups)
    if ctrl is None:
        X = _matrix(truth, layer, "truth")
        mean = np.asarray(X.mean(axis=0), dtype=np.float64).ravel()
        return np.tile(mean, (n_groups, 1)), np.zeros(n_groups, dtype=np.int64), None
    genes = _align_genes(ctrl, truth, what="the control profiles", name="control")
    X = _matrix(ctrl, layer, ctrl_what)
    if genes is not None:
        X = X[:, genes]
    if control_groupby == "auto":
        cols = []
        for i, c in enumerate(groupby):
            if c in ctrl.obs.columns:
                values = set(ctrl.obs[c].dropna().astype(object))
                if all(g[i] in values for g in groups):
                    cols.append(c)
    elif control_groupby is None:
        cols = []
    else:
        cols = [control_groupby] if isinstance(control_groupby, str) else list(control_groupby)
        unknown = [c for c in cols if c not in groupby]
        if unknown:
            raise PerturbkitInputError(f"control_groupby columns {unknown} must be among groupby={groupby}.")
        require_columns(ctrl, cols, purpose="matching groups to their controls")
    if not cols:
        mean = np.asarray(X.mean(axis=0), dtype=np.float64).ravel()
        return np.tile(mean, (n_groups, 1)), np.zeros(n_groups, dtype=np.int64), np.zeros(X.shape[0], dtype=np.int64)
    positions = [groupby.index(c) for c in cols]
    sub_keys = [tuple(g[p] for p in positions) for g in groups]
    sub_groups = list(dict.fromkeys(sub_keys))
    sub_index = {k: i for i, k in enumerate(sub_groups)}
    ctrl_codes = _codes(_keys(ctrl.obs, cols), sub_index)
    means, counts = group_means(X, ctrl_codes, len(sub_groups))
    lacking = [g for g, n in zip(sub_groups, counts, strict=True) if n == 0]
    if lacking:
        raise EmptyGroupError(
            f"no control profiles for {cols} = {lacking[:10]}; add their controls, or pass control_groupby=None to "
            f"use one overall control mean."
        )
    positions = np.array([sub_index[k] for k in sub_keys])
    return means[positions], positions, ctrl_codes


def summarise_response(df: pd.DataFrame) -> pd.Series:
    """Mean of each metric column of an :func:`evaluate_response` table (NaNs skipped).

    Parameters
    ----------
    df
        An :func:`evaluate_response` table.

    Returns
    -------
    The mean of each metric column present (index: the metric names of :data:`METRICS`).

    Examples
    --------
    >>> pk.metrics.summarise_response(pk.metrics.evaluate_response(pred, truth, groupby="drug"))
    """
    cols = [c for c in METRICS if c in df.columns]
    if not cols:
        raise PerturbkitInputError(f"no metric columns {list(METRICS)} in the table; pass evaluate_response's output.")
    return df[cols].mean(axis=0, skipna=True)
