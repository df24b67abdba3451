"""pk.tl face of tensor completion (see the tensor completion methods page): FaLRTC and DNPP on AnnData."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd

from .._schema import OBS_KEYS, EmptyGroupError, PerturbkitInputError, storable
from ..models._profiles import CellDrugProfiles
from ..models.tensor_completion import DEFAULTS, METHODS
from ..models.tensor_completion._dnpp import _dnpp
from ..models.tensor_completion._falrtc import _falrtc


def complete_tensor(
    adata,
    *,
    method: Literal["falrtc", "dnpp"] = "falrtc",
    cell_key: str = OBS_KEYS.cell_key,
    drug_key: str = OBS_KEYS.drug_key,
    control_key: str | None = OBS_KEYS.control_key,
    layer: str | None = None,
    average: bool = True,
    n_neighbors: int = DEFAULTS.dnpp.n_neighbors,
    alpha: Sequence[float] | None = None,
    mu: Sequence[float] | None = None,
    max_iter: int = DEFAULTS.falrtc.max_iter,
    tol: float = DEFAULTS.falrtc.tol,
    center: bool = DEFAULTS.falrtc.center,
    progress: bool = True,
    key_added: str = "completed_tensor",
) -> ad.AnnData:
    """Fill the unmeasured (cell line, drug) profiles of the cell line × drug × gene tensor.

    The treated profiles are averaged per (drug, cell line) (over doses, times and replicates, with
    ``average=True``) into a tensor whose missing entries are the pairs never measured; ``method`` then completes
    it: ``"falrtc"`` (low-rank tensor completion, Liu et al. 2013) or ``"dnpp"`` (a similarity-weighted average of
    the drug's nearest neighbours in the same cell line, Hodos et al. 2018). Both are transductive: nothing is
    learnt that could be saved or applied to other data.

    Parameters
    ----------
    adata
        Treated profiles (rows × genes) with obs ``cell_key`` and ``drug_key`` (and ``control_key``; its vehicle
        rows are left out). Not modified.
    method
        ``"falrtc"`` or ``"dnpp"``.
    cell_key, drug_key, control_key
        obs columns of the cell line, the drug and the vehicle-control flag (``control_key=None``: no row is a
        control).
    layer
        Read ``adata.layers[layer]`` instead of X.
    average
        Average the rows of each (cell line, drug) (``False``: each must have exactly one row).
    n_neighbors
        DNPP: how many of the most similar drugs measured in the cell line are averaged (authors' code: 10).
    alpha, mu
        FaLRTC: the weights of the (cell line, drug, gene) modes' trace norms (``None``: 1/3 each) and their
        smoothing (``None``: ``5 alpha_i / sqrt(n_i)`` in units of the data's root mean square; the authors'
        example).
    max_iter, tol
        FaLRTC: at most ``max_iter`` accelerated gradient steps; stop when the relative change of the completed
        entries falls below ``tol`` (the authors' example: 500, 1e-5).
    center
        FaLRTC: ``False`` (the paper) completes the raw values; ``True`` centres every (cell line, gene) on its
        measured profiles first.
    progress
        FaLRTC: show a tqdm bar (when ``pk.settings.progress_bar`` is also on).
    key_added
        The result's ``uns[key_added]`` records the method, its settings and a summary.

    Returns
    -------
    A new AnnData with one row per (cell line, drug) of the full grid (cell lines outer, rows named
    ``"cell line|drug"``): obs ``cell_key``, ``drug_key`` and ``observed`` (bool); X the completed profiles (the
    measured means where observed, float32); var from ``adata``.

    Examples
    --------
    >>> grid = pk.tl.complete_tensor(adata, method="dnpp")
    >>> grid[~grid.obs["observed"]]  # the predicted profiles
    """
    if method not in METHODS:
        raise PerturbkitInputError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}.")
    profiles = CellDrugProfiles.from_adata(
        adata,
        cell_key=cell_key,
        drug_key=drug_key,
        control_key=control_key,
        moa_key=None,
        average=average,
        layer=layer,
    )
    if len(profiles.cell_lines) < 2:
        raise EmptyGroupError(
            f"complete_tensor needs at least two cell lines in obs[{cell_key!r}] (it predicts a drug's profile in "
            f"one cell line from the others); the data have {list(profiles.cell_lines)}. Pass cell_key= naming "
            f"the cell-line column."
        )
    tensor = np.transpose(profiles.values, (1, 0, 2))  # cell line × drug × gene
    observed = profiles.present.T
    n_missing = int((~observed).sum())
    if n_missing == 0:
        warnings.warn(
            f"every (cell line, drug) profile is measured ({observed.size}); there is nothing to complete.",
            UserWarning,
            stacklevel=2,
        )
    start = time.perf_counter()
    if method == "falrtc":
        settings = dict(max_iter=max_iter, tol=tol, center=center)
        completed, info = _falrtc(tensor, observed, alpha=alpha, mu=mu, progress=progress, **settings)
        settings |= {"alpha": info.pop("alpha"), "mu": info.pop("mu")}
    else:
        settings = dict(n_neighbors=n_neighbors)
        completed, fallback = _dnpp(tensor, observed, n_neighbors=n_neighbors)
        info = {"n_fallback": int(fallback.sum())}
    seconds = time.perf_counter() - start

    n_cells, n_drugs = observed.shape
    cells = np.repeat(np.arange(n_cells), n_drugs)
    drugs = np.tile(np.arange(n_drugs), n_cells)
    obs = pd.DataFrame(
        {
            cell_key: pd.Categorical.from_codes(cells, categories=profiles.cell_lines),
            drug_key: pd.Categorical.from_codes(drugs, categories=profiles.drugs),
            "observed": observed.reshape(-1),
        },
        index=pd.Index([f"{c}|{d}" for c, d in zip(profiles.cell_lines[cells], profiles.drugs[drugs], strict=True)]),
    )
    result = ad.AnnData(
        X=completed.reshape(n_cells * n_drugs, -1).astype(np.float32),
        obs=obs,
        var=adata.var.copy(),
    )
    result.uns[key_added] = storable(
        {
            "method": method,
            "params": {
                "cell_key": cell_key,
                "drug_key": drug_key,
                "control_key": control_key,
                "layer": layer,
                "average": average,
                **settings,
            },
            "n_cell_lines": n_cells,
            "n_drugs": n_drugs,
            "n_observed": int(observed.sum()),
            "n_completed": n_missing,
            "seconds": seconds,
            **info,
        }
    )
    return result
