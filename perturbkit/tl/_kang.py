"""The scGen benchmark on Kang et al. 2018 PBMCs (ctrl vs IFN-β): hold out one cell type's stimulated cells,
train cycleCDR on the rest (unpaired, adversarial) and predict them from that cell type's control cells."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._schema import PerturbkitInputError, control_mask, require_columns
from ..pp._markers import PBMC_MARKERS, annotate_cell_types
from ._cyclecdr import predict_mean_response, predict_no_change, train_cyclecdr

STIM = "IFNB"
CONTROL = "control"


def _looks_like_counts(X) -> bool:
    values = X.data if sp.issparse(X) else np.asarray(X).ravel()
    values = values[: 200_000]
    return bool(len(values)) and float(values.max()) > 30 and bool(np.all(np.mod(values, 1) == 0))


def preprocess_pbmc(adata, *, n_hvg: int = 2000, n_pcs: int = 20, n_clusters: int = 10, markers=None,
                    condition_key: str = "condition", control_value: str = "ctrl", seed: int = 0):
    """The standard scanpy flow on raw PBMC counts, returning a new AnnData in perturbkit's schema.

    ``normalize_total`` (10,000 per cell) → ``log1p`` → ``highly_variable_genes`` (top ``n_hvg``, Seurat flavour)
    → PCA (``n_pcs``) → clustering within each condition → :func:`~perturbkit.pp.annotate_cell_types` with ``markers`` (default
    :data:`~perturbkit.pp._markers.PBMC_MARKERS`, scored on all genes). Clustering is Leiden when ``leidenalg``
    is importable, else k-means (``n_clusters`` per condition) on the PCs (scikit-learn); ``uns['pbmc_preprocessing']`` says which.
    Already log-normalised input (non-integer values) skips the first two steps.

    The result keeps the ``n_hvg`` genes; obs gets ``control`` (condition == ``control_value``), ``drug``
    (``"IFNB"`` for stimulated cells, ``"control"`` for controls), ``cluster``, ``cell_type`` and ``cell_line``
    (= the cell type, the column cycleCDR pairs on).
    """
    import scanpy as sc

    require_columns(adata, {"condition_key": condition_key}, purpose="the PBMC preprocessing")
    data = adata.copy()
    if _looks_like_counts(data.X):
        data.layers["counts"] = data.X.copy()
        sc.pp.normalize_total(data, target_sum=1e4)
        sc.pp.log1p(data)
    condition = data.obs[condition_key].astype(str)
    if not (condition == control_value).any():
        raise PerturbkitInputError(f"no cell has obs[{condition_key!r}] == {control_value!r}; the values are "
                                   f"{sorted(condition.unique())[:10]}. Pass control_value=.")
    data.obs["control"] = (condition == control_value).to_numpy()
    data.obs["drug"] = np.where(data.obs["control"], CONTROL, STIM)
    sc.pp.highly_variable_genes(data, n_top_genes=min(int(n_hvg), data.n_vars), flavor="seurat")
    hvg = data.var["highly_variable"].to_numpy()
    sc.pp.pca(data, n_comps=min(n_pcs, int(hvg.sum()) - 1), mask_var=hvg, random_state=seed)
    # cluster each condition on its own: IFN-β moves every cell type, so joint clusters split by condition first and
    # can mix subtypes of stimulated monocytes; marker scores are then standardised within each condition
    clusters = np.empty(data.n_obs, dtype=object)
    try:
        import leidenalg  # noqa: F401

        method = "leiden within each condition"
    except ImportError:
        from sklearn.cluster import KMeans

        method = (f"kmeans (k={n_clusters}) within each condition on {data.obsm['X_pca'].shape[1]} PCs; leidenalg "
                  f"is not installed")
    for value in pd.unique(condition):
        rows = (condition == value).to_numpy()
        if method.startswith("leiden"):
            sub = data[rows].copy()
            sc.pp.neighbors(sub, n_pcs=sub.obsm["X_pca"].shape[1], random_state=seed)
            sc.tl.leiden(sub, key_added="cluster", random_state=seed)
            labels = sub.obs["cluster"].astype(str).to_numpy()
        else:
            k = min(n_clusters, int(rows.sum()))
            labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(data.obsm["X_pca"][rows])
        clusters[rows] = [f"{value}-{c}" for c in labels]
    data.obs["cluster"] = pd.Categorical(clusters.astype(str))
    annotate_cell_types(data, markers=PBMC_MARKERS if markers is None else markers, groupby="cluster",
                        batch_key=condition_key)
    data.obs["cell_line"] = data.obs["cell_type"].astype(str)
    data = data[:, hvg].copy()
    data.uns["pbmc_preprocessing"] = {"n_hvg": int(hvg.sum()), "n_pcs": int(data.obsm["X_pca"].shape[1]),
                                      "clustering": method, "seed": seed}
    return data


def kang_holdout(adata, *, cell_type: str = "CD14 monocytes", n_hvg: int = 2000, n_degs: int = 100, seed: int = 0,
                 preprocessed: bool = False, condition_key: str = "condition", control_value: str = "ctrl",
                 n_clusters: int = 10, **train_options) -> dict:
    """Held-out-cell-type prediction of IFN-β response (the scGen benchmark) with unpaired cycleCDR.

    1. :func:`preprocess_pbmc` (normalise, log1p, ``n_hvg`` HVGs, PCA, clustering, marker annotation) unless
       ``preprocessed=True`` (then ``adata`` must be its output).
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

    ``train_options`` go to :func:`~perturbkit.tl.train_cyclecdr` (e.g. ``max_epochs``, ``hidden``, ``latent_dim``).

    Returns
    -------
    ``{"metrics": DataFrame (one row per model: r2, r2_degs, explained_variance(_degs), pearson(_degs),
    pearson_delta, n_pred, n_truth), "prediction": AnnData of predicted stimulated cells, "baselines": {name:
    AnnData}, "model": the CycleCDR, "data": the preprocessed AnnData, "cell_types": counts per cell type ×
    condition}``.
    """
    from ..metrics._response import evaluate_response

    data = adata if preprocessed else preprocess_pbmc(adata, n_hvg=n_hvg, condition_key=condition_key,
                                                      control_value=control_value, n_clusters=n_clusters, seed=seed)
    require_columns(data, {"cell_key": "cell_line", "drug_key": "drug", "control_key": "control"},
                    purpose="the held-out cell type run")
    is_control = control_mask(data, "control")
    cells = data.obs["cell_line"].astype(str).to_numpy()
    in_type = cells == cell_type
    if not (in_type & ~is_control).any() or not (in_type & is_control).any():
        present = pd.crosstab(cells, is_control)
        raise PerturbkitInputError(f"cell type {cell_type!r} needs both control and stimulated cells; cells per type "
                                   f"(columns: control) are\n{present}")
    held = in_type & ~is_control
    train = data[~held].copy()
    options = dict(paired=False, drug_encoder="onehot", seed=seed) | train_options
    model = train_cyclecdr(train, drug_key="drug", control_key="control", cell_key="cell_line", **options)
    controls = data[in_type & is_control].copy()
    pred = model.predict(controls, drugs=[STIM])
    # the mean-shift baseline only uses training cell types that have both controls and stimulated cells
    tr_cells = train.obs["cell_line"].astype(str).to_numpy()
    tr_ctrl = control_mask(train, "control")
    both = [c for c in pd.unique(tr_cells) if (tr_ctrl & (tr_cells == c)).any() and (~tr_ctrl & (tr_cells == c)).any()]
    baselines = {
        "no change": predict_no_change(controls, drugs=[STIM]),
        "mean treated response": predict_mean_response(controls, drugs=[STIM],
                                                       training_data=train[np.isin(tr_cells, both)].copy()),
    }
    truth = data[in_type].copy()
    rows = {}
    for name, p in {"cycleCDR": pred, **{f"baseline: {k}": v for k, v in baselines.items()}}.items():
        table = evaluate_response(p, truth, groupby=["cell_line", "drug"], control="control", n_degs=n_degs)
        rows[name] = table.drop(columns=["cell_line", "drug"]).iloc[0]
    metrics = pd.DataFrame(rows).T.rename_axis("model")
    metrics.attrs.update({"cell_type": cell_type, "n_degs": int(n_degs), "n_genes": int(data.n_vars)})
    cell_types = pd.crosstab(data.obs["cell_type"].astype(str), data.obs["drug"].astype(str))
    return {"metrics": metrics, "prediction": pred, "baselines": baselines, "model": model, "data": data,
            "cell_types": cell_types}
