"""A joint 2-D embedding of predicted and measured response profiles (cycleCDR's UMAP figure).

See the cycleCDR methods page. Only reads the profiles; it trains nothing. :func:`perturbkit.pl.prediction_umap`
draws the result.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from .._schema import OBS_KEYS, PerturbkitInputError, check_finite, control_mask, dense_matrix
from ._embedding import in_gene_order, torch_threads_kept

__all__ = ["embed_predictions"]

RESPONSE_SOURCES = ("predicted", "measured")


def embed_predictions(
    pred: ad.AnnData,
    truth: ad.AnnData,
    *,
    seed: int = 0,
    n_neighbors: int = 15,
    n_pcs: int = 50,
    min_dist: float = 0.1,
    drug_key: str = OBS_KEYS.drug_key,
    cell_key: str = OBS_KEYS.cell_key,
    control_key: str | None = OBS_KEYS.control_key,
    layer: str | None = None,
) -> ad.AnnData:
    """Stack predicted and measured profiles, run PCA then UMAP on them together.

    Parameters
    ----------
    pred
        Predicted treated profiles, e.g. ``model.predict(...)`` or a baseline from
        :func:`perturbkit.tl.response_baselines` (obs ``drug_key`` and, when present, ``cell_key``).
    truth
        Measured profiles. Rows flagged in ``obs[control_key]`` (when that column exists) are left out, so only
        treated profiles are drawn; columns are put in ``pred``'s gene order.
    seed
        ``random_state`` of the PCA and the UMAP.
    n_neighbors, min_dist
        UMAP settings (``n_neighbors`` is capped at the number of rows − 1).
    n_pcs
        PCA components fed to the UMAP (capped at min(rows, genes) − 1).
    drug_key, cell_key
        obs columns of the drug and the cell line, copied to the result when present.
    control_key
        obs column flagging the control rows of ``truth`` (left out); ``None`` keeps every row.
    layer
        Read both from ``layers[layer]`` instead of X.

    Returns
    -------
    AnnData with the predicted then the measured rows in X, obs ``source`` (categorical: predicted, measured),
    ``drug_key`` and ``cell_key`` (when present in the inputs), ``obsm['X_pca']`` and ``obsm['X_umap']``, and
    ``uns['embed_predictions']`` with the settings and the row counts.

    Examples
    --------
    >>> emb = pk.tl.embed_predictions(model.predict(controls, drugs=drugs), measured)
    >>> pk.pl.prediction_umap(emb, color="drug")
    """
    from sklearn.decomposition import PCA

    for obj, what in ((pred, "pred"), (truth, "truth")):
        if not (hasattr(obj, "obs") and hasattr(obj, "var_names")):
            raise PerturbkitInputError(f"{what} must be an AnnData, got {type(obj).__name__}.")
    if control_key is not None and control_key in truth.obs:
        truth = truth[~control_mask(truth, control_key)]
    genes = pd.Index(pred.var_names.astype(str))
    P = in_gene_order(pred, dense_matrix(pred, layer, dtype=np.float64), genes, what="the predicted profiles")
    T = in_gene_order(truth, dense_matrix(truth, layer, dtype=np.float64), genes, what="the measured profiles")
    check_finite(P, where="the predicted profiles")
    check_finite(T, where="the measured profiles")
    n_pred, n_truth = P.shape[0], T.shape[0]
    if n_pred == 0 or n_truth == 0:
        raise PerturbkitInputError(
            f"embed_predictions needs predicted and measured (treated) rows; got {n_pred} "
            f"predicted and {n_truth} measured."
        )
    X = np.vstack([P, T])
    n = X.shape[0]
    if n < 4:
        raise PerturbkitInputError(f"a UMAP needs at least 4 rows in all, got {n}.")

    comps = max(2, min(int(n_pcs), min(n, X.shape[1]) - 1))
    pcs = PCA(n_components=comps, random_state=seed).fit_transform(X).astype(np.float32)
    import umap  # imported here: the first import compiles numba code (~20 s)

    reducer = umap.UMAP(
        n_neighbors=max(2, min(int(n_neighbors), n - 1)), min_dist=min_dist, random_state=seed, n_jobs=1
    )
    with torch_threads_kept():
        coords = reducer.fit_transform(pcs).astype(np.float32)

    obs = pd.DataFrame(
        {"source": pd.Categorical(np.repeat(RESPONSE_SOURCES, [n_pred, n_truth]), categories=list(RESPONSE_SOURCES))}
    )
    for key in dict.fromkeys([drug_key, cell_key]):
        if key in pred.obs or key in truth.obs:
            parts = [
                frame[key].astype(str).to_numpy() if key in frame else np.full(len(frame), None, dtype=object)
                for frame in (pred.obs, truth.obs)
            ]
            obs[key] = np.concatenate(parts)
    obs.index = [f"predicted:{x}" for x in pred.obs_names.astype(str)] + [
        f"measured:{x}" for x in truth.obs_names.astype(str)
    ]
    out = ad.AnnData(X=X.astype(np.float32), obs=obs, var=pd.DataFrame(index=genes))
    out.obsm["X_pca"] = pcs
    out.obsm["X_umap"] = coords
    out.uns["embed_predictions"] = {
        "n_predicted": int(n_pred),
        "n_measured": int(n_truth),
        "seed": int(seed),
        "n_neighbors": int(reducer.n_neighbors),
        "n_pcs": int(comps),
        "min_dist": float(min_dist),
        "layer": layer,
    }
    return out
