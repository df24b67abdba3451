"""Everything pk.pp / pk.tl record in ``adata.uns`` can be saved: ``write_h5ad`` then ``read_h5ad`` round-trips."""

from contextlib import nullcontext

import anndata as ad
import numpy as np
import pytest

import perturbkit as pk

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _roundtrip(adata, path):
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    assert set(back.uns) == set(adata.uns) and set(back.obsm) == set(adata.obsm)
    return back


def test_bulk_records_write_to_h5ad(tmp_path):
    adata = pk.datasets.simulate_bulk(n_drugs=40, n_moas=4, n_genes=20, seed=0)
    pk.tl.train_deepcellstate(adata, latent_dim=4, hidden=(8,), max_epochs=1, max_rounds=1, device="cpu")
    pk.tl.train_cyclecdr(adata, drug_encoder="onehot", hidden=(8,), latent_dim=4, max_epochs=1, device="cpu")
    pk.tl.embed(adata, basis="pca")
    back = _roundtrip(adata, tmp_path / "bulk.h5ad")
    assert back.uns["deepcellstate"]["params"]["hidden"].tolist() == [8]
    pk.tl.embed(back, basis="pca")  # the stored settings still match: nothing is recomputed
    np.testing.assert_array_equal(back.obsm["X_pca"], adata.obsm["X_pca"])


def test_morphology_records_write_to_h5ad(tmp_path):
    adata = pk.datasets.simulate_morphology(n_compounds=30, n_features=20, n_plates=2, seed=0)
    pk.pp.scale(adata, method="minmax")
    vae = pk.tl.train_vae(adata, latent_dim=3, hidden=(8,), max_epochs=2, patience=None, device="cpu")
    pk.tl.embed(adata, basis="pca", use_rep="X_vae", key_added="X_pca_vae")
    with pytest.warns(UserWarning) if not pk.tl.lsa_groups(adata).eligible else nullcontext():
        pk.tl.latent_arithmetic(adata, model=vae, n_shuffles=3)
    _roundtrip(adata, tmp_path / "morph.h5ad")
