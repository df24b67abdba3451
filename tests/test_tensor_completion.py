"""Tensor completion over cell line × drug × gene: FaLRTC and DNPP (models.tensor_completion, pk.tl.complete_tensor).

The numbers asserted were measured with the defaults (see the methods page); each bound keeps a margin.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

import perturbkit as pk
from perturbkit.errors import EmptyGroupError, NonFiniteError, PerturbkitInputError
from perturbkit.models._profiles import CellDrugProfiles
from perturbkit.models.tensor_completion import DEFAULTS, dnpp, drug_similarity, falrtc
from perturbkit.models.tensor_completion._falrtc import _falrtc, _SmoothTraceNorm


# -------------------------------------------------------------------------------------------------------- helpers
def low_rank(seed=0, shape=(5, 60, 40), rank=3, noise=0.05, frac_missing=0.25):
    """A CP tensor of ``rank`` plus noise (``noise`` × its SD), with ``frac_missing`` of the profiles missing."""
    rng = np.random.default_rng(seed)
    factors = [rng.normal(size=(n, rank)) for n in shape]
    T = np.einsum("ir,jr,kr->ijk", *factors)
    T += noise * T.std() * rng.normal(size=shape)
    observed = np.ones(shape[:2], dtype=bool)
    observed.flat[rng.choice(observed.size, int(round(frac_missing * observed.size)), replace=False)] = False
    return T, observed


def clustered(seed=0, n_cells=4, n_drugs=60, n_genes=40, n_clusters=5, noise=0.3, frac_missing=0.25):
    """Drugs in clusters: the drugs of a cluster share a (cluster, cell line) pattern in every cell line, + noise."""
    rng = np.random.default_rng(seed)
    patterns = rng.normal(size=(n_clusters, n_cells, n_genes))
    cluster = rng.integers(n_clusters, size=n_drugs)
    T = patterns[cluster].transpose(1, 0, 2) + noise * rng.normal(size=(n_cells, n_drugs, n_genes))
    observed = np.ones((n_cells, n_drugs), dtype=bool)
    observed.flat[rng.choice(observed.size, int(frac_missing * observed.size), replace=False)] = False
    return T, observed


def mean_pearson(pred, truth):
    return float(np.mean([np.corrcoef(p, t)[0, 1] for p, t in zip(pred, truth, strict=True)]))


def cell_mean_fill(T, observed):
    """The baseline: each missing profile is its cell line's mean measured profile."""
    out = T.copy()
    for c in range(T.shape[0]):
        out[c, ~observed[c]] = T[c, observed[c]].mean(axis=0)
    return out


def missing_pearson(pred, T, observed):
    return mean_pearson(pred[~observed], T[~observed])


# ---------------------------------------------------------------------------------------------------------- FaLRTC
def test_falrtc_recovers_a_low_rank_tensor():
    T, observed = low_rank(seed=0)
    completed = falrtc(T, observed, progress=False)
    ours, baseline = missing_pearson(completed, T, observed), missing_pearson(cell_mean_fill(T, observed), T, observed)
    # measured: FaLRTC 0.973 (seeds 1, 2: 0.985, 0.978), cell-line mean 0.041
    assert ours > 0.93, ours
    assert ours > baseline + 0.6, (ours, baseline)


def test_falrtc_keeps_observed_entries_and_ignores_unobserved_values():
    T, observed = low_rank(seed=1)
    T = T.astype(np.float32)
    completed = falrtc(T, observed, progress=False)
    assert completed.dtype == np.float32
    np.testing.assert_array_equal(completed[observed], T[observed])
    assert np.isfinite(completed).all()
    other = T.copy()
    other[~observed] = np.random.default_rng(5).normal(100.0, 50.0, size=other[~observed].shape)
    np.testing.assert_array_equal(falrtc(other, observed, progress=False), completed)
    other[~observed] = np.nan
    np.testing.assert_array_equal(falrtc(other, observed, progress=False), completed)


def test_falrtc_is_scale_equivariant_and_gene_order_invariant():
    T, observed = low_rank(seed=2, shape=(4, 30, 20))
    completed = falrtc(T, observed, progress=False)
    np.testing.assert_allclose(falrtc(7.0 * T, observed, progress=False), 7.0 * completed, rtol=1e-6, atol=1e-8)
    reversed_genes = falrtc(T[:, :, ::-1], observed, progress=False)[:, :, ::-1]
    np.testing.assert_allclose(reversed_genes, completed, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(falrtc(T, observed, progress=False), completed)  # deterministic


def test_falrtc_smoothed_trace_norm_and_its_gradient_match_the_svd_formulas():
    """f_mu = sum_i sum_k h_i(s_k), gradient sum_i alpha_i fold_i(U min(1, alpha_i s / mu_i) V^T), on free entries."""
    rng = np.random.default_rng(0)
    shape = (3, 5, 4)
    omega = rng.random(shape) > 0.3
    omega[0, 1] = False  # a whole missing fibre beside single missing entries
    T = np.where(omega, rng.normal(size=shape), 0.0)
    alpha, mu = np.array([0.2, 0.5, 0.3]), np.array([0.3, 0.5, 0.7])
    f = _SmoothTraceNorm(T, omega, alpha, mu)
    rows = f.start + rng.normal(size=f.start.shape) * f.free
    X = f.full(rows)
    value, grad = 0.0, np.zeros(shape)
    for i in range(3):
        U, s, Vt = np.linalg.svd(np.moveaxis(X, i, 0).reshape(shape[i], -1), full_matrices=False)
        value += np.sum(np.where(alpha[i] * s <= mu[i], alpha[i] ** 2 * s**2 / (2 * mu[i]), alpha[i] * s - mu[i] / 2))
        part = alpha[i] * (U * np.minimum(1.0, alpha[i] * s / mu[i])) @ Vt
        grad += np.moveaxis(part.reshape((shape[i],) + tuple(n for j, n in enumerate(shape) if j != i)), 0, i)
    ours_value, ours_grad = f.value_and_gradient(rows)
    assert ours_value == pytest.approx(value, rel=1e-12)
    assert f.value(rows) == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(ours_grad, np.where(omega, 0.0, grad)[f.cells, f.drugs], atol=1e-12)
    # and a finite difference of f_mu along one free entry
    entry = tuple(np.argwhere(f.free)[0])
    bumped = rows.copy()
    bumped[entry] += 1e-6
    assert (f.value(bumped) - f.value(rows)) / 1e-6 == pytest.approx(ours_grad[entry], rel=1e-4)


def test_falrtc_takes_an_entrywise_mask_and_reports_convergence():
    T, _ = low_rank(seed=3, shape=(4, 20, 15))
    mask = np.random.default_rng(1).random(T.shape) > 0.3
    completed, info = _falrtc(
        T, mask, alpha=None, mu=None, max_iter=DEFAULTS.falrtc.max_iter, tol=DEFAULTS.falrtc.tol, center=False,
        progress=False,
    )  # fmt: skip
    np.testing.assert_array_equal(completed[mask], T[mask])
    assert info["converged"] and info["n_iter"] < DEFAULTS.falrtc.max_iter
    assert info["alpha"] == pytest.approx([1 / 3] * 3)
    assert info["mu"] == pytest.approx([5 / 3 / np.sqrt(n) for n in T.shape])
    assert np.corrcoef(completed[~mask], T[~mask])[0, 1] > 0.9


def test_falrtc_refuses_bad_input():
    T, observed = low_rank(seed=0, shape=(3, 6, 5))
    with pytest.raises(PerturbkitInputError, match="observed has shape"):
        falrtc(T, observed[:, :4], progress=False)
    with pytest.raises(PerturbkitInputError, match="observed must be a boolean"):
        falrtc(T, observed.astype(int), progress=False)
    bad = T.copy()
    bad[observed] = np.nan
    with pytest.raises(NonFiniteError, match="observed entries"):
        falrtc(bad, observed, progress=False)
    with pytest.raises(PerturbkitInputError, match="alpha"):
        falrtc(T, observed, alpha=(1.0, -1.0, 1.0), progress=False)
    with pytest.raises(PerturbkitInputError, match="max_iter"):
        falrtc(T, observed, max_iter=0, progress=False)
    empty = observed.copy()
    empty[1] = False
    with pytest.raises(PerturbkitInputError, match="no observed profile"):
        falrtc(T, empty, progress=False)


# ------------------------------------------------------------------------------------------------------------ DNPP
def test_dnpp_weights_the_nearest_drugs_by_their_mean_correlation():
    """Hand-computed: s(d0, d1) = 1 (cell 0 only), s(d0, d3) = (0.5 + 1) / 2, s(d0, d2) = -1 -> 0."""
    base = np.array([1.0, 0.0, -1.0])
    T = np.zeros((3, 5, 3))
    T[0, 0], T[0, 1], T[0, 2], T[0, 3] = base, 2 * base + 5, -base, [1.0, -1.0, 0.0]  # corr(d0, d3) = 0.5 in cell 0
    T[1, 1], T[1, 2], T[1, 3] = [1.0, 2.0, 4.0], [5.0, 1.0, 0.0], [0.0, 3.0, 1.0]
    T[2, 0], T[2, 3] = [3.0, 1.0, 0.0], [6.0, 2.0, 0.0]  # corr(d0, d3) = 1 in cell 2
    T[1, 4] = [2.0, 2.0, 2.0]  # d4: measured only in cell 1, and constant there: no similarity to anything
    observed = np.array(
        [[True, True, True, True, False], [False, True, True, True, True], [True, False, False, True, False]]
    )
    similarity = drug_similarity(T, observed)
    assert similarity[0, 1] == pytest.approx(1.0)
    assert similarity[0, 3] == pytest.approx(0.75)
    assert similarity[0, 2] == 0.0 and similarity[0, 4] == 0.0 and similarity[0, 0] == 0.0
    two = dnpp(T, observed, n_neighbors=2)
    np.testing.assert_allclose(two[1, 0], (1.0 * T[1, 1] + 0.75 * T[1, 3]) / 1.75)
    np.testing.assert_allclose(dnpp(T, observed, n_neighbors=1)[1, 0], T[1, 1])
    np.testing.assert_allclose(dnpp(T, observed)[1, 0], two[1, 0])  # d2 joins with weight 0
    # d4 is similar to none of the drugs measured in cell 0: it gets cell 0's mean measured profile
    np.testing.assert_allclose(two[0, 4], T[0, :4].mean(axis=0))
    np.testing.assert_array_equal(two[observed], T[observed])


def test_dnpp_beats_the_cell_line_mean_on_clustered_drugs():
    T, observed = clustered(seed=0)
    completed = dnpp(T, observed)
    ours, baseline = missing_pearson(completed, T, observed), missing_pearson(cell_mean_fill(T, observed), T, observed)
    # measured: DNPP 0.909 (seeds 1-3: 0.947, 0.944, 0.906), cell-line mean 0.410
    assert ours > 0.85, ours
    assert ours > baseline + 0.35, (ours, baseline)
    other = T.copy()
    other[~observed] = np.nan
    np.testing.assert_array_equal(dnpp(other, observed), completed)
    reversed_genes = dnpp(T[:, :, ::-1], observed)[:, :, ::-1]
    np.testing.assert_allclose(reversed_genes, completed, rtol=1e-5, atol=1e-8)


def test_dnpp_refuses_bad_input():
    T, observed = clustered(seed=0, n_cells=2, n_drugs=6, n_genes=4)
    with pytest.raises(PerturbkitInputError, match="n_neighbors"):
        dnpp(T, observed, n_neighbors=0)
    entrywise = np.broadcast_to(observed[:, :, None], T.shape).copy()
    np.testing.assert_array_equal(dnpp(T, entrywise), dnpp(T, observed))
    entrywise[0, 0, 0] = ~entrywise[0, 0, 0]
    with pytest.raises(PerturbkitInputError, match="whole"):
        dnpp(T, entrywise)


# ------------------------------------------------------------------------------------------- pk.tl.complete_tensor
@pytest.fixture(scope="module")
def bulk():
    """Simulated bulk profiles with 20% of the measured (drug, cell line) profiles removed (their rows dropped)."""
    adata = pk.datasets.simulate_bulk(n_drugs=80, n_genes=50, n_cell_lines=4, seed=0)
    full = CellDrugProfiles.from_adata(adata)
    rng = np.random.default_rng(0)
    pairs = np.argwhere(full.present)
    rng.shuffle(pairs)
    present = full.present.copy()
    removed = []
    for d, c in pairs:  # keep at least one profile of every drug
        if len(removed) == round(0.2 * len(pairs)):
            break
        if present[d].sum() > 1:
            present[d, c] = False
            removed.append((d, c))
    removed = np.array(removed)
    gone = {(full.drugs[d], full.cell_lines[c]) for d, c in removed}
    keys = zip(adata.obs["drug"].astype(str), adata.obs["cell_line"].astype(str), strict=True)
    kept = adata[[key not in gone for key in keys]].copy()
    return kept, full, present, removed


def _digest(adata) -> str:
    h = hashlib.sha256(np.ascontiguousarray(adata.X).tobytes())
    h.update(pd.util.hash_pandas_object(adata.obs, index=True).to_numpy().tobytes())
    h.update(str(sorted(adata.uns)).encode() + str(list(adata.layers)).encode())
    return h.hexdigest()


@pytest.mark.parametrize("method", ["falrtc", "dnpp"])
def test_complete_tensor_fills_the_grid_and_beats_the_naive_baseline(bulk, method):
    adata, full, present, removed = bulk
    before = _digest(adata)
    grid = pk.tl.complete_tensor(adata, method=method, progress=False)
    assert _digest(adata) == before  # adata is not modified
    n_cells, n_drugs = len(full.cell_lines), len(full.drugs)
    assert grid.shape == (n_cells * n_drugs, adata.n_vars)
    assert list(grid.var_names) == list(adata.var_names)
    assert np.isfinite(grid.X).all()
    assert grid.obs["observed"].sum() == present.sum() and (~grid.obs["observed"]).sum() == (~present).sum()
    measured = CellDrugProfiles.from_adata(adata)
    for name, row in grid.obs[grid.obs["observed"]].iloc[::7].iterrows():
        d, c = measured.drugs.get_loc(row["drug"]), measured.cell_lines.get_loc(row["cell_line"])
        np.testing.assert_array_equal(grid[name].X[0], measured.values[d, c])
    record = grid.uns["completed_tensor"]
    assert record["method"] == method and record["n_completed"] == int((~present).sum())
    # the removed profiles against the truth, beside the naive "mean of the drug's profiles in the other cell lines"
    names = [f"{full.cell_lines[c]}|{full.drugs[d]}" for d, c in removed]
    truth = full.values[removed[:, 0], removed[:, 1]]
    ours = mean_pearson(grid[names].X, truth)
    naive = mean_pearson(np.stack([full.values[d, present[d]].mean(axis=0) for d, _ in removed]), truth)
    # measured (seed 0, 58 removed profiles): FaLRTC 0.541, DNPP 0.566, naive 0.345, cell-line mean 0.216
    assert ours > naive + 0.1, (method, ours, naive)
    # the same data with the genes reversed gives the same completion
    flipped = pk.tl.complete_tensor(adata[:, ::-1].copy(), method=method, progress=False)
    np.testing.assert_allclose(flipped[names].X[:, ::-1], grid[names].X, rtol=1e-5, atol=1e-5)


def test_complete_tensor_records_the_settings(bulk):
    adata = bulk[0]
    grid = pk.tl.complete_tensor(adata, method="dnpp", n_neighbors=5, key_added="tc")
    record = grid.uns["tc"]
    assert record["params"]["n_neighbors"] == 5 and record["params"]["cell_key"] == "cell_line"
    assert "n_fallback" in record and "tc" not in adata.uns
    grid = pk.tl.complete_tensor(adata, method="falrtc", max_iter=3, progress=False)
    record = grid.uns["completed_tensor"]
    assert record["n_iter"] == 3 and record["params"]["max_iter"] == 3 and len(record["params"]["mu"]) == 3
    assert grid.obs["cell_line"].dtype == "category" and grid.obs_names[0] == f"{grid.obs['cell_line'].iloc[0]}|" + str(
        grid.obs["drug"].iloc[0]
    )


def test_complete_tensor_refuses_bad_input(bulk):
    adata = bulk[0]
    with pytest.raises(PerturbkitInputError, match="method must be one of 'falrtc', 'dnpp'"):
        pk.tl.complete_tensor(adata, method="tucker")
    one = adata[adata.obs["cell_line"] == adata.obs["cell_line"].iloc[0]].copy()
    with pytest.raises(EmptyGroupError, match="at least two cell lines in obs\\['cell_line'\\]"):
        pk.tl.complete_tensor(one)
    bad = adata.copy()
    bad.X[3, 2] = np.nan
    with pytest.raises(NonFiniteError, match="adata.X"):
        pk.tl.complete_tensor(bad)
    # a full grid: nothing to complete (a warning), the measured means come back
    small = pk.datasets.simulate_bulk(n_drugs=10, n_genes=8, n_cell_lines=2, n_moas=3, frac_missing=0.0, seed=1)
    with pytest.warns(UserWarning, match="nothing to complete"):
        grid = pk.tl.complete_tensor(small, progress=False)
    assert grid.obs["observed"].all() and grid.n_obs == 20
    np.testing.assert_array_equal(grid.X, CellDrugProfiles.from_adata(small).values.transpose(1, 0, 2).reshape(20, -1))
