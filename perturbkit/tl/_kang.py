"""Kang et al. 2018 PBMCs (ctrl vs IFN-β): the standard scanpy preprocessing with marker-based cell types.

The held-out-cell-type benchmark on these data is :func:`perturbkit.experiments.kang_holdout`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._schema import PerturbkitInputError, require_columns
from ..pp._markers import PBMC_MARKERS, annotate_cell_types

STIM = "IFNB"
CONTROL = "control"


def _looks_like_counts(X) -> bool:
    values = X.data if sp.issparse(X) else np.asarray(X).ravel()
    values = values[:200_000]
    return bool(len(values)) and float(values.max()) > 30 and bool(np.all(np.mod(values, 1) == 0))


def preprocess_pbmc(
    adata: ad.AnnData,
    *,
    n_hvg: int = 2000,
    n_pcs: int = 20,
    n_clusters: int = 10,
    markers: Mapping[str, Sequence[str]] | None = None,
    condition_key: str = "condition",
    control_value: str = "ctrl",
    seed: int = 0,
) -> ad.AnnData:
    """The standard scanpy flow on raw PBMC counts, returning a new AnnData in perturbkit's schema.

    ``normalize_total`` (10,000 per cell) → ``log1p`` → ``highly_variable_genes`` (top ``n_hvg``, Seurat flavour)
    → PCA (``n_pcs``) → clustering within each condition → :func:`~perturbkit.pp.annotate_cell_types`. Clustering
    is Leiden when ``leidenalg`` is importable, else k-means (``n_clusters`` per condition) on the PCs
    (scikit-learn); ``uns['pbmc_preprocessing']`` says which. Already log-normalised input (non-integer values)
    skips the first two steps.

    Parameters
    ----------
    adata
        PBMCs (raw counts or log-normalised) with ``obs[condition_key]``, e.g. :func:`perturbkit.datasets.kang_pbmc`.
    n_hvg
        Number of highly variable genes kept.
    n_pcs
        Number of principal components for the clustering.
    n_clusters
        Clusters per condition for the k-means fallback.
    markers
        Cell type → marker genes (default :data:`~perturbkit.pp.PBMC_MARKERS`, scored on all genes).
    condition_key, control_value
        The obs column of the condition and its value for control cells.
    seed
        ``random_state`` of the PCA and the clustering.

    Returns
    -------
    A new AnnData with the ``n_hvg`` genes; obs gets ``control`` (condition == ``control_value``), ``drug``
    (``"IFNB"`` for stimulated cells, ``"control"`` for controls), ``cluster``, ``cell_type`` and ``cell_line``
    (= the cell type, the column cycleCDR pairs on).

    Examples
    --------
    >>> pbmc = pk.tl.preprocess_pbmc(pk.datasets.kang_pbmc(load=True), n_hvg=2000)
    >>> result = pk.experiments.kang_holdout(pbmc, preprocessed=True)
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
        raise PerturbkitInputError(
            f"no cell has obs[{condition_key!r}] == {control_value!r}; the values are "
            f"{sorted(condition.unique())[:10]}. Pass control_value=."
        )
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

        method = (
            f"kmeans (k={n_clusters}) within each condition on {data.obsm['X_pca'].shape[1]} PCs; leidenalg "
            f"is not installed"
        )
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
    annotate_cell_types(
        data, markers=PBMC_MARKERS if markers is None else markers, groupby="cluster", batch_key=condition_key
    )
    data.obs["cell_line"] = data.obs["cell_type"].astype(str)
    data = data[:, hvg].copy()
    data.uns["pbmc_preprocessing"] = {
        "n_hvg": int(hvg.sum()),
        "n_pcs": int(data.obsm["X_pca"].shape[1]),
        "clustering": method,
        "seed": seed,
    }
    return data
