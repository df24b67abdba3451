"""The scGen benchmark on Kang et al. 2018 PBMCs (ctrl vs IFN-β).

Hold out one cell type's stimulated cells, train cycleCDR on the rest (unpaired, adversarial) and predict them from
that cell type's control cells.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from .._schema import PerturbkitInputError, control_mask, require_columns
from ..metrics import evaluate_response
from ..models.baselines import predict_mean_response, predict_no_change
from ..tl import preprocess_pbmc, train_cyclecdr
from ..tl._kang import STIM
from ..tl._options import trainer_options


def kang_holdout(
    adata: ad.AnnData,
    *,
    cell_type: str = "CD14 monocytes",
    preprocessed: bool = False,
    n_hvg: int = 2000,
    n_clusters: int = 10,
    condition_key: str = "condition",
    control_value: str = "ctrl",
    n_degs: int = 100,
    seed: int = 0,
    device: str | None = None,
    train_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Held-out-cell-type prediction of the IFN-β response (the scGen benchmark) with unpaired cycleCDR.

    1. :func:`~perturbkit.tl.preprocess_pbmc` (normalise, log1p, ``n_hvg`` HVGs, PCA, clustering, marker
       annotation) unless ``preprocessed=True`` (then ``adata`` must be its output).
    2. The stimulated cells of ``cell_type`` are removed; cycleCDR trains on everything else with
       ``paired=False`` (discriminators, adversarial + cycle + identity losses) and ``drug_encoder="onehot"``.
    3. The held-out cells are predicted from the controls of ``cell_type`` and scored with
       :func:`~perturbkit.metrics.evaluate_response` (groups: cell type × drug; DEGs against that cell type's
       measured controls) next to the "no change" baseline (the controls themselves) and the "mean treated
       response" baseline (the control plus the mean stimulated − control shift of the training cell types).

    There is **one perturbation** (IFN-β): the drug encoder has nothing to generalise across. It learns one latent
    shift vector, so ``"onehot"`` is the only sensible encoder, and the test is of generalisation across cell types
    (does the shift learnt on other cell types, decoded from this cell type's latent state, give its response?),
    not across drugs.

    Parameters
    ----------
    adata
        Kang PBMCs: raw counts with ``obs[condition_key]`` (e.g. :func:`perturbkit.datasets.kang_pbmc`), or the
        output of :func:`~perturbkit.tl.preprocess_pbmc` with ``preprocessed=True``.
    cell_type
        The cell type whose stimulated cells are held out and predicted.
    preprocessed
        ``adata`` is already the output of :func:`~perturbkit.tl.preprocess_pbmc`.
    n_hvg, n_clusters, condition_key, control_value
        Preprocessing settings, as in :func:`~perturbkit.tl.preprocess_pbmc` (unused with ``preprocessed=True``).
    n_degs
        Number of differentially expressed genes for the ``*_degs`` scores.
    seed
        Seeds the preprocessing and the training.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; ``None`` means ``pk.settings.device``.
    train_options
        Further keyword arguments of :func:`~perturbkit.tl.train_cyclecdr` (e.g. ``{"max_epochs": 50, "hidden":
        (256,)}``); ``paired=False`` and ``drug_encoder="onehot"`` unless given here.

    Returns
    -------
    ``{"metrics": DataFrame (one row per model: r2, r2_degs, explained_variance(_degs), pearson(_degs),
    pearson_delta, n_pred, n_truth), "prediction": AnnData of predicted stimulated cells, "baselines": {name:
    AnnData}, "model": the CycleCDR, "data": the preprocessed AnnData, "cell_types": counts per cell type ×
    condition}``.

    Examples
    --------
    >>> pbmc = pk.datasets.kang_pbmc(load=True)
    >>> result = pk.experiments.kang_holdout(pbmc, cell_type="CD14 monocytes")
    >>> result["metrics"]
    """
    train_kwargs = trainer_options(
        train_options,
        function="pk.experiments.kang_holdout",
        trainer="pk.tl.train_cyclecdr",
        reserved=("drug_key", "control_key", "cell_key", "seed"),
        device=device,
    )
    data = (
        adata
        if preprocessed
        else preprocess_pbmc(
            adata,
            n_hvg=n_hvg,
            condition_key=condition_key,
            control_value=control_value,
            n_clusters=n_clusters,
            seed=seed,
        )
    )
    require_columns(
        data,
        {"cell_key": "cell_line", "drug_key": "drug", "control_key": "control"},
        purpose="the held-out cell type run",
    )
    is_control = control_mask(data, "control")
    cells = data.obs["cell_line"].astype(str).to_numpy()
    in_type = cells == cell_type
    if not (in_type & ~is_control).any() or not (in_type & is_control).any():
        present = pd.crosstab(cells, is_control)
        raise PerturbkitInputError(
            f"cell type {cell_type!r} needs both control and stimulated cells; cells per type "
            f"(columns: control) are\n{present}"
        )
    held = in_type & ~is_control
    train = data[~held].copy()
    options = dict(paired=False, drug_encoder="onehot", seed=seed) | train_kwargs
    model = train_cyclecdr(train, drug_key="drug", control_key="control", cell_key="cell_line", **options)
    controls = data[in_type & is_control].copy()
    pred = model.predict(controls, drugs=[STIM])
    # the mean-shift baseline only uses training cell types that have both controls and stimulated cells
    tr_cells = train.obs["cell_line"].astype(str).to_numpy()
    tr_ctrl = control_mask(train, "control")
    both = [c for c in pd.unique(tr_cells) if (tr_ctrl & (tr_cells == c)).any() and (~tr_ctrl & (tr_cells == c)).any()]
    baselines = {
        "no change": predict_no_change(controls, drugs=[STIM]),
        "mean treated response": predict_mean_response(
            controls, drugs=[STIM], training_data=train[np.isin(tr_cells, both)].copy()
        ),
    }
    truth = data[in_type].copy()
    rows = {}
    for name, p in {"cycleCDR": pred, **{f"baseline: {k}": v for k, v in baselines.items()}}.items():
        table = evaluate_response(p, truth, groupby=["cell_line", "drug"], control="control", n_degs=n_degs)
        rows[name] = table.drop(columns=["cell_line", "drug"]).iloc[0]
    metrics = pd.DataFrame(rows).T.rename_axis("model")
    metrics.attrs.update({"cell_type": cell_type, "n_degs": int(n_degs), "n_genes": int(data.n_vars)})
    cell_types = pd.crosstab(data.obs["cell_type"].astype(str), data.obs["drug"].astype(str))
    return {
        "metrics": metrics,
        "prediction": pred,
        "baselines": baselines,
        "model": model,
        "data": data,
        "cell_types": cell_types,
    }
