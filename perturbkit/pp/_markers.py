"""Cell-type annotation of clusters from marker genes (the last step of the standard scanpy flow)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from .._schema import PerturbkitInputError, dense_matrix, modifiable, require_columns

#: Canonical marker genes of the main human PBMC populations (peripheral blood immunology textbook markers).
PBMC_MARKERS: dict[str, list[str]] = {
    "CD4 T cells": ["IL7R", "CD3E", "CD3D", "LDHB", "CCR7"],
    "CD8 T cells": ["CD8A", "CD8B", "CD3E", "CD3D"],
    "NK cells": ["GNLY", "NKG7", "GZMB", "PRF1"],
    "B cells": ["MS4A1", "CD79A", "CD79B", "CD19"],
    "CD14 monocytes": ["CD14", "LYZ", "S100A8", "S100A9"],
    "FCGR3A monocytes": ["FCGR3A", "MS4A7"],
    "Dendritic cells": ["FCER1A", "CST3", "CLEC10A"],
    "Megakaryocytes": ["PPBP", "PF4"],
}


def annotate_cell_types(
    adata,
    *,
    markers: dict[str, list[str]],
    groupby: str = "cluster",
    key_added: str = "cell_type",
    layer: str | None = None,
    batch_key: str | None = None,
    copy: bool = False,
) -> ad.AnnData | None:
    """Name each cluster after the marker set that scores highest in it.

    Each gene is standardised over cells (mean 0, sd 1 of the log-normalised expression, so that highly expressed
    markers such as LYZ do not outweigh weaker ones); a cell type's score in a cluster is the mean, over its
    markers found in ``adata.var_names``, of the cluster mean of those standardised values. Every cluster takes the
    cell type with the highest score.

    Parameters
    ----------
    adata
        Cells × genes with **log-normalised** expression (``normalize_total`` + ``log1p``) in ``X`` or ``layer``,
        and the clusters in ``obs[groupby]``. Use all genes, not only the highly variable ones: markers are often
        not among them.
    markers
        ``{cell type: [marker genes]}``, e.g. :data:`PBMC_MARKERS`. Genes absent from the data are skipped (listed in
        ``uns``); a cell type with none of its markers present raises an error.
    groupby
        obs column holding the clusters.
    key_added
        obs column that receives the cell type (categorical).
    layer
        Read the expression from ``adata.layers[layer]`` instead of X.
    batch_key
        Optional obs column (e.g. the condition): genes are standardised within each batch, so that a marker
        shifted by a treatment (IFN-β lowers CD14 in monocytes, for example) is compared within its condition.
    copy
        Return a new AnnData instead of modifying ``adata``.

    Returns
    -------
    The annotated AnnData if ``copy=True``, else None. Sets ``obs[key_added]`` and ``uns[key_added + "_markers"]``
    with ``scores`` (clusters × cell types, as ``{cluster: {type: score}}``), ``assignment`` ({cluster: type}),
    ``markers_used`` and ``markers_missing``.
    """
    if not isinstance(markers, dict) or not markers:
        raise PerturbkitInputError("markers= must be a non-empty {cell type: [marker genes]} dict, e.g. PBMC_MARKERS.")
    require_columns(
        adata,
        {"groupby": groupby} | ({} if batch_key is None else {"batch_key": batch_key}),
        purpose="annotating clusters with marker genes",
    )
    adata = modifiable(adata, copy=copy, caller="pk.pp.annotate_cell_types")
    var_index = pd.Index(adata.var_names.astype(str))
    used, missing = {}, {}
    for cell_type, genes in markers.items():
        genes = [str(g) for g in ([genes] if isinstance(genes, str) else genes)]
        used[cell_type] = [g for g in genes if g in var_index]
        missing[cell_type] = [g for g in genes if g not in var_index]
    empty = [t for t, g in used.items() if not g]
    if empty:
        raise PerturbkitInputError(
            f"none of the markers of {empty} is in adata.var_names (e.g. {markers[empty[0]]}); "
            f"check the gene naming (symbols vs Ensembl ids) or drop those cell types."
        )
    if layer is None and adata.X is None:  # checked here to keep the message about log-normalised expression
        raise PerturbkitInputError("adata.X is empty; load log-normalised expression into adata.X or pass layer=.")
    if pd.isna(adata.obs[groupby]).any():
        raise PerturbkitInputError(f"obs[{groupby!r}] has missing values; cluster every cell first.")
    genes = sorted({g for gs in used.values() for g in gs})
    X = dense_matrix(adata[:, var_index.get_indexer(genes)], layer, dtype=np.float64)
    batches = (
        np.zeros(adata.n_obs, dtype=int) if batch_key is None else pd.factorize(adata.obs[batch_key].astype(str))[0]
    )
    Z = np.empty_like(X)
    for b in np.unique(batches):
        rows = batches == b
        sd = X[rows].std(axis=0)
        Z[rows] = (X[rows] - X[rows].mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    clusters = adata.obs[groupby].astype(str).to_numpy()
    # sort=False keeps the clusters in order of first appearance
    gene_means = pd.DataFrame(Z, columns=genes).groupby(clusters, sort=False).mean()
    scores = pd.DataFrame({t: gene_means[g].mean(axis=1) for t, g in used.items()}, index=gene_means.index)
    scores.index.name = groupby
    assignment = scores.idxmax(axis=1)
    adata.obs[key_added] = pd.Categorical(
        pd.Series(clusters).map(assignment).to_numpy(), categories=[t for t in markers if t in set(assignment)]
    )
    adata.uns[f"{key_added}_markers"] = {
        "params": {
            "groupby": groupby,
            "layer": "None" if layer is None else layer,
            "batch_key": "None" if batch_key is None else batch_key,
        },
        "scores": {str(c): {t: float(v) for t, v in row.items()} for c, row in scores.iterrows()},
        "assignment": {str(c): str(t) for c, t in assignment.items()},
        "markers_used": used,
        "markers_missing": {t: g for t, g in missing.items() if g},
    }
    return adata if copy else None
