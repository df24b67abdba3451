"""Every place a trained model meets data matches the features by name (issue 10, section 2).

For each entry point: the data with its features in another order gives exactly the result of the data in the
model's order, and data missing some of the model's features raises GeneMismatchError. Before the fix,
``latent_arithmetic`` and ``LSAExplorer`` passed the columns by position (shuffled features moved the L2 by up to
0.48 on this data, and renamed features were accepted).
"""

from __future__ import annotations

import copy
import sys
import types

import numpy as np
import pandas as pd
import pytest

import perturbkit as pk
from perturbkit import widgets as W
from perturbkit._schema import GeneMismatchError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_VAE = dict(kind="beta", beta=0.3, latent_dim=4, hidden=(16,), max_epochs=2, patience=None, device="cpu", seed=0)
TINY_DCS = dict(latent_dim=4, hidden=(8,), max_epochs=2, max_rounds=1, device="cpu", seed=0)
TINY_CDR = dict(
    drug_encoder="onehot", hidden=(8,), latent_dim=4, max_epochs=2, batch_size=64, patience=None, device="cpu"
)


def shuffled(adata, seed: int = 0):
    """``adata`` with its features in a random order (same values, same names)."""
    perm = np.random.default_rng(seed).permutation(adata.n_vars)
    assert not np.array_equal(perm, np.arange(adata.n_vars))
    return adata[:, perm].copy()


def renamed(adata, n: int = 3):
    """``adata`` with ``n`` features renamed: the model's names for them are missing."""
    out = adata.copy()
    out.var_names = [f"not_a_model_feature_{i}" if i < n else v for i, v in enumerate(out.var_names)]
    return out


class _FakeUMAP:
    """A deterministic stand-in for umap.UMAP (2 principal components), to avoid numba compilation in tests."""

    def __init__(self, n_neighbors=15, min_dist=0.1, random_state=None, n_jobs=None):
        self.n_neighbors = n_neighbors

    def fit_transform(self, X):
        X = np.asarray(X, dtype=np.float64)
        self.mean_ = X.mean(axis=0)
        self.basis_ = np.linalg.svd(X - self.mean_, full_matrices=False)[2][:2]
        return self.transform(X)

    def transform(self, X):
        return (np.asarray(X, dtype=np.float64) - self.mean_) @ self.basis_.T


@pytest.fixture
def fake_umap(monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=_FakeUMAP))


# ------------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def vae(morph):
    return pk.tl.train_vae(morph.copy(), **TINY_VAE)


@pytest.fixture(scope="module")
def bulk():
    return pk.datasets.simulate_bulk(n_drugs=40, n_genes=20, seed=1)


@pytest.fixture(scope="module")
def dcs(bulk):
    return pk.tl.train_deepcellstate(bulk.copy(), **TINY_DCS)


@pytest.fixture(scope="module")
def cdr(bulk):
    return pk.tl.train_cyclecdr(bulk.copy(), **TINY_CDR)


# ------------------------------------------------------------------------------------------ latent arithmetic
def test_latent_arithmetic_matches_features_by_name(morph, vae):
    expected = pk.tl.latent_arithmetic(morph.copy(), model=vae)
    got = pk.tl.latent_arithmetic(shuffled(morph), model=vae)
    assert len(expected) >= 2
    pd.testing.assert_frame_equal(got, expected)
    with pytest.raises(GeneMismatchError, match="3 of them are missing"):
        pk.tl.latent_arithmetic(renamed(morph), model=vae)


def test_latent_arithmetic_aligns_an_sklearn_model_fitted_on_a_dataframe(morph):
    from sklearn.decomposition import PCA

    pca = PCA(n_components=4, random_state=0).fit(pd.DataFrame(morph.X, columns=morph.var_names))
    expected = pk.tl.latent_arithmetic(morph.copy(), model=pca)
    pd.testing.assert_frame_equal(pk.tl.latent_arithmetic(shuffled(morph), model=pca), expected)
    with pytest.raises(GeneMismatchError, match="feature_names_in_"):
        pk.tl.latent_arithmetic(renamed(morph), model=pca)


def test_lsa_explorer_matches_features_by_name(morph, vae):
    expected = W.LSAExplorer(morph, model=vae)
    got = W.LSAExplorer(shuffled(morph), model=vae)
    pd.testing.assert_frame_equal(got.table, expected.table)
    assert got.result["l2"] == expected.result["l2"] and got.result["z"] == expected.result["z"]
    np.testing.assert_array_equal(got.result["predicted"], expected.result["predicted"])
    assert list(got.var_names) == list(vae.var_names)
    with pytest.raises(GeneMismatchError, match="missing"):
        W.LSAExplorer(renamed(morph), model=vae)


# ------------------------------------------------------------------------------------------------ VAE entry points
def test_vae_encode_transform_reconstruct_match_features_by_name(morph, vae):
    other = shuffled(morph)
    np.testing.assert_array_equal(vae.encode(other), vae.encode(morph))
    np.testing.assert_array_equal(vae.transform(other), vae.transform(morph))
    np.testing.assert_array_equal(vae.reconstruct(other), vae.reconstruct(morph))
    for call in (vae.encode, vae.transform, vae.reconstruct):
        with pytest.raises(GeneMismatchError, match="missing"):
            call(renamed(morph))


@pytest.mark.parametrize(
    "function", ["vae_reconstruction_metrics", "vae_latent_correlation", "vae_feature_reconstruction"]
)
def test_vae_metrics_match_features_by_name(morph, vae, function):
    f = getattr(pk.tl, function)
    pd.testing.assert_frame_equal(f(shuffled(morph), model=vae), f(morph, model=vae))
    with pytest.raises(GeneMismatchError, match="missing"):
        f(renamed(morph), model=vae)


def test_project_reconstructions_matches_features_by_name(morph, vae, fake_umap):
    expected = pk.tl.project_reconstructions(morph, model=vae, n_simulated=5)
    got = pk.tl.project_reconstructions(shuffled(morph), model=vae, n_simulated=5)
    np.testing.assert_array_equal(got.X, expected.X)
    np.testing.assert_allclose(got.obsm["X_umap"], expected.obsm["X_umap"], rtol=1e-6, atol=1e-6)
    assert list(got.var_names) == list(vae.var_names)
    with pytest.raises(GeneMismatchError, match="missing"):
        pk.tl.project_reconstructions(renamed(morph), model=vae, n_simulated=0)


def test_latent_traversal_panel_matches_features_by_name(morph, vae):
    expected = W.LatentTraversal(morph, model=vae)
    got = W.LatentTraversal(shuffled(morph), model=vae)
    np.testing.assert_array_equal(got._codes, expected._codes)
    moa = sorted(morph.obs["moa"].astype(str).unique())[1]
    for panel in (expected, got):
        panel.start_from_group("moa", moa)
    np.testing.assert_array_equal(got.z, expected.z)
    pd.testing.assert_series_equal(got.profile, expected.profile)
    assert [s.max for s in got.controls["sliders"].values()] == [s.max for s in expected.controls["sliders"].values()]
    with pytest.raises(GeneMismatchError, match="missing"):
        W.LatentTraversal(renamed(morph), model=vae)


def test_embedding_explorer_latent_space_matches_features_by_name(morph, vae):
    expected = W.EmbeddingExplorer(morph.copy(), model=vae, basis="pca")
    got = W.EmbeddingExplorer(shuffled(morph), model=vae, basis="pca")
    for panel in (expected, got):
        panel.controls["space"].value = "latent"
    np.testing.assert_array_equal(got.adata.obsm["X_vae"], expected.adata.obsm["X_vae"])
    np.testing.assert_allclose(
        got.coordinates("pca", "latent"), expected.coordinates("pca", "latent"), rtol=1e-5, atol=1e-6
    )
    panel = W.EmbeddingExplorer(renamed(morph), model=vae, basis="pca")
    with pytest.raises(GeneMismatchError, match="missing"):
        panel.controls["space"].value = "latent"


# ------------------------------------------------------------------------------------- DeepCellState entry points
def test_deepcellstate_predict_matches_features_by_name(bulk, dcs):
    expected = dcs.predict(bulk, target="MCF7")
    got = dcs.predict(shuffled(bulk), target="MCF7")
    np.testing.assert_array_equal(got.X, expected.X)
    assert list(got.var_names) == list(dcs.var_names)
    with pytest.raises(GeneMismatchError, match="missing"):
        dcs.predict(renamed(bulk), target="MCF7")


def test_deepcellstate_fine_tune_matches_features_by_name(bulk, dcs):
    a, b = copy.deepcopy(dcs), copy.deepcopy(dcs)
    a.fine_tune(bulk, max_epochs=1, max_rounds=1)
    b.fine_tune(shuffled(bulk), max_epochs=1, max_rounds=1)
    np.testing.assert_array_equal(b.predict(bulk, target="PC3").X, a.predict(bulk, target="PC3").X)
    with pytest.raises(GeneMismatchError, match="missing"):
        copy.deepcopy(dcs).fine_tune(renamed(bulk), max_epochs=1, max_rounds=1)


def test_latent_embeddings_match_features_by_name(bulk, dcs):
    expected = pk.tl.latent_embeddings(bulk, model=dcs)
    got = pk.tl.latent_embeddings(shuffled(bulk), model=dcs)
    np.testing.assert_array_equal(got.X, expected.X)
    np.testing.assert_array_equal(got.obsm["X_input"], expected.obsm["X_input"])
    with pytest.raises(GeneMismatchError, match="missing"):
        pk.tl.latent_embeddings(renamed(bulk), model=dcs)


def test_deepcellstate_latent_correlation_matches_features_by_name(bulk, dcs):
    expected = pk.tl.latent_correlation(bulk, model=dcs, cell_lines=("MCF7", "PC3"))
    pd.testing.assert_frame_equal(
        pk.tl.latent_correlation(shuffled(bulk), model=dcs, cell_lines=("MCF7", "PC3")), expected
    )
    with pytest.raises(GeneMismatchError, match="missing"):
        pk.tl.latent_correlation(renamed(bulk), model=dcs, cell_lines=("MCF7", "PC3"))


def test_gene_importance_matches_features_by_name(bulk, dcs):
    kw = dict(model=dcs, target="MCF7", source="PC3", n_subsets=10, subset_size=5, top=2)
    pd.testing.assert_frame_equal(pk.tl.gene_importance(shuffled(bulk), **kw), pk.tl.gene_importance(bulk, **kw))
    with pytest.raises(GeneMismatchError, match="missing"):
        pk.tl.gene_importance(renamed(bulk), **kw)


@pytest.mark.parametrize("which", ["dcs", "cdr"])
def test_response_explorer_matches_features_by_name(bulk, dcs, cdr, which):
    model = dcs if which == "dcs" else cdr
    expected, got = W.ResponseExplorer(bulk, model=model), W.ResponseExplorer(shuffled(bulk), model=model)
    drug = expected.controls["drug"].options[3]
    for panel in (expected, got):
        panel.select(drug)
    for key in ("input", "predicted", "measured"):
        np.testing.assert_array_equal(got.result[key], expected.result[key])
    with pytest.raises(GeneMismatchError, match="missing"):
        W.ResponseExplorer(renamed(bulk), model=model)


# ------------------------------------------------------------------------------------------ cycleCDR entry points
def test_cyclecdr_predict_matches_features_by_name(bulk, cdr):
    drugs = cdr.drug_names[:3]
    expected = cdr.predict(pk.tl.control_means(bulk), drugs=drugs)
    got = cdr.predict(pk.tl.control_means(shuffled(bulk)), drugs=drugs)
    np.testing.assert_array_equal(got.X, expected.X)
    with pytest.raises(GeneMismatchError, match="missing"):
        cdr.predict(pk.tl.control_means(renamed(bulk)), drugs=drugs)


def test_mean_response_baseline_matches_genes_by_name(bulk):
    controls, drugs = pk.tl.control_means(bulk), ["a", "b"]
    expected = pk.tl.predict_mean_response(controls, drugs=drugs, training_data=bulk)
    got = pk.tl.predict_mean_response(controls, drugs=drugs, training_data=shuffled(bulk))
    np.testing.assert_allclose(got.X, expected.X, rtol=1e-6, atol=1e-6)
    with pytest.raises(GeneMismatchError, match="training_data lacks 3"):
        pk.tl.predict_mean_response(controls, drugs=drugs, training_data=renamed(bulk))


# ------------------------------------------------------------------------------------ predictions meet measurements
def test_evaluate_response_matches_genes_by_name(bulk, dcs):
    pred = dcs.predict(bulk, target="MCF7")
    truth = bulk[bulk.obs["cell_line"] == "MCF7"].copy()
    drugs = set(pred.obs["drug"])
    truth = truth[truth.obs["control"].to_numpy() | truth.obs["drug"].isin(drugs).to_numpy()].copy()
    kw = dict(groupby="drug", control="control", n_degs=5)
    expected = pk.metrics.evaluate_response(pred, truth, **kw)
    pd.testing.assert_frame_equal(pk.metrics.evaluate_response(shuffled(pred), truth, **kw), expected)
    pd.testing.assert_frame_equal(
        pk.metrics.evaluate_response(pred, shuffled(truth), **kw).set_index("drug").loc[expected["drug"]].reset_index(),
        expected,
        rtol=1e-6,
    )
    with pytest.raises(GeneMismatchError, match="lack 3"):
        pk.metrics.evaluate_response(renamed(pred), truth, **kw)


def test_embed_predictions_matches_genes_by_name(bulk, dcs, fake_umap):
    pred = dcs.predict(bulk, target="MCF7")
    truth = bulk[bulk.obs["cell_line"] == "MCF7"].copy()
    expected = pk.tl.embed_predictions(pred, truth, n_pcs=5)
    got = pk.tl.embed_predictions(pred, shuffled(truth), n_pcs=5)
    np.testing.assert_array_equal(got.X, expected.X)
    np.testing.assert_allclose(got.obsm["X_umap"], expected.obsm["X_umap"], rtol=1e-6, atol=1e-6)
    with pytest.raises(GeneMismatchError, match="lack 3"):
        pk.tl.embed_predictions(pred, renamed(truth), n_pcs=5)
