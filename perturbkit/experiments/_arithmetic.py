"""The latent space arithmetic paper's robustness experiment: retrain without the best-predicted groups."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Literal

import anndata as ad
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from .._schema import OBS_KEYS, EmptyGroupError, PerturbkitInputError
from ..tl._arithmetic import latent_arithmetic, lsa_groups


def lsa_robustness(
    adata: ad.AnnData,
    *,
    train: Callable[[ad.AnnData], Any],
    result: pd.DataFrame | None = None,
    n_remove: int = 3,
    evaluate_on: Literal["full", "reduced"] = "full",
    moa_key: str = OBS_KEYS.moa_key,
    control: str = "DMSO",
    n_shuffles: int = 10,
    seed: int = 0,
    layer: str | None = None,
) -> pd.DataFrame:
    """The paper's LSA robustness experiment: retrain without the best-predicted groups and compare ranks.

    The ``n_remove`` best-predicted ``A|B`` groups (lowest ``z`` in ``result``) and their single-MOA parts are
    removed from the data, a new model is trained on the rest with ``train``, LSA is rerun with it, and the ranks
    (by ``z``, 1 = best) of the groups are compared between the two runs.

    Parameters
    ----------
    adata
        The data of the initial run (not modified apart from ``uns['latent_arithmetic']``).
    train
        Model factory ``train(adata) -> model`` (e.g. ``lambda a: pk.tl.train_vae(a, kind="mmd")`` or
        ``lambda a: PCA(10).fit(a.X)``); it gets a copy of the reduced data.
    result
        The initial :func:`~perturbkit.tl.latent_arithmetic` table; ``None`` trains ``train(adata)`` on all rows
        and runs it.
    n_remove
        How many best-predicted groups to remove.
    evaluate_on
        ``"full"``: rerun LSA on all rows with the retrained model (the removed groups are still scored, now
        as groups the model never saw). ``"reduced"``: rerun on the reduced data only (groups that lost a part
        drop out).
    moa_key, control, n_shuffles, seed, layer
        As in :func:`~perturbkit.tl.latent_arithmetic` (the same seed gives the same label permutations).

    Returns
    -------
    DataFrame indexed by group: ``group``, ``removed``, ``z_before``, ``z_after``, ``rank_before``,
    ``rank_after`` (ranks among all groups of each run). ``attrs['spearman']`` is the Spearman correlation of
    the ranks of the remaining (not removed) groups scored in both runs; ``attrs['spearman_all']`` uses every
    group scored in both; ``attrs['removed_groups']`` and ``attrs['removed_rows']`` say what was removed.

    Examples
    --------
    >>> result = pk.tl.latent_arithmetic(adata, model=vae)
    >>> robust = pk.experiments.lsa_robustness(adata, train=lambda a: pk.tl.train_vae(a, kind="mmd"), result=result)
    >>> robust.attrs["spearman"]
    """
    if evaluate_on not in ("full", "reduced"):
        raise PerturbkitInputError(f"evaluate_on={evaluate_on!r} must be 'full' or 'reduced'.")
    if n_remove < 1:
        raise PerturbkitInputError(f"n_remove={n_remove} must be >= 1.")
    kw = dict(moa_key=moa_key, control=control, n_shuffles=n_shuffles, seed=seed, layer=layer)
    if result is None:
        result = latent_arithmetic(adata, model=train(adata.copy()), **kw)
    if result.empty:
        raise EmptyGroupError("The initial LSA result is empty (no eligible A|B group); nothing to remove.")
    ranked = result[np.isfinite(result["z"])].sort_values(["z", "group"])
    if len(ranked) <= n_remove:
        raise PerturbkitInputError(
            f"n_remove={n_remove} leaves no group to compare: only {len(ranked)} groups have a finite z."
        )
    best = ranked.iloc[:n_remove]
    removed_labels = set(best["group"]) | set(best["A"]) | set(best["B"])
    groups = lsa_groups(adata, moa_key=moa_key, control=control)
    drop = np.array([g in removed_labels for g in groups.row_group], dtype=bool)
    reduced = adata[~drop].copy()
    model = train(reduced.copy())
    target = adata if evaluate_on == "full" else reduced
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        after = latent_arithmetic(target, model=model, **kw)

    before_rank = result["z"].rank(method="average")
    after_rank = after["z"].rank(method="average")
    names = list(result["group"]) + [g for g in after["group"] if g not in set(result["group"])]
    out = pd.DataFrame({"group": names}, index=pd.Index(names))
    out["removed"] = out["group"].isin(best["group"])
    out["z_before"] = result["z"].reindex(names).to_numpy()
    out["z_after"] = after["z"].reindex(names).to_numpy()
    out["rank_before"] = before_rank.reindex(names).to_numpy()
    out["rank_after"] = after_rank.reindex(names).to_numpy()
    both = out[np.isfinite(out["rank_before"]) & np.isfinite(out["rank_after"])]
    remaining = both[~both["removed"]]

    def _rho(frame):
        if len(frame) < 3:
            return float("nan")
        return float(spearmanr(frame["rank_before"], frame["rank_after"]).statistic)

    out.attrs.update(
        {
            "spearman": _rho(remaining),
            "spearman_all": _rho(both),
            "n_compared": int(len(remaining)),
            "removed_groups": sorted(best["group"]),
            "removed_labels": sorted(removed_labels),
            "removed_rows": int(drop.sum()),
            "evaluate_on": evaluate_on,
        }
    )
    return out
