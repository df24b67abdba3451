"""DNPP: drug neighbour profile prediction (Hodos et al., PSB 2018), in NumPy.

A missing profile of drug ``d`` in cell line ``c`` is the similarity-weighted average of the profiles, in ``c``, of
the ``K`` drugs measured in ``c`` that are most similar to ``d``. The similarity of two drugs is the Pearson
correlation (over genes) of their profiles, averaged over the cell lines where both are measured; negative and
undefined similarities count as 0. This follows the authors' code (``CompleteTensorKNNDrug`` /
``CompleteTensorKNNCell`` of github.com/clinicalml/dgc_predict, ``K = 10``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..._schema import PerturbkitInputError, check_positive_int
from ._falrtc import _check_tensor


@dataclass(frozen=True)
class DNPPDefaults:
    """DNPP's defaults, written once: ``n_neighbors`` = K of the authors' code (``GetKNNDrugArgs``: 10)."""

    n_neighbors: int = 10


DEFAULTS = DNPPDefaults()


def dnpp(tensor, observed, *, n_neighbors: int = DEFAULTS.n_neighbors) -> np.ndarray:
    """Complete a (cell lines × drugs × genes) tensor with DNPP (drug neighbour profile prediction).

    Parameters
    ----------
    tensor
        Array of shape ``(n_cells, n_drugs, n_genes)``. Its unobserved profiles are never read.
    observed
        Boolean mask ``(n_cells, n_drugs)``: which (cell line, drug) profiles are measured (a mask of the tensor's
        shape is accepted when it is constant along genes).
    n_neighbors
        ``K``: how many of the most similar drugs measured in the cell line are averaged (fewer when fewer are
        measured there).

    Returns
    -------
    The completed tensor (float64, or the input's floating dtype), equal to ``tensor`` on the observed profiles.

    Notes
    -----
    - similarity ``s(d, e)`` = mean, over the cell lines where both ``d`` and ``e`` are measured, of the Pearson
      correlation of their profiles; pairs never measured together, and constant profiles, give 0; negative
      similarities are set to 0 (the authors' code);
    - the prediction of ``(c, d)`` is ``sum_e s(d, e) x[c, e] / sum_e s(d, e)`` over the ``K`` drugs ``e`` measured
      in ``c`` with the largest ``s(d, e)`` (ties: the earlier drug first);
    - when those weights sum to 0 (no measured drug in ``c`` is positively similar to ``d``, e.g. ``d`` shares no
      cell line with any of them), the prediction is the mean profile of the drugs measured in ``c`` (the
      authors' fallback, their ``CompleteTensorMean``).

    Examples
    --------
    >>> completed = dnpp(tensor, observed)  # tensor: cells × drugs × genes, observed: cells × drugs
    """
    completed, _ = _dnpp(tensor, observed, n_neighbors=n_neighbors)
    return completed


def _dnpp(tensor, observed, *, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """The completed tensor and a (cells × drugs) mask of the profiles filled with the cell line's mean."""
    check_positive_int(n_neighbors, "n_neighbors")
    values, mask = _check_tensor(tensor, observed)
    present = mask.any(axis=2)
    if not (mask == present[:, :, None]).all():
        raise PerturbkitInputError(
            "DNPP predicts whole profiles: observed must mark whole (cell line, drug) profiles, i.e. be a "
            "(cell lines, drugs) mask or constant along genes; this one marks single entries."
        )
    out_dtype = values.dtype if values.dtype.kind == "f" else np.dtype(np.float64)
    similarity = drug_similarity(values, present)
    out = np.array(values, dtype=out_dtype)
    fallback = np.zeros(present.shape, dtype=bool)
    for c in range(values.shape[0]):
        measured = np.flatnonzero(present[c])
        missing = np.flatnonzero(~present[c])
        if missing.size == 0:
            continue
        profiles = values[c, measured].astype(np.float64)
        sims = similarity[np.ix_(missing, measured)]
        k = min(int(n_neighbors), measured.size)
        top = np.argsort(-sims, axis=1, kind="stable")[:, :k]  # the k most similar measured drugs
        weights = np.take_along_axis(sims, top, axis=1)
        total = weights.sum(axis=1)
        none = total <= 0
        weights = weights / np.where(none, 1.0, total)[:, None]
        predicted = np.einsum("mk,mkg->mg", weights, profiles[top])
        predicted[none] = profiles.mean(axis=0)
        out[c, missing] = predicted
        fallback[c, missing] = none
    return out, fallback


def drug_similarity(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Drug × drug similarity: Pearson correlation averaged over shared cell lines, negatives and NaN set to 0.

    ``values`` is ``(cells, drugs, genes)``, ``present`` ``(cells, drugs)``. The diagonal is 0.
    """
    n_drugs = values.shape[1]
    total = np.zeros((n_drugs, n_drugs))
    count = np.zeros((n_drugs, n_drugs))
    for c in range(values.shape[0]):
        rows = values[c, present[c]].astype(np.float64)
        rows -= rows.mean(axis=1, keepdims=True)
        norms = np.sqrt(np.einsum("dg,dg->d", rows, rows))
        ok = norms > 0  # a constant profile has no correlation (NaN in the authors' code: skipped)
        idx = np.flatnonzero(present[c])[ok]
        unit = rows[ok] / norms[ok, None]
        total[np.ix_(idx, idx)] += np.clip(unit @ unit.T, -1.0, 1.0)
        count[np.ix_(idx, idx)] += 1.0
    similarity = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    similarity[similarity < 0] = 0.0
    np.fill_diagonal(similarity, 0.0)
    return similarity
