"""Control → treated baselines: no change, and the control plus the mean training response."""

from __future__ import annotations

from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd

from ..._groups import group_means
from ..._schema import (
    OBS_KEYS,
    GeneMismatchError,
    PerturbkitInputError,
    control_mask,
    dense_matrix,
    require_columns,
)
from .._pairing import control_profiles, prediction_obs


def _drug_names(drugs) -> list[str]:
    names = [str(d) for d in ([drugs] if isinstance(drugs, str) else list(drugs))]
    if not names:
        raise PerturbkitInputError("drugs is empty; name at least one drug to predict.")
    return names


def control_means(
    adata,
    *,
    control_key: str = OBS_KEYS.control_key,
    cell_key: str = OBS_KEYS.cell_key,
    layer: str | None = None,
) -> ad.AnnData:
    """One row per cell line: the mean of its control rows (the input ``predict`` needs for bulk data).

    Parameters
    ----------
    adata
        Profiles with ``obs[control_key]`` (bool) and ``obs[cell_key]``.
    control_key, cell_key, layer
        The control flag, the cell-line column, and a layer to read instead of X.

    Returns
    -------
    An AnnData with one row per cell line that has controls (obs ``cell_key``), in order of appearance; the means
    are in X, and also in ``layers[layer]`` when ``layer`` is given.

    Examples
    --------
    >>> sources = pk.tl.control_means(adata)
    >>> pred = model.predict(sources, drugs={"aspirin": "CC(=O)Oc1ccccc1C(=O)O"})
    """
    require_columns(adata, {"cell_key": cell_key}, purpose="averaging the controls per cell line")
    is_control = control_mask(adata, control_key)
    labels = adata.obs[cell_key].astype(str).to_numpy()
    cells = pd.Index(pd.unique(labels[is_control]))
    codes = np.where(is_control, cells.get_indexer(labels), -1)
    means = group_means(dense_matrix(adata, layer), codes, len(cells))[0].astype(np.float32)
    result = ad.AnnData(
        means,
        obs=pd.DataFrame({cell_key: list(cells)}, index=list(cells)),
        var=pd.DataFrame(index=adata.var_names.astype(str)),
    )
    if layer is not None:  # also under the layer's name, where a model that reads that layer looks
        result.layers[layer] = means.copy()
    return result


def predict_no_change(
    adata_controls,
    *,
    drugs,
    drug_key: str = OBS_KEYS.drug_key,
    cell_key: str = OBS_KEYS.cell_key,
    layer: str | None = None,
) -> ad.AnnData:
    """The "no change" baseline: every (control row, drug) is predicted as the control itself.

    Parameters
    ----------
    adata_controls
        The control profiles to start from (e.g. :func:`control_means`).
    drugs
        Drug names to predict.
    drug_key, cell_key, layer
        obs columns of the result, and a layer to read instead of X.

    Returns
    -------
    One row per (drug, control row), laid out like ``model.predict``.
    """
    names = _drug_names(drugs)
    obs, rows = prediction_obs(adata_controls, names, drug_key=drug_key, cell_key=cell_key)
    X = dense_matrix(adata_controls, layer)[rows]
    return ad.AnnData(X, obs=obs, var=pd.DataFrame(index=adata_controls.var_names.astype(str)))


def mean_treated_response(
    adata,
    *,
    control_key: str = OBS_KEYS.control_key,
    cell_key: str = OBS_KEYS.cell_key,
    plate_key: str | None = None,
    control_obs: str | None = None,
    layer: str | None = None,
    weight_by: Literal["row", "cell_line"] = "row",
) -> np.ndarray:
    """The average drug effect (treated − matched control) over the treated rows of ``adata`` (training data).

    Parameters
    ----------
    adata
        Training profiles with controls.
    control_key, cell_key, plate_key, control_obs, layer
        How treated rows are matched with their controls (see ``pk.tl.train_cyclecdr``).
    weight_by
        ``"row"``: every treated row counts once (cell lines or types weighted by their row counts);
        ``"cell_line"``: the mean effect of each ``cell_key`` group first, then their plain mean, so a small cell
        type counts as much as a large one (the trivial baseline of held-out-cell-type benchmarks such as Kang's).

    Returns
    -------
    The mean effect per gene, float32.
    """
    X = dense_matrix(adata, layer)
    treated, controls = control_profiles(
        adata, X, control_key=control_key, cell_key=cell_key, plate_key=plate_key, control_obs=control_obs
    )
    effects = X[treated] - controls
    if weight_by == "row":
        return effects.mean(axis=0).astype(np.float32)
    if weight_by != "cell_line":
        raise PerturbkitInputError(f"weight_by must be 'row' or 'cell_line', got {weight_by!r}.")
    require_columns(adata, {"cell_key": cell_key}, purpose="weight_by='cell_line'")
    groups = adata.obs[cell_key].astype(str).to_numpy()[treated]
    return np.mean([effects[groups == g].mean(axis=0) for g in pd.unique(groups)], axis=0).astype(np.float32)


def predict_mean_response(
    adata_controls,
    *,
    drugs,
    training_data,
    drug_key: str = OBS_KEYS.drug_key,
    control_key: str = OBS_KEYS.control_key,
    cell_key: str = OBS_KEYS.cell_key,
    plate_key: str | None = None,
    layer: str | None = None,
    weight_by: Literal["row", "cell_line"] = "row",
) -> ad.AnnData:
    """The "mean treated response" baseline: the control plus the mean training drug effect, for every drug.

    Genes are matched by name: ``training_data`` must have every gene of ``adata_controls`` (in any order).

    Parameters
    ----------
    adata_controls
        The control profiles to start from.
    drugs
        Drug names to predict.
    training_data
        Profiles with controls whose mean treated − control effect is added.
    drug_key, control_key, cell_key, plate_key, layer
        obs columns and layer, as in :func:`mean_treated_response`.
    weight_by
        ``"row"`` (every treated row counts once) or ``"cell_line"`` (each cell line or type counts once), as in
        :func:`mean_treated_response`.

    Returns
    -------
    One row per (drug, control row), laid out like ``model.predict``.
    """
    genes = pd.Index(adata_controls.var_names.astype(str))
    position = pd.Index(training_data.var_names.astype(str)).get_indexer(genes)
    if (position < 0).any():
        missing = genes[position < 0]
        raise GeneMismatchError(
            f"training_data lacks {len(missing)} of adata_controls' genes (e.g. "
            f"{missing[:5].tolist()}); give both the same genes, e.g. "
            f"adata_controls[:, adata_controls.var_names.isin(training_data.var_names)]."
        )
    effect = mean_treated_response(
        training_data, control_key=control_key, cell_key=cell_key, plate_key=plate_key, layer=layer, weight_by=weight_by
    )[position]
    result = predict_no_change(adata_controls, drugs=drugs, drug_key=drug_key, cell_key=cell_key, layer=layer)
    result.X = result.X + effect[None, :]
    return result


def response_baselines(
    adata_controls,
    *,
    drugs,
    training_data,
    drug_key: str = OBS_KEYS.drug_key,
    control_key: str = OBS_KEYS.control_key,
    cell_key: str = OBS_KEYS.cell_key,
    plate_key: str | None = None,
    layer: str | None = None,
) -> dict[str, ad.AnnData]:
    """Both control → treated baselines at once.

    Parameters
    ----------
    adata_controls, drugs, training_data, drug_key, control_key, cell_key, plate_key, layer
        As in :func:`predict_mean_response`.

    Returns
    -------
    ``{"no change": AnnData, "mean treated response": AnnData}``, rows laid out like ``model.predict``.
    """
    return {
        "no change": predict_no_change(adata_controls, drugs=drugs, drug_key=drug_key, cell_key=cell_key, layer=layer),
        "mean treated response": predict_mean_response(
            adata_controls,
            drugs=drugs,
            training_data=training_data,
            drug_key=drug_key,
            control_key=control_key,
            cell_key=cell_key,
            plate_key=plate_key,
            layer=layer,
        ),
    }
