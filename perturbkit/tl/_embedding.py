"""2-D embeddings of profiles.

Scanpy-style :func:`embed`, and the VAE paper's UMAP projection of reconstructed and simulated profiles into a UMAP
fitted on the original data (see the VAE methods page).

Both only read the model; neither trains anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd

from .._schema import GeneMismatchError, PerturbkitInputError, check_finite, storable
from ..models._inputs import check_model_and_data, check_trained, model_feature_names, model_matrix, transform_rows

__all__ = ["embed", "project_reconstructions"]


@contextmanager
def torch_threads_kept():
    """Restore torch's thread count after UMAP / t-SNE.

    Numba (UMAP, pynndescent) sets the OpenMP thread count it shares with torch back to its own default (all cores)
    when it finishes, which would silently change the number of threads every later training uses.
    """
    import torch

    n_threads = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != n_threads:
            torch.set_num_threads(n_threads)


SOURCES = ("original", "reconstructed", "simulated")
BASES = ("umap", "tsne", "pca")


def _as_array(values, *, what: str) -> np.ndarray:
    """A dense float64 2-D array from whatever a model returns (array, tensor, DataFrame, AnnData)."""
    if hasattr(values, "obs") and hasattr(values, "X"):  # AnnData
        values = values.X
    if hasattr(values, "toarray"):
        values = values.toarray()
    if hasattr(values, "detach"):  # torch tensor
        values = values.detach().cpu().numpy()
    if isinstance(values, (pd.DataFrame, pd.Series)):
        values = values.to_numpy()
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2:
        raise PerturbkitInputError(f"{what} must be 2-D (rows × features), got shape {arr.shape}.")
    return arr


def in_gene_order(adata, X: np.ndarray, genes: pd.Index, *, what: str, hint: str = "") -> np.ndarray:
    """``X`` (``adata``'s matrix) with its columns in the order of ``genes``; raises naming the missing ones."""
    have = pd.Index(adata.var_names.astype(str))
    if have.equals(genes):
        return X
    pos = have.get_indexer(genes)
    if (pos < 0).any():
        raise GeneMismatchError(
            f"{what} lack {int((pos < 0).sum())} of the {len(genes)} features needed, e.g. "
            f"{list(genes[pos < 0][:5])}{hint}."
        )
    return X[:, pos]


def project_reconstructions(
    adata: ad.AnnData,
    *,
    model,
    n_simulated: int | None = None,
    seed: int = 0,
    layer: str | None = None,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    obs_keys: Sequence[str] | None = None,
) -> ad.AnnData:
    """Fit a UMAP on the original profiles and project the model's reconstructions and simulations into it.

    This is the paper's UMAP figure (see the VAE methods page): the map is learned from the original (test) data
    only, then ``model.inverse_transform(model.transform(X))`` (reconstructions) and ``model.sample(n_simulated)``
    (profiles decoded from prior samples) are placed in it with ``UMAP.transform``. Good models give reconstructions and
    simulations that overlay the original points.

    Parameters
    ----------
    adata
        The original profiles (e.g. the test split), in the units the model was trained on (min-max scaled
        morphology for the paper). Columns are matched to the model's features by name (``model.var_names``, or
        ``feature_names_in_`` for an estimator fitted on a DataFrame); missing ones raise GeneMismatchError.
    model
        A VAE from :func:`perturbkit.tl.train_vae`, or any object with ``transform`` / ``inverse_transform``
        (e.g. a fitted sklearn PCA) and, for simulations, ``sample(n, seed=)``.
    n_simulated
        How many simulated profiles (default: as many as original rows; ``0``: none, which any model without
        ``sample`` needs).
    seed
        Seeds the UMAP (``random_state``) and the prior samples.
    layer
        Read the profiles from ``adata.layers[layer]`` instead of X.
    n_neighbors, min_dist
        UMAP settings (``n_neighbors`` is capped at the number of rows − 1).
    obs_keys
        obs columns copied to the original and reconstructed rows (for hover / colour); default all of them.

    Returns
    -------
    AnnData with the original, reconstructed and simulated rows stacked (in that order) in X, obs ``source``
    (categorical: original, reconstructed, simulated), ``index`` (the original row a reconstruction came from;
    empty for simulations) and the copied obs columns, ``obsm['X_umap']``, and ``uns['project_reconstructions']``
    with the parameters and the reconstruction MSE.
    """
    import umap  # imported here: the first import compiles numba code (~20 s)

    check_model_and_data(adata, model, function="pk.tl.project_reconstructions")
    if not (hasattr(model, "transform") and hasattr(model, "inverse_transform")):
        raise PerturbkitInputError(
            "model needs transform and inverse_transform (a VAE from pk.tl.train_vae or a "
            f"fitted PCA); got {type(model).__name__}."
        )
    check_trained(model)
    X = model_matrix(model, adata, layer=layer).astype(np.float64)
    n = X.shape[0]
    if n < 3:
        raise PerturbkitInputError(f"a UMAP needs at least 3 original rows, got {n}.")
    n_sim = n if n_simulated is None else int(n_simulated)
    if n_sim < 0:
        raise PerturbkitInputError(f"n_simulated must be ≥ 0, got {n_simulated}.")
    if n_sim > 0 and not hasattr(model, "sample"):
        raise PerturbkitInputError(
            f"{type(model).__name__} has no sample(n, seed=) to simulate profiles from the "
            f"prior; pass n_simulated=0 to project reconstructions only."
        )

    recon = _as_array(
        model.inverse_transform(transform_rows(model, X)), what="model.inverse_transform(model.transform(X))"
    )
    if recon.shape != X.shape:
        raise PerturbkitInputError(f"the reconstructions have shape {recon.shape}, not the data's {X.shape}.")
    parts = [X, recon]
    if n_sim > 0:
        sim = _as_array(model.sample(n_sim, seed=seed), what="model.sample(n)")
        if sim.shape != (n_sim, X.shape[1]):
            raise PerturbkitInputError(
                f"model.sample({n_sim}) returned shape {sim.shape}, expected {(n_sim, X.shape[1])}."
            )
        parts.append(sim)
    stacked = np.vstack(parts)
    check_finite(stacked[n:], where="the reconstructed / simulated profiles")

    reducer = umap.UMAP(
        n_neighbors=max(2, min(int(n_neighbors), n - 1)), min_dist=min_dist, random_state=seed, n_jobs=1
    )
    # float32, like scanpy: numba compiles one specialisation for both (the first compile takes tens of seconds)
    with torch_threads_kept():
        fitted = reducer.fit_transform(X.astype(np.float32))
        projected = reducer.transform(stacked[n:].astype(np.float32))
    coords = np.vstack([fitted, projected]).astype(np.float32)

    names = adata.obs_names.astype(str)
    keys = list(adata.obs.columns) if obs_keys is None else list(obs_keys)
    missing = [k for k in keys if k not in adata.obs]
    if missing:
        raise PerturbkitInputError(f"obs_keys {missing} are not columns of adata.obs ({list(adata.obs.columns)}).")
    source = np.repeat(np.array(SOURCES[: len(parts)]), [n, n, n_sim][: len(parts)])
    obs = pd.DataFrame(
        {
            "source": pd.Categorical(source, categories=list(SOURCES)),
            "index": list(names) * 2 + [""] * n_sim,
        }
    )
    for key in keys:
        if key in ("source", "index"):
            continue
        col = adata.obs[key]
        values = pd.concat([col, col, pd.Series([None] * n_sim, dtype=object)], ignore_index=True)
        if isinstance(col.dtype, pd.CategoricalDtype):
            values = pd.Categorical(values, categories=col.cat.categories)
        obs[key] = values
    obs.index = (
        [f"original:{x}" for x in names]
        + [f"reconstructed:{x}" for x in names]
        + [f"simulated:{i}" for i in range(n_sim)]
    )
    out = ad.AnnData(X=stacked.astype(np.float32), obs=obs, var=pd.DataFrame(index=model_feature_names(model, adata)))
    out.obsm["X_umap"] = coords
    out.uns["project_reconstructions"] = storable(
        {
            "n_original": int(n),
            "n_reconstructed": int(n),
            "n_simulated": int(n_sim),
            "seed": int(seed),
            "n_neighbors": int(reducer.n_neighbors),
            "min_dist": float(min_dist),
            "layer": layer,
            "model": type(model).__name__,
            "kind": str(getattr(model, "hparams", {}).get("kind", "")),
            "reconstruction_mse": float(np.mean((recon - X) ** 2)),
        }
    )
    return out


def embed(
    adata: ad.AnnData,
    *,
    basis: Literal["umap", "tsne", "pca"] = "umap",
    use_rep: str | None = None,
    key_added: str | None = None,
    seed: int = 0,
    n_neighbors: int = 15,
    n_comps: int = 50,
    n_jobs: int | None = None,
    recompute: bool = False,
    copy: bool = False,
) -> ad.AnnData | None:
    """Compute a 2-D (or PCA) embedding with scanpy and cache it in ``adata.obsm['X_<basis>']``.

    ``basis="pca"`` runs ``sc.pp.pca``; ``"umap"`` runs ``sc.pp.neighbors`` then ``sc.tl.umap``; ``"tsne"`` runs
    ``sc.tl.tsne``. When the key is already in ``obsm`` nothing is computed, unless ``recompute=True`` or the stored
    settings (``adata.uns['embed'][key]``, written by this function) differ from the ones asked for; an embedding
    computed elsewhere (no record) is kept as it is.

    Parameters
    ----------
    adata
        Profiles (rows × features).
    basis
        ``"umap"``, ``"tsne"`` or ``"pca"``.
    use_rep
        The representation for the neighbours / t-SNE: ``"X"``, or an ``obsm`` key such as ``"X_vae"`` (latent
        means from :func:`perturbkit.tl.train_vae`). Default: scanpy's choice (``X_pca`` when there are more than
        50 features, else X). With ``"pca"`` and an obsm key, the PCA is of that representation.
    key_added
        ``obsm`` key of the result (default ``"X_<basis>"``).
    seed
        ``random_state`` of every step.
    n_neighbors
        Neighbours for the UMAP graph (capped at the number of rows − 1).
    n_comps
        PCA components (capped at min(rows, features) − 1).
    n_jobs
        Threads for t-SNE (default: scanpy's ``settings.n_jobs``). ``1`` avoids a slow first run on a busy machine
        (OpenMP threads waiting for cores).
    recompute
        Compute even when the key is present.
    copy
        Return a copy with the embedding and leave ``adata`` untouched; otherwise write into ``adata`` and return
        None.

    Returns
    -------
    With ``copy=True`` the copy; otherwise None, and ``adata`` gains ``obsm[key_added]`` and the settings in
    ``uns['embed'][key_added]`` (UMAP also the neighbour graph).

    Examples
    --------
    >>> pk.tl.embed(adata, basis="umap", use_rep="X_vae")
    >>> pk.pl.embedding(adata, basis="X_umap", color="moa")
    """
    import scanpy as sc

    if basis not in BASES:
        raise PerturbkitInputError(f"basis must be one of {', '.join(map(repr, BASES))}, got {basis!r}.")
    if use_rep is not None and use_rep != "X" and use_rep not in adata.obsm:
        raise PerturbkitInputError(
            f"use_rep={use_rep!r} is not in adata.obsm ({list(adata.obsm.keys())}); pass "
            f"'X' or an obsm key, e.g. 'X_vae' after pk.tl.train_vae."
        )
    if adata.n_obs < 3:
        raise PerturbkitInputError(f"an embedding needs at least 3 rows, got {adata.n_obs}.")
    data = adata.copy() if copy else adata
    key = key_added or f"X_{basis}"
    settings = {"basis": basis, "use_rep": use_rep, "seed": int(seed)}
    if basis == "umap":
        settings["n_neighbors"] = int(n_neighbors)
    if basis == "pca":
        settings["n_comps"] = int(n_comps)
    settings = storable(settings)
    stored = data.uns.get("embed", {}).get(key)
    if key in data.obsm and not recompute and (stored is None or dict(stored) == settings):
        return data if copy else None

    if basis == "pca" and use_rep not in (None, "X"):
        from sklearn.decomposition import PCA

        rep = np.asarray(data.obsm[use_rep], dtype=np.float64)
        comps = max(1, min(int(n_comps), min(rep.shape) - 1))
        data.obsm[key] = PCA(n_components=comps, random_state=seed).fit_transform(rep).astype(np.float32)
    elif basis == "pca":
        comps = max(1, min(int(n_comps), min(data.n_obs, data.n_vars) - 1))
        sc.pp.pca(data, n_comps=comps, random_state=seed, key_added=None if key == "X_pca" else key)
    elif basis == "umap":
        neighbors_key = "neighbors" if key == "X_umap" else f"{key}_neighbors"
        with torch_threads_kept():
            sc.pp.neighbors(
                data,
                n_neighbors=max(2, min(int(n_neighbors), data.n_obs - 1)),
                use_rep=use_rep,
                random_state=seed,
                key_added=None if neighbors_key == "neighbors" else neighbors_key,
            )
            sc.tl.umap(data, random_state=seed, neighbors_key=neighbors_key, key_added=None if key == "X_umap" else key)
    else:
        perplexity = float(min(30.0, max(2.0, (data.n_obs - 1) / 3.0)))
        with torch_threads_kept():
            sc.tl.tsne(
                data,
                use_rep=use_rep,
                random_state=seed,
                perplexity=perplexity,
                n_jobs=n_jobs,
                key_added=None if key == "X_tsne" else key,
            )
    record = dict(data.uns.get("embed", {}))
    record[key] = settings
    data.uns["embed"] = record
    return data if copy else None
